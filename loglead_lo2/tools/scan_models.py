"""The models folder part of the artifact scan (:mod:`loglead_lo2.tools.scan`).

Every ``*.joblib`` bundle and model YAML is checked without unpickling anything and without
opening anything but regular files (a FIFO or a device named as a bundle is reported, never
read): the YAML's types, the bundle it names, the Drain state beside it; the bundle's size and
sha256 against its YAML, and its signature when the bundle key is at hand
(:mod:`loglead_lo2.detection.signing`). An interrupted bundle save (a commit journal) is
reported too.
"""

from __future__ import annotations

from pathlib import Path

from loglead_lo2.artifacts import IF_BUNDLE, IF_METADATA
from loglead_lo2.errors import UserError
from loglead_lo2.tools.findings import (
    CORRUPT,
    INCONSISTENT,
    INVALID,
    MISSING,
    OK,
    UNVERIFIED,
    Finding,
    not_regular,
)


def _missing(group: str, base: Path, name: str, detail: str = "") -> Finding:
    return Finding(group, name, str(base / name), MISSING, detail=detail)


def scan_models(models_dir: Path) -> list[Finding]:
    """Every ``*.joblib`` bundle checked against its metadata YAML (size, sha256, signature
    when the bundle key is at hand; nothing is unpickled), in ``models_dir`` and its
    per-service subfolders (``models/<service>/``, ``--per-service``)."""
    if not models_dir.is_dir():
        return [_missing("models", models_dir, n, f"{models_dir} not found")
                for n in (IF_BUNDLE, IF_METADATA)]
    folders = [models_dir, *sorted(d for d in models_dir.iterdir()
                                   if d.is_dir() and not d.name.startswith(".")
                                   and d.suffix not in (".yml", ".yaml", ".joblib"))]
    return [finding for folder in folders for finding in _scan_model_folder(folder)]


def _lsize(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _scan_metadata(models_dir: Path, meta_path: Path) -> tuple[Finding, str | None]:
    """A model YAML: readable, well-typed, its bundle present; returns the bundle it names."""
    from loglead_lo2.detection.drain_link import state_problem
    from loglead_lo2.detection.persistence import check_metadata, parse_metadata

    finding = Finding("models", meta_path.name, str(meta_path), OK, bytes=_lsize(meta_path))
    why = not_regular(meta_path)
    if why is not None:
        finding.status, finding.detail = INVALID, why
        return finding, None
    if finding.bytes == 0:
        finding.status, finding.detail = CORRUPT, "empty file"
        return finding, None
    try:
        data = parse_metadata(meta_path)
    except UserError as exc:
        finding.status, finding.detail = CORRUPT, str(exc)
        return finding, None
    try:
        meta = check_metadata(data, meta_path)
    except UserError as exc:
        finding.status, finding.detail = INVALID, str(exc)
        return finding, None
    bundle = meta.get("bundle")
    if not bundle:
        finding.detail = "YAML ok (no bundle section)"
        return finding, None
    name = str(bundle.get("file") or meta_path.with_suffix(".joblib").name)
    drain_problem = state_problem(models_dir, meta)
    if drain_problem:
        finding.status, finding.detail = INCONSISTENT, drain_problem
    elif not bundle.get("sha256"):
        finding.status, finding.detail = INVALID, "has no bundle.sha256"
    elif not (models_dir / name).is_file():
        finding.status, finding.detail = INCONSISTENT, f"describes {name}, which is missing"
    else:
        finding.detail = f"describes {name}"
    return finding, name


def _scan_bundle(path: Path) -> Finding:
    """A joblib bundle against its metadata: size, sha256 and signature (never unpickled)."""
    from loglead_lo2.detection.persistence import (
        PairCheck,
        find_metadata,
        read_metadata,
        verify_pair,
    )
    from loglead_lo2.detection.signing import read_regular

    finding = Finding("models", path.name, str(path), OK, bytes=_lsize(path))
    why = not_regular(path)
    if why is not None:
        finding.status, finding.detail = INVALID, why
        return finding
    try:
        data = read_regular(path, "model bundle")
    except UserError as exc:
        finding.status, finding.detail = CORRUPT, str(exc)
        return finding
    try:
        found = find_metadata(path)
    except UserError as exc:
        finding.status, finding.detail = INCONSISTENT, str(exc)
        return finding
    if found is None:
        finding.status = UNVERIFIED
        finding.detail = f"no {path.stem}.yml or {IF_METADATA} describes it (unsigned)"
        return finding
    try:
        pair = PairCheck(data, read_metadata(found), found)
    except UserError as exc:
        finding.status, finding.detail = UNVERIFIED, f"{found.name} is unusable: {exc}"
        return finding
    try:
        verify_pair(path, pair, trust=True)
    except UserError as exc:
        finding.status, finding.detail = INCONSISTENT, str(exc)
        return finding
    if pair.signed:
        finding.detail = f"signature and sha256 verified against {found.name}"
    else:
        finding.status = INCONSISTENT if pair.problem == "bad-signature" else UNVERIFIED
        finding.detail = f"sha256 matches {found.name}, signature not verified: {pair.reason}"
    return finding


def _scan_model_folder(models_dir: Path) -> list[Finding]:
    from loglead_lo2.detection.pair_commit import pending

    out: list[Finding] = []
    for meta_path in sorted(models_dir.glob("*.y*ml")):
        out.append(_scan_metadata(models_dir, meta_path)[0])
    out += [_scan_bundle(path) for path in sorted(models_dir.glob("*.joblib"))]
    for journal in pending(models_dir):
        out.append(Finding("models", journal.name, str(journal), INCONSISTENT,
                           bytes=_lsize(journal),
                           detail="a bundle save was interrupted; the next save or load of a "
                                  "bundle in this folder finishes it"))
    names = {f.name for f in out}
    for name in (IF_BUNDLE, IF_METADATA):
        if name not in names:
            out.append(_missing("models", models_dir, name))
    return sorted(out, key=lambda f: f.name)


__all__ = ["scan_models"]
