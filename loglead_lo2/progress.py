"""Progress bars with rate and ETA for the long steps of every phase (``tqdm`` on stderr).

Library code wraps its long loops in :func:`progress`; the bar is drawn only when stderr is a
terminal and the phase was not started with ``--quiet`` (:func:`set_progress`), so test output,
logs and piped runs stay clean. Nothing is ever printed to stdout from here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_enabled = True


def set_progress(enabled: bool) -> None:
    """Turn the bars of this process on or off (``--quiet`` turns them off)."""
    global _enabled
    _enabled = enabled


def progress_enabled() -> bool:
    """True when a bar would be drawn: not quiet and stderr is a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return _enabled and callable(isatty) and bool(isatty())


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "",
             unit: str = "it") -> Iterator[T]:
    """Yield from ``iterable``, drawing a bar (count, rate, ETA) on stderr when enabled."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm import tqdm

    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
               dynamic_ncols=True, leave=False)
    try:
        yield from bar
    finally:
        bar.close()
