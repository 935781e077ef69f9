"""Result folders: one per detection run, with ``latest`` pointers.

Without ``--metrics-dir`` a detection run writes into its own folder
``<root>/runs/<UTC time>_<features>_<label mode>/metrics`` and, once its output set is
committed, points ``<root>/metrics`` and ``<root>/runs/latest`` at it (symbolic links swapped
atomically). Explainability without ``--out-dir`` writes into the same run folder
(``.../explainability``) and points ``<root>/explainability`` at it. So every path users and
phases already read (``<root>/metrics/leaderboard.md``) shows the latest run, and every earlier
run stays whole in its own folder until ``lo2-clean`` archives or removes it. An explicit
``--metrics-dir`` / ``--out-dir`` is written as given, without versioning.

A ``<root>/metrics`` that is a real folder (written by an older version) is moved into
``runs/`` on the first versioned run, named by its ``detect_run.json`` time. Where the system
has no symbolic links, the pointer is a one-line file ``<root>/runs/latest`` and the phases
write into ``<root>/metrics`` as before.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from loglead_lo2.artifacts import EXPLAIN_DIR, METRICS_DIR, REPORT_DIR
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

RUNS_DIR = "runs"
LATEST = "latest"
METRICS = METRICS_DIR
EXPLAIN = EXPLAIN_DIR
_SAFE = re.compile(r"[^A-Za-z0-9+.-]+")


def run_name(items: Iterable[str | None], label_mode: str,
             now: dt.datetime | None = None) -> str:
    """``<UTC yyyymmdd-HHMMSS>_<feature items>_<label mode>``, e.g.
    ``20261202-061500_words+numeric_target-service``."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")
    names = sorted({(i or "numeric").removeprefix("e_").replace("event_drain_id", "templates")
                    for i in items}) or ["none"]
    return "_".join(_SAFE.sub("-", part) for part in (stamp, "+".join(names), label_mode))


def symlinks_work(folder: Path) -> bool:
    return hasattr(os, "symlink") and os.name != "nt" and folder.exists()


def new_run_folder(root: Path, name: str) -> Path:
    """``<root>/runs/<name>`` (``-2``, ``-3``, ... appended when taken); not created."""
    base = Path(root) / RUNS_DIR
    path, k = base / name, 2
    while path.exists() or path.is_symlink():
        path, k = base / f"{name}-{k}", k + 1
    return path


def point(link: Path, target: Path) -> None:
    """Make ``link`` a relative symbolic link to ``target``, replacing the old link atomically
    (a real folder there is moved into ``runs/`` first: see :func:`adopt_legacy`)."""
    tmp = link.with_name(f".{link.name}.link.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(target, link.parent), tmp, target_is_directory=True)
    os.replace(tmp, link)


def adopt_legacy(root: Path, names: Iterable[str]) -> Path | None:
    """Move the real ``<root>/<name>`` folders (an older version's results: metrics and the
    explanations of them) together into one ``runs/<time>_earlier`` folder, so pointers can
    take their place; returns that folder."""
    paths = [Path(root) / n for n in names]
    paths = [p for p in paths if p.is_dir() and not p.is_symlink()]
    if not paths:
        return None
    stamp = dt.datetime.fromtimestamp(paths[0].stat().st_mtime, dt.timezone.utc)
    home = new_run_folder(root, f"{stamp:%Y%m%d-%H%M%S}_earlier")
    home.mkdir(parents=True)
    for path in paths:
        os.replace(path, home / path.name)
        log.info("moved %s (an earlier run) to %s", path, home / path.name)
    return home


def latest_run(root: Path) -> Path | None:
    """The run folder ``<root>/runs/latest`` points at."""
    link = Path(root) / RUNS_DIR / LATEST
    if link.is_symlink():
        return link.resolve()
    if link.is_file():  # systems without symbolic links
        target = Path(root) / RUNS_DIR / link.read_text("utf-8").strip()
        return target if target.is_dir() else None
    return None


def run_folder_of(folder: Path) -> Path | None:
    """The run folder holding ``folder`` (``.../runs/<name>/metrics`` -> ``.../runs/<name>``)."""
    real = Path(folder).resolve()
    return real.parent if real.parent.parent.name == RUNS_DIR else None


def publish(root: Path, run: Path, name: str) -> None:
    """Point ``<root>/<name>`` and ``<root>/runs/latest`` at ``run`` (after its commit). A new
    detection run (``metrics``) also drops the ``<root>/explainability`` and ``<root>/report``
    pointers: those belong to the previous run, and ``<root>`` never shows a mix."""
    root = Path(root)
    if not symlinks_work(root):
        (root / RUNS_DIR / LATEST).write_text(run.name + "\n", encoding="utf-8")
        return
    if name == METRICS:  # a new detection run: the older explanations are not of it
        adopt_legacy(root, [METRICS, EXPLAIN, REPORT_DIR])
        for later in (EXPLAIN, REPORT_DIR):
            if (root / later).is_symlink():
                (root / later).unlink()
    else:
        adopt_legacy(root, [name])
    point(root / name, run / name)
    point(root / RUNS_DIR / LATEST, run)


@dataclass(frozen=True)
class RunFolder:
    """One result folder under ``<root>/runs``."""

    name: str
    path: Path
    modified: float
    bytes: int
    latest: bool
    phases: tuple[str, ...]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _made(path: Path) -> tuple[str, int]:
    """Sort key of a run folder: the UTC time its name starts with, then when its detection
    set was committed (runs within one second)."""
    from loglead_lo2.artifacts import DETECT_MANIFEST_FILE

    manifest = path / METRICS / DETECT_MANIFEST_FILE
    stamp = next((p for p in (manifest, path / METRICS) if p.exists()), path)
    return path.name[:15], stamp.stat().st_mtime_ns


def list_runs(root: Path) -> list[RunFolder]:
    """Every run folder of ``<root>/runs``, oldest first (by the UTC time their names start
    with, then by commit time)."""
    base = Path(root) / RUNS_DIR
    if not base.is_dir():
        return []
    latest = latest_run(root)
    out = []
    folders = [p for p in base.iterdir()
               if p.name != LATEST and not p.is_symlink() and p.is_dir()]
    for path in sorted(folders, key=_made):
        phases = tuple(n for n in (METRICS, EXPLAIN, REPORT_DIR) if (path / n).is_dir())
        out.append(RunFolder(path.name, path, path.stat().st_mtime, _size(path),
                             latest is not None and path.resolve() == latest, phases))
    return out


def remove_run(run: RunFolder, archive: Path | None = None) -> Path | None:
    """Remove a run folder, or move it into ``archive``; never the latest run. Holds the
    folders' locks while doing so (a phase reading it refuses, or makes this refuse)."""
    from loglead_lo2.outputs import FolderLock

    if run.latest:
        raise UserError(f"{run.path} is the latest run ({RUNS_DIR}/{LATEST}); it is never "
                        "removed.")
    locks = [FolderLock(run.path / p, exclusive=True) for p in run.phases]
    held = []
    try:
        for lock in locks:
            held.append(lock.acquire())
        if archive is not None:
            archive.mkdir(parents=True, exist_ok=True)
            target = archive / run.name
            if target.exists():
                raise UserError(f"{target} exists; archive into another folder.")
            shutil.move(str(run.path), str(target))
            return target
        shutil.rmtree(run.path)
        return None
    finally:
        for lock in reversed(held):
            lock.release()


__all__ = ["LATEST", "RUNS_DIR", "RunFolder", "adopt_legacy", "latest_run", "list_runs",
           "new_run_folder", "point", "publish", "remove_run", "run_folder_of", "run_name"]
