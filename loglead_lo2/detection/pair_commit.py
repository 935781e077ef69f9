"""Commit a bundle pair (joblib + YAML) as one unit; the previous pair stays until then.

:func:`commit_files` writes the files into a private stage folder beside them
(``.lo2-bundle-stage-<tag>-<pid>/``, fsynced), keeps hard links to the current files there,
writes a journal ``.lo2-bundle-commit-<tag>.json`` and only then renames the new files into
place. An error during the renames puts the previous files back (the old pair loads); a kill
leaves the journal, and the next save or load in the folder finishes the commit from it (the
staged pair is complete before the journal exists), so the folder never keeps a new joblib
beside an old YAML. Commits in one folder are serialised with ``flock`` on the folder itself,
which creates no file, so the function works the same inside another phase's stage folder and
for ``--save-model PATH`` anywhere else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

STAGE_PREFIX = ".lo2-bundle-stage-"
JOURNAL_PREFIX = ".lo2-bundle-commit-"
PREVIOUS = ".previous"
_PLAIN = re.compile(r"\A[^/\\\0]+\Z")


def _plain_name(name: object) -> str:
    text = str(name)
    if not _PLAIN.match(text) or text in (".", ".."):
        raise ValueError(f"not a plain file name: {text!r}")
    return text


@contextlib.contextmanager
def folder_lock(folder: Path, *, shared: bool = False) -> Iterator[None]:
    """``flock`` on the folder's own descriptor (no lock file is created): exclusive for a
    commit, ``shared`` for a reader (a folder a reader cannot open is read unlocked)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: commits are not serialised (documented)
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        if not shared:
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _keep_previous(final: Path, backup: Path) -> bool:
    if not final.is_file():
        return False
    backup.parent.mkdir(exist_ok=True)
    try:
        os.link(final, backup)
    except OSError:  # no hard links here: a copy does as well
        shutil.copy2(final, backup)
    return True


def pending(folder: Path) -> list[Path]:
    """Journals of interrupted commits in ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{JOURNAL_PREFIX}*.json") if p.is_file())


def _roll_forward(folder: Path, journal: Path) -> str:
    try:
        plan = json.loads(journal.read_text("utf-8"))
        stage = folder / _plain_name(plan["stage"])
        names = [_plain_name(n) for n in plan["files"]]
        if not stage.name.startswith(STAGE_PREFIX):
            raise ValueError("not a bundle stage folder")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UserError(f"{journal}: an unreadable bundle commit journal "
                        f"({type(exc).__name__}); delete it and save the bundle again.") from exc
    for name in names:
        staged = stage / name
        if staged.is_file() and not staged.is_symlink():
            os.replace(staged, folder / name)
    _fsync_dir(folder)
    journal.unlink()
    shutil.rmtree(stage, ignore_errors=True)
    return f"finished the interrupted save of {', '.join(names)} recorded in {journal.name}"


def _recover_locked(folder: Path) -> list[str]:
    done = [_roll_forward(folder, journal) for journal in pending(folder)]
    for stage in sorted(folder.glob(f"{STAGE_PREFIX}*")):
        if stage.is_dir() and not stage.is_symlink():
            shutil.rmtree(stage, ignore_errors=True)
    return done


def recover(folder: str | os.PathLike[str]) -> list[str]:
    """Finish interrupted commits in ``folder`` (a load calls this when it finds a journal).
    A folder it cannot write gives one line naming the journal."""
    folder = Path(folder)
    journals = pending(folder)
    if not journals:
        return []
    try:
        with folder_lock(folder):
            done = _recover_locked(folder)
    except OSError as exc:
        raise UserError(f"{journals[0]}: a bundle save was interrupted and cannot be finished "
                        f"here ({exc.strerror or type(exc).__name__}); save the bundle again."
                        ) from exc
    for line in done:
        log.warning("[Model] %s: %s", folder, line)
    return done


def commit_files(folder: str | os.PathLike[str], files: Mapping[str, bytes], *, tag: str,
                 refuse_existing: str | None = None) -> list[str]:
    """Write ``files`` (plain names -> bytes) into ``folder`` as one unit (see the module
    doc). ``refuse_existing``: the flag to name when one of them exists already (checked
    under the lock). Returns the recovery lines of earlier interrupted commits."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [_plain_name(n) for n in files]
    tag = _plain_name(tag)
    with folder_lock(folder):
        done = _recover_locked(folder)
        if refuse_existing is not None:
            taken = [n for n in names if os.path.lexists(folder / n)]
            if taken:
                raise UserError(f"{folder / taken[0]} exists; pass {refuse_existing} to "
                                "replace it.")
        stage = folder / f"{STAGE_PREFIX}{tag}-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        journal = folder / f"{JOURNAL_PREFIX}{tag}.json"
        moved: list[str] = []
        kept: set[str] = set()
        try:
            for name in names:
                _write(stage / name, files[name])
                if _keep_previous(folder / name, stage / PREVIOUS / name):
                    kept.add(name)
            _fsync_dir(stage)
            tmp = folder / f".{journal.name}.tmp"
            _write(tmp, json.dumps({"stage": stage.name, "files": names}).encode("utf-8"))
            os.replace(tmp, journal)
            _fsync_dir(folder)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        try:
            for name in names:
                os.replace(stage / name, folder / name)
                moved.append(name)
        except BaseException:
            _put_back(folder, stage, moved, kept)
            journal.unlink()
            shutil.rmtree(stage, ignore_errors=True)
            raise
        _fsync_dir(folder)
        journal.unlink()
        shutil.rmtree(stage, ignore_errors=True)
    return done


def _put_back(folder: Path, stage: Path, moved: list[str], kept: set[str]) -> None:
    """Undo the renames done so far: the previous files return (new files without a
    previous one are removed)."""
    for name in reversed(moved):
        if name in kept:
            os.replace(stage / PREVIOUS / name, folder / name)
        else:
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()


__all__ = ["JOURNAL_PREFIX", "STAGE_PREFIX", "commit_files", "folder_lock", "pending",
           "recover"]
