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
* with a generator manifest (``lo2_load_info.json`` or ``--manifest``):
  ``<metrics>/ground_truth_<model>.csv`` per model.

Before the split, ``--label-mode`` relabels (and in ``target-service`` mode filters) the rows
(:mod:`loglead_lo2.detection.labels`); windowing is detected and reported. ``--per-service``
trains every model once per service on the same run split (bundles under
``<dir>/<service>/``); every record, leaderboard row and ``[Metrics]`` line names the
settings (label mode, split, window, per-service) and the service.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2 import artifacts as A
from loglead_lo2.artifacts import IF_PREDICTIONS_FILE, LEAKAGE_FILE, RUN_FILE, TEMPLATES_FILE
from loglead_lo2.detection import if_phase
from loglead_lo2.detection import iforest as ifo
from loglead_lo2.detection import report as rep
from loglead_lo2.detection.evaluations import GT_ABSENT, Evaluations, ground_truth_input
from loglead_lo2.detection.guards import memory_limits
from loglead_lo2.detection.inputs import (
    ENHANCED_FILE,
    load_input,
    rebuild_enhanced,
)
from loglead_lo2.detection.labels import (
    DEFAULT_LABEL_MODE,
    RunSettings,
    ServicePart,
    prepare_labels,
    report_parts,
    service_bundle,
    service_parts,
)
from loglead_lo2.detection.models_phase import run_part, sup_bundle
from loglead_lo2.detection.records import ModelRecord, combined, macro
from loglead_lo2.detection.thresholds import ThresholdSettings
from loglead_lo2.errors import UserError
from loglead_lo2.progress import progress

log = logging.getLogger(__name__)

PREDICTIONS_FILE = IF_PREDICTIONS_FILE



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
    label_mode: str = DEFAULT_LABEL_MODE
    per_service: bool = False
    manifest: Path | None = None
    thresholds: ThresholdSettings = field(default_factory=ThresholdSettings)
    cv: int | None = None
    notes: list[str] = field(default_factory=list)
    stage_dir: Path | None = None
    """Set by :func:`run_detection`: where the run writes its ``<metrics>`` files until they
    are committed to :attr:`metrics_final` as one output set."""

    @property
    def metrics_final(self) -> Path:
        """The metrics folder as given (``--metrics-dir``, default ``<root>/metrics``)."""
        return self.metrics_dir if self.metrics_dir is not None else self.root / "metrics"

    @property
    def metrics_path(self) -> Path:
        """Where metrics files are written: the stage folder during a run."""
        return self.stage_dir if self.stage_dir is not None else self.metrics_final

    @property
    def enhanced_out(self) -> Path:
        return (self.enhancers_output_dir or self.root) / ENHANCED_FILE


@dataclass
class DetectResult:
    """What a run produced: artifacts written, model records and printed notes.

    ``records``: the record of ``<model>.json`` by model key (per service: the macro record
    with ``per_service``); ``board``: the leaderboard records (one per model and service, plus the
    macro rows); ``settings``: :meth:`RunSettings.as_dict`; ``labels``: the label-mode
    counts; ``skipped_services``: service -> reason (``--per-service``).
    """

    artifacts: list[Path] = field(default_factory=list)
    records: dict[str, ModelRecord] = field(default_factory=dict)
    board: list[ModelRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rows: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)
    skipped_services: dict[str, str] = field(default_factory=dict)
    leakage: dict[str, Any] = field(default_factory=dict)


Say = Callable[[str], None]


def run_enhancers(opts: DetectOptions, say: Say) -> DetectResult:
    """``--phase enhancers``: (re)build the enhanced sequences file from the events."""
    result = DetectResult()
    out = opts.enhanced_out
    if out.exists() and not opts.overwrite_enhancers:
        raise UserError(f"{out} exists; pass --overwrite-enhancers to rebuild it.")
    result.rows = rebuild_enhanced(opts.root, out, say)
    result.artifacts += [out, out.parent / TEMPLATES_FILE]
    say(f"[Enhance] wrote {out} ({result.rows:,} sequences)")
    return result


# --- the run --------------------------------------------------------------------------------


