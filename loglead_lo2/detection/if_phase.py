"""The Isolation Forest step of a detection run: for every service part, fit (or load) the
registry's ``isolation_forest`` entry configured by the ``--if-*`` flags, threshold it, score
every row, evaluate on the hold-out and save its predictions and bundles.

Fitting, thresholding and scoring are the one model path (:func:`.runner.run_model`); this
module only adds what the forest step has of its own: the ``--if-*`` configuration, loading
a saved bundle (``--load-model``), ``lo2_if_predictions.parquet`` (``score_if``, ``rank_if``,
``pred_if_threshold``), ``if_metrics.*`` and ``model.yml``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2 import artifacts as A
from loglead_lo2.artifacts import IF_METADATA, IF_PREDICTIONS_FILE
from loglead_lo2.detection.defaults import is_isolation_forest
from loglead_lo2.detection.iforest import (
    IF_KEY,
    IFConfig,
    forest_spec,
    forest_thresholds,
    predictions_frame,
    result_of,
    write_predictions,
)
from loglead_lo2.detection.records import ModelRecord, combined, macro
from loglead_lo2.detection.runner import SPLIT_CALIBRATION, SPLIT_TRAIN, holdout_metrics, run_model
from loglead_lo2.detection.runner import predictions_frame as common_predictions

log = logging.getLogger(__name__)


def load_if_bundle(opts: Any, path: Any = None) -> Any:
    """Load ``path`` (default ``opts.load_model``) with every check (sha256, tuple,
    item/numeric, estimator)."""
    from loglead_lo2.detection.persistence import load_bundle

    config: IFConfig = opts.if_config
    return load_bundle(
        path if path is not None else opts.load_model,
        expected_item=config.item if opts.if_item_explicit else None,
        expected_numeric=config.numeric if opts.if_numeric else None,
        expected_key=IF_KEY, model_check=is_isolation_forest,
    )


def load_service_bundles(opts: Any, parts: Any, columns: Any, say: Any) -> dict[str, Any]:
    """``--load-model`` bundles by service (per service: ``<dir>/<service>/<name>``), loaded
    and checked before anything is written."""
    from pathlib import Path

    from loglead_lo2.artifacts import LOAD_INFO_FILE
    from loglead_lo2.detection.drain_link import check_lineage, load_drain_block
    from loglead_lo2.detection.labels import service_bundle
    from loglead_lo2.errors import UserError

    loaded: dict[str, Any] = {}
    for part in parts:
        if part.skip:
            continue
        path = service_bundle(Path(opts.load_model), part.service)  # type: ignore[arg-type]
        if opts.per_service and not path.is_file():
            raise UserError(
                f"--per-service --load-model {opts.load_model}: no bundle for service "
                f"'{part.service}' at {path} (per-service bundles live in "
                f"<dir>/<service>/<name>; save them with --per-service --save-model "
                f"{opts.load_model}).")
        bundle = load_if_bundle(opts, path)
        missing = [c for c in (bundle.vectorizer.item, *bundle.vectorizer.numeric)
                   if c and c not in columns]
        if missing:
            raise UserError(f"{path} uses column(s) {', '.join(missing)} that "
                            f"{opts.root / 'lo2_sequences_enhanced.parquet'} lacks.")
        check_lineage(bundle.metadata, load_drain_block(opts.root), path,
                      str(opts.root / LOAD_INFO_FILE))
        meta = bundle.metadata or {}
        if meta.get("service") not in (None, part.service):
            say(f"[IF] WARNING: {path} was trained on service '{meta['service']}' rows, "
                f"used here for '{part.service}'")
        mode = (meta.get("settings") or {}).get("label_mode")
        if mode and mode != opts.label_mode:
            say(f"[IF] note: {path} was saved in label mode {mode}; this run uses "
                f"{opts.label_mode}")
        loaded[part.service] = bundle
    return loaded


def legacy_split(split: np.ndarray, normal: np.ndarray) -> pl.Series:
    """The ``split`` column of ``lo2_if_predictions.parquet`` from the runner's: its
    calibration rows are ``threshold`` where normal (the rows the threshold was set on) and
    ``train`` otherwise; ``holdout`` and ``train`` stay."""
    out = np.where(split == SPLIT_CALIBRATION, np.where(normal, "threshold", SPLIT_TRAIN), split)
    return pl.Series("split", out, dtype=pl.String)


def fitted_from_bundle(opts: Any, loaded: Any) -> Any:
    """A :class:`~.evaluate.FittedModel` of a loaded forest bundle (``--load-model``): its
    training rows and runs from its metadata; its threshold the one in ``model.yml``, else the
    forest's own contamination cut-off. Detection and ``lo2-explain --retrain --load-model``
    both score a loaded forest through this and :func:`~.runner.run_model`."""
    from loglead_lo2.detection.evaluate import FittedModel

    meta = loaded.metadata or {}
    training = meta.get("training") or {}
    spec = forest_spec(opts.if_config)
    if loaded.threshold is not None:
        value = float(loaded.threshold)
        source = f"model.yml of {loaded.path} ({(meta.get('threshold') or {}).get('source')})"
    else:
        value = float(spec.default_threshold(loaded.model))
        source = "contamination cut-off of the loaded forest (no threshold in model.yml)"
    return FittedModel(key=IF_KEY, spec=spec, estimator=loaded.model,
                       vectorizer=loaded.vectorizer, fit_seconds=0.0,
                       train_rows=int(training.get("rows") or 0),
                       train_runs=sorted(training.get("runs") or []),
                       threshold=value, threshold_source=source)


def loaded_lines(fitted: Any, loaded: Any, test_runs: Sequence[str]) -> tuple[str, str | None]:
    """What to say about a loaded forest: one ``[IF] loaded ...`` line, and a warning when
    it was trained on hold-out runs (its hold-out figures are then optimistic)."""
    vec = loaded.vectorizer
    said = (f"[IF] loaded {loaded.path} (item {vec.item}, numeric "
            f"{','.join(vec.numeric) or '(none)'}); training skipped; threshold "
            f"{fitted.threshold:.6g} ({fitted.threshold_source})")
    overlap = sorted(set(fitted.train_runs) & set(test_runs))
    warn = (f"[IF] WARNING: the loaded forest was trained on hold-out run(s) "
            f"{', '.join(overlap)}: its hold-out figures and explanations are optimistic"
            if overlap else None)
    return said, warn


def _loaded_model(opts: Any, loaded: Any, split: Any, say: Any) -> Any:
    for note in loaded.notes:
        say(note)
    fitted = fitted_from_bundle(opts, loaded)
    said, warn = loaded_lines(fitted, loaded, sorted(split.test_runs) if split else [])
    say(said)
    if warn:
        say(warn)
    return fitted


def _settings(opts: Any, loaded: bool) -> Any:
    """The forest's threshold settings: ``--if-threshold-percentile`` wins; a loaded bundle
    keeps its ``model.yml`` threshold; otherwise the run's ``--threshold`` rule."""
    config: IFConfig = opts.if_config
    rule = "model" if loaded else opts.thresholds.rule
    return forest_thresholds(config, rule, opts.thresholds.fp_target)


