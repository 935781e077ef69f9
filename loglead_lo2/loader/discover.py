"""Find LO2 runs, test cases and log files, and choose which of them to load.

Everything is listed in sorted order and every random choice uses a seeded generator, so the
same tree, options and seed always select the same files. Stray files and empty folders are
not errors: they are recorded in :attr:`Selection.skipped` with the reason.

Only regular files and folders are used, checked with ``lstat``/``stat`` before anything is
opened: a FIFO, socket or device named like a log or metrics file is skipped and reported
(opening a FIFO would block forever). A symbolic link is followed only when its target lies
inside the tree (the resolved ``--root``); a link out of the tree (``-> /etc/passwd``) or a
broken one is skipped and reported. Names are matched whole (``re.fullmatch``): a name with
a trailing newline or another control character is never taken for a run, case or log.
"""

from __future__ import annotations

import logging
import os
import random
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loglead_lo2 import SERVICES
from loglead_lo2.artifacts import MANIFEST_FILE, SAMPLE_FILE
from loglead_lo2.cases import NORMAL_CASE, test_cases
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

# Always used with fullmatch: ``$`` would also match before a trailing newline.
RUN_DIR_RE = re.compile(r"(?:light-oauth2-data-|LO2_run_)([0-9]{9,11})")
LOG_FILE_RE = re.compile(r"light-oauth2-oauth2-(.+)-1\.log")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
KNOWN_ROOT_FILES = frozenset({MANIFEST_FILE, SAMPLE_FILE})
"""Files the package's generator writes beside the runs; not reported as stray."""


@dataclass(frozen=True)
class RunDir:
    name: str
    path: Path
    epoch: int


@dataclass(frozen=True)
class LogFile:
    run: str
    test_case: str
    service: str
    path: Path
    epoch: int


