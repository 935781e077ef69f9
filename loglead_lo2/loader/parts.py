"""Per-run part folders: a load of many runs that can be interrupted, resumed and extended.

The loader works one run at a time. Each run's tables (events, sequences, enhanced
sequences), its counts and the Drain state after it are written to
``<output>/lo2_parts/part-<run>/`` (``part.json`` names every file with its size and sha256).
A part folder is written under a temporary name and renamed into place, so it is there whole
or not at all. The final tables are the union of the parts, in run order, streamed into the
load's output set (:mod:`loglead_lo2.outputs`).

A part is reused when its ``key`` matches: a sha256 over the options that change its content,
the run's files (relative path, size, modification time), the package version and the key of
the part before it. Chaining the keys means a part is reused only when everything before it
is the same too, since the Drain state a run starts from is the one the runs before it left;
so a resumed load gives the same bytes as an uninterrupted one. A part whose files do not
match ``part.json`` is recomputed, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2 import __version__
from loglead_lo2.outputs import sha256_of
from loglead_lo2.schema import io_errors, write_parquet

log = logging.getLogger(__name__)

PARTS_DIR = "lo2_parts"
PART_PREFIX = "part-"
RECORD = "part.json"
FORMAT = "loglead-lo2 load part"
VERSION = 1
DRAIN = "drain_state.parquet"
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"


def part_dir(parts: Path, run: str) -> Path:
    return parts / f"{PART_PREFIX}{run}"


def stamp(path: str | Path) -> list[Any]:
    """A file's size and modification time for a part key (the error's name when it cannot
    be read: reported where it is read; the key just notes it)."""
    try:
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns]
    except OSError as exc:
        return [type(exc).__name__]


def chain_key(previous: str, options: Mapping[str, Any], files: Sequence[Any],
              root: Path) -> str:
    """The key of a run's part: options, the run's files and the previous part's key."""
    listing = [[str(Path(f.path).relative_to(root)) if Path(f.path).is_relative_to(root)
                else str(f.path), *stamp(f.path)] for f in files]
    text = json.dumps({"format": FORMAT, "version": VERSION, "package": __version__,
                       "previous": previous, "options": dict(options), "files": listing},
                      sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_stats(stats: Any) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """A stats dataclass as JSON scalars and its ``*_parts`` frames (concatenated)."""
    scalars: dict[str, Any] = {}
    frames: dict[str, pl.DataFrame] = {}
    for f in fields(stats):
        value = getattr(stats, f.name)
        if f.name.endswith("_parts"):
            if value:
                frames[f.name] = pl.concat(value, how="vertical", rechunk=True)
        else:
            scalars[f.name] = value
    return scalars, frames


def join_stats(cls: type, scalars: Mapping[str, Any], frames: Mapping[str, pl.DataFrame]) -> Any:
    """The inverse of :func:`split_stats`."""
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {k: v for k, v in scalars.items() if k in known}
    for name in known:
        if name.endswith("_parts"):
            values[name] = [frames[name]] if name in frames else []
    return cls(**values)


@dataclass(frozen=True)
class Part:
    """A part folder whose files match its record."""

    run: str
    path: Path
    record: dict[str, Any]

    def table(self, name: str) -> pl.DataFrame:
        with io_errors(self.path / name):
            return pl.read_parquet(self.path / name)

    def has(self, name: str) -> bool:
        return name in self.record["files"]

    def frames(self, prefix: str) -> dict[str, pl.DataFrame]:
        """The stats frames stored as ``<prefix>.<field>.parquet``."""
        out = {}
        for name in self.record["files"]:
            if name.startswith(prefix + "."):
                out[name[len(prefix) + 1 : -len(".parquet")]] = self.table(name)
        return out


def _record(folder: Path, run: str) -> tuple[dict[str, Any] | None, str]:
    """A part folder's record, or ``None`` and why not."""
    path = folder / RECORD
    if not path.is_file():
        return None, f"no {RECORD}"
    try:
        record = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"{RECORD} unreadable ({type(exc).__name__})"
    if not isinstance(record, dict) or record.get("format") != FORMAT \
            or record.get("version") != VERSION or record.get("run") != run \
            or not isinstance(record.get("files"), dict):
        return None, f"{RECORD} is not a part record of this version"
    return record, ""


def part_problem(folder: Path, record: Mapping[str, Any], deep: bool = True) -> str | None:
    """Why a part's files do not match its record (``None``: they do). Sizes always, sha256
    with ``deep``."""
    for name, meta in record["files"].items():
        target = folder / str(name)
        try:
            ok = (Path(str(name)).name == name and target.is_file() and not target.is_symlink()
                  and target.stat().st_size == meta["bytes"]
                  and (not deep or sha256_of(target) == meta["sha256"]))
        except (OSError, KeyError, TypeError):
            ok = False
        if not ok:
            return f"{target} does not match {RECORD} (changed or damaged)"
    return None


def read_part(parts: Path, run: str, key: str) -> Part | None:
    """The run's part if it exists, has ``key`` and its files match; else ``None``."""
    folder = part_dir(parts, run)
    if not (folder / RECORD).is_file():
        return None
    record, why = _record(folder, run)
    if record is None:
        log.warning("%s: %s; the run is loaded again", folder, why)
        return None
    if record.get("key") != key:
        log.info("%s: made with other options, files or earlier runs; loaded again", folder)
        return None
    problem = part_problem(folder, record)
    if problem is not None:
        log.warning("%s; the run is loaded again", problem)
        return None
    return Part(run, folder, record)


def check_parts(parts: Path, deep: bool) -> tuple[int, list[str]]:
    """For the artifact scan: how many part folders there are, and what is wrong with them
    (unreadable records, files that do not match, unfinished temporary folders)."""
    problems: list[str] = []
    count = 0
    for entry in sorted(parts.iterdir()):
        if entry.name.startswith((_TMP_PREFIX, _OLD_PREFIX)):
            problems.append(f"{entry}: an unfinished part folder (the next load removes it)")
            continue
        if not entry.name.startswith(PART_PREFIX) or not entry.is_dir() or entry.is_symlink():
            problems.append(f"{entry}: not a part folder")
            continue
        count += 1
        record, why = _record(entry, entry.name[len(PART_PREFIX):])
        problem = f"{entry}: {why}" if record is None else part_problem(entry, record, deep)
        if problem is not None:
            problems.append(problem)
    return count, problems


def write_part(parts: Path, run: str, key: str, tables: Mapping[str, pl.DataFrame | None],
               kinds: Mapping[str, str | None], record: Mapping[str, Any],
               drain_state: Any = None) -> Part:
    """Write a run's part folder atomically (temporary folder, then one rename).

    ``tables``: file name -> frame (``None``: not written); ``kinds``: the schema kind each is
    checked against; ``drain_state``: a
    :class:`~loglead_lo2.enhancers.drain.DrainSnapshot` saved as ``drain_state.parquet``.
    """
    parts.mkdir(parents=True, exist_ok=True)
    final = part_dir(parts, run)
    tmp = parts / f"{_TMP_PREFIX}{PART_PREFIX}{run}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files: dict[str, dict[str, Any]] = {}
    try:
        for name, frame in tables.items():
            if frame is None:
                continue
            rows = write_parquet(frame, tmp / name, kinds.get(name))
            files[name] = {"rows": rows}
        if drain_state is not None:
            info = drain_state.save(tmp / DRAIN)
            files[DRAIN] = {"rows": info.messages}
        for name, meta in files.items():
            meta["bytes"] = (tmp / name).stat().st_size
            meta["sha256"] = sha256_of(tmp / name)
        full = {"format": FORMAT, "version": VERSION, "run": run, "key": key,
                **record, "files": files}
        with io_errors(tmp / RECORD):
            (tmp / RECORD).write_text(json.dumps(full, indent=1, sort_keys=True, default=str),
                                      encoding="utf-8")
        old = None
        if final.exists():
            old = parts / f"{_OLD_PREFIX}{PART_PREFIX}{run}-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Part(run, final, full)


def clean_leftovers(parts: Path) -> int:
    """Remove temporary part folders of interrupted loads (call under the output lock)."""
    if not parts.is_dir():
        return 0
    removed = 0
    for entry in sorted(parts.iterdir()):
        if entry.name.startswith((_TMP_PREFIX, _OLD_PREFIX)) and entry.is_dir() \
                and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def prune(parts: Path, keep: set[str]) -> int:
    """Remove the part folders of runs not in ``keep`` (after a load committed: the parts
    are then exactly the load's runs). Returns how many were removed."""
    if not parts.is_dir() or parts.is_symlink():
        return 0
    removed = 0
    for entry in sorted(parts.iterdir()):
        if entry.name.startswith(PART_PREFIX) and entry.name[len(PART_PREFIX):] not in keep \
                and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


__all__ = ["PARTS_DIR", "Part", "chain_key", "check_parts", "clean_leftovers", "join_stats",
           "part_problem", "prune", "read_part", "split_stats", "stamp", "write_part"]
