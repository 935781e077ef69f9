"""Parse LO2 Prometheus exports (``metrics/metric_*.json``) into one tidy table.

Each file is a ``query_range`` result: a list of ``{"metric": {labels}, "values":
[[epoch_seconds, "value"], ...]}``. The table has one row per sample: ``run``, ``test_case``,
``metric``, ``job``, ``instance``, ``container`` (the cadvisor ``name`` label or null),
``labels`` (all labels but ``__name__`` as sorted JSON), ``timestamp`` (UTC) and ``value``.
A malformed file is skipped and reported, never fatal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)

SCHEMA = {
    "run": pl.String,
    "test_case": pl.String,
    "metric": pl.String,
    "job": pl.String,
    "instance": pl.String,
    "container": pl.String,
    "labels": pl.String,
    "timestamp": pl.Datetime("ms"),
    "value": pl.Float64,
}


def _series_frames(run: str, case: str, path: Path) -> list[pl.DataFrame]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError("top level is not a list of series")
    frames = []
    for series in data:
        labels = dict(series["metric"])
        values = series["values"]
        name = labels.pop("__name__", path.stem.removeprefix("metric_"))
        if not values:
            continue
        ts, vals = zip(*values, strict=True)
        frames.append(
            pl.DataFrame(
                {
                    "timestamp": pl.Series(ts, dtype=pl.Float64),
                    "value": pl.Series(vals, dtype=pl.String),
                }
            ).select(
                pl.lit(run).alias("run"),
                pl.lit(case).alias("test_case"),
                pl.lit(name).alias("metric"),
                pl.lit(labels.get("job"), dtype=pl.String).alias("job"),
                pl.lit(labels.get("instance"), dtype=pl.String).alias("instance"),
                pl.lit(labels.get("name"), dtype=pl.String).alias("container"),
                pl.lit(json.dumps(labels, sort_keys=True)).alias("labels"),
                (pl.col("timestamp") * 1000).cast(pl.Int64).cast(pl.Datetime("ms")),
                pl.col("value").cast(pl.Float64, strict=True),
            )
        )
    return frames


_MALFORMED = (ValueError, KeyError, TypeError, UnicodeDecodeError, pl.exceptions.PolarsError)


def load_metrics(
    dirs: Sequence[tuple[str, str, Path]],
) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """Load every ``metric_*.json`` under the given ``(run, test_case, metrics_dir)`` entries.

    Returns the tidy table (sorted) and the skipped files with the reason.
    """
    frames: list[pl.DataFrame] = []
    skipped: list[tuple[str, str]] = []
    for run, case, folder in dirs:
        for path in sorted(folder.glob("metric_*.json")):
            try:
                frames.extend(_series_frames(run, case, path))
            except _MALFORMED as exc:
                log.warning("skipping malformed metrics file %s: %s", path, exc)
                skipped.append((str(path), f"malformed metrics file ({type(exc).__name__}: {exc})"))
    if not frames:
        return pl.DataFrame(schema=SCHEMA), skipped
    table = pl.concat(frames, how="vertical")
    return table.sort("run", "test_case", "metric", "labels", "timestamp"), skipped
