"""``python -m loglead_lo2.detection`` = ``lo2-detect``."""

import sys

from loglead_lo2.detection.cli import main

sys.exit(main(prog="lo2-detect"))
