"""The loader phase as a library function: select, parse, window, enhance, write.

Runs are processed one at a time (:mod:`loglead_lo2.loader.runs`): each is parsed, cut into
windows, enhanced (one Drain parser follows the runs in order, so template ids agree) and
kept as a part folder under ``lo2_parts/`` (:mod:`loglead_lo2.loader.parts`); the final
Parquet outputs are streamed from the parts, so memory is bounded by one run, not by the
data set, and an interrupted load resumes where it stopped. Outputs are written to a stage
and moved into place only when complete. With the enhanced outputs the
loader also saves the parser as ``lo2_drain_state.parquet`` (named by its sha256 in the
``"drain"`` block of the info file); ``drain_state`` / ``--drain-state`` starts a later load
from it, so template ids keep their meaning across loads
(:mod:`loglead_lo2.enhancers.drain_state`).

Whenever it writes anything, the loader also writes ``lo2_load_info.json`` (options, counts,
the trimming rule and the trimmed lines per test case under ``"trim"``) and
``lo2_files.parquet``: one row per log file read (``run, test_case, service, lines,
trimmed_lines``), the leading lines trimmed from each file, which the ground-truth recall
needs to tell trimmed injected events from loaded ones, and ``window_dropped_lines`` (0
without ``--window``): the lines of the file's events dropped as a partial-window tail.

With ``--window`` the events of each run are cut on one grid per (run, test case) and only
full windows are kept (:mod:`loglead_lo2.loader.window`); every case is cut with all its
services. The counts go to the ``"window"`` block of the info file
(written only with ``--window``, so a load without it writes what it always wrote).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from loglead_lo2 import SERVICES, __version__
from loglead_lo2.artifacts import (
    DRAIN_STATE_FILE,
    ENHANCED_FILE,
    EVENTS_FILE,
    FILES_FILE,
    LOAD_INFO_FILE,
    LOAD_MANIFEST_FILE,
    LOADER_FILES,
    MANIFEST_FILE,
    METRICS_FILE,
    SEQUENCES_FILE,
    TEMPLATES_FILE,
)
from loglead_lo2.errors import UserError
from loglead_lo2.loader.discover import Selection, SelectOptions, select
from loglead_lo2.loader.parse import PER_FILE_SCHEMA, ParseStats, trim_rule
from loglead_lo2.loader.problems import input_problems
from loglead_lo2.loader.window import (
    DROP_WARN_FRACTION,
    WindowStats,
    files_with_dropped_lines,
)
from loglead_lo2.schema import (
    EVENT_COLUMNS,
    write_parquet,
    write_text_atomic,
)

if TYPE_CHECKING:
    from loglead_lo2.enhancers.drain_state import DrainStateInfo
    from loglead_lo2.loader.metric_join import MetricJoin
    from loglead_lo2.outputs import OutputSet

log = logging.getLogger(__name__)

INFO_FILE = LOAD_INFO_FILE
DEFAULT_RUN_BATCH = 2
"""The default of ``--enhancer-run-batch``, kept for old command lines and recorded in the
load info; the loader works one run at a time whatever its value."""


@dataclass(frozen=True)
class LoadOptions:
    """Everything the loader phase needs; the CLI maps its flags onto this."""

    root: Path
    output_dir: Path = Path("demo/result/lo2")
    runs: int | None = None
    errors_per_run: int | None = None
    allow_duplicates: bool = True
    single_error_type: str | None = None
    services: tuple[str, ...] = SERVICES
    head: int | None = None
    init_lines_to_skip: int | None = None
    """``None``: trim each file's start-up block (by content); ``N``: its first N lines."""
    window: float | None = None
    load_metrics: bool = False
    metric_features: Path | None = None
    """JSON/YAML list of metric features (``--metric-features``; ``None``: the built-in list)."""
    feature_metrics_only: bool = False
    """Read only the metrics files the feature list names (``--feature-metrics-only``)."""
    save_parquet: bool = False
    save_events: bool = False
    save_base_sequences: bool = False
    run_batch: int = DEFAULT_RUN_BATCH
    drain_state: Path | None = None
    """A ``lo2_drain_state.parquet`` to start Drain from (``None``: a new state)."""
    seed: int = 42
    overwrite: bool = False
    append: bool = False
    """Replace the previous load, reusing its per-run parts (``--append``)."""
    workers: int | None = None
    """Load the runs on a local Dask cluster of this many worker processes (``--workers``)."""
    scheduler: str | None = None
    """Load the runs on the Dask cluster at this address (``--scheduler``)."""


