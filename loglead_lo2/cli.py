"""``lo2``: one command for every phase (``lo2 load ...`` = ``lo2-load ...``).

Each subcommand is the phase's own ``main(argv)``, imported only when it runs, so
``lo2 --help`` stays fast and imports no scikit-learn. A subcommand whose module this version
does not ship prints one line and exits 2.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable

from loglead_lo2 import __version__
from loglead_lo2.cli_common import quiet_broken_pipe

PROG = "lo2"

COMMANDS: dict[str, tuple[str, str]] = {
    "sample": ("loglead_lo2.generator.cli", "write a seeded LO2-shaped sample tree"),
    "load": ("loglead_lo2.loader.cli", "load + enhance an LO2 tree into Parquet"),
    "detect": ("loglead_lo2.detection.cli", "train and evaluate the detection models"),
    "explain": ("loglead_lo2.explain.cli", "nearest normal, SHAP and false positives"),
    "report": ("loglead_lo2.report.cli", "write the HTML report of a result folder"),
    "scan": ("loglead_lo2.tools.scan", "check the artifacts of a result folder"),
    "extract": ("loglead_lo2.tools.extract", "extract the LO2 release archives (resumable)"),
    "clean": ("loglead_lo2.tools.clean", "remove the outputs of a result folder"),
}
"""Subcommand -> (module with ``main(argv)``, one-line description)."""


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return (f"usage: {PROG} [-h] [--version] COMMAND [ARGS ...]\n\n"
            f"LO2 log anomaly detection: every phase of the pipeline as one command.\n\n"
            f"commands:\n{rows}\n\n"
            f"'{PROG} COMMAND --help' shows a command's options. The usual chain:\n"
            f"  {PROG} sample --out lo2_sample && {PROG} load --root lo2_sample --save-parquet"
            f" && {PROG} detect && {PROG} explain\n")


def resolve(name: str) -> Callable[..., int] | None:
    """The ``main`` of subcommand ``name``; ``None`` when its module is not in this version."""
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # only the module itself (or its package) missing
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise
    main = getattr(module, "main", None)
    return main if callable(main) else None


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its phase with the rest of ``argv``; 2 on a bad command."""
    quiet_broken_pipe()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        (sys.stdout if args else sys.stderr).write(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"{PROG} (loglead-lo2) {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"{PROG}: error: unknown command {name!r}; choose from "
              f"{', '.join(COMMANDS)} (see {PROG} --help)", file=sys.stderr)
        return 2
    phase = resolve(name)
    if phase is None:
        print(f"{PROG}: error: '{name}' is not available in this version of loglead-lo2",
              file=sys.stderr)
        return 2
    prog = f"{PROG} {name}"
    if "prog" in inspect.signature(phase).parameters:
        return int(phase(rest, prog=prog) or 0)
    return int(phase(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
