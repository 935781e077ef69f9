"""Turn LO2 log files into an events table (one row per log event).

The work is columnar: each file is read as bytes and its lines become a polars column
without a copy (:mod:`loglead_lo2.loader.lines`), then polars trims, classifies and groups the
lines of all files of a batch together; there is no Python loop over lines.

Rules (see ``docs/columns.md``):

* Trimming (start-up leakage). Default (``skip=None``): every file loses its *start-up
  block*, found by content, wherever it is (in practice the ``correct`` files, recorded right
  after deployment; error-case files start mid-traffic and lose nothing). The block is the
  longest prefix of the file made only of start-up lines: lines outside the logback layout
  (``Picked up JAVA_TOOL_OPTIONS``, Hazelcast java.util.logging pairs, the ``Members {...}``
  block, blank lines, stack frames) and logback lines on the ``main`` thread. It ends at the
  first logback line on any other thread (a request thread ``XNIO-...``, a Hazelcast
  ``partition-operation`` thread, anything else), and it is trimmed only when it holds a
  start-up marker: a ``main``-thread line or a JVM ``Picked up ...`` line. So a file without
  traffic (the key service's ``correct`` log: start-up lines and a few Hazelcast lines) keeps
  its Hazelcast lines, a file made only of start-up lines is trimmed whole, and a file that
  starts mid-traffic (even with a stack trace cut off at its top, or a Hazelcast
  java.util.logging pair) keeps every line. Start-up lines after the block (e.g. a
  ``Server started`` logged after the first request, or a restart in mid-file) are kept and
  counted as ``startup_lines_kept``. ``skip=N`` is the old rule: the first N physical lines
  of every file are dropped; 0 keeps all. Either way the trimmed part is a prefix of the file,
  recorded per file (:attr:`ParseStats.per_file`).
* ``head``: at most that many physical lines after the trimmed prefix are read per file.
* Line breaks are ``\\n``, ``\\r\\n`` and a lone ``\\r`` (old Mac style, or a log rewritten by a
  tool): a file with lone ``\\r`` is split at each of them and named in
  :attr:`ParseStats.lone_cr_files`. Blank lines are dropped.
* A line that looks like a continuation (tab/space-indented stack frame, ``Caused by:``,
  ``... N common frames omitted``, ``java.lang.Foo: msg``, a java.util.logging ``INFO:``
  line) is attached to the event above it. Continuation lines at the top of what is read of a
  file (a stack trace cut off by ``docker logs --since``, or by the first-N rule) have no
  event above them; they are dropped and counted.
* Any other line starts an event. A line is in the logback layout when it starts with a
  valid time of day (``HH`` 00-23, ``MM`` and ``SS`` 00-59, ``.mmm``) and a ``[thread]``; a
  line that looks like one but has an impossible time (``99:99:99.999``) is not: it is an
  event outside the layout (below), counted in :attr:`ParseStats.bad_time_lines`.
  Lines in the logback layout are split into time, thread,
  correlation id, level and message; other lines (``Picked up JAVA_TOOL_OPTIONS``, Hazelcast
  java.util.logging headers, truncated lines) keep the whole line as message and take the
  timestamp of the nearest event in their file.
* Times of day become full datetimes on the date of the run folder's epoch, choosing the day
  (previous, same, next) that puts them closest to the epoch: a run spanning midnight is
  handled as long as it lasts under 12 hours.
* Invalid UTF-8 is decoded with replacement characters; such lines are counted.
* Every physical line is counted exactly once: ``lines == trimmed_lines + head_cut_lines +
  blank_lines + orphan_lines + continuation_lines + events``. Files read that are empty (or
  blank) and files with lines but only orphan continuation lines (no event) are named in
  :attr:`ParseStats.empty_files` / :attr:`ParseStats.continuation_only_files`.
* Only regular files are read: a file is opened non-blocking and checked with ``fstat``
  before it is read, so a FIFO swapped in after discovery is reported as unreadable instead
  of blocking the load.
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
from loglead_lo2.limits import MAX_MESSAGE_CHARS
from loglead_lo2.loader.discover import LogFile
from loglead_lo2.loader.lines import read_lines
from loglead_lo2.loader.startup import startup_block_lengths, startup_kept

log = logging.getLogger(__name__)

LOGBACK_START_RE = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3} \[[^\]]*\] "
"""A logback line: a valid ``HH:MM:SS.mmm`` time of day, then ``[thread] ``."""
LOOKS_LOGBACK_RE = r"^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} \["
"""The shape of a logback line whatever its time; with an impossible time it is counted."""
LEVEL_RE = r" (?:TRACE|DEBUG|INFO|WARN|ERROR|FATAL) "
TIME_PARTS = ((0, 2), (3, 2), (6, 2), (9, 3))
CONTINUATION_RE = (
    r"^(?:\s|at |Caused by:|Suppressed:|\.\.\. \d+ (?:common frames omitted|more)"
    r"|[A-Za-z_$][\w$]*(?:\.[\w$]+)+(?:: |:$|$)|(?:INFO|WARNING|SEVERE|FINE|CONFIG): )"
)
REPLACEMENT = "\ufffd"
HALF_DAY_MS = 12 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
STARTUP_RULE = "start-up block"
PER_FILE_SCHEMA: dict[str, pl.DataType] = {
    "run": pl.String(),
    "test_case": pl.String(),
    "service": pl.String(),
    "lines": pl.Int64(),
    "trimmed_lines": pl.Int64(),
}


def trim_rule(skip: int | None) -> str:
    """How ``skip`` trims, for reports: ``start-up block``, ``first N lines`` or ``none``."""
    if skip is None:
        return STARTUP_RULE
    return f"first {skip} lines" if skip > 0 else "none"


@dataclass
class ParseStats:
    """Counts a loader reports for the files it parsed.

    ``trimmed_lines`` are the physical lines removed by trimming (start-up block or first N
    lines), ``trimmed_files`` the files that lost at least one; ``head_cut_lines`` are the
    lines past ``--head``. ``startup_lines_kept`` counts start-up lines (``main``-thread and
    JVM ``Picked up`` lines) left in the events because they come after the trimmed prefix,
    in ``startup_kept_files`` files: they leak the label. :attr:`per_file` has one row per file
    read (``run, test_case, service, lines, trimmed_lines``).
    """

    files: int = 0
    empty_files: list[str] = field(default_factory=list)
    lines: int = 0
    trimmed_lines: int = 0
    trimmed_files: int = 0
    head_cut_lines: int = 0
    startup_lines_kept: int = 0
    startup_kept_files: int = 0
    file_parts: list[pl.DataFrame] = field(default_factory=list, repr=False)
    blank_lines: int = 0
    orphan_lines: int = 0
    continuation_lines: int = 0
    invalid_utf8_files: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)
    invalid_utf8_lines: int = 0
    events: int = 0
    bad_time_lines: int = 0  # logback-shaped lines with an impossible time: not logback
    lone_cr_files: list[str] = field(default_factory=list)  # split at each lone "\r"
    continuation_only_files: list[str] = field(default_factory=list)  # orphans, no event
    long_messages: int = 0  # events over limits.MAX_MESSAGE_CHARS characters

    def add(self, other: ParseStats) -> None:
        for name, value in vars(other).items():
            current = getattr(self, name)
            setattr(self, name, current + value)

    @property
    def per_file(self) -> pl.DataFrame:
        """Lines and trimmed leading lines of every file read, in reading order."""
        if not self.file_parts:
            return pl.DataFrame(schema=PER_FILE_SCHEMA)
        return pl.concat(self.file_parts, how="vertical", rechunk=True)

    def trimmed_per_case(self) -> dict[str, int]:
        """Trimmed lines per test case (all runs and services), ``correct`` first."""
        sums = self.per_file.group_by("test_case").agg(pl.col("trimmed_lines").sum())
        pairs = dict(sums.iter_rows())
        order = sorted(pairs, key=lambda c: (c != NORMAL_CASE, c))
        return {case: int(pairs[case]) for case in order}

    def trimmed_split(self) -> dict[str, tuple[int, int]]:
        """``{"correct": (lines, files), "error": (lines, files)}`` of trimmed lines."""
        df = self.per_file.filter(pl.col("trimmed_lines") > 0)
        normal = df.filter(pl.col("test_case") == NORMAL_CASE)["trimmed_lines"]
        error = df.filter(pl.col("test_case") != NORMAL_CASE)["trimmed_lines"]
        return {"correct": (int(normal.sum()), normal.len()),
                "error": (int(error.sum()), error.len())}


def _anchor(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).replace(tzinfo=None)


def parse_files(
    files: Sequence[LogFile],
    skip: int | None = None,
    head: int | None = None,
    workers: int | None = None,
) -> tuple[pl.DataFrame, ParseStats]:
    """Parse ``files`` into one events DataFrame following the loader column contract.

    ``skip``: ``None`` trims each file's start-up block (see the module docstring), ``N``
    the first N physical lines of every file (0: nothing). ``head``: read at most that many
    lines per file after the trimmed part.

    Runs are parsed one after the other (per-run frames stay cache-friendly: ~30 % faster
    than one huge frame). Within a run, files are split into ``workers`` contiguous groups
    (default: the number of CPUs, at most 4) parsed in threads: polars releases the GIL and
    many string kernels use one core per column. Row order is file order.
    """
    if skip is not None and skip < 0:
        raise ValueError(f"skip must be None or >= 0, not {skip}")
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
    files: Sequence[LogFile], skip: int | None, head: int | None
) -> tuple[pl.DataFrame, ParseStats]:
    stats = ParseStats(files=len(files))
    got = read_lines([str(f.path) for f in files])
    for name in ("unreadable_files", "invalid_utf8_files", "lone_cr_files", "empty_files"):
        setattr(stats, name, getattr(got, name))
    meta = pl.DataFrame(
        {
            "file_idx": pl.Series(range(len(files)), dtype=pl.UInt32),
            "run": [f.run for f in files],
            "test_case": [f.test_case for f in files],
            "service": [f.service for f in files],
            "anchor": pl.Series([_anchor(f.epoch) for f in files], dtype=pl.Datetime("ms")),
        }
    )
    lines, n_lines = got.frame, got.n_lines
    del got
    stats.lines = lines.height
    lines = lines.with_columns(is_lb=pl.col("line").str.contains(LOGBACK_START_RE))
    if skip is None:
        trim = startup_block_lengths(lines, n_lines)
    else:
        trim = n_lines.clip(upper_bound=skip)
    read = n_lines - trim
    if head is not None and head > 0:
        read = read.clip(upper_bound=head)
    stats.trimmed_lines = int(trim.sum())
    stats.trimmed_files = int((trim > 0).sum())
    stats.head_cut_lines = int((n_lines - trim - read).sum())
    stats.file_parts = [meta.select(
        "run", "test_case", "service", lines=n_lines, trimmed_lines=trim
    ).cast(pl.Schema(PER_FILE_SCHEMA))]
    first_kept = pl.lit(trim).gather(pl.col("file_idx"))
    keep = pl.col("line_no") > first_kept
    if head is not None and head > 0:
        keep = keep & (pl.col("line_no") <= first_kept + head)
    blank = pl.col("line").str.contains(r"^\s*$")  # no string copies, unlike strip_chars
    lines = lines.with_columns(keep=keep, blank=blank).with_columns(
        is_cont=~pl.col("is_lb") & pl.col("line").str.contains(CONTINUATION_RE),
    )
    kept = pl.col("keep") & ~pl.col("blank")
    lines = lines.with_columns(
        event_no=(kept & ~pl.col("is_cont")).cum_sum().over("file_idx"),
    )
    orphan = kept & pl.col("is_cont") & (pl.col("event_no") == 0)
    counts = lines.select(
        blank=(pl.col("keep") & pl.col("blank")).sum(),
        orphan=orphan.sum(),
    ).row(0, named=True)
    stats.blank_lines = int(counts["blank"])
    stats.orphan_lines = int(counts["orphan"])
    if stats.orphan_lines:
        _continuation_only(lines, orphan, kept, files, stats)
    stats.bad_time_lines = int(
        lines.filter(pl.col("keep") & ~pl.col("is_lb"))
        .select(pl.col("line").str.contains(LOOKS_LOGBACK_RE).sum()).item()
    )
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
    stats.long_messages = int(
        events.filter(pl.col("m_message").str.len_bytes() > MAX_MESSAGE_CHARS)
        .select((pl.col("m_message").str.len_chars() > MAX_MESSAGE_CHARS).sum()).item()
    )
    stats.startup_lines_kept, stats.startup_kept_files = startup_kept(events)
    return events, stats


def _continuation_only(lines: pl.DataFrame, orphan: pl.Expr, kept: pl.Expr,
                       files: Sequence[LogFile], stats: ParseStats) -> None:
    """Name the files whose kept lines give orphans but no event (few files have orphans)."""
    with_orphans = lines.filter(orphan).select(pl.col("file_idx").unique())["file_idx"]
    with_events = (lines.filter(pl.col("file_idx").is_in(with_orphans.implode())
                                & kept & ~pl.col("is_cont"))
                   .select(pl.col("file_idx").unique())["file_idx"].to_list())
    has_events = set(with_events)
    stats.continuation_only_files = [str(files[i].path) for i in sorted(with_orphans.to_list())
                                     if i not in has_events]


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
        .join(meta.lazy().with_columns(  # per file, not per event: one value per file
            pl.concat_str(["run", "test_case", "service"], separator="__").alias("seq_id"),
            (pl.col("test_case") == NORMAL_CASE).alias("normal"),
            (pl.col("test_case") != NORMAL_CASE).alias("anomaly"),
            pl.col("test_case").replace_strict(targets, default=None, return_dtype=pl.String)
            .alias("target_service"),
        ), on="file_idx", how="left", maintain_order="left")
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
            "seq_id",
            "line_no",
            "normal",
            "anomaly",
            "target_service",
        )
    )
    return parsed.collect()
