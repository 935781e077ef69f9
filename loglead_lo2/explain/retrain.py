"""``--retrain``: fit the models again, through the detection phase's own model path.

Nothing here fits, thresholds or scores by itself. Every model, the Isolation Forest
included, goes through :func:`loglead_lo2.detection.runner.run_model` exactly as a detection
run calls it: registry models with :class:`~loglead_lo2.detection.thresholds.ThresholdSettings`
(``--threshold`` / ``--fp-target`` / ``--calibration-fraction``), the forest as the registry
entry the ``--if-*`` flags configure (:func:`~loglead_lo2.detection.iforest.forest_spec`) with
:func:`~loglead_lo2.detection.iforest.forest_thresholds` (calibration runs:
``--if-holdout-fraction``), after the same memory guards. Given the same rows, split, seed and
settings, the scores and thresholds are therefore the detection phase's. ``--load-model``
scores a saved forest instead of training one (its ``model.yml`` threshold, else the forest's
own cut-off). The result of each model is the frame
:func:`~loglead_lo2.detection.runner.predictions_frame` writes for detection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2.detection import iforest as ifo
from loglead_lo2.explain.views import FOREST_TEXT, ModelSource

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def _source(key: str, spec: Any, run: Any, rows: pl.DataFrame, kind: str,
            description: str, selector: str, origin: dict[str, Any]) -> ModelSource:
    from loglead_lo2.detection.runner import predictions_frame

    fitted, thr = run.fitted, run.threshold
    preds = predictions_frame(key, run.scores, run.split,
                              thr.value, rows)
    training = {"runs": sorted(fitted.train_runs), "rows": fitted.train_rows,
                "selector": selector, "calibration_runs": list(thr.calibration_runs)}
    if spec is not None:
        training["features"] = spec.features
    return ModelSource(
        key=key, kind=kind, description=description, estimator=fitted.estimator,
        vectorizer=fitted.vectorizer, predictions=preds, threshold=float(thr.value),
        threshold_source=thr.source, threshold_rule=thr.rule, training=training,
        origin={"mode": "retrain", **origin}, spec=spec,
        fitted=fitted if spec is not None else None)


def _guards(key: str, params: dict[str, Any], vectorizer: dict[str, Any], limits: Any,
            say: Say, warnings: list[str], **kwargs: Any) -> dict[str, Any]:
    from loglead_lo2.detection.guards import plan_guards

    plan = plan_guards(key, params, vectorizer, limits, **kwargs)
    for line in plan.lines:
        say(line)
        warnings.append(line)
    return plan.as_mapping()


def registry_model(key: str, opts: Any, rows: pl.DataFrame, train: pl.DataFrame,
                   test_runs: list[str], limits: Any, say: Say,
                   warnings: list[str]) -> ModelSource:
    """One registry model, fitted, thresholded and scored as ``lo2-detect`` does."""
    from loglead_lo2.detection.registry import REGISTRY
    from loglead_lo2.detection.runner import run_model

    spec = REGISTRY[key]
    guards = _guards(key, spec.make_estimator().get_params(), dict(spec.vectorizer), limits,
                     say, warnings, has_item=spec.item is not None)
    which = "all" if spec.train_on == "all" else "normal only"
    say(f"[Model] {key}: fitting on the training runs ({which}; {spec.features})")
    run = run_model(spec, rows, train, test_runs, opts.thresholds, guards=guards,
                    seed=opts.seed)
    say(f"[Model] {key}: fitted in {run.fitted.fit_seconds:.1f}s on {run.fitted.train_rows:,} "
        f"rows, {len(run.fitted.vectorizer.feature_names_):,} features; threshold "
        f"{run.threshold.value:.6g} ({run.threshold.source})")
    warnings.extend(f"[Threshold] {key}: {n}" for n in run.threshold.notes)
    selector = "normal rows" if spec.train_on == "normal" else "all rows"
    return _source(key, spec, run, rows, spec.kind, spec.description, selector,
                   {"path": "loglead_lo2.detection.runner.run_model"})


def forest(opts: Any, rows: pl.DataFrame, train: pl.DataFrame, test_runs: list[str],
           limits: Any, say: Say, warnings: list[str]) -> ModelSource:
    """The Isolation Forest, trained as the forest step of ``lo2-detect`` trains it."""
    from loglead_lo2.detection.runner import run_model

    cfg: ifo.IFConfig = opts.if_config
    guards = _guards(ifo.IF_KEY, ifo.make_forest(cfg).get_params(), dict(cfg.vectorizer),
                     limits, say, warnings, has_item=cfg.item is not None,
                     isolation_forest=True)
    say(f"[IF] training on the normal rows of the training runs (item {cfg.item}, numeric "
        f"{','.join(cfg.numeric) or '(none)'}, contamination {cfg.contamination}, "
        f"{cfg.n_estimators} trees)")
    settings = ifo.forest_thresholds(cfg, opts.thresholds.rule, opts.thresholds.fp_target)
    t = time.perf_counter()
    run = run_model(ifo.forest_spec(cfg), rows, train, test_runs, settings, guards=guards,
                    seed=cfg.seed, batch_size=cfg.batch_size)
    if run.calibration.calibration_runs:
        say(f"[IF] {run.calibration.note}")
    warnings.extend(f"[IF] {n}" for n in run.threshold.notes)
    say(f"[IF] trained and scored {rows.height:,} sequences in {time.perf_counter() - t:.1f}s;"
        f" threshold {run.threshold.value:.6f} ({run.threshold.source})")
    return _source(ifo.IF_KEY, None, run, rows, "isolation_forest", FOREST_TEXT,
                   "normal sequences of the training runs",
                   {"path": "loglead_lo2.detection.runner.run_model (forest_spec)"})


def loaded_forest(opts: Any, bundle: Any, rows: pl.DataFrame, train: pl.DataFrame,
                  test_runs: list[str], say: Say, warnings: list[str]) -> ModelSource:
    """``--retrain --load-model PATH``: the saved forest scores every row; its threshold is
    the one in its ``model.yml``, else the forest's own cut-off."""
    from loglead_lo2.detection.if_phase import fitted_from_bundle, loaded_lines
    from loglead_lo2.detection.runner import run_model
    from loglead_lo2.detection.thresholds import ThresholdSettings

    for note in bundle.notes:
        say(note)
    fitted = fitted_from_bundle(opts, bundle)
    said, warn = loaded_lines(fitted, bundle, test_runs)
    if warn:
        warnings.append(warn)
    run = run_model(fitted.spec, rows, train, test_runs, ThresholdSettings(rule="model"),
                    fitted=fitted, batch_size=opts.if_config.batch_size)
    say(said)
    out = _source(ifo.IF_KEY, None, run, rows, "isolation_forest", FOREST_TEXT,
                  "normal sequences of the training runs",
                  {"loaded_from": str(bundle.path), "sha256_verified": bundle.verified})
    out.training["loaded_from"] = str(bundle.path)
    out.training["sha256_verified"] = bundle.verified
    return out


def load_forest(opts: Any) -> Any:
    """The ``--load-model`` bundle (sha256, tuple, item/numeric and estimator checked)."""
    from loglead_lo2.detection.if_phase import load_if_bundle

    return load_if_bundle(opts, Path(opts.load_model))


def retrain(opts: Any, rows: pl.DataFrame, split: Any, limits: Any, say: Say,
            warnings: list[str], bundle: Any = None) -> dict[str, ModelSource]:
    """Every requested model of ``opts`` fitted on the training runs of ``split``; ``rows``
    are every row (in the input file's order, as detection reads them)."""
    train = rows.filter(pl.col("run").is_in(list(split.train_runs)))
    test_runs = sorted(split.test_runs)
    out: dict[str, ModelSource] = {}
    if not opts.skip_if:
        out[ifo.IF_KEY] = (loaded_forest(opts, bundle, rows, train, test_runs, say, warnings)
                     if bundle is not None else
                     forest(opts, rows, train, test_runs, limits, say, warnings))
    for key in opts.sup_models:
        out[key] = registry_model(key, opts, rows, train, test_runs, limits, say, warnings)
    return out


__all__ = ["forest", "load_forest", "loaded_forest", "registry_model", "retrain"]
