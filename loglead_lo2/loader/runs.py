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

from loglead_lo2.artifacts import ENHANCED_FILE, EVENTS_FILE, METRICS_FILE, SEQUENCES_FILE
from loglead_lo2.errors import UserError
from loglead_lo2.loader import parts as P
from loglead_lo2.loader.discover import LogFile, Selection
from loglead_lo2.loader.parse import ParseStats, parse_files
from loglead_lo2.loader.window import WindowStats, cut_windows
from loglead_lo2.progress import counter, eta_note
from loglead_lo2.schema import ParquetStreamWriter

if TYPE_CHECKING:
    from loglead_lo2.enhancers import DrainParser
    from loglead_lo2.enhancers.drain import DrainSnapshot
    from loglead_lo2.enhancers.metric_features import MetricFeature
    from loglead_lo2.loader.pipeline import LoadOptions, LoadReport

log = logging.getLogger(__name__)

# part file name -> (final file name, schema kind)
TABLES: dict[str, tuple[str, str]] = {
    "events.parquet": (EVENTS_FILE, "events"),
    "sequences.parquet": (SEQUENCES_FILE, "sequences"),
    "sequences_enhanced.parquet": (ENHANCED_FILE, "sequences_enhanced"),
    "metrics.parquet": (METRICS_FILE, "metrics"),
}
MetricsDirs = list[tuple[str, str, Path]]
"""A run's ``(run, test_case, metrics folder)`` entries."""


@dataclass
class RunResult:
    """One run's tables and counts, before they are written."""

    tables: dict[str, pl.DataFrame | None]
    stats: ParseStats
    window: WindowStats
    record: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def key_options(opts: LoadOptions, drain_start: str | None) -> dict[str, Any]:
    """What changes a part's content besides its files (see :func:`parts.chain_key`)."""
    from loglead_lo2.enhancers.drain import DrainConfig
    from loglead_lo2.enhancers.drain_state import config_dict
    from loglead_lo2.enhancers.normalize import rules_fingerprint
    from loglead_lo2.enhancers.sequences import ADDS
    from loglead_lo2.schema import SCHEMAS

    # the column contract, the columns the aggregation adds and Drain's settings too: a
    # version that changes any of them cannot reuse an older version's parts, even under the
    # same version number
    contract = {kind: {c: str(t) for c, t in cols.items()} for kind, cols in SCHEMAS.items()}
    return {"head": opts.head, "init_lines_to_skip": opts.init_lines_to_skip,
            "window": opts.window, "save_events": opts.save_events,
            "save_parquet": opts.save_parquet, "save_base_sequences": opts.save_base_sequences,
            "drain_start": drain_start, "rules": rules_fingerprint(),
            "drain_config": config_dict(DrainConfig()), "schema": contract,
            "sequence_columns": list(ADDS), **_metric_options(opts)}


def _metric_options(opts: LoadOptions) -> dict[str, Any]:
    """The metrics part of the key (nothing without ``--load-metrics``, so the parts of a
    load without metrics keep their keys)."""
    if not opts.load_metrics:
        return {}
    return {"metrics": True, "feature_metrics_only": opts.feature_metrics_only,
            "metric_features": None if opts.metric_features is None
            else [str(opts.metric_features), *P.stamp(opts.metric_features)]}


@dataclass(frozen=True)
class _Listed:
    path: Path


def metrics_files(dirs: MetricsDirs) -> list[_Listed]:
    """The files of a run's metrics folders, sorted (for its part key: a changed metrics
    file loads the run again)."""
    out: list[_Listed] = []
    for _run, _case, folder in dirs:
        try:
            out.extend(_Listed(p) for p in sorted(folder.iterdir())
                       if p.name.startswith("metric_"))
        except OSError:
            out.append(_Listed(folder))
    return out


@dataclass
class Prepared:
    """A run parsed, windowed and normalised (the part of its work that needs no Drain
    state): its events, counts and the distinct normalised messages Drain must name."""

    events: pl.DataFrame
    stats: ParseStats
    window: WindowStats
    timings: dict[str, float]
    codes: pl.Series | None = None
    """Per event: the position of its normalised message in :attr:`messages`."""
    messages: pl.Series | None = None
    """Sorted distinct normalised messages (``None`` without Drain)."""
    weights: pl.Series | None = None
    """Events per message."""
    metrics: pl.DataFrame | None = None
    """The run's metrics (``--load-metrics``)."""
    metrics_record: dict[str, Any] | None = None
    """What :func:`~loglead_lo2.loader.metric_join.run_metrics` found."""


