"""Run-grouped K-fold cross-validation (``--cv K``): every run is held out exactly once.

The runs are ordered by their epoch suffix and cut into ``K`` contiguous folds (sizes differ
by at most one). For each fold every model goes through the same path as on the leaderboard
(:func:`~loglead_lo2.detection.runner.run_model`: calibration runs held back from the fold's
training runs, threshold for ``--fp-target``, scores of the fold's hold-out runs), and the
fold's metrics are recorded. ``cv_folds.csv`` keeps every fold's figures; ``cv_leaderboard``
gives per (model, service) the mean, standard deviation, minimum and maximum of each metric
over the folds where it is defined, so a figure from one small hold-out can be read against
its spread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2 import artifacts as A
from loglead_lo2.detection.evaluations import Evaluations
from loglead_lo2.detection.labels import ALL_SERVICES, service_parts
from loglead_lo2.detection.records import HoldoutEvaluation, HoldoutMetrics
from loglead_lo2.detection.split import run_sort_key
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)
Say = Callable[[str], None]

GROUND_TRUTH_METRICS: dict[str, str] = {
    "gt_roc_auc": "roc_auc_true", "gt_recall": "recall", "gt_recall_1pct_fp": "recall_at_1pct_fp",
}
"""CV column -> key of the ground-truth ``overall`` block."""
CV_METRICS: tuple[str, ...] = (
    "roc_auc", "pr_auc", "f1", "precision", "recall", "fp_rate_correct",
    "fp_rate_non_target", *GROUND_TRUTH_METRICS,
)


@dataclass(frozen=True)
class Fold:
    index: int
    train_runs: tuple[str, ...]
    test_runs: tuple[str, ...]


def run_folds(runs: Sequence[str], k: int) -> list[Fold]:
    """``k`` contiguous folds of the runs in epoch order; each run is in one test side."""
    ordered = sorted(set(runs), key=run_sort_key)
    if k < 2:
        raise UserError(f"--cv needs at least 2 folds, got {k}.")
    if k > len(ordered):
        raise UserError(f"--cv {k}: only {len(ordered)} run(s) loaded; use at most "
                        f"{len(ordered)} folds or load more runs.")
    blocks = np.array_split(np.arange(len(ordered)), k)
    folds = []
    for i, block in enumerate(blocks):
        test = tuple(ordered[j] for j in block)
        folds.append(Fold(i + 1, tuple(r for r in ordered if r not in test), test))
    return folds


def _row(key: str, service: str, fold: Fold, metrics: HoldoutMetrics,
         evaluation: HoldoutEvaluation, threshold: float, rows: int) -> dict[str, Any]:
    gt = evaluation.overall
    out: dict[str, Any] = {"model": key, "service": service, "fold": fold.index,
                           "holdout_runs": ",".join(fold.test_runs), "holdout_rows": rows}
    for name in CV_METRICS:
        source = GROUND_TRUTH_METRICS.get(name)
        out[name] = getattr(metrics, name) if source is None else gt.get(source)
    out["threshold"] = threshold
    return out


def cross_validate(opts: Any, df: pl.DataFrame, specs: Sequence[Any], truth: Any, say: Say,
                   with_forest: bool) -> pl.DataFrame:
    """Per-fold metrics of every model (and the forest, configured by the ``--if-*`` flags)
    on every service part, each through :func:`~loglead_lo2.detection.runner.run_model`."""
    from loglead_lo2.detection.budget import ModelSkipped
    from loglead_lo2.detection.iforest import forest_spec, forest_thresholds
    from loglead_lo2.detection.runner import holdout_metrics, run_model

    jobs = [(spec, opts.thresholds, opts.seed) for spec in specs]
    if with_forest:
        config = opts.if_config
        jobs.insert(0, (forest_spec(config),
                        forest_thresholds(config, opts.thresholds.rule,
                                          opts.thresholds.fp_target), config.seed))
    folds = run_folds(df["run"].unique().to_list(), int(opts.cv))
    rows: list[dict[str, Any]] = []
    for fold in folds:
        say(f"[CV] fold {fold.index}/{len(folds)}: hold-out run(s) {', '.join(fold.test_runs)}")
        evals = Evaluations(truth=truth)
        parts = list(service_parts(df, list(fold.train_runs), list(fold.test_runs),
                                   opts.per_service))
        for part in parts:
            if part.skip:
                say(f"[CV] fold {fold.index}: service {part.service} skipped ({part.skip})")
                continue
            for spec, settings, seed in jobs:
                try:
                    mrun = run_model(spec, part.rows, part.train, list(fold.test_runs),
                                     settings, seed=seed, batch_size=opts.batch_size,
                                     memory_guard=opts.memory_guard)
                except UserError as exc:
                    if isinstance(exc, ModelSkipped):
                        say(f"[Resource] fold {fold.index}: {spec.key}@{part.service} "
                            f"skipped ({exc})")
                        continue
                    if part.service == ALL_SERVICES:
                        raise
                    say(f"[CV] fold {fold.index}: {spec.key}@{part.service} skipped ({exc})")
                    continue
                metrics = holdout_metrics(mrun, part.rows)
                evaluation = evals(spec.key, part.service, part.hold,
                                   mrun.scores[mrun.holdout], mrun.threshold.value)
                rows.append(_row(spec.key, part.service, fold, metrics, evaluation,
                                 mrun.threshold.value, int(mrun.holdout.sum())))
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def summarise(folds: pl.DataFrame) -> pl.DataFrame:
    """Mean / std / min / max and the number of folds per (model, service) and metric."""
    if folds.height == 0:
        return pl.DataFrame()
    aggs: list[pl.Expr] = [pl.col("fold").n_unique().alias("folds")]
    for m in CV_METRICS:
        if m not in folds.columns:
            continue
        col = pl.col(m).cast(pl.Float64)
        aggs += [col.mean().alias(f"{m}_mean"), col.std().alias(f"{m}_std"),
                 col.min().alias(f"{m}_min"), col.max().alias(f"{m}_max")]
    return (folds.group_by("model", "service").agg(aggs)
            .sort(["service", "roc_auc_mean", "model"], descending=[False, True, False],
                  nulls_last=True))


def write_cv(metrics_dir: Path, folds: pl.DataFrame, summary: pl.DataFrame, k: int,
             settings: dict[str, Any]) -> list[Path]:
    """``cv_folds.csv``, ``cv_leaderboard.csv`` and ``cv_leaderboard.md``."""
    from loglead_lo2.detection.report import markdown_table, settings_text
    from loglead_lo2.schema import write_text_atomic

    metrics_dir = Path(metrics_dir)
    paths = [metrics_dir / A.CV_FOLDS_CSV, metrics_dir / A.CV_CSV,
             metrics_dir / A.CV_MD]
    write_text_atomic(paths[0], folds.write_csv())
    write_text_atomic(paths[1], summary.write_csv())
    shown = summary
    if summary.height:
        cells = [pl.format("{} ± {}", pl.col(f"{m}_mean").round(3).cast(pl.String),
                           pl.col(f"{m}_std").round(3).cast(pl.String).fill_null("-"))
                 .fill_null("").alias(m) for m in CV_METRICS if f"{m}_mean" in summary.columns]
        shown = summary.select("model", "service", "folds", *cells)
    text = (f"# LO2 detection: run-grouped {k}-fold cross-validation\n\n"
            f"Settings: {settings_text(settings)}. Every run is held out in exactly one fold "
            "(contiguous blocks of runs in epoch order); each fold trains, calibrates and "
            "thresholds every model on the other runs exactly like the single hold-out. "
            "Cells: mean ± standard deviation over the folds where the metric is defined; "
            "min / max are in `cv_leaderboard.csv`, every fold in `cv_folds.csv`. Sorted "
            "by mean ROC-AUC within each service.\n\n"
            + (markdown_table(shown) if shown.height else "(no fold could be evaluated)\n"))
    write_text_atomic(paths[2], text)
    return paths


__all__ = ["CV_METRICS", "Fold", "cross_validate", "run_folds", "summarise", "write_cv"]
