"""SHAP explanations of registry models on held-out sequences.

The explainer is chosen from the registry's ``shap`` kind (:data:`EXPLAINERS`), never from the
estimator's class:

* ``linear``: ``shap.LinearExplainer`` on ``(coef, intercept)`` with an independent masker
  built from background rows. SHAP values are on the model's margin (log-odds for logistic
  regression, the decision value for a linear SVM). They are exact per feature, so keeping only
  the top features (by ``|weight| x std``) loses nothing for the features reported.
* ``tree``: ``shap.TreeExplainer`` (``tree_path_dependent``: the trees' own cover statistics,
  no background). scikit-learn trees are explained on P(anomaly), XGBoost on its raw margin
  (log-odds). Features the trees never split on have SHAP 0; beyond that, the top features by
  ``feature_importances_`` are reported. XGBoost gets the same sparse matrix it was trained on
  (zero = missing there); scikit-learn trees get dense row batches (shap reads them densely).
* ``kernel``: ``shap.KernelExplainer`` (sampled) on the model's anomaly score, for detectors
  without weights. At most :data:`KERNEL_MAX_ROWS` rows, :data:`KERNEL_MAX_BACKGROUND`
  background rows and :data:`KERNEL_MAX_FEATURES` features (those deviating most from the
  background mean) are explained; the other features stay at each row's own values.

Guards: more features than ``feature_threshold`` -> only the top ones are explained; more than
``cell_threshold`` rows x features -> fewer rows. Every reduction is returned as a warning.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from loglead_lo2.schema import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

KERNEL_MAX_ROWS = 20
KERNEL_MAX_BACKGROUND = 20
KERNEL_MAX_FEATURES = 20
PLOT_TOP_N = 20
SHAP_COLUMNS: tuple[str, ...] = ("rank", "feature", "mean_abs_shap", "mean_shap", "direction",
                                 "meaning")
"""``meaning``: what a metric feature measures (``mx_*`` columns; empty for a token)."""
VALUES_COLUMNS: tuple[str, ...] = ("seq_id", "feature", "shap", "value")
VALUES_TOP_N = 20


@dataclass(frozen=True)
class ShapSettings:
    """The ``--shap-*`` flags."""

    sample: int = 200
    background: int = 256
    feature_threshold: int = 2000
    cell_threshold: int = 2_000_000
    seed: int = 42


@dataclass
class ShapOutcome:
    """SHAP values of one model on held-out rows and how they were obtained."""

    key: str
    explainer: str
    scale: str
    rows: int
    background_rows: int
    features_total: int
    features_explained: int
    table: pl.DataFrame
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    values: pl.DataFrame | None = None
    """Per-row SHAP values of the top :data:`VALUES_TOP_N` features (long form:
    :data:`VALUES_COLUMNS`), for beeswarm plots; written by :func:`write_shap_values`."""


@dataclass
class _Values:
    values: np.ndarray  # rows x explained features
    data: np.ndarray  # the same rows' feature values (dense), for the direction
    features: np.ndarray  # column indices into the vectoriser's features
    scale: str
    background_rows: int


def _cap_rows(key: str, n: int, k: int, s: ShapSettings, warnings: list[str]) -> int:
    if k and n * k > s.cell_threshold:
        capped = max(1, s.cell_threshold // k)
        warnings.append(
            f"[SHAP] {key}: {n} rows x {k} features = {n * k:,} cells > "
            f"--shap-cell-threshold {s.cell_threshold:,}; explaining {capped} rows"
        )
        return capped
    return n


def _spread(total: int, n: int) -> np.ndarray:
    """``n`` row indices spread evenly over ``range(total)`` (the samples are sorted by
    ``seq_id``, so the first rows would all come from a few test cases)."""
    n = min(n, total)
    return np.floor(np.linspace(0, total - 1, n)).astype(np.int64) if n else np.zeros(0, int)


def _top(importance: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` largest values (ties: lower index first), ascending order."""
    order = np.lexsort((np.arange(importance.size), -importance))
    return np.sort(order[:limit])


def _column_std(B: sp.csr_matrix) -> np.ndarray:
    mean = np.asarray(B.mean(axis=0)).ravel()
    sq = np.asarray(B.multiply(B).mean(axis=0)).ravel()
    return np.sqrt(np.maximum(sq - mean**2, 0.0))


