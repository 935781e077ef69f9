"""Fit, score and evaluate registry models; per-test-case recall.

One thresholding rule is used everywhere: ``pred = score >= threshold`` on the adapter's
scale (higher = more anomalous). :func:`evaluate` never raises on edge cases: a metric that is
undefined for the input (e.g. ROC-AUC with a single class) is ``None``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.detection.features import ListVectorizer
from loglead_lo2.detection.leakage import leakage_report
from loglead_lo2.detection.records import HoldoutMetrics
from loglead_lo2.detection.registry import ModelSpec, available_numeric
from loglead_lo2.errors import UserError
from loglead_lo2.metrics_utils import (
    false_positive_rate_at_alpha,
    precision_at_k,
    ranking_aucs,
)

log = logging.getLogger(__name__)

FALLBACK_PERCENTILE = 99.0
"""Percentile of the training normal rows' scores used when a spec has no threshold."""



@dataclass
class FittedModel:
    """A fitted registry model with its vectoriser, threshold and fit statistics."""

    key: str
    spec: ModelSpec
    estimator: Any
    vectorizer: ListVectorizer
    fit_seconds: float
    train_rows: int
    train_runs: list[str]
    resource: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    threshold_source: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    bounded: dict[str, Any] = field(default_factory=dict)
    """How the fit stayed bounded (:meth:`~.budget.FitPlan.as_dict`: sample, vocabulary
    cap, memory estimate); empty for a loaded bundle."""

    @property
    def bounded_text(self) -> str:
        return str(self.bounded.get("text") or "")


def _resource(fitted_est: Any, vec: ListVectorizer, seconds: float) -> dict[str, Any]:
    try:
        from loglead_lo2.detection.guards import resource_stats
    except ImportError:  # pragma: no cover - guards is part of the package
        return {"fit_seconds": round(seconds, 4), "features": len(vec.feature_names_),
                "vocabulary": len(vec.vocabulary_)}
    return resource_stats(fitted_est, vec, seconds, n_features=len(vec.feature_names_))


def fit_model(
    spec: ModelSpec,
    train_df: pl.DataFrame,
    *,
    guards: Mapping[str, Any] | None = None,
    seed: int = 42,
    fit_runs: Sequence[str] | None = None,
    memory_guard: bool = True,
) -> FittedModel:
    """Fit ``spec`` on the rows of ``train_df`` it trains on (all, or normal ones only).

    ``fit_runs``: only the rows of these runs (the runner's training runs minus its
    calibration runs; selected by index, so the large frame is not copied). A spec with
    ``max_fit_rows`` is fitted on a seeded, run-stratified sample of them; with
    ``memory_guard`` a fit estimated over the budget raises
    :class:`~loglead_lo2.detection.budget.ModelSkipped` (see :mod:`.budget`); the plan is
    ``bounded`` of the result.

    ``train_df`` must hold the training runs only. ``guards`` is the mapping of
    :meth:`loglead_lo2.detection.guards.GuardPlan.as_mapping`: ``{"params": {...},
    "vectorizer": {...}}`` overrides for the estimator and the vectoriser. ``seed`` replaces
    ``random_state`` wherever the estimator has one. The vectoriser is fitted on the same
    rows as the estimator, so normal-only models never see an anomalous row.
    """
    from loglead_lo2.detection import budget as bud

    guards = guards or {}
    keep = np.ones(train_df.height, dtype=bool)
    if fit_runs is not None:
        keep &= train_df.get_column("run").is_in(list(fit_runs)).to_numpy()
    if spec.train_on == "normal":
        keep &= train_df.get_column("normal").to_numpy().astype(bool)
    base = np.flatnonzero(keep)
    run_frame = (train_df.select("run")[base] if "run" in train_df.columns
                 else pl.DataFrame({"run": ["all"] * base.size}))
    pick = base[bud.sample_indices(spec, run_frame, seed)]
    rows = train_df if pick.size == train_df.height else train_df[pick]
    if rows.height == 0:
        which = "normal " if spec.train_on == "normal" else ""
        raise UserError(f"{spec.key}: no {which}training rows to fit on.")
    y = rows.get_column("anomaly").cast(pl.Int64).to_numpy()
    if spec.supervised and np.unique(y).size < 2:
        raise UserError(
            f"{spec.key}: training rows hold a single class; a supervised model needs normal"
            " and anomalous sequences in the training runs."
        )
    numeric = available_numeric(spec, train_df.columns)
    vec_params = {**spec.vectorizer, **dict(guards.get("vectorizer") or {})}
    plan = bud.plan_fit(spec, int(base.size), rows, seed=seed, n_numeric=len(numeric),
                        vectorizer=vec_params, budget=bud.fit_budget(memory_guard))
    vec = spec.make_vectorizer(numeric=numeric, **dict(guards.get("vectorizer") or {}))
    params = {**spec.params, **dict(guards.get("params") or {})}
    if "random_state" in params:
        params["random_state"] = seed
    if spec.adapt is not None:
        params = spec.adapt(dict(params), rows.height)
    started = time.perf_counter()
    X = vec.fit_transform(rows)
    estimator = spec.factory(**params)
    if spec.supervised:
        estimator.fit(X, y)
    else:
        estimator.fit(X)
    seconds = time.perf_counter() - started
    threshold = spec.default_threshold(estimator)
    if threshold is None:
        normal_rows = y == 0
        train_scores = spec.scores(estimator, X[np.flatnonzero(normal_rows)])
        threshold = float(np.percentile(train_scores, FALLBACK_PERCENTILE))
        source = f"{FALLBACK_PERCENTILE:g}th percentile of training normal scores"
    else:
        source = spec.cutoff or f"model default ({spec.score} scale)"
    runs = sorted(rows.get_column("run").unique().to_list()) if "run" in rows.columns else []
    fitted = FittedModel(
        key=spec.key, spec=spec, estimator=estimator, vectorizer=vec, fit_seconds=seconds,
        train_rows=rows.height, train_runs=runs, threshold=threshold, threshold_source=source,
        params=params, bounded=plan.as_dict(len(vec.vocabulary_)),
    )
    fitted.resource = _resource(estimator, vec, seconds)
    log.info("fitted %s on %d rows in %.2fs", spec.key, rows.height, seconds)
    return fitted


