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
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import polars as pl

from loglead_lo2.cases import NORMAL_CASE, target_service_map
from loglead_lo2.loader.discover import LogFile

log = logging.getLogger(__name__)

LOGBACK_START_RE = r"^\d{2}:\d{2}:\d{2}\.\d{3} \[[^\]]*\] "
LEVEL_RE = r" (?:TRACE|DEBUG|INFO|WARN|ERROR|FATAL) "
TIME_PARTS = ((0, 2), (3, 2), (6, 2), (9, 3))
CONTINUATION_RE = (
    r"^(?:\s|at |Caused by:|Suppressed:|\.\.\. \d+ (?:common frames omitted|more)"
    r"|[A-Za-z_$][\w$]*(?:\.[\w$]+)+(?:: |:$|$)|(?:INFO|WARNING|SEVERE|FINE|CONFIG): )"
)
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
    unreadable_files: list[str] = field(default_factory=list)
    invalid_utf8_lines: int = 0
    events: int = 0

    def add(self, other: ParseStats) -> None:
        for name, value in vars(other).items():
            current = getattr(self, name)
            setattr(self, name, current + value)


def _read_text(path_str: str, stats: ParseStats) -> str:
    try:
        with open(path_str, "rb") as fh:
            data = fh.read()
    except OSError as exc:  # permission denied, vanished file, I/O error: skip, never crash
        log.warning("cannot read %s: %s", path_str, exc)
        stats.unreadable_files.append(f"{path_str} ({exc.strerror or exc})")
        return ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        stats.invalid_utf8_files.append(path_str)
        text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n") if "\r" in text else text


def _anchor(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).replace(tzinfo=None)


def parse_files(
    files: Sequence[LogFile], skip: int = 100, head: int | None = None, workers: int | None = None
) -> tuple[pl.DataFrame, ParseStats]:
    """Parse ``files`` into one events DataFrame following the loader column contract.

    Runs are parsed one after the other (per-run frames stay cache-friendly: ~30 % faster
    than one huge frame). Within a run, files are split into ``workers`` contiguous groups
    (default: the number of CPUs, at most 4) parsed in threads: polars releases the GIL and
    many string kernels use one core per column. Row order is file order.
    """
    workers = workers or min(os.cpu_count() or 1, 4)
    runs: dict[str, list[LogFile]] = {}
    for f in files:
        runs.setdefault(f.run, []).append(f)
    stats = ParseStats()
    frames = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for run_files in runs.values():
            size = -(-len(run_files) // workers) if len(run_files) >= 2 * workers else len(
                run_files
            )
            groups = [run_files[i : i + size] for i in range(0, len(run_files), size)]
            for events, part_stats in pool.map(lambda g: _parse_group(g, skip, head), groups):
                frames.append(events)
                stats.add(part_stats)
    if not frames:
        return _parse_group([], skip, head)
    return pl.concat(frames, how="vertical"), stats


def _parse_group(
    files: Sequence[LogFile], skip: int, head: int | None
) -> tuple[pl.DataFrame, ParseStats]:
    stats = ParseStats(files=len(files))
    texts = []
    for f in files:
        unreadable = len(stats.unreadable_files)
        text = _read_text(str(f.path), stats)
        if not text.strip() and len(stats.unreadable_files) == unreadable:
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
        .with_columns(line_no=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("file_idx"))
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
    blank = pl.col("line").str.contains(r"^\s*$")  # no string copies, unlike strip_chars
    lines = lines.with_columns(keep=keep, blank=blank).with_columns(
        is_lb=pl.col("line").str.contains(LOGBACK_START_RE),
    ).with_columns(
        is_cont=~pl.col("is_lb") & pl.col("line").str.contains(CONTINUATION_RE),
    )
    kept = pl.col("keep") & ~pl.col("blank")
    lines = lines.with_columns(
        event_no=(kept & ~pl.col("is_cont")).cum_sum().over("file_idx"),
    )
    orphan = kept & pl.col("is_cont") & (pl.col("event_no") == 0)
    counts = lines.select(
        trimmed=(~pl.col("keep")).sum(),
        blank=(pl.col("keep") & pl.col("blank")).sum(),
        orphan=orphan.sum(),
    ).row(0, named=True)
    stats.trimmed_lines = int(counts["trimmed"])
    stats.blank_lines = int(counts["blank"])
    stats.orphan_lines = int(counts["orphan"])
    lines = lines.filter(kept & ~orphan).drop("keep", "blank")
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


def _time_of_day_ms(line: pl.Expr) -> pl.Expr:
    part = [line.str.slice(o, n).cast(pl.Int64, strict=False) for o, n in TIME_PARTS]
    return part[0] * 3_600_000 + part[1] * 60_000 + part[2] * 1000 + part[3]


def _build_events(starts: pl.DataFrame, conts: pl.DataFrame, meta: pl.DataFrame) -> pl.DataFrame:
    # Fixed positions and literal/DFA searches only: regex captures cost ~1 s per M lines.
    line = pl.col("line")
    is_lb = pl.col("is_lb")
    targets = target_service_map()
    parsed = (
        starts.lazy()
        .join(
            conts.lazy().select("event_id", "cont"),
            on="event_id",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            close=pl.when(is_lb).then(line.str.find("] ", literal=True)),
            lvl=pl.when(is_lb).then(line.str.find(LEVEL_RE) + 1),
        )
        .with_columns(
            thread=line.str.slice(14, pl.col("close") - 14),
            cid=line.str.slice(pl.col("close") + 2, pl.col("lvl") - pl.col("close") - 2)
            .str.strip_chars(),
            level=line.str.slice(pl.col("lvl"), 5).str.strip_chars_end(),
            tod_ms=pl.when(is_lb).then(_time_of_day_ms(line)),
        )
        .with_columns(
            # the raw text from the level on (level padding kept), plus continuation lines
            m_message=pl.concat_str(
                [
                    pl.when(pl.col("lvl").is_not_null())
                    .then(line.str.slice(pl.col("lvl")))
                    .otherwise(line),
                    pl.concat_str([pl.lit("\n"), pl.col("cont")]),
                ],
                ignore_nulls=True,
            ),
        )
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
        .select(
            pl.col("m_message"),
            pl.col("ts_ms").cast(pl.Datetime("ms")).alias("m_timestamp"),
            pl.col("level").alias("m_level"),
            pl.col("thread").alias("m_thread"),
            pl.when(pl.col("cid") != "").then(pl.col("cid")).alias("m_cid"),
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
