"""The Isolation Forest step of a detection run: fit (or load) per service part, calibrate,
score every sequence with its own service's forest, evaluate on the hold-out, save bundles.

The model itself (config, training, scoring, threshold rule) is :mod:`.iforest`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from loglead_lo2.detection.iforest import (
    IF_KEY,
    IFConfig,
    IFResult,
    calibrate_threshold,
    is_isolation_forest,
    make_forest,
    predictions_frame,
    score_iforest,
    split_labels,
    train_iforest,
    write_predictions,
)
from loglead_lo2.detection.labels import ROW_GROUP
from loglead_lo2.detection.runner import predictions_frame as common_predictions
from loglead_lo2.errors import UserError

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


def _loaded_result(opts: Any, loaded: Any, train: pl.DataFrame, split: Any,
                   say: Any) -> IFResult:
    from loglead_lo2.detection.split import normal_holdout_split

    config: IFConfig = opts.if_config
    for note in loaded.notes:
        say(note)
    meta = loaded.metadata or {}
    trained_on = set((meta.get("training") or {}).get("runs") or [])
    res = IFResult(model=loaded.model, vectorizer=loaded.vectorizer,
                   threshold=float(-loaded.model.offset_),
                   threshold_source="contamination of the loaded model (its training scores)",
                   percentile=None, fit_runs=sorted(trained_on), threshold_runs=[],
                   fit_rows=int((meta.get("training") or {}).get("rows") or 0),
                   threshold_rows=0)
    say(f"[IF] loaded {loaded.path}: item {loaded.vectorizer.item}, numeric "
        f"{','.join(loaded.vectorizer.numeric) or '(none)'}; training skipped")
    if split is not None and trained_on & set(split.test_runs):
        say("[IF] WARNING: the loaded model was trained on hold-out run(s) "
            f"{', '.join(sorted(trained_on & set(split.test_runs)))}: hold-out metrics are "
            "optimistic")
    if config.threshold_percentile is not None:
        normal = train.filter(pl.col("normal"))
        try:
            thr = normal_holdout_split(normal, config.holdout_fraction or 0.2, config.seed)
            thr_df = normal.filter(pl.col("run").is_in(thr.test_runs))
        except UserError:
            thr_df = normal.clear()
        res.threshold_runs = sorted(thr_df["run"].unique().to_list())
        res.threshold_rows = thr_df.height
        calibrate_threshold(res, thr_df if thr_df.height else normal, config,
                            from_holdout=thr_df.height > 0)
    elif loaded.threshold is not None:
        res.threshold = loaded.threshold
        res.percentile = (meta.get("threshold") or {}).get("percentile")
        res.threshold_source = f"model.yml ({(meta.get('threshold') or {}).get('source')})"
    return res




def _fp_target_threshold(opts: Any, res: IFResult, rows: pl.DataFrame, scores: Any,
                         labels: pl.Series, loaded: bool) -> str:
    """Apply the run's threshold rule to a forest (in place); returns the rule used.

    An explicit ``--if-threshold-percentile`` (already applied) and a loaded bundle's
    ``model.yml`` threshold are kept; ``--threshold model`` keeps the contamination cut-off;
    otherwise (``fp-target``) the threshold flags at most ``--fp-target`` of the normal rows
    of the forest's calibration runs (``--if-holdout-fraction`` of the normal training runs,
    which the forest is not fitted on), or of its own training rows when none was held out.
    """
    from loglead_lo2.detection.thresholds import fp_target_threshold

    if res.percentile is not None:
        return "percentile"
    if loaded:
        return "loaded"
    settings = opts.thresholds
    if settings.rule == "model":
        return "model"
    normal = rows["normal"].to_numpy()
    lab = labels.to_numpy()
    mask = (lab == "threshold") & normal
    where = f"{int(mask.sum()):,} normal rows of {len(res.threshold_runs)} calibration run(s)"
    if not mask.any():
        mask = (lab == "train") & normal & rows["run"].is_in(res.fit_runs).to_numpy()
        where = f"{int(mask.sum()):,} training normal rows (in-sample: optimistic)"
        res.notes.append("[IF] no normal run held out for the threshold: fp-target set on "
                         "the training rows, the false-positive rate will be optimistic")
    res.threshold = fp_target_threshold(scores[mask], settings.fp_target)
    res.threshold_source = f"fp-target {settings.fp_target:g} on {where}"
    return "fp-target"


def _fit_or_load(opts: Any, train: pl.DataFrame, split: Any, limits: Any, say: Any,
                 loaded: Any, where: str) -> tuple[IFResult, tuple[str, ...], dict[str, Any]]:
    """The forest of one part (``where`` names it in messages): loaded or trained."""
    from dataclasses import replace

    from loglead_lo2.detection.guards import format_resource, plan_guards, resource_stats

    config: IFConfig = opts.if_config
    if loaded is not None:
        return _loaded_result(opts, loaded, train, split, say), (), {}
    plan = plan_guards(IF_KEY, make_forest(config).get_params(), dict(config.vectorizer),
                       limits, has_item=config.item is not None, isolation_forest=True)
    for line in plan.lines:
        say(line)
    config = replace(config, vectorizer={**dict(config.vectorizer), **plan.vectorizer})
    say(f"[IF] {where}training on {int(train['normal'].sum()):,} normal sequences of "
        f"{train['run'].n_unique()} training run(s): item {config.item}, numeric "
        f"{','.join(config.numeric) or '(none)'}")
    res = train_iforest(train, config, overrides=plan.params)
    for note in res.notes:
        say(note)
    stats = resource_stats(res.model, res.vectorizer, res.fit_seconds)
    say(format_resource(IF_KEY, stats))
    return res, plan.lines, stats


def run_if_phase(opts: Any, parts: Sequence[Any], split: Any, limits: Any, say: Any,
                 result: Any, evaluated: Any, settings: Mapping[str, Any],
                 loaded: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train (or load), score, threshold, evaluate and save the Isolation Forest of every part.

    ``parts`` are :class:`~loglead_lo2.detection.labels.ServicePart` (one ``all`` part, or one
    per service with ``--per-service``; parts with ``skip`` set are left out). Every part's
    rows are scored by its own forest; one predictions file holds them all (``rank_if`` is
    ranked within the part). ``evaluated(key, service, hold, scores, threshold, record)`` is
    called with each part's held-out rows before its record is written (the pipeline adds
    ground truth and per-case recall). ``loaded`` maps a service to a loaded bundle
    (``--load-model``). Returns the part records.
    """
    from pathlib import Path

    from loglead_lo2.detection import report as rep
    from loglead_lo2.detection.labels import ALL_SERVICES, service_bundle
    from loglead_lo2.detection.persistence import if_metadata, save_bundle, write_metadata

    config: IFConfig = opts.if_config
    holdout_runs = sorted(split.test_runs) if split is not None else []
    preds_parts: list[pl.DataFrame] = []
    common_parts: list[pl.DataFrame] = []
    records: list[dict[str, Any]] = []
    percentile_used = False
    for part in parts:
        if part.skip:
            continue
        service = part.service
        where = "" if service == ALL_SERVICES else f"service {service}: "
        res, guard_lines, _stats = _fit_or_load(opts, part.train, split, limits, say,
                                                (loaded or {}).get(service), where)
        t = time.perf_counter()
        n_batches = max(1, -(-part.rows.height // config.batch_size))
        say(f"[IF] {where}scoring {part.rows.height:,} sequences in {n_batches} batch(es)")
        scores = score_iforest(res.model, res.vectorizer, part.rows, config.batch_size)
        score_seconds = time.perf_counter() - t
        labels = split_labels(part.rows, holdout_runs, res.threshold_runs)
        rule = _fp_target_threshold(opts, res, part.rows, scores, labels,
                                    (loaded or {}).get(service) is not None)
        say(f"[IF] {where}threshold {res.threshold:.6f}: {res.threshold_source}")
        calibrated = res.percentile is not None or rule == "fp-target"
        percentile_used = percentile_used or calibrated
        preds_parts.append(predictions_frame(
            part.rows, scores, res.threshold if calibrated else None, labels))
        common_parts.append(common_predictions(
            IF_KEY, scores, labels.replace("threshold", "calibration").to_numpy(),
            res.threshold, part.rows, evaluated.row_truth(part.rows)))
        mask = (labels == "holdout").to_numpy()
        metrics = psi = None
        split_info: dict[str, Any] = {"name": rep.HOLDOUT}
        if split is not None and mask.any():
            from loglead_lo2.detection.evaluate import evaluate

            y = part.rows["anomaly"].cast(pl.Int8).to_numpy()
            groups = part.rows[ROW_GROUP].to_numpy()[mask] if ROW_GROUP in part.rows.columns \
                else None
            metrics = evaluate(y[mask], scores[mask], threshold=res.threshold,
                               k=opts.precision_at, alpha=opts.fp_alpha, groups=groups)
            if opts.report_psi:
                from loglead_lo2.metrics_utils import population_stability_index

                psi = population_stability_index(scores[~mask], scores[mask])
            split_info.update(train_runs=sorted(split.train_runs), holdout_runs=holdout_runs,
                              train_rows=part.train.height, holdout_rows=int(mask.sum()))
        record = rep.model_record(
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
        )
        bundle_from = (loaded or {}).get(service)
        record["training"] = {"rows": res.fit_rows, "runs": res.fit_runs,
                              "threshold_rows": res.threshold_rows,
                              "threshold_runs": res.threshold_runs,
                              "loaded_from": str(bundle_from.path) if bundle_from else None}
        if metrics is not None:
            evaluated(IF_KEY, service, part.rows.filter(pl.Series(mask)), scores[mask],
                      res.threshold, record)
        say(rep.metric_line(IF_KEY, metrics, settings,
                            None if service == ALL_SERVICES else service))
        records.append(record)
        from loglead_lo2.detection.models_phase import run_bundle

        own = run_bundle(opts.metrics_path, IF_KEY, service)
        own_sha = save_bundle(own, res.model, res.vectorizer, overwrite=True)
        own_meta = write_metadata(own.with_suffix(".yml"),
                                  if_metadata(res, record, config, own, own_sha))
        result.artifacts += [own, own_meta]
        if opts.save_model:
            bundle = service_bundle(Path(opts.save_model), service)
            sha = save_bundle(bundle, res.model, res.vectorizer, overwrite=opts.overwrite_model)
            result.artifacts.append(bundle)
            say(f"[Model] wrote {bundle} (sha256 {sha[:12]}...): model, vectorizer = "
                "joblib.load(...)")
            if opts.dump_metadata:
                meta_path = bundle.parent / "model.yml"
                write_metadata(meta_path, if_metadata(res, record, config, bundle, sha))
                result.artifacts.append(meta_path)
                say(f"[Model] wrote {meta_path}")
    if not preds_parts:
        say("[IF] no service could be evaluated: no predictions written")
        return records
    from loglead_lo2.schema import write_parquet

    common = opts.metrics_path / f"{IF_KEY}_predictions.parquet"
    write_parquet(pl.concat(common_parts, how="diagonal_relaxed"), common)
    result.artifacts.append(common)
    preds = pl.concat(preds_parts, how="diagonal_relaxed")
    out = Path(opts.save_if) if opts.save_if else Path(opts.root) / "lo2_if_predictions.parquet"
    fmt = write_predictions(preds, out)
    result.artifacts.append(out)
    say(f"[IF] wrote {out} ({fmt}, {preds.height:,} rows: score_if, rank_if"
        + (", pred_if_threshold)" if percentile_used else ")")
        + (" from each service's own forest, rank_if within the service"
           if len(preds_parts) > 1 or parts[0].service != ALL_SERVICES else ""))
    if len(records) == 1 and records[0]["service"] == ALL_SERVICES:
        top = records[0]
        result.artifacts += rep.write_if_metrics(opts.metrics_path, top)
    else:
        skipped = {p.service: p.skip for p in parts if p.skip}
        top = rep.combined_record(IF_KEY, records, skipped)
        result.artifacts += rep.write_if_metrics(opts.metrics_path, top,
                                                 [*records, rep.macro_record(IF_KEY, records)])
    result.records[IF_KEY] = top
    return records