def run_detection(opts: DetectOptions, progress: Say | None = None) -> DetectResult:
    """Run ``opts.phase`` and write its artifacts; see the module docstring for the list.

    The ``<metrics>`` files are one output set (:mod:`loglead_lo2.outputs`): staged, then
    committed together with ``detect_manifest.json``, which names the load they came from;
    the previous run's files the new run lacks are removed, other files are left alone. The
    run holds the lock of ``<root>`` too (exclusively when it writes predictions there), so no
    loader or second detection run changes its input meanwhile.
    """
    from loglead_lo2.outputs import FolderLock, OutputSet

    say = progress or (lambda _m: None)
    if opts.phase == "enhancers":
        with FolderLock(opts.root, exclusive=True):
            return run_enhancers(opts, say)
    from loglead_lo2 import results

    run_dir = _run_folder(opts)
    final = run_dir / results.METRICS if run_dir is not None else opts.metrics_final
    _check_metrics_dir(opts.root, final)
    load = _verified_load(opts.root)
    writes_root = (not opts.skip_if and opts.save_if is None) or run_dir is not None
    try:
        with FolderLock(opts.root, exclusive=writes_root), \
                OutputSet(final, phase="detect", manifest=A.DETECT_MANIFEST_FILE,
                          owned=_owned(final), overwrite=True) as out:
            for note in out.notes:
                say(f"[Output] {final}: {note}")

            def shown(message: str) -> None:
                say(out.shown(message))

            run_opts = replace(opts, stage_dir=out.stage,
                               metrics_dir=final if run_dir is not None else opts.metrics_dir)
            result = _run(run_opts, shown)
            out.commit({"tool": "loglead-lo2", "load_set_id": (load or {}).get("set_id"),
                        "root": str(opts.root)})
            result.artifacts = [Path(out.shown(str(p))) for p in result.artifacts]
            if run_dir is not None:
                results.publish(opts.root, run_dir, results.METRICS)
                say(f"[Output] run folder {run_dir}; {opts.root / results.METRICS} and "
                    f"{opts.root / results.RUNS_DIR / results.LATEST} point at it")
    except BaseException:
        if run_dir is not None and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # a run that failed leaves no empty folder
        raise
    return result


def _run_folder(opts: DetectOptions) -> Path | None:
    """This run's own folder under ``<root>/runs`` (:mod:`loglead_lo2.results`), or ``None``
    when ``--metrics-dir`` names the folder (written as given) or links are unavailable."""
    from loglead_lo2 import results
    from loglead_lo2.detection.registry import REGISTRY

    if opts.metrics_dir is not None or not opts.root.is_dir() \
            or not results.symlinks_work(opts.root):
        return None
    items: list[str | None] = []
    if not opts.skip_if:
        items.append(opts.if_config.item)
    if opts.phase == "full":
        items += [REGISTRY[k].item for k in opts.models if k in REGISTRY]
    return results.new_run_folder(opts.root, results.run_name(items, opts.label_mode))


def _check_metrics_dir(root: Path, metrics: Path) -> None:
    """The metrics folder is detection's own: never the loader's folder or one holding it."""
    r, m = root.resolve(), metrics.resolve()
    if m == r or r.is_relative_to(m):
        raise UserError(f"--metrics-dir {metrics}: must be a folder of its own, not --root "
                        f"{root} or a folder holding it (default: {root / 'metrics'}).")


def _verified_load(root: Path) -> dict[str, Any] | None:
    """The loader's manifest of ``root`` after checking the files detection reads."""
    from loglead_lo2.outputs import verify_set

    return verify_set(root, A.LOAD_MANIFEST_FILE, A.LOADER_FILES, allow_unlisted=True)


def _owned(metrics: Path) -> list[str]:
    """The files of ``<metrics>`` a detection run replaces: every name it can write (for
    every registry key and service), its ``shap_*`` figures, and what the previous run's
    manifest lists."""
    from loglead_lo2 import SERVICES
    from loglead_lo2.detection.registry import REGISTRY
    from loglead_lo2.outputs import read_manifest

    names = set(A.detection_files(REGISTRY, SERVICES))
    if metrics.is_dir():
        names.update(p.name for p in metrics.glob("shap_*") if p.is_file())
        try:
            names.update((read_manifest(metrics, A.DETECT_MANIFEST_FILE) or {})
                         .get("files") or {})
        except UserError:
            pass  # an unreadable manifest is replaced by the new one
    return sorted(names)