@dataclass
class Selection:
    """What will be loaded, and what was found but left out (and why)."""

    runs_available: int = 0
    runs: list[RunDir] = field(default_factory=list)
    files: list[LogFile] = field(default_factory=list)
    metrics_dirs: list[tuple[str, str, Path]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    downsampled: list[str] = field(default_factory=list)
    missing_logs: list[str] = field(default_factory=list)
    """``run/test_case/service`` of every selected case folder lacking a selected service's log."""
    runs_without_correct: list[str] = field(default_factory=list)
    """Selected runs that have no ``correct`` folder (no normal sequences from them)."""

    def cases_by_run(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for f in self.files:
            cases = out.setdefault(f.run, [])
            if not cases or cases[-1] != f.test_case:
                cases.append(f.test_case)
        return out


@dataclass(frozen=True)
class SelectOptions:
    runs: int | None = None
    errors_per_run: int | None = None
    allow_duplicates: bool = True
    single_error_type: str | None = None
    services: tuple[str, ...] = SERVICES
    seed: int = 42


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def entry_kind(entry: Path, tree: Path) -> tuple[str, str]:
    """``("dir", "")`` or ``("file", "")`` for an entry the loader may read, else
    ``("skip", reason)``. Nothing is opened; a symlink counts only if its target lies in
    ``tree`` (a resolved path)."""
    try:
        st = entry.lstat()
        if stat.S_ISLNK(st.st_mode):
            target = Path(os.path.realpath(entry))
            if not target.is_relative_to(tree):
                return "skip", f"symlink to {target}, outside the tree: not followed"
            st = target.stat()
    except OSError as exc:
        return "skip", f"cannot stat ({exc.strerror or exc}; a broken or looping symlink?)"
    if stat.S_ISDIR(st.st_mode):
        return "dir", ""
    if stat.S_ISREG(st.st_mode):
        return "file", ""
    what = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    return "skip", f"{what}, not a regular file: not opened"


def _bad_name(name: str) -> str | None:
    if _CONTROL_RE.search(name):
        return f"name {name!r} contains a control character"
    return None


def discover_runs(root: Path) -> tuple[list[RunDir], list[tuple[str, str]]]:
    """Run folders under ``root`` sorted by (epoch, name), plus skipped entries with reasons."""
    if not root.exists():
        raise UserError(f"--root {root}: folder not found. Point --root at an LO2 tree.")
    if not root.is_dir():
        raise UserError(f"--root {root}: not a folder. Point --root at an LO2 tree.")
    tree = root.resolve()
    runs: list[RunDir] = []
    skipped: list[tuple[str, str]] = []
    for entry in sorted(root.iterdir()):
        match = RUN_DIR_RE.fullmatch(entry.name)
        kind, why = entry_kind(entry, tree)
        if match and kind == "dir":
            runs.append(RunDir(entry.name, entry, int(match.group(1))))
        elif entry.name in KNOWN_ROOT_FILES or entry.name.startswith("."):
            continue
        elif kind == "skip" or (why := _bad_name(entry.name) or ""):
            skipped.append((str(entry), why))
        else:
            noun = "folder" if kind == "dir" else "file"
            skipped.append((str(entry), f"stray {noun}: not a run folder"))
    if not runs:
        raise UserError(
            f"--root {root}: no LO2 runs found (expected folders named "
            "light-oauth2-data-<epoch> or LO2_run_<epoch>). "
            "Create a sample with: lo2-sample --out lo2_sample"
        )
    runs.sort(key=lambda r: (r.epoch, r.name))
    return runs, skipped


def _case_dirs(run: RunDir, tree: Path, skipped: list[tuple[str, str]]) -> list[Path]:
    known = test_cases()
    out = []
    for entry in sorted(run.path.iterdir()):
        if entry.name.startswith("."):  # markers (.extracted) and hidden files
            continue
        kind, why = entry_kind(entry, tree)
        if kind == "skip":
            skipped.append((str(entry), why))
        elif kind != "dir":
            skipped.append((str(entry), "stray file in run folder"))
        elif entry.name not in known:
            skipped.append((str(entry), "unknown test case folder"))
        else:
            out.append(entry)
    return out


def _log_files(run: RunDir, case_dir: Path, services: Sequence[str], tree: Path,
               skipped: list[tuple[str, str]]) -> list[LogFile]:
    files = []
    for entry in sorted(case_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        kind, why = entry_kind(entry, tree)
        if entry.name == "metrics" and kind == "dir":
            continue
        match = LOG_FILE_RE.fullmatch(entry.name)
        if kind == "skip" or (why := _bad_name(entry.name) or ""):
            skipped.append((str(entry), why))
            continue
        if not match or kind != "file":
            skipped.append((str(entry), "not an LO2 service log"))
            continue
        service = match.group(1)
        if service not in SERVICES:
            skipped.append((str(entry), f"unknown service {service!r}"))
        elif service in services:
            files.append(LogFile(run.name, case_dir.name, service, entry, run.epoch))
    return files


def check_error_type(name: str) -> str:
    """Validate a ``--single-error-type`` value (``random`` allowed)."""
    if name == "random":
        return name
    known = test_cases()
    if name not in known or name == NORMAL_CASE:
        import difflib

        close = difflib.get_close_matches(name, list(known), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserError(
            f"--single-error-type {name!r}: unknown error case.{hint} "
            "Use one of the 53 error-case folder names or 'random'."
        )
    return name


def select(root: Path, opts: SelectOptions) -> Selection:
    """Discover the tree under ``root`` and choose runs, cases and service files."""
    runs, skipped = discover_runs(root)
    tree = root.resolve()
    sel = Selection(runs_available=len(runs), skipped=skipped)
    if opts.runs is not None and opts.runs > 0 and opts.runs < len(runs):
        sel.downsampled.append(f"runs: first {opts.runs} of {len(runs)} (sorted by epoch)")
        runs = runs[: opts.runs]
    rng = random.Random(opts.seed)
    single = check_error_type(opts.single_error_type) if opts.single_error_type else None
    if single == "random":
        present = sorted(
            {d.name for run in runs for d in run.path.iterdir() if d.is_dir()}
            & {c for c in test_cases() if c != NORMAL_CASE}
        )
        if not present:
            raise UserError(f"--root {root}: no error-case folders to pick at random.")
        single = rng.choice(present)
        sel.downsampled.append(f"single error type chosen at random: {single}")
    used: set[str] = set()
    limit = opts.errors_per_run if opts.errors_per_run and opts.errors_per_run > 0 else None
    for run in runs:
        case_dirs = _case_dirs(run, tree, sel.skipped)
        if not case_dirs:
            sel.skipped.append((str(run.path), "empty run folder"))
            continue
        normal = [d for d in case_dirs if d.name == NORMAL_CASE]
        if not normal:
            sel.runs_without_correct.append(run.name)
        errors = [d for d in case_dirs if d.name != NORMAL_CASE]
        if single:
            errors = [d for d in errors if d.name == single]
        if not opts.allow_duplicates:
            errors = [d for d in errors if d.name not in used]
        if limit is not None and len(errors) > limit:
            errors = sorted(rng.sample(errors, limit))
            sel.downsampled.append(f"{run.name}: {limit} of {len(case_dirs) - 1} error cases")
        used.update(d.name for d in errors)
        run_files: list[LogFile] = []
        for case_dir in normal + errors:
            files = _log_files(run, case_dir, opts.services, tree, sel.skipped)
            if not files:
                sel.skipped.append((str(case_dir), "no log files for the selected services"))
            found = {f.service for f in files}
            sel.missing_logs.extend(f"{run.name}/{case_dir.name}/{s}" for s in opts.services
                                    if s not in found)
            run_files.extend(files)
            metrics = case_dir / "metrics"
            if entry_kind(metrics, tree)[0] == "dir":
                sel.metrics_dirs.append((run.name, case_dir.name, metrics))
        if run_files:
            sel.runs.append(run)
            sel.files.extend(run_files)
        else:
            sel.skipped.append((str(run.path), "no log files selected in this run"))
    if not sel.files:
        raise UserError(
            f"--root {root}: no log files match the selection "
            "(check --runs, --single-error-type, --service-types)."
        )
    return sel
