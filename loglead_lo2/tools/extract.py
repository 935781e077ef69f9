"""Extract LO2 release archives run by run: ordered, split into chunks, resumable.

``bash tools/extract-split-resume-lo2.sh`` runs :func:`main`. The LO2 release is a set of
archives (zip; tar, tar.gz and tgz are accepted too) whose members are run folders
``light-oauth2-data-<epoch>/...`` or ``LO2_run_<epoch>/...``, possibly under one top-level
folder.

1. :func:`~loglead_lo2.tools.archives.inventory` reads every archive's member list once
   (nothing is written) and counts files and bytes per run.
2. :func:`order_runs` sorts the runs (``MODE``: ``newest`` / ``oldest`` epoch first, ``all`` by
   name) and :func:`split_chunks` cuts them into ``SPLIT`` contiguous chunks of nearly equal run
   counts; ``CHUNK`` picks one (1-based), otherwise every chunk is done in order.
3. :func:`extract` writes each run into ``<root>/.<run>.partial``, puts the marker
   ``.extracted`` inside it and renames it to ``<root>/<run>``. A run with a marker is skipped;
   an interrupted run (partial folder, or a run folder without marker) is extracted again.

Safety: members with absolute paths or ``..`` (zip-slip), links and device files are refused
(reported, never written); members outside a run folder are reported and skipped. Members are
streamed with :func:`shutil.copyfileobj`, never read whole into memory. Tar archives are read in
stream mode: once for the inventory, once to extract every pending run they hold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from loglead_lo2.cli_common import Parser, add_verbosity, cli_args
from loglead_lo2.errors import UserError
from loglead_lo2.tools.archives import (
    EXAMPLES,
    MB,
    Inventory,
    Member,
    Opener,
    RunInfo,
    Say,
    archive_kind,
    classify,
    inventory,
    iter_members,
    list_archives,
    zip_member,
)

MARKER = ".extracted"
MODES: dict[str, str] = {
    "newest": "newest epoch first",
    "oldest": "oldest epoch first",
    "all": "sorted by name",
}
DEFAULT_ARCHIVES = Path("data/lo2_archives")
DEFAULT_ROOT = Path("data/lo2_runs")
LIST_LIMIT = 50  # the dry run lists every selected run up to this many (or with LIST=1)
COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class ExtractOptions:
    """Resolved settings (flags win over environment variables)."""

    archives: Path = DEFAULT_ARCHIVES
    root: Path = DEFAULT_ROOT
    mode: str = "all"
    split: int = 1
    chunk: int | None = None
    dry_run: bool = True
    list_runs: bool = False


# --- the plan -------------------------------------------------------------------------------


def order_runs(runs: Iterable[RunInfo], mode: str) -> list[RunInfo]:
    """Runs in extraction order for ``mode`` (newest/oldest epoch first, or all by name)."""
    if mode == "newest":
        return sorted(runs, key=lambda r: (-r.epoch, r.name))
    if mode == "oldest":
        return sorted(runs, key=lambda r: (r.epoch, r.name))
    if mode == "all":
        return sorted(runs, key=lambda r: r.name)
    raise UserError(f"MODE={mode}: use one of {', '.join(MODES)}.")


def split_chunks(items: list[RunInfo], n: int) -> list[list[RunInfo]]:
    """``n`` contiguous chunks; sizes differ by at most one, the first chunks get the extra."""
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def partial_dir(root: Path, run: str) -> Path:
    return root / f".{run}.partial"


def run_state(root: Path, run: str) -> str:
    """``done`` (marker present), ``partial`` (interrupted) or ``todo``; a symlinked run
    folder is never ``done`` (extraction refuses it with a clear line)."""
    if not (root / run).is_symlink() and (root / run / MARKER).is_file():
        return "done"
    if any(p.exists() or p.is_symlink() for p in (partial_dir(root, run), root / run)):
        return "partial"
    return "todo"


def _free_bytes(path: Path) -> int:
    probe = path.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def print_plan(inv: Inventory, opts: ExtractOptions, chunks: list[list[RunInfo]],
               selected: list[int], say: Say) -> None:
    """The plan: archives, runs, per-chunk counts and bytes, what is already done."""
    packed = sum(a.stat().st_size for a in inv.archives)
    runs = list(inv.runs.values())
    say(f"[Plan] {len(inv.archives)} archive(s) in {opts.archives} ({packed / MB:,.1f} MB): "
        + ", ".join(a.name for a in inv.archives))
    say(f"[Plan] {len(runs):,} run(s), {sum(r.files for r in runs):,} files, "
        f"{sum(r.bytes for r in runs) / MB:,.1f} MB unpacked -> {opts.root}")
    say(f"[Plan] MODE={opts.mode} ({MODES[opts.mode]}), SPLIT={opts.split}, "
        f"CHUNK={opts.chunk if opts.chunk else 'all'}")
    need = 0
    for k, chunk in enumerate(chunks, start=1):
        states = [run_state(opts.root, r.name) for r in chunk]
        mark = " <- selected" if opts.chunk == k else ""
        span = f"; {chunk[0].name} .. {chunk[-1].name}" if len(chunk) > 1 else ""
        span = f"; {chunk[0].name}" if len(chunk) == 1 else span
        say(f"[Plan] chunk {k}/{opts.split}{mark}: {len(chunk)} run(s), "
            f"{sum(r.bytes for r in chunk) / MB:,.1f} MB; done {states.count('done')}, "
            f"partial {states.count('partial')}, to do {states.count('todo')}{span}")
        if k in selected:
            need += sum(r.bytes for r, s in zip(chunk, states, strict=True) if s != "done")
    picked = [r for k in selected for r in chunks[k - 1]]
    if picked and (opts.list_runs or len(picked) <= LIST_LIMIT):
        for i, run in enumerate(picked, start=1):
            say(f"  [{i}/{len(picked)}] {run.name}: {run.files} files, {run.bytes / MB:,.1f} MB, "
                f"{run_state(opts.root, run.name)} ({', '.join(a.name for a in run.archives)})")
    elif picked:
        say(f"  ({len(picked)} runs selected; LIST=1 lists every one)")
    free = _free_bytes(opts.root)
    warn = "  WARNING: not enough free space" if need > free else ""
    say(f"[Plan] selected runs still to extract: {need / MB:,.1f} MB; free at {opts.root}: "
        f"{free / MB:,.1f} MB{warn}")
    if inv.refused:
        say(f"[Plan] refused {len(inv.refused)} unsafe member(s), never written: "
            + "; ".join(f"{a}: {m} ({why})" for a, m, why in inv.refused[:EXAMPLES])
            + (" ..." if len(inv.refused) > EXAMPLES else ""))
    if inv.stray_count:
        say(f"[Plan] skipped {inv.stray_count} member(s) outside run folders: "
            + "; ".join(f"{a}: {m}" for a, m in inv.stray)
            + (" ..." if inv.stray_count > len(inv.stray) else ""))


# --- extraction -----------------------------------------------------------------------------


class _RunWriter:
    """Writes one run into its partial folder and publishes it with a marker."""

    def __init__(self, root: Path, run: RunInfo, say: Say) -> None:
        self.root, self.run = root, run
        self.tmp = partial_dir(root, run.name)
        for path in (self.tmp, root / run.name):
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                what = "a symbolic link" if path.is_symlink() else "not a folder"
                raise UserError(f"{path} is {what}; the extraction never writes through or "
                                f"replaces it: remove it (rm {path}) and run again.")
        if self.tmp.exists():
            say(f"  {run.name}: removing the partial extraction of an interrupted run")
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.files = 0
        self.bytes = 0
        self.seconds = 0.0  # time spent on this run's members (tar passes serve several runs)

    def write(self, member: Member, parts: tuple[str, ...], opener: Opener, archive: Path) -> None:
        dest = self.tmp.joinpath(*parts)
        normal = os.path.normpath(dest)
        if normal != str(self.tmp) and not normal.startswith(str(self.tmp) + os.sep):
            raise UserError(f"{archive.name}: {member.name} would leave {self.tmp}; refused.")
        try:
            if member.kind == "dir":
                dest.mkdir(parents=True, exist_ok=True)
                return
            dest.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            with opener() as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, COPY_BLOCK)
            if member.mtime is not None:
                os.utime(dest, (member.mtime, member.mtime))
            self.seconds += time.perf_counter() - started
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise UserError(f"{archive.name}: cannot extract {member.name} "
                            f"({type(exc).__name__}: {exc}); the run stays partial.") from exc
        self.files += 1
        self.bytes += member.size

    def finish(self, archives: list[str], say: Say) -> None:
        if self.files != self.run.files:
            raise UserError(f"{self.run.name}: wrote {self.files} of {self.run.files} files "
                            "(did an archive change since the scan?); the run stays partial.")
        marker = {"run": self.run.name, "files": self.files, "bytes": self.bytes,
                  "archives": archives,
                  "extracted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (self.tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        final = self.root / self.run.name
        if final.exists():
            say(f"  {self.run.name}: replacing a run folder without {MARKER} marker")
            shutil.rmtree(final)
        os.rename(self.tmp, final)


class _Extractor:
    """Pulls runs out of the archives: zip members by run, tar archives in one stream pass."""

    def __init__(self, root: Path, pending: dict[str, RunInfo], say: Say) -> None:
        self.root, self.pending, self.say = root, pending, say
        self.writers: dict[str, _RunWriter] = {}
        self.zips: dict[Path, tuple[zipfile.ZipFile, dict[str, list]]] = {}
        self.streamed: set[Path] = set()

    def _writer(self, run: str) -> _RunWriter:
        if run not in self.writers:
            self.writers[run] = _RunWriter(self.root, self.pending[run], self.say)
        return self.writers[run]

    def _zip(self, archive: Path) -> tuple[zipfile.ZipFile, dict[str, list]]:
        if archive not in self.zips:
            try:
                zf = zipfile.ZipFile(archive)
            except (zipfile.BadZipFile, OSError) as exc:
                raise UserError(f"{archive}: not a readable archive ({exc}).") from exc
            index: dict[str, list] = {}
            for info in zf.infolist():
                member = zip_member(info)
                what, run, parts = classify(member)
                if what in ("file", "dir") and run in self.pending:
                    index.setdefault(run, []).append((member, parts, info))
            self.zips[archive] = (zf, index)
        return self.zips[archive]

    def _stream_tar(self, archive: Path) -> None:
        for member, opener in iter_members(archive):
            what, run, parts = classify(member)
            if what in ("file", "dir") and run in self.pending:
                self._writer(run).write(member, parts, opener, archive)
        self.streamed.add(archive)

    def extract(self, run: RunInfo) -> _RunWriter:
        writer = self._writer(run.name)
        for archive in run.archives:
            if archive_kind(archive) == "zip":
                zf, index = self._zip(archive)
                for member, parts, info in index.pop(run.name, []):
                    writer.write(member, parts, partial(zf.open, info), archive)
            elif archive not in self.streamed:
                self._stream_tar(archive)
        writer.finish([a.name for a in run.archives], self.say)
        del self.pending[run.name], self.writers[run.name]
        return writer

    def close(self) -> None:
        for zf, _ in self.zips.values():
            zf.close()


def extract(chunks: list[list[RunInfo]], selected: list[int], opts: ExtractOptions,
            say: Say) -> dict[str, int]:
    """Extract the ``selected`` chunks (1-based) in order; returns counts and bytes."""
    opts.root.mkdir(parents=True, exist_ok=True)
    picked = [r for k in selected for r in chunks[k - 1]]
    pending = {r.name: r for r in picked if run_state(opts.root, r.name) != "done"}
    total_bytes = sum(r.bytes for r in pending.values())
    done = {"extracted": 0, "skipped": 0, "bytes": 0}
    ex = _Extractor(opts.root, pending, say)
    i = 0
    try:
        for k in selected:
            chunk = chunks[k - 1]
            say(f"== chunk {k}/{opts.split}: {len(chunk)} run(s), "
                f"{sum(r.bytes for r in chunk) / MB:,.1f} MB")
            for run in chunk:
                i += 1
                head = f"[{i}/{len(picked)}] {run.name}"
                if run.name not in pending:
                    done["skipped"] += 1
                    say(f"{head}: already extracted, skipped")
                    continue
                writer = ex.extract(run)
                took = writer.seconds
                done["extracted"] += 1
                done["bytes"] += writer.bytes
                say(f"{head}: {writer.files} files, {writer.bytes / MB:,.1f} MB written in "
                    f"{took:.1f}s ({writer.bytes / MB / max(took, 1e-6):,.1f} MB/s); "
                    f"{done['bytes'] / MB:,.1f}/{total_bytes / MB:,.1f} MB")
    finally:
        ex.close()
    return done


# --- command line ---------------------------------------------------------------------------

EPILOG = """\
environment variables (flags win over them):
  LO2_ARCHIVES  folder with the release archives (default data/lo2_archives)
  LO2_ROOT      extraction target (default data/lo2_runs)
  MODE          newest | oldest | all (default all = sorted by name)
  SPLIT         number of chunks (default 1)
  CHUNK         1-based chunk to extract (default: every chunk in order)
  DRY_RUN       1 = only print the plan (default), 0 = extract
  LIST          1 = list every selected run in the plan