def _linear(key: str, est: Any, X: sp.csr_matrix, B: sp.csr_matrix, s: ShapSettings,
            warnings: list[str], score: Callable[[Any], np.ndarray]) -> _Values:
    import shap

    coef = np.asarray(est.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(est.intercept_, dtype=np.float64).reshape(-1)[0])
    n_feat = coef.size
    sel = np.arange(n_feat)
    if n_feat > s.feature_threshold:
        sel = _top(np.abs(coef) * _column_std(B), s.feature_threshold)
        warnings.append(
            f"[SHAP] {key}: {n_feat:,} features > --shap-feature-threshold "
            f"{s.feature_threshold:,}; explaining the top {sel.size:,} by |weight| x std "
            "(exact for those: linear SHAP is per feature)"
        )
    n = _cap_rows(key, X.shape[0], sel.size, s, warnings)
    Xs = X[_spread(X.shape[0], n)][:, sel].toarray()
    explainer = shap.LinearExplainer((coef[sel], intercept), B[:, sel].toarray())
    values = np.asarray(explainer.shap_values(Xs), dtype=np.float64).reshape(Xs.shape)
    scale = f"margin of {type(est).__name__} (decision function; log-odds for logistic models)"
    return _Values(values, Xs, sel, scale, B.shape[0])


def _positive_class(values: Any, est: Any) -> tuple[np.ndarray, bool]:
    """shap returns (rows, features) for one output and (rows, features, classes) or a list
    per class for classifiers with several outputs; keep class ``1`` (anomaly)."""
    classes = [int(c) for c in getattr(est, "classes_", [0, 1])]
    pos = classes.index(1) if 1 in classes else len(classes) - 1
    if isinstance(values, list):
        return np.asarray(values[pos], dtype=np.float64), True
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 3:
        return arr[:, :, pos], True
    return arr, False


