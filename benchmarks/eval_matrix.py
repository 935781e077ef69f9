#!/usr/bin/env python3
"""Evaluation matrix: every registry model across label mode x window x per-service.

Generates a seeded LO2 sample (``loglead_lo2.generator.generate``), loads it once per window
length with the loader, then runs the detection phase in-process
(``loglead_lo2.detection.cli.main``) once per configuration

    label mode  (target-service | test-case)
    x window    (none | 5 s | 10 s, --windows)
    x services  (one model on all services | one model per service)

on a sample with metrics, loaded with ``--load-metrics`` (the metric features and the
fused models: the logs / metrics / both ablation)
and reads what each run writes: ``leaderboard.csv``, ``leakage.json`` and every model's
``<key>_predictions.parquet`` (hold-out rows, with ``true_label`` from the generator's
manifest). It prints the figures and writes ``docs/evaluation.md``: the targets of the
evaluation (best per-service and unsupervised ROC-AUC against true labels, recall at 1 %
false positives per error signature), length leakage per service and window, and the full
table. Numbers only; nothing here asserts a score.

    python benchmarks/eval_matrix.py                              # default sample, all models
    python benchmarks/eval_matrix.py --models event_lr_words,event_oov_words --no-doc
    python benchmarks/eval_matrix.py --runs 6 --scale 0.05 --windows 5 --work-dir /tmp/m --keep
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import eval_tables  # noqa: E402
import polars as pl  # noqa: E402

from loglead_lo2.schema import write_text_atomic  # noqa: E402

DOC = ROOT / "docs" / "evaluation.md"
LABEL_MODES = ("target-service", "test-case")


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


def make_sample(tree: Path, runs: int, scale: float, seed: int) -> dict[str, Any]:
    from loglead_lo2.generator import generate

    t = time.perf_counter()
    summary = generate(tree, runs=runs, scale=scale, seed=seed, overwrite=True,
                       with_metrics=True)
    return {"runs": runs, "scale": scale, "seed": seed, "lines": summary.lines,
            "injected": summary.injected, "seconds": round(time.perf_counter() - t, 1)}


def load(tree: Path, out: Path, window: float | None, seed: int) -> dict[str, Any]:
    from loglead_lo2.loader import LoadOptions, run_loader

    t = time.perf_counter()
    report = run_loader(LoadOptions(root=tree, output_dir=out, window=window, seed=seed,
                                    save_parquet=True, load_metrics=True, overwrite=True))
    info = json.loads((out / "lo2_load_info.json").read_text("utf-8"))
    return {"sequences": report.sequences, "events": report.events,
            "window_info": info.get("window"), "seconds": round(time.perf_counter() - t, 1)}


def run_config(cfg: Config, root: Path, work: Path, models: str, seed: int
               ) -> dict[str, Any]:
    """Run the detection phase for ``cfg`` (console output to ``detect.log``) and read what
    it wrote; ``error`` is set when the run failed."""
    from loglead_lo2.detection.cli import main as detect

    metrics = work / cfg.slug
    metrics.mkdir(parents=True, exist_ok=True)
    argv = ["--root", str(root), "--phase", "full", "--models", models,
            "--metrics-dir", str(metrics), "--save-if", str(metrics / "if.parquet"),
            "--sample-seed", str(seed), "--label-mode", cfg.label_mode]
    if cfg.per_service:
        argv.append("--per-service")
    out = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = detect(argv)
    seconds = time.perf_counter() - t
    write_text_atomic(metrics / "detect.log", out.getvalue())
    if code != 0:
        last = [ln for ln in out.getvalue().splitlines() if ln.strip()][-1:]
        return {"config": cfg, "error": f"lo2-detect exited {code}: {' '.join(last)}",
                "seconds": seconds}
    board = pl.read_csv(metrics / "leaderboard.csv", infer_schema_length=None)
    preds = pl.concat([
        pl.read_parquet(p).filter(pl.col("split") == "holdout")
        for p in sorted(metrics.glob("*_predictions.parquet"))], how="diagonal_relaxed")
    leak = json.loads((metrics / "leakage.json").read_text("utf-8"))
    signatures = pl.read_csv(metrics / "signature_recall.csv", infer_schema_length=None)
    run = json.loads((metrics / "detect_run.json").read_text("utf-8"))
    return {"config": cfg, "board": board, "preds": preds, "leakage": leak,
            "signatures": signatures,
            "split": run.get("split") or {}, "labels": run.get("labels") or {},
            "seconds": seconds, "error": None}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=8, help="runs in the sample (default 8)")
    p.add_argument("--scale", type=float, default=0.1, help="sample scale (default 0.1)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--models", default="all", help="registry keys or 'all' (default)")
    p.add_argument("--windows", default="none,5,10",
                   help="comma list of window lengths in seconds, 'none' = whole sequences")
    p.add_argument("--label-modes", default=",".join(LABEL_MODES))
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--no-doc", action="store_true", help=f"do not write {DOC}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    windows = [None if w.strip() == "none" else float(w) for w in args.windows.split(",")]
    modes = [m.strip() for m in args.label_modes.split(",") if m.strip()]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="lo2-matrix-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        tree = work / "tree"
        sample = make_sample(tree, args.runs, args.scale, args.seed)
        print(f"[Matrix] sample: {sample}", flush=True)
        loads: dict[str, Any] = {}
        for w in windows:
            name = "none" if w is None else f"{w:g}"
            loads[name] = load(tree, work / f"load_{name}", w, args.seed)
            print(f"[Matrix] loaded window {name}: {loads[name]['sequences']:,} rows in "
                  f"{loads[name]['seconds']} s", flush=True)
        outcomes = []
        for mode in modes:
            for w in windows:
                for per_service in (False, True):
                    cfg = Config(mode, w, per_service)
                    name = "none" if w is None else f"{w:g}"
                    res = run_config(cfg, work / f"load_{name}", work / "metrics",
                                     args.models, args.seed)
                    print(f"[Matrix] {cfg.slug}: {res['seconds']:.1f} s"
                          + (f" ERROR {res['error']}" if res["error"] else ""), flush=True)
                    outcomes.append(res)
        facts = {"sample": sample, "loads": loads, "models": args.models,
                 "seconds": time.perf_counter() - started,
                 "machine": f"{platform.machine()} / Python {platform.python_version()} / "
                            f"polars {pl.__version__}",
                 "manifest": tree / "lo2_manifest.csv"}
        text = eval_tables.document(outcomes, facts)
        print(text)
        if not args.no_doc:
            write_text_atomic(DOC, text)
            print(f"[Matrix] wrote {DOC}")
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
