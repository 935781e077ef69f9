"""Model bundles: ``(model, vectorizer)`` joblib tuples with a signed ``model.yml``.

A bundle is the plain tuple users already load with ``model, vectorizer = joblib.load(p)``.
Its description lives beside it in YAML (``model.yml`` for ``--save-model``, ``<key>.yml``
for the run's and registry bundles), written with pyyaml. :func:`save_bundle_pair` writes
both files as one unit (:mod:`~loglead_lo2.detection.pair_commit`) and signs them:
``bundle.hmac_sha256`` is an HMAC-SHA256, with a key the user holds, over the joblib bytes
and the YAML's content (:mod:`~loglead_lo2.detection.signing`).

:func:`load_bundle` reads the bundle file once, verifies the signature over those bytes and
only then unpickles the same bytes; then it checks the tuple's shape and the vectoriser's
feature columns. Every unverifiable bundle (no YAML, no signature, a wrong one, no key, a YAML
of another file, two YAMLs that disagree) is refused with one line, unless the user vouches
for it (``--trust-unsigned-bundle`` / ``trust_unsigned=True``: a warning line). Loading a
joblib file by hand (``joblib.load``) bypasses all of this: it runs whatever the file holds.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loglead_lo2.artifacts import IF_METADATA
from loglead_lo2.detection import signing
from loglead_lo2.detection.bundle_content import (
    FORMAT_VERSION,
    bundle_section,
    git_commit,
    if_metadata,
    library_versions,
    model_metadata,
    parts_section,
    utc_now,
    vectorizer_sha256,
)
from loglead_lo2.detection.pair_commit import commit_files, folder_lock, pending, recover
from loglead_lo2.errors import UserError
from loglead_lo2.plain import plain
from loglead_lo2.schema import atomic_path

log = logging.getLogger(__name__)

IF_METADATA_NAME = IF_METADATA
METADATA_LIMIT = 16 << 20
"""Largest model YAML read (bytes); real ones are a few KiB."""
TRUST = signing.TRUST_FLAG
RESAVE = (f"re-save it with the command that wrote it (--overwrite-model), or pass {TRUST} "
          "if you vouch for the file")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a regular file (one read; FIFOs and devices refused)."""
    return hashlib.sha256(signing.read_regular(path, "file")).hexdigest()


