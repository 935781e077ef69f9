"""Reuse the detection phase's models: the rows, split, scores, thresholds and flags it wrote.

``lo2-detect`` leaves, under its metrics folder ``<metrics>``:

* ``detect_run.json``: the run's settings (label mode, window, per-service, threshold rule),
  split (``train_runs`` / ``holdout_runs``), the model keys it ran and its options;
* ``<key>_predictions.parquet`` per model: one row per row of every run with its ``split``
  (``train`` / ``calibration`` / ``holdout``), ``label``, ``score``, ``threshold`` and ``pred``;
* ``models/<key>.joblib`` + ``<key>.yml``: the fitted ``(estimator, vectorizer)``, sha256-checked;
* ``<key>.json``: the model record (threshold block, training runs).

:func:`read_detect_run` and :func:`load_saved` read them for the requested models and refuse,
with one line naming the missing file and the fix, anything that cannot be reused as is: a
missing file, a model the last detection run did not run, a ``--per-service`` run.
:func:`check_rescored` then confirms that each bundle still gives its predictions' scores on
the enhanced sequences at hand (they changed otherwise).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2 import artifacts as A
from loglead_lo2.artifacts import RUN_FILE
from loglead_lo2.detection.iforest import IF_KEY
from loglead_lo2.errors import UserError
from loglead_lo2.explain.views import FOREST_TEXT, ModelSource

log = logging.getLogger(__name__)

PREDICTION_FIELDS: tuple[str, ...] = ("seq_id", "split", "label", "score", "threshold", "pred")
SCORE_RTOL = 1e-7
SCORE_ATOL = 1e-9


def detection_key(key: str) -> str:
    """The detection phase's key of an explained model (the old name ``if`` is read as
    ``isolation_forest``: one name in every phase)."""
    return IF_KEY if key == "if" else key


@dataclass
class DetectRun:
    """``<metrics>/detect_run.json`` of the last detection run."""

    metrics_dir: Path
    data: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.metrics_dir / RUN_FILE

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.data.get("settings") or {})

    @property
    def label_mode(self) -> str:
        return str(self.settings.get("label_mode") or self.options.get("label_mode"))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.data.get("options") or {})

    @property
    def split(self) -> dict[str, Any]:
        return dict(self.data.get("split") or {})

    @property
    def models(self) -> list[str]:
        return list(self.data.get("models") or [])

    def option(self, name: str) -> Any:
        """A detection option by the explain flag's attribute name (``None`` if unknown)."""
        opts, cfg = self.options, dict(self.data.get("if_config") or {})
        thresholds = dict(opts.get("thresholds") or {})
        where: dict[str, Any] = {
            "label_mode": self.label_mode, "sample_seed": opts.get("seed"),
            "sup_holdout_fraction": opts.get("sup_holdout_fraction"),
            "sup_holdout_min_groups": opts.get("sup_holdout_min_groups"),
            "sup_holdout_shuffle": opts.get("sup_holdout_shuffle"),
            "if_contamination": cfg.get("contamination"),
            "if_n_estimators": cfg.get("n_estimators"), "if_item": cfg.get("item"),
            "if_numeric": ",".join(cfg.get("numeric") or []) or None,
            "if_holdout_fraction": cfg.get("holdout_fraction"),
            "threshold": thresholds.get("rule"), "fp_target": thresholds.get("fp_target"),
            "calibration_fraction": thresholds.get("calibration_fraction"),
            "disable_memory_guard": (None if opts.get("memory_guard") is None
                                     else not opts.get("memory_guard")),
        }
        return where.get(name)


@dataclass
class SavedModel:
    """One model of the detection run: its bundle, predictions and record."""

    key: str
    bundle: Any  # persistence.LoadedBundle
    predictions: pl.DataFrame
    predictions_path: Path
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold_block(self) -> dict[str, Any]:
        return dict(self.record.get("threshold") or
                    (self.bundle.metadata or {}).get("threshold") or {})


def fix_command(root: Path, metrics: Path, sup_models: Sequence[str], skip_if: bool) -> str:
    """The detection command that leaves every file this explanation run reuses."""
    parts = ["lo2-detect", "--root", str(root)]
    if metrics != root / "metrics":
        parts += ["--metrics-dir", str(metrics)]
    if skip_if:
        parts.append("--skip-if")
    if sup_models:
        parts += ["--models", ",".join(sup_models)]
    return " ".join(parts)