def _tree(key: str, est: Any, X: sp.csr_matrix, B: sp.csr_matrix, s: ShapSettings,
          warnings: list[str], score: Callable[[Any], np.ndarray]) -> _Values:
    import shap

    importance = np.asarray(est.feature_importances_, dtype=np.float64)
    used = np.flatnonzero(importance > 0)
    if used.size == 0:
        warnings.append(f"[SHAP] {key}: the trees split on no feature; nothing to explain")
        empty = np.zeros((0, 0))
        return _Values(empty, empty, used, "n/a", 0)
    sel = used
    if used.size > s.feature_threshold:
        sel = _top(importance, s.feature_threshold)
        warnings.append(
            f"[SHAP] {key}: the trees use {used.size:,} features > --shap-feature-threshold "
            f"{s.feature_threshold:,}; reporting the top {sel.size:,} by feature_importances_"
        )
    n = _cap_rows(key, X.shape[0], sel.size, s, warnings)
    X = X[_spread(X.shape[0], n)]
    explainer = shap.TreeExplainer(est)
    sparse_ok = hasattr(est, "get_booster")  # XGBoost: sparse zeros are "missing" as in training
    batch = max(1, min(n, s.cell_threshold // max(1, X.shape[1])))
    parts, probability = [], False
    for start in range(0, n, batch):
        block = X[start:min(n, start + batch)]
        raw = explainer.shap_values(block if sparse_ok else block.toarray())
        vals, probability = _positive_class(raw, est)
        parts.append(vals[:, sel])
    values = np.vstack(parts) if parts else np.zeros((0, sel.size))
    scale = ("P(anomaly) of the trees" if probability
             else f"raw margin (log-odds) of {type(est).__name__}")
    return _Values(values, X[:, sel].toarray(), sel, scale, 0)


def _kernel(key: str, est: Any, X: sp.csr_matrix, B: sp.csr_matrix, s: ShapSettings,
            warnings: list[str], score: Callable[[Any], np.ndarray]) -> _Values:
    import shap

    n_feat = X.shape[1]
    n = min(X.shape[0], KERNEL_MAX_ROWS)
    n_bg = min(B.shape[0], KERNEL_MAX_BACKGROUND)
    k = min(n_feat, s.feature_threshold, KERNEL_MAX_FEATURES)
    warnings.append(
        f"[SHAP] {key}: KernelExplainer is sampled: {n} of {X.shape[0]} rows, {n_bg} of "
        f"{B.shape[0]} background rows, {k} of {n_feat:,} features (largest mean |value - "
        "background mean|); the other features stay at each row's own values"
    )
    n = _cap_rows(key, n, k, s, warnings)
    X = X[_spread(X.shape[0], n)]
    bg_mean = np.asarray(B.mean(axis=0)).ravel()
    deviation = np.abs(X.toarray() - bg_mean).mean(axis=0)
    sel = _top(deviation, k)
    keep = np.ones(n_feat)
    keep[sel] = 0.0
    Xs = X[:, sel].toarray()
    Bs = B[_spread(B.shape[0], n_bg)][:, sel].toarray()
    rows = []
    state = np.random.get_state()
    try:
        for i in range(n):
            base = sp.csr_matrix(X[i].multiply(keep))

            def f(Z: np.ndarray, base: sp.csr_matrix = base) -> np.ndarray:
                m = Z.shape[0]
                filled = sp.csr_matrix(
                    (np.asarray(Z, dtype=np.float64).ravel(),
                     (np.repeat(np.arange(m), k), np.tile(sel, m))),
                    shape=(m, n_feat),
                )
                return score(base[np.zeros(m, dtype=np.int64)] + filled)

            np.random.seed(s.seed + i)  # KernelExplainer samples coalitions with np.random
            explainer = shap.KernelExplainer(f, Bs, link="identity")
            vals = explainer.shap_values(Xs[i:i + 1], nsamples=2 * k + 256, l1_reg=False,
                                         silent=True)
            rows.append(np.asarray(vals, dtype=np.float64).reshape(-1)[:k])
    finally:
        np.random.set_state(state)
    values = np.vstack(rows) if rows else np.zeros((0, k))
    return _Values(values, Xs, sel, "anomaly score of the model (higher = more anomalous)",
                   n_bg)


EXPLAINERS: dict[str, Callable[..., _Values]] = {
    "linear": _linear,
    "tree": _tree,
    "kernel": _kernel,
}
"""Registry ``shap`` kind -> explainer (``none`` has none)."""


def _directions(data: np.ndarray, values: np.ndarray) -> list[str]:
    """Per feature: does a higher value raise or lower the score (sign of the covariance of
    feature value and SHAP value; the mean SHAP sign when the feature is constant)."""
    if values.shape[0] == 0:
        return ["none"] * values.shape[1]
    cov = ((data - data.mean(axis=0)) * (values - values.mean(axis=0))).sum(axis=0)
    mean = values.mean(axis=0)
    sign = np.where(np.abs(cov) > 1e-12, np.sign(cov), np.sign(np.round(mean, 12)))
    return ["raises score" if v > 0 else "lowers score" if v < 0 else "none" for v in sign]


def _table(names: list[str], vals: _Values) -> pl.DataFrame:
    from loglead_lo2.enhancers.metric_features import describe

    v = vals.values
    if v.size == 0:
        return pl.DataFrame(schema={"rank": pl.Int64, "feature": pl.String,
                                    "mean_abs_shap": pl.Float64, "mean_shap": pl.Float64,
                                    "direction": pl.String, "meaning": pl.String})
    features = [names[i] for i in vals.features]
    return (
        pl.DataFrame({
            "feature": features,
            "mean_abs_shap": np.abs(v).mean(axis=0),
            "mean_shap": v.mean(axis=0),
            "direction": _directions(vals.data, v),
            "meaning": [describe(f) or "" for f in features],
        })
        .sort(["mean_abs_shap", "feature"], descending=[True, False])
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64))
    )


def _values_frame(names: list[str], vals: _Values, table: pl.DataFrame,
                  seq_ids: list[str]) -> pl.DataFrame:
    """Long-form SHAP and feature values of each explained row for the top features."""
    column = {names[int(i)]: j for j, i in enumerate(vals.features)}
    out: dict[str, list[Any]] = {c: [] for c in VALUES_COLUMNS}
    n = min(vals.values.shape[0], len(seq_ids))
    for name in table.head(VALUES_TOP_N)["feature"].to_list():
        j = column.get(name)
        if j is None:
            continue
        out["seq_id"] += seq_ids[:n]
        out["feature"] += [name] * n
        out["shap"] += [float(v) for v in vals.values[:n, j]]
        out["value"] += [float(v) for v in np.asarray(vals.data[:n, j]).ravel()]
    return pl.DataFrame(out, schema={"seq_id": pl.String, "feature": pl.String,
                                     "shap": pl.Float64, "value": pl.Float64})


