#!/usr/bin/env python3
"""Check the artifacts of a result folder (thin wrapper over ``loglead_lo2.tools.scan``)."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from loglead_lo2.tools.scan import main
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from loglead_lo2.tools.scan import main

if __name__ == "__main__":
    sys.exit(main(prog="lo2_result_scan.py"))