examples:
  MODE=newest SPLIT=4 DRY_RUN=0 bash tools/extract-split-resume-lo2.sh
  MODE=newest SPLIT=4 CHUNK=2 DRY_RUN=0 bash tools/extract-split-resume-lo2.sh"""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = Parser(
        prog=prog, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Extract LO2 release archives run by run into LO2_ROOT, in chunks, "
                    "resumably (a finished run gets a .extracted marker and is skipped).")
    p.add_argument("--archives", type=Path, default=None, help="overrides LO2_ARCHIVES")
    p.add_argument("--root", "--out-dir", dest="root", type=Path, default=None,
                   help="overrides LO2_ROOT: the folder written, the --root of lo2-load")
    p.add_argument("--mode", default=None, help="overrides MODE (newest, oldest, all)")
    p.add_argument("--split", default=None, help="overrides SPLIT")
    p.add_argument("--chunk", default=None, help="overrides CHUNK")
    p.add_argument("--dry-run", dest="dry_run", action=argparse.BooleanOptionalAction,
                   default=None, help="overrides DRY_RUN (--no-dry-run extracts)")
    p.add_argument("--list", dest="list_runs", action="store_true", default=None,
                   help="list every selected run in the plan (LIST=1)")
    add_verbosity(p, quiet_help="only the plan summary and the [Done] line (no per-run lines)")
    return p


def _pick(flag: object, env: Mapping[str, str], key: str, flag_name: str) -> tuple[str, str]:
    """(value, name to show in errors); empty environment values count as unset."""
    if flag is not None:
        return str(flag), flag_name
    return env.get(key, "").strip(), key


def _whole(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise UserError(f"{name}={value}: must be a whole number of at least 1.")
    return number


def _flag(value: str, name: str) -> bool:
    text = value.lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UserError(f"{name}={value}: use 1 (only print the plan) or 0 (extract).")


def resolve_options(args: argparse.Namespace, env: Mapping[str, str]) -> ExtractOptions:
    """Combine flags and environment variables; UserError for bad values."""
    archives, _ = _pick(args.archives, env, "LO2_ARCHIVES", "--archives")
    root, _ = _pick(args.root, env, "LO2_ROOT", "--root")
    mode, mode_name = _pick(args.mode, env, "MODE", "--mode")
    mode = mode.lower() or "all"
    if mode not in MODES:
        raise UserError(f"{mode_name}={mode}: use one of {', '.join(MODES)}.")
    split_text, split_name = _pick(args.split, env, "SPLIT", "--split")
    split = _whole(split_text or "1", split_name)
    chunk_text, chunk_name = _pick(args.chunk, env, "CHUNK", "--chunk")
    chunk = _whole(chunk_text, chunk_name) if chunk_text else None
    if chunk is not None and chunk > split:
        raise UserError(f"{chunk_name}={chunk} is larger than {split_name}={split} "
                        f"(chunks are numbered 1..{split}).")
    dry_text, dry_name = _pick(args.dry_run if args.dry_run is None else int(args.dry_run),
                               env, "DRY_RUN", "--dry-run")
    list_text, list_name = _pick(args.list_runs, env, "LIST", "--list")
    return ExtractOptions(
        archives=Path(archives) if archives else DEFAULT_ARCHIVES,
        root=Path(root) if root else DEFAULT_ROOT,
        mode=mode, split=split, chunk=chunk,
        dry_run=_flag(dry_text or "1", dry_name),
        list_runs=_flag(list_text, list_name) if list_text else False,
    )


def run(opts: ExtractOptions, say: Say) -> int:
    """Scan, plan and (unless a dry run) extract; returns the exit code."""
    if opts.root.exists() and not opts.root.is_dir():
        raise UserError(f"LO2_ROOT={opts.root}: exists and is not a folder.")
    inv = inventory(list_archives(opts.archives), say)
    if not inv.runs:
        raise UserError(f"LO2_ARCHIVES={opts.archives}: the archives hold no run folders "
                        "(expected light-oauth2-data-<epoch>/ or LO2_run_<epoch>/ members).")
    chunks = split_chunks(order_runs(inv.runs.values(), opts.mode), opts.split)
    selected = [opts.chunk] if opts.chunk else list(range(1, opts.split + 1))
    print_plan(inv, opts, chunks, selected, say)
    if opts.dry_run:
        say("DRY_RUN=1: nothing was written. Set DRY_RUN=0 to extract.")
        return 0
    started = time.perf_counter()
    done = extract(chunks, selected, opts, say)
    say(f"[Done] extracted {done['extracted']} run(s) ({done['bytes'] / MB:,.1f} MB), skipped "
        f"{done['skipped']} already extracted, in {time.perf_counter() - started:.1f}s "
        f"-> {opts.root}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None,
         environ: Mapping[str, str] | None = None) -> int:
    args = cli_args(build_parser(prog), argv)
    env = os.environ if environ is None else environ
    say: Say = partial(print, flush=True)
    if args.quiet:
        say = _headline_printer(say)
    try:
        return run(resolve_options(args, env), say)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished runs keep their .extracted marker; run the same command "
              "again to resume.", file=sys.stderr)
        return 130


def _headline_printer(say: Say) -> Say:
    """``--quiet``: print the [Plan]/[Done] lines, not the indented per-run ones."""
    def headline(message: str) -> None:
        if not message.startswith((" ", "==")):
            say(message)
    return headline


if __name__ == "__main__":
    sys.exit(main(prog="extract-split-resume-lo2.sh"))
