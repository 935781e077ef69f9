"""What a bundle's YAML says: versions, git commit, parts (by hash), training, threshold.

The builders of ``model.yml`` (:func:`if_metadata`) and ``<key>.yml`` (:func:`model_metadata`);
:func:`~loglead_lo2.detection.persistence.save_bundle_pair` adds the authoritative ``bundle``
block (file, sha256, bytes, signature) when it writes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loglead_lo2.plain import plain

if TYPE_CHECKING:
    from loglead_lo2.detection.records import ModelRecord

FORMAT_VERSION = 1
BUNDLE_FORMAT = "joblib tuple (model, vectorizer)"


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


def bundle_section(path: str | os.PathLike[str], sha256: str,
                   size: int | None = None) -> dict[str, Any]:
    """The ``bundle`` block of a metadata file: name, sha256 and size of the joblib file
    (``size``: its bytes; else read from the file when it exists)."""
    path = Path(path)
    if size is None and path.is_file():
        size = path.stat().st_size
    return {"file": path.name, "sha256": sha256, "bytes": size,
            "format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION}


def _json_sha256(data: Any) -> str:
    import json

    text = json.dumps(plain(data), sort_keys=True, default=str)
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
                     "rows": res.fit_rows, "runs": res.fit_runs, "bounded": record.bounded},
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
                     "runs": sorted(fitted.train_runs),
                     "bounded": dict(getattr(fitted, "bounded", None) or {}) or None},
        "evaluation": dict(record.split),
        "threshold": dict(record.threshold),
        "metrics": record.metadata_metrics(),
        "versions": library_versions(),
        "git_commit": git_commit(),
        "parts": parts_section(fitted.estimator, fitted.vectorizer, drain),
        "bundle": bundle_section(bundle, sha),
    }


__all__ = ["BUNDLE_FORMAT", "FORMAT_VERSION", "bundle_section", "git_commit", "if_metadata",
           "library_versions", "model_metadata", "parts_section", "utc_now",
           "vectorizer_sha256"]
