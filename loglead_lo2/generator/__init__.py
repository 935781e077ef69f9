"""Seeded generator of LO2-shaped sample data (``lo2-sample``).

>>> from loglead_lo2.generator import generate
>>> summary = generate(Path("sample"), runs=2, seed=42, scale=0.05)  # doctest: +SKIP
"""

from __future__ import annotations

from loglead_lo2.generator.generate import (
    KNOWN_FILES,
    MANIFEST_NAME,
    SUMMARY_NAME,
    GenerationSummary,
    generate,
    log_name,
)

__all__ = ["KNOWN_FILES", "MANIFEST_NAME", "SUMMARY_NAME", "GenerationSummary", "generate",
           "log_name"]
