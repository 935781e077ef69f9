"""``lo2-explain`` / ``demo/lo2_e2e/lo2_phase_f_explainability.py``: phase F from the shell."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from loglead_lo2.cli_common import (
    Parser,
    add_verbosity,
    cli_args,
    contamination,
    guarded,
    number,
    phase_say,
    positive_int,
)
from loglead_lo2.detection.labels import DEFAULT_LABEL_MODE, LABEL_MODES
from loglead_lo2.detection.thresholds import DEFAULT_FP_TARGET, THRESHOLD_RULES
from loglead_lo2.errors import UserError

DESCRIPTION = """\
Explainability phase (F) of the LO2 pipeline: explains the models the detection phase
evaluated. By default it reuses lo2-detect's output in --metrics-dir (detect_run.json, the
<key>_predictions.parquet and the fitted bundles under models/): the same rows, hold-out
split, scores, thresholds and flags. --retrain fits the models again instead, through the
detection phase's own model path. Everything is explained on the HELD-OUT runs only:
nearest-normal mapping of the top anomalies, SHAP per model (explainer kind from the model
registry) and false-positive lists."""

EPILOG = """\
reuse (default): needs a detection run first, e.g.
  lo2-detect --root demo/result/lo2 --models event_lr_words,event_xgb_words
Training flags (split, --if-*, thresholds, --load-model, --label-mode, guards) then do not
apply: one [Reuse] line names the ones given. A missing model, a --per-service detection run
or enhanced sequences that changed since detection stop the run (exit 2).

artifacts (in --out-dir, default <root>/explainability):
  nn_mapping.csv + nn_mapping.md       top --nn-top-k held-out sequences of --nn-source, each
                                       with its nearest normal training sequence and the
                                       tokens/templates that differ most
  shap_<model>_summary.png             mean |SHAP| bar plot (top 20) per model with SHAP
  shap_<model>_top_features.csv        feature, mean_abs_shap, mean_shap, direction
  false_positives_<model>.csv          held-out normal sequences flagged at the threshold
  summary.md + summary.json            models' origin, split, thresholds, counts, SHAP
                                       reductions, warnings