@dataclass
class LoadReport:
    """What the loader did; printed by the CLI and saved as ``lo2_load_info.json``."""

    selection: Selection
    stats: ParseStats = field(default_factory=ParseStats)
    events: int = 0
    sequences: int = 0
    anomalous_sequences: int = 0
    services: list[str] = field(default_factory=list)
    test_cases: list[str] = field(default_factory=list)
    metrics_rows: int = 0
    metric_features: MetricJoin | None = None
    """The metric features added to the enhanced sequences (``--load-metrics`` with
    ``--save-parquet``)."""
    templates: int = 0
    written: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    window: WindowStats = field(default_factory=WindowStats)
    drain: DrainStateInfo | None = None
    """The Drain state this load saved (``lo2_drain_state.parquet``)."""
    drain_start: DrainStateInfo | None = None
    """The state it started from (``--drain-state``)."""
    notes: list[str] = field(default_factory=list)
    """What the start found and cleaned up (an interrupted commit finished, leftovers)."""
    parts_reused: int = 0
    parts_written: int = 0

    def tick(self, step: str, seconds: float) -> None:
        self.timings[step] = self.timings.get(step, 0.0) + seconds


def _outputs(opts: LoadOptions) -> dict[str, Path]:
    out = opts.output_dir
    wanted = {
        EVENTS_FILE: opts.save_events,
        SEQUENCES_FILE: opts.save_base_sequences,
        ENHANCED_FILE: opts.save_parquet,
        METRICS_FILE: opts.load_metrics,
        TEMPLATES_FILE: opts.save_parquet or opts.save_events,
        DRAIN_STATE_FILE: opts.save_parquet or opts.save_events,
    }
    return {name: out / name for name, on in wanted.items() if on}


def run_loader(
    opts: LoadOptions, progress: Callable[[str], None] | None = None
) -> LoadReport:
    """Load the LO2 tree under ``opts.root`` and write the requested Parquet outputs.

    The outputs are one :class:`~loglead_lo2.outputs.OutputSet`: written to a stage folder
    under an exclusive lock on ``opts.output_dir`` and moved into place together at the end
    (with ``lo2_load_manifest.json``), so the folder holds either the previous load or this
    one, never a mix; the previous load's files this one does not write are removed.
    """
    from loglead_lo2.outputs import OutputSet

    say = progress or (lambda _msg: None)
    if opts.window is not None and opts.window <= 0:
        raise UserError("--window must be a positive number of seconds.")
    if opts.init_lines_to_skip is not None and opts.init_lines_to_skip < 0:
        raise UserError("--init-lines-to-skip must be >= 0 (0 disables trimming; leave it out "
                        "to trim the start-up block).")
    outputs = _outputs(opts)
    if opts.feature_metrics_only and not opts.load_metrics:
        raise UserError("--feature-metrics-only narrows --load-metrics; add --load-metrics.")
    if opts.metric_features is not None:
        if not opts.load_metrics:
            raise UserError("--metric-features lists the metric features of --load-metrics; "
                            "add --load-metrics (and --save-parquet for the features).")
        from loglead_lo2.enhancers.metric_features import read_features

        read_features(opts.metric_features)  # a bad list fails before the load starts
    if opts.drain_state is not None and DRAIN_STATE_FILE not in outputs:
        raise UserError("--drain-state starts the Drain step, which runs only with "
                        "--save-parquet or --save-events; add one of them.")
    if not outputs:  # nothing to write: no lock, nothing replaced
        return _load(opts, None, say)
    with OutputSet(opts.output_dir, phase="load", manifest=LOAD_MANIFEST_FILE,
                   owned=LOADER_FILES, overwrite=opts.overwrite or opts.append,
                   flag="--overwrite (or --append)") as out:
        for note in out.notes:
            log.info("%s: %s", opts.output_dir, note)
        report = _load(opts, out, say)
        if report.written:
            out.commit({"tool": "loglead-lo2", "version": __version__})
            from loglead_lo2.loader.parts import PARTS_DIR, prune

            prune(opts.output_dir / PARTS_DIR, {r.name for r in report.selection.runs})
        report.notes = [*out.notes, *report.notes]
    return report


