"""Builtins for JSON and YAML: one conversion for reports, model metadata and hashes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def plain(value: Any, *, finite: bool = False) -> Any:
    """``value`` as builtins: mappings (keys as strings), lists (from tuples too), paths as
    strings, numpy scalars and arrays as Python values and lists; NaN becomes ``None``, and
    so do infinities with ``finite`` (JSON has no infinity; YAML writes ``.inf``)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v, finite=finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, finite=finite) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    elif hasattr(value, "tolist") and callable(value.tolist):
        return plain(value.tolist(), finite=finite)
    if isinstance(value, float) and (math.isnan(value) or (finite and math.isinf(value))):
        return None
    return value
