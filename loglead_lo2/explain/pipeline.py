"""The explainability phase (phase F) as a library function: :func:`run_explain`.

Steps (every explanation is computed on the HELD-OUT runs of a run-grouped split):

1. read ``<root>/lo2_sequences_enhanced.parquet`` (only the needed columns), sorted by
   ``seq_id``; split it with the detection phase's
   :func:`~loglead_lo2.detection.split.run_grouped_split` (whole runs on one side);
2. Isolation Forest (unless ``skip_if``): trained on the normal sequences of the training runs
   with :func:`~loglead_lo2.detection.iforest.train_iforest`, or loaded from a bundle
   (sha256-checked against its ``model.yml``); threshold = the forest's contamination cut-off,
   or the threshold recorded in ``model.yml`` for a loaded bundle;
3. every ``sup_models`` registry key: guarded, fitted on the training runs with
   :func:`~loglead_lo2.detection.evaluate.fit_model`, scored on the held-out runs; threshold =
   the model's own (:attr:`FittedModel.threshold`);
4. nearest-normal mapping for ``nn_source`` (:mod:`.nearest`), SHAP per model whose registry
   ``shap`` kind is not ``none`` (:mod:`.shap_report`), false-positive lists per model
   (:mod:`.false_positives`), ``summary.md`` + ``summary.json`` (:mod:`.report`).

Output folder policy: the run refuses to start when the folder already holds explainability
files (``nn_mapping.*``, ``shap_*``, ``false_positives_*``, ``summary.*``) unless
``overwrite``; with it, files are replaced and stale ones of the earlier run (e.g. SHAP files
of a model not requested this time) are removed after a successful run, so the folder always
describes exactly one run. Other files in the folder are never touched.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.detection import iforest as ifo
from loglead_lo2.detection.labels import DEFAULT_LABEL_MODE, RunSettings, prepare_labels
from loglead_lo2.detection.registry import DEFAULT_MODELS, REGISTRY, available_numeric
from loglead_lo2.errors import UserError
from loglead_lo2.explain.shap_report import ShapSettings
from loglead_lo2.schema import read_parquet, read_parquet_schema, with_bag_counts

log = logging.getLogger(__name__)

ENHANCED_FILE = "lo2_sequences_enhanced.parquet"
PREDICTIONS_FILE = "lo2_if_predictions.parquet"
TEMPLATES_FILE = "lo2_drain_templates.parquet"
ARTIFACT_PATTERNS: tuple[str, ...] = (
    "nn_mapping.csv", "nn_mapping.md", "shap_*_summary.png", "shap_*_top_features.csv",
    "false_positives_*.csv", "summary.md", "summary.json",
)
KEY_COLUMNS: tuple[str, ...] = (*ifo.PREDICTION_KEYS, "seq_len", "duration_sec")
TOKEN_COLUMNS: tuple[str, ...] = ("e_words", "e_event_drain_id")
HOLDOUT_NOTE = "computed on the HELD-OUT runs only (models never saw them in training)"

Say = Callable[[str], None]


@dataclass
class ExplainOptions:
    """Resolved settings of one explainability run (the CLI flags)."""

    root: Path = Path("demo/result/lo2")
    out_dir: Path | None = None
    if_config: ifo.IFConfig = field(
        default_factory=lambda: ifo.IFConfig(holdout_fraction=0.0))
    if_item_explicit: bool = False
    if_numeric: str | None = None
    load_model: Path | None = None
    skip_if: bool = False
    sup_models: tuple[str, ...] = DEFAULT_MODELS
    nn_source: str | None = None
    nn_top_k: int = 50
    shap: ShapSettings = field(default_factory=ShapSettings)
    skip_shap: bool = False
    sup_holdout_fraction: float = 0.2
    sup_holdout_min_groups: int = 1
    sup_holdout_shuffle: bool = False
    seed: int = 42
    overwrite: bool = False
    memory_guard: bool = True
    label_mode: str = DEFAULT_LABEL_MODE

    @property
    def output(self) -> Path:
        return self.out_dir if self.out_dir is not None else self.root / "explainability"

    @property
    def source(self) -> str:
        """``nn_source``, else ``if`` (or the first model with ``skip_if``)."""
        if self.nn_source:
            return self.nn_source
        return "if" if not self.skip_if else (self.sup_models[0] if self.sup_models else "")


@dataclass
class ModelView:
    """One model as the explainability phase sees it: feature space, held-out scores,
    threshold and where they come from."""

    key: str
    kind: str
    description: str
    vectorizer: Any
    scores: np.ndarray
    threshold: float
    threshold_source: str
    training: dict[str, Any]
    fitted: Any = None  # FittedModel for registry models, None for the Isolation Forest
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExplainResult:
    """What a run produced."""

    out_dir: Path
    artifacts: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_options(opts: ExplainOptions) -> None:
    """Reject contradictory or out-of-range settings with one clear message."""
    unknown = [k for k in opts.sup_models if k not in REGISTRY]
    if unknown:
        raise UserError(f"unknown model key(s): {', '.join(unknown)}. Valid keys: "
                        f"{', '.join(REGISTRY)}")
    if opts.skip_if and not opts.sup_models:
        raise UserError("--skip-if without --sup-models leaves nothing to explain.")
    valid = (["if"] if not opts.skip_if else []) + list(opts.sup_models)
    if opts.source not in valid:
        why = " (--skip-if drops the Isolation Forest)" if opts.source == "if" else ""
        raise UserError(f"--nn-source {opts.source}: not among the models of this run{why}; "
                        f"choose one of: {', '.join(valid)}.")
    if not 0 < opts.sup_holdout_fraction < 1:
        raise UserError(f"--sup-holdout-fraction must be in (0, 1), got "
                        f"{opts.sup_holdout_fraction}.")
    for name, value in (("--nn-top-k", opts.nn_top_k), ("--shap-sample", opts.shap.sample),
                        ("--shap-background", opts.shap.background),
                        ("--shap-feature-threshold", opts.shap.feature_threshold),
                        ("--shap-cell-threshold", opts.shap.cell_threshold),
                        ("--sup-holdout-min-groups", opts.sup_holdout_min_groups)):
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}.")


def input_path(root: Path) -> Path:
    """``<root>/lo2_sequences_enhanced.parquet``, or a UserError naming the commands to run."""
    path = root / ENHANCED_FILE
    if not path.is_file():
        raise UserError(
            f"{path} not found. Build it with the loader (python demo/lo2_e2e/run_lo2_loader.py "
            f"--root <LO2 tree> --save-parquet --output-dir {root}) or the detection phase "
            f"(python demo/lo2_e2e/LO2_samples.py --phase enhancers --root {root}), then re-run."
        )
    return path


def existing_artifacts(out_dir: Path) -> list[Path]:
    """Explainability files already in ``out_dir`` (sorted)."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.is_file()
                  and any(fnmatch.fnmatchcase(p.name, pat) for pat in ARTIFACT_PATTERNS))