def _load(opts: LoadOptions, out: OutputSet | None,
          say: Callable[[str], None]) -> LoadReport:
    """Select, parse, window, enhance and write into ``out``'s stage (``None``: no outputs)."""
    names = _outputs(opts)
    staged = {name: out.path(name) for name in names} if out is not None else {}
    t0 = time.perf_counter()
    sel = select(
        opts.root,
        SelectOptions(
            runs=opts.runs,
            errors_per_run=opts.errors_per_run,
            allow_duplicates=opts.allow_duplicates,
            single_error_type=opts.single_error_type,
            services=opts.services,
            seed=opts.seed,
        ),
    )
    report = LoadReport(selection=sel)
    report.tick("discover", time.perf_counter() - t0)
    enhance = opts.save_parquet or opts.save_events
    drain = None
    if enhance:
        from loglead_lo2.enhancers import DrainParser

        drain = (DrainParser() if opts.drain_state is None
                 else DrainParser.from_state(opts.drain_state))
        report.drain_start = drain.start_state
    features = None
    if opts.load_metrics:  # read run by run with the logs (loader.metric_join)
        from loglead_lo2.loader.metric_join import MetricJoin

        features = MetricJoin.wanted(opts.metric_features)
        if not sel.metrics_dirs:
            sel.skipped.append((str(opts.root), "--load-metrics: no metrics/ folders found"))
    from loglead_lo2.loader import parts as P
    from loglead_lo2.loader.runs import load_runs

    parts_dir = opts.output_dir / P.PARTS_DIR if out is not None else None
    if parts_dir is not None and P.clean_leftovers(parts_dir):
        report.notes.append(f"removed unfinished part folders in {parts_dir}")
    # --overwrite starts over: no part is reused (each is replaced once its run is loaded
    # again, so a failed load leaves the old parts); --append and a plain re-run reuse them.
    reuse = opts.append or not opts.overwrite
    execute: Callable[..., None] | None = None
    if opts.workers or opts.scheduler:
        from loglead_lo2.loader.cluster import run_on_cluster

        execute = run_on_cluster
    drain = load_runs(opts, sel, drain, staged, report, parts_dir if reuse else None,
                      parts_dir, say, execute, features)
    if drain is not None and TEMPLATES_FILE in staged:
        table = drain.template_table()
        report.templates = table.height
        report.written[TEMPLATES_FILE] = write_parquet(table, staged[TEMPLATES_FILE])
        report.drain = drain.save_state(staged[DRAIN_STATE_FILE])
        report.written[DRAIN_STATE_FILE] = report.drain.messages
    st = report.stats
    if st.startup_lines_kept and opts.init_lines_to_skip != 0:
        log.warning("%d start-up line(s) (main thread, JVM) in %d file(s) come after the "
                    "trimmed part and were kept: they leak the label", st.startup_lines_kept,
                    st.startup_kept_files)
    if opts.window is not None and report.window.dropped_fraction() > DROP_WARN_FRACTION:
        log.warning("%.1f%% of the events lie in partial tail windows of %gs and were "
                    "dropped: pick a window that divides the case lengths",
                    100 * report.window.dropped_fraction(), opts.window)
    if report.written and out is not None:
        files = files_with_dropped_lines(st.per_file.select(list(PER_FILE_SCHEMA)),
                                         report.window)
        report.written[FILES_FILE] = write_parquet(files, out.path(FILES_FILE))
        write_text_atomic(out.path(INFO_FILE), json.dumps(info(opts, report), indent=2))
    return report


def info(opts: LoadOptions, report: LoadReport) -> dict[str, object]:
    """The JSON record of a load: options, counts, outputs, manifest location, versions."""
    manifest = opts.root / MANIFEST_FILE
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    options["services"] = list(opts.services)
    record: dict[str, object] = {
        "tool": "loglead-lo2",
        "version": __version__,
        "polars": pl.__version__,
        "root": str(opts.root.resolve()),
        "manifest": str(manifest.resolve()) if manifest.is_file() else None,
        "options": options,
        "runs_available": report.selection.runs_available,
        "runs_loaded": [r.name for r in report.selection.runs],
        "events": report.events,
        "sequences": report.sequences,
        "anomalous_sequences": report.anomalous_sequences,
        "windowed": opts.window is not None,
        "window_seconds": opts.window,
        "outputs": report.written,
        "event_columns": list(EVENT_COLUMNS),
        "trim": trim_info(opts, report.stats),
        "input_problems": input_problems(report.selection, report.stats),
    }
    if opts.window is not None:
        record["window"] = report.window.info(FILES_FILE)
    record["parts"] = {"folder": "lo2_parts", "runs": len(report.selection.runs),
                       "reused": report.parts_reused, "loaded": report.parts_written}
    if report.metric_features is not None:
        record["metric_features"] = report.metric_features.info()
    if report.drain is not None:
        record["drain"] = {"state_file": DRAIN_STATE_FILE, **report.drain.as_dict(),
                           "started_from": None if report.drain_start is None else {
                               "file": str(opts.drain_state), **report.drain_start.as_dict()}}
    return record


def trim_info(opts: LoadOptions, stats: ParseStats) -> dict[str, object]:
    """The ``"trim"`` block of ``lo2_load_info.json``: rule, totals, lines per test case."""
    split = stats.trimmed_split()
    return {
        "rule": "startup_block" if opts.init_lines_to_skip is None else "first_lines",
        "description": trim_rule(opts.init_lines_to_skip),
        "init_lines_to_skip": opts.init_lines_to_skip,
        "head": opts.head,
        "trimmed_lines": stats.trimmed_lines,
        "trimmed_files": stats.trimmed_files,
        "correct": {"lines": split["correct"][0], "files": split["correct"][1]},
        "error_cases": {"lines": split["error"][0], "files": split["error"][1]},
        "per_test_case": stats.trimmed_per_case(),
        "head_cut_lines": stats.head_cut_lines,
        "startup_lines_kept": stats.startup_lines_kept,
        "startup_kept_files": stats.startup_kept_files,
        "per_file": FILES_FILE,
    }