An existing folder with these files is refused unless --overwrite (which also removes the
earlier run's files that this run does not rewrite).

examples:
  MPLBACKEND=Agg %(prog)s --root demo/result/lo2 --if-contamination 0.15 --nn-top-k 50 \\
      --shap-sample 200
  %(prog)s --root demo/result/lo2 --skip-if --sup-models event_lr_words,event_xgb_words \\
      --nn-source event_lr_words --shap-background 256 --sup-holdout-fraction 0.2
  %(prog)s --root demo/result/lo2 --retrain --if-contamination 0.15 --threshold model"""

DEFAULT_BUNDLE = Path("models/lo2_if.joblib")
DEFAULTS: dict[str, Any] = {
    "sample_seed": 42, "label_mode": DEFAULT_LABEL_MODE, "sup_holdout_fraction": 0.2,
    "sup_holdout_min_groups": 1, "threshold": "fp-target", "fp_target": DEFAULT_FP_TARGET,
    "calibration_fraction": 0.2, "if_holdout_fraction": 0.2,
}
"""Training defaults (the detection phase's): flags default to None so a given one is seen."""

TRAINING_FLAGS: tuple[tuple[str, str], ...] = (
    ("label_mode", "--label-mode"), ("sup_holdout_fraction", "--sup-holdout-fraction"),
    ("sup_holdout_min_groups", "--sup-holdout-min-groups"),
    ("sup_holdout_shuffle", "--sup-holdout-shuffle"), ("threshold", "--threshold"),
    ("fp_target", "--fp-target"), ("calibration_fraction", "--calibration-fraction"),
    ("if_contamination", "--if-contamination"), ("if_n_estimators", "--if-n-estimators"),
    ("if_item", "--if-item"), ("if_numeric", "--if-numeric"),
    ("if_holdout_fraction", "--if-holdout-fraction"), ("load_model", "--load-model"),
    ("disable_memory_guard", "--disable-memory-guard"), ("sample_seed", "--sample-seed"),
)
"""Flags that configure training: applied with --retrain, reported as ignored without."""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    from loglead_lo2.detection.iforest import IF_ITEMS
    from loglead_lo2.detection.registry import DEFAULT_MODELS

    p = Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbosity(p, quiet_help="no progress lines or bars: only the [Done] summary, "
                                "warnings and errors")
    p.add_argument("--list-models", action="store_true",
                   help="print the model registry (as lo2-detect --list-models) and exit")
    g = p.add_argument_group("input, output and models' origin")
    g.add_argument("--root", type=Path, default=Path("demo/result/lo2"),
                   help="folder with lo2_sequences_enhanced.parquet (default demo/result/lo2)")
    g.add_argument("--metrics-dir", type=Path, default=None,
                   help="the detection run whose models are explained (default "
                        "<root>/metrics, as lo2-detect --metrics-dir)")
    g.add_argument("--retrain", action="store_true",
                   help="fit the models again (detection's model path, the training flags "
                        "below) instead of reusing the detection run's models")
    g.add_argument("--out-dir", "--output-dir", dest="out_dir", type=Path, default=None,
                   help="where the artifacts go (default <root>/explainability)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the explainability files of an earlier run in --out-dir "
                        "(without it the run refuses to start when such files exist)")
    g.add_argument("--sample-seed", type=int, default=None,
                   help="seed for the SHAP samples and, with --retrain, the split shuffle and "
                        "every model (default 42)")
    g.add_argument("--disable-memory-guard", action="store_true",
                   help="--retrain: keep the default hyper-parameter limits even when RAM is low")
    g.add_argument("--label-mode", choices=LABEL_MODES, default=None,
                   help="--retrain: target-service (default): a row is anomalous iff its error "
                        "case targets the row's service (correct rows and the other services' "
                        "rows of error cases are normal); test-case: iff its test case is an "
                        "error case. Reused models keep the detection run's label mode")
    s = p.add_argument_group("--retrain: hold-out split (whole runs) and thresholds")
    s.add_argument("--sup-holdout-fraction", type=number, default=None,
                   help="share of runs held out (default 0.2, newest runs)")
    s.add_argument("--sup-holdout-min-groups", type=positive_int, default=None,
                   help="hold out at least this many runs (default 1)")
    s.add_argument("--sup-holdout-shuffle", action="store_true",
                   help="pick the held-out runs at random (seeded) instead of the newest")
    s.add_argument("--threshold", choices=THRESHOLD_RULES, default=None,
                   help="fp-target (default): flag at most --fp-target of the calibration "
                        "runs' normal rows; model: each model's own cut-off")
    s.add_argument("--fp-target", type=number, default=None, metavar="F",
                   help=f"target false-positive rate (default {DEFAULT_FP_TARGET:g})")
    s.add_argument("--calibration-fraction", type=number, default=None, metavar="F",
                   help="share of training runs held back to set registry models' "
                        "thresholds (default 0.2)")
    f = p.add_argument_group("Isolation Forest")
    f.add_argument("--skip-if", action="store_true",
                   help="do not explain the Isolation Forest")
    f.add_argument("--if-contamination", type=contamination, default=None,
                   help="--retrain: expected anomaly share, 'auto' or (0, 0.5]: the forest's "
                        "own cut-off (default auto)")
    f.add_argument("--if-n-estimators", type=positive_int, default=None,
                   help="--retrain: trees (default 100)")
    f.add_argument("--if-item", choices=IF_ITEMS, default=None,
                   help="--retrain: token list the forest uses (default e_words)")
    f.add_argument("--if-numeric", default=None, metavar="COLS",
                   help="--retrain: comma list of numeric sequence columns added to the "
                        "tokens, e.g. seq_len,duration_sec")
    f.add_argument("--if-holdout-fraction", type=number, default=None,
                   help="--retrain: share of training runs held back to set the forest's "
                        "threshold (default 0.2)")
    f.add_argument("--load-model", type=Path, nargs="?", const=DEFAULT_BUNDLE, default=None,
                   metavar="PATH",
                   help=f"--retrain: score a saved forest (default path {DEFAULT_BUNDLE}; "
                        "signature checked against its model.yml, threshold from it) "
                        "instead of training one")
    f.add_argument("--trust-unsigned-bundle", action="store_true",
                   help="load model bundles whose signature cannot be verified (unsigned, "
                        "another key, no key) with a warning: only for bundles you vouch for; "
                        "joblib files run code when loaded")
    m = p.add_argument_group("registry models")
    m.add_argument("--sup-models", default=None, metavar="KEYS",
                   help=f"comma list of registry keys to explain (default "
                        f"{','.join(DEFAULT_MODELS)}; 'all' = every key; see "
                        "--list-models)")
    n = p.add_argument_group("nearest-normal mapping")
    n.add_argument("--nn-source", default=None, metavar="MODEL",
                   help="'if' or one of --sup-models: whose scores pick the top anomalies and "
                        "whose feature space measures similarity (default if; with --skip-if "
                        "the first --sup-models key)")
    n.add_argument("--nn-top-k", type=positive_int, default=50,
                   help="held-out sequences with the highest scores to map (default 50)")
    h = p.add_argument_group("SHAP")
    h.add_argument("--skip-shap", action="store_true", help="compute no SHAP values")
    h.add_argument("--shap-sample", type=positive_int, default=200,
                   help="held-out rows explained per model (seeded sample; default 200)")
    h.add_argument("--shap-background", type=positive_int, default=256,
                   help="background rows from the model's training rows (default 256)")
    h.add_argument("--shap-feature-threshold", type=positive_int, default=2000,
                   help="explain at most this many features: above it, the top features by "
                        "model weight/importance (default 2000)")
    h.add_argument("--shap-cell-threshold", type=positive_int, default=2_000_000,
                   help="rows x features limit; above it fewer rows are explained "
                        "(default 2000000)")
    return p


_IF_FLAGS = (("if_contamination", "--if-contamination"), ("if_n_estimators", "--if-n-estimators"),
             ("if_item", "--if-item"), ("if_numeric", "--if-numeric"),
             ("if_holdout_fraction", "--if-holdout-fraction"), ("load_model", "--load-model"))


def _value(args: argparse.Namespace, attr: str) -> Any:
    value = getattr(args, attr)
    return DEFAULTS[attr] if value is None and attr in DEFAULTS else value


def given_training_flags(args: argparse.Namespace) -> tuple[tuple[str, str, Any], ...]:
    """``(attribute, flag, value)`` of every training flag on the command line."""
    return tuple((attr, flag, getattr(args, attr)) for attr, flag in TRAINING_FLAGS
                 if getattr(args, attr) not in (None, False))


def options_from_args(args: argparse.Namespace):  # noqa: ANN201 - ExplainOptions (lazy import)
    """Check the flags and build :class:`~loglead_lo2.explain.pipeline.ExplainOptions`."""
    from loglead_lo2.detection.iforest import IFConfig, resolve_numeric
    from loglead_lo2.detection.registry import DEFAULT_MODELS, resolve_models
    from loglead_lo2.detection.thresholds import ThresholdSettings
    from loglead_lo2.explain.pipeline import ENHANCED_FILE, ExplainOptions
    from loglead_lo2.explain.shap_report import ShapSettings
    from loglead_lo2.schema import read_parquet_schema

    given = [flag for attr, flag in _IF_FLAGS if getattr(args, attr) is not None]
    if args.skip_if and given:
        raise UserError(f"--skip-if contradicts {', '.join(given)} (Isolation Forest options); "
                        "drop one of them.")
    if args.load_model and (args.if_contamination is not None
                            or args.if_n_estimators is not None):
        raise UserError("--load-model reuses a trained forest; --if-contamination / "
                        "--if-n-estimators only apply when training. Drop one of them.")
    models = resolve_models(args.sup_models) if args.sup_models else list(DEFAULT_MODELS)
    if args.sup_models and "all" in [k.strip() for k in args.sup_models.split(",")]:
        from loglead_lo2.detection.iforest import IF_KEY

        models = [k for k in models if k != IF_KEY]  # the forest is 'if' (see --skip-if)
    numeric: tuple[str, ...] = ()
    if args.retrain and args.if_numeric and not args.skip_if:
        path = args.root / ENHANCED_FILE
        schema = read_parquet_schema(path) if path.is_file() else {}
        if schema:
            numeric, notes = resolve_numeric(args.if_numeric, schema)
            for note in notes:
                print(note, flush=True)
    seed = _value(args, "sample_seed")
    config = IFConfig(
        item=args.if_item or "e_words", numeric=numeric,
        contamination=args.if_contamination if args.if_contamination is not None else "auto",
        n_estimators=args.if_n_estimators or 100,
        holdout_fraction=_value(args, "if_holdout_fraction"), seed=seed,
    )
    return ExplainOptions(
        root=args.root, out_dir=args.out_dir, metrics_dir=args.metrics_dir,
        retrain=args.retrain, if_config=config, if_item_explicit=args.if_item is not None,
        if_numeric=args.if_numeric, load_model=args.load_model, skip_if=args.skip_if,
        sup_models=tuple(models), nn_source=args.nn_source, nn_top_k=args.nn_top_k,
        shap=ShapSettings(sample=args.shap_sample, background=args.shap_background,
                          feature_threshold=args.shap_feature_threshold,
                          cell_threshold=args.shap_cell_threshold, seed=seed),
        skip_shap=args.skip_shap, sup_holdout_fraction=_value(args, "sup_holdout_fraction"),
        sup_holdout_min_groups=_value(args, "sup_holdout_min_groups"),
        sup_holdout_shuffle=args.sup_holdout_shuffle,
        thresholds=ThresholdSettings(_value(args, "threshold"), _value(args, "fp_target"),
                                     _value(args, "calibration_fraction")),
        seed=seed, overwrite=args.overwrite, memory_guard=not args.disable_memory_guard,
        label_mode=_value(args, "label_mode"), training_flags=given_training_flags(args),
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv``, run the phase, print where the artifacts are; 2 on user errors."""
    args = cli_args(build_parser(prog), argv)
    if args.list_models:
        from loglead_lo2.detection.registry import format_model_list

        print(format_model_list())
        return 0
    started = time.perf_counter()

    def explain() -> Any:
        from loglead_lo2.detection.signing import trusting_unsigned
        from loglead_lo2.explain.pipeline import run_explain

        with trusting_unsigned(args.trust_unsigned_bundle):
            return run_explain(options_from_args(args), progress=phase_say(args))

    result, code = guarded(prog or "lo2_phase_f_explainability.py", explain)
    if result is None:
        return code
    n_warn = len(result.warnings)
    mode = (result.summary.get("models_from") or {}).get("mode", "reuse")
    print(f"[Done] explanations of {len(result.summary.get('models', {}))} "
          f"{'reused' if mode == 'reuse' else 'retrained'} model(s) on "
          f"{len(result.summary['split']['holdout_runs'])} HELD-OUT run(s) in "
          f"{time.perf_counter() - started:.1f}s ({n_warn} warning(s), see summary.md); wrote:")
    for path in dict.fromkeys(result.artifacts):
        print(f"  {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
