"""What every command-line phase does with errors: one line, the right exit code.

* :class:`~loglead_lo2.errors.UserError` (bad input or options): ``error: ...``, exit 2.
* ``OSError`` (permission denied, disk full, a file vanishing): ``error: cannot ...``, exit 1;
  atomic writes mean no half-written artifact is left in place.
* ``KeyboardInterrupt``: exit 130, nothing replaced.

Programming errors still raise with a traceback: they are bugs to report, not user errors.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from loglead_lo2.errors import UserError
from loglead_lo2.progress import set_progress

T = TypeVar("T")


def guarded(prog: str, action: Callable[[], T]) -> tuple[T | None, int]:
    """Run ``action``; return ``(result, 0)`` or ``(None, exit_code)`` after printing one line."""
    try:
        return action(), 0
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None, exc.exit_code
    except OSError as exc:
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        hint = _OS_HINTS.get(exc.errno or 0, "")
        print(f"{prog}: error: cannot access{where}: {exc.strerror or exc}{hint}",
              file=sys.stderr)
        return None, 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; no output was replaced", file=sys.stderr)
        return None, 130


_OS_HINTS = {
    errno.ENOSPC: "; free some space on that disk (or write elsewhere) and run again",
    errno.EDQUOT: "; free some of your disk quota (or write elsewhere) and run again",
}


def start_cli() -> None:
    """What every phase's ``main`` does first: quiet exit on a closed pipe, and library
    ``logging`` warnings on stderr (the library never prints)."""
    quiet_broken_pipe()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` of every phase: a bad flag or value is one line with a ``--help``
    hint on stderr (exit 2), not argparse's whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_verbosity(parser: argparse.ArgumentParser, quiet_help: str = "no progress lines or "
                  "bars, only the summary and errors") -> None:
    """``-q/--quiet`` and ``-v/--verbose`` (mutually exclusive), as every phase takes them."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    group.add_argument("-v", "--verbose", action="store_true",
                       help="also log the library's INFO messages (on stderr)")


def cli_args(parser: argparse.ArgumentParser,
             argv: list[str] | None) -> argparse.Namespace:
    """What every phase's ``main`` does first: :func:`start_cli`, parse ``argv``, then
    :func:`apply_verbosity`."""
    start_cli()
    args = parser.parse_args(argv)
    apply_verbosity(args)
    return args


def apply_verbosity(args: argparse.Namespace) -> None:
    """Map ``--quiet``/``--verbose`` onto the progress bars and the log level (warnings are
    always shown: they name things the user must know, such as a new signing key)."""
    set_progress(not getattr(args, "quiet", False))
    verbose = bool(getattr(args, "verbose", False))
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)


def phase_say(args: argparse.Namespace) -> Callable[[str], None]:
    """The phase's progress-line printer: :func:`say`, or nothing with ``--quiet``."""
    return _silent if getattr(args, "quiet", False) else say


def _silent(_message: str) -> None:
    return None


def say(message: str) -> None:
    """Progress line of a phase, flushed at once (phases run for minutes)."""
    print(message, flush=True)


def human_bytes(n: int | None, empty: str = "?") -> str:
    """``1536`` -> ``1.5 KiB`` (binary units); ``None`` -> ``empty``."""
    if n is None:
        return empty
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} GiB"


def quiet_broken_pipe() -> None:
    """Let ``lo2-detect --list-models | head`` end quietly, as shell tools do, instead of
    raising ``BrokenPipeError`` (no-op where SIGPIPE does not exist)."""
    if hasattr(signal, "SIGPIPE"):
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        except ValueError:  # not the main thread (main() called from a worker thread)
            pass


# --- argparse value types shared by the phases -------------------------------------------


def number(text: str) -> float:
    """``type=`` for a float flag, with a readable message."""
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from exc


def contamination(text: str) -> float | str:
    """``type=`` for ``--if-contamination``: ``auto`` or a share in (0, 0.5]."""
    if text == "auto":
        return text
    value = number(text)
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"must be 'auto' or in (0, 0.5], got {text}")
    return value


def positive_int(text: str) -> int:
    """``type=`` for a count flag (>= 1)."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value
