#!/usr/bin/env python3
"""Explainability phase (F) of the LO2 pipeline (thin wrapper over ``loglead_lo2.explain.cli``).

It explains the models the detection phase saved in ``<root>/metrics`` (run
``demo/lo2_e2e/LO2_samples.py`` first), or fits them again with ``--retrain``. Run from the
repository root, e.g.
``MPLBACKEND=Agg python demo/lo2_e2e/lo2_phase_f_explainability.py --root demo/result/lo2``.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from loglead_lo2.explain.cli import main
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from loglead_lo2.explain.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="lo2_phase_f_explainability.py"))