def _run(opts: DetectOptions, say: Say) -> DetectResult:
    """The detection run proper (``opts.metrics_path`` is the stage folder)."""
    from loglead_lo2.detection.registry import REGISTRY
    from loglead_lo2.detection.split import run_grouped_split

    result = DetectResult()
    # The forest is a registry entry, run once by the forest step (--if-* flags): listing it
    # in --models runs that step even with --skip-if.
    forest = not opts.skip_if or (opts.phase == "full" and ifo.IF_KEY in opts.models)
    specs = ([REGISTRY[k] for k in opts.models if k != ifo.IF_KEY]
             if opts.phase == "full" else [])
    truth = ground_truth_input(opts.root, opts.manifest)  # bad --manifest fails early
    too_big = _input_guard(opts, specs, say)
    skipped_specs = [s for s in specs if s.key in too_big]
    specs = [s for s in specs if s.key not in too_big]
    df = load_input(opts, specs, say, result)
    result.rows = df.height
    for note in opts.notes:
        say(note)
    df, labels, window = prepare_labels(df, opts.label_mode, opts.root, say)
    result.labels, result.window = labels.as_dict(), window.as_dict()
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
    thr = opts.thresholds
    settings = RunSettings(opts.label_mode, rep.HOLDOUT, split.note if split else None,
                           window, opts.per_service,
                           f"fp-target {thr.fp_target:g}" if thr.rule == "fp-target"
                           else "model").as_dict()
    result.settings = settings
    if split is not None:
        hold = df.filter(pl.col("run").is_in(split.test_runs))
        say(f"[Split] train: {len(split.train_runs)} run(s), "
            f"{df.height - hold.height:,} sequences; holdout: {len(split.test_runs)} run(s) "
            f"{', '.join(sorted(split.test_runs))}, {hold.height:,} sequences "
            f"({int(hold['anomaly'].sum())} anomalous)"
            + (f"; {split.note}" if split.note else ""))
        parts = list(service_parts(df, split.train_runs, split.test_runs, opts.per_service))
    else:
        hold = df.clear()
        parts = [ServicePart(p.service, p.rows, p.rows, p.rows.clear()) for p in
                 service_parts(df, [], [], opts.per_service)]
    report_parts(parts, opts.per_service, say, result.notes, result.skipped_services)
    loaded = (if_phase.load_service_bundles(opts, parts, df.columns, say)
              if opts.load_model and forest else {})
    _check_outputs(opts, specs, parts)
    if split is not None:
        _leakage(opts, hold, window.windowed, say, result)
    say(truth.line if truth is not None else f"[GroundTruth] {GT_ABSENT}")
    limits, guard_lines = memory_limits(enabled=opts.memory_guard)
    for line in guard_lines:
        say(line)
    evals = Evaluations(truth=truth, say=say)
    if forest:
        recs = if_phase.run_if_phase(opts, parts, split, limits, say, result, evals, settings,
                                loaded)
        result.board += _board_rows(ifo.IF_KEY, recs, opts.per_service)
    if specs and split is not None:
        for spec in progress(specs, desc="models", unit="model"):
            outs = [o for part in parts if not part.skip and (o := run_part(
                opts, spec, part, split, limits, say, evals, settings)) is not None]
            for o in outs:
                result.artifacts += o.artifacts
                result.notes += o.notes
            recs = [o.record for o in outs if o.record is not None]
            _model_json(opts, spec.key, recs, parts, result)
            _write_predictions(opts, spec.key,
                               [o.predictions for o in outs
                                if o.record is not None and not o.skipped],
                               say, result)
            result.board += _board_rows(spec.key, recs, opts.per_service)
        for spec in skipped_specs:
            rec = ModelRecord.skipped_by_guard(
                spec.key, kind=spec.kind, description=spec.description, reason=too_big[spec.key],
                split={"train_runs": sorted(split.train_runs),
                       "holdout_runs": sorted(split.test_runs)}, settings=settings)
            _model_json(opts, spec.key, [rec], [], result)
            result.board.append(rec)
    elif specs:
        say("[Models] skipped: registry models need a hold-out split (see [Split] above)")
    if opts.cv:
        _cross_validate(opts, df, specs, truth, say, result, forest and not opts.load_model)
    _write_summaries(opts, split, result, evals, say)
    return result




def _input_guard(opts: DetectOptions, specs: list[Any], say: Say) -> dict[str, str]:
    """Models whose token column is too large to read (:func:`~.budget.input_skips`), each
    announced by one ``[Resource]`` line; they get a skipped record, the others run."""
    from loglead_lo2.detection.budget import input_skips

    path = opts.root / ENHANCED_FILE
    if not path.is_file() or not specs:
        return {}
    skips = input_skips([path], specs, enabled=opts.memory_guard)
    for key, reason in skips.items():
        say(f"[Resource] {key}: skipped ({reason})")
    return skips


def _cross_validate(opts: DetectOptions, df: pl.DataFrame, specs: list[Any], truth: Any,
                    say: Say, result: DetectResult, with_forest: bool) -> None:
    from loglead_lo2.detection import cv

    started = time.perf_counter()
    folds = cv.cross_validate(opts, df, specs, truth, say, with_forest=with_forest)
    summary = cv.summarise(folds)
    result.artifacts += cv.write_cv(opts.metrics_path, folds, summary, int(opts.cv or 0),
                                    result.settings)
    say(f"[CV] {opts.cv} folds, {folds.height} (model, service, fold) results in "
        f"{time.perf_counter() - started:.1f}s: cv_leaderboard.md")


