"""``lo2-clean``: list, archive or remove old result folders (``<root>/runs/<name>``).

Dry run by default: it prints every run folder (time, features, label mode, size, which phases
it holds, ``latest``) and what it would do. ``--apply`` does it. Which folders: those beyond the
newest ``--keep N`` (default 5), or with ``--older-than DAYS`` those older than that; the latest
run (``<root>/runs/latest``, what ``<root>/metrics`` shows) is never touched. ``--archive DIR``
moves them into ``DIR`` instead of removing them. A folder a phase is reading or writing is
refused (its lock), one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from loglead_lo2.cli_common import (
    Parser,
    add_verbosity,
    cli_args,
    guarded,
    human_bytes,
)
from loglead_lo2.errors import UserError
from loglead_lo2.results import RunFolder, list_runs, remove_run

DEFAULT_KEEP = 5


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = Parser(prog=prog or "lo2-clean",
               description="List, archive or remove old result folders (<root>/runs/<name>).",
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--root", type=Path, default=Path("demo/result/lo2"),
                   help="the loader's output folder holding runs/ (default demo/result/lo2)")
    p.add_argument("--keep", type=int, default=DEFAULT_KEEP, metavar="N",
                   help=f"keep the newest N run folders (default {DEFAULT_KEEP})")
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="select the run folders older than DAYS instead of beyond --keep")
    p.add_argument("--archive", type=Path, default=None, metavar="DIR",
                   help="move the selected folders into DIR instead of removing them")
    p.add_argument("--apply", action="store_true",
                   help="do it (default: a dry run that only lists)")
    add_verbosity(p, quiet_help="print only the plan's summary line")
    return p


def select_runs(runs: list[RunFolder], keep: int, older_than: float | None,
                now: float | None = None) -> list[RunFolder]:
    """The run folders (``runs`` oldest first, as :func:`list_runs` gives them) to archive or
    remove; never the latest."""
    if keep < 0:
        raise UserError("--keep must be >= 0.")
    candidates = [r for r in runs if not r.latest]
    if older_than is not None:
        if older_than < 0:
            raise UserError("--older-than must be >= 0 days.")
        limit = (now if now is not None else time.time()) - older_than * 86_400
        return [r for r in candidates if r.modified < limit]
    newest_first = runs[::-1]  # list_runs gives them oldest first
    kept = {r.name for r in newest_first[:keep]} | {r.name for r in runs if r.latest}
    return [r for r in candidates if r.name not in kept]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = cli_args(build_parser(prog), argv)

    def run() -> int:
        if not args.root.is_dir():
            raise UserError(f"--root {args.root}: folder not found; pass the loader's "
                            "--output-dir (default demo/result/lo2).")
        runs = list_runs(args.root)
        chosen = select_runs(runs, args.keep, args.older_than)
        verb = "archive" if args.archive else "remove"
        if not args.quiet:
            for r in runs:
                mark = "latest" if r.latest else (verb if r in chosen else "keep")
                print(f"  {mark:8} {r.name}  {human_bytes(r.bytes):>9}  "
                      f"{'+'.join(r.phases) or '(empty)'}")
        freed = sum(r.bytes for r in chosen)
        if not args.apply:
            print(f"[Clean] {len(runs)} run folder(s) in {args.root / 'runs'}; would {verb} "
                  f"{len(chosen)} ({human_bytes(freed)}). Dry run: pass --apply to do it.")
            return 0
        for r in chosen:
            remove_run(r, args.archive)
        where = f" into {args.archive}" if args.archive else ""
        print(f"[Clean] {verb}d {len(chosen)} run folder(s){where} ({human_bytes(freed)}); "
              f"{len(runs) - len(chosen)} kept.")
        return 0

    outcome, code = guarded(prog or "lo2-clean", run)
    return code if outcome is None else int(outcome)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
