"""``python -m loglead_lo2`` = ``lo2``."""

import sys

from loglead_lo2.cli import main

sys.exit(main())
