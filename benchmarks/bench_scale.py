#!/usr/bin/env python3
"""How the loader scales with the number of runs, and a projection for the full LO2 release.

    python benchmarks/bench_scale.py                       # 1, 5, 20, 40 runs at scale 1.0
    python benchmarks/bench_scale.py --runs 1 5 --detect-rows 0

One realistic tree of ``max(--runs)`` runs is generated once (the package's generator, scale
1.0: ~1.04 M lines per run) under ``--work``; each run count N loads its first N runs
(``lo2-load --runs N``: the oldest N) in a fresh process with ``--save-parquet`` (the load
every detection needs) and, with ``--events``, ``--save-events``. Printed per N: wall time,
peak RSS (``ru_maxrss`` of that process), lines/s, the time of each run in order and the RSS
after it (so a step that grows with the runs shows), the least-squares slope of seconds per
run against the run's position, and a projection for the full release (1,740 runs, ~2 G
lines) from the largest N, and the process's CPU time (user + system; it varies less than wall
time on a shared host). Then, unless ``--detect-rows 0``, a simulated full-size detection:
``benchmarks/bench_detect.py --parquet <largest load> --rows <detect-rows>`` (the enhanced
table replicated to that many sequences, one model per child process).

``--dask-workers 1 2`` measures the Dask path's scaling in workers: ``--dask-runs`` runs
loaded with ``--workers N`` for each N, every process (client and workers) held to one
polars thread (``POLARS_MAX_THREADS=1``), so N workers use N cores; printed: wall, lines/s
and the speed-up over the first N. (Without the thread cap one process already uses every
core and workers only compete for them.)

Figures are printed, never asserted: they depend on the machine (cores, disk, other load).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._child import measure_child  # noqa: E402

FULL_RUNS = 1740
FULL_LINES = 2.0e9


def _worker(tree: Path, out: Path, runs: int, events: bool, window: float | None,
            workers: int | None = None, metrics: bool = False) -> None:
    import psutil

    from loglead_lo2.loader import LoadOptions, run_loader

    proc = psutil.Process()
    marks: list[tuple[float, float]] = []
    start = time.perf_counter()

    def say(message: str) -> None:
        if message.startswith("[load] run "):
            marks.append((time.perf_counter() - start, proc.memory_info().rss / 1024**3))

    report = run_loader(LoadOptions(root=tree, output_dir=out, runs=runs, save_parquet=True,
                                    save_events=events, window=window, overwrite=True,
                                    workers=workers, load_metrics=metrics), say)
    seconds = time.perf_counter() - start
    steps = [b[0] - a[0] for a, b in zip([(0.0, 0.0), *marks[:-1]], marks, strict=True)]
    print(json.dumps({"lines": report.stats.lines, "events": report.events,
                      "sequences": report.sequences, "templates": report.templates,
                      "seconds": seconds, "per_run": steps, "rss": [m[1] for m in marks],
                      "timings": report.timings}))


def _measure(tree: Path, out: Path, runs: int, events: bool, window: float | None,
             workers: int | None = None, metrics: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--tree", str(tree), "--out", str(out),
           "--runs", str(runs)] + (["--events"] if events else []) + (
        ["--window", str(window)] if window is not None else []) + (
        ["--workers", str(workers)] if workers else []) + (
        ["--load-metrics"] if metrics else [])
    env = {"POLARS_MAX_THREADS": "1"} if workers else None
    return measure_child(cmd, f"loader worker for {runs} run(s)", env)


def _dask_scaling(tree: Path, out: Path, runs: int, counts: list[int], events: bool,
                  window: float | None) -> None:
    """Wall time of the Dask path for each worker count, one polars thread per process."""
    first: float | None = None
    for n in counts:
        # the parts of an earlier count would be reused: start each load over
        r = _measure(tree, out / f"dask{n}", runs, events, window, workers=n)
        first = first or r["seconds"]
        print(f"[dask {n} worker(s), 1 thread each] {runs} run(s), {r['lines']:,} lines in "
              f"{r['seconds']:.1f} s = {r['lines'] / r['seconds']:,.0f} lines/s, speed-up "
              f"{first / r['seconds']:.2f}x over {counts[0]} worker(s); peak RSS of the largest "
              f"process {r['peak_rss_gb']:.2f} GB", flush=True)


def _slope(values: list[float]) -> float:
    """Least-squares slope of ``values`` against their position (seconds per run per run)."""
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    num = sum((i - mx) * (v - my) for i, v in enumerate(values))
    den = sum((i - mx) ** 2 for i in range(n))
    return num / den


def _report(n: int, r: dict) -> None:
    per = r["per_run"]
    print(f"[{n:>3} run(s)] {r['lines']:,} lines in {r['seconds']:.1f} s = "
          f"{r['lines'] / r['seconds']:,.0f} lines/s, peak RSS {r['peak_rss_gb']:.2f} GB, "
          f"{r['sequences']:,} sequences, {r['templates']} templates")
    steps = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["timings"].items()))
    print(f"             steps (s): {steps}")
    print(f"             CPU {r['cpu_seconds']:.1f} s (system {r['sys_seconds']:.1f} s) = "
          f"{r['cpu_seconds'] / r['seconds']:.2f} cores busy, {r['cpu_seconds'] / n:.2f} "
          "CPU-s per run with start-up (the steadier figure on a shared host)")
    if len(per) > 1:
        head, tail = per[: min(5, len(per))], per[-min(5, len(per)):]
        print(f"             s/run: first {sum(head) / len(head):.2f}, last "
              f"{sum(tail) / len(tail):.2f}, slope {_slope(per):+.4f} s per run per run; RSS "
              f"after run 1 {r['rss'][0]:.2f} GB, after run {len(per)} {r['rss'][-1]:.2f} GB")
        print("             s per run: " + " ".join(f"{v:.1f}" for v in per))


def _project(r: dict) -> None:
    per = r["per_run"]
    tail = per[-min(5, len(per)):]
    mean = sum(tail) / len(tail)
    slope = max(_slope(per), 0.0)
    # sum over k = 1..FULL of (mean + slope * (k - n)): the last runs' cost, growing at the
    # measured slope (0 when flat)
    n = len(per)
    total = FULL_RUNS * mean + slope * sum(k - n for k in range(1, FULL_RUNS + 1) if k > n)
    rate = r["lines"] / r["seconds"]
    flat = FULL_RUNS * sum(per) / len(per)
    print(f"projection for the full release ({FULL_RUNS:,} runs, ~2 G lines): "
          f"{flat / 3600:.2f} h if time per run stays at this load's mean "
          f"({sum(per) / len(per):.2f} s); {FULL_LINES / rate / 3600:.2f} h at {rate:,.0f} "
          f"lines/s; {total / 3600:.2f} h if it kept growing at the measured slope "
          f"({slope:+.4f} s per run per run, from the last runs' {mean:.2f} s/run)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, nargs="+", default=[1, 5, 20, 40])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work", type=Path, default=Path("/tmp/lo2_scale"))
    p.add_argument("--events", action="store_true", help="also write lo2_events.parquet")
    p.add_argument("--window", type=float, default=None, help="--window seconds of the load")
    p.add_argument("--detect-rows", type=int, default=600_000,
                   help="sequences of the simulated full-size detection (0: skip it)")
    p.add_argument("--dask-workers", type=int, nargs="*", default=[],
                   help="also load --dask-runs runs with --workers N for each N, one polars "
                        "thread per process (scaling in workers)")
    p.add_argument("--dask-runs", type=int, default=6)
    p.add_argument("--load-metrics", action="store_true",
                   help="generate the runs with metrics and load them (--load-metrics: read "
                        "run by run, features joined to the enhanced sequences)")
    p.add_argument("--workers", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args.tree, args.out, args.runs[0], args.events, args.window, args.workers,
                args.load_metrics)
        return 0
    from loglead_lo2.generator import generate

    most = max([*args.runs, args.dask_runs if args.dask_workers else 0])
    tree = args.work / (f"runs{most}_scale{args.scale:g}_seed{args.seed}"
                        + ("_metrics" if args.load_metrics else ""))
    print(f"cores: {os.cpu_count()}, scale {args.scale}, seed {args.seed}, tree {tree}")
    if not (tree / "lo2_sample.json").exists():
        t = time.perf_counter()
        summary = generate(tree, runs=most, seed=args.seed, scale=args.scale, overwrite=True,
                           with_metrics=args.load_metrics)
        print(f"generated {most} run(s), {summary.lines:,} lines in "
              f"{time.perf_counter() - t:.1f} s")
    last: dict | None = None
    out = args.work / "out"
    for n in sorted(set(args.runs)):
        last = _measure(tree, out, n, args.events, args.window, metrics=args.load_metrics)
        _report(n, last)
    if last is not None:
        _project(last)
    if args.dask_workers:
        _dask_scaling(tree, out, args.dask_runs, args.dask_workers, args.events, args.window)
    if args.detect_rows > 0:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_detect.py"), "--parquet",
               str(out / "lo2_sequences_enhanced.parquet"), "--rows", str(args.detect_rows)]
        print("simulated full-size detection: " + " ".join(cmd[1:]), flush=True)
        return subprocess.call(cmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
