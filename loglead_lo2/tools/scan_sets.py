"""Output-set checks of the artifact scan: each folder's manifest (:mod:`loglead_lo2.outputs`)
and the lineage between them (a detection run computed from another load)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from loglead_lo2 import artifacts as A
from loglead_lo2.errors import UserError
from loglead_lo2.tools.findings import INCONSISTENT, OK, UNVERIFIED, Finding


def check_set(folder: Path, manifest: str, names: tuple[str, ...], group: str,
              deep: bool) -> Finding:
    """The output-set manifest of ``folder``: every listed file present with its size (and
    sha256 with ``--deep``), no unfinished commit, no file of another run."""
    from loglead_lo2.outputs import verify_set

    path = folder / manifest
    try:
        data = verify_set(folder, manifest, names, deep=deep)
    except UserError as exc:
        return Finding(group, manifest, str(path), INCONSISTENT, detail=str(exc))
    if data is None:
        return Finding(group, manifest, str(path), UNVERIFIED,
                       detail="no manifest (written by an older version): the files cannot "
                              "be checked as one set")
    how = "sha256" if deep else "size"
    return Finding(group, manifest, str(path), OK, bytes=path.stat().st_size,
                   detail=f"{len(data['files'])} file(s) of one set ({how} checked)")


def check_load_parts(root: Path, deep: bool) -> Finding | None:
    """The loader's per-run part folders (``lo2_parts/``), when there are any: every part's
    files match its ``part.json`` (sizes; sha256 with ``--deep``)."""
    from loglead_lo2.loader.parts import PARTS_DIR, check_parts

    folder = root / PARTS_DIR
    if not folder.is_dir() or folder.is_symlink():
        return None
    count, problems = check_parts(folder, deep)
    how = "sha256" if deep else "size"
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Finding("result", PARTS_DIR, str(folder), INCONSISTENT,
                       detail=f"{problems[0]}{more}; the next load with the same options "
                              "loads those runs again")
    return Finding("result", PARTS_DIR, str(folder), OK,
                   detail=f"{count} run part(s), files match part.json ({how} checked)")


def scan_sets(root: Path, metrics: Path, explain: Path, deep: bool,
              files: Callable[[Path], list[Path]]) -> list[Finding]:
    """The manifests of the detection and explainability folders (every file there belongs
    to the run the manifest records) and their lineage: a detection run computed from an
    earlier load than the one in ``root`` is inconsistent."""
    from loglead_lo2.outputs import read_manifest

    out: list[Finding] = []
    for folder, manifest, group in ((metrics, A.DETECT_MANIFEST_FILE, "metrics"),
                                    (explain, A.EXPLAIN_MANIFEST_FILE, "explainability")):
        if folder.is_dir():
            names = tuple(p.relative_to(folder).as_posix() for p in files(folder)
                          if p.name != manifest)
            out.append(check_set(folder, manifest, names, group, deep))
    found = {f.name: f for f in out}
    detect = found.get(A.DETECT_MANIFEST_FILE)
    if detect is not None and detect.status == OK:
        try:
            want = (read_manifest(metrics, A.DETECT_MANIFEST_FILE) or {}).get("load_set_id")
            have = (read_manifest(root, A.LOAD_MANIFEST_FILE) or {}).get("set_id")
        except UserError:
            return out  # reported by the loader's own finding
        if want and have and want != have:
            detect.status = INCONSISTENT
            detect.detail = (f"computed from another load (set {str(want)[:12]}) than the one "
                             f"in {root} ({str(have)[:12]}): re-run lo2-detect")
    return out


__all__ = ["check_load_parts", "check_set", "scan_sets"]
