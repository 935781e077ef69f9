"""Check the artifacts of an LO2 result folder: present, size, rows, schema, consistency.

``python tools/lo2_result_scan.py`` runs :func:`main`; :func:`scan` does the work and returns
a :class:`ScanReport`. Checked, each reported as ``ok``, ``missing``, ``corrupt``, ``invalid``
(wrong columns), ``inconsistent`` or ``unverified``:

* result folder (``--root``): ``lo2_events/sequences/sequences_enhanced/metrics.parquet``
  against their column contracts (:data:`loglead_lo2.schema.SCHEMAS`),
  ``lo2_drain_templates.parquet``, ``lo2_files.parquet`` (per-file trim record),
  ``lo2_if_predictions.parquet|.csv``, ``lo2_load_info.json``;
  row counts against the counts ``lo2_load_info.json`` recorded, sequences against enhanced
  sequences, and events against the sequences' ``seq_len`` total;
* metrics folder (``<root>/metrics``): ``if_metrics.json|csv``, ``leaderboard.csv|md`` and every
  other file in it (JSON/CSV must parse);
* models folder (``--models``): every ``*.joblib`` bundle against the sha256, size and
  signature that its ``<stem>.yml`` or ``model.yml`` records under ``bundle:``
  (:mod:`~loglead_lo2.tools.scan_models`); bundles are never unpickled, only regular files read;
* ``<root>/explainability``: every file, checked by type (JSON, CSV, Parquet, PNG, text).

Temp files left by interrupted atomic writes (``.<name>.<random>.tmp``) are listed; only
``--clean-temp`` without ``--dry-run`` removes them (and only those older than
``--temp-min-age`` seconds, so a write in progress is left alone). Nothing else is changed.
Exit code: 0 when every present artifact is valid, 1 when one is corrupt, invalid or
inconsistent, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loglead_lo2 import artifacts as A
from loglead_lo2.cli_common import (
    Parser,
    add_verbosity,
    cli_args,
    human_bytes,
)
from loglead_lo2.errors import UserError
from loglead_lo2.tools.findings import (
    CORRUPT,
    FAILING,
    INCONSISTENT,
    INVALID,
    MISSING,
    OK,
    STATUSES,
    UNVERIFIED,
    Finding,
    not_regular,
)
from loglead_lo2.tools.scan_sets import check_load_parts, check_set, scan_sets

RESULT_PARQUET: dict[str, tuple[str | None, tuple[str, ...]]] = {
    A.EVENTS_FILE: ("events", ()),
    A.SEQUENCES_FILE: ("sequences", ()),
    A.ENHANCED_FILE: ("sequences_enhanced", ()),
    A.METRICS_FILE: ("metrics", ()),
    A.TEMPLATES_FILE: (None, ("e_event_drain_id", "template", "count")),
    A.DRAIN_STATE_FILE: (None, ("message", "cid")),
    A.FILES_FILE: (None, ("run", "test_case", "service", "lines", "trimmed_lines",
                          "window_dropped_lines")),
}
PREDICTIONS = (A.IF_PREDICTIONS_FILE, A.IF_PREDICTIONS_FILE.replace(".parquet", ".csv"))
PREDICTION_COLUMNS = ("seq_id", "score_if")
LOAD_INFO = A.LOAD_INFO_FILE
METRIC_FILES: dict[str, tuple[str, ...]] = {
    A.IF_METRICS_JSON: (), A.IF_METRICS_CSV: (),
    A.LEADERBOARD_CSV: ("rank", "model"), A.LEADERBOARD_MD: (),
}
IF_BUNDLE, IF_METADATA = A.IF_BUNDLE, A.IF_METADATA
# the loader's own record of rows per file; Drain templates are left out because the
# detection phase may re-create them with a different template count
LOAD_INFO_CHECKED = (A.EVENTS_FILE, A.SEQUENCES_FILE, A.ENHANCED_FILE, A.METRICS_FILE)
TEMP_RE = re.compile(r"^\..+\.tmp$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OBJECT_JSON = (A.LOAD_INFO_FILE, A.RUN_FILE, A.IF_METRICS_JSON, A.LEAKAGE_FILE,
               A.LOAD_MANIFEST_FILE, A.DETECT_MANIFEST_FILE, A.EXPLAIN_MANIFEST_FILE,
               A.SUMMARY_JSON)
"""JSON files that must hold an object (a list there is damage, not data)."""


@dataclass
class Leftover:
    """A temp file left by an interrupted atomic write."""

    path: str
    bytes: int
    age_seconds: float
    action: str = "kept"


@dataclass
class ScanReport:
    root: str
    models_dir: str
    findings: list[Finding] = field(default_factory=list)
    leftovers: list[Leftover] = field(default_factory=list)
    deep: bool = False
    dry_run: bool = True

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(f.status == s for f in self.findings) for s in STATUSES}

    @property
    def exit_code(self) -> int:
        return 1 if any(f.status in FAILING for f in self.findings) else 0

    def find(self, name: str) -> Finding | None:
        return next((f for f in self.findings if f.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "models_dir": self.models_dir, "deep": self.deep,
                "dry_run": self.dry_run, "exit_code": self.exit_code, "counts": self.counts,
                "findings": [asdict(f) for f in self.findings],
                "leftovers": [asdict(t) for t in self.leftovers]}


# --- one file -------------------------------------------------------------------------------


def _size(path: Path) -> int:
    return path.stat().st_size


def check_parquet(path: Path, group: str, kind: str | None = None,
                  required: tuple[str, ...] = (), deep: bool = False) -> Finding:
    """Footer, schema (``kind`` contract and ``required`` columns), row count; with ``deep``
    every data page is decoded too."""
    import pyarrow.parquet as pq

    from loglead_lo2.schema import SCHEMAS, read_parquet_schema, validate_schema

    out = Finding(group, path.name, str(path), OK, bytes=_size(path))
    try:
        schema = read_parquet_schema(path)
        out.rows = pq.ParquetFile(path).metadata.num_rows
    except UserError as exc:
        out.status, out.detail = CORRUPT, str(exc)
        return out
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad footers
        out.status, out.detail = CORRUPT, f"{path}: unreadable metadata ({exc})"
        return out
    contract: dict[str, Any] = dict(SCHEMAS[kind]) if kind else {}
    contract.update({c: None for c in required if c not in contract})
    try:
        validate_schema(schema, contract, path.name)
    except UserError as exc:
        out.status, out.detail = INVALID, str(exc)
        return out
    if deep:
        from loglead_lo2.schema import verify_pages

        try:
            verify_pages(path)
        except UserError as exc:
            out.status, out.detail = CORRUPT, str(exc)
            return out
    what = f"{kind} schema ok" if kind else ("columns ok" if required else "readable")
    out.detail = what + (", every data page read and its CRC checked" if deep else "")
    return out


def check_file(path: Path, group: str, required: tuple[str, ...] = (),
               deep: bool = False) -> Finding:
    """Check one file by its type: Parquet, JSON, CSV, YAML, PNG, text; others: present.
    Only regular files are opened (a FIFO would block the scan, ``/dev/zero`` never ends)."""
    suffix = path.suffix.lower()
    problem = not_regular(path)
    if problem:
        return Finding(group, path.name, str(path), INVALID, detail=problem)
    if suffix in (".parquet", ".pq"):
        return check_parquet(path, group, None, required, deep)
    out = Finding(group, path.name, str(path), OK, bytes=_size(path))
    if out.bytes == 0:
        out.status, out.detail = CORRUPT, "empty file"
        return out
    try:
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            out.rows = len(data) if isinstance(data, list) else None
            if path.name in OBJECT_JSON and not isinstance(data, dict):
                out.status, out.detail = INVALID, f"a JSON {type(data).__name__}, not an object"
                return out
            if path.name == LOAD_INFO and not isinstance(data.get("outputs", {}), dict):
                out.status, out.detail = INVALID, "'outputs' is not a mapping of file -> rows"
                return out
            out.detail = "JSON ok"
        elif suffix == ".csv":
            import polars as pl

            table = pl.read_csv(path, infer_schema_length=0)
            out.rows = table.height
            missing = [c for c in required if c not in table.columns]
            if missing:
                out.status = INVALID
                out.detail = f"missing column(s) {', '.join(missing)}"
                return out
            out.detail = "CSV ok"
        elif suffix in (".yml", ".yaml"):
            import yaml

            yaml.safe_load(path.read_text(encoding="utf-8"))
            out.detail = "YAML ok"
        elif suffix == ".png":
            with open(path, "rb") as handle:
                if handle.read(8) != PNG_MAGIC:
                    raise ValueError("not a PNG image")
            from PIL import Image  # pillow comes with matplotlib

            with Image.open(path) as image:
                image.load()  # every chunk decoded: a truncated file fails here
                out.detail = f"PNG ok, {image.width}x{image.height} decoded"
        elif suffix in (".md", ".txt"):
            out.detail = f"text ok, {path.read_text(encoding='utf-8').count(chr(10))} lines"
        else:
            out.detail = "present"
    except Exception as exc:  # noqa: BLE001 - report any unreadable file, never crash
        out.status, out.detail = CORRUPT, f"{type(exc).__name__}: {str(exc)[:200]}"
    return out


def _missing(group: str, base: Path, name: str, detail: str = "") -> Finding:
    return Finding(group, name, str(base / name), MISSING, detail=detail)


# --- groups ---------------------------------------------------------------------------------


def scan_result(root: Path, deep: bool) -> list[Finding]:
    out = []
    for name, (kind, required) in RESULT_PARQUET.items():
        path = root / name
        if path.is_dir():
            out.append(Finding("result", name, str(path), INVALID,
                               detail="a folder, expected one Parquet file"))
            continue
        if not (path.exists() or path.is_symlink()):
            out.append(_missing("result", root, name))
            continue
        problem = not_regular(path)
        out.append(Finding("result", name, str(path), INVALID, detail=problem) if problem
                   else check_parquet(path, "result", kind, required, deep))
    found = [root / n for n in PREDICTIONS if (root / n).is_file()]
    out += [check_file(p, "result", PREDICTION_COLUMNS, deep) for p in found]
    if not found:
        out.append(_missing("result", root, "lo2_if_predictions.parquet|.csv"))
    info = root / LOAD_INFO
    out.append(check_file(info, "result") if info.exists() or info.is_symlink()
               else _missing("result", root, LOAD_INFO))
    out.append(check_set(root, A.LOAD_MANIFEST_FILE, A.LOADER_FILES, "result", deep))
    parts = check_load_parts(root, deep)
    if parts is not None:
        out.append(parts)
    return out


def _files(folder: Path) -> list[Path]:
    """Files in ``folder``, without temp files and the output sets' own hidden files (lock,
    stage folders, commit journals: a journal is reported by :func:`check_set`)."""
    return sorted(p for p in folder.rglob("*") if not (p.is_dir() and not p.is_symlink())
                  and not TEMP_RE.match(p.name)
                  and not any(part.startswith(".lo2") for part in p.relative_to(folder).parts))


def scan_folder(folder: Path, group: str, known: dict[str, tuple[str, ...]],
                deep: bool) -> list[Finding]:
    """Known files (missing when absent) plus every other file found in ``folder``."""
    if not folder.is_dir():
        return [_missing(group, folder, name, f"{folder} not found") for name in known] or [
            Finding(group, f"{folder.name}/", str(folder), MISSING, detail="folder not found")]
    present = _files(folder)
    out = [_missing(group, folder, n) for n in known if not (folder / n).is_file()]
    for path in present:
        rel = path.relative_to(folder).as_posix()
        finding = check_file(path, group, known.get(rel, ()), deep)
        finding.name = rel
        out.append(finding)
    return sorted(out, key=lambda f: f.name)


def scan_models(models_dir: Path) -> list[Finding]:
    """Every bundle and model YAML of ``models_dir`` (:mod:`loglead_lo2.tools.scan_models`)."""
    from loglead_lo2.tools.scan_models import scan_models as scan_folder_models

    return scan_folder_models(models_dir)


def check_consistency(report: ScanReport, root: Path) -> None:
    """Row counts that must agree between files written by one load."""
    import polars as pl

    def ok(name: str) -> Finding | None:
        found = report.find(name)
        return found if found is not None and found.status == OK else None

    def flag(finding: Finding, detail: str) -> None:
        finding.status, finding.detail = INCONSISTENT, detail

    info_finding = ok(LOAD_INFO)
    if info_finding is not None:
        info = json.loads((root / LOAD_INFO).read_text(encoding="utf-8"))
        outputs = info.get("outputs") if isinstance(info, dict) else None
        for name, rows in (outputs or {}).items():
            finding = ok(name) if name in LOAD_INFO_CHECKED else None
            if finding is not None and isinstance(rows, int) and finding.rows != rows:
                flag(finding, f"{finding.rows:,} rows but {LOAD_INFO} records {rows:,} "
                              "(left over from another load?)")
    seq, enh = ok(A.SEQUENCES_FILE), ok(A.ENHANCED_FILE)
    if seq is not None and enh is not None and seq.rows != enh.rows:
        flag(enh, f"{enh.rows:,} sequences but lo2_sequences.parquet has {seq.rows:,}")
    events, base = ok(A.EVENTS_FILE), seq or enh
    if events is not None and base is not None:
        try:
            total = pl.read_parquet(base.path, columns=["seq_len"])["seq_len"].sum()
        except Exception as exc:  # noqa: BLE001 - corrupt data pages
            base.status, base.detail = CORRUPT, f"seq_len unreadable ({exc})"
            return
        if total != events.rows:
            flag(events, f"{events.rows:,} events but the seq_len of {base.name} adds up to "
                         f"{total:,}")


# --- temp files and the whole scan ----------------------------------------------------------


def find_leftovers(folders: list[Path]) -> list[Leftover]:
    """``.<name>.<random>.tmp`` files in the scanned folders (not recursive, sorted)."""
    now = time.time()
    seen: set[Path] = set()
    out = []
    for folder in folders:
        if not folder.is_dir() or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        for path in sorted(folder.iterdir()):
            if path.is_file() and TEMP_RE.match(path.name):
                st = path.stat()
                out.append(Leftover(str(path), st.st_size, round(now - st.st_mtime, 1)))
    return out


def scan(root: Path, models_dir: Path, metrics_dir: Path | None = None,
         explain_dir: Path | None = None, *, deep: bool = False, dry_run: bool = True,
         clean_temp: bool = False, temp_min_age: float = 600.0) -> ScanReport:
    """Check every known artifact; remove leftover temp files only when ``clean_temp`` and
    not ``dry_run`` (and only those older than ``temp_min_age`` seconds)."""
    if not root.exists():
        raise UserError(f"--root {root}: folder not found. Pass the loader's --output-dir "
                        "(default demo/result/lo2).")
    if not root.is_dir():
        raise UserError(f"--root {root}: not a folder.")
    metrics_dir = metrics_dir or root / "metrics"
    explain_dir = explain_dir or root / "explainability"
    report = ScanReport(str(root), str(models_dir), deep=deep, dry_run=dry_run)
    report.findings += scan_result(root, deep)
    report.findings += scan_folder(metrics_dir, "metrics", METRIC_FILES, deep)
    report.findings += scan_models(models_dir)
    report.findings += scan_folder(explain_dir, "explainability", {}, deep)
    report.findings += scan_sets(root, metrics_dir, explain_dir, deep, _files)
    check_consistency(report, root)
    report.leftovers = find_leftovers([root, metrics_dir, models_dir, explain_dir])
    for left in report.leftovers:
        if not clean_temp:
            continue
        if left.age_seconds < temp_min_age:
            left.action = f"kept: younger than {temp_min_age:g}s (a write may be running)"
        elif dry_run:
            left.action = "would remove (--dry-run)"
        else:
            Path(left.path).unlink(missing_ok=True)
            left.action = "removed"
    return report


# --- output and command line ----------------------------------------------------------------




def render(report: ScanReport) -> str:
    """The human-readable report."""
    mode = "report only" if report.dry_run else "may remove leftover temp files"
    lines = [f"[Scan] result folder {report.root}, models folder {report.models_dir} ({mode})"]
    width = min(max((len(f.name) for f in report.findings), default=10), 32)
    for group in ("result", "metrics", "models", "explainability"):
        rows = [f for f in report.findings if f.group == group]
        if rows:
            lines.append(f"{group}:")
        for f in rows:
            status = f.status if f.status in (OK, MISSING, UNVERIFIED) else f.status.upper()
            count = "" if f.rows is None else f"{f.rows:,} row{'' if f.rows == 1 else 's'}"
            size = human_bytes(f.bytes, empty="")
            lines.append(f"  {status:<13} {f.name:<{width}}  {size:>10}  "
                         f"{count:>14}  {f.detail}".rstrip())
    if report.leftovers:
        lines.append(f"leftover temp files from interrupted writes: {len(report.leftovers)}"
                     + ("" if any(t.action != "kept" for t in report.leftovers)
                        else " (pass --clean-temp without --dry-run to remove them)"))
        for t in report.leftovers:
            size = human_bytes(t.bytes, empty="")
            lines.append(f"  {t.path}  {size}  {t.age_seconds:,.0f}s old  {t.action}")
    counts = ", ".join(f"{n} {s}" for s, n in report.counts.items())
    lines.append(f"[Scan] {counts} -> exit {report.exit_code}")
    return "\n".join(lines)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = Parser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check the artifacts of an LO2 result folder and the models folder: "
                    "present/missing, size, rows, schema, sha256 of model bundles, leftover "
                    "temp files. Report only unless --clean-temp is given without --dry-run.",
        epilog="exit codes: 0 every present artifact is valid, 1 something is corrupt, "
               "invalid or inconsistent, 2 bad usage\n\nexamples:\n"
               "  %(prog)s --dry-run\n  %(prog)s --root demo/result/lo2 --json\n"
               "  %(prog)s --clean-temp")
    p.add_argument("--root", type=Path, default=Path("demo/result/lo2"),
                   help="result folder: the loader's --output-dir, the --root of lo2-detect "
                        "and lo2-explain (default demo/result/lo2)")
    p.add_argument("--models-dir", type=Path, default=Path("models"),
                   help="model bundles and model.yml (default models)")
    p.add_argument("--metrics-dir", type=Path, default=None,
                   help="metric files (default <root>/metrics)")
    p.add_argument("--explain-dir", type=Path, default=None,
                   help="explainability outputs (default <root>/explainability)")
    p.add_argument("--dry-run", action="store_true",
                   help="report only, change nothing (also the default without --clean-temp)")
    p.add_argument("--clean-temp", action="store_true",
                   help="remove leftover .<name>.*.tmp files (not with --dry-run)")
    p.add_argument("--temp-min-age", type=float, default=600.0, metavar="SECONDS",
                   help="--clean-temp keeps temp files younger than this (default 600)")
    p.add_argument("--deep", action="store_true",
                   help="also decode every Parquet data page (slow on big files)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_verbosity(p, quiet_help="print only the final [Scan] line (counts and exit code)")
    return p


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = cli_args(build_parser(prog), argv)
    try:
        report = scan(args.root, args.models_dir, args.metrics_dir, args.explain_dir,
                      deep=args.deep, dry_run=args.dry_run or not args.clean_temp,
                      clean_temp=args.clean_temp, temp_min_age=args.temp_min_age)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    text = json.dumps(report.to_json(), indent=2) if args.json else render(report)
    print(text.splitlines()[-1] if args.quiet and not args.json else text)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(prog="lo2_result_scan.py"))