def run_if_phase(opts: Any, parts: Sequence[Any], split: Any, limits: Any, say: Any,
                 result: Any, evaluated: Any, settings: Mapping[str, Any],
                 loaded: Mapping[str, Any] | None = None) -> list[ModelRecord]:
    """Train (or load), score, threshold, evaluate and save the Isolation Forest of every part.

    ``parts`` are :class:`~loglead_lo2.detection.labels.ServicePart` (one ``all`` part, or one
    per service with ``--per-service``; parts with ``skip`` set are left out). Every part's
    rows are scored by its own forest; one predictions file holds them all (``rank_if`` is
    ranked within the part). ``evaluated(key, service, hold, scores, threshold)`` is called
    with each part's held-out rows before its record is written; it collects per-case recall
    and returns what the record gets (a :class:`~.records.HoldoutEvaluation`: ground truth,
    the 1 % FP cut). ``loaded`` maps a service to a loaded bundle
    (``--load-model``). Returns the part records.
    """
    from functools import partial
    from pathlib import Path

    from loglead_lo2.detection import report as rep
    from loglead_lo2.detection.drain_link import load_drain_block, place_drain_state
    from loglead_lo2.detection.guards import format_resource, plan_guards, resource_stats
    from loglead_lo2.detection.iforest import make_forest
    from loglead_lo2.detection.labels import ALL_SERVICES, service_bundle
    from loglead_lo2.detection.persistence import if_metadata, save_bundle_pair

    config: IFConfig = opts.if_config
    holdout_runs = sorted(split.test_runs) if split is not None else []
    preds_parts: list[pl.DataFrame] = []
    common_parts: list[pl.DataFrame] = []
    records: list[ModelRecord] = []
    percentile_used = False
    for part in parts:
        if part.skip:
            continue
        service = part.service
        where = "" if service == ALL_SERVICES else f"service {service}: "
        bundle_from = (loaded or {}).get(service)
        prefitted = _loaded_model(opts, bundle_from, split, say) if bundle_from else None
        guard_lines: tuple[str, ...] = ()
        guards = None
        if prefitted is None:
            plan = plan_guards(IF_KEY, make_forest(config).get_params(),
                               dict(config.vectorizer), limits, has_item=config.item is not None,
                               isolation_forest=True)
            guard_lines, guards = plan.lines, plan.as_mapping()
            for line in plan.lines:
                say(line)
            say(f"[IF] {where}training on the normal rows of the training runs: item "
                f"{config.item}, numeric {','.join(config.numeric) or '(none)'}")
        mrun = run_model(forest_spec(config), part.rows, part.train, holdout_runs,
                         _settings(opts, prefitted is not None), guards=guards,
                         seed=config.seed, batch_size=config.batch_size, fitted=prefitted,
                         memory_guard=opts.memory_guard)
        res = result_of(mrun, config)
        rule = mrun.threshold.rule
        if bundle_from is not None and config.threshold_percentile is None and \
                bundle_from.threshold is not None:
            rule = "loaded"  # the calibrated threshold recorded in model.yml
        if prefitted is None:
            if mrun.calibration.calibration_runs:
                res.notes.insert(0, f"[IF] {mrun.calibration.note}")
            for note in res.notes:
                say(note)
            say(format_resource(IF_KEY, resource_stats(res.model, res.vectorizer,
                                                       res.fit_seconds)))
        scores, score_seconds = mrun.scores, mrun.score_seconds
        say(f"[IF] {where}scored {part.rows.height:,} sequences; threshold "
            f"{res.threshold:.6f}: {res.threshold_source}")
        labels = legacy_split(mrun.split, part.rows["normal"].to_numpy())
        calibrated = rule in ("percentile", "fp-target", "loaded")
        percentile_used = percentile_used or calibrated
        preds_parts.append(predictions_frame(
            part.rows, scores, res.threshold if calibrated else None, labels))
        common_parts.append(common_predictions(
            IF_KEY, scores, mrun.split, res.threshold, part.rows,
            evaluated.row_truth(part.rows)))
        mask = mrun.holdout
        metrics = psi = None
        split_info: dict[str, Any] = {"name": rep.HOLDOUT}
        if split is not None and mask.any():
            metrics = holdout_metrics(mrun, part.rows, k=opts.precision_at, alpha=opts.fp_alpha)
            if opts.report_psi:
                from loglead_lo2.metrics_utils import population_stability_index

                psi = population_stability_index(scores[~mask], scores[mask])
            split_info.update(train_runs=sorted(split.train_runs), holdout_runs=holdout_runs,
                              train_rows=part.train.height, holdout_rows=int(mask.sum()))
        record = ModelRecord.holdout(
            IF_KEY, kind="unsupervised",
            description="Isolation Forest trained on normal sequences of the training runs",
            metrics=metrics, split=split_info,
            threshold={"value": res.threshold, "percentile": res.percentile,
                       "source": res.threshold_source, "rule": rule,
                       "fp_target": opts.thresholds.fp_target if rule == "fp-target" else None,
                       "decision": "score_if >= threshold",
                       "split": "train" if rule != "loaded" else None},
            timing={"fit_seconds": round(res.fit_seconds, 4),
                    "score_seconds": round(score_seconds, 4)},
            features={"item": res.vectorizer.item, "numeric": list(res.vectorizer.numeric),
                      "vocabulary": len(res.vectorizer.vocabulary_)},
            k=opts.precision_at, alpha=opts.fp_alpha, psi=psi,
            guards=guard_lines, notes=res.notes, settings=settings, service=service,
            training={"rows": res.fit_rows, "runs": res.fit_runs,
                      "threshold_rows": res.threshold_rows, "threshold_runs": res.threshold_runs,
                      "loaded_from": str(bundle_from.path) if bundle_from else None},
            bounded=mrun.fitted.bounded_text or None,
        )
        if metrics is not None:
            record = record.with_evaluation(evaluated(
                IF_KEY, service, part.rows.filter(pl.Series(mask)), scores[mask], res.threshold))
        say(rep.metric_line(IF_KEY, metrics, settings,
                            None if service == ALL_SERVICES else service))
        records.append(record)
        from loglead_lo2.detection.models_phase import run_bundle

        own = run_bundle(opts.metrics_path, IF_KEY, service)
        drain = load_drain_block(opts.root)
        describe = partial(if_metadata, res, record, config, drain=drain)  # (path, sha)
        own_pair = save_bundle_pair(own, res.model, res.vectorizer, describe, overwrite=True)
        state = place_drain_state(own, res.vectorizer, opts.root, drain)
        result.artifacts += [own, own_pair.metadata, *([state] if state else [])]
        if opts.save_model:  # model.yml is always written: it carries the signature
            bundle = service_bundle(Path(opts.save_model), service)
            pair = save_bundle_pair(bundle, res.model, res.vectorizer, describe,
                                    metadata_name=IF_METADATA, overwrite=opts.overwrite_model)
            state = place_drain_state(bundle, res.vectorizer, opts.root, drain)
            result.artifacts += [bundle, pair.metadata, *([state] if state else [])]
            say(f"[Model] wrote {bundle} + {pair.metadata.name} (sha256 {pair.sha256[:12]}..., "
                f"signed with key id {pair.key_id}): model, vectorizer = joblib.load(...)")
    if not preds_parts:
        say("[IF] no service could be evaluated: no predictions written")
        return records
    from loglead_lo2.schema import write_parquet

    common = opts.metrics_path / A.predictions_file(IF_KEY)
    write_parquet(pl.concat(common_parts, how="diagonal_relaxed"), common)
    result.artifacts.append(common)
    preds = pl.concat(preds_parts, how="diagonal_relaxed")
    out = Path(opts.save_if) if opts.save_if else Path(opts.root) / IF_PREDICTIONS_FILE
    fmt = write_predictions(preds, out)
    result.artifacts.append(out)
    say(f"[IF] wrote {out} ({fmt}, {preds.height:,} rows: score_if, rank_if"
        + (", pred_if_threshold)" if percentile_used else ")")
        + (" from each service's own forest, rank_if within the service"
           if len(preds_parts) > 1 or parts[0].service != ALL_SERVICES else ""))
    if len(records) == 1 and records[0].service == ALL_SERVICES:
        top = records[0]
        result.artifacts += rep.write_if_metrics(opts.metrics_path, top)
    else:
        skipped = {p.service: p.skip for p in parts if p.skip}
        top = combined(IF_KEY, records, skipped)
        result.artifacts += rep.write_if_metrics(opts.metrics_path, top,
                                                 [*records, macro(IF_KEY, records)])
    result.records[IF_KEY] = top
    result.artifacts.append(rep.write_json(opts.metrics_path / f"{IF_KEY}.json", top.to_dict()))
    return records