def score_rows(spec: ModelSpec, estimator: Any, vectorizer: Any, df: pl.DataFrame,
               batch_size: int = 50_000) -> np.ndarray:
    """Scores of every ``df`` row by ``spec``'s adapter (higher = more anomalous), vectorised
    in row batches: the one scoring loop of fitted models, saved bundles and the forest."""
    if batch_size < 1:
        raise UserError(f"--predict-batch-size must be >= 1, got {batch_size}.")
    parts = [spec.scores(estimator, vectorizer.transform(df.slice(off, batch_size)))
             for off in range(0, df.height, batch_size)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def score_model(fitted: FittedModel, df: pl.DataFrame, batch_size: int = 50_000) -> np.ndarray:
    """Scores of every ``df`` row (higher = more anomalous), vectorised in row batches."""
    return score_rows(fitted.spec, fitted.estimator, fitted.vectorizer, df, batch_size)


def threshold_scores(scores: np.ndarray, threshold: float) -> np.ndarray:
    """THE thresholding rule: ``1`` where ``score >= threshold``, else ``0`` (int8)."""
    return (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int8)


def percentile_threshold(scores: np.ndarray, percentile: float) -> float | None:
    """``percentile`` (0-100) of ``scores``; ``None`` for empty input."""
    if not 0 <= percentile <= 100:
        raise UserError(f"threshold percentile must be within 0-100, got {percentile}.")
    s = np.asarray(scores, dtype=np.float64)
    return float(np.percentile(s, percentile)) if s.size else None


def _ratio(num: int, den: int) -> float | None:
    return float(num / den) if den else None


def evaluate(y_true: Any, scores: Any, **options: Any) -> dict[str, Any]:
    """:func:`evaluate_metrics` (same keyword options) as the ``metrics`` dict of
    ``<model>.json``."""
    return evaluate_metrics(y_true, scores, **options).to_dict()


def evaluate_metrics(
    y_true: Any,
    scores: Any,
    *,
    threshold: float,
    k: int | None = None,
    alpha: float | None = None,
    groups: Any = None,
) -> HoldoutMetrics:
    """Classification and ranking metrics of ``scores`` against ``y_true`` (1 = anomaly).

    Fields of the :class:`~loglead_lo2.detection.records.HoldoutMetrics`: ``accuracy``,
    ``precision``, ``recall``, ``f1``, ``roc_auc``, ``pr_auc``,
    ``precision_at_k``, ``fp_rate_at_alpha``, ``support_pos``, ``support_neg``, ``tp``,
    ``fp``, ``tn``, ``fn``, ``threshold``, ``k``, ``k_rows`` (the rows precision@k was taken
    over: ``min(k, rows)``), ``k_note`` (set when ``k`` exceeds the rows, where precision@k is
    the base rate), ``alpha``, and with ``groups`` (the ``row_group`` of every row):
    ``fp_rate_correct`` / ``fp_rate_non_target`` (flagged share of the ``correct`` /
    ``non-target`` rows, which hold no injected error in either label mode) with their
    counts ``n_correct`` / ``n_non_target``. Undefined values are ``None``:
    precision without predicted positives, recall without positives, F1 when there are
    neither positives nor flagged rows, ROC-AUC / PR-AUC with a single class, everything on
    empty input.
    """
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise ValueError(f"y_true has {y.size} values but scores has {s.size}")
    pred = threshold_scores(s, threshold).astype(bool)
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    # F1 = 2TP / (2TP + FP + FN): 0 when anomalies exist and none is found (also when nothing
    # is flagged, where precision is undefined); undefined only without positives and flags.
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    roc_auc, pr_auc = ranking_aucs(y, s)
    k_note = None
    if k is not None and k > y.size:
        k_note = (f"k={k} exceeds the {y.size} evaluated rows: precision@k is taken over all "
                  "of them and equals the anomalous share")
    by_group: dict[str, Any] = {}
    if groups is not None:
        g = np.asarray(groups).ravel()
        if g.size != y.size:
            raise ValueError(f"groups has {g.size} values but scores has {s.size}")
        for name, group in (("correct", "correct"), ("non_target", "non-target")):
            mask = g == group
            by_group[f"n_{name}"] = int(mask.sum())
            by_group[f"fp_rate_{name}"] = float(pred[mask].mean()) if mask.any() else None
    return HoldoutMetrics(
        accuracy=_ratio(tp + tn, y.size),
        precision=precision,
        recall=recall,
        f1=f1,
        roc_auc=roc_auc,
        pr_auc=pr_auc,
        precision_at_k=precision_at_k(y, s, k) if k is not None else None,
        fp_rate_at_alpha=(
            false_positive_rate_at_alpha(y, s, alpha) if alpha is not None else None
        ),
        support_pos=int(y.sum()),
        support_neg=int((~y).sum()),
        tp=tp, fp=fp, tn=tn, fn=fn,
        threshold=float(threshold),
        k=k,
        k_rows=None if k is None else min(k, y.size),
        k_note=k_note,
        alpha=alpha,
        **by_group,
    )


def per_test_case_recall(df: pl.DataFrame, pred: Any) -> pl.DataFrame:
    """Per error test case: ``test_case``, ``n`` sequences, ``detected`` (pred = 1), ``recall``.

    ``pred`` is aligned with ``df``'s rows; ``correct`` rows are left out (their flags are
    false positives, reported by :func:`evaluate`). Sorted by test case.
    """
    p = np.asarray(pred).astype(bool).ravel()
    if p.size != df.height:
        raise ValueError(f"pred has {p.size} values but the frame has {df.height} rows")
    schema = {"test_case": pl.String, "n": pl.Int64, "detected": pl.Int64,
              "recall": pl.Float64}
    if df.height == 0:
        return pl.DataFrame(schema=schema)
    return (
        df.select("test_case", "anomaly")
        .with_columns(pl.Series("__pred", p))
        .filter(pl.col("anomaly"))
        .group_by("test_case")
        .agg(n=pl.len().cast(pl.Int64), detected=pl.col("__pred").sum().cast(pl.Int64))
        .with_columns(recall=pl.col("detected") / pl.col("n"))
        .sort("test_case")
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
    )


__all__ = [
    "FALLBACK_PERCENTILE",
    "FittedModel",
    "evaluate",
    "evaluate_metrics",
    "fit_model",
    "leakage_report",
    "per_test_case_recall",
    "percentile_threshold",
    "score_model",
    "score_rows",
    "threshold_scores",
]