def check_out_dir(out_dir: Path, overwrite: bool) -> list[Path]:
    """Refuse to mix runs: existing explainability files need ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out-dir {out_dir} is a file, not a folder.")
    found = existing_artifacts(out_dir)
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise UserError(f"{out_dir} already holds {len(found)} explainability file(s) of an "
                        f"earlier run ({names}); pass --overwrite to replace them or choose "
                        "another --out-dir.")
    return found


def needed_columns(opts: ExplainOptions, schema: dict[str, Any], bundle_vec: Any) -> list[str]:
    """Columns to read: keys, token columns and every model's features."""
    cols = [c for c in (*KEY_COLUMNS, *TOKEN_COLUMNS) if c in schema]
    wanted: list[str] = []
    if not opts.skip_if:
        vec = bundle_vec if bundle_vec is not None else opts.if_config
        wanted += [c for c in (vec.item, *vec.numeric) if c]
    for key in opts.sup_models:
        spec = REGISTRY[key]
        wanted += [c for c in (spec.item,) if c] + list(available_numeric(spec, schema))
    missing = sorted({c for c in wanted if c not in schema})
    if missing:
        raise UserError(f"{opts.root / ENHANCED_FILE} lacks column(s) {', '.join(missing)} "
                        f"(available: {', '.join(schema)}). Re-run the loader with "
                        "--save-parquet.")
    return with_bag_counts([*cols, *wanted], schema)


