"""``lo2-report`` / ``python -m loglead_lo2.report``: the run report from the shell."""

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

DESCRIPTION = """\
Report phase of the LO2 pipeline: one self-contained report.html (opens offline; figures and
CSS inline) from the artifacts of the loader, detection and explainability phases: data
summary, settings, leaderboard and leakage banner, ROC/PR curves and score histograms of the
hold-out rows, recall per signature and test case, SHAP plots, and the top flagged hold-out
windows next to their nearest normal window. No model is run. A missing detection run is an
error (exit 2); other missing inputs get a section naming the command that produces them."""

EPILOG = """\
examples:
  %(prog)s --root demo/result/lo2
  %(prog)s --root demo/result/lo2 --out-dir /tmp/lo2-report --overwrite"""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("demo/result/lo2"),
                   help="the loader's output folder (default demo/result/lo2)")
    p.add_argument("--metrics-dir", type=Path, default=None,
                   help="the detection run (default <root>/metrics)")
    p.add_argument("--explain-dir", type=Path, default=None,
                   help="the explainability run (default <root>/explainability)")
    p.add_argument("--out-dir", "--output-dir", dest="out_dir", type=Path, default=None,
                   help="where report.html goes (default: the detection run's folder, "
                        "runs/<name>/report, shown as <root>/report)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the report of an earlier run in --out-dir")
    add_verbosity(p, quiet_help="print only the report's path (and errors)")
    return p


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv``, write the report, print its path; 2 on user errors."""
    args = cli_args(build_parser(prog), argv)

    def report() -> object:
        from loglead_lo2.report.build import ReportOptions, run_report

        return run_report(ReportOptions(root=args.root, metrics_dir=args.metrics_dir,
                                        explain_dir=args.explain_dir, out_dir=args.out_dir,
                                        overwrite=args.overwrite))

    result, code = guarded(prog or "lo2-report", report)
    if result is None:
        return code
    from loglead_lo2.report.build import ReportResult

    assert isinstance(result, ReportResult)
    if not args.quiet:
        for line in result.missing:
            print(f"[Report] missing: {line}")
        print("[Done] wrote:")
    print(f"  {result.path}" if not args.quiet else str(result.path))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
