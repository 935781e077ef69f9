"""Hyper-parameter clamps, a memory guard and ``[Resource]`` lines.

Every registry model and the Isolation Forest go through :func:`plan_guards` before fitting:
it clamps tree depth, ensemble size, feature fractions, leaf limits and vectoriser bounds to
safe ranges and, when the memory guard is on and little RAM is available, tightens them.
Each adjustment is returned as one human-readable line, so the CLI can print exactly what
was changed and why; nothing is changed silently.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from loglead_lo2.cli_common import human_bytes

log = logging.getLogger(__name__)

GIB = 1024**3


@dataclass(frozen=True)
class GuardLimits:
    """Upper (and lower) bounds applied to estimator and vectoriser parameters."""

    max_depth: int = 20
    n_estimators: int = 300
    max_features_min: float = 0.05
    max_features_max: float = 0.5
    max_leaf: int = 512
    vec_max_features: int = 200_000
    vec_min_df_min: int = 1
    vec_min_df_max: int = 100
    level: str = "default"


DEFAULT_LIMITS = GuardLimits()
# (available RAM below, limits): checked from the tightest level up.
MEMORY_LEVELS: tuple[tuple[float, GuardLimits], ...] = (
    (
        4 * GIB,
        GuardLimits(max_depth=12, n_estimators=100, max_leaf=256, vec_max_features=50_000,
                    level="low memory (< 4 GiB available)"),
    ),
    (
        8 * GIB,
        GuardLimits(max_depth=16, n_estimators=150, vec_max_features=100_000,
                    level="reduced memory (< 8 GiB available)"),
    ),
)


def available_memory() -> int | None:
    """Bytes of RAM available now (``psutil``), or ``None`` when it cannot be measured."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        return None


def memory_limits(
    enabled: bool = True, available: int | None = None
) -> tuple[GuardLimits, list[str]]:
    """Limits for the current RAM; ``available`` overrides the measurement (for tests)."""
    if not enabled:
        return DEFAULT_LIMITS, ["[Guard] memory guard disabled (--disable-memory-guard)"]
    if available is None:
        available = available_memory()
    if available is None:
        return DEFAULT_LIMITS, ["[Guard] available RAM unknown; using default limits"]
    for below, limits in MEMORY_LEVELS:
        if available < below:
            return limits, [
                f"[Guard] {available / GIB:.1f} GiB RAM available: {limits.level}; "
                f"n_estimators <= {limits.n_estimators}, max_depth <= {limits.max_depth}, "
                f"leaves <= {limits.max_leaf}, vocabulary <= {limits.vec_max_features:,} "
                "(--disable-memory-guard to keep the defaults)"
            ]
    return DEFAULT_LIMITS, []


def _clamp_int(name: str, value: Any, limit: int, none_means_unbounded: bool) -> Any:
    if value is None or (none_means_unbounded and value == 0 and name == "max_leaves"):
        return limit
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    return min(value, limit)


def clamp_estimator_params(
    current: Mapping[str, Any], limits: GuardLimits, *, isolation_forest: bool = False
) -> dict[str, Any]:
    """Overrides that bring an estimator's ``get_params()`` within ``limits``.

    Only parameters the estimator has are touched: ``max_depth`` (``None`` = unbounded is
    clamped too), ``n_estimators``, ``max_features`` when it is a fraction, ``max_leaf_nodes``
    and XGBoost's ``max_leaves`` (0 = unbounded). The Isolation Forest keeps its
    ``max_features`` (a feature-subsampling fraction with a different meaning) and has no
    depth parameter to clamp.
    """
    out: dict[str, Any] = {}
    if "max_depth" in current and not isolation_forest:
        new = _clamp_int("max_depth", current["max_depth"], limits.max_depth, True)
        if new != current["max_depth"]:
            out["max_depth"] = new
    if "n_estimators" in current:
        value = current["n_estimators"]
        if isinstance(value, int) and value > limits.n_estimators:
            out["n_estimators"] = limits.n_estimators
    if "max_features" in current and not isolation_forest:
        value = current["max_features"]
        if isinstance(value, float):
            new_f = min(max(value, limits.max_features_min), limits.max_features_max)
            if new_f != value:
                out["max_features"] = new_f
    for name in ("max_leaf_nodes", "max_leaves"):
        if name in current:
            new = _clamp_int(name, current[name], limits.max_leaf, True)
            if new != current[name]:
                out[name] = new
    return out


