"""``lo2-load`` / ``demo/lo2_e2e/run_lo2_loader.py``: the loader phase from the shell."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from loglead_lo2 import SERVICES
from loglead_lo2.cli_common import (
    Parser,
    add_verbosity,
    cli_args,
    guarded,
)
from loglead_lo2.errors import UserError
from loglead_lo2.loader.parse import trim_rule
from loglead_lo2.loader.pipeline import DEFAULT_RUN_BATCH, LoadOptions, LoadReport, run_loader
from loglead_lo2.loader.problems import printable, problem_lines

DESCRIPTION = """\
Load an LO2 tree (runs of Light-OAuth2 logs) into Parquet: events, sequences (one per run,
test case and service, or per time window), enhanced sequences (tokens, Drain templates) and
Prometheus metrics. Runs and cases are read in sorted order; random choices use --seed."""

EPILOG = """\
examples:
  lo2-sample --out lo2_sample
  %(prog)s --root lo2_sample --save-parquet
  %(prog)s --root "$LO2_ROOT" --runs 5 --errors-per-run 1 \\
      --service-types code token refresh-token --save-parquet --output-dir demo/result/lo2"""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", required=True, type=Path,
                   help="LO2 tree: folder of light-oauth2-data-<epoch> or LO2_run_<epoch> runs")
    p.add_argument("--runs", type=int, default=None,
                   help="load only the first N runs (sorted by epoch); default: all")
    p.add_argument("--errors-per-run", type=int, default=None,
                   help="error cases drawn at random (seeded) per run besides 'correct'; "
                        "<=0 or absent: all 53")
    dup = p.add_mutually_exclusive_group()
    dup.add_argument("--allow-duplicates", dest="allow_duplicates", action="store_true",
                     default=True,
                     help="the same error case may be drawn in several runs (default)")
    dup.add_argument("--no-duplicates", dest="allow_duplicates", action="store_false",
                     help="each error case is drawn in at most one run")
    p.add_argument("--single-error-type", metavar="NAME|random", default=None,
                   help="load only this error case (plus 'correct') from every run; "
                        "'random' picks one with --seed")
    svc = p.add_mutually_exclusive_group()
    svc.add_argument("--single-service", choices=SERVICES, default=None,
                     help="load only this service's logs")
    svc.add_argument("--service-types", nargs="+", choices=SERVICES, default=None,
                     metavar="SERVICE",
                     help=f"load only these services (choices: {' '.join(SERVICES)})")
    p.add_argument("--head", type=int, default=None,
                   help="read at most N lines of each file after trimming (quick looks)")
    p.add_argument("--init-lines-to-skip", type=int, default=None, metavar="N",
                   help="drop the first N physical lines of every file instead (0 keeps all). "
                        "Default: drop each file's start-up block (JVM, Hazelcast, config and "
                        "server lines before its first request or Hazelcast line), which leaks "
                        "the label; files that start mid-traffic keep every line")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="cut every (run, test case) into windows of SECONDS on one grid for "
                        "all its services, anchored at its first kept event floored to the "
                        "second; each window of a service is its own sequence (seq_id suffix "
                        "__wNNNN, columns window, window_start, window_end). Only full windows "
                        "are kept: the partial tail of every case (and a case shorter than "
                        "one window) is dropped and counted in lo2_load_info.json and "
                        "lo2_files.parquet, so all windows have the same length. Pick a "
                        "length that divides the case lengths (5 divides LO2's 10 s error "
                        "cases and 60 s 'correct')")
    p.add_argument("--load-metrics", action="store_true",
                   help="parse metrics/metric_*.json of the selected cases into "
                        "lo2_metrics.parquet; with --save-parquet the enhanced sequences "
                        "also get per-sequence metric features (mx_* columns: the service "
                        "container's and the host's metrics over the sequence's time span)")
    p.add_argument("--feature-metrics-only", action="store_true",
                   help="with --load-metrics: read only the metrics files the metric feature "
                        "list names (a real LO2 case exports ~360; the features need about a "
                        "dozen), so lo2_metrics.parquet holds only those metrics")
    p.add_argument("--metric-features", type=Path, default=None, metavar="FILE",
                   help="JSON or YAML list of the metric features to compute (name, "
                        "metric, kind counter|gauge, scope container|host, optional labels, "
                        "unit, text; see docs/metrics.md). Default: the built-in list "
                        "(CPU, memory, network, file-system I/O; host load, memory, CPU, "
                        "disk). Needs --load-metrics")
    p.add_argument("--save-parquet", action="store_true",
                   help="write enhanced sequences (tokens, trigrams, Drain ids) to "
                        "lo2_sequences_enhanced.parquet")
    p.add_argument("--save-events", action="store_true",
                   help="write the events table to lo2_events.parquet")
    p.add_argument("--save-base-sequences", action="store_true",
                   help="write the sequences table without token lists to lo2_sequences.parquet")
    p.add_argument("--drain-state", type=Path, default=None, metavar="FILE",
                   help="start Drain from the state an earlier load saved (its "
                        "lo2_drain_state.parquet, or the copy beside the detection bundles): "
                        "every message that load saw keeps its template id, new templates get "
                        "new ids, so models trained on e_event_drain_id score this load as "
                        "they scored theirs. Default: a new Drain state")
    p.add_argument("--enhancer-run-batch", type=int, default=DEFAULT_RUN_BATCH, metavar="N",
                   help="kept for old command lines: the loader now works one run at a time "
                        "(bounded memory, one part folder per run under lo2_parts/)")
    p.add_argument("--output-dir", "--out-dir", dest="output_dir", type=Path,
                   default=Path("demo/result/lo2"),
                   help="where the Parquet files go (default demo/result/lo2); the --root of "
                        "lo2-detect and lo2-explain")
    p.add_argument("--seed", type=int, default=42, help="seed for every random choice")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files and start over (the per-run parts "
                        "in lo2_parts/ are deleted; otherwise the loader refuses)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="load the runs on a local Dask cluster of N worker processes (needs "
                        "pip install 'loglead-lo2[dask]'); same result as without")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="load the runs on the Dask cluster at ADDRESS (tcp://host:8786); its "
                        "workers must see --root and --output-dir at the same paths")
    p.add_argument("--append", action="store_true",
                   help="replace the previous load, reusing the per-run parts it left in "
                        "lo2_parts/: only new or changed runs are loaded (an interrupted "
                        "load resumes without this flag)")
    add_verbosity(p, quiet_help="print only the summary (no batch lines or progress bar)")
    return p


def options_from_args(args: argparse.Namespace) -> LoadOptions:
    if args.single_service:
        services: tuple[str, ...] = (args.single_service,)
    elif args.service_types:
        services = tuple(sorted(set(args.service_types)))
    else:
        services = SERVICES
    if args.runs is not None and args.runs <= 0:
        raise UserError("--runs must be a positive number of runs.")
    if args.head is not None and args.head <= 0:
        raise UserError("--head must be a positive number of lines.")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1.")
    if args.workers is not None and args.scheduler:
        raise UserError("--workers starts a local cluster and --scheduler attaches to one; "
                        "pass one of them.")
    if args.enhancer_run_batch < 0:
        raise UserError("--enhancer-run-batch must be >= 0.")
    return LoadOptions(
        root=args.root,
        output_dir=args.output_dir,
        runs=args.runs,
        errors_per_run=args.errors_per_run,
        allow_duplicates=args.allow_duplicates,
        single_error_type=args.single_error_type,
        services=services,
        head=args.head,
        init_lines_to_skip=args.init_lines_to_skip,
        window=args.window,
        load_metrics=args.load_metrics,
        metric_features=args.metric_features,
        feature_metrics_only=args.feature_metrics_only,
        save_parquet=args.save_parquet,
        save_events=args.save_events,
        save_base_sequences=args.save_base_sequences,
        run_batch=args.enhancer_run_batch,
        drain_state=args.drain_state,
        seed=args.seed,
        overwrite=args.overwrite,
        append=args.append,
        workers=args.workers,
        scheduler=args.scheduler,
    )


def format_summary(opts: LoadOptions, report: LoadReport, seconds: float) -> str:
    sel = report.selection
    st = report.stats
    lines = [
        "== LO2 loader summary ==",
        f"root: {opts.root}",
        f"runs: {len(sel.runs)} loaded of {sel.runs_available} available",
        f"limits: runs={opts.runs or 'all'}, errors-per-run={opts.errors_per_run or 'all'}, "
        f"duplicates={'allowed' if opts.allow_duplicates else 'no'}, "
        f"single-error-type={opts.single_error_type or '-'}, head={opts.head or '-'}, "
        f"trim={trim_rule(opts.init_lines_to_skip)}, "
        f"window={f'{opts.window:g}s' if opts.window else 'none'}, seed={opts.seed}",
        f"downsampled: {'; '.join(sel.downsampled) if sel.downsampled else 'no'}",
        f"files: {st.files} read, {len(st.empty_files)} empty; lines: {st.lines:,} "
        f"({st.trimmed_lines:,} trimmed, "
        + (f"{st.head_cut_lines:,} past --head, " if opts.head else "")
        + f"{st.blank_lines:,} blank, "
        f"{st.continuation_lines:,} continuation lines attached, "
        f"{st.orphan_lines:,} orphan continuation lines dropped)",
        trim_line(opts, report),
        *([report.window.summary_line()] if opts.window is not None else []),
        f"events: {report.events:,}; sequences: {report.sequences:,} "
        f"({report.anomalous_sequences:,} anomalous, "
        f"{report.sequences - report.anomalous_sequences:,} normal)",
        f"services: {', '.join(report.services) or '-'}",
        f"test cases: {len(report.test_cases)} "
        f"({'correct + ' if 'correct' in report.test_cases else ''}"
        f"{len([c for c in report.test_cases if c != 'correct'])} error cases)",
    ]
    if st.startup_lines_kept:
        lines.append(
            f"start-up lines kept: {st.startup_lines_kept:,} (main thread, JVM) in "
            f"{st.startup_kept_files} file(s), after the trimmed part: they leak the label"
        )
    if st.invalid_utf8_files:
        lines.append(
            f"invalid UTF-8: {len(st.invalid_utf8_files)} file(s), {st.invalid_utf8_lines} "
            f"line(s) read with replacement characters (first: {st.invalid_utf8_files[0]})"
        )
    if st.unreadable_files:
        lines.append(
            f"unreadable: {len(st.unreadable_files)} file(s) skipped "
            f"(first: {printable(st.unreadable_files[0])})"
        )
    lines.extend(problem_lines(sel, st))
    if report.metrics_rows or opts.load_metrics:
        lines.append(f"metrics: {report.metrics_rows:,} samples")
    if report.metric_features is not None:
        lines.append(report.metric_features.line())
    if sel.skipped:
        lines.append(f"skipped: {len(sel.skipped)}")
        lines.extend(f"  - {printable(path)}: {printable(why)}"
                     for path, why in sel.skipped[:20])
        if len(sel.skipped) > 20:
            lines.append(f"  ... and {len(sel.skipped) - 20} more")
    else:
        lines.append("skipped: none")
    if report.written:
        lines.append("written:")
        lines.extend(
            f"  - {opts.output_dir / name}: {rows:,} rows" for name, rows in report.written.items()
        )
        if report.templates:
            start = (f", started from {opts.drain_state} ({report.drain_start.sha256[:12]})"
                     if report.drain_start is not None else "")
            lines.append(f"  ({report.templates} Drain templates{start})")
    else:
        lines.append(
            "written: nothing (add --save-parquet, --save-events, --save-base-sequences "
            "or --load-metrics)"
        )
    timing = ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items())
    rate = (f"; {report.stats.lines / seconds:,.0f} lines/s"  # reused parts read no lines
            if seconds > 0 and report.stats.lines and not report.parts_reused else "")
    lines.append(f"time: {seconds:.2f}s total ({timing}); runs: {len(report.selection.runs)} "
                 f"({report.parts_reused} part(s) reused, {report.parts_written} loaded){rate}")
    return "\n".join(lines)


def trim_line(opts: LoadOptions, report: LoadReport) -> str:
    """``trim: start-up block: 427 lines (correct: 427 lines in 7 files; error cases: 0 lines)``.

    The per-test-case counts are in ``lo2_load_info.json`` (``"trim"``)."""
    st = report.stats
    split = st.trimmed_split()
    (c_lines, c_files), (e_lines, e_files) = split["correct"], split["error"]
    errors = f"{e_lines:,} lines" + (f" in {e_files} files" if e_files else "")
    return (f"trim: {trim_rule(opts.init_lines_to_skip)}: {st.trimmed_lines:,} lines "
            f"(correct: {c_lines:,} lines in {c_files} files; error cases: {errors})")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = cli_args(parser, argv)
    start = time.perf_counter()
    progress = None if args.quiet else (lambda msg: print(msg, flush=True))

    def load() -> tuple[LoadOptions, LoadReport]:
        opts = options_from_args(args)
        return opts, run_loader(opts, progress=progress)

    outcome, code = guarded(parser.prog, load)
    if outcome is None:
        return code
    opts, report = outcome
    print(format_summary(opts, report, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
