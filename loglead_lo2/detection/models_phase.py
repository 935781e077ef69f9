"""The registry-model step of a detection run: for every model and service part, fit,
threshold, score every row, evaluate on the hold-out, save predictions and bundles.

The model path itself is :mod:`.runner`; this module turns a :class:`~.runner.ModelRun` into
the model's record, its ``[Metrics]`` line, its share of ``<key>_predictions.parquet`` and,
with ``--save-sup-models``, its bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2 import artifacts
from loglead_lo2.detection import report as rep
from loglead_lo2.detection.budget import ModelSkipped
from loglead_lo2.detection.labels import ALL_SERVICES, ServicePart, service_bundle
from loglead_lo2.detection.records import ModelRecord
from loglead_lo2.detection.runner import holdout_metrics, predictions_frame, run_model
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass
class PartOutcome:
    """What one (model, part) produced: its record and its predictions rows."""

    record: ModelRecord | None  # None: the part was skipped
    predictions: pl.DataFrame
    artifacts: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: bool = False
    """The memory guard did not fit the model: ``record`` says why, there are no
    predictions and no bundle."""


def split_info(train: pl.DataFrame, hold: pl.DataFrame, split: Any) -> dict[str, Any]:
    return {
        "train_runs": sorted(split.train_runs), "holdout_runs": sorted(split.test_runs),
        "train_rows": train.height, "holdout_rows": hold.height,
        "holdout_anomalous": int(hold["anomaly"].sum()), "note": split.note or None,
    }


def sup_bundle(save_dir: Path, key: str, service: str) -> Path:
    return service_bundle(Path(save_dir) / f"{key}.joblib", service)


RUN_BUNDLES = artifacts.RUN_BUNDLES_DIR
"""Folder under the metrics directory where every run saves each fitted model:
``<metrics>/models/<key>.joblib`` + ``<key>.yml`` (per service ``<metrics>/models/<service>/``),
the bundles the explainability phase reuses."""


def run_bundle(metrics_dir: Path, key: str, service: str) -> Path:
    """``<metrics>/models[/<service>]/<key>.joblib``: this run's bundle of one model part."""
    return artifacts.run_bundle(metrics_dir, key, service)


def _detection_shap(opts: Any, fitted: Any, part: ServicePart, split: Any,
                    say: Say) -> tuple[dict[str, Any], list[Path], list[str]]:
    """SHAP top features of ``fitted`` on held-out rows (the registry's ``shap_in_detection``
    models), written beside the metrics; a SHAP failure is reported, never fatal."""
    from loglead_lo2.detection.shap import ShapSettings, explain_model, write_shap

    out_dir = opts.metrics_path if part.service == ALL_SERVICES else (
        opts.metrics_path / part.service)
    try:
        outcome = explain_model(fitted, part.hold, part.train, ShapSettings(seed=opts.seed))
        files = write_shap(outcome, out_dir, len(split.test_runs))
    except (UserError, ValueError) as exc:
        msg = f"[SHAP] {fitted.spec.key}: not computed ({exc})"
        say(msg)
        return {"error": str(exc)}, [], [msg]
    top = outcome.table.head(10)
    say(f"[SHAP] {fitted.spec.key} ({outcome.explainer}, {outcome.rows} held-out rows): top "
        + ", ".join(top["feature" if "feature" in top.columns else top.columns[0]]
                    .cast(str).to_list()[:5]))
    return ({"split": "holdout", "explainer": outcome.explainer, "rows": outcome.rows,
             "files": [f.name for f in files], "top": top.to_dicts()}, list(files), [])


