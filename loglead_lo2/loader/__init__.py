"""Loader phase: LO2 directory tree -> events, sequences and metrics tables."""

from loglead_lo2.loader.discover import Selection, SelectOptions, select
from loglead_lo2.loader.parse import ParseStats, parse_files
from loglead_lo2.loader.pipeline import LoadOptions, LoadReport, run_loader
from loglead_lo2.loader.window import add_windows

__all__ = [
    "LoadOptions",
    "LoadReport",
    "ParseStats",
    "SelectOptions",
    "Selection",
    "add_windows",
    "parse_files",
    "run_loader",
    "select",
]