def _sample(height: int, size: int, rng: np.random.Generator) -> np.ndarray:
    if height <= size:
        return np.arange(height)
    return np.sort(rng.choice(height, size=size, replace=False))


def explain_model(fitted: Any, hold: pl.DataFrame, train: pl.DataFrame,
                  settings: ShapSettings) -> ShapOutcome:
    """SHAP values of a fitted registry model (``FittedModel``) on a seeded sample of the
    held-out rows ``hold``; background rows are drawn from the rows of ``train`` the model was
    fitted on (normal ones for normal-only models)."""
    spec = fitted.spec
    if spec.shap not in EXPLAINERS:
        raise ValueError(f"{spec.key}: registry shap kind {spec.shap!r} has no explainer")
    started = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    rows = hold[_sample(hold.height, settings.sample, rng)]
    pool = train.filter(pl.col("normal")) if spec.train_on == "normal" else train
    back = pool[_sample(pool.height, settings.background, rng)]
    X = fitted.vectorizer.transform(rows)
    B = fitted.vectorizer.transform(back)
    warnings: list[str] = []
    vals = EXPLAINERS[spec.shap](
        spec.key, fitted.estimator, X, B, settings, warnings,
        lambda M: spec.scores(fitted.estimator, M),
    )
    names = list(fitted.vectorizer.feature_names_)
    table = _table(names, vals)
    seq_ids = (rows["seq_id"].cast(pl.String).to_list() if "seq_id" in rows.columns
               else [str(i) for i in range(rows.height)])
    return ShapOutcome(
        key=spec.key, explainer=spec.shap, scale=vals.scale, rows=int(vals.values.shape[0]),
        background_rows=vals.background_rows, features_total=X.shape[1],
        features_explained=int(vals.features.size), table=table,
        seconds=time.perf_counter() - started, warnings=warnings,
        values=_values_frame(names, vals, table, seq_ids),
    )


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def plot_summary(outcome: ShapOutcome, path: Path, held_out_runs: int) -> None:
    """Bar plot of the top :data:`PLOT_TOP_N` mean |SHAP| (red: a higher value raises the
    score, blue: lowers it), rendered with the Agg canvas (no display, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = outcome.table.head(PLOT_TOP_N)
    fig = Figure(figsize=(9, 1.6 + 0.32 * max(top.height, 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if top.height:
        from loglead_lo2.enhancers.metric_features import label

        names = [label(n, 45) for n in top["feature"].to_list()]
        colors = ["#c0392b" if d == "raises score" else "#2e86c1" if d == "lowers score"
                  else "#7f8c8d" for d in top["direction"].to_list()]
        ypos = np.arange(top.height)[::-1]
        ax.barh(ypos, top["mean_abs_shap"].to_numpy(), color=colors)
        ax.set_yticks(ypos, labels=names, fontsize=8)
        ax.set_xlabel(f"mean |SHAP| ({outcome.scale})", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no feature to explain (see summary.md)", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(
        f"{outcome.key}: {outcome.explainer} SHAP on {outcome.rows} HELD-OUT sequences "
        f"({held_out_runs} run(s))\nred = higher value raises the anomaly score, blue = "
        "lowers it", fontsize=9,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _write_bytes_atomic(path, buf.getvalue())


def write_shap(outcome: ShapOutcome, out_dir: Path, held_out_runs: int) -> list[Path]:
    """``shap_<key>_top_features.csv`` (every explained feature, by mean |SHAP|) and
    ``shap_<key>_summary.png``."""
    csv_path = out_dir / f"shap_{outcome.key}_top_features.csv"
    png_path = out_dir / f"shap_{outcome.key}_summary.png"
    write_text_atomic(csv_path, outcome.table.write_csv())
    plot_summary(outcome, png_path, held_out_runs)
    return [csv_path, png_path]


def write_shap_values(outcome: ShapOutcome, out_dir: Path) -> Path | None:
    """``shap_<key>_values.parquet``: the per-row values of :attr:`ShapOutcome.values`."""
    if outcome.values is None:
        return None
    from loglead_lo2.schema import write_parquet

    path = out_dir / f"shap_{outcome.key}_values.parquet"
    write_parquet(outcome.values, path)
    return path


__all__ = [
    "EXPLAINERS",
    "SHAP_COLUMNS",
    "VALUES_COLUMNS",
    "ShapOutcome",
    "ShapSettings",
    "explain_model",
    "plot_summary",
    "write_shap",
    "write_shap_values",
]