def read_detect_run(metrics: Path, fix: str) -> DetectRun:
    """``detect_run.json`` of ``metrics``; one-line errors when it is missing or unusable."""
    path = metrics / RUN_FILE
    if not path.is_file():
        raise UserError(f"{path} not found: explanations reuse the detection phase's models; "
                        f"run {fix} first, or pass --retrain.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({type(exc).__name__}); run {fix} again, or "
                        "pass --retrain.") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a detection run file; run {fix} again, or pass --retrain.")
    run = DetectRun(metrics, data)
    from loglead_lo2.detection.labels import LABEL_MODES

    if run.label_mode not in LABEL_MODES:
        raise UserError(f"{path}: names no label mode (written by an older lo2-detect); run "
                        f"{fix} again, or pass --retrain.")
    if run.settings.get("per_service"):
        raise UserError(f"{path}: detection ran --per-service (one model per service); "
                        "explanations use one model per key: run it without --per-service "
                        f"({fix}), or pass --retrain.")
    split = run.split
    if not split.get("holdout_runs") or not split.get("train_runs"):
        raise UserError(f"{path}: the detection run has no hold-out split, so there is no "
                        "held-out row to explain; load more runs and re-run lo2-detect.")
    return run


def _missing(what: Path, key: str, fix: str) -> UserError:
    if key == IF_KEY:
        return UserError(f"{what} not found (the Isolation Forest of the detection run): run "
                         f"{fix} first, pass --skip-if, or pass --retrain.")
    return UserError(f"{what} not found ({key} of the detection run): run {fix} first, or "
                     "pass --retrain.")


def load_saved(run: DetectRun, keys: Sequence[str], fix: str) -> dict[str, SavedModel]:
    """Bundle, predictions and record of every detection key in ``keys`` (in order)."""
    from loglead_lo2.detection.defaults import is_isolation_forest
    from loglead_lo2.detection.models_phase import run_bundle
    from loglead_lo2.detection.persistence import load_bundle
    from loglead_lo2.schema import read_parquet, read_parquet_schema

    mdir = run.metrics_dir
    for key in keys:  # every file first: one clear line before any slow load
        for path in (mdir / A.predictions_file(key), run_bundle(mdir, key, "all")):
            if not path.is_file():
                raise _missing(path, key, fix)
        if key not in run.models:
            raise UserError(f"{key} is not among the models of the last detection run "
                            f"({run.path} lists {', '.join(run.models) or 'none'}; its files "
                            f"are from an earlier run): run {fix} first, or pass --retrain.")
    out: dict[str, SavedModel] = {}
    for key in keys:
        bundle_path = run_bundle(mdir, key, "all")
        try:  # signature verified (or --trust-unsigned-bundle, with a warning)
            bundle = load_bundle(bundle_path, expected_key=key,
                                 model_check=is_isolation_forest if key == IF_KEY else None)
        except UserError as exc:
            raise UserError(f"{str(exc).rstrip('.')} (or run {fix} again, or pass --retrain)."
                            ) from exc
        for note in bundle.notes:
            (log.warning if "WARNING" in note else log.info)(note)
        path = mdir / A.predictions_file(key)
        schema = read_parquet_schema(path)
        lacking = [c for c in PREDICTION_FIELDS if c not in schema]
        if lacking:
            raise UserError(f"{path} lacks column(s) {', '.join(lacking)} (written by an older "
                            f"lo2-detect): run {fix} again, or pass --retrain.")
        preds = read_parquet(path, columns=list(PREDICTION_FIELDS))
        out[key] = SavedModel(key, bundle, preds, path, _record(mdir, key))
    return out


def _record(mdir: Path, key: str) -> dict[str, Any]:
    """``<key>.json`` (the forest: also ``if_metrics.json``), ``{}`` when absent."""
    names = [A.model_record(key)] + ([A.IF_METRICS_JSON] if key == IF_KEY else [])
    for name in names:
        path = mdir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                log.warning("%s: unreadable model record, ignored", path)
                continue
            if isinstance(data, dict):
                return data
    return {}


def model_sources(saved: Mapping[str, SavedModel]) -> dict[str, ModelSource]:
    """:class:`ModelSource` of each saved model, keyed as explained (``if`` = the forest)."""
    from loglead_lo2.detection.registry import REGISTRY

    out: dict[str, ModelSource] = {}
    for key, model in saved.items():
        meta, record = model.bundle.metadata or {}, model.record
        trained = {**(meta.get("training") or {}), **(record.get("training") or {})}
        thr = model.threshold_block
        threshold = model.bundle.threshold
        if threshold is None:
            threshold = float(model.predictions["threshold"][0])
        training = {"runs": sorted(trained.get("runs") or []), "rows": trained.get("rows"),
                    "selector": (meta.get("training") or {}).get("selector"),
                    "calibration_runs": list(thr.get("calibration_runs")
                                             or trained.get("threshold_runs") or [])}
        origin = {"mode": "reuse", "bundle": str(model.bundle.path),
                  "predictions": str(model.predictions_path),
                  "created_at": meta.get("created_at")}
        spec = REGISTRY.get(key) if key != IF_KEY else None
        view_key = key
        out[view_key] = ModelSource(
            key=view_key, kind=spec.kind if spec else "isolation_forest",
            description=spec.description if spec else FOREST_TEXT,
            estimator=model.bundle.model, vectorizer=model.bundle.vectorizer,
            predictions=model.predictions, threshold=float(threshold),
            threshold_source=str(thr.get("source") or "model.yml"),
            threshold_rule=str(thr.get("rule") or "n/a"), training=training, origin=origin,
            spec=spec, where=model.predictions_path)
    return out


