"""Isolation Forest baseline (phase D): train on normal sequences, score every sequence.

* Training uses the ``correct`` (normal) sequences of the training runs only. The newest
  normal runs among them (``holdout_fraction``) are held out to calibrate the threshold.
* ``score_if`` is ``-IsolationForest.score_samples``: higher = more anomalous.
  ``rank_if`` is its dense rank (1 = most anomalous).
* The forest is the registry entry ``isolation_forest`` (:func:`forest_spec` configures it
  from these flags) and is fitted, thresholded and scored by the one model path
  (:mod:`loglead_lo2.detection.runner`); :func:`train_iforest` is that path for a training
  frame. Thresholds (:func:`forest_thresholds`): an explicit ``threshold_percentile`` of the
  calibration normal scores, else the run's rule (``fp-target`` on the calibration normal
  rows, or the forest's own ``contamination`` cut-off). One rule: ``pred = score >= threshold``.

:func:`score_with_bundle` is the short way to score new data with a saved bundle::

    from loglead_lo2.detection.iforest import score_with_bundle
    from loglead_lo2.schema import read_parquet
    seqs = read_parquet("demo/result/lo2/lo2_sequences_enhanced.parquet")
    preds = score_with_bundle(seqs, "models/lo2_if.joblib")   # threshold from models/model.yml
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.detection.defaults import IF_KEY, IF_VECTORIZER
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

IF_ITEMS: tuple[str, ...] = ("e_words", "e_trigrams", "e_event_drain_id")
# Columns copied from the input into the predictions file (when present).
PREDICTION_KEYS: tuple[str, ...] = (
    "seq_id", "run", "test_case", "service", "window", "normal", "anomaly", "target_service",
)
_EXCLUDED_NUMERIC = frozenset({"window", "line_no"})
@dataclass(frozen=True)
class IFConfig:
    """Isolation Forest settings (the ``--if-*`` flags)."""

    item: str | None = "e_words"
    numeric: tuple[str, ...] = ()
    contamination: float | str = "auto"
    n_estimators: int = 100
    max_samples: int | float | str = "auto"
    holdout_fraction: float = 0.2
    threshold_percentile: float | None = None
    seed: int = 42
    batch_size: int = 50_000
    vectorizer: Mapping[str, Any] = field(default_factory=lambda: dict(IF_VECTORIZER))

    def estimator_params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "max_samples": self.max_samples,
            "contamination": self.contamination,
            "random_state": self.seed,
        }


@dataclass
class IFResult:
    """A fitted (or loaded) forest, its threshold and where the numbers came from."""

    model: Any
    vectorizer: Any
    threshold: float
    threshold_source: str
    percentile: float | None
    fit_runs: list[str]
    threshold_runs: list[str]
    fit_rows: int
    threshold_rows: int
    fit_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def numeric_candidates(schema: Mapping[str, pl.DataType]) -> list[str]:
    """Numeric sequence columns that may be used as ``--if-numeric`` features."""
    return sorted(
        name for name, dtype in schema.items()
        if dtype.is_numeric() and name not in _EXCLUDED_NUMERIC
    )


def resolve_numeric(text: str | Iterable[str] | None,
                    schema: Mapping[str, pl.DataType]) -> tuple[tuple[str, ...], list[str]]:
    """Parse ``--if-numeric`` against the sequence table; returns (columns, notes).

    ``duration`` is read as ``duration_sec``; ``e_chars_len`` is accepted with a note (at
    sequence level it is the per-sequence sum of the events' character counts). Unknown
    names raise a UserError listing the available numeric columns.
    """
    if text is None:
        return (), []
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    available = numeric_candidates(schema)
    out: list[str] = []
    notes: list[str] = []
    unknown: list[str] = []
    for name in names:
        if name == "duration" and "duration_sec" in available:
            notes.append("[IF] --if-numeric duration: using duration_sec (seconds)")
            name = "duration_sec"
        if name not in available:
            unknown.append(name)
            continue
        if name == "e_chars_len":
            notes.append(
                "[IF] note: e_chars_len is an event-level length; at sequence level the "
                "column holds the per-sequence SUM of the events' character counts"
            )
        if name not in out:
            out.append(name)
    if unknown:
        raise UserError(
            f"--if-numeric: unknown column(s) {', '.join(unknown)}; available numeric "
            f"sequence columns: {', '.join(available) or 'none'}."
        )
    return tuple(out), notes


def score_iforest(model: Any, vectorizer: Any, df: pl.DataFrame,
                  batch_size: int = 50_000) -> np.ndarray:
    """``score_if`` for every row of ``df``, in batches: higher = more anomalous (the
    registry's ``isolation_forest`` adapter, ``-score_samples``)."""
    from loglead_lo2.detection.evaluate import score_rows
    from loglead_lo2.detection.registry import REGISTRY

    return score_rows(REGISTRY[IF_KEY], model, vectorizer, df, batch_size)


def make_forest(config: IFConfig, overrides: Mapping[str, Any] | None = None) -> Any:
    from sklearn.ensemble import IsolationForest

    params = {**config.estimator_params(), **(overrides or {})}
    return IsolationForest(**params)


def forest_spec(config: IFConfig) -> Any:
    """The registry's ``isolation_forest`` entry configured by ``config`` (the ``--if-*``
    flags): token column, numeric columns, vectoriser settings and forest parameters."""
    from dataclasses import replace

    from loglead_lo2.detection.registry import REGISTRY

    base = REGISTRY[IF_KEY]
    return replace(base, item=config.item, numeric=tuple(config.numeric),
                   vectorizer=dict(config.vectorizer),
                   params={**base.params, **config.estimator_params()},
                   cutoff=f"contamination={config.contamination} (the forest's own cut-off "
                          "on its training scores)")


def forest_thresholds(config: IFConfig, rule: str = "model",
                      fp_target: float = 0.01) -> Any:
    """The forest's :class:`~loglead_lo2.detection.thresholds.ThresholdSettings`: an explicit
    ``threshold_percentile`` wins; otherwise ``rule`` (``fp-target`` or ``model``: the
    contamination cut-off). Its calibration runs are ``holdout_fraction`` of the training
    runs."""
    from loglead_lo2.detection.thresholds import ThresholdSettings

    if config.threshold_percentile is not None:
        return ThresholdSettings("percentile", fp_target, config.holdout_fraction,
                                 percentile=config.threshold_percentile)
    return ThresholdSettings(rule, fp_target, config.holdout_fraction)


def result_of(run: Any, config: IFConfig, notes: Sequence[str] = ()) -> IFResult:
    """An :class:`IFResult` view of a :class:`~loglead_lo2.detection.runner.ModelRun`."""
    thr = run.threshold
    return IFResult(
        model=run.fitted.estimator, vectorizer=run.fitted.vectorizer, threshold=thr.value,
        threshold_source=thr.source,
        percentile=config.threshold_percentile if thr.rule == "percentile" else None,
        fit_runs=sorted(run.fitted.train_runs), threshold_runs=list(thr.calibration_runs),
        fit_rows=run.fitted.train_rows, threshold_rows=thr.calibration_rows,
        fit_seconds=run.fitted.fit_seconds, notes=[*notes, *(f"[IF] {n}" for n in thr.notes)])


def train_iforest(train_df: pl.DataFrame, config: IFConfig,
                  overrides: Mapping[str, Any] | None = None, *, rule: str = "model",
                  fp_target: float = 0.01) -> IFResult:
    """Fit the forest on the normal rows of ``train_df`` and set its threshold, through the
    one model path (:func:`loglead_lo2.detection.runner.run_model` with
    :func:`forest_spec` and :func:`forest_thresholds`).

    ``train_df`` must hold the *training runs only*; the caller keeps evaluation runs out.
    The newest ``holdout_fraction`` of its runs are calibration runs (not fitted on) for a
    percentile or ``fp-target`` threshold; ``rule="model"`` without a percentile keeps the
    contamination cut-off. ``overrides`` replace forest parameters (memory guards).
    """
    from loglead_lo2.detection.runner import run_model

    if not train_df["normal"].any():
        raise UserError("Isolation Forest: no normal ('correct') sequences in the training runs.")
    settings = forest_thresholds(config, rule, fp_target)
    run = run_model(forest_spec(config), train_df, train_df, [], settings,
                    guards={"params": dict(overrides or {})}, seed=config.seed,
                    batch_size=config.batch_size)
    notes = []
    asked, used = config.max_samples, run.fitted.params.get("max_samples")
    if isinstance(asked, int) and used != asked:
        notes.append(f"[IF] --if-max-samples {asked} > {run.fitted.train_rows} training rows; "
                     f"using {used}")
    if run.calibration.calibration_runs:
        notes.append(f"[IF] {run.calibration.note}")
    return result_of(run, config, notes)


def dense_rank_desc(scores: np.ndarray) -> np.ndarray:
    """Dense rank of ``scores``, 1 = highest score (ties share a rank)."""
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    return pl.Series(scores).rank(method="dense", descending=True).cast(pl.Int64).to_numpy()


def predictions_frame(df: pl.DataFrame, scores: np.ndarray, threshold: float | None,
                      split: pl.Series | None = None) -> pl.DataFrame:
    """Keys + ``split`` + ``score_if`` + ``rank_if`` (+ ``pred_if_threshold``) per sequence."""
    keys = [c for c in PREDICTION_KEYS if c in df.columns]
    out = df.select(keys)
    if split is not None:
        out = out.with_columns(split.alias("split"))
    out = out.with_columns(
        score_if=pl.Series(scores, dtype=pl.Float64),
        rank_if=pl.Series(dense_rank_desc(scores), dtype=pl.Int64),
    )
    if threshold is not None:
        out = out.with_columns(pred_if_threshold=(pl.col("score_if") >= threshold).cast(pl.Int8))
    return out


def write_predictions(df: pl.DataFrame, path: str | os.PathLike[str]) -> str:
    """Write predictions as Parquet, or CSV when the suffix is ``.csv``; returns the format."""
    from pathlib import Path

    from loglead_lo2.schema import write_parquet, write_text_atomic

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        write_text_atomic(path, df.write_csv())
        return "csv"
    if suffix not in (".parquet", ".pq"):
        raise UserError(f"--save-if {path}: use a .parquet or .csv file name.")
    write_parquet(df, path)
    return "parquet"


def score_with_bundle(
    sequences: pl.DataFrame,
    bundle: str | os.PathLike[str],
    *,
    metadata: str | os.PathLike[str] | None = None,
    threshold: float | None = None,
    batch_size: int = 50_000,
    load_info: Any = None,
) -> pl.DataFrame:
    """Score enhanced sequences with a saved Isolation Forest bundle, in the forest's own
    layout (``score_if``, ``rank_if``, ``pred_if_threshold``).

    :func:`loglead_lo2.detection.scoring.score_bundle` does the work (sha256 checked against
    ``model.yml`` when present, the saved vectoriser, the registry's score adapter), with the
    bundle required to hold an Isolation Forest; the threshold is ``threshold`` or the one
    recorded in ``model.yml`` (no prediction column when neither exists). ``sequences`` is an
    enhanced-sequence table (``lo2_sequences_enhanced.parquet``).
    """
    from loglead_lo2.detection.scoring import score_bundle

    out = score_bundle(sequences, bundle, metadata=metadata, threshold=threshold,
                       batch_size=batch_size, load_info=load_info, expected_key=IF_KEY)
    scores = out.get_column("score").to_numpy()
    cut = float(out["threshold"][0]) if "threshold" in out.columns and out.height else None
    return predictions_frame(sequences, scores, cut)
