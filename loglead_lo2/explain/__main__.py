"""``python -m loglead_lo2.explain`` = ``lo2-explain``."""

import sys

from loglead_lo2.explain.cli import main

sys.exit(main(prog="lo2-explain"))
