"""Parse LO2 Prometheus exports (``metrics/metric_*.json``) into one tidy table.

Each file is a ``query_range`` result: a list of ``{"metric": {labels}, "values":
[[epoch_seconds, "value"], ...]}``. The table has one row per sample: ``run``, ``test_case``,
``metric``, ``job``, ``instance``, ``container`` (the cadvisor ``name`` label or null),
``labels`` (all labels but ``__name__`` as sorted JSON), ``timestamp`` (UTC) and ``value``.
A malformed file is skipped and reported, never fatal: invalid JSON, JSON nested too deep
to parse (``RecursionError``), a series that is not ``{"metric": {str: str}, "values":
[[t, v], ...]}``, a timestamp that is not a finite number of seconds in years 1970-9999 (say
``1e300``), or an unreadable file. Only regular files named ``metric_<name>.json`` are read,
checked before opening (a FIFO would block the load forever); a FIFO, device, folder or a
symlink out of the tree named like one is skipped and reported too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.loader.discover import entry_kind

log = logging.getLogger(__name__)

METRIC_FILE_RE = re.compile(r"metric_[^\x00-\x1f\x7f/]+\.json")
"""Names of metrics files (with ``fullmatch``: no trailing newline or control characters)."""
MAX_EPOCH_SECONDS = 253_402_300_800.0
"""First second of year 10000: the end of the range a ``Datetime("ms")`` column can show."""

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


def _numbers(items: Sequence[Any], what: str) -> np.ndarray:
    """``items`` (numbers, or numbers written as strings, as Prometheus writes its values) as
    float64, in one numpy conversion; anything else (null, a list, a word) is malformed."""
    array = np.asarray(items)
    if array.ndim != 1 or array.dtype.kind not in "fiuU":
        raise ValueError(f"a series' {what} are not all numbers")
    return array.astype(np.float64)


_LABEL_COLUMNS = ("metric", "job", "instance", "container", "labels")
_HEAD = {k: pl.String for k in _LABEL_COLUMNS}


def _file_samples(path: Path) -> tuple[dict[str, list[str | None]], list[int],
                                       np.ndarray, np.ndarray] | None:
    """One file's series and samples (validated completely; ``None``: no sample): the label
    columns once per series, the samples per series, and the timestamps (seconds) and values
    of all samples in series order, as numpy arrays."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError("top level is not a list of series")
    heads: dict[str, list[str | None]] = {k: [] for k in _LABEL_COLUMNS}
    counts: list[int] = []
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for series in data:
        labels = dict(series["metric"])
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ValueError("a series' labels are not all strings")
        samples = series["values"]
        name = labels.pop("__name__", path.stem.removeprefix("metric_"))
        if not len(samples):
            continue
        ts, vals = zip(*samples, strict=True)
        seconds = _numbers(ts, "timestamps")
        bad = ~((seconds >= 0) & (seconds < MAX_EPOCH_SECONDS))  # also NaN
        if bad.any():  # 1e300 would overflow the millisecond cast
            raise ValueError(f"timestamp {float(seconds[bad][0])!r} is not epoch seconds in "
                             "years 1970-9999")
        times.append(seconds)
        values.append(_numbers(vals, "values"))
        for key, value in (("metric", name), ("job", labels.get("job")),
                           ("instance", labels.get("instance")),
                           ("container", labels.get("name")),
                           ("labels", json.dumps(labels, sort_keys=True))):
            heads[key].append(value)
        counts.append(len(samples))
    if not counts:
        return None
    return heads, counts, np.concatenate(times), np.concatenate(values)


def _table(heads: list[pl.DataFrame], counts: list[int], times: list[np.ndarray],
           values: list[np.ndarray]) -> pl.DataFrame:
    """The tidy table, sorted by run, test case, metric, labels and time: the few series are
    sorted by their labels, the many samples by two integers (series rank, time)."""
    if not heads:
        return pl.DataFrame(schema=SCHEMA)
    series = pl.concat(heads, how="vertical", rechunk=True)
    order = series.with_row_index("id").sort(
        "run", "test_case", "metric", "labels", maintain_order=True).get_column("id")
    rank = np.empty(len(order), dtype=np.uint32)
    rank[order.to_numpy()] = np.arange(len(order), dtype=np.uint32)
    ids = np.repeat(np.arange(len(counts), dtype=np.uint32), counts)
    samples = pl.DataFrame({
        "rank": rank[ids],
        "timestamp": (pl.Series(np.concatenate(times)) * 1000).cast(pl.Int64),
        "value": pl.Series(np.concatenate(values)),
    }).sort("rank", "timestamp", maintain_order=True)
    ranked = series.select(pl.all().gather(order))
    return ranked.select(pl.all().gather(samples.get_column("rank"))).with_columns(
        timestamp=samples.get_column("timestamp").cast(pl.Datetime("ms")),
        value=samples.get_column("value"),
    ).select(list(SCHEMA))


_MALFORMED = (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError,
              OverflowError)


def _metric_files(folder: Path, tree: Path | None, skipped: list[tuple[str, str]],
                  names: set[str] | None = None) -> list[Path]:
    """The regular ``metric_*.json`` files of ``folder`` (only those of ``names``, when
    given); the others named so are skipped."""
    out: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        skipped.append((str(folder), f"cannot list metrics folder ({exc.strerror or exc})"))
        return out
    for path in entries:
        name = path.name
        if not (name.startswith("metric_") and ".json" in name):
            continue  # last_fetch_time.txt and other companions
        if not METRIC_FILE_RE.fullmatch(name):
            skipped.append((str(path), f"name {name!r} is not metric_<name>.json"))
            continue
        if names is not None and name[len("metric_"):-len(".json")] not in names:
            continue  # not asked for: not read, not a problem
        kind, why = entry_kind(path, tree or folder.resolve())
        if kind != "file":
            skipped.append((str(path), why or "a folder, not a metrics file"))
            continue
        out.append(path)
    return out


def load_metrics(
    dirs: Sequence[tuple[str, str, Path]], tree: Path | None = None,
    names: set[str] | None = None,
) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """Load every ``metric_*.json`` under the given ``(run, test_case, metrics_dir)`` entries.

    ``tree``: the resolved root no symlink may leave (default: each metrics folder).
    ``names``: read only ``metric_<name>.json`` of these metric names (a real LO2 case
    exports ~360 files; the metric features need about a dozen).
    Returns the tidy table (sorted) and the skipped files with the reason.
    """
    heads: list[pl.DataFrame] = []
    counts: list[int] = []
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    for run, case, folder in dirs:
        for path in _metric_files(folder, tree, skipped, names):
            try:
                found = _file_samples(path)
                if found is not None:
                    head, n, t, v = found
                    heads.append(pl.DataFrame(head, schema=_HEAD).with_columns(
                        run=pl.lit(run, pl.String), test_case=pl.lit(case, pl.String)))
                    counts.extend(n)
                    times.append(t)
                    values.append(v)
            except OSError as exc:
                log.warning("skipping unreadable metrics file %s: %s", path, exc)
                skipped.append((str(path), f"unreadable metrics file ({exc.strerror or exc})"))
            except _MALFORMED as exc:
                text = "JSON nested too deep" if isinstance(exc, RecursionError) else str(exc)
                log.warning("skipping malformed metrics file %s: %s", path, text)
                skipped.append((str(path),
                                f"malformed metrics file ({type(exc).__name__}: {text[:200]})"))
    return _table(heads, counts, times, values), skipped
