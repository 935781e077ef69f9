"""``lo2-detect`` / ``demo/lo2_e2e/LO2_samples.py``: the detection phase from the shell."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

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
from loglead_lo2.detection.iforest import IF_ITEMS, IFConfig
from loglead_lo2.detection.labels import DEFAULT_LABEL_MODE, LABEL_MODES
from loglead_lo2.detection.thresholds import (
    DEFAULT_FP_TARGET,
    THRESHOLD_RULES,
    ThresholdSettings,
)
from loglead_lo2.errors import UserError

if TYPE_CHECKING:
    from loglead_lo2.detection.pipeline import DetectOptions, DetectResult

DESCRIPTION = """\
Detection phase of the LO2 pipeline: reads the loader's lo2_sequences_enhanced.parquet (or
enhances lo2_sequences.parquet + lo2_events.parquet when it is missing), trains an Isolation
Forest on normal sequences and the registry models on training runs, and evaluates every model
on held-out runs (no run is on both sides). Phases: 'enhancers' only (re)builds the enhanced
sequences; 'if' runs the Isolation Forest; 'full' runs the Isolation Forest and --models."""

EPILOG = """\
artifacts (<metrics> = --metrics-dir):
  enhancers  <enhancers-output-dir or root>/lo2_sequences_enhanced.parquet
  if         <root>/lo2_if_predictions.parquet (or --save-if), <metrics>/if_metrics.json+.csv,
             leaderboard.csv+.md, per_test_case_recall.csv+.md, leakage.json, detect_run.json
  full       the 'if' files plus <metrics>/<model>.json per model (--skip-if: no IF files)
  manifest   <metrics>/ground_truth_<model>.csv per model (generated data only)
  --per-service: bundles as <dir>/<service>/lo2_if.joblib + model.yml and
             <save-sup-models>/<service>/<key>.joblib; --load-model reads the same layout