def bundle_bytes(model: Any, vectorizer: Any) -> bytes:
    """The joblib file of ``(model, vectorizer)`` (compressed), in memory."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump((model, vectorizer), buffer, compress=3)
    return buffer.getvalue()


def _check_target(path: Path, overwrite: bool, flag: str) -> None:
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name such as models/lo2_if.joblib.")
    if os.path.lexists(path) and not overwrite:
        raise UserError(f"{path} exists; pass {flag} to replace it.")


def save_bundle(path: str | os.PathLike[str], model: Any, vectorizer: Any, *,
                overwrite: bool = False, flag: str = "--overwrite-model") -> str:
    """Write only the joblib file (atomically; **unsigned**: it loads only with
    ``trust_unsigned``); returns its sha256. The pipeline saves with :func:`save_bundle_pair`."""
    path = Path(path)
    _check_target(path, overwrite, flag)
    data = bundle_bytes(model, vectorizer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SavedPair:
    """What :func:`save_bundle_pair` wrote."""

    bundle: Path
    metadata: Path
    sha256: str
    key_id: str


def metadata_text(metadata: Mapping[str, Any]) -> str:
    return yaml.safe_dump(plain(metadata), sort_keys=False, default_flow_style=False)


def _signed_text(key: signing.BundleKey, data: bytes, metadata: Mapping[str, Any]) -> str:
    """The YAML text of ``metadata`` with its signature; signed over the YAML as it will be
    read back, so every value survives the round trip exactly."""
    parsed = yaml.safe_load(metadata_text(metadata))
    parsed["bundle"]["hmac_sha256"] = signing.signature(key, data, parsed)
    return metadata_text(parsed)


def _sign(path: Path, data: bytes, metadata: Mapping[str, Any],
          key: signing.BundleKey) -> str:
    body = dict(metadata)
    body.pop("bundle", None)
    body["bundle"] = {**bundle_section(path.name, hashlib.sha256(data).hexdigest(), len(data)),
                      "key_id": key.key_id}
    return _signed_text(key, data, body)


def save_bundle_pair(path: str | os.PathLike[str], model: Any, vectorizer: Any,
                     metadata_fn: Callable[[Path, str], Mapping[str, Any]], *,
                     metadata_name: str | None = None, overwrite: bool = False,
                     flag: str = "--overwrite-model") -> SavedPair:
    """Write the signed pair ``path`` + its YAML (``<stem>.yml``, or ``metadata_name``) as one
    unit. ``metadata_fn(path, sha256)`` gives the YAML content; its ``bundle`` block is
    replaced by the authoritative one (file, sha256, bytes, key id, signature). The key file is
    created on first use. Refuses existing files unless ``overwrite`` (naming ``flag``)."""
    path = Path(path)
    meta_path = path.parent / (metadata_name or path.with_suffix(".yml").name)
    for target in (path, meta_path):
        _check_target(target, overwrite, flag)
    key = signing.load_key(create=True, forbid_inside=(path.parent,))
    data = bundle_bytes(model, vectorizer)
    sha = hashlib.sha256(data).hexdigest()
    text = _sign(path, data, metadata_fn(path, sha), key)
    for line in commit_files(path.parent, {path.name: data, meta_path.name: text.encode()},
                             tag=path.stem, refuse_existing=None if overwrite else flag):
        log.warning("[Model] %s: %s", path.parent, line)
    return SavedPair(path, meta_path, sha, key.key_id)


def sign_bundle(path: str | os.PathLike[str], *,
                metadata_path: str | os.PathLike[str] | None = None) -> SavedPair:
    """Sign an existing bundle *you vouch for* (one saved before bundles were signed, or with
    another key) with your key, without unpickling it: its YAML (found beside it, or
    ``metadata_path``; a bare ``<stem>.yml`` when it has none) gets a new ``bundle`` block."""
    path = Path(path)
    data = signing.read_regular(path, "model bundle")
    found = Path(metadata_path) if metadata_path else find_metadata(path)
    meta_path = found or path.with_suffix(".yml")
    metadata = read_metadata(found) if found else {"model": {}}
    key = signing.load_key(create=True, forbid_inside=(path.parent, meta_path.parent))
    text = _sign(path, data, metadata, key)
    commit_files(meta_path.parent, {meta_path.name: text.encode()}, tag=f"{path.stem}-sign")
    return SavedPair(path, meta_path, hashlib.sha256(data).hexdigest(), key.key_id)


def write_metadata(path: str | os.PathLike[str], metadata: Mapping[str, Any]) -> Path:
    """Write ``metadata`` as YAML (pyyaml ``safe_dump``, key order kept), atomically and
    **unsigned** (the pipeline signs through :func:`save_bundle_pair`)."""
    from loglead_lo2.schema import write_text_atomic

    path = Path(path)
    write_text_atomic(path, metadata_text(metadata))
    return path


# --- reading metadata -------------------------------------------------------------------------

_SECTIONS = ("model", "bundle", "threshold", "versions", "parts", "features", "training",
             "threshold_holdout", "evaluation", "settings")
_TYPED: dict[tuple[str, str], tuple[type, ...]] = {
    ("model", "key"): (str,), ("bundle", "file"): (str,), ("bundle", "sha256"): (str,),
    ("bundle", "bytes"): (int,), ("bundle", "format_version"): (int,),
    ("bundle", "hmac_sha256"): (str,), ("bundle", "key_id"): (str,),
    ("threshold", "value"): (int, float), ("training", "rows"): (int,),
    ("training", "runs"): (list,), ("evaluation", "holdout_runs"): (list,),
    ("evaluation", "train_runs"): (list,), ("threshold", "calibration_runs"): (list,),
}


def check_metadata(data: Any, path: Path) -> dict[str, Any]:
    """Refuse metadata whose sections or fields have the wrong type (one line each), so no
    reader of it fails later with a traceback."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a model metadata file (expected a YAML mapping, found "
                        f"{type(data).__name__}).")
    for name in _SECTIONS:
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise UserError(f"{path}: '{name}' must be a mapping, found "
                            f"{type(data[name]).__name__}; re-save the bundle.")
    for (section, name), types in _TYPED.items():
        value = (data.get(section) or {}).get(name)
        bad = value is not None and (isinstance(value, bool) or not isinstance(value, types))
        if not bad and isinstance(value, float) and math.isnan(value):
            bad = True
        if not bad and isinstance(value, list):
            bad = not all(isinstance(v, str) for v in value)
        if bad:
            raise UserError(f"{path}: '{section}.{name}' has the wrong type ({value!r:.40}); "
                            "re-save the bundle.")
    if data.get("service") is not None and not isinstance(data["service"], str):
        raise UserError(f"{path}: 'service' must be a string; re-save the bundle.")
    return data


