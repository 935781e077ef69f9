"""``python -m loglead_lo2.report`` = ``lo2-report``."""

import sys

from loglead_lo2.report.cli import main

sys.exit(main(prog="lo2-report"))