def prepare_run(opts: LoadOptions, files: list[LogFile], enhance: bool,
                metrics_dirs: MetricsDirs | None = None,
                features: tuple[MetricFeature, ...] = ()) -> Prepared:
    """Parse, window and normalise one run's files, and parse its metrics files when
    ``metrics_dirs`` is given (no shared state: runs anywhere)."""
    import numpy as np

    from loglead_lo2.enhancers.normalize import normalize_codes

    timings: dict[str, float] = {}
    t = time.perf_counter()
    events, stats = parse_files(files, skip=opts.init_lines_to_skip, head=opts.head)
    timings["parse"] = time.perf_counter() - t
    t = time.perf_counter()
    events, cut = cut_windows(events, opts.window)
    if opts.window is not None:
        timings["window"] = time.perf_counter() - t
    prep = Prepared(events, stats, cut, timings)
    if enhance:
        t = time.perf_counter()
        prep.events, prep.codes, prep.messages = normalize_codes(events)
        del events
        prep.weights = pl.Series(np.bincount(prep.codes.to_numpy(),
                                             minlength=len(prep.messages)))
        timings["enhance"] = time.perf_counter() - t
    if metrics_dirs is not None:
        from loglead_lo2.loader.metric_join import run_metrics

        prep.metrics, rec = run_metrics(metrics_dirs, features, opts.feature_metrics_only)
        timings["metrics"] = rec.pop("seconds")
        prep.metrics_record = rec
    return prep