def run_part(opts: Any, spec: Any, part: ServicePart, split: Any, limits: Any, say: Say,
             evaluated: Any, settings: dict[str, Any]) -> PartOutcome | None:
    """Fit one registry model on a part's training runs and evaluate it on its hold-out."""
    from loglead_lo2.detection.drain_link import load_drain_block, place_drain_state
    from loglead_lo2.detection.guards import format_resource, plan_guards, resource_stats
    from loglead_lo2.detection.persistence import model_metadata, save_bundle_pair

    train, hold, service = part.train, part.hold, part.service
    name = spec.key if service == ALL_SERVICES else f"{spec.key}@{service}"
    plan = plan_guards(spec.key, spec.make_estimator().get_params(), dict(spec.vectorizer),
                       limits, has_item=spec.item is not None)
    for line in plan.lines:
        say(line)
    which = "all" if spec.train_on == "all" else "normal only"
    say(f"[Model] {name}: fitting on the {spec.kind} training rows ({which}; {spec.features})")
    try:
        mrun = run_model(spec, part.rows, train, sorted(split.test_runs), opts.thresholds,
                         guards=plan.as_mapping(), seed=opts.seed, batch_size=opts.batch_size,
                         memory_guard=opts.memory_guard)
    except ModelSkipped as exc:
        msg = f"[Resource] {name}: skipped ({exc})"
        say(msg)
        record = ModelRecord.skipped_by_guard(
            spec.key, kind=spec.kind, description=spec.description, reason=str(exc),
            split=split_info(train, hold, split), settings=settings, service=service)
        return PartOutcome(record, pl.DataFrame(), notes=[msg], skipped=True)
    except UserError as exc:
        if service == ALL_SERVICES:
            raise
        msg = f"[Model] {name}: skipped ({exc})"
        say(msg)
        return PartOutcome(None, pl.DataFrame(), notes=[msg])
    fitted, thr = mrun.fitted, mrun.threshold
    stats = fitted.resource or resource_stats(fitted.estimator, fitted.vectorizer,
                                              fitted.fit_seconds)
    say(format_resource(name, stats) + (f"; {fitted.bounded_text}"
                                        if fitted.bounded_text else ""))
    say(f"[Threshold] {name}: {thr.value:.6g} ({thr.source})"
        + ("; " + "; ".join(thr.notes) if thr.notes else ""))
    metrics = holdout_metrics(mrun, part.rows, k=opts.precision_at, alpha=opts.fp_alpha)
    psi = None
    if opts.report_psi:
        from loglead_lo2.metrics_utils import population_stability_index

        psi = population_stability_index(mrun.scores[~mrun.holdout], mrun.scores[mrun.holdout])
    record = ModelRecord.holdout(
        spec.key, kind=spec.kind, description=spec.description, metrics=metrics,
        split=split_info(train, hold, split), threshold=thr.as_dict(),
        timing={"fit_seconds": round(fitted.fit_seconds, 4),
                "score_seconds": round(mrun.score_seconds, 4)},
        features={"item": fitted.vectorizer.item, "numeric": list(fitted.vectorizer.numeric),
                  "vocabulary": len(fitted.vectorizer.vocabulary_),
                  "settings": spec.features},
        k=opts.precision_at, alpha=opts.fp_alpha, psi=psi, resource=stats, guards=plan.lines,
        settings=settings, service=service,
        training={"rows": fitted.train_rows, "runs": sorted(fitted.train_runs),
                  "calibration_runs": list(thr.calibration_runs),
                  "services": sorted(train["service"].unique().to_list()),
                  "bounded": dict(fitted.bounded) or None},
        bounded=fitted.bounded_text or None,
    ).with_evaluation(evaluated(spec.key, service, hold, mrun.scores[mrun.holdout], thr.value))
    say(rep.metric_line(spec.key, metrics, settings,
                        None if service == ALL_SERVICES else service))
    files: list[Path] = []
    notes: list[str] = []
    if spec.shap_in_detection:
        shap, files, notes = _detection_shap(opts, fitted, part, split, say)
        record = record.with_shap(shap)
    out = PartOutcome(record, predictions_frame(
        spec.key, mrun.scores, mrun.split, thr.value, part.rows, evaluated.row_truth(part.rows)),
        artifacts=files, notes=notes)
    targets = [(run_bundle(opts.metrics_path, spec.key, service), True)]
    if opts.save_sup_models:
        targets.append((sup_bundle(opts.save_sup_models, spec.key, service),
                        opts.overwrite_model))
    drain = load_drain_block(opts.root)
    for bundle, overwrite in targets:
        pair = save_bundle_pair(
            bundle, fitted.estimator, fitted.vectorizer,
            lambda path, sha: model_metadata(spec, fitted, record, path, sha, drain),
            overwrite=overwrite)
        state = place_drain_state(bundle, fitted.vectorizer, opts.root, drain)
        out.artifacts += [bundle, pair.metadata, *([state] if state else [])]
    if opts.save_sup_models:
        say(f"[Model] wrote {targets[-1][0]} + {targets[-1][0].with_suffix('.yml').name}")
    return out


__all__ = ["RUN_BUNDLES", "PartOutcome", "run_bundle", "run_part", "split_info",
           "sup_bundle"]
