"""The verdict type of the artifact scan, shared by :mod:`~loglead_lo2.tools.scan` and
:mod:`~loglead_lo2.tools.scan_models`."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

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


def not_regular(path: Path) -> str | None:
    """Why the scan does not open ``path`` (``None``: a regular file, or a link to one): a FIFO
    would block it and ``/dev/zero`` never ends."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__}): a dangling link?"
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
            or stat.S_ISBLK(mode) else "a folder" if stat.S_ISDIR(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a special file")
    return f"{kind}, not a regular file: not opened"


__all__ = ["CORRUPT", "FAILING", "INCONSISTENT", "INVALID", "MISSING", "OK", "STATUSES",
           "UNVERIFIED", "Finding", "not_regular"]
