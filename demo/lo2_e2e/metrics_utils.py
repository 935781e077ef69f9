"""Re-export of :mod:`loglead_lo2.metrics_utils` for scripts run from ``demo/lo2_e2e``."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from loglead_lo2.metrics_utils import (
        PSI_EPSILON,
        false_positive_rate_at_alpha,
        population_stability_index,
        precision_at_k,
    )
except ImportError:  # running from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from loglead_lo2.metrics_utils import (
        PSI_EPSILON,
        false_positive_rate_at_alpha,
        population_stability_index,
        precision_at_k,
    )

__all__ = [
    "PSI_EPSILON",
    "false_positive_rate_at_alpha",
    "population_stability_index",
    "precision_at_k",
]