def feature_columns(saved: Mapping[str, SavedModel]) -> list[str]:
    """Columns the loaded vectorisers read."""
    cols: list[str] = []
    for model in saved.values():
        vec = model.bundle.vectorizer
        cols += [c for c in (vec.item, *vec.numeric) if c]
    return list(dict.fromkeys(cols))


def check_rescored(model: SavedModel, hold: pl.DataFrame, scores: np.ndarray,
                   enhanced: Path) -> None:
    """The bundle must give the predictions' scores on the hold-out rows ``hold``
    (``scores`` aligned with them); otherwise the enhanced sequences (or the bundle) changed
    since detection and nothing is mixed."""
    from loglead_lo2.detection.registry import REGISTRY

    if hold.height == 0:
        return
    est, vec = model.bundle.model, model.bundle.vectorizer
    spec = REGISTRY[model.key]  # the forest too: its score adapter is -score_samples
    again = np.concatenate([spec.scores(est, vec.transform(hold.slice(off, 50_000)))
                            for off in range(0, hold.height, 50_000)])
    if not np.allclose(again, scores, rtol=SCORE_RTOL, atol=SCORE_ATOL):
        worst = float(np.max(np.abs(again - scores)))
        raise UserError(
            f"{enhanced} changed since detection: {model.bundle.path} scores its hold-out rows "
            f"differently from {model.predictions_path} (max difference {worst:.3g}); re-run "
            "lo2-detect on this file, or pass --retrain.")


def check_rows(df: pl.DataFrame, preds: pl.DataFrame, path: Path, enhanced: Path) -> None:
    """The predictions must list exactly the rows of ``df`` (one each) with its labels."""
    if df["seq_id"].n_unique() != df.height:
        raise UserError(f"{enhanced}: seq_id is not unique ({df.height - df['seq_id'].n_unique()}"
                        " duplicate(s)); rebuild it with the loader.")
    ids, theirs = df.select("seq_id"), preds.select("seq_id")
    new = ids.join(theirs, on="seq_id", how="anti").height
    gone = theirs.join(ids, on="seq_id", how="anti").height
    if new or gone or preds.height != df.height:
        raise UserError(
            f"{enhanced} changed since detection: {df.height:,} rows, {path.name} has "
            f"{preds.height:,} ({new:,} seq_id(s) not in the predictions, {gone:,} no longer "
            "in the file); re-run lo2-detect on this file, or pass --retrain.")
    both = df.select("seq_id", "anomaly").join(preds.select("seq_id", "label"), on="seq_id")
    differ = both.filter(pl.col("anomaly").cast(pl.Int8) != pl.col("label").cast(pl.Int8))
    if differ.height:
        raise UserError(
            f"{enhanced} changed since detection: {differ.height:,} row(s) are labelled "
            f"differently from {path.name} (e.g. {differ['seq_id'][0]}); re-run lo2-detect on "
            "this file, or pass --retrain.")


def ignored_line(metrics: Path, keys: Sequence[str], ignored: Sequence[tuple[str, Any, Any]]
                 ) -> str:
    """The one line saying which models were reused and which given flags were ignored
    (``(flag, given value, detection's value)``)."""
    head = f"[Reuse] reused the saved models of {metrics} ({', '.join(keys)})"
    if not ignored:
        return head + "; no training flag given (pass --retrain to train again)"
    items = []
    for flag, value, theirs in ignored:
        text = flag if value is True else f"{flag} {value}"
        if flag == "--sample-seed":
            text += " (seeds only the SHAP samples here)"
        elif theirs is not None and str(theirs) != str(value):
            text += f" (detection: {theirs})"
        items.append(text)
    return (head + f"; ignored {', '.join(items)}: they configure training, pass --retrain "
            "to apply them")


__all__ = [
    "RUN_FILE",
    "DetectRun",
    "SavedModel",
    "check_rescored",
    "check_rows",
    "detection_key",
    "feature_columns",
    "fix_command",
    "ignored_line",
    "load_saved",
    "model_sources",
    "read_detect_run",
]