def _metrics(hold: pl.DataFrame, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    from loglead_lo2.detection.evaluate import evaluate

    groups = hold["row_group"].to_numpy() if "row_group" in hold.columns else None
    m = evaluate(hold["anomaly"].cast(pl.Int8).to_numpy(), scores, threshold=threshold,
                 groups=groups)
    keep = ("precision", "recall", "f1", "roc_auc", "pr_auc", "tp", "fp", "tn", "fn",
            "fp_rate_correct", "fp_rate_non_target")
    return {k: m.get(k) for k in keep}


def _load_if(opts: ExplainOptions) -> Any:
    from loglead_lo2.detection.persistence import load_bundle

    cfg = opts.if_config
    return load_bundle(opts.load_model, expected_key=ifo.IF_KEY,  # type: ignore[arg-type]
                       model_check=ifo.is_isolation_forest,
                       expected_item=cfg.item if opts.if_item_explicit else None,
                       expected_numeric=cfg.numeric if opts.if_numeric else None)


def run_if(opts: ExplainOptions, train: pl.DataFrame, hold: pl.DataFrame, loaded: Any,
           limits: Any, say: Say, warnings: list[str]) -> ModelView:
    """Train (or take the loaded) Isolation Forest and score the held-out runs."""
    t = time.perf_counter()
    if loaded is not None:
        meta = loaded.metadata or {}
        trained_on = sorted((meta.get("training") or {}).get("runs") or [])
        model, vec = loaded.model, loaded.vectorizer
        if loaded.threshold is not None:
            thr, source = loaded.threshold, f"model.yml of {opts.load_model}"
        else:
            thr = float(-model.offset_)
            source = "contamination cut-off of the loaded forest (no threshold in model.yml)"
        overlap = sorted(set(trained_on) & set(hold["run"].unique().to_list()))
        if overlap:
            warnings.append(f"[IF] the loaded forest was trained on held-out run(s) "
                            f"{', '.join(overlap)}: its held-out explanations are optimistic")
        training = {"loaded_from": str(opts.load_model), "runs": trained_on,
                    "rows": (meta.get("training") or {}).get("rows"),
                    "sha256_verified": loaded.verified}
        say(f"[IF] loaded {opts.load_model} (item {vec.item}, numeric "
            f"{','.join(vec.numeric) or '(none)'}); training skipped")
    else:
        from dataclasses import replace

        from loglead_lo2.detection.guards import plan_guards

        cfg = opts.if_config
        plan = plan_guards(ifo.IF_KEY, ifo.make_forest(cfg).get_params(), dict(cfg.vectorizer),
                           limits, has_item=cfg.item is not None, isolation_forest=True)
        for line in plan.lines:
            say(line)
            warnings.append(line)
        cfg = replace(cfg, vectorizer={**dict(cfg.vectorizer), **plan.vectorizer})
        say(f"[IF] training on {int(train['normal'].sum()):,} normal sequences of the training "
            f"runs (item {cfg.item}, numeric {','.join(cfg.numeric) or '(none)'}, "
            f"contamination {cfg.contamination}, {cfg.n_estimators} trees)")
        res = ifo.train_iforest(train, cfg, overrides=plan.params)
        warnings.extend(res.notes)
        model, vec, thr, source = res.model, res.vectorizer, res.threshold, res.threshold_source
        training = {"runs": res.fit_runs, "rows": res.fit_rows,
                    "selector": "normal sequences of the training runs"}
    scores = ifo.score_iforest(model, vec, hold, opts.if_config.batch_size)
    say(f"[IF] scored {hold.height:,} held-out sequences in {time.perf_counter() - t:.1f}s; "
        f"threshold {thr:.6f} ({source})")
    return ModelView(key="if", kind="isolation_forest",
                     description="Isolation Forest on normal sequences of the training runs",
                     vectorizer=vec, scores=scores, threshold=float(thr),
                     threshold_source=source, training=training,
                     metrics=_metrics(hold, scores, thr))


def run_registry_model(key: str, opts: ExplainOptions, train: pl.DataFrame,
                       hold: pl.DataFrame, limits: Any, say: Say,
                       warnings: list[str]) -> ModelView:
    """Fit a registry model (guards applied) on the training runs, score the held-out runs."""
    from loglead_lo2.detection.evaluate import fit_model, score_model
    from loglead_lo2.detection.guards import plan_guards

    spec = REGISTRY[key]
    plan = plan_guards(key, spec.make_estimator().get_params(), dict(spec.vectorizer), limits,
                       has_item=spec.item is not None)
    for line in plan.lines:
        say(line)
        warnings.append(line)
    rows = train.height if spec.train_on == "all" else int(train["normal"].sum())
    say(f"[Model] {key}: fitting on {rows:,} training rows "
        f"({'all' if spec.train_on == 'all' else 'normal only'}; {spec.features})")
    fitted = fit_model(spec, train, guards=plan.as_mapping(), seed=opts.seed)
    scores = score_model(fitted, hold)
    n_feat = len(fitted.vectorizer.feature_names_)
    say(f"[Model] {key}: fitted in {fitted.fit_seconds:.1f}s, {n_feat:,} features; "
        f"threshold {fitted.threshold:.6g} ({fitted.threshold_source})")
    return ModelView(key=key, kind=spec.kind, description=spec.description,
                     vectorizer=fitted.vectorizer, scores=scores,
                     threshold=float(fitted.threshold), threshold_source=fitted.threshold_source,
                     training={"runs": sorted(fitted.train_runs), "rows": fitted.train_rows,
                               "selector": "normal rows" if spec.train_on == "normal"
                               else "all rows", "features": spec.features},
                     fitted=fitted, metrics=_metrics(hold, scores, fitted.threshold))


def _token_column(view: ModelView, columns: list[str]) -> str:
    return "e_words" if "e_words" in columns else (view.vectorizer.item or "e_words")


def run_explain(opts: ExplainOptions, progress: Say | None = None) -> ExplainResult:
    """Run the phase and write its artifacts (see the module docstring)."""
    from loglead_lo2.detection.evaluate import leakage_report
    from loglead_lo2.detection.guards import memory_limits
    from loglead_lo2.detection.split import run_grouped_split
    from loglead_lo2.explain import report
    from loglead_lo2.explain.false_positives import false_positives, write_false_positives

    say = progress or (lambda _m: None)
    started = time.perf_counter()
    check_options(opts)
    path = input_path(opts.root)
    out = opts.output
    check_out_dir(out, opts.overwrite)
    loaded = _load_if(opts) if (opts.load_model and not opts.skip_if) else None
    if loaded is not None:
        for note in loaded.notes:
            say(note)
    schema = read_parquet_schema(path)
    cols = needed_columns(opts, schema, loaded.vectorizer if loaded is not None else None)
    df = read_parquet(path, "sequences_enhanced", columns=cols).sort("seq_id")
    say(f"[Input] {path}: {df.height:,} sequences, {df['run'].n_unique()} run(s)")
    df, labels, window = prepare_labels(df, opts.label_mode, opts.root, say, "explanations")
    split = run_grouped_split(df, fraction=opts.sup_holdout_fraction,
                              min_groups=opts.sup_holdout_min_groups,
                              shuffle=opts.sup_holdout_shuffle, seed=opts.seed)
    train, hold = split.frames(df)
    settings = RunSettings(opts.label_mode, "holdout", split.note, window, False,
                           threshold="model").as_dict()
    say(f"[Split] train: {len(split.train_runs)} run(s), {train.height:,} sequences; held out: "
        f"{len(split.test_runs)} run(s) {', '.join(sorted(split.test_runs))}, {hold.height:,} "
        f"sequences ({int(hold['anomaly'].sum())} anomalous). Explanations use the held-out "
        "runs only.")
    result = ExplainResult(out_dir=out)
    warnings = result.warnings
    warnings.extend(labels.notes)
    leak = leakage_report(hold, windowed=window.windowed, label_mode=opts.label_mode)
    if leak.get("warning"):
        warnings.append(f"[Leakage] {leak['warning']}")
    limits, guard_lines = memory_limits(enabled=opts.memory_guard)
    warnings.extend(guard_lines)
    views: dict[str, ModelView] = {}
    if not opts.skip_if:
        views["if"] = run_if(opts, train, hold, loaded, limits, say, warnings)
    for key in opts.sup_models:
        views[key] = run_registry_model(key, opts, train, hold, limits, say, warnings)
    out.mkdir(parents=True, exist_ok=True)
    train_normal = train.filter(pl.col("normal"))
    nn_info = _nn_step(opts, views[opts.source], hold, train_normal, df.columns, split, say,
                       warnings, result)
    shap_info = {} if opts.skip_shap else _shap_step(opts, views, hold, train, split, say,
                                                     warnings, result)
    fp_counts: dict[str, int] = {}
    for key, view in views.items():
        fps = false_positives(hold, view.scores, view.threshold, train_normal,
                              _token_column(view, df.columns))
        fp_counts[key] = fps.height
        result.artifacts.append(write_false_positives(fps, out, key))
    say("[FP] false-positive lists: " + ", ".join(f"{k} {n}" for k, n in fp_counts.items()))
    comparison = (report.compare_predictions(opts.root / PREDICTIONS_FILE, views["if"].scores,
                                              hold) if "if" in views else None)
    result.summary = report.build_summary(
        opts, path, df, split, train, hold, views, nn_info, shap_info, fp_counts, leak,
        comparison, warnings, time.perf_counter() - started, settings=settings,
        labels=labels.as_dict())
    result.artifacts += report.write_summary(result.summary, out)
    if opts.overwrite:
        stale = [p for p in existing_artifacts(out) if p not in result.artifacts]
        for p in stale:
            p.unlink()
        if stale:
            say(f"[Output] removed {len(stale)} stale file(s) of the earlier run: "
                + ", ".join(p.name for p in stale))
    return result


def _nn_step(opts: ExplainOptions, view: ModelView, hold: pl.DataFrame,
             train_normal: pl.DataFrame, columns: list[str], split: Any, say: Say,
             warnings: list[str], result: ExplainResult) -> dict[str, Any]:
    from loglead_lo2.explain.nearest import nn_mapping, template_labels, write_nn_mapping

    t = time.perf_counter()
    info: dict[str, Any] = {"source": view.key, "top_k": opts.nn_top_k,
                            "pool": "normal sequences of the training runs",
                            "pool_rows": train_normal.height,
                            "pool_runs": sorted(train_normal["run"].unique().to_list())}
    if train_normal.height == 0 or hold.height == 0:
        msg = "[NN] skipped: " + ("no normal sequence in the training runs"
                                  if train_normal.height == 0 else "no held-out sequence")
        warnings.append(msg)
        say(msg)
        info["skipped"] = msg
        return info
    token_col = _token_column(view, columns)
    labels = template_labels(opts.root / TEMPLATES_FILE)
    table = nn_mapping(hold, view.scores, view.threshold, train_normal, view.vectorizer,
                       top_k=opts.nn_top_k, token_column=token_col, labels=labels)
    vec = view.vectorizer
    space = (f"{view.key} features: {vec.item or '(no tokens)'}"
             + (f" + numeric {','.join(vec.numeric)}" if vec.numeric else "")
             + f", {len(vec.feature_names_):,} columns")
    header = [
        f"Source model: **{view.key}**; the top {table.height} held-out sequences by its score"
        f" (threshold {view.threshold:.6g}: {int(table['flagged'].sum())} of them flagged).",
        f"Nearest normal = highest cosine similarity in the {space}, among the "
        f"{train_normal.height} normal sequences of the {len(info['pool_runs'])} TRAINING "
        "run(s).",
        f"Held-out runs ({len(split.test_runs)}): {', '.join(sorted(split.test_runs))}. "
        f"Every row is {HOLDOUT_NOTE}.",
        f"Tokens ({token_col}) and templates: `token (a/b)` = count in the anomaly / in its "
        "neighbour; tokens absent from the neighbour first, then by share difference.",
    ]
    result.artifacts += write_nn_mapping(table, result.out_dir, header)
    info.update(rows=table.height, token_column=token_col, feature_space=space,
                labelled_anomalies=int(table["anomaly"].sum()),
                flagged=int(table["flagged"].sum()),
                mean_cosine=round(float(table["cosine_similarity"].mean() or 0.0), 4),
                templates_file=str(opts.root / TEMPLATES_FILE) if labels is not None else None)
    say(f"[NN] {table.height} top held-out sequences of {view.key} mapped to their nearest "
        f"training normal (mean cosine {info['mean_cosine']:.3f}) in "
        f"{time.perf_counter() - t:.1f}s")
    return info


def _shap_step(opts: ExplainOptions, views: dict[str, ModelView], hold: pl.DataFrame,
               train: pl.DataFrame, split: Any, say: Say, warnings: list[str],
               result: ExplainResult) -> dict[str, Any]:
    from loglead_lo2.explain.shap_report import explain_model, write_shap

    info: dict[str, Any] = {}
    for key, view in views.items():
        if view.fitted is None:
            info[key] = {"skipped": "the Isolation Forest is explained by the nearest-normal "
                                    "mapping and its false-positive list, not SHAP"}
            continue
        kind = view.fitted.spec.shap
        if kind == "none":
            info[key] = {"skipped": "registry shap kind 'none' (no explainer for this model)"}
            say(f"[SHAP] {key}: skipped (registry shap kind 'none')")
            continue
        say(f"[SHAP] {key}: {kind} explainer on up to {opts.shap.sample} held-out rows ...")
        try:
            outcome = explain_model(view.fitted, hold, train, opts.shap)
        except (ValueError, TypeError, RuntimeError, MemoryError) as exc:
            log.debug("SHAP failed for %s", key, exc_info=True)
            msg = f"[SHAP] {key}: failed ({type(exc).__name__}: {exc}); no SHAP files"
            warnings.append(msg)
            say(msg)
            info[key] = {"skipped": msg}
            continue
        for line in outcome.warnings:
            say(line)
        warnings.extend(outcome.warnings)
        paths = write_shap(outcome, result.out_dir, len(split.test_runs))
        result.artifacts += paths
        top = outcome.table.head(5)["feature"].to_list()
        info[key] = {"explainer": kind, "scale": outcome.scale, "rows": outcome.rows,
                     "background_rows": outcome.background_rows,
                     "features_total": outcome.features_total,
                     "features_explained": outcome.features_explained,
                     "seconds": round(outcome.seconds, 2), "top_features": top,
                     "files": [p.name for p in paths], "warnings": outcome.warnings}
        say(f"[SHAP] {key}: {outcome.rows} rows x {outcome.features_explained} features in "
            f"{outcome.seconds:.1f}s; top: {', '.join(top[:3]) or '(none)'}")
    return info


__all__ = [
    "ARTIFACT_PATTERNS",
    "ExplainOptions",
    "ExplainResult",
    "ModelView",
    "check_options",
    "check_out_dir",
    "existing_artifacts",
    "input_path",
    "run_explain",
]
