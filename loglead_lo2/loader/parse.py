"""Turn LO2 log files into an events table (one row per log event).

The work is columnar: each file is read as bytes and decoded once, then polars splits,
trims, classifies and groups the lines of all files of a batch together; there is no Python
loop over lines.

Rules (see ``docs/columns.md``):

* The first ``skip`` physical lines of every file are dropped (start-up leakage); 0 keeps all.
* Blank lines are dropped; a trailing ``\\r`` (CRLF files) is removed.
* A line that looks like a continuation (tab/space-indented stack frame, ``Caused by:``,
  ``... N common frames omitted``, ``java.lang.Foo: msg``, a java.util.logging ``INFO:``
  line) is attached to the event above it. Continuation lines left at the top of a file by
  trimming have no event above them; they are dropped and counted.
* Any other line starts an event. Lines in the logback layout are split into time, thread,
  correlation id, level and message; other lines (``Picked up JAVA_TOOL_OPTIONS``, Hazelcast
  java.util.logging headers, truncated lines) keep the whole line as message and take the
  timestamp of the nearest event in their file.
* Times of day become full datetimes on the date of the run folder's epoch, choosing the day
  (previous, same, next) that puts them closest to the epoch: a run spanning midnight is
  handled as long as it lasts under 12 hours.
* Invalid UTF-8 is decoded with replacement characters; such lines are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import polars as pl

from loglead_lo2.cases import NORMAL_CASE, target_service_map
from loglead_lo2.loader.discover import LogFile

log = logging.getLogger(__name__)

LINE_RE = (
    r"^(?<time>\d{2}:\d{2}:\d{2}\.\d{3}) \[(?<thread>[^\]]*)\] +"
    r"(?:(?<cid>\S+) +)?(?<level>TRACE|DEBUG|INFO|WARN|ERROR|FATAL) +(?<rest>.*)$"
)
CONTINUATION_RE = (
    r"^(?:\s|at |Caused by:|Suppressed:|\.\.\. \d+ (?:common frames omitted|more)"
    r"|[A-Za-z_$][\w$]*(?:\.[\w$]+)+(?:: |:$|$)|(?:INFO|WARNING|SEVERE|FINE|CONFIG): )"
)
LOGGER_METHOD_RE = r"^(?<logger>\S+) (?<method>\S+) - "
REPLACEMENT = "\ufffd"
HALF_DAY_MS = 12 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000


@dataclass
class ParseStats:
    """Counts a loader reports for the files it parsed."""

    files: int = 0
    empty_files: list[str] = field(default_factory=list)
    lines: int = 0
    trimmed_lines: int = 0
    blank_lines: int = 0
    orphan_lines: int = 0
    continuation_lines: int = 0
    invalid_utf8_files: list[str] = field(default_factory=list)
    invalid_utf8_lines: int = 0
    events: int = 0

    def add(self, other: ParseStats) -> None:
        for name, value in vars(other).items():
            current = getattr(self, name)
            setattr(self, name, current + value)


def _read_text(path_str: str, stats: ParseStats) -> str:
    data = open(path_str, "rb").read()  # noqa: SIM115 - read whole file
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_files.append(path_str)
        return data.decode("utf-8", errors="replace")


def _anchor(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).replace(tzinfo=None)


def parse_files(
    files: Sequence[LogFile], skip: int = 100, head: int | None = None
) -> tuple[pl.DataFrame, ParseStats]:
    """Parse ``files`` into one events DataFrame following the loader column contract."""
    stats = ParseStats(files=len(files))
    texts = []
    for f in files:
        text = _read_text(str(f.path), stats)
        if not text.strip():
            stats.empty_files.append(str(f.path))
        texts.append(text)
    meta = pl.DataFrame(
        {
            "file_idx": pl.Series(range(len(files)), dtype=pl.UInt32),
            "run": [f.run for f in files],
            "test_case": [f.test_case for f in files],
            "service": [f.service for f in files],
            "anchor": pl.Series([_anchor(f.epoch) for f in files], dtype=pl.Datetime("ms")),
        }
    )
    lines = (
        pl.DataFrame({"file_idx": meta["file_idx"], "line": texts})
        .lazy()
        .with_columns(pl.col("line").str.split("\n"))
        .explode("line")
        .with_columns(
            line_no=(pl.int_range(pl.len(), dtype=pl.Int64).over("file_idx") + 1),
            line=pl.col("line").str.strip_suffix("\r"),
        )
        .collect()
    )
    del texts
    # A file ending in "\n" yields one empty last element: that is not a line.
    last = pl.col("line_no") == pl.col("line_no").max().over("file_idx")
    lines = lines.filter(~(last & (pl.col("line") == "")))
    stats.lines = lines.height
    keep = pl.col("line_no") > skip
    if head is not None and head > 0:
        keep = keep & (pl.col("line_no") <= skip + head)
    lines = lines.filter(keep)
    stats.trimmed_lines = stats.lines - lines.height
    nonblank = pl.col("line").str.strip_chars() != ""
    stats.blank_lines = int(lines.select((~nonblank).sum()).item())
    lines = lines.filter(nonblank)
    lines = lines.with_columns(
        is_cont=pl.col("line").str.contains(CONTINUATION_RE)
        & ~pl.col("line").str.contains(r"^\d{2}:\d{2}:\d{2}\.\d{3} \["),
    ).with_columns(event_no=(~pl.col("is_cont")).cum_sum().over("file_idx"))
    orphan = pl.col("is_cont") & (pl.col("event_no") == 0)
    stats.orphan_lines = int(lines.select(orphan.sum()).item())
    lines = lines.filter(~orphan)
    if stats.invalid_utf8_files:
        stats.invalid_utf8_lines = int(
            lines.select(pl.col("line").str.contains(REPLACEMENT, literal=True).sum()).item()
        )
    lines = lines.with_columns(event_id=(~pl.col("is_cont")).cum_sum())
    conts = (
        lines.filter(pl.col("is_cont"))
        .group_by("event_id", maintain_order=True)
        .agg(cont=pl.col("line").str.join("\n"), n_cont=pl.len())
    )
    stats.continuation_lines = int(conts["n_cont"].sum()) if conts.height else 0
    starts = lines.filter(~pl.col("is_cont")).drop("is_cont", "event_no")
    del lines
    events = _build_events(starts, conts, meta)
    stats.events = events.height
    return events, stats


def _build_events(starts: pl.DataFrame, conts: pl.DataFrame, meta: pl.DataFrame) -> pl.DataFrame:
    targets = target_service_map()
    parsed = (
        starts.lazy()
        .join(
            conts.lazy().select("event_id", "cont"),
            on="event_id",
            how="left",
            maintain_order="left",
        )
        .with_columns(g=pl.col("line").str.extract_groups(LINE_RE))
        .unnest("g")
        .with_columns(
            body=pl.when(pl.col("level").is_not_null())
            .then(pl.concat_str([pl.col("level"), pl.col("rest")], separator=" "))
            .otherwise(pl.col("line")),
        )
        .with_columns(
            m_message=pl.when(pl.col("cont").is_not_null())
            .then(pl.concat_str([pl.col("body"), pl.col("cont")], separator="\n"))
            .otherwise(pl.col("body")),
            lm=pl.col("rest").str.extract_groups(LOGGER_METHOD_RE),
            tod_ms=(
                pl.col("time").str.to_time("%H:%M:%S%.3f", strict=False).cast(pl.Int64)
                // 1_000_000
            ),
        )
        .unnest("lm")
        .join(meta.lazy(), on="file_idx", how="left", maintain_order="left")
        .with_columns(
            day_ms=(pl.col("anchor").dt.truncate("1d").cast(pl.Int64)),
            anchor_ms=pl.col("anchor").cast(pl.Int64),
        )
        .with_columns(ts_ms=pl.col("day_ms") + pl.col("tod_ms"))
        .with_columns(
            ts_ms=pl.when(pl.col("ts_ms") - pl.col("anchor_ms") > HALF_DAY_MS)
            .then(pl.col("ts_ms") - DAY_MS)
            .when(pl.col("anchor_ms") - pl.col("ts_ms") > HALF_DAY_MS)
            .then(pl.col("ts_ms") + DAY_MS)
            .otherwise(pl.col("ts_ms"))
        )
        .with_columns(
            ts_ms=pl.col("ts_ms")
            .fill_null(strategy="backward")
            .over("file_idx")
            .fill_null(strategy="forward")
            .over("file_idx")
        )
        .sort("file_idx", "line_no")
        .select(
            pl.col("m_message"),
            pl.col("ts_ms").cast(pl.Datetime("ms")).alias("m_timestamp"),
            pl.col("level").alias("m_level"),
            pl.col("thread").alias("m_thread"),
            pl.col("cid").alias("m_cid"),
            pl.col("logger").alias("m_logger"),
            pl.col("method").alias("m_method"),
            "run",
            "test_case",
            "service",
            pl.concat_str(["run", "test_case", "service"], separator="__").alias("seq_id"),
            "line_no",
            (pl.col("test_case") == NORMAL_CASE).alias("normal"),
            (pl.col("test_case") != NORMAL_CASE).alias("anomaly"),
            pl.col("test_case")
            .replace_strict(targets, default=None, return_dtype=pl.String)
            .alias("target_service"),
        )
    )
    return parsed.collect()
