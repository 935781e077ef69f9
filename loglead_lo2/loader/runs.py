"""The loader's per-run loop: each run parsed, windowed, enhanced and aggregated on its own,
kept as a part folder (:mod:`loglead_lo2.loader.parts`), and the parts streamed into the
final tables.

Memory is one run's events plus the Drain parser (its templates and one run's distinct
messages), whatever the number of runs. Time per run does not grow with the runs before it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from loglead_lo2.artifacts import ENHANCED_FILE, EVENTS_FILE, SEQUENCES_FILE
from loglead_lo2.errors import UserError
from loglead_lo2.loader import parts as P
from loglead_lo2.loader.discover import LogFile, Selection
from loglead_lo2.loader.parse import ParseStats, parse_files
from loglead_lo2.loader.window import WindowStats, cut_windows
from loglead_lo2.progress import counter
from loglead_lo2.schema import ParquetStreamWriter

if TYPE_CHECKING:
    from loglead_lo2.enhancers import DrainParser
    from loglead_lo2.loader.pipeline import LoadOptions, LoadReport

log = logging.getLogger(__name__)

# part file name -> (final file name, schema kind)
TABLES: dict[str, tuple[str, str]] = {
    "events.parquet": (EVENTS_FILE, "events"),
    "sequences.parquet": (SEQUENCES_FILE, "sequences"),
    "sequences_enhanced.parquet": (ENHANCED_FILE, "sequences_enhanced"),
}


@dataclass
class RunResult:
    """One run's tables and counts, before they are written."""

    tables: dict[str, pl.DataFrame | None]
    stats: ParseStats
    window: WindowStats
    record: dict[str, Any] = field(default_factory=dict)


def key_options(opts: LoadOptions, drain_start: str | None) -> dict[str, Any]:
    """What changes a part's content besides its files (see :func:`parts.chain_key`)."""
    from loglead_lo2.enhancers.normalize import rules_fingerprint

    return {"head": opts.head, "init_lines_to_skip": opts.init_lines_to_skip,
            "window": opts.window, "save_events": opts.save_events,
            "save_parquet": opts.save_parquet, "save_base_sequences": opts.save_base_sequences,
            "drain_start": drain_start, "rules": rules_fingerprint()}


def compute_run(opts: LoadOptions, files: list[LogFile], drain: DrainParser | None,
                wanted: set[str], tick: Callable[[str, float], None]) -> RunResult:
    """Parse, window, enhance and aggregate one run's files (the Drain parser learns)."""
    from loglead_lo2.enhancers import aggregate_sequences, enhance_events
    from loglead_lo2.enhancers.tokens import TOKEN_COLUMNS

    t = time.perf_counter()
    events, stats = parse_files(files, skip=opts.init_lines_to_skip, head=opts.head)
    tick("parse", time.perf_counter() - t)
    t = time.perf_counter()
    events, cut = cut_windows(events, opts.window)
    if opts.window is not None:
        tick("window", time.perf_counter() - t)
    if drain is not None:
        t = time.perf_counter()
        events = enhance_events(events, drain, tokens=False)
        tick("enhance", time.perf_counter() - t)
    t = time.perf_counter()
    bags = TOKEN_COLUMNS if "sequences_enhanced.parquet" in wanted else ()
    seqs = aggregate_sequences(events, tokens=bags)
    tick("aggregate", time.perf_counter() - t)
    tables: dict[str, pl.DataFrame | None] = dict.fromkeys(TABLES)
    if "events.parquet" in wanted:
        lists = [c for c, d in events.schema.items() if isinstance(d, pl.List)]
        tables["events.parquet"] = events.drop(lists)
    if "sequences.parquet" in wanted:
        tables["sequences.parquet"] = seqs.select([c for c in seqs.columns
                                                   if not c.startswith("e_")])
    if "sequences_enhanced.parquet" in wanted:
        tables["sequences_enhanced.parquet"] = seqs
    record = {
        "events": events.height, "sequences": seqs.height,
        "anomalous_sequences": int(seqs["anomaly"].sum()) if seqs.height else 0,
        "services": sorted(events["service"].unique().to_list()),
        "test_cases": sorted(events["test_case"].unique().to_list()),
        "drain_counts": ({str(k): v for k, v in sorted(drain.counts.items())}
                         if drain is not None else None),
    }
    return RunResult(tables, stats, cut, record)


def _account(report: LoadReport, stats: ParseStats, window: WindowStats,
             record: dict[str, Any], services: set[str], cases: set[str]) -> None:
    report.stats.add(stats)
    report.window.add(window)
    report.events += int(record["events"])
    report.sequences += int(record["sequences"])
    report.anomalous_sequences += int(record["anomalous_sequences"])
    services.update(record["services"])
    cases.update(record["test_cases"])


