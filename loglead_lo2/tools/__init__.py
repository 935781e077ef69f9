"""User tools behind ``tools/``: the result-artifact scan and the LO2 archive extractor.

* :mod:`loglead_lo2.tools.scan` - ``python tools/lo2_result_scan.py``: check the Parquet,
  JSON, CSV, model and explainability artifacts of a result folder (report only by default).
* :mod:`loglead_lo2.tools.extract` - ``bash tools/extract-split-resume-lo2.sh``: extract LO2
  release archives run by run, in chunks, resumably (standard library only).
"""

from __future__ import annotations

__all__ = ["extract", "scan"]