def parse_metadata(path: str | os.PathLike[str]) -> Any:
    """The parsed YAML of a model metadata file (regular files only, at most
    :data:`METADATA_LIMIT` bytes; too deep a nesting is an error too)."""
    path = Path(path)
    raw = signing.read_regular(path, "model metadata", limit=METADATA_LIMIT)
    try:
        return yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError) as exc:
        raise UserError(f"{path}: cannot read model metadata ({type(exc).__name__}).") from exc


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and shape-check a model YAML file; one-line UserErrors."""
    return check_metadata(parse_metadata(path), Path(path))


def find_metadata(bundle: str | os.PathLike[str]) -> Path | None:
    """The YAML describing ``bundle``: ``<stem>.yml`` beside it and/or a ``model.yml`` beside
    it whose ``bundle.file`` names it. When both exist they must agree about the bundle
    (file, sha256, signature), else a UserError: a planted ``<stem>.yml`` never overrides."""
    bundle = Path(bundle)
    own = bundle.with_suffix(".yml")
    shared = bundle.parent / IF_METADATA_NAME
    found = [own] if os.path.lexists(own) else []
    if own != shared and os.path.lexists(shared):
        try:
            recorded = (read_metadata(shared).get("bundle") or {}).get("file")
        except UserError:
            recorded = None  # unreadable: it may describe this bundle; loading reports it
        if recorded in (None, bundle.name):
            found.append(shared)
    if len(found) == 2:
        blocks = [read_metadata(p).get("bundle") for p in found]
        if blocks[0] != blocks[1]:
            raise UserError(f"{bundle}: {own.name} and {shared.name} both describe it and "
                            "disagree about the bundle (sha256 or signature); remove the one "
                            "you did not write, or re-save the bundle with --overwrite-model.")
    return found[0] if found else None


# --- loading ----------------------------------------------------------------------------------


@dataclass
class LoadedBundle:
    """A bundle read back by :func:`load_bundle`."""

    path: Path
    model: Any
    vectorizer: Any
    sha256: str
    metadata: dict[str, Any] | None = None
    metadata_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    signed: bool = False

    @property
    def verified(self) -> bool:
        """The signature was verified (``False`` only under ``trust_unsigned``)."""
        return self.signed

    @property
    def threshold(self) -> float | None:
        value = ((self.metadata or {}).get("threshold") or {}).get("value")
        return None if value is None else float(value)


@dataclass
class PairCheck:
    """A bundle's bytes and metadata, and the verdict of :func:`verify_pair` on them:
    ``signed``, or ``problem`` (``unsigned``, ``no-key``, ``other-key``, ``bad-signature``)."""

    data: bytes
    metadata: dict[str, Any] | None
    meta_file: Path | None
    signed: bool = False
    problem: str | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)


def _read_pair(path: Path, metadata_path: str | os.PathLike[str] | None) -> PairCheck:
    """The metadata and the bundle's bytes, read under the folder's shared lock so that a
    concurrent save (which holds it exclusively for its renames) is never seen half-done."""
    folder = path.parent
    if pending(folder):
        recover(folder)
    with folder_lock(folder, shared=True):
        meta_file = Path(metadata_path) if metadata_path else find_metadata(path)
        metadata = read_metadata(meta_file) if meta_file is not None else None
        data = signing.read_regular(path, "model bundle")
    return PairCheck(data, metadata, meta_file)


def verify_pair(path: Path, pair: PairCheck, trust: bool) -> None:
    """Check the pair: a metadata file of another bundle or a sha256/size mismatch is always a
    UserError; an unverifiable signature too, unless ``trust`` (then a warning note and
    ``pair.problem``)."""
    def unverifiable(reason: str, fix: str = RESAVE, kind: str = "unsigned") -> None:
        pair.problem, pair.reason = kind, reason
        if not trust:
            raise UserError(f"{path}: {reason}; {fix}.")
        pair.notes.append(f"[Model] WARNING: {path}: {reason}; loaded anyway because of "
                          f"{TRUST} (joblib files run code when loaded: only for bundles "
                          "you vouch for)")

    meta, meta_file = pair.metadata, pair.meta_file
    if meta is None or meta_file is None:
        unverifiable(f"no {path.stem}.yml or {IF_METADATA_NAME} describes it, so it is not "
                     "signed and cannot be verified")
        return
    block = meta.get("bundle") or {}
    if block.get("file") != path.name:
        raise UserError(f"{path}: {meta_file} describes "
                        f"{block.get('file') or 'no bundle file'!s:.80}, not {path.name}; "
                        f"it cannot vouch for this file ({RESAVE}).")
    shown = meta_file.name if meta_file.parent == path.parent else str(meta_file)
    digest = hashlib.sha256(pair.data).hexdigest()
    recorded = block.get("sha256")
    size = block.get("bytes")
    if (recorded is not None and recorded != digest) or (size is not None
                                                         and size != len(pair.data)):
        raise UserError(
            f"{path}: sha256 {digest[:12]}... ({len(pair.data):,} bytes) does not match "
            f"{shown} ({str(recorded)[:12]}...): the file was modified or replaced after "
            f"it was saved; {RESAVE}.")
    sig = block.get("hmac_sha256")
    if not sig:
        unverifiable(f"{meta_file} carries no signature (bundle.hmac_sha256; saved by an "
                     "older version or by hand)",
                     f"re-save it, or sign it if you vouch for it: python -c \"from "
                     f"loglead_lo2.detection.persistence import sign_bundle; "
                     f"sign_bundle('{path}')\"")
        return
    try:
        key = signing.load_key(forbid_inside=(path.parent, meta_file.parent))
    except UserError as exc:
        unverifiable(f"its signature cannot be checked ({exc})".rstrip("."), "fix the key",
                     "no-key")
        return
    if block.get("key_id") not in (None, key.key_id):
        unverifiable(f"signed with another key (key id {block['key_id']!s:.16}; yours, from "
                     f"{key.source}, is {key.key_id})",
                     f"set {signing.KEY_FILE_ENV} to the key it was signed with, or re-save it",
                     "other-key")
        return
    if not signing.signature_matches(key, pair.data, meta, sig):
        unverifiable(f"its signature does not match {meta_file} (the bundle or its metadata "
                     "was changed after it was signed)", kind="bad-signature")
        return
    pair.signed = True
    pair.notes.append(f"[Model] {path}: signature verified against {meta_file.name} "
                      f"(key id {key.key_id})")


def load_bundle(
    path: str | os.PathLike[str],
    *,
    metadata_path: str | os.PathLike[str] | None = None,
    expected_item: str | None = None,
    expected_numeric: tuple[str, ...] | None = None,
    expected_key: str | None = None,
    model_check: Any = None,
    trust_unsigned: bool | None = None,
) -> LoadedBundle:
    """Load and check a ``(model, vectorizer)`` bundle.

    Order: the file is read once (regular files only); its metadata (``metadata_path`` or
    :func:`find_metadata`) must name it, match its sha256 and carry a valid signature over
    those bytes and the metadata (:func:`verify_pair`; ``trust_unsigned``, default the
    ``--trust-unsigned-bundle`` setting, turns the unverifiable cases into a warning); only then
    are the same bytes unpickled; the result must be a 2-tuple whose vectoriser has
    ``transform``/``item``; the vectoriser's item column (and numeric columns, when
    ``expected_numeric`` is given) must match; the metadata's model key must equal
    ``expected_key`` when both are known; ``model_check(model)`` may veto the estimator
    (returns an error text or ``None``). Every failure is a one-line UserError.
    """
    path = Path(path)
    if not os.path.lexists(path):
        raise UserError(f"{path}: model bundle not found (save one with --save-model).")
    trust = signing.trust_unsigned_active() if trust_unsigned is None else trust_unsigned
    pair = _read_pair(path, metadata_path)
    verify_pair(path, pair, trust)
    metadata, meta_file, notes = pair.metadata, pair.meta_file, pair.notes
    if metadata is not None and meta_file is not None:
        notes.extend(_version_notes(path, meta_file, metadata))
        key = (metadata.get("model") or {}).get("key")
        if expected_key and key and key != expected_key:
            raise UserError(f"{path}: is a '{key}' bundle, expected '{expected_key}'.")
    obj = _unpickle(path, pair.data)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise UserError(
            f"{path}: not a loglead-lo2 model bundle (expected a (model, vectorizer) tuple, "
            f"found {type(obj).__name__})."
        )
    model, vectorizer = obj
    if not (hasattr(vectorizer, "transform") and hasattr(vectorizer, "item")):
        raise UserError(
            f"{path}: second element is a {type(vectorizer).__name__}, not a ListVectorizer."
        )
    item = getattr(vectorizer, "item", None)
    if expected_item is not None and item != expected_item:
        raise UserError(
            f"{path}: the vectoriser was fitted on '{item}', not '{expected_item}' "
            f"(use --if-item {item} or retrain without --load-model)."
        )
    numeric = tuple(getattr(vectorizer, "numeric", ()) or ())
    if expected_numeric is not None and tuple(expected_numeric) != numeric:
        raise UserError(
            f"{path}: the vectoriser uses numeric columns {','.join(numeric) or '(none)'}, "
            f"not {','.join(expected_numeric) or '(none)'} (drop --if-numeric to reuse it)."
        )
    if model_check is not None:
        problem = model_check(model)
        if problem:
            raise UserError(f"{path}: {problem}")
    return LoadedBundle(path=path, model=model, vectorizer=vectorizer,
                        sha256=hashlib.sha256(pair.data).hexdigest(), metadata=metadata,
                        metadata_path=meta_file, notes=notes, signed=pair.signed)


VERSION_CHECKED = ("loglead-lo2", "scikit-learn", "xgboost", "numpy")
"""Libraries whose version change can change a loaded bundle's scores (or break loading)."""


