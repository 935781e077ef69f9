"""Report phase: one self-contained ``report.html`` per run (see docs/report.md)."""

from loglead_lo2.report.build import ReportOptions, ReportResult, run_report

__all__ = ["ReportOptions", "ReportResult", "run_report"]
