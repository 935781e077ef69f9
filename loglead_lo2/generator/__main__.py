"""``python -m loglead_lo2.generator`` = ``lo2-sample``."""

import sys

from loglead_lo2.generator.cli import main

sys.exit(main())
