"""Model bundles: ``(model, vectorizer)`` joblib tuples with a checked ``model.yml``.

A bundle is the plain tuple users already load with ``model, vectorizer = joblib.load(p)``.
Its description lives beside it in YAML (``model.yml`` for the Isolation Forest,
``<key>.yml`` for registry models), written with pyyaml and carrying the bundle's sha256.
:func:`load_bundle` checks that hash *before* unpickling, then checks the tuple's shape and the
vectoriser's feature column, and turns every failure into a one-line :class:`UserError`.

Joblib files are pickles: loading one can run code. Only files whose sha256 matches a
``model.yml`` you wrote are verified; others load with a printed warning.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from loglead_lo2.artifacts import IF_METADATA
from loglead_lo2.errors import UserError
from loglead_lo2.schema import atomic_path

if TYPE_CHECKING:
    from loglead_lo2.detection.records import ModelRecord

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
IF_METADATA_NAME = IF_METADATA


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_bundle(
    path: str | os.PathLike[str],
    model: Any,
    vectorizer: Any,
    *,
    overwrite: bool = False,
    flag: str = "--overwrite-model",
) -> str:
    """Write ``(model, vectorizer)`` atomically with joblib; returns the file's sha256.

    Refuses to replace an existing file unless ``overwrite`` (the error names ``flag``).
    """
    import joblib

    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass {flag} to replace it.")
    if path.exists() and path.is_dir():
        raise UserError(f"{path} is a directory; give a file name such as models/lo2_if.joblib.")
    with atomic_path(path) as tmp:
        joblib.dump((model, vectorizer), tmp, compress=3)
    return sha256_file(path)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle depends on (for model.yml)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("loglead-lo2", "scikit-learn", "numpy", "scipy", "polars", "joblib",
                 "xgboost", "shap", "pyyaml"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            # xgboost ships as "xgboost-cpu" on some installs
            try:
                out[name] = md.version(f"{name}-cpu")
            except md.PackageNotFoundError:
                continue
    return out


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str:
    """``git rev-parse HEAD`` of the working tree, or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else "unknown"


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths into YAML-safe builtins."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and value != value:  # NaN -> null
        return None
    return value


def write_metadata(path: str | os.PathLike[str], metadata: Mapping[str, Any]) -> Path:
    """Write ``metadata`` as YAML (pyyaml ``safe_dump``, key order kept), atomically."""
    from loglead_lo2.schema import write_text_atomic

    path = Path(path)
    text = yaml.safe_dump(_plain(metadata), sort_keys=False, default_flow_style=False)
    write_text_atomic(path, text)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a model YAML file; a clear :class:`UserError` if it is not a mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read model metadata ({type(exc).__name__}).") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a model metadata file (expected a YAML mapping).")
    return data


def bundle_section(path: str | os.PathLike[str], sha256: str) -> dict[str, Any]:
    """The ``bundle`` block of a metadata file: name, sha256 and size of the joblib file."""
    path = Path(path)
    return {"file": path.name, "sha256": sha256, "bytes": path.stat().st_size,
            "format": "joblib tuple (model, vectorizer)", "format_version": FORMAT_VERSION}