examples:
  %(prog)s --list-models
  %(prog)s --phase full --if-contamination 0.15 --if-holdout-fraction 0.05 \\
      --if-threshold-percentile 99.5 --report-precision-at 200 --report-fp-alpha 0.01 \\
      --save-model models/lo2_if.joblib --dump-metadata
  %(prog)s --phase if --load-model models/lo2_if.joblib
  %(prog)s --phase full --label-mode target-service --per-service \\
      --models event_lr_words,event_dt_trigrams"""




def _max_samples(text: str) -> int | float | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value_f = number(text)
        if not 0 < value_f <= 1:
            raise argparse.ArgumentTypeError(  # noqa: B904 - argparse shows the message
                f"must be 'auto', an integer >= 1 or a fraction in (0, 1], got {text}"
            )
        return value_f
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value



def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    from loglead_lo2.detection.defaults import DEFAULT_MODELS

    p = Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbosity(p, quiet_help="no progress lines or bars: only the [Done] summary, "
                                "warnings and errors")
    g = p.add_argument_group("input and phases")
    g.add_argument("--root", type=Path, default=Path("demo/result/lo2"),
                   help="loader output folder with lo2_sequences_enhanced.parquet "
                        "(default demo/result/lo2)")
    g.add_argument("--phase", choices=("enhancers", "if", "full"), default="full",
                   help="enhancers: only (re)build the enhanced sequences; if: Isolation "
                        "Forest only; full: Isolation Forest + --models (default)")
    g.add_argument("--sample-seed", type=int, default=42,
                   help="seed for shuffled splits and every model (default 42)")
    g.add_argument("--predict-batch-size", type=positive_int, default=50_000,
                   help="sequences scored per batch (default 50000)")
    g.add_argument("--disable-memory-guard", action="store_true",
                   help="keep the default hyper-parameter limits even when RAM is low")
    g.add_argument("--save-enhancers", action="store_true",
                   help="save the enhanced sequences built from events (or copy them to "
                        "--enhancers-output-dir)")
    g.add_argument("--enhancers-output-dir", type=Path, default=None,
                   help="where lo2_sequences_enhanced.parquet is written (default: --root)")
    g.add_argument("--overwrite-enhancers", action="store_true",
                   help="replace an existing lo2_sequences_enhanced.parquet")
    lab = p.add_argument_group("labels and per-service models")
    lab.add_argument("--label-mode", choices=LABEL_MODES, default=DEFAULT_LABEL_MODE,
                     help="target-service (default): a row is anomalous iff its error case "
                          "targets the row's service (correct rows and the other services' "
                          "rows of error cases are normal); test-case: iff its test case is an "
                          "error case (the dataset's own labels)")
    lab.add_argument("--per-service", action="store_true",
                     help="train and evaluate every model (and the forest) once per service "
                          "on the same run split; leaderboard rows per (model, service) + a "
                          "macro average; bundles under <dir>/<service>/")
    lab.add_argument("--manifest", type=Path, default=None, metavar="PATH",
                     help="generator manifest (lo2_manifest.csv) for ground-truth recall "
                          "(default: the one named in <root>/lo2_load_info.json, if any)")
    s = p.add_argument_group("hold-out split (whole runs)")
    s.add_argument("--sup-holdout-fraction", type=number, default=0.2,
                   help="share of runs held out for evaluation (default 0.2, newest runs)")
    s.add_argument("--sup-holdout-min-groups", type=positive_int, default=1,
                   help="hold out at least this many runs (default 1)")
    s.add_argument("--sup-holdout-shuffle", action="store_true",
                   help="pick hold-out runs at random (seeded) instead of the newest")
    t = p.add_argument_group("thresholds and cross-validation")
    t.add_argument("--threshold", choices=THRESHOLD_RULES, default="fp-target",
                   help="fp-target (default): every model's threshold flags at most "
                        "--fp-target of the normal rows of its calibration runs (the newest "
                        "training runs, not fitted on); model: each model's own cut-off")
    t.add_argument("--fp-target", type=number, default=DEFAULT_FP_TARGET, metavar="F",
                   help="target false-positive rate on calibration normal rows "
                        f"(default {DEFAULT_FP_TARGET:g})")
    t.add_argument("--calibration-fraction", type=number, default=0.2, metavar="F",
                   help="share of training runs held back to set registry models' "
                        "thresholds (default 0.2, at least one run; the forest uses "
                        "--if-holdout-fraction)")
    t.add_argument("--cv", type=positive_int, default=None, metavar="K",
                   help="also run run-grouped K-fold cross-validation (every run held out "
                        "once) and report mean and spread per metric in cv_leaderboard.*")
    f = p.add_argument_group("Isolation Forest")
    f.add_argument("--skip-if", action="store_true", help="do not run the Isolation Forest")
    f.add_argument("--if-item", choices=IF_ITEMS, default=None,
                   help="token list the forest uses (default e_words; with --load-model: the "
                        "bundle's)")
    f.add_argument("--if-numeric", default=None, metavar="COLS",
                   help="comma list of numeric sequence columns added to the tokens, e.g. "
                        "seq_len,duration_sec,e_words_len,e_trigrams_len")
    f.add_argument("--if-contamination", type=contamination, default="auto",
                   help="expected anomaly share, 'auto' or (0, 0.5]; sets the forest's own "
                        "cut-off used when no --if-threshold-percentile is given")
    f.add_argument("--if-n-estimators", type=positive_int, default=100,
                   help="trees (default 100; clamped to <= 300)")
    f.add_argument("--if-max-samples", type=_max_samples, default="auto",
                   help="rows per tree: integer, fraction or 'auto' (default)")
    f.add_argument("--if-holdout-fraction", type=number, default=0.2,
                   help="share of normal training runs (newest) held out to set the "
                        "threshold (default 0.2; 0 = use training scores)")
    f.add_argument("--if-threshold-percentile", type=float, default=None, metavar="P",
                   help="threshold = P-th percentile of hold-out normal scores; adds "
                        "pred_if_threshold to the predictions")
    f.add_argument("--save-if", type=Path, default=None, metavar="PATH",
                   help="predictions file, .parquet or .csv "
                        "(default <root>/lo2_if_predictions.parquet)")
    m = p.add_argument_group("models and bundles")
    m.add_argument("--models", default=None, metavar="KEYS",
                   help=f"comma list of registry keys for --phase full (default "
                        f"{','.join(DEFAULT_MODELS)}; 'all' = every key)")
    m.add_argument("--list-models", action="store_true",
                   help="print the registry (key, type, features, description) and exit")
    m.add_argument("--save-model", type=Path, default=None, metavar="PATH",
                   help="save the forest as a joblib tuple (model, vectorizer)")
    m.add_argument("--dump-metadata", action="store_true",
                   help="kept for old command lines: --save-model always writes model.yml "
                        "(parameters, threshold, metrics, versions, sha256, signature)")
    m.add_argument("--load-model", type=Path, default=None, metavar="PATH",
                   help="reuse a saved forest (signature checked against model.yml before "
                        "unpickling) and skip training")
    m.add_argument("--trust-unsigned-bundle", action="store_true",
                   help="--load-model: load a bundle whose signature cannot be verified "
                        "(unsigned, another key, no key) with a warning: only for bundles you "
                        "vouch for; joblib files run code when loaded")
    m.add_argument("--overwrite-model", action="store_true",
                   help="replace existing bundles (--save-model, --save-sup-models)")
    m.add_argument("--save-sup-models", type=Path, default=None, metavar="DIR",
                   help="save every registry model as DIR/<key>.joblib + <key>.yml")
    r = p.add_argument_group("reports")
    r.add_argument("--metrics-dir", "--out-dir", dest="metrics_dir", type=Path, default=None,
                   help="where metric files go (default <root>/metrics); the --metrics-dir "
                        "of lo2-explain")
    r.add_argument("--report-precision-at", type=positive_int, default=None, metavar="K",
                   help="report precision among the K highest scores")
    r.add_argument("--report-fp-alpha", type=number, default=None, metavar="A",
                   help="report the false-positive rate when the top A share is flagged")
    r.add_argument("--report-psi", action="store_true",
                   help="report the PSI of train vs hold-out scores per model")
    return p


_IF_FLAGS = (("save_if", "--save-if"), ("save_model", "--save-model"),
             ("load_model", "--load-model"), ("dump_metadata", "--dump-metadata"),
             ("if_threshold_percentile", "--if-threshold-percentile"),
             ("if_item", "--if-item"), ("if_numeric", "--if-numeric"))


def _given(args: argparse.Namespace, names: tuple[tuple[str, str], ...]) -> list[str]:
    return [flag for attr, flag in names if getattr(args, attr) not in (None, False)]


def check_flags(args: argparse.Namespace) -> None:
    """Reject contradictory or out-of-range flags with one clear message."""
    if args.phase == "enhancers":
        extra = _given(args, (*_IF_FLAGS, ("skip_if", "--skip-if"), ("models", "--models"),
                              ("save_sup_models", "--save-sup-models"),
                              ("per_service", "--per-service"), ("manifest", "--manifest")))
        if args.label_mode != DEFAULT_LABEL_MODE:
            extra.append("--label-mode")
        if extra:
            raise UserError(f"--phase enhancers only rebuilds the enhanced sequences; "
                            f"drop {', '.join(extra)} or use --phase if/full.")
    if args.phase == "if":
        extra = _given(args, (("models", "--models"), ("save_sup_models", "--save-sup-models")))
        if extra:
            raise UserError(f"{', '.join(extra)} need(s) --phase full (--phase if runs only "
                            "the Isolation Forest).")
        if args.skip_if:
            raise UserError("--phase if with --skip-if leaves nothing to do; use --phase full.")
    if args.skip_if:
        extra = _given(args, _IF_FLAGS)
        if extra:
            raise UserError(f"--skip-if contradicts {', '.join(extra)} (Isolation Forest "
                            "options); drop one of them.")
    if args.load_model and args.save_model:
        raise UserError("--load-model skips training, so there is nothing new for "
                        "--save-model; use one of them.")
    if args.dump_metadata and not args.save_model:
        raise UserError("--dump-metadata describes the bundle written by --save-model; add "
                        "--save-model models/lo2_if.joblib.")
    if not 0 < args.sup_holdout_fraction < 1:
        raise UserError(f"--sup-holdout-fraction must be in (0, 1), "
                        f"got {args.sup_holdout_fraction}.")
    if not 0 <= args.if_holdout_fraction < 1:
        raise UserError(f"--if-holdout-fraction must be in [0, 1), "
                        f"got {args.if_holdout_fraction}.")
    pct = args.if_threshold_percentile
    if pct is not None and not 0 < pct <= 100:
        raise UserError(f"--if-threshold-percentile must be in (0, 100], got {pct}.")
    if args.cv is not None and args.cv < 2:
        raise UserError(f"--cv needs at least 2 folds, got {args.cv}.")
    if args.cv is not None and args.phase != "full":
        raise UserError("--cv cross-validates the registry models; use it with --phase full.")
    if args.report_fp_alpha is not None and not 0 < args.report_fp_alpha <= 1:
        raise UserError(f"--report-fp-alpha must be in (0, 1], got {args.report_fp_alpha}.")


def options_from_args(args: argparse.Namespace) -> DetectOptions:
    from loglead_lo2.detection.pipeline import DetectOptions
    from loglead_lo2.detection.registry import DEFAULT_MODELS, resolve_models

    check_flags(args)
    models = resolve_models(args.models) if args.models else list(DEFAULT_MODELS)
    config = IFConfig(
        item=args.if_item or "e_words", contamination=args.if_contamination,
        n_estimators=args.if_n_estimators, max_samples=args.if_max_samples,
        holdout_fraction=args.if_holdout_fraction,
        threshold_percentile=args.if_threshold_percentile, seed=args.sample_seed,
        batch_size=args.predict_batch_size,
    )
    return DetectOptions(
        root=args.root, phase=args.phase, metrics_dir=args.metrics_dir, seed=args.sample_seed,
        batch_size=args.predict_batch_size, sup_holdout_fraction=args.sup_holdout_fraction,
        sup_holdout_min_groups=args.sup_holdout_min_groups,
        sup_holdout_shuffle=args.sup_holdout_shuffle, if_config=config,
        if_item_explicit=args.if_item is not None, if_numeric=args.if_numeric,
        skip_if=args.skip_if, save_if=args.save_if, save_enhancers=args.save_enhancers,
        enhancers_output_dir=args.enhancers_output_dir,
        overwrite_enhancers=args.overwrite_enhancers, save_model=args.save_model,
        save_sup_models=args.save_sup_models, load_model=args.load_model,
        overwrite_model=args.overwrite_model, dump_metadata=args.dump_metadata,
        precision_at=args.report_precision_at, fp_alpha=args.report_fp_alpha,
        report_psi=args.report_psi, memory_guard=not args.disable_memory_guard,
        models=tuple(models), label_mode=args.label_mode, per_service=args.per_service,
        manifest=args.manifest,
        thresholds=ThresholdSettings(args.threshold, args.fp_target, args.calibration_fraction),
        cv=args.cv,
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv``, run the phase, print a summary; 2 on user errors."""
    args = cli_args(build_parser(prog), argv)
    if args.list_models:
        from loglead_lo2.detection.registry import format_model_list

        print(format_model_list())
        return 0
    started = time.perf_counter()

    def detect() -> tuple[DetectOptions, DetectResult]:
        from loglead_lo2.detection.pipeline import run_detection
        from loglead_lo2.detection.signing import trusting_unsigned

        opts = options_from_args(args)
        with trusting_unsigned(args.trust_unsigned_bundle):
            return opts, run_detection(opts, progress=phase_say(args))

    outcome, code = guarded(prog or "LO2_samples.py", detect)
    if outcome is None:
        return code
    opts, result = outcome
    print(f"[Done] phase {opts.phase}: {result.rows:,} sequences, "
          f"{len(result.records)} model(s) in {time.perf_counter() - started:.1f}s; wrote:")
    for path in dict.fromkeys(result.artifacts):
        print(f"  {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