def clamp_vectorizer_params(
    current: Mapping[str, Any], limits: GuardLimits, has_item: bool = True
) -> dict[str, Any]:
    """Overrides bounding the vocabulary (``max_features``) and ``min_df``."""
    out: dict[str, Any] = {}
    if not has_item:
        return out
    max_features = current.get("max_features")
    if max_features is None or max_features > limits.vec_max_features:
        out["max_features"] = limits.vec_max_features
    min_df = current.get("min_df", 1)
    if isinstance(min_df, int):
        bounded = min(max(min_df, limits.vec_min_df_min), limits.vec_min_df_max)
        if bounded != min_df:
            out["min_df"] = bounded
    return out


@dataclass(frozen=True)
class GuardPlan:
    """Parameter overrides for one model and the lines describing them."""

    key: str
    params: dict[str, Any]
    vectorizer: dict[str, Any]
    lines: tuple[str, ...]

    def as_mapping(self) -> dict[str, dict[str, Any]]:
        """The ``guards`` mapping handed to the fitting code."""
        return {"params": dict(self.params), "vectorizer": dict(self.vectorizer)}


def _describe(
    key: str, what: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[str]:
    return [
        f"[Guard] {key}: {what} {name} {before.get(name)!r} -> {value!r}"
        for name, value in sorted(after.items())
    ]


def plan_guards(
    key: str,
    estimator_params: Mapping[str, Any],
    vectorizer_params: Mapping[str, Any],
    limits: GuardLimits,
    *,
    has_item: bool = True,
    isolation_forest: bool = False,
) -> GuardPlan:
    """Clamp one model's parameters; ``estimator_params`` is the unfitted ``get_params()``."""
    params = clamp_estimator_params(estimator_params, limits, isolation_forest=isolation_forest)
    vec = clamp_vectorizer_params(vectorizer_params, limits, has_item=has_item)
    lines = _describe(key, "estimator", estimator_params, params)
    lines += _describe(key, "vectoriser", vectorizer_params, vec)
    return GuardPlan(key=key, params=params, vectorizer=vec, lines=tuple(lines))


def with_level(limits: GuardLimits, **changes: Any) -> GuardLimits:
    """A copy of ``limits`` with some bounds changed (for callers and tests)."""
    return replace(limits, **changes)


# --- resource statistics -------------------------------------------------------------------


def model_size_bytes(obj: Any) -> int | None:
    """Pickled size of a fitted object (what a joblib bundle of it roughly weighs)."""
    try:
        return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - unpicklable third-party state
        return None


def tree_stats(estimator: Any) -> dict[str, Any]:
    """Trees, total nodes and maximum depth of sklearn trees/forests or an XGBoost model."""
    trees: list[Any] = []
    if hasattr(estimator, "tree_"):
        trees = [estimator]
    elif hasattr(estimator, "estimators_"):
        trees = [t for t in estimator.estimators_ if hasattr(t, "tree_")]
    if trees:
        return {
            "trees": len(trees),
            "nodes": int(sum(t.tree_.node_count for t in trees)),
            "max_depth": int(max(t.tree_.max_depth for t in trees)),
        }
    booster = getattr(estimator, "get_booster", None)
    if booster is not None:
        try:
            dumps = booster().get_dump()
            return {"trees": len(dumps), "nodes": int(sum(d.count("\n") for d in dumps))}
        except Exception:  # noqa: BLE001 - unfitted booster
            return {}
    return {}


def resource_stats(
    estimator: Any, vectorizer: Any, fit_seconds: float, n_features: int | None = None
) -> dict[str, Any]:
    """Fit time, feature count, vocabulary size, pickled model size and tree statistics."""
    vocab = len(getattr(vectorizer, "vocabulary_", {}) or {})
    names = getattr(vectorizer, "feature_names_", None)
    return {
        "fit_seconds": round(float(fit_seconds), 4),
        "features": int(n_features if n_features is not None else len(names or [])),
        "vocabulary": vocab,
        "model_bytes": model_size_bytes(estimator),
        **tree_stats(estimator),
    }




def format_resource(key: str, stats: Mapping[str, Any]) -> str:
    """One ``[Resource]`` line for a fitted model."""
    parts = [
        f"fit {stats.get('fit_seconds', 0.0):.2f}s",
        f"features {stats.get('features', '?')}",
        f"vocabulary {stats.get('vocabulary', '?')}",
        f"model {human_bytes(stats.get('model_bytes'))}",
    ]
    if "trees" in stats:
        tree = f"trees {stats['trees']}, nodes {stats.get('nodes', '?')}"
        if "max_depth" in stats:
            tree += f", max depth {stats['max_depth']}"
        parts.append(tree)
    return f"[Resource] {key}: " + "; ".join(parts)