def _version_notes(path: Path, meta_file: Path, metadata: Mapping[str, Any]) -> list[str]:
    """Refuse a bundle of another format version; warn when the libraries that shape its
    scores differ from the ones it was saved with (PyOD-style envelope checks)."""
    fmt = (metadata.get("bundle") or {}).get("format_version")
    if fmt is not None and fmt != FORMAT_VERSION:
        raise UserError(
            f"{path}: bundle format version {fmt}, this loglead-lo2 reads version "
            f"{FORMAT_VERSION}. Re-train and save it with this version (--save-model)."
        )
    saved = metadata.get("versions") or {}
    now = library_versions()
    drift = [f"{lib} {saved[lib]} -> {now[lib]}" for lib in VERSION_CHECKED
             if lib in saved and lib in now and str(saved[lib]) != now[lib]]
    if not drift:
        return []
    return [f"[Model] WARNING: {path} was saved with other library versions "
            f"({'; '.join(drift)}, per {meta_file.name}): scores may differ; re-train to be sure"]


def _unpickle(path: Path, data: bytes) -> Any:
    """Unpickle the bytes that were verified (never re-open the file)."""
    import joblib

    try:
        return joblib.load(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - a foreign file can fail in many ways
        raise UserError(
            f"{path}: not a readable joblib model bundle ({type(exc).__name__}). "
            "Re-create it with --save-model."
        ) from exc


__all__ = ["FORMAT_VERSION", "IF_METADATA_NAME", "LoadedBundle", "PairCheck", "SavedPair",
           "bundle_bytes", "bundle_section", "check_metadata", "find_metadata", "git_commit",
           "if_metadata", "library_versions", "load_bundle", "model_metadata",
           "parse_metadata", "parts_section", "read_metadata", "save_bundle",
           "save_bundle_pair", "sha256_file", "sign_bundle", "utc_now", "vectorizer_sha256",
           "verify_pair", "write_metadata"]
