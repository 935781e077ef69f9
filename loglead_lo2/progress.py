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


class Counter:
    """A bar advanced by hand (``update(n)``) for work that comes in uneven pieces.

    ``with counter(total=12, desc="load", unit="run") as bar: bar.update(2)``; a no-op when
    bars are off, so callers never test :func:`progress_enabled` themselves.
    """

    def __init__(self, total: int | None, desc: str, unit: str) -> None:
        self._bar = None
        if progress_enabled():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                             dynamic_ncols=True, leave=False)

    def update(self, n: int = 1, note: str = "") -> None:
        """Advance by ``n`` units; ``note`` replaces the text after the rate."""
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)
            self._bar.refresh()  # pieces are seconds apart: always show the new count

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def counter(total: int | None, desc: str = "", unit: str = "it") -> Counter:
    """A :class:`Counter` bar of ``total`` units (drawn only when bars are on)."""
    return Counter(total, desc, unit)


def human_seconds(seconds: float) -> str:
    """``42.3`` -> ``42 s``, ``400`` -> ``6 min 40 s``, ``3900`` -> ``1 h 05 min``."""
    whole = max(0, int(round(seconds)))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def eta_note(elapsed: float, done: int, left: int) -> str:
    """``"6 min 40 s elapsed, about 1 h 05 min left"``: ``left`` more units at the pace of the
    ``done`` ones so far (just the elapsed time when there is nothing to go on or to do).
    For progress lines in logs, where no bar is drawn."""
    note = f"{human_seconds(elapsed)} elapsed"
    if done > 0 and left > 0:
        note += f", about {human_seconds(elapsed / done * left)} left"
    return note
