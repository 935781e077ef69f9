"""LO2 release archives: members, safety checks and the per-run inventory.

Standard library only (:mod:`zipfile`, :mod:`tarfile`). :func:`iter_members` streams an
archive's members (tar archives in stream mode), :func:`classify` maps a member to its run
folder or refuses it (absolute path, ``..``, link, device file), :func:`inventory` counts files
and bytes per run over all archives without extracting anything. Used by
:mod:`loglead_lo2.tools.extract`.
"""

from __future__ import annotations

import re
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from loglead_lo2.errors import UserError

RUN_RE = re.compile(r"\A(?:light-oauth2-data-|LO2_run_)([0-9]{9,11})\Z")  # \Z: no trailing newline
MB = 1_000_000
EXAMPLES = 5  # refused / skipped members shown by name

Say = Callable[[str], None]
Opener = Callable[[], IO[bytes]]


class UnsafeMember(ValueError):
    """A member whose path would escape the extraction folder."""


@dataclass(frozen=True)
class Member:
    """One archive member: its name, uncompressed size and kind (file/dir/link/other)."""

    name: str
    size: int
    kind: str
    mtime: float | None = None


@dataclass
class RunInfo:
    """One run folder found in the archives."""

    name: str
    epoch: int
    files: int = 0
    bytes: int = 0
    archives: list[Path] = field(default_factory=list)


@dataclass
class Inventory:
    """Every run in the archives plus the members that were refused or skipped."""

    archives: list[Path]
    runs: dict[str, RunInfo] = field(default_factory=dict)
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # archive, member, why
    stray: list[tuple[str, str]] = field(default_factory=list)  # first EXAMPLES only
    stray_count: int = 0


# --- archives and members -----------------------------------------------------------------


def archive_kind(path: Path) -> str | None:
    """``"zip"``, ``"tar"`` (.tar, .tar.gz, .tgz) or ``None`` for other files."""
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    return None


def list_archives(folder: Path) -> list[Path]:
    """The archives in ``folder``, sorted by name; UserError when there are none."""
    if not folder.is_dir():
        raise UserError(f"LO2_ARCHIVES={folder}: folder not found. Put the LO2 release "
                        "archives there or set LO2_ARCHIVES to their folder.")
    found = sorted(p for p in folder.iterdir() if p.is_file() and archive_kind(p))
    if not found:
        raise UserError(f"LO2_ARCHIVES={folder}: no archives (.zip, .tar, .tar.gz, .tgz) in it.")
    return found


def split_member(name: str) -> tuple[str, tuple[str, ...]] | None:
    """``(run, path parts inside the run)`` for a member under a run folder (at the top or
    under one top-level folder), ``None`` for other members.

    Raises :class:`UnsafeMember` for absolute paths and ``..`` components.
    """
    raw = name.replace("\\", "/")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise UnsafeMember("absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeMember("'..' in path")
    for i in (0, 1):
        if len(parts) > i and RUN_RE.match(parts[i]):
            return parts[i], tuple(parts[i + 1:])
    return None


def classify(member: Member) -> tuple[str, str, tuple[str, ...]]:
    """``("file"|"dir", run, parts)``, ``("refused", reason, ())``, ``("stray", "", ())`` for a
    file outside the runs or ``("ignored", "", ())`` for a folder outside them."""
    try:
        hit = split_member(member.name)
    except UnsafeMember as exc:
        return "refused", str(exc), ()
    if member.kind in ("link", "other"):
        return "refused", "link or special file", ()
    if hit is None:  # folders around the runs are expected; other files are reported
        return ("ignored" if member.kind == "dir" else "stray"), "", ()
    run, parts = hit
    if member.kind == "dir":
        return "dir", run, parts
    return ("file", run, parts) if parts else ("stray", "", ())


def zip_member(info: zipfile.ZipInfo) -> Member:
    if info.is_dir():
        kind = "dir"
    elif stat.S_ISLNK(info.external_attr >> 16):
        kind = "link"
    else:
        kind = "file"
    try:
        mtime: float | None = time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        mtime = None
    return Member(info.filename, info.file_size, kind, mtime)


def tar_member(info: tarfile.TarInfo) -> Member:
    if info.isreg():
        kind = "file"
    elif info.isdir():
        kind = "dir"
    elif info.issym() or info.islnk():
        kind = "link"
    else:
        kind = "other"
    return Member(info.name, info.size, kind, float(info.mtime))


def iter_members(path: Path) -> Iterator[tuple[Member, Opener]]:
    """Every member of an archive with a function that opens its data as a stream.

    Tar archives are read in stream mode: an opener is only valid until the next member.
    """
    try:
        if archive_kind(path) == "zip":
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    yield zip_member(info), partial(zf.open, info)
        else:
            with tarfile.open(path, mode="r|*") as tf:
                while (tinfo := tf.next()) is not None:
                    yield tar_member(tinfo), partial(_tar_open, tf, tinfo)
                    tf.members = []  # type: ignore[attr-defined]  # stream mode keeps every TarInfo
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{path}: not a readable archive ({type(exc).__name__}: {exc}).") from exc


def _tar_open(tf: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    handle = tf.extractfile(info)
    if handle is None:
        raise OSError(f"{info.name}: no data")
    return handle


def inventory(archives: list[Path], say: Say) -> Inventory:
    """Read every archive's member list (no extraction) and count files and bytes per run."""
    inv = Inventory(archives=archives)
    for archive in archives:
        runs_here: set[str] = set()
        say(f"[Scan] {archive.name} ({archive.stat().st_size / MB:,.1f} MB)")
        for member, _ in iter_members(archive):
            what, run, parts = classify(member)
            if what == "refused":
                inv.refused.append((archive.name, member.name, run))
            elif what == "ignored":
                continue
            elif what == "stray":
                inv.stray_count += 1
                if len(inv.stray) < EXAMPLES:
                    inv.stray.append((archive.name, member.name))
            else:
                info = inv.runs.get(run)
                if info is None:
                    epoch = int(RUN_RE.match(run).group(1))  # type: ignore[union-attr]
                    info = inv.runs[run] = RunInfo(run, epoch)
                if archive not in info.archives:
                    info.archives.append(archive)
                runs_here.add(run)
                if what == "file":
                    info.files += 1
                    info.bytes += member.size
        say(f"[Scan] {archive.name}: {len(runs_here)} run(s)")
    return inv
