"""A phase's outputs as one unit: a lock per folder, staged writes, one commit, a manifest.

Every phase writes its files through an :class:`OutputSet`:

1. **Lock.** ``<folder>/.lo2.lock`` is held with ``flock`` for the whole phase: exclusively by
   the writer, shared by readers (:func:`reading`). A second writer (or a reader while a writer
   runs) gets one line naming the holder (pid, host, command, start) and exit code 2. The lock
   dies with its process, so a killed run never leaves a stale lock.
2. **Clean-up.** Under the lock, leftovers of killed runs are handled first: an interrupted
   commit (a journal is present) is finished, stage folders and temp files
   (``.<name>.<random>.tmp``) are removed.
3. **Stage.** Files are written under ``<folder>/.lo2-stage-<phase>-<pid>/``
   (:meth:`OutputSet.path`); nothing in the folder changes while the phase runs, so an error
   or Ctrl-C leaves the old set.
4. **Commit.** :meth:`OutputSet.commit` hashes the staged files, writes the journal
   ``.lo2-commit-<phase>.json`` (atomically), moves every staged file into place, removes the
   files of the phase's previous set that the new set lacks, writes the manifest
   (``<phase manifest>``: every file with bytes, sha256 and Parquet rows) and removes the
   journal. A kill during the commit leaves the journal, and the next writer finishes the
   commit from it (roll forward); readers refuse a folder with a journal.

Readers call :func:`verify_set`: no journal, and every file they read is listed in the
manifest with its size (sha256 with ``deep=True``). A folder without a manifest (written by an
older version) is read as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

LOCK_FILE = ".lo2.lock"
STAGE_PREFIX = ".lo2-stage-"
JOURNAL_PREFIX = ".lo2-commit-"
TEMP_RE = re.compile(r"\A\..+\.tmp\Z", re.DOTALL)
MANIFEST_FORMAT = "loglead-lo2 output set"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _parquet_rows(path: Path) -> int | None:
    if path.suffix != ".parquet":
        return None
    try:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # noqa: BLE001 - a staged file we wrote ourselves; rows are a bonus
        return None


# --- locks ------------------------------------------------------------------------------------


def _holder_text(raw: str) -> str:
    try:
        info = json.loads(raw)
        return (f"pid {info['pid']} on {info['host']} ({info['command']}, since "
                f"{info['started']})")
    except (ValueError, KeyError, TypeError):
        return "another process"


@dataclass
class FolderLock:
    """``flock`` on ``<folder>/.lo2.lock``: exclusive for a writer, shared for a reader."""

    folder: Path
    exclusive: bool = True
    what: str = "written"
    _fd: int | None = field(default=None, repr=False)

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking (documented)
            return self
        path = self.folder / LOCK_FILE
        try:
            if self.exclusive:
                self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            if self.exclusive:
                raise
            return self  # a read-only folder: nothing can write it either
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            os.close(fd)
            doing = "written" if self.exclusive else "read"
            raise UserError(
                f"{self.folder} is in use by {holder}; it cannot be {doing} now. Wait for that "
                "run to finish, or use another output folder.") from None
        if self.exclusive:
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
                    "started": dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
                    .isoformat()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        if self.exclusive:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def reading(*folders: Path) -> Iterator[None]:
    """Hold shared locks on ``folders`` while reading them (refused while a writer runs)."""
    locks = [FolderLock(Path(f), exclusive=False) for f in dict.fromkeys(folders)]
    held: list[FolderLock] = []
    try:
        for lock in locks:
            held.append(lock.acquire())
        yield
    finally:
        for lock in reversed(held):
            lock.release()


# --- leftovers and roll forward ---------------------------------------------------------------


def _journal(folder: Path, phase: str) -> Path:
    return folder / f"{JOURNAL_PREFIX}{phase}.json"


def _apply_journal(folder: Path, journal: Path) -> None:
    """Finish a commit from its journal: move what is still staged, remove what the new set
    lacks, write the manifest, drop the journal and the stage folder."""
    from loglead_lo2.schema import write_text_atomic

    try:
        plan = json.loads(journal.read_text("utf-8"))
        stage = folder / str(plan["stage"])
        files, remove, manifest = plan["files"], plan["remove"], plan["manifest"]
        manifest_name = str(plan["manifest_name"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise UserError(f"{journal}: an unreadable commit journal ({type(exc).__name__}); "
                        f"delete it and re-run the phase that writes {folder}.") from exc
    for name in files:
        staged, final = stage / name, folder / name
        if staged.is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
    for name in remove:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    write_text_atomic(folder / manifest_name, json.dumps(manifest, indent=2) + "\n")
    journal.unlink()
    shutil.rmtree(stage, ignore_errors=True)


def recover(folder: Path, owned: Iterable[str] = ()) -> list[str]:
    """Under an exclusive lock: finish interrupted commits, remove stage folders and temp
    files of killed runs in ``folder`` and the subfolders of its ``owned`` names (never in
    other phases' folders). Returns what was done (one line each)."""
    done: list[str] = []
    if not folder.is_dir():
        return done
    for journal in sorted(folder.glob(f"{JOURNAL_PREFIX}*.json")):
        _apply_journal(folder, journal)
        done.append(f"finished the interrupted commit recorded in {journal.name}")
    for stage in sorted(folder.glob(f"{STAGE_PREFIX}*")):
        if stage.is_dir() and not stage.is_symlink():
            shutil.rmtree(stage, ignore_errors=True)
            done.append(f"removed {stage.name} (files staged by a run that did not finish)")
    dirs = sorted({folder, *((folder / n).parent for n in owned)})
    temps = [p for d in dirs if d.is_dir() for p in sorted(d.glob(".*.tmp"))
             if TEMP_RE.match(p.name) and p.is_file() and not p.is_symlink()]
    for path in temps:
        path.unlink()
    if temps:
        done.append(f"removed {len(temps)} temp file(s) of interrupted writes")
    return done


# --- the output set ---------------------------------------------------------------------------


@dataclass
class OutputSet:
    """Stage a phase's files in ``folder`` and commit them together (see the module doc).

    ``owned``: every file name (relative to ``folder``) the phase may write; existing ones
    are refused without ``overwrite`` (the error names ``flag``), and on commit the owned files
    the new set lacks are removed, so the folder never mixes two runs of the phase.
    """

    folder: Path
    phase: str
    manifest: str
    owned: Iterable[str] = ()
    overwrite: bool = False
    flag: str = "--overwrite"
    notes: list[str] = field(default_factory=list)
    _lock: FolderLock | None = field(default=None, repr=False)
    _created: bool = field(default=False, repr=False)
    _stage: Path | None = field(default=None, repr=False)
    committed: dict[str, Any] | None = None

    def __enter__(self) -> OutputSet:
        self.folder = Path(self.folder)
        self.owned = tuple(self.owned)
        self._created = not self.folder.exists()
        self._lock = FolderLock(self.folder, exclusive=True).acquire()
        try:
            self.notes += recover(self.folder, self.owned)
            existing = [n for n in (*self.owned, self.manifest) if (self.folder / n).exists()]
            if existing and not self.overwrite:
                shown = ", ".join(existing[:3]) + (" ..." if len(existing) > 3 else "")
                raise UserError(f"{self.folder} holds the outputs of an earlier {self.phase} "
                                f"({shown}); pass {self.flag} to replace them.")
            self._stage = self._stage_path()
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage.mkdir()
        except BaseException:
            self._lock.release()
            raise
        return self

    def path(self, name: str) -> Path:
        """Where to write ``name`` (relative to the folder) until the commit."""
        if self._stage is None:
            raise RuntimeError("OutputSet.path() outside its with-block")
        target = self._stage / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def final(self, name: str) -> Path:
        return self.folder / name

    @property
    def stage(self) -> Path:
        """The stage folder (write there what ``path()`` would give, e.g. a whole tree)."""
        if self._stage is None:
            raise RuntimeError("OutputSet.stage outside its with-block")
        return self._stage

    def shown(self, text: str) -> str:
        """``text`` with the stage folder replaced by the final one (for printed paths; also
        after the commit)."""
        return text.replace(str(self._stage_path()), str(self.folder))

    def _stage_path(self) -> Path:
        return Path(self.folder) / f"{STAGE_PREFIX}{self.phase}-{os.getpid()}"

    def staged(self) -> list[str]:
        if self._stage is None:
            return []
        return sorted(p.relative_to(self._stage).as_posix() for p in self._stage.rglob("*")
                      if p.is_file() and not TEMP_RE.match(p.name))

    def commit(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Move every staged file into place as one unit; returns the manifest."""
        from loglead_lo2.schema import write_text_atomic

        if self._stage is None:
            raise RuntimeError("OutputSet.commit() outside its with-block")
        names = self.staged()
        files = {n: {"bytes": (self._stage / n).stat().st_size,
                     "sha256": sha256_of(self._stage / n),
                     "rows": _parquet_rows(self._stage / n)} for n in names}
        set_id = hashlib.sha256(json.dumps(files, sort_keys=True).encode("utf-8")).hexdigest()
        manifest = {"format": MANIFEST_FORMAT, "phase": self.phase, "set_id": set_id,
                    "files": files, **dict(extra or {})}
        remove = sorted(n for n in self.owned if n not in files and (self.folder / n).exists())
        journal = _journal(self.folder, self.phase)
        write_text_atomic(journal, json.dumps({
            "stage": self._stage.name, "files": names, "remove": remove,
            "manifest": manifest, "manifest_name": self.manifest}))
        self._stage = None  # from here on the journal owns the stage: never removed on error
        _apply_journal(self.folder, journal)
        self.committed = manifest
        return manifest

    def __exit__(self, *exc: object) -> None:
        try:
            if self._stage is not None:
                shutil.rmtree(self._stage, ignore_errors=True)
                self._stage = None
            if self.committed is None and self._created:  # a failed first run leaves no folder
                with contextlib.suppress(OSError):
                    (self.folder / LOCK_FILE).unlink()
                    self.folder.rmdir()
        finally:
            if self._lock is not None:
                self._lock.release()


# --- readers ----------------------------------------------------------------------------------


def read_manifest(folder: Path, manifest: str) -> dict[str, Any] | None:
    """The manifest of ``folder`` (``None`` when it has none: an older version wrote it)."""
    path = Path(folder) / manifest
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
        if not (isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT
                and isinstance(data.get("files"), dict)):
            raise ValueError("not an output-set manifest")
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{path}: unreadable ({type(exc).__name__}); re-run the phase that "
                        f"writes {folder}.") from exc
    return data


def verify_set(folder: Path, manifest: str, names: Iterable[str], *,
               deep: bool = False, allow_unlisted: bool = False) -> dict[str, Any] | None:
    """Check that ``names`` in ``folder`` belong to its current output set.

    Refuses a folder with an unfinished commit, a listed file that is missing or has another
    size (or sha256 with ``deep``), and (unless ``allow_unlisted``: a file another phase may
    have added) an existing file the set does not list, left from an earlier run. Returns
    the manifest (``None`` for a folder without one).
    """
    folder = Path(folder)
    journals = sorted(folder.glob(f"{JOURNAL_PREFIX}*.json")) if folder.is_dir() else []
    if journals:
        raise UserError(f"{folder}: a commit was interrupted ({journals[0].name}); re-run the "
                        "phase that writes it (it finishes the commit first).")
    data = read_manifest(folder, manifest)
    if data is None:
        return None
    files = data["files"]
    for name in names:
        path = folder / name
        entry = files.get(name)
        if entry is None:
            if path.exists() and not allow_unlisted:
                raise UserError(f"{path} is not part of the output set recorded in "
                                f"{manifest} (left from another run); re-run that phase.")
            continue
        if not path.is_file():
            raise UserError(f"{path} is listed in {folder / manifest} but missing; re-run the "
                            "phase that writes it.")
        if not isinstance(entry, Mapping) or path.stat().st_size != entry.get("bytes") or (
                deep and sha256_of(path) != entry.get("sha256")):
            raise UserError(f"{path} differs from the file recorded in {folder / manifest} "
                            "(replaced or damaged after it was written); re-run that phase.")
    return data


__all__ = ["FolderLock", "LOCK_FILE", "OutputSet", "STAGE_PREFIX", "TEMP_RE", "read_manifest",
           "reading", "recover", "sha256_of", "verify_set"]
