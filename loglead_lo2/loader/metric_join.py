"""The loader's metrics, run by run: each run's metrics files are parsed with its logs (on a
Dask worker too) and kept in its part folder as ``metrics.parquet``, with the metric names and
sampling steps it found in ``part.json``; ``lo2_metrics.parquet`` is the union of the parts,
and the ``mx_*`` columns of the enhanced sequences are computed run by run from each part's
metrics while the parts are streamed into the final table
(:func:`loglead_lo2.enhancers.metric_features.metric_features` does the work). So memory holds
one run's metrics, never the data set's."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterable, Sequence
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
from loglead_lo2.loader.metrics import SCHEMA, load_metrics

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
    sequences: int = 0
    empty: dict[str, int] = field(default_factory=dict)
    """Per feature: sequences without a sample in their span."""

    @staticmethod
    def wanted(path: Path | None) -> tuple[MetricFeature, ...]:
        """The feature list: the built-in one, or ``--metric-features`` ``path``'s."""
        return DEFAULT_FEATURES if path is None else read_features(path)

    @classmethod
    def from_runs(cls, wanted: tuple[MetricFeature, ...], path: Path | None,
                  records: Iterable[dict[str, Any]]) -> MetricJoin:
        """The join of ``wanted`` (the list :meth:`wanted` read from ``path``) over the runs
        whose :func:`run_metrics` records are ``records``: a feature is kept when any run has
        its metric; its step is the median over the runs of each run's median gap."""
        names: set[str] = set()
        steps: dict[str, list[float]] = {}
        for rec in records:
            names.update(rec.get("names") or ())
            for name, step in (rec.get("steps") or {}).items():
                if step is not None:
                    steps.setdefault(name, []).append(float(step))
        features, missing = present(wanted, names)
        if missing:
            log.warning("metric features without their metric in the metrics: %s (no "
                        "columns written)", ", ".join(missing))
        return cls(features, "built-in" if path is None else str(path), missing,
                   {f.name: statistics.median(steps[f.name]) if f.name in steps else None
                    for f in features})

    @property
    def columns(self) -> list[str]:
        return [c for f in self.features for c in f.columns]

    def add(self, sequences: pl.DataFrame, metrics: pl.DataFrame | None) -> pl.DataFrame:
        """One run's enhanced sequences with the feature columns from the run's ``metrics``
        (null where no sample)."""
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


METRICS_WARN_BYTES = 256 << 20
"""Metrics files in one run above which ``--load-metrics`` without ``--feature-metrics-only``
is warned about (a real run exports ~360 files, ~20 MB, per case: ~1 GB; the generated
sample ~14 MB)."""


def warn_metrics_volume(first: Sequence[Path], runs: int,
                        features: tuple[MetricFeature, ...]) -> None:
    """Warn, before a long load starts, when reading every metrics file of ``runs`` runs
    (``first``: those of the first run) is far more than the metric ``features`` need."""
    import os

    from loglead_lo2.cli_common import human_bytes

    size = 0
    for path in first:
        try:
            size += os.stat(path).st_size
        except OSError:
            pass  # reported where it is read
    if size <= METRICS_WARN_BYTES:
        return
    needed = len({f.metric for f in features})
    log.warning("--load-metrics reads every metrics file: %s files, %s in the first run "
                "(~%s for %s, read and held a run at a time); the metric features "
                "need %d metrics: add --feature-metrics-only to read only their files "
                "(lo2_metrics.parquet then holds only those metrics)", f"{len(first):,}",
                human_bytes(size), human_bytes(size * runs),
                f"{runs} run" + ("s" if runs != 1 else ""), needed)


def run_metrics(dirs: Sequence[tuple[str, str, Path]], wanted: tuple[MetricFeature, ...],
                only_wanted: bool) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One run's metrics table (its ``(run, test_case, metrics_dir)`` entries; only the files
    ``wanted`` names with ``only_wanted``) and its record: rows, metric names, the sampling
    step of each wanted feature, the files skipped with the reason, and the seconds."""
    t = time.perf_counter()
    names = {f.metric for f in wanted} if only_wanted else None
    table, skipped = load_metrics(dirs, names=names)
    found = sorted(table.get_column("metric").unique().to_list()) if table.height else []
    record = {"rows": table.height, "names": found,
              "steps": sampling_steps(table, present(wanted, found)[0]),
              "skipped": [list(s) for s in skipped],
              "seconds": time.perf_counter() - t}
    return table, record


__all__ = ["MetricJoin", "run_metrics"]
