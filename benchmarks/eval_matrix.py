#!/usr/bin/env python3
"""Evaluation matrix: every registry model across label mode x window x per-service.

Generates a seeded LO2 sample (``loglead_lo2.generator.generate``), loads it twice with the
loader (whole sequences and 10 s windows), then runs the detection phase in-process
(``loglead_lo2.detection.cli.main``) once per configuration

    label mode  (test-case | target-service)
    x window    (none | 10 s)
    x services  (all services together | one model per service)

and reads the leaderboard / per-model JSON files each run writes. The result is ONE Markdown
table (ROC-AUC, PR-AUC, F1, ground-truth recall, FP rate on normal sequences, fit time per
model per configuration), printed and written to ``docs/evaluation.md`` with an explanation
of the columns and the settings.

    python benchmarks/eval_matrix.py                       # default sample, all models
    python benchmarks/eval_matrix.py --models event_lr_words,event_dt_trigrams --no-doc
    python benchmarks/eval_matrix.py --runs 10 --scale 0.1 --work-dir /tmp/lo2-matrix --keep
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from loglead_lo2.errors import UserError  # noqa: E402
from loglead_lo2.schema import write_text_atomic  # noqa: E402

DOC = ROOT / "docs" / "evaluation.md"
LABEL_MODES = ("test-case", "target-service")
MACRO_NAMES = ("macro", "macro_avg", "macro-average", "(macro)")
GT_KEYS = ("ground_truth", "ground_truth_recall", "groundtruth")


@dataclass(frozen=True)
class Config:
    """One cell of the matrix."""

    label_mode: str
    window: float | None
    per_service: bool

    @property
    def window_label(self) -> str:
        return "none" if self.window is None else f"{self.window:g} s"

    @property
    def services_label(self) -> str:
        return "per service" if self.per_service else "all"

    @property
    def slug(self) -> str:
        win = "nowin" if self.window is None else f"w{self.window:g}"
        return f"{self.label_mode}__{win}__{'per-service' if self.per_service else 'all'}"


@dataclass
class Outcome:
    """What one configuration produced: table rows, run facts and problems."""

    config: Config
    rows: list[dict[str, Any]]
    seconds: float
    facts: dict[str, Any]
    error: str | None = None


# --- steps ----------------------------------------------------------------------------------


def detect_flags() -> set[str]:
    """The long options ``lo2-detect`` accepts (to skip configurations it cannot run yet)."""
    from loglead_lo2.detection.cli import build_parser

    return {opt for action in build_parser()._actions for opt in action.option_strings}


def make_sample(tree: Path, runs: int, scale: float, seed: int) -> dict[str, Any]:
    from loglead_lo2.generator import generate

    t = time.perf_counter()
    summary = generate(tree, runs=runs, scale=scale, seed=seed, overwrite=True)
    return {"runs": runs, "scale": scale, "seed": seed, "lines": summary.lines,
            "injected": summary.injected, "seconds": round(time.perf_counter() - t, 1)}


def load(tree: Path, out: Path, window: float | None, seed: int) -> dict[str, Any]:
    from loglead_lo2.loader import LoadOptions, run_loader

    t = time.perf_counter()
    report = run_loader(LoadOptions(root=tree, output_dir=out, window=window, seed=seed,
                                    save_parquet=True, overwrite=True))
    return {"sequences": report.sequences, "events": report.events,
            "seconds": round(time.perf_counter() - t, 1)}


def detect_argv(cfg: Config, root: Path, metrics: Path, models: str, seed: int) -> list[str]:
    argv = ["--root", str(root), "--phase", "full", "--models", models,
            "--metrics-dir", str(metrics), "--save-if", str(metrics / "if_predictions.parquet"),
            "--sample-seed", str(seed), "--label-mode", cfg.label_mode]
    if cfg.per_service:
        argv.append("--per-service")
    return argv


def run_config(cfg: Config, root: Path, work: Path, models: str, seed: int,
               flags: set[str]) -> Outcome:
    """Run the detection phase for ``cfg``; its console output goes to ``detect.log``."""
    from loglead_lo2.detection.cli import main as detect

    metrics = work / cfg.slug
    metrics.mkdir(parents=True, exist_ok=True)
    argv = detect_argv(cfg, root, metrics, models, seed)
    missing = sorted({a for a in argv if a.startswith("--") and a not in flags})
    if missing == ["--label-mode"] and cfg.label_mode == "test-case":
        argv = argv[:argv.index("--label-mode")] + argv[argv.index("--label-mode") + 2:]
        missing = []
    if missing:
        return Outcome(cfg, [], 0.0, {}, f"lo2-detect has no {', '.join(missing)} yet")
    out = io.StringIO()
    t = time.perf_counter()
    crash = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = detect(argv)
        except SystemExit as exc:  # argparse rejected a flag
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception as exc:  # noqa: BLE001 - one broken cell must not stop the matrix
            traceback.print_exc()
            code, crash = 1, f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t
    write_text_atomic(metrics / "detect.log", out.getvalue())
    if crash:
        return Outcome(cfg, [], seconds, {}, f"lo2-detect crashed ({crash}); see "
                                             f"{metrics / 'detect.log'}")
    if code != 0:
        last = [ln for ln in out.getvalue().splitlines() if ln.strip()][-1:]
        return Outcome(cfg, [], seconds, {}, f"lo2-detect exited {code}: {' '.join(last)}")
    rows, facts = collect(metrics)
    return Outcome(cfg, rows, seconds, facts)


# --- reading what the detection phase wrote ---------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _ground_truth(record: dict[str, Any]) -> dict[str, Any]:
    """The ``overall`` block of a model's ground-truth report (``{}`` when absent)."""
    for key in GT_KEYS:
        block = record.get(key)
        if isinstance(block, dict):
            overall = block.get("overall", block)
            return overall if isinstance(overall, dict) else {}
    return {}