def _from_part(part: P.Part) -> tuple[ParseStats, WindowStats]:
    rec = part.record
    return (P.join_stats(ParseStats, rec["parse"], part.frames("parse")),
            P.join_stats(WindowStats, rec["window"], part.frames("window")))


def _write(parts_dir: Path, run: str, key: str, result: RunResult,
           drain: DrainParser | None) -> P.Part:
    parse_scalars, parse_frames = P.split_stats(result.stats)
    window_scalars, window_frames = P.split_stats(result.window)
    tables: dict[str, pl.DataFrame | None] = dict(result.tables)
    kinds: dict[str, str | None] = {name: kind for name, (_, kind) in TABLES.items()}
    for prefix, frames in (("parse", parse_frames), ("window", window_frames)):
        for name, frame in frames.items():
            tables[f"{prefix}.{name}.parquet"] = frame
    record = {**result.record, "parse": parse_scalars, "window": window_scalars}
    return P.write_part(parts_dir, run, key, tables, kinds, record, drain_state=drain)


def load_runs(opts: LoadOptions, sel: Selection, drain: DrainParser | None,
              staged: dict[str, Path], report: LoadReport, reuse_dir: Path | None,
              parts_dir: Path | None, say: Callable[[str], None]) -> DrainParser | None:
    """Load every selected run (reusing the valid parts in ``reuse_dir``; writing parts to
    ``parts_dir``), then write the final tables into ``staged``; returns the Drain parser as
    the last run left it."""
    wanted = {name for name, (final, _) in TABLES.items() if final in staged}
    by_run: dict[str, list[LogFile]] = {}
    for f in sel.files:
        by_run.setdefault(f.run, []).append(f)
    start = drain.start_state.sha256 if drain is not None and drain.start_state else None
    options = key_options(opts, start)
    key = "start"
    done: list[P.Part] = []
    restore: P.Part | None = None  # the reused part the parser must be restored from
    services: set[str] = set()
    cases: set[str] = set()
    runs = [r.name for r in sel.runs]
    with counter(total=len(runs), desc="load + enhance", unit="run") as bar:
        for i, run in enumerate(runs, 1):
            files = by_run.get(run, [])
            key = P.chain_key(key, options, files, opts.root)
            part = P.read_part(reuse_dir, run, key) if reuse_dir is not None else None
            reused = part is not None
            if part is not None:
                stats, window = _from_part(part)
                _account(report, stats, window, part.record, services, cases)
                report.parts_reused += 1
                restore = part if drain is not None else None
            else:
                if restore is not None and drain is not None:
                    drain = _restored(restore, drain)
                    restore = None
                result = compute_run(opts, files, drain, wanted, report.tick)
                _account(report, result.stats, result.window, result.record, services, cases)
                if parts_dir is not None:
                    t = time.perf_counter()
                    part = _write(parts_dir, run, key, result, drain)
                    report.tick("write", time.perf_counter() - t)
                    report.parts_written += 1
                del result
            if part is not None:
                done.append(part)
            bar.update(1, f"{report.events:,} events")
            say(f"[load] run {i}/{len(runs)} {run}: {'part reused' if reused else 'loaded'}, "
                f"{report.events:,} events, {report.sequences:,} sequences so far")
    if restore is not None and drain is not None:
        drain = _restored(restore, drain)
    report.batches = len(runs)
    report.services = sorted(services)
    report.test_cases = sorted(cases)
    _compact(done, staged, report)
    return drain


def _restored(part: P.Part, current: DrainParser) -> DrainParser:
    """The parser as it was after ``part``'s run (its state and counts)."""
    from loglead_lo2.enhancers import DrainParser

    parser = DrainParser.from_state(part.path / P.DRAIN, checkpoint=True)
    parser.start_state = current.start_state
    parser.set_counts({int(k): int(v) for k, v in (part.record.get("drain_counts") or {}
                                                   ).items()})
    return parser


def _compact(done: list[P.Part], staged: dict[str, Path], report: LoadReport) -> None:
    """Stream the parts' tables, in run order, into the final files."""
    for name, (final, kind) in TABLES.items():
        if final not in staged:
            continue
        t = time.perf_counter()
        writer = ParquetStreamWriter(staged[final], kind=kind)
        try:
            for part in done:
                if part.has(name):
                    writer.write(part.table(name))
            if not done:
                raise UserError(f"{final}: no run was loaded; check --root and the run "
                                "selection.")
            report.written[final] = writer.close()
        except BaseException:
            writer.abort()
            raise
        report.tick("write", time.perf_counter() - t)


__all__ = ["TABLES", "compute_run", "key_options", "load_runs"]
