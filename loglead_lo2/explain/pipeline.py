"""The explainability phase (phase F) as a library function: :func:`run_explain`.

By default the phase explains **the models the detection phase evaluated**, not new ones
(:mod:`.reuse`): it reads ``<metrics>/detect_run.json`` (settings, split, models), every
requested model's ``<metrics>/<key>_predictions.parquet`` and its bundle
``<metrics>/models/<key>.joblib`` (sha256 checked against ``<key>.yml``), and uses exactly
those rows, that split (hold-out rows = ``split == "holdout"``), those scores, thresholds and
flags (``pred``). It stops with one line when a file is missing, when detection ran
``--per-service``, or when the enhanced sequences no longer match the predictions.

With ``retrain`` (``--retrain``) the models are fitted again through the detection phase's
own model path (:mod:`.retrain`) on a fresh run-grouped split of the enhanced sequences.

Either way, every explanation is computed on the HELD-OUT runs (:mod:`.steps`):
nearest-normal mapping for ``nn_source``, SHAP per registry model whose ``shap`` kind is not
``none`` (on the loaded or retrained estimator; background from the rows it was fitted on),
false-positive lists per model, ``summary.md`` + ``summary.json`` (:mod:`.report`).

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

import polars as pl

from loglead_lo2.artifacts import ENHANCED_FILE, EXPLAIN_MANIFEST_FILE
from loglead_lo2.detection import iforest as ifo
from loglead_lo2.detection.labels import DEFAULT_LABEL_MODE, RunSettings, prepare_labels
from loglead_lo2.detection.registry import DEFAULT_MODELS, REGISTRY, available_numeric
from loglead_lo2.detection.thresholds import ThresholdSettings
from loglead_lo2.errors import UserError
from loglead_lo2.explain.shap_report import ShapSettings
from loglead_lo2.explain.views import ModelView, build_view
from loglead_lo2.schema import read_parquet, read_parquet_schema, with_bag_counts

log = logging.getLogger(__name__)

ARTIFACT_PATTERNS: tuple[str, ...] = (
    "nn_mapping.csv", "nn_mapping.md", "shap_*_summary.png", "shap_*_top_features.csv",
    "shap_*_values.parquet",
    "false_positives_*.csv", "summary.md", "summary.json",
)
KEY_COLUMNS: tuple[str, ...] = (*ifo.PREDICTION_KEYS, "seq_len", "duration_sec")
TOKEN_COLUMNS: tuple[str, ...] = ("e_words", "e_event_drain_id")

Say = Callable[[str], None]


@dataclass
class ExplainOptions:
    """Resolved settings of one explainability run (the CLI flags).

    ``training_flags`` are the ``(attribute, flag, value)`` triples of the flags the user gave
    that configure training (split, forest, thresholds, guards, seed): applied with
    ``retrain``, named as ignored without it (the attribute finds detection's value).
    """

    root: Path = Path("demo/result/lo2")
    out_dir: Path | None = None
    metrics_dir: Path | None = None
    retrain: bool = False
    if_config: ifo.IFConfig = field(default_factory=ifo.IFConfig)
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
    thresholds: ThresholdSettings = field(default_factory=ThresholdSettings)
    seed: int = 42
    overwrite: bool = False
    memory_guard: bool = True
    label_mode: str = DEFAULT_LABEL_MODE
    training_flags: tuple[tuple[str, str, Any], ...] = ()

    @property
    def output(self) -> Path:
        return self.out_dir if self.out_dir is not None else self.root / "explainability"

    @property
    def metrics_path(self) -> Path:
        return self.metrics_dir if self.metrics_dir is not None else self.root / "metrics"

    @property
    def source(self) -> str:
        """``nn_source`` (``if`` is read as ``isolation_forest``), else the forest (or the
        first model with ``skip_if``)."""
        if self.nn_source:
            return ifo.IF_KEY if self.nn_source == "if" else self.nn_source
        return ifo.IF_KEY if not self.skip_if else (
            self.sup_models[0] if self.sup_models else "")


@dataclass
class ExplainResult:
    """What a run produced."""

    out_dir: Path
    artifacts: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """The rows (sorted by ``seq_id``), split and model views the explanations use."""

    df: pl.DataFrame
    views: dict[str, ModelView]
    split: dict[str, Any]
    settings: dict[str, Any]
    labels: dict[str, Any]
    windowed: bool
    label_mode: str
    source: dict[str, Any]
    if_config: dict[str, Any] | None


def check_options(opts: ExplainOptions) -> None:
    """Reject contradictory or out-of-range settings with one clear message."""
    if ifo.IF_KEY in opts.sup_models:
        raise UserError(f"--sup-models {ifo.IF_KEY}: the Isolation Forest is explained as "
                        "'if' unless --skip-if; drop it from --sup-models.")
    unknown = [k for k in opts.sup_models if k not in REGISTRY]
    if unknown:
        raise UserError(f"unknown model key(s): {', '.join(unknown)}. Valid keys: "
                        f"{', '.join(k for k in REGISTRY if k != ifo.IF_KEY)}")
    if opts.skip_if and not opts.sup_models:
        raise UserError("--skip-if without --sup-models leaves nothing to explain.")
    valid = ([ifo.IF_KEY] if not opts.skip_if else []) + list(opts.sup_models)
    if opts.source not in valid:
        why = " (--skip-if drops the Isolation Forest)" if opts.source == ifo.IF_KEY else ""
        raise UserError(f"--nn-source {opts.source}: not among the models of this run{why}; "
                        f"choose one of: {', '.join(valid)}.")
    if not 0 < opts.sup_holdout_fraction < 1:
        raise UserError(f"--sup-holdout-fraction must be in (0, 1), got "
                        f"{opts.sup_holdout_fraction}.")
    if not 0 <= opts.if_config.holdout_fraction < 1:
        raise UserError(f"--if-holdout-fraction must be in [0, 1), got "
                        f"{opts.if_config.holdout_fraction}.")
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


def _read(path: Path, wanted: list[str], schema: dict[str, Any]) -> pl.DataFrame:
    """The key, token and ``wanted`` feature columns of the enhanced sequences."""
    missing = sorted({c for c in wanted if c not in schema})
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)} (available: "
                        f"{', '.join(schema)}). Re-run the loader with --save-parquet.")
    from loglead_lo2.detection.inputs import check_rows

    cols = [c for c in (*KEY_COLUMNS, *TOKEN_COLUMNS) if c in schema]
    df = read_parquet(path, "sequences_enhanced",
                      columns=with_bag_counts([*cols, *wanted], schema))
    check_rows(df, path)
    return df


def needed_columns(opts: ExplainOptions, schema: dict[str, Any], bundle_vec: Any) -> list[str]:
    """Feature columns of the models a retrain fits (or of a ``--load-model`` forest)."""
    wanted: list[str] = []
    if not opts.skip_if:
        vec = bundle_vec if bundle_vec is not None else opts.if_config
        wanted += [c for c in (vec.item, *vec.numeric) if c]
    for key in opts.sup_models:
        spec = REGISTRY[key]
        wanted += [c for c in (spec.item,) if c] + list(available_numeric(spec, schema))
    return wanted


def _say_split(say: Say, df: pl.DataFrame, train_runs: list[str], holdout: list[str],
               how: str) -> None:
    hold = df.filter(pl.col("run").is_in(holdout))
    say(f"[Split] {how}: train {len(train_runs)} run(s), {df.height - hold.height:,} "
        f"sequences; held out {len(holdout)} run(s) {', '.join(holdout)}, {hold.height:,} "
        f"sequences ({int(hold['anomaly'].sum())} anomalous). Explanations use the held-out "
        "runs only.")


def _reused(opts: ExplainOptions, path: Path, say: Say, warnings: list[str]) -> Prepared:
    """Rows, split and views of the detection run in ``opts.metrics_path``."""
    from loglead_lo2.explain import reuse

    metrics = opts.metrics_path
    fix = reuse.fix_command(opts.root, metrics, opts.sup_models, opts.skip_if)
    run = reuse.read_detect_run(metrics, fix)
    keys = ([ifo.IF_KEY] if not opts.skip_if else []) + list(opts.sup_models)
    saved = reuse.load_saved(run, [reuse.detection_key(k) for k in keys], fix)
    for model in saved.values():
        for note in model.bundle.notes:
            (warnings.append(note) if "WARNING" in note else log.info(note))
    say(reuse.ignored_line(metrics, list(saved), [
        (flag, value, run.option(attr)) for attr, flag, value in opts.training_flags]))
    df = _read(path, reuse.feature_columns(saved), read_parquet_schema(path))
    say(f"[Input] {path}: {df.height:,} sequences, {df['run'].n_unique()} run(s)")
    df, labels, window = prepare_labels(df, run.label_mode, opts.root, say, "explanations")
    warnings.extend(labels.notes)
    df = df.sort("seq_id")
    for model in saved.values():
        reuse.check_rows(df, model.predictions, model.predictions_path, path)
    holdout = sorted(run.split["holdout_runs"])
    _say_split(say, df, run.split["train_runs"], holdout, f"the detection run's ({run.path})")
    views = {key: build_view(src, df, holdout) for key, src in
             reuse.model_sources(saved).items()}
    hold = df.filter(pl.col("run").is_in(holdout))
    for key in keys:
        reuse.check_rescored(saved[reuse.detection_key(key)], hold, views[key].scores, path)
    split = {"note": run.split.get("note") or run.settings.get("split_note"),
             "train_runs": sorted(run.split["train_runs"]), "holdout_runs": holdout}
    source = {"mode": "reuse", "metrics_dir": str(metrics), "detect_run": str(run.path),
              "models": {k: {"bundle": str(m.bundle.path), "sha256": m.bundle.sha256,
                             "predictions": str(m.predictions_path)}
                         for k, m in ((k, saved[reuse.detection_key(k)]) for k in keys)},
              "ignored_flags": [flag for _attr, flag, _v in opts.training_flags]}
    return Prepared(df, views, split, run.settings, labels.as_dict(), window.windowed,
                    run.label_mode, source,
                    None if opts.skip_if else run.data.get("if_config"))


def _retrained(opts: ExplainOptions, path: Path, say: Say, warnings: list[str]) -> Prepared:
    """Rows, a fresh split and views of models fitted again (``--retrain``)."""
    from loglead_lo2.detection.guards import memory_limits
    from loglead_lo2.detection.split import run_grouped_split
    from loglead_lo2.explain import report, retrain

    bundle = retrain.load_forest(opts) if (opts.load_model and not opts.skip_if) else None
    schema = read_parquet_schema(path)
    # the input file's row order, as the detection phase fits on it
    df = _read(path, needed_columns(opts, schema, bundle.vectorizer if bundle else None),
               schema)
    say(f"[Input] {path}: {df.height:,} sequences, {df['run'].n_unique()} run(s)")
    df, labels, window = prepare_labels(df, opts.label_mode, opts.root, say, "explanations")
    warnings.extend(labels.notes)
    split = run_grouped_split(df, fraction=opts.sup_holdout_fraction,
                              min_groups=opts.sup_holdout_min_groups,
                              shuffle=opts.sup_holdout_shuffle, seed=opts.seed)
    _say_split(say, df, split.train_runs, sorted(split.test_runs), "new run-grouped split")
    limits, guard_lines = memory_limits(enabled=opts.memory_guard)
    warnings.extend(guard_lines)
    given = [f"{flag} {value}" if value is not True else flag
             for _attr, flag, value in opts.training_flags]
    say("[Retrain] fitting the models again through the detection phase's model path ("
        + (", ".join(given) or "default training flags") + ")")
    sources = retrain.retrain(opts, df, split, limits, say, warnings, bundle)
    df = df.sort("seq_id")
    holdout = sorted(split.test_runs)
    views = {key: build_view(src, df, holdout) for key, src in sources.items()}
    thr = opts.thresholds
    settings = RunSettings(opts.label_mode, "holdout", split.note, window, False,
                           threshold=f"fp-target {thr.fp_target:g}" if thr.rule == "fp-target"
                           else "model").as_dict()
    hold = df.filter(pl.col("run").is_in(holdout))
    source = {"mode": "retrain", "metrics_dir": str(opts.metrics_path),
              "comparison": report.compare_with_detection(opts.metrics_path, views, hold)}
    return Prepared(df, views, {"note": split.note, "train_runs": sorted(split.train_runs),
                                "holdout_runs": holdout},
                    settings, labels.as_dict(), window.windowed, opts.label_mode, source,
                    None if opts.skip_if else _plain_config(opts.if_config))


def _plain_config(cfg: ifo.IFConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(cfg)


def run_explain(opts: ExplainOptions, progress: Say | None = None) -> ExplainResult:
    """Run the phase and write its artifacts (see the module docstring) as one output set
    (:mod:`loglead_lo2.outputs`): staged, committed with ``explain_manifest.json``, under a
    lock on the output folder and shared locks on ``<root>`` and ``<metrics>``."""

    from loglead_lo2.outputs import OutputSet, reading

    say = progress or (lambda _m: None)
    check_options(opts)
    path = input_path(opts.root)
    from loglead_lo2 import results

    run_dir = results.run_folder_of(opts.metrics_path) if opts.out_dir is None else None
    final = run_dir / results.EXPLAIN if run_dir is not None else opts.output
    owned = [p.name for p in check_out_dir(final, opts.overwrite)]
    with reading(opts.root, opts.metrics_path), \
            OutputSet(final, phase="explain", manifest=EXPLAIN_MANIFEST_FILE, owned=owned,
                      overwrite=opts.overwrite, flag="--overwrite") as staged:
        detect = _current_detection(opts)

        def shown(message: str) -> None:
            say(staged.shown(message))

        result = _explain(opts, path, staged.stage, shown)
        manifest = staged.commit({"tool": "loglead-lo2", "root": str(opts.root),
                                  "detect_set_id": (detect or {}).get("set_id")})
        result.out_dir = final
        result.artifacts = [Path(staged.shown(str(p))) for p in result.artifacts]
        if run_dir is not None:  # <root>/explainability shows the latest run's explanations
            results.publish(opts.root, run_dir, results.EXPLAIN)
    stale = sorted(set(owned) - set(manifest["files"]))
    if stale:
        say(f"[Output] removed {len(stale)} stale file(s) of the earlier run: "
            + ", ".join(stale))
    return result


def _current_detection(opts: ExplainOptions) -> dict[str, Any] | None:
    """The detection run's manifest, checked: its files are whole and it was computed from
    the load now in ``<root>`` (not from an earlier one)."""
    from loglead_lo2.artifacts import DETECT_MANIFEST_FILE, LOAD_MANIFEST_FILE, RUN_FILE
    from loglead_lo2.outputs import verify_set

    load = verify_set(opts.root, LOAD_MANIFEST_FILE, [ENHANCED_FILE], allow_unlisted=True)
    if opts.retrain:
        return None
    present = [n for n in (RUN_FILE,) if (opts.metrics_path / n).exists()]  # absent: said later
    detect = verify_set(opts.metrics_path, DETECT_MANIFEST_FILE, present)
    if detect and load and detect.get("load_set_id") not in (None, load.get("set_id")):
        raise UserError(
            f"{opts.metrics_path}: computed from an earlier load of {opts.root} (load set "
            f"{str(detect.get('load_set_id'))[:12]}, now {str(load.get('set_id'))[:12]}); "
            f"re-run lo2-detect --root {opts.root}, or pass --retrain.")
    return detect


def _explain(opts: ExplainOptions, path: Path, out: Path, say: Say) -> ExplainResult:
    """The phase proper, writing into ``out`` (the stage folder)."""
    from loglead_lo2.detection.leakage import leakage_report, leakage_warnings
    from loglead_lo2.explain import report, steps

    started = time.perf_counter()
    result = ExplainResult(out_dir=out)
    warnings = result.warnings
    prep = (_retrained if opts.retrain else _reused)(opts, path, say, warnings)
    df, views, holdout = prep.df, prep.views, prep.split["holdout_runs"]
    in_hold = pl.col("run").is_in(holdout)
    train, hold = df.filter(~in_hold), df.filter(in_hold)
    leak = leakage_report(hold, windowed=prep.windowed, label_mode=prep.label_mode)
    warnings += [f"[Leakage] {text}" for _, text in leakage_warnings(leak)]
    out.mkdir(parents=True, exist_ok=True)
    train_normal = train.filter(pl.col("normal"))
    nn_info = steps.nn_step(views[opts.source], hold, train_normal, df.columns, holdout,
                            top_k=opts.nn_top_k, root=opts.root, out_dir=out, say=say,
                            warnings=warnings, artifacts=result.artifacts)
    shap_info = {} if opts.skip_shap else steps.shap_step(
        views, hold, train, opts.shap, len(holdout), out, say, warnings, result.artifacts)
    fp_counts = steps.fp_step(views, hold, train_normal, df.columns, out, say,
                              result.artifacts)
    result.summary = report.build_summary(
        opts, path, prep, train, hold, nn_info, shap_info, fp_counts, leak, warnings,
        time.perf_counter() - started)
    result.artifacts += report.write_summary(result.summary, out)
    return result


__all__ = [
    "ARTIFACT_PATTERNS",
    "ExplainOptions",
    "ExplainResult",
    "ModelView",
    "Prepared",
    "check_options",
    "check_out_dir",
    "existing_artifacts",
    "input_path",
    "run_explain",
]
