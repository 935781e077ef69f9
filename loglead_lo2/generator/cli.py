"""``lo2-sample``: write a seeded LO2-shaped sample tree (see :func:`generate`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loglead_lo2.cli_common import (
    Parser,
    add_verbosity,
    cli_args,
    guarded,
)
from loglead_lo2.generator.generate import MANIFEST_NAME, generate
from loglead_lo2.generator.schedule import NAMINGS


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog or "lo2-sample",
        description="Generate a seeded, LO2-shaped sample: runs x 54 test cases x 7 service "
        f"logs, with the ground truth of every error event in {MANIFEST_NAME}.",
    )
    parser.add_argument("--out", "--out-dir", dest="out", type=Path, required=True,
                        help="output folder (new or empty); the --root of lo2-load")
    parser.add_argument("--runs", type=int, default=6, help="number of runs (default 6)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--scale", type=float, default=0.05,
                        help="volume relative to real LO2 (1.0 = ~1.1M lines per run; "
                        "default 0.05)")
    parser.add_argument("--with-metrics", action="store_true",
                        help="also write Prometheus metric JSON files per test case")
    parser.add_argument("--naming", choices=NAMINGS, default="light-oauth2-data",
                        help="run folder names: light-oauth2-data-<epoch> (default), "
                        "LO2_run_<epoch> (shuffled order, 20-180 s cases) or mixed")
    parser.add_argument("--start-epoch", type=int, default=None,
                        help="folder epoch of the first run (default: derived from the seed)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a sample previously written to --out")
    add_verbosity(parser, quiet_help="no progress lines")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = cli_args(build_parser(prog), argv)
    progress = None if args.quiet else (lambda msg: print(msg, flush=True))
    summary, code = guarded(prog or "lo2-sample", lambda: generate(
        args.out, runs=args.runs, seed=args.seed, scale=args.scale,
        with_metrics=args.with_metrics, naming=args.naming, overwrite=args.overwrite,
        start_epoch=args.start_epoch, progress=progress,
    ))
    if summary is None:
        return code
    print(
        f"wrote {len(summary.runs)} run(s), {summary.files} files, {summary.lines:,} lines "
        f"({summary.injected} injected + {summary.background} background error events) to "
        f"{summary.out} in {summary.seconds:.1f} s ({summary.lines_per_second:,.0f} lines/s)"
    )
    print(f"ground truth: {summary.out / MANIFEST_NAME}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