def _leakage(opts: DetectOptions, hold: pl.DataFrame, windowed: bool, say: Say,
             result: DetectResult) -> None:
    from loglead_lo2.detection.leakage import leakage_lines, leakage_report

    report = leakage_report(hold, windowed=windowed, label_mode=opts.label_mode)
    for line in leakage_lines(report):
        say(line)
    result.leakage = report
    path = rep.write_json(opts.metrics_path / LEAKAGE_FILE,
                          {"split": rep.HOLDOUT, "settings": result.settings, **report})
    result.artifacts.append(path)


def _check_outputs(opts: DetectOptions, specs: list[Any], parts: list[ServicePart]) -> None:
    """Refuse to replace bundles before any work is done (not after a long fit)."""
    from loglead_lo2.schema import check_overwrite

    services = [p.service for p in parts if not p.skip]
    for service in services:
        if opts.save_model and not opts.skip_if:
            bundle = service_bundle(Path(opts.save_model), service)
            for path in (bundle, bundle.parent / A.IF_METADATA):  # the pair is one unit
                check_overwrite(path, opts.overwrite_model, "--overwrite-model")
        if opts.save_sup_models:
            for spec in specs:
                check_overwrite(sup_bundle(opts.save_sup_models, spec.key, service),
                                opts.overwrite_model,
                                "--overwrite-model")


def _write_predictions(opts: DetectOptions, key: str, frames: list[pl.DataFrame], say: Say,
                       result: DetectResult) -> None:
    """``<metrics>/<key>_predictions.parquet``: every row of every run, its split, label,
    score, threshold and prediction (per service: each row scored by its service's model)."""
    from loglead_lo2.schema import write_parquet

    if not frames:
        return
    table = pl.concat(frames, how="diagonal_relaxed")
    path = opts.metrics_path / A.predictions_file(key)
    write_parquet(table, path)
    result.artifacts.append(path)
    counts = dict(table.group_by("split").len().iter_rows())
    say(f"[Predictions] {key}: {path.name} ({table.height:,} rows: "
        + ", ".join(f"{counts.get(k, 0):,} {k}" for k in ("train", "calibration", "holdout"))
        + ")")


def _board_rows(key: str, records: list[ModelRecord], per_service: bool
                ) -> list[ModelRecord]:
    """Leaderboard records of one model: its record, or per-service records + macro row."""
    if not per_service or not records:
        return records
    return [*records, macro(key, records)]


def _model_json(opts: DetectOptions, key: str, records: list[ModelRecord],
                parts: list[ServicePart], result: DetectResult) -> None:
    if not records:
        return
    if not opts.per_service:
        top = records[0]
    else:
        top = combined(key, records, {p.service: p.skip for p in parts if p.skip})
    result.records[key] = top
    result.artifacts.append(rep.write_json(opts.metrics_path / A.model_record(key),
                                           top.to_dict()))


def _write_summaries(opts: DetectOptions, split: Any, result: DetectResult,
                     evals: Evaluations, say: Say) -> None:
    mdir = opts.metrics_path
    if result.board:
        result.artifacts += rep.write_leaderboard(mdir, result.board,
                                                  settings=result.settings,
                                                  leakage=result.leakage)
        recalls = evals.recall_tables()
        table = rep.recall_table({k: v[0] for k, v in recalls.items()},
                                 {k: v[1] for k, v in recalls.items()})
        result.artifacts += rep.write_recall_table(mdir, table)
        result.artifacts += rep.write_signature_table(mdir, evals.signature_table(),
                                                      result.settings)
    for key, tables in sorted(evals.gt_tables.items()):
        result.artifacts.append(rep.write_ground_truth(mdir, key, tables))
    run = {
        "phase": opts.phase,
        "settings": result.settings,
        "labels": result.labels,
        "window": result.window,
        "ground_truth": (evals.truth.describe() if evals.truth is not None
                         else {"manifest": None, "note": GT_ABSENT}),
        "skipped_services": result.skipped_services,
        "options": {k: (str(v) if isinstance(v, Path) else v)
                    for k, v in asdict(opts).items() if k not in ("if_config", "stage_dir")},
        "if_config": asdict(opts.if_config),
        "split": None if split is None else {
            "train_runs": sorted(split.train_runs), "holdout_runs": sorted(split.test_runs),
            "note": split.note or None},
        "models": sorted(result.records),
        "notes": result.notes,
    }
    result.artifacts.append(rep.write_json(mdir / RUN_FILE, run))
    say(f"[Report] metrics in {mdir} ({rep.settings_text(result.settings).replace('`', '')})")
