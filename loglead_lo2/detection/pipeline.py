"""The detection phase as a library function: input, split, Isolation Forest, models, reports.

:func:`run_detection` is what ``lo2-detect`` / ``demo/lo2_e2e/LO2_samples.py`` call. Artifacts
per phase (``<root>`` = ``--root``, ``<metrics>`` = ``--metrics-dir``):

* ``enhancers``: ``<enhancers-output-dir or root>/lo2_sequences_enhanced.parquet`` only.
* ``if``: ``<root>/lo2_if_predictions.parquet`` (or ``--save-if``), ``<metrics>/if_metrics.json``
  + ``.csv``, ``leaderboard.csv`` + ``.md``, ``per_test_case_recall.csv`` + ``.md``,
  ``leakage.json``, ``detect_run.json``; ``--save-model``/``--dump-metadata`` add the bundle and
  ``model.yml``.
* ``full``: as ``if`` plus ``<metrics>/<model>.json`` per registry model (and, with
  ``--save-sup-models DIR``, ``DIR/<model>.joblib`` + ``.yml``). ``--skip-if`` drops the IF
  files (predictions, ``if_metrics.*``, bundle).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.detection import iforest as ifo
from loglead_lo2.detection import report as rep
from loglead_lo2.detection.guards import GuardLimits, memory_limits
from loglead_lo2.errors import UserError
from loglead_lo2.schema import read_parquet, read_parquet_schema, with_bag_counts, write_parquet

log = logging.getLogger(__name__)

ENHANCED_FILE = "lo2_sequences_enhanced.parquet"
SEQUENCES_FILE = "lo2_sequences.parquet"
EVENTS_FILE = "lo2_events.parquet"
PREDICTIONS_FILE = "lo2_if_predictions.parquet"
RUN_FILE = "detect_run.json"
BASE_COLUMNS: tuple[str, ...] = (*ifo.PREDICTION_KEYS, "seq_len", "duration_sec")
LOADER_HINT = (
    "python demo/lo2_e2e/run_lo2_loader.py --root <LO2 tree> --save-parquet "
    "--save-events --save-base-sequences --output-dir {root}"
)


@dataclass
class DetectOptions:
    """Resolved settings of one detection run (the CLI flags)."""

    root: Path = Path("demo/result/lo2")
    phase: str = "full"
    metrics_dir: Path | None = None
    seed: int = 42
    batch_size: int = 50_000
    sup_holdout_fraction: float = 0.2
    sup_holdout_min_groups: int = 1
    sup_holdout_shuffle: bool = False
    if_config: ifo.IFConfig = field(default_factory=ifo.IFConfig)
    if_item_explicit: bool = False
    if_numeric: str | None = None
    skip_if: bool = False
    save_if: Path | None = None
    save_enhancers: bool = False
    enhancers_output_dir: Path | None = None
    overwrite_enhancers: bool = False
    save_model: Path | None = None
    save_sup_models: Path | None = None
    load_model: Path | None = None
    overwrite_model: bool = False
    dump_metadata: bool = False
    precision_at: int | None = None
    fp_alpha: float | None = None
    report_psi: bool = False
    memory_guard: bool = True
    models: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def metrics_path(self) -> Path:
        return self.metrics_dir if self.metrics_dir is not None else self.root / "metrics"

    @property
    def enhanced_out(self) -> Path:
        return (self.enhancers_output_dir or self.root) / ENHANCED_FILE


@dataclass
class DetectResult:
    """What a run produced: artifacts written, model records and printed notes."""

    artifacts: list[Path] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rows: int = 0


Say = Callable[[str], None]


# --- input --------------------------------------------------------------------------------


def _event_batches(events_path: Path, runs_per_batch: int = 1) -> Any:
    """Events of ``runs_per_batch`` runs at a time (sorted), read lazily from Parquet."""
    runs = sorted(pl.scan_parquet(events_path).select(pl.col("run").unique())
                  .collect()["run"].to_list())
    for i in range(0, len(runs), runs_per_batch):
        part = runs[i:i + runs_per_batch]
        yield pl.scan_parquet(events_path).filter(pl.col("run").is_in(part)).collect()


def rebuild_enhanced(root: Path, out: Path, say: Say) -> int:
    """Write enhanced sequences to ``out`` from ``<root>/lo2_events.parquet``, one run at a
    time (tokens, trigrams, Drain ids; ``lo2_drain_templates.parquet`` beside ``out``)."""
    events_path, seq_path = root / EVENTS_FILE, root / SEQUENCES_FILE
    if not events_path.is_file():
        have = "only lo2_sequences.parquet (no tokens)" if seq_path.is_file() else "neither"
        raise UserError(
            f"{root}: no {ENHANCED_FILE}, and enhancing needs {EVENTS_FILE} + {SEQUENCES_FILE} "
            f"({have} found). Run the loader first: " + LOADER_HINT.format(root=root)
        )
    from loglead_lo2.enhancers import DrainParser, enhance_in_batches

    read_parquet_schema(events_path)
    validate = read_parquet(events_path, "events", columns=["run"])
    say(f"[Enhance] {validate.height:,} events in {events_path}; enhancing run by run ...")
    t = time.perf_counter()
    summary = enhance_in_batches(
        _event_batches(events_path), out, drain=DrainParser(),
        progress=lambda b, e, n: say(
            f"[Enhance] {b} run(s) done: {e:,} events, {n:,} sequences so far"),
    )
    if seq_path.is_file():
        base = read_parquet(seq_path, "sequences", columns=["seq_id"])
        if base.height != summary.rows:
            say(f"[Enhance] note: {seq_path} lists {base.height} sequences, the events give "
                f"{summary.rows}; using the events")
    say(f"[Enhance] {summary.rows:,} enhanced sequences, {summary.templates} Drain templates "
        f"in {time.perf_counter() - t:.1f}s")
    return summary.rows


def needed_columns(opts: DetectOptions, specs: list[Any], schema: dict[str, Any]) -> list[str]:
    """Columns the run reads; resolves ``--if-numeric`` against ``schema`` first."""
    if opts.if_numeric and not opts.if_config.numeric and not opts.skip_if:
        numeric, notes = ifo.resolve_numeric(opts.if_numeric, schema)
        for note in notes:
            log.info(note)
            opts.notes.append(note)
        opts.if_config = _replace_if(opts.if_config, numeric=numeric)
    cols = [c for c in BASE_COLUMNS if c in schema]
    wanted: list[str] = []
    if opts.phase in ("if", "full") and not opts.skip_if:
        wanted += [c for c in (opts.if_config.item, *opts.if_config.numeric) if c]
        if opts.load_model:
            wanted += [c for c in ifo.IF_ITEMS if c in schema]  # the bundle may use any
    from loglead_lo2.detection.registry import available_numeric

    for spec in specs:
        wanted += [c for c in (spec.item,) if c] + list(available_numeric(spec, schema))
    missing = sorted({c for c in wanted if c not in schema})
    if missing:
        raise UserError(
            f"the enhanced sequences lack column(s) {', '.join(missing)} "
            f"(available: {', '.join(schema)}). Re-run the loader with --save-parquet."
        )
    return with_bag_counts([*cols, *wanted], schema)


def load_input(opts: DetectOptions, specs: list[Any], say: Say,
               result: DetectResult) -> pl.DataFrame:
    """Read the enhanced sequences (only the needed columns) or rebuild them."""
    path = opts.root / ENHANCED_FILE
    if path.is_file():
        schema = read_parquet_schema(path)
        cols = needed_columns(opts, specs, schema)
        df = read_parquet(path, "sequences_enhanced", columns=cols)
        say(f"[Input] {path}: {df.height:,} sequences, {df['run'].n_unique()} run(s)")
        if opts.save_enhancers and opts.enhanced_out.resolve() != path.resolve():
            full = read_parquet(path, "sequences_enhanced")
            _save_enhanced(full, opts, say, result)
        elif opts.save_enhancers:
            say(f"[Enhance] --save-enhancers: {path} is already the enhanced file; kept as is")
        return df
    say(f"[Input] {path} not found; enhancing from {EVENTS_FILE} + {SEQUENCES_FILE}")
    if opts.save_enhancers:
        out = opts.enhanced_out
        if out.exists() and not opts.overwrite_enhancers:
            raise UserError(f"{out} exists; pass --overwrite-enhancers to replace it.")
        rebuild_enhanced(opts.root, out, say)
        result.artifacts += [out, out.parent / "lo2_drain_templates.parquet"]
        say(f"[Enhance] wrote {out}")
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="lo2-enhance-") as tmp:
            out = Path(tmp) / ENHANCED_FILE
            rebuild_enhanced(opts.root, out, say)
            schema = read_parquet_schema(out)
            df = read_parquet(out, "sequences_enhanced",
                              columns=needed_columns(opts, specs, schema))
        say("[Enhance] not saved (add --save-enhancers to keep lo2_sequences_enhanced.parquet)")
        return df
    schema = read_parquet_schema(out)
    return read_parquet(out, "sequences_enhanced", columns=needed_columns(opts, specs, schema))


def _save_enhanced(df: pl.DataFrame, opts: DetectOptions, say: Say,
                   result: DetectResult) -> None:
    out = opts.enhanced_out
    if out.exists() and not opts.overwrite_enhancers:
        raise UserError(f"{out} exists; pass --overwrite-enhancers to replace it.")
    write_parquet(df, out, "sequences_enhanced")
    result.artifacts.append(out)
    say(f"[Enhance] wrote {out} ({df.height:,} sequences)")


def run_enhancers(opts: DetectOptions, say: Say) -> DetectResult:
    """``--phase enhancers``: (re)build the enhanced sequences file from the events."""
    result = DetectResult()
    out = opts.enhanced_out
    if out.exists() and not opts.overwrite_enhancers:
        raise UserError(f"{out} exists; pass --overwrite-enhancers to rebuild it.")
    result.rows = rebuild_enhanced(opts.root, out, say)
    result.artifacts += [out, out.parent / "lo2_drain_templates.parquet"]
    say(f"[Enhance] wrote {out} ({result.rows:,} sequences)")
    return result


# --- evaluation helpers --------------------------------------------------------------------


def _labels(df: pl.DataFrame) -> np.ndarray:
    return df["anomaly"].cast(pl.Int8).to_numpy()


def _split_info(train: pl.DataFrame, hold: pl.DataFrame, split: Any) -> dict[str, Any]:
    return {
        "train_runs": sorted(split.train_runs), "holdout_runs": sorted(split.test_runs),
        "train_rows": train.height, "holdout_rows": hold.height,
        "holdout_anomalous": int(hold["anomaly"].sum()), "note": split.note or None,
    }


def _psi(opts: DetectOptions, train_scores: np.ndarray, hold_scores: np.ndarray) -> float | None:
    if not opts.report_psi:
        return None
    from loglead_lo2.metrics_utils import population_stability_index

    return population_stability_index(train_scores, hold_scores)


def _recall(hold: pl.DataFrame, pred: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    from loglead_lo2.detection.evaluate import per_test_case_recall

    errors = hold.with_columns(pred=pl.Series(pred)).filter(pl.col("anomaly"))
    target = errors.filter(pl.col("service") == pl.col("target_service"))
    all_t = per_test_case_recall(errors.drop("pred"), errors["pred"].to_numpy())
    tgt_t = per_test_case_recall(target.drop("pred"), target["pred"].to_numpy())
    return all_t, tgt_t


# --- the run --------------------------------------------------------------------------------


def run_detection(opts: DetectOptions, progress: Say | None = None) -> DetectResult:
    """Run ``opts.phase`` and write its artifacts; see the module docstring for the list."""
    say = progress or (lambda _m: None)
    if opts.phase == "enhancers":
        return run_enhancers(opts, say)
    from loglead_lo2.detection.registry import REGISTRY
    from loglead_lo2.detection.split import run_grouped_split

    result = DetectResult()
    specs = [REGISTRY[k] for k in opts.models] if opts.phase == "full" else []
    df = load_input(opts, specs, say, result)
    result.rows = df.height
    for note in opts.notes:
        say(note)
    loaded = None
    if opts.load_model and not opts.skip_if:
        loaded = ifo.load_if_bundle(opts)  # fail before anything is written
        missing = [c for c in (loaded.vectorizer.item, *loaded.vectorizer.numeric)
                   if c and c not in df.columns]
        if missing:
            raise UserError(f"{opts.load_model} uses column(s) {', '.join(missing)} that "
                            f"{opts.root / ENHANCED_FILE} lacks.")
    _check_outputs(opts, specs)
    limits, guard_lines = memory_limits(enabled=opts.memory_guard)
    for line in guard_lines:
        say(line)
    split = None
    try:
        split = run_grouped_split(df, fraction=opts.sup_holdout_fraction,
                                  min_groups=opts.sup_holdout_min_groups,
                                  shuffle=opts.sup_holdout_shuffle, seed=opts.seed)
    except UserError as exc:
        msg = (f"[Split] no honest hold-out split possible: {exc} -> no metrics are reported "
               "(training-set numbers would be misleading)")
        say(msg)
        result.notes.append(msg)
    if split is not None:
        hold = df.filter(pl.col("run").is_in(split.test_runs))
        train = df.filter(pl.col("run").is_in(split.train_runs))
        say(f"[Split] train: {len(split.train_runs)} run(s), {train.height:,} sequences; "
            f"holdout: {len(split.test_runs)} run(s) {', '.join(sorted(split.test_runs))}, "
            f"{hold.height:,} sequences ({int(hold['anomaly'].sum())} anomalous)"
            + (f"; {split.note}" if split.note else ""))
        _leakage(opts, hold, say, result)
    else:
        train, hold = df, df.clear()
    recalls: dict[str, tuple[pl.DataFrame, pl.DataFrame]] = {}
    if not opts.skip_if:
        ifo.run_if_phase(opts, df, train, hold, split, limits, say, result, recalls, loaded)
    if specs and split is not None:
        for spec in specs:
            _run_model(opts, spec, train, hold, split, limits, say, result, recalls)
    elif specs:
        say("[Models] skipped: registry models need a hold-out split (see [Split] above)")
    _write_summaries(opts, split, result, recalls, say)
    return result


def _replace_if(config: ifo.IFConfig, **changes: Any) -> ifo.IFConfig:
    from dataclasses import replace

    return replace(config, **changes)


def _leakage(opts: DetectOptions, hold: pl.DataFrame, say: Say, result: DetectResult) -> None:
    from loglead_lo2.detection.evaluate import leakage_report

    report = leakage_report(hold)
    for line in rep.leakage_lines(report):
        say(line)
    path = rep.write_json(opts.metrics_path / "leakage.json", {"split": rep.HOLDOUT, **report})
    result.artifacts.append(path)


def _check_outputs(opts: DetectOptions, specs: list[Any]) -> None:
    """Refuse to replace bundles before any work is done (not after a long fit)."""
    from loglead_lo2.schema import check_overwrite

    if opts.save_model and not opts.skip_if:
        check_overwrite(opts.save_model, opts.overwrite_model, "--overwrite-model")
    if opts.save_sup_models:
        for spec in specs:
            check_overwrite(Path(opts.save_sup_models) / f"{spec.key}.joblib",
                            opts.overwrite_model, "--overwrite-model")


def _write_summaries(opts: DetectOptions, split: Any, result: DetectResult,
                     recalls: dict[str, tuple[pl.DataFrame, pl.DataFrame]], say: Say) -> None:
    mdir = opts.metrics_path
    records = [r for r in result.records.values()]
    if records:
        result.artifacts += rep.write_leaderboard(mdir, records)
        table = rep.recall_table({k: v[0] for k, v in recalls.items()},
                                 {k: v[1] for k, v in recalls.items()})
        result.artifacts += rep.write_recall_table(mdir, table)
    run = {
        "phase": opts.phase,
        "options": {k: (str(v) if isinstance(v, Path) else v)
                    for k, v in asdict(opts).items() if k != "if_config"},
        "if_config": asdict(opts.if_config),
        "split": None if split is None else {
            "train_runs": sorted(split.train_runs), "holdout_runs": sorted(split.test_runs),
            "note": split.note or None},
        "models": sorted(result.records),
        "notes": result.notes,
    }
    result.artifacts.append(rep.write_json(mdir / RUN_FILE, run))
    say(f"[Report] metrics in {mdir}")


def _model_metadata(spec: Any, fitted: Any, record: dict[str, Any], bundle: Path,
                    sha: str) -> dict[str, Any]:
    from loglead_lo2.detection.persistence import (
        bundle_section,
        git_commit,
        library_versions,
        utc_now,
    )

    vec = fitted.vectorizer
    return {
        "created_at": utc_now(),
        "model": {"key": spec.key, "kind": spec.kind,
                  "class": f"{type(fitted.estimator).__module__}."
                           f"{type(fitted.estimator).__name__}",
                  "params": fitted.estimator.get_params(), "score": spec.score,
                  "shap": spec.shap},
        "features": {"item": vec.item, "numeric": list(vec.numeric),
                     "vectorizer": vec.get_params(), "vocabulary_size": len(vec.vocabulary_),
                     "n_features": len(vec.feature_names_)},
        "training": {"selector": spec.train_on, "rows": fitted.train_rows,
                     "runs": sorted(fitted.train_runs)},
        "evaluation": record["split"],
        "threshold": record["threshold"],
        "metrics": {"split": record["metrics_split"], **(record["metrics"] or {})},
        "versions": library_versions(),
        "git_commit": git_commit(),
        "bundle": bundle_section(bundle, sha),
    }


def _run_model(opts: DetectOptions, spec: Any, train: pl.DataFrame, hold: pl.DataFrame,
               split: Any, limits: GuardLimits, say: Say, result: DetectResult,
               recalls: dict[str, tuple[pl.DataFrame, pl.DataFrame]]) -> None:
    """Fit one registry model on the training runs, evaluate it on the hold-out runs."""
    from loglead_lo2.detection.evaluate import evaluate, fit_model, score_model
    from loglead_lo2.detection.guards import format_resource, plan_guards, resource_stats
    from loglead_lo2.detection.persistence import save_bundle, write_metadata

    plan = plan_guards(spec.key, spec.make_estimator().get_params(), dict(spec.vectorizer),
                       limits, has_item=spec.item is not None)
    for line in plan.lines:
        say(line)
    rows = train.height if spec.train_on == "all" else int(train["normal"].sum())
    say(f"[Model] {spec.key}: fitting on {rows:,} {spec.kind} training rows "
        f"({'all' if spec.train_on == 'all' else 'normal only'}; {spec.features})")
    fitted = fit_model(spec, train, guards=plan.as_mapping(), seed=opts.seed)
    stats = fitted.resource or resource_stats(fitted.estimator, fitted.vectorizer,
                                              fitted.fit_seconds)
    say(format_resource(spec.key, stats))
    t = time.perf_counter()
    scores = score_model(fitted, hold, batch_size=opts.batch_size)
    score_seconds = time.perf_counter() - t
    threshold, source = fitted.threshold, fitted.threshold_source
    y = _labels(hold)
    metrics = evaluate(y, scores, threshold=threshold, k=opts.precision_at,
                       alpha=opts.fp_alpha)
    psi = None
    if opts.report_psi:
        psi = _psi(opts, score_model(fitted, train, batch_size=opts.batch_size), scores)
    recalls[spec.key] = _recall(hold, (scores >= threshold).astype(np.int8))
    record = rep.model_record(
        spec.key, kind=spec.kind, description=spec.description, metrics=metrics,
        split=_split_info(train, hold, split),
        threshold={"value": threshold, "source": source, "rule": "score >= threshold",
                   "split": "train" if "training" in source else None},
        timing={"fit_seconds": round(fitted.fit_seconds, 4),
                "score_seconds": round(score_seconds, 4)},
        features={"item": fitted.vectorizer.item, "numeric": list(fitted.vectorizer.numeric),
                  "vocabulary": len(fitted.vectorizer.vocabulary_),
                  "settings": spec.features},
        k=opts.precision_at, alpha=opts.fp_alpha, psi=psi, resource=stats, guards=plan.lines,
    )
    result.records[spec.key] = record
    result.artifacts.append(rep.write_json(opts.metrics_path / f"{spec.key}.json", record))
    say(rep.metric_line(spec.key, metrics))
    if opts.save_sup_models:
        bundle = Path(opts.save_sup_models) / f"{spec.key}.joblib"
        sha = save_bundle(bundle, fitted.estimator, fitted.vectorizer,
                          overwrite=opts.overwrite_model)
        meta = write_metadata(bundle.with_suffix(".yml"),
                              _model_metadata(spec, fitted, record, bundle, sha))
        result.artifacts += [bundle, meta]
        say(f"[Model] wrote {bundle} + {meta.name}")

