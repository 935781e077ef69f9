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
from typing import Any

import polars as pl

log = logging.getLogger(__name__)

SCHEMA: dict[str, Any] = {
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


def _file_columns(run: str, case: str, path: Path, cols: dict[str, list]) -> None:
    """Append one file's samples to ``cols`` (validated completely before appending)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError("top level is not a list of series")
    rows: dict[str, list] = {k: [] for k in cols}
    for series in data:
        labels = dict(series["metric"])
        values = series["values"]
        name = labels.pop("__name__", path.stem.removeprefix("metric_"))
        n = len(values)
        if not n:
            continue
        ts, vals = zip(*values, strict=True)
        rows["timestamp"].extend(float(t) for t in ts)
        rows["value"].extend(float(v) for v in vals)
        for key, value in (
            ("metric", name),
            ("job", labels.get("job")),
            ("instance", labels.get("instance")),
            ("container", labels.get("name")),
            ("labels", json.dumps(labels, sort_keys=True)),
        ):
            rows[key].extend([value] * n)
    count = len(rows["value"])
    rows["run"] = [run] * count
    rows["test_case"] = [case] * count
    for key, values in rows.items():
        cols[key].extend(values)


_MALFORMED = (ValueError, KeyError, TypeError, UnicodeDecodeError)


def load_metrics(
    dirs: Sequence[tuple[str, str, Path]],
) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """Load every ``metric_*.json`` under the given ``(run, test_case, metrics_dir)`` entries.

    Returns the tidy table (sorted) and the skipped files with the reason.
    """
    cols: dict[str, list] = {k: [] for k in SCHEMA}
    skipped: list[tuple[str, str]] = []
    for run, case, folder in dirs:
        for path in sorted(folder.glob("metric_*.json")):
            try:
                _file_columns(run, case, path, cols)
            except _MALFORMED as exc:
                log.warning("skipping malformed metrics file %s: %s", path, exc)
                skipped.append((str(path), f"malformed metrics file ({type(exc).__name__}: {exc})"))
    table = pl.DataFrame(
        {k: v for k, v in cols.items() if k != "timestamp"},
        schema={k: t for k, t in SCHEMA.items() if k != "timestamp"},
    ).with_columns(
        (pl.Series(cols["timestamp"], dtype=pl.Float64) * 1000)
        .cast(pl.Int64)
        .cast(pl.Datetime("ms"))
        .alias("timestamp")
    ).select(list(SCHEMA))
    return table.sort("run", "test_case", "metric", "labels", "timestamp"), skipped