def finish_run(prep: Prepared, cids: pl.Series | None, wanted: set[str],
               drain_counts: dict[int, int] | None) -> RunResult:
    """Name the events' templates (``cids`` from :meth:`DrainParser.assign` over
    ``prep.messages``) and aggregate the run's sequences (no shared state)."""
    from loglead_lo2.enhancers import aggregate_sequences
    from loglead_lo2.enhancers._common import add_columns
    from loglead_lo2.enhancers.drain import id_names
    from loglead_lo2.enhancers.tokens import TOKEN_COLUMNS, length

    events = prep.events
    timings = dict(prep.timings)
    t = time.perf_counter()
    if cids is not None and prep.codes is not None:
        events = length(add_columns(events, [id_names(cids).gather(prep.codes)]))
        timings["enhance"] = timings.get("enhance", 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    bags = TOKEN_COLUMNS if "sequences_enhanced.parquet" in wanted else ()
    known = (prep.codes, prep.messages) if prep.codes is not None and prep.messages is not None \
        else None
    seqs = aggregate_sequences(events, tokens=bags, messages=known)
    timings["aggregate"] = time.perf_counter() - t
    tables: dict[str, pl.DataFrame | None] = dict.fromkeys(TABLES)
    if "events.parquet" in wanted:
        lists = [c for c, d in events.schema.items() if isinstance(d, pl.List)]
        tables["events.parquet"] = events.drop(lists)
    if "sequences.parquet" in wanted:
        tables["sequences.parquet"] = seqs.select([c for c in seqs.columns
                                                   if not c.startswith("e_")])
    if "sequences_enhanced.parquet" in wanted:
        tables["sequences_enhanced.parquet"] = seqs
    if "metrics.parquet" in wanted:
        tables["metrics.parquet"] = prep.metrics
    record = {
        "events": events.height, "sequences": seqs.height,
        "anomalous_sequences": int(seqs["anomaly"].sum()) if seqs.height else 0,
        "services": sorted(events["service"].unique().to_list()),
        "test_cases": sorted(events["test_case"].unique().to_list()),
        "drain_counts": ({str(k): v for k, v in sorted(drain_counts.items())}
                         if drain_counts is not None else None),
    }
    if prep.metrics_record is not None:
        record["metrics"] = prep.metrics_record
    return RunResult(tables, prep.stats, prep.window, record, timings)


def compute_run(opts: LoadOptions, step: Step, drain: DrainParser | None,
                wanted: set[str]) -> RunResult:
    """One run start to end in this process (the Drain parser learns its messages)."""
    prep = prepare_run(opts, step.files, drain is not None, step.metrics, step.features)
    cids = None
    if drain is not None and prep.messages is not None:
        t = time.perf_counter()
        cids = drain.assign(prep.messages, prep.weights)
        prep.timings["drain"] = time.perf_counter() - t
    return finish_run(prep, cids, wanted, drain.counts if drain is not None else None)


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


def write_run(parts_dir: Path, run: str, key: str, result: RunResult,
              drain: DrainSnapshot | None = None) -> P.Part:
    """Write a run's part (``drain``: the Drain state after the run, to save with it); the
    write's own seconds are added to the returned record (not to ``part.json``)."""
    t = time.perf_counter()
    parse_scalars, parse_frames = P.split_stats(result.stats)
    window_scalars, window_frames = P.split_stats(result.window)
    tables: dict[str, pl.DataFrame | None] = dict(result.tables)
    kinds: dict[str, str | None] = {name: kind for name, (_, kind) in TABLES.items()}
    for prefix, frames in (("parse", parse_frames), ("window", window_frames)):
        for name, frame in frames.items():
            tables[f"{prefix}.{name}.parquet"] = frame
    record = {**result.record, "parse": parse_scalars, "window": window_scalars,
              "seconds": {k: round(v, 4) for k, v in sorted(result.timings.items())}}
    part = P.write_part(parts_dir, run, key, tables, kinds, record, drain_state=drain)
    part.record["seconds"]["write"] = time.perf_counter() - t
    return part


@dataclass
class Step:
    """One run of a load: its files, its part key and the part reused for it (or None)."""

    index: int
    run: str
    files: list[LogFile]
    key: str
    part: P.Part | None = None
    metrics: MetricsDirs | None = None
    """The run's metrics folders (``None``: no ``--load-metrics``)."""
    features: tuple[MetricFeature, ...] = ()
    """The metric features of the load (their metrics' steps are recorded per run)."""


class DrainChain:
    """The Drain parser along the runs in order: a reused part moves it to the state that part
    saved (restored only when a later run needs it)."""

    def __init__(self, drain: DrainParser | None) -> None:
        self._drain = drain
        self._pending: P.Part | None = None

    @property
    def on(self) -> bool:
        return self._drain is not None

    def skip(self, part: P.Part) -> None:
        if self._drain is not None:
            self._pending = part

    def parser(self) -> DrainParser | None:
        if self._pending is not None and self._drain is not None:
            self._drain = _restored(self._pending, self._drain)
            self._pending = None
        return self._drain


def load_runs(opts: LoadOptions, sel: Selection, drain: DrainParser | None,
              staged: dict[str, Path], report: LoadReport, reuse_dir: Path | None,
              parts_dir: Path | None, say: Callable[[str], None],
              execute: Callable[..., None] | None = None,
              features: tuple[MetricFeature, ...] | None = None) -> DrainParser | None:
    """Load every selected run (reusing the valid parts in ``reuse_dir``; writing parts to
    ``parts_dir``), then write the final tables into ``staged``; returns the Drain parser as
    the last run left it. ``execute`` loads the runs elsewhere, e.g. on a Dask cluster
    (:func:`loglead_lo2.loader.cluster.run_on_cluster`), with identical results.
    ``features``: the metric features (``--load-metrics``; ``None`` without it), whose
    metrics are read run by run and joined to the enhanced sequences."""
    wanted = {name for name, (final, _) in TABLES.items() if final in staged}
    by_run: dict[str, list[LogFile]] = {}
    for f in sel.files:
        by_run.setdefault(f.run, []).append(f)
    metrics_by_run: dict[str, MetricsDirs] = {}
    for entry in sel.metrics_dirs if features is not None else ():
        metrics_by_run.setdefault(entry[0], []).append(entry)
    start = drain.start_state.sha256 if drain is not None and drain.start_state else None
    options = key_options(opts, start)
    key = "start"
    plan: list[Step] = []
    first_metrics: list[_Listed] | None = None
    for i, run in enumerate(r.name for r in sel.runs):
        files = by_run.get(run, [])
        mdirs = metrics_by_run.get(run, []) if features is not None else None
        mfiles = metrics_files(mdirs) if mdirs else []
        if first_metrics is None and mfiles:
            first_metrics = mfiles
        listed = [*files, *mfiles] if mdirs else files
        key = P.chain_key(key, options, listed, opts.root)
        part = P.read_part(reuse_dir, run, key) if reuse_dir is not None else None
        plan.append(Step(i, run, files, key, part, mdirs, features or ()))
    if first_metrics is not None and not opts.feature_metrics_only:
        from loglead_lo2.loader.metric_join import warn_metrics_volume

        warn_metrics_volume([m.path for m in first_metrics], len(metrics_by_run), features or ())
    done: list[P.Part] = []
    metric_records: list[dict[str, Any]] = []
    services: set[str] = set()
    cases: set[str] = set()
    chain = DrainChain(drain)
    to_load = sum(step.part is None for step in plan)
    started, loaded = time.perf_counter(), 0
    with counter(total=len(plan), desc="load + enhance", unit="run") as bar:

        def finished(step: Step, part: P.Part | None, result: RunResult | None) -> None:
            """``result``: the run loaded in this process (its counts are at hand); else the
            counts are read back from ``part`` (reused, or written by a cluster worker)."""
            nonlocal loaded
            record = result.record if result is not None else part.record if part else {}
            if record.get("metrics") is not None:
                metric_records.append(record["metrics"])
            if result is not None:
                _account(report, result.stats, result.window, result.record, services, cases)
            else:
                assert part is not None
                stats, window = _from_part(part)
                _account(report, stats, window, part.record, services, cases)
            if step.part is not None:
                timings: dict[str, Any] = {}
            elif part is not None:
                timings = part.record.get("seconds") or {}
            else:
                timings = result.timings if result is not None else {}
            if part is not None:
                done.append(part)
            for name, seconds in timings.items():
                report.tick(name, float(seconds))
            if step.part is not None:
                report.parts_reused += 1
            elif part is not None:
                report.parts_written += 1
            bar.update(1, f"{report.events:,} events")
            loaded += step.part is None  # reused parts cost next to nothing: not the pace
            say(f"[load] run {step.index + 1}/{len(plan)} {step.run}: "
                f"{'part reused' if step.part is not None else 'loaded'}, "
                f"{report.events:,} events, {report.sequences:,} sequences so far; "
                f"{eta_note(time.perf_counter() - started, loaded, to_load - loaded)}")

        if execute is not None and parts_dir is not None:
            execute(opts, plan, chain, wanted, parts_dir, finished)
        else:
            _run_here(opts, plan, chain, wanted, parts_dir, finished)
    report.services = sorted(services)
    report.test_cases = sorted(cases)
    if features is not None:
        _account_metrics(opts, sel, features, metric_records, staged, report)
    _compact(done, staged, report)
    return chain.parser()


Finished = Callable[[Step, "P.Part | None", "RunResult | None"], None]


def _run_here(opts: LoadOptions, plan: list[Step], chain: DrainChain, wanted: set[str],
              parts_dir: Path | None, finished: Finished) -> None:
    for step in plan:
        if step.part is not None:
            chain.skip(step.part)
            finished(step, step.part, None)
            continue
        parser = chain.parser()
        result = compute_run(opts, step, parser, wanted)
        part = None
        if parts_dir is not None:
            part = write_run(parts_dir, step.run, step.key, result,
                             parser.snapshot() if parser is not None else None)
            result.tables = {}  # written: the run's tables need not stay in memory
        finished(step, part, result)


def _restored(part: P.Part, current: DrainParser) -> DrainParser:
    """The parser as it was after ``part``'s run (its state and counts)."""
    from loglead_lo2.enhancers import DrainParser

    parser = DrainParser.from_state(part.path / P.DRAIN, checkpoint=True)
    parser.start_state = current.start_state
    parser.set_counts(part.record.get("drain_counts") or {})
    return parser


def _account_metrics(opts: LoadOptions, sel: Selection, features: tuple[MetricFeature, ...],
                     records: list[dict[str, Any]], staged: dict[str, Path],
                     report: LoadReport) -> None:
    """The runs' metrics counts and skipped files into the report, and the feature join of
    the enhanced sequences (its columns are those of the features any run has)."""
    from loglead_lo2.loader.metric_join import MetricJoin

    for rec in records:
        report.metrics_rows += int(rec.get("rows") or 0)
        sel.skipped.extend((str(a), str(b)) for a, b in rec.get("skipped") or ())
    if ENHANCED_FILE in staged:
        report.metric_features = MetricJoin.from_runs(features, opts.metric_features, records)


def _compact(done: list[P.Part], staged: dict[str, Path], report: LoadReport) -> None:
    """Stream the parts' tables, in run order, into the final files (the enhanced sequences
    with their metric features, when the load has them)."""
    finals = [final for final, _ in TABLES.values() if final in staged]
    if finals and not done:
        raise UserError(f"{finals[0]}: no run was loaded; check --root and the run selection.")
    for name, (final, kind) in TABLES.items():
        if final not in staged:
            continue
        t = time.perf_counter()
        writer = ParquetStreamWriter(staged[final], kind=kind)
        join = report.metric_features if final == ENHANCED_FILE else None
        try:
            for part in done:
                if part.has(name):
                    table = part.table(name)
                    if join is not None:
                        table = join.add(table, part.table("metrics.parquet")
                                         if part.has("metrics.parquet") else None)
                    writer.write(table)
            report.written[final] = writer.close()
        except BaseException:
            writer.abort()
            raise
        report.tick("write", time.perf_counter() - t)


__all__ = ["TABLES", "compute_run", "key_options", "load_runs"]
