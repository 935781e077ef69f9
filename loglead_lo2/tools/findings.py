"""The verdict type of the artifact scan, shared by :mod:`~loglead_lo2.tools.scan` and
:mod:`~loglead_lo2.tools.scan_models`."""

from __future__ import annotations

from dataclasses import dataclass

OK, MISSING, CORRUPT = "ok", "missing", "corrupt"
INVALID, INCONSISTENT, UNVERIFIED = "invalid", "inconsistent", "unverified"
FAILING = (CORRUPT, INVALID, INCONSISTENT)
STATUSES = (OK, MISSING, CORRUPT, INVALID, INCONSISTENT, UNVERIFIED)


@dataclass
class Finding:
    """The verdict on one artifact."""

    group: str
    name: str
    path: str
    status: str
    bytes: int | None = None
    rows: int | None = None
    detail: str = ""


__all__ = ["CORRUPT", "FAILING", "INCONSISTENT", "INVALID", "MISSING", "OK", "STATUSES",
           "UNVERIFIED", "Finding"]
