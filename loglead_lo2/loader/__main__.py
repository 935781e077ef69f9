"""``python -m loglead_lo2.loader`` = ``lo2-load``."""

import sys

from loglead_lo2.loader.cli import main

sys.exit(main(prog="lo2-load"))
