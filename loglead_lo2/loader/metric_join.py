"""The loader's metric features: the ``mx_*`` columns of the enhanced sequences, computed run
by run from ``lo2_metrics.parquet`` while the parts are streamed into the final table
(:func:`loglead_lo2.enhancers.metric_features.metric_features` does the work)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2.enhancers.metric_features import (
    DEFAULT_FEATURES,
    MetricFeature,
    metric_features,
    present,
    read_features,
    sampling_steps,
)
from loglead_lo2.loader.metrics import SCHEMA

log = logging.getLogger(__name__)


@dataclass
class MetricJoin:
    """The features of one load, the metrics they come from, and what the join found."""

    features: tuple[MetricFeature, ...]
    source: str
    """``built-in`` or the ``--metric-features`` file."""
    missing: list[str]
    """Features whose metric is not in the metrics table (no columns written)."""
    steps: dict[str, float | None]
    by_run: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)
    sequences: int = 0
    empty: dict[str, int] = field(default_factory=dict)
    """Per feature: sequences without a sample in their span."""

    @staticmethod
    def wanted(path: Path | None) -> tuple[MetricFeature, ...]:
        """The feature list: the built-in one, or ``--metric-features`` ``path``'s."""
        return DEFAULT_FEATURES if path is None else read_features(path)

    @classmethod
    def build(cls, metrics: pl.DataFrame, wanted: tuple[MetricFeature, ...],
              path: Path | None) -> MetricJoin:
        """The join of ``wanted`` (the list :meth:`wanted` read from ``path``) over
        ``metrics``."""
        features, missing = present(wanted, metrics)
        if missing:
            log.warning("metric features without their metric in the metrics: %s (no "
                        "columns written)", ", ".join(missing))
        by_run = {str(k[0]): v for k, v in metrics.partition_by(
            "run", as_dict=True, maintain_order=True).items()} if metrics.height else {}
        return cls(features, "built-in" if path is None else str(path), missing,
                   sampling_steps(metrics, features), by_run)

    @property
    def columns(self) -> list[str]:
        return [c for f in self.features for c in f.columns]

    def add(self, run: str, sequences: pl.DataFrame) -> pl.DataFrame:
        """One run's enhanced sequences with the feature columns (null where no sample)."""
        metrics = self.by_run.get(run)
        if metrics is None:
            metrics = pl.DataFrame(schema=SCHEMA)
        out = metric_features(sequences, metrics, self.features)
        self.sequences += out.height
        for f in self.features:
            n = int((out.get_column(f.column("n")) == 0).sum())
            self.empty[f.name] = self.empty.get(f.name, 0) + n
        return out

    def info(self) -> dict[str, Any]:
        """The ``"metric_features"`` block of ``lo2_load_info.json``."""
        return {"source": self.source, "features": [f.as_dict() for f in self.features],
                "columns": self.columns, "missing_metrics": self.missing,
                "step_seconds": self.steps, "sequences": self.sequences,
                "sequences_without_samples": dict(self.empty)}

    def line(self) -> str:
        """One summary line."""
        if not self.features:
            return ("metric features: none (no metric of the list is in the metrics; "
                    f"list: {self.source})")
        worst = max(self.empty.values(), default=0)
        steps = sorted({s for s in self.steps.values() if s is not None})
        step = "/".join(f"{s:g}" for s in steps) or "?"
        text = (f"metric features: {len(self.features)} ({len(self.columns)} mx_* columns, "
                f"step {step} s, list {self.source})")
        if self.missing:
            text += f"; not in the metrics: {', '.join(self.missing)}"
        if worst:
            text += f"; up to {worst:,} of {self.sequences:,} sequences without a sample (null)"
        return text


__all__ = ["MetricJoin"]
