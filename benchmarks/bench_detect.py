#!/usr/bin/env python3
"""Benchmark the detection phase: training and scoring time and peak RSS per model.

Each model runs in its own (spawned) child process that reads the data from Parquet, so its
peak RSS (``ru_maxrss``) is its own: data + vectoriser + model.
Each model takes the detection phase's own path: target-service labels, run-grouped hold-out,
calibration runs held back, fit, fp-target threshold, every row scored
(``loglead_lo2.detection.runner.run_model``, the forest included: it is a registry entry).
Data: for each of ``--runs`` (default 5 and 20) an LO2 sample made by the package's generator at
``--scale`` (default 1.0: ~1.1 M lines per run) and loaded + enhanced by the loader
(``--enhancer-run-batch 2``, ``--window`` seconds, default 5; ``--window 0`` = whole
sequences), cached under ``--work``; or an enhanced-sequence Parquet file (``--parquet``); or
``--synthetic`` sequences from ``tests/detection_data.py``.

    python benchmarks/bench_detect.py --runs 5 20
    python benchmarks/bench_detect.py --parquet demo/result/lo2/lo2_sequences_enhanced.parquet
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from loglead_lo2.detection.registry import DEFAULT_MODELS, REGISTRY, resolve_models  # noqa: E402


def synthetic(n_runs: int, seed: int = 0) -> pl.DataFrame:
    """Synthetic enhanced sequences (all services, all error cases' target sequences)."""
    from loglead_lo2 import SERVICES
    from loglead_lo2.cases import error_cases
    from tests.detection_data import make_enhanced_sequences

    return make_enhanced_sequences(n_runs, services=SERVICES, error_cases=error_cases(),
                                   non_target=True, events_per_seq=60, seed=seed)


def generated(n_runs: int, scale: float, seed: int, work: Path, window: float | None
              ) -> pl.DataFrame:
    """Enhanced sequences of ``n_runs`` generated runs (generated and loaded once, cached)."""
    from loglead_lo2.generator import generate
    from loglead_lo2.loader import LoadOptions, run_loader

    tree = work / f"runs{n_runs}_scale{scale:g}_seed{seed}"
    win = f"_w{window:g}" if window else ""
    out = work / f"loaded_runs{n_runs}_scale{scale:g}_seed{seed}{win}"
    enhanced = out / "lo2_sequences_enhanced.parquet"
    if not enhanced.exists():
        if not (tree / "lo2_sample.json").exists():
            generate(tree, runs=n_runs, seed=seed, scale=scale, overwrite=True)
        run_loader(LoadOptions(root=tree, output_dir=out, save_parquet=True, run_batch=2,
                               window=window, overwrite=True))
    return pl.read_parquet(enhanced)


def _peak_rss_mib() -> float:
    """Peak RSS of this process: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _bench_one(key: str, path: str, queue: Any) -> None:
    from loglead_lo2.detection.labels import apply_label_mode
    from loglead_lo2.detection.split import run_grouped_split
    from loglead_lo2.detection.thresholds import ThresholdSettings

    df, _ = apply_label_mode(pl.read_parquet(path), "target-service")
    split = run_grouped_split(df, fraction=0.2)
    train, _hold = split.frames(df)
    from loglead_lo2.detection.runner import run_model

    run = run_model(REGISTRY[key], df, train, sorted(split.test_runs), ThresholdSettings())
    fit, score = run.fitted.fit_seconds, run.score_seconds
    queue.put({"model": key, "fit_seconds": round(fit, 3), "score_seconds": round(score, 3),
               "rows": df.height, "peak_rss_mib": round(_peak_rss_mib(), 1)})


def bench(path: Path, keys: list[str]) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")  # fork deadlocks with polars' thread pool
    rows = []
    for key in keys:
        queue = ctx.Queue()
        proc = ctx.Process(target=_bench_one, args=(key, str(path), queue))
        proc.start()
        row = queue.get()
        proc.join()
        rows.append(row)
        print(f"  {key:<26} fit {row['fit_seconds']:>8.2f}s  score {row['score_seconds']:>7.2f}s"
              f" ({row['rows']:,} rows)"
              f"  peak RSS {row['peak_rss_mib']:>8.1f} MiB", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parquet", type=Path, default=None,
                   help="enhanced sequences to benchmark on (default: synthetic data)")
    p.add_argument("--runs", type=int, nargs="+", default=[5, 20],
                   help="run counts (default 5 20)")
    p.add_argument("--scale", type=float, default=1.0, help="generator scale (default 1.0)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--window", type=float, default=5.0,
                   help="loader --window for generated data (default 5; 0 = whole sequences)")
    p.add_argument("--work", type=Path, default=Path("/tmp/lo2_bench"),
                   help="cache for generated and loaded samples")
    p.add_argument("--synthetic", action="store_true",
                   help="use tests/detection_data.py sequences instead of generated runs")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="comma list of registry keys ('all' for every key); the Isolation "
                        "Forest is always included")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    keys = list(dict.fromkeys(["isolation_forest", *resolve_models(args.models)]))
    results: list[dict[str, Any]] = []
    if args.parquet:
        datasets = [(str(args.parquet), lambda: pl.read_parquet(args.parquet))]
    elif args.synthetic:
        datasets = [(f"synthetic {n} runs", lambda n=n: synthetic(n)) for n in args.runs]
    else:
        datasets = [(f"generated {n} runs at scale {args.scale:g}",
                     lambda n=n: generated(n, args.scale, args.seed, args.work,
                                           args.window or None))
                    for n in args.runs]
    for name, load in datasets:
        t = time.perf_counter()
        df = load()
        print(f"{name}: {df.height:,} sequences, {df['run'].n_unique()} runs "
              f"(prepared in {time.perf_counter() - t:.1f}s)", flush=True)
        total = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
            path = Path(tmp) / "sequences.parquet"
            df.write_parquet(path)
            for row in bench(path, keys):
                results.append({"data": name, "sequences": df.height, **row})
        print(f"  total {time.perf_counter() - total:.1f}s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
