#!/usr/bin/env python3
"""Detection phase of the LO2 pipeline (thin wrapper over ``loglead_lo2.detection.cli``).

Run from the repository root, e.g. ``python demo/lo2_e2e/LO2_samples.py --list-models``.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from loglead_lo2.detection.cli import main
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from loglead_lo2.detection.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="LO2_samples.py"))