def _pool_ground_truth(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall ground truth from per-service reports (units and normal rows partition by
    service, so counts add up); ``{}`` unless every part has one."""
    if not parts or not all(p.get("with_trace") is not None for p in parts):
        return {}
    detected = sum(int(p.get("detected") or 0) for p in parts)
    with_trace = sum(int(p.get("with_trace") or 0) for p in parts)
    normal = sum(int(p.get("n_normal") or 0) for p in parts)
    flagged = sum(int(p.get("flagged_normal") or 0) for p in parts)
    clean = sum(int(p.get("n_no_trace") or 0) for p in parts)
    flagged_clean = sum(int(p.get("flagged_no_trace") or 0) for p in parts)
    return {"detected": detected, "with_trace": with_trace,
            "recall": detected / with_trace if with_trace else None,
            "fp_rate_normal": flagged / normal if normal else None,
            "flag_rate_no_trace": flagged_clean / clean if clean else None,
            "flagged_no_trace": flagged_clean, "n_no_trace": clean}


def _model_json(metrics: Path, model: str) -> dict[str, Any]:
    """``<model>.json`` (``if_metrics.json`` for the Isolation Forest); ``{}`` if absent."""
    name = "if_metrics.json" if model == "isolation_forest" else f"{model}.json"
    path = metrics / name
    return _read_json(path) if path.is_file() else {}


def _fp_from_metrics(metrics: dict[str, Any]) -> float | None:
    fp, tn = _num(metrics.get("fp")), _num(metrics.get("tn"))
    if fp is None or tn is None or fp + tn == 0:
        return None
    return fp / (fp + tn)


def collect(metrics: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per model: metrics from ``leaderboard.csv`` (the ``macro`` row of per-service
    runs), ground truth and timing from ``<model>.json``.

    Per-service runs: ground-truth recall and FP rate are pooled over the services' reports
    (units and normal rows belong to one service each, so the counts add up), fit time is
    the sum over services.
    """
    board_path = metrics / "leaderboard.csv"
    if not board_path.is_file():
        return [], {"error": f"{board_path} missing"}
    board = pl.read_csv(board_path, infer_schema_length=None)
    if "service" in board.columns:
        service = pl.col("service").cast(pl.String)
        macro = board.filter(service.is_in(MACRO_NAMES))
        whole = board.filter(service == "all")
        board = macro if macro.height else (whole if whole.height else board)
    rows: list[dict[str, Any]] = []
    for rec in board.unique("model", keep="first", maintain_order=True).iter_rows(named=True):
        model = str(rec["model"])
        record = _model_json(metrics, model)
        gt = _ground_truth(record)
        fit = _num(rec.get("fit_seconds"))
        parts = record.get("per_service")
        services = list(parts.values()) if isinstance(parts, dict) else []
        if services:
            pooled = _pool_ground_truth([_ground_truth(p) for p in services])
            gt = pooled or gt
            fits = [_num((p.get("timing") or {}).get("fit_seconds")) for p in services]
            if all(f is not None for f in fits):
                fit = float(sum(f for f in fits if f is not None))
        fp = _num(gt.get("fp_rate_normal"))
        if fp is None and not services:
            fp = _fp_from_metrics(record.get("metrics") or {})
        rows.append({
            "model": model, "roc_auc": _num(rec.get("roc_auc")), "pr_auc": _num(rec.get("pr_auc")),
            "f1": _num(rec.get("f1")), "gt_recall": _num(gt.get("recall")),
            "gt_detected": gt.get("detected"), "gt_with_trace": gt.get("with_trace"),
            "fp_rate": fp, "no_trace": _num(gt.get("flag_rate_no_trace")),
            "no_trace_counts": (gt.get("flagged_no_trace"), gt.get("n_no_trace")),
            "fit_seconds": fit, "services": len(services),
        })
    run = _read_json(metrics / "detect_run.json")
    leak = _read_json(metrics / "leakage.json")
    facts = {"holdout_rows": None, "holdout_anomalous": None, "labels": run.get("labels"),
             "leak_seq_len": _num((leak.get("separability") or {}).get("seq_len"))}
    for rec in (_model_json(metrics, r["model"]) for r in rows):
        parts = rec.get("per_service")
        splits = ([p.get("split") or {} for p in parts.values()] if isinstance(parts, dict)
                  else [rec.get("split") or {}])
        if splits and all(sp.get("holdout_rows") is not None for sp in splits):
            facts["holdout_rows"] = sum(int(sp["holdout_rows"]) for sp in splits)
            facts["holdout_anomalous"] = sum(int(sp.get("holdout_anomalous") or 0)
                                             for sp in splits)
            break
    return sorted(rows, key=lambda r: r["model"]), facts


# --- the table --------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _gt_cell(row: dict[str, Any]) -> str:
    if row["gt_recall"] is None:
        return "n/a"
    return f"{row['gt_recall']:.3f} ({row['gt_detected']}/{row['gt_with_trace']})"


def _no_trace_cell(row: dict[str, Any]) -> str:
    flagged, total = row["no_trace_counts"]
    if row["no_trace"] is None or flagged is None or total is None:
        return _f(row["no_trace"])
    return f"{row['no_trace']:.3f} ({flagged}/{total})"


HEADER = ("label mode", "window", "services", "model", "ROC-AUC", "PR-AUC", "F1",
          "GT recall", "FP rate", "no-trace flags", "fit s")


def markdown_table(outcomes: list[Outcome]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for o in outcomes:
        c = o.config
        lead = (c.label_mode, c.window_label, c.services_label)
        if o.error:
            lines.append("| " + " | ".join((*lead, f"skipped: {o.error}",
                                            *[""] * (len(HEADER) - 4))) + " |")
            continue
        for r in o.rows:
            cells = (*lead, f"`{r['model']}`", _f(r["roc_auc"]), _f(r["pr_auc"]), _f(r["f1"]),
                     _gt_cell(r), _f(r["fp_rate"]), _no_trace_cell(r),
                     _f(r["fit_seconds"], 2))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def settings_lines(outcomes: list[Outcome]) -> list[str]:
    out = []
    for o in outcomes:
        c, f = o.config, o.facts
        if o.error:
            out.append(f"- `{c.slug}`: skipped ({o.error}).")
            continue
        labels = f.get("labels") or {}
        dropped = labels.get("dropped_non_target_rows")
        parts = [f"{f.get('holdout_rows') or 'n/a'} hold-out rows "
                 f"({f.get('holdout_anomalous') or 0} anomalous)"]
        if dropped is not None and c.label_mode == "target-service":
            parts.append(f"{dropped} non-target rows left out")
        if f.get("leak_seq_len") is not None:
            parts.append(f"`seq_len` alone separates the classes at {f['leak_seq_len']:.3f} "
                         "(max of ROC-AUC, 1 - ROC-AUC)")
        parts.append(f"{o.seconds:.1f} s")
        out.append(f"- `{c.slug}`: " + "; ".join(parts) + ".")
    return out


def sample_line(sample: dict[str, Any], loads: dict[str, Any], models: str) -> str:
    counts = [f"{v['sequences']:,} " + ("sequences" if k == "none" else f"windows of {k}")
              for k, v in loads.items()]
    return (f"Sample: `generate(runs={sample['runs']}, scale={sample['scale']}, "
            f"seed={sample['seed']})`: {sample['lines']:,} lines, {sample['injected']} "
            f"injected error events; loaded with the default trimming (each log's start-up "
            f"block, found by content): {' and '.join(counts)}. Models: `{models}`. Split: the "
            f"newest 20 % of runs held out; seed {sample['seed']}.")


def document(outcomes: list[Outcome], sample: dict[str, Any], loads: dict[str, Any],
             models: str, seconds: float) -> str:
    import polars

    windows = list(dict.fromkeys(o.config.window_label for o in outcomes))
    return "\n".join([
        "# Evaluation matrix",
        "",
        "Generated by `python benchmarks/eval_matrix.py` (do not edit by hand; re-run it). "
        "Every model of the registry plus the Isolation Forest, trained on the training runs "
        "and evaluated on held-out runs (no run on both sides), for each combination of",
        "",
        "- **label mode**: `test-case` (a sequence is anomalous iff its test case is an "
        "error case, the dataset's own labels) or `target-service` (anomalous iff the error "
        "case targets the sequence's service; the other services' sequences of error cases, "
        "which contain no trace of the error, are left out of training and evaluation);",
        f"- **window**: {', '.join(windows)} (`none`: one row per (run, test case, service); "
        "otherwise the loader's `--window`, one row per time window, labelled like its "
        "sequence);",
        "- **services**: `all` (one model on all services) or `per service` (`--per-service`: "
        "one model per service, each sequence scored by its own service's model; ROC-AUC, "
        "PR-AUC and F1 are the leaderboard's macro average over services, ground-truth "
        "recall and FP rate are pooled over all units / normal rows, fit time is the sum; "
        "a service without both classes on both sides of the split is skipped).",
        "",
        "Columns:",
        "",
        "- **ROC-AUC**, **PR-AUC**: threshold-free ranking quality on the hold-out rows under "
        "the configuration's labels (PR-AUC with anomalous as positive);",
        "- **F1**: at the model's own threshold (`score >= threshold`);",
        "- **GT recall**: ground-truth recall from the generator's manifest: the share of "
        "(run, error case, target service) units in the hold-out runs with at least one "
        "injected error event in the raw logs whose sequence (window) the model flags at "
        "its threshold, shown as `recall (detected/units with a trace)`; an event the loader "
        "trimmed is a miss. Cases that leave no trace are not in the denominator. This is "
        "the figure that says whether the model finds the errors, independent of label "
        "noise;",
        "- **FP rate**: flagged share of the normal (`correct`) hold-out rows at the same "
        "threshold;",
        "- **no-trace flags**: flagged share of the error-case hold-out rows that hold no "
        "surviving injected event (other services of the case, windows without the error, "
        "cases without a trace). A model that finds the error events keeps this near the FP "
        "rate; one that learnt \"this is not a `correct` recording\" (length, traffic mix) "
        "flags them all, and then its GT recall says nothing about the errors. In "
        "`target-service` mode only the target service's rows remain, so the count is small "
        "(mostly the cases that leave no trace);",
        "- **fit s**: training time in seconds (on the machine below).",
        "",
        sample_line(sample, loads, models),
        "",
        markdown_table(outcomes),
        "Per configuration:",
        "",
        *settings_lines(outcomes),
        "",
        "Reading the table:",
        "",
        "- In `test-case` mode most anomalous rows are services the error case never "
        "touched; a high ROC-AUC/F1 there together with no-trace flags near 1 means the model "
        "separates `correct` recordings from error-case recordings, not error events from "
        "normal traffic.",
        "- `seq_len` separability (above) shows how far length alone separates the classes. "
        "Whole sequences differ by recording design (60 s `correct` vs 10 s error cases). "
        "Windows remove most of it; what remains is the recording structure itself: every "
        "case starts with a new locust process (registrations first, token and code traffic "
        "later), so a 10 s error case holds one start-of-case window and `correct` six.",
        "- `target-service` labels with GT recall and no-trace flags are the figures that say "
        "whether the error events themselves are found. Generated error events are clean "
        "and the sample is small, so absolute figures are optimistic compared with the real "
        "LO2 data.",
        "",
        f"Run: {seconds:.0f} s in total on {platform.machine()} / Python "
        f"{platform.python_version()} / polars {polars.__version__}.",
        "",
    ])


# --- main -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=6, help="generated runs (default 6)")
    p.add_argument("--scale", type=float, default=0.05, help="generator scale (default 0.05)")
    p.add_argument("--seed", type=int, default=42, help="generator/split/model seed (42)")
    p.add_argument("--models", default="all",
                   help="comma list of registry keys or 'all' (default all)")
    p.add_argument("--label-modes", default=",".join(LABEL_MODES),
                   help="comma list of label modes (default test-case,target-service)")
    p.add_argument("--window", type=float, default=10.0,
                   help="window length in seconds for the windowed load (default 10)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="where the sample, loads and metrics go (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    p.add_argument("--doc", type=Path, default=DOC, help=f"Markdown output (default {DOC})")
    p.add_argument("--no-doc", action="store_true", help="only print the table")
    return p


def run_matrix(args: argparse.Namespace, work: Path) -> str:
    from loglead_lo2.detection.registry import resolve_models

    resolve_models(args.models)  # unknown keys fail before minutes of work
    modes = [m.strip() for m in args.label_modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in LABEL_MODES]
    if bad or not modes:
        raise UserError(f"--label-modes: unknown {', '.join(bad) or '(none)'}; "
                        f"use {', '.join(LABEL_MODES)}.")
    started = time.perf_counter()
    tree = work / "tree"
    sample = make_sample(tree, args.runs, args.scale, args.seed)
    print(f"[sample] {sample['lines']:,} lines, {sample['injected']} injected events "
          f"({sample['seconds']} s)", flush=True)
    roots = {None: work / "load_nowin", args.window: work / f"load_w{args.window:g}"}
    loads: dict[str, Any] = {}
    for window, root in roots.items():
        info = load(tree, root, window, args.seed)
        label = "none" if window is None else f"{window:g} s"
        loads[label] = info
        print(f"[load] window {window or 'none'}: {info['sequences']:,} sequences "
              f"({info['seconds']} s)", flush=True)
    flags = detect_flags()
    outcomes = []
    for mode in modes:
        for window, root in roots.items():
            for per_service in (False, True):
                cfg = Config(mode, window, per_service)
                outcome = run_config(cfg, root, work / "metrics", args.models, args.seed,
                                     flags)
                outcomes.append(outcome)
                status = outcome.error or f"{len(outcome.rows)} model(s)"
                print(f"[detect] {cfg.slug}: {status} ({outcome.seconds:.1f} s)", flush=True)
    return document(outcomes, sample, loads, args.models, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            text = run_matrix(args, args.work_dir)
        elif args.keep:
            work = Path(tempfile.mkdtemp(prefix="lo2-eval-matrix-"))
            text = run_matrix(args, work)
            print(f"[work] kept {work}")
        else:
            with tempfile.TemporaryDirectory(prefix="lo2-eval-matrix-") as tmp:
                text = run_matrix(args, Path(tmp))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(text)
    if not args.no_doc:
        write_text_atomic(args.doc, text)
        print(f"[doc] wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
