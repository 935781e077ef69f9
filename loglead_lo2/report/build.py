"""The report phase: ``<root>/report/report.html`` from the other phases' artifacts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loglead_lo2 import artifacts as A
from loglead_lo2 import results
from loglead_lo2.outputs import OutputSet, reading, verify_set
from loglead_lo2.report import sections
from loglead_lo2.report.inputs import read_inputs
from loglead_lo2.report.page import render

log = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass
class ReportOptions:
    root: Path = Path("demo/result/lo2")
    metrics_dir: Path | None = None
    explain_dir: Path | None = None
    out_dir: Path | None = None
    overwrite: bool = False


@dataclass
class ReportResult:
    path: Path
    missing: list[str] = field(default_factory=list)


def _quiet(_message: str) -> None:
    return None


def run_report(options: ReportOptions, progress: Say = _quiet) -> ReportResult:
    """Read the artifacts, render the page and commit it as the ``report`` output set: into
    the detection run's own folder (``runs/<name>/report``, with ``<root>/report`` pointed at
    it) when ``<root>/metrics`` is a versioned run, else ``<root>/report``."""
    root = Path(options.root)
    metrics = Path(options.metrics_dir) if options.metrics_dir else root / A.METRICS_DIR
    explain = Path(options.explain_dir) if options.explain_dir else root / A.EXPLAIN_DIR
    run_dir = results.run_folder_of(metrics) if options.out_dir is None else None
    out_dir = (Path(options.out_dir) if options.out_dir
               else run_dir / A.REPORT_DIR if run_dir is not None else root / A.REPORT_DIR)
    folders = [f for f in (root, metrics, explain) if f.is_dir()]
    with reading(*folders):
        verify_set(metrics, A.DETECT_MANIFEST_FILE, [A.RUN_FILE, A.LEADERBOARD_CSV],
                   allow_unlisted=True)
        inp = read_inputs(root, metrics, explain)
        progress(f"[Report] {len(inp.predictions)} model(s) from {metrics}")
        context = {
            "title": str(root),
            "data": sections.data_section(inp),
            "settings": sections.settings_section(inp),
            "board": sections.leaderboard_section(inp),
            "curves": sections.curves_section(inp),
            "sig": sections.signatures_section(inp),
            "shap": sections.shap_section(inp),
            "win": sections.windows_section(inp),
        }
    html = render(context)
    with OutputSet(out_dir, phase="report", manifest=A.REPORT_MANIFEST_FILE,
                   owned=(A.REPORT_HTML,), overwrite=options.overwrite) as out:
        from loglead_lo2.schema import write_text_atomic

        write_text_atomic(out.path(A.REPORT_HTML), html)
        out.commit({"detection_run": str(metrics / A.RUN_FILE)})
        if run_dir is not None:  # <root>/report shows the latest run's report
            results.publish(root, run_dir, A.REPORT_DIR)
            out_dir = root / A.REPORT_DIR
    missing = [f"{what} (run `{cmd}`)" for items in inp.missing.values() for what, cmd in items]
    for line in missing:
        log.info("report: missing %s", line)
    return ReportResult(path=out_dir / A.REPORT_HTML, missing=missing)


__all__ = ["ReportOptions", "ReportResult", "run_report"]