def find_metadata(bundle: str | os.PathLike[str]) -> Path | None:
    """The YAML describing ``bundle``: ``<stem>.yml`` beside it, else a ``model.yml`` beside it
    whose ``bundle.file`` names it."""
    bundle = Path(bundle)
    own = bundle.with_suffix(".yml")
    if own.is_file():
        return own
    shared = bundle.parent / IF_METADATA_NAME
    if shared.is_file():
        try:
            data = yaml.safe_load(shared.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return shared  # unreadable: let load_bundle report it
        recorded = (data or {}).get("bundle", {}) if isinstance(data, dict) else {}
        if isinstance(recorded, dict) and recorded.get("file") in (None, bundle.name):
            return shared
    return None


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

    @property
    def verified(self) -> bool:
        return self.metadata is not None

    @property
    def threshold(self) -> float | None:
        value = ((self.metadata or {}).get("threshold") or {}).get("value")
        return None if value is None else float(value)


def load_bundle(
    path: str | os.PathLike[str],
    *,
    metadata_path: str | os.PathLike[str] | None = None,
    expected_item: str | None = None,
    expected_numeric: tuple[str, ...] | None = None,
    expected_key: str | None = None,
    model_check: Any = None,
) -> LoadedBundle:
    """Load and check a ``(model, vectorizer)`` bundle.

    Order: the file exists; its sha256 matches the metadata (``metadata_path`` or the file
    found by :func:`find_metadata`) when there is one; only then it is unpickled; the result
    must be a 2-tuple whose vectoriser has ``transform``/``item``; the vectoriser's item column
    (and numeric columns, when ``expected_numeric`` is given) must match; the metadata's model
    key must equal ``expected_key`` when both are known; ``model_check(model)`` may veto the
    estimator (returns an error text or ``None``). Every failure is a one-line UserError.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model bundle not found (save one with --save-model).")
    digest = sha256_file(path)
    notes: list[str] = []
    meta_file = Path(metadata_path) if metadata_path else find_metadata(path)
    metadata: dict[str, Any] | None = None
    if meta_file is not None:
        if not meta_file.is_file():
            raise UserError(f"{meta_file}: metadata file not found.")
        metadata = read_metadata(meta_file)
        recorded = (metadata.get("bundle") or {}).get("sha256")
        if not recorded:
            raise UserError(f"{meta_file}: has no bundle.sha256; cannot verify {path}.")
        if recorded != digest:
            raise UserError(
                f"{path}: sha256 {digest[:12]}... does not match {meta_file} "
                f"({str(recorded)[:12]}...): the file was modified or replaced after it was "
                "saved. Re-save it with --save-model --dump-metadata --overwrite-model."
            )
        notes.append(f"[Model] {path}: sha256 verified against {meta_file}")
        notes.extend(_version_notes(path, meta_file, metadata))
        key = (metadata.get("model") or {}).get("key")
        if expected_key and key and key != expected_key:
            raise UserError(f"{path}: is a '{key}' bundle, expected '{expected_key}'.")
    else:
        notes.append(
            f"[Model] {path}: no model.yml beside it, sha256 not verified "
            "(joblib files can run code when loaded: only load bundles you trust)"
        )
    obj = _unpickle(path)
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
    return LoadedBundle(path=path, model=model, vectorizer=vectorizer, sha256=digest,
                        metadata=metadata, metadata_path=meta_file, notes=notes)


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


def _unpickle(path: Path) -> Any:
    import joblib

    try:
        return joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - a foreign file can fail in many ways
        raise UserError(
            f"{path}: not a readable joblib model bundle ({type(exc).__name__}). "
            "Re-create it with --save-model."
        ) from exc


# --- model.yml content ----------------------------------------------------------------------


def _json_sha256(data: Any) -> str:
    import json

    text = json.dumps(_plain(data), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def vectorizer_sha256(vectorizer: Any) -> str:
    """sha256 of what the vectoriser does: its parameters, its feature names (vocabulary in
    column order) and its numeric scaling; equal for a vectoriser and its joblib copy."""
    names = list(getattr(vectorizer, "feature_names_", []) or [])
    fitted = ("numeric_mean_", "numeric_scale_", "idf_")
    scaling = {k: getattr(vectorizer, k).tolist() for k in fitted
               if hasattr(getattr(vectorizer, k, None), "tolist")}
    return _json_sha256({"params": vectorizer.get_params(), "features": names,
                         "scaling": scaling})


def parts_section(estimator: Any, vectorizer: Any,
                  drain: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``parts`` block of a metadata file: what lies between raw lines and the score,
    each named by a hash. ``normaliser``: the fingerprint of the masking rules the features
    were built with; ``vectorizer``: sha256 of its parameters, vocabulary and scaling;
    ``estimator``: sha256 of its parameters (its fitted state is the bundle's sha256);
    ``drain``: for models over template ids, the Drain state (sha256, lineage) of the load the
    ids came from, saved beside the bundle (``drain`` is the load's ``"drain"`` info block; see
    :mod:`loglead_lo2.detection.drain_link`)."""
    from loglead_lo2.detection.drain_link import drain_part
    from loglead_lo2.enhancers.normalize import rules_fingerprint

    item = getattr(vectorizer, "item", None)
    return {
        "normaliser": {"rules_sha256": rules_fingerprint(),
                       "module": "loglead_lo2.enhancers.normalize"},
        "vectorizer": {"class": type(vectorizer).__name__, "item": item,
                       "numeric": list(getattr(vectorizer, "numeric", ()) or ()),
                       "sha256": vectorizer_sha256(vectorizer)},
        "estimator": {"class": f"{type(estimator).__module__}.{type(estimator).__name__}",
                      "params_sha256": _json_sha256(estimator.get_params()),
                      "fitted_state": "in the bundle file (bundle.sha256)"},
        "drain": drain_part(vectorizer, drain),
    }


def _run_context(record: ModelRecord) -> dict[str, Any]:
    """Settings (label mode, split, window, per-service) and the service a model saw."""
    return {"service": record.service, "settings": dict(record.settings)}


def if_metadata(res: Any, record: ModelRecord, config: Any, bundle: Any,
                sha: str, drain: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``model.yml`` of an Isolation Forest bundle (``res`` is an ``IFResult``)."""
    vec = res.vectorizer
    return {
        "created_at": utc_now(),
        "model": {"key": "isolation_forest", "class": "sklearn.ensemble.IsolationForest",
                  "params": res.model.get_params()},
        **_run_context(record),
        "features": {"item": vec.item, "numeric": list(vec.numeric),
                     "vectorizer": {k: v for k, v in vec.get_params().items()},
                     "vocabulary_size": len(vec.vocabulary_),
                     "n_features": len(vec.feature_names_)},
        "training": {"selector": "normal sequences of training runs",
                     "rows": res.fit_rows, "runs": res.fit_runs},
        "threshold_holdout": {"fraction": config.holdout_fraction, "rows": res.threshold_rows,
                              "runs": res.threshold_runs},
        "evaluation": dict(record.split),
        "threshold": {"value": res.threshold, "percentile": res.percentile,
                      "source": res.threshold_source, "rule": "score_if >= threshold"},
        "metrics": record.metadata_metrics(),
        "versions": library_versions(),
        "git_commit": git_commit(),
        "parts": parts_section(res.model, res.vectorizer, drain),
        "bundle": bundle_section(bundle, sha),
    }


def model_metadata(spec: Any, fitted: Any, record: ModelRecord, bundle: Path,
                   sha: str, drain: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``<key>.yml`` of a registry model bundle (``fitted`` is a ``FittedModel``)."""
    vec = fitted.vectorizer
    return {
        "created_at": utc_now(),
        "model": {"key": spec.key, "kind": spec.kind,
                  "class": f"{type(fitted.estimator).__module__}."
                           f"{type(fitted.estimator).__name__}",
                  "params": fitted.estimator.get_params(), "score": spec.score,
                  "shap": spec.shap},
        **_run_context(record),
        "features": {"item": vec.item, "numeric": list(vec.numeric),
                     "vectorizer": vec.get_params(), "vocabulary_size": len(vec.vocabulary_),
                     "n_features": len(vec.feature_names_)},
        "training": {"selector": spec.train_on, "rows": fitted.train_rows,
                     "runs": sorted(fitted.train_runs)},
        "evaluation": dict(record.split),
        "threshold": dict(record.threshold),
        "metrics": record.metadata_metrics(),
        "versions": library_versions(),
        "git_commit": git_commit(),
        "parts": parts_section(fitted.estimator, fitted.vectorizer, drain),
        "bundle": bundle_section(bundle, sha),
    }
