#!/usr/bin/env python3
"""Loader and enhancer throughput on generated LO2 runs (prints figures, asserts nothing).

    python benchmarks/bench_loader.py --runs 1 5            # scale 1.0: ~1.1 M lines per run
    python benchmarks/bench_loader.py --runs 20 --batch 2    # bounded-memory streaming check

For each run count it generates (or reuses) a sample under --work, then measures in fresh
subprocesses, so that peak RSS is that of one step alone:
  load     discovery + parsing into the events table (no enhancement, nothing written)
  enhance  the full loader with --save-parquet (parse + enhancers + aggregation + write);
           the enhancement share is reported from the loader's own step timings.
  vocab    from the written sequences: distinct normalised words (``e_words``), Drain
           templates, and how many of each service's 50 most frequent words look like id
           fragments (must be 0: a vocabulary that grows with the runs means ids leak).

The sample is the default (realistic) generator output; --batch defaults to the loader's own
default (``--enhancer-run-batch``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._child import measure_child  # noqa: E402


def _worker(mode: str, tree: Path, out: Path, batch: int) -> None:
    from loglead_lo2.loader import LoadOptions, SelectOptions, parse_files, run_loader, select

    start = time.perf_counter()
    if mode == "load":
        sel = select(tree, SelectOptions())
        events, stats = parse_files(sel.files)
        result = {"lines": stats.lines, "events": events.height}
    else:
        report = run_loader(
            LoadOptions(root=tree, output_dir=out, save_parquet=True, run_batch=batch,
                        overwrite=True)
        )
        result = {"lines": report.stats.lines, "events": report.events,
                  "sequences": report.sequences, "timings": report.timings}
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result))


def _measure(mode: str, tree: Path, out: Path, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--tree", str(tree), "--out", str(out),
           "--batch", str(batch)]
    return measure_child(cmd, f"{mode} worker")


def _id_like(word: str) -> bool:
    """Same test as tests/test_normalize.py: a hex piece, or a long mixed base64-like run."""
    import re

    if re.fullmatch(r"[0-9a-f]*(?:[0-9][a-f]|[a-f][0-9])[0-9a-f]*", word):
        return True
    return (len(word) >= 16 and sum(c.isdigit() for c in word) >= 3
            and any(c.islower() for c in word) and any(c.isupper() for c in word))


def _vocab(out: Path) -> dict:
    import polars as pl

    seqs = pl.scan_parquet(out / "lo2_sequences_enhanced.parquet").select(
        "service", "e_words", "e_words_counts")
    pairs = (seqs.explode(["e_words", "e_words_counts"])
             .group_by("service", "e_words").agg(pl.col("e_words_counts").sum().alias("n"))
             .collect())
    leaks = 0
    for service in sorted(pairs["service"].unique().to_list()):
        top = (pairs.filter(pl.col("service") == service)
               .sort(["n", "e_words"], descending=[True, False]).head(50)["e_words"].to_list())
        leaks += sum(_id_like(w) for w in top if w is not None)
    templates = pl.scan_parquet(out / "lo2_drain_templates.parquet").select(pl.len()).collect()
    return {"words": pairs["e_words"].n_unique(), "templates": int(templates.item()),
            "top50_id_fragments": leaks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, nargs="+", default=[1, 5, 20])
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch", type=int, default=None,
                   help="--enhancer-run-batch for 'enhance' (default: the loader's; 0 = all)")
    p.add_argument("--work", type=Path, default=Path("/tmp/lo2_bench"))
    p.add_argument("--skip-load", action="store_true", help="only measure 'enhance'")
    p.add_argument("--worker", choices=["load", "enhance"], help=argparse.SUPPRESS)
    p.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch is None:
        from loglead_lo2.loader.pipeline import DEFAULT_RUN_BATCH

        args.batch = DEFAULT_RUN_BATCH
    if args.worker:
        _worker(args.worker, args.tree, args.out, args.batch)
        return 0
    from loglead_lo2.generator import generate

    print(f"cores: {os.cpu_count()}, scale {args.scale}, seed {args.seed}")
    for n in args.runs:
        tree = args.work / f"runs{n}_scale{args.scale:g}_seed{args.seed}"
        if not (tree / "lo2_sample.json").exists():
            t = time.perf_counter()
            summary = generate(tree, runs=n, seed=args.seed, scale=args.scale, overwrite=True)
            print(f"[{n} run(s)] generated {summary.lines:,} lines in "
                  f"{time.perf_counter() - t:.1f}s")
        if not args.skip_load:
            r = _measure("load", tree, args.work / "out", args.batch)
            print(f"[{n} run(s)] load:    {r['lines']:,} lines in {r['seconds']:.2f}s = "
                  f"{r['lines'] / r['seconds']:,.0f} lines/s, peak RSS {r['peak_rss_gb']:.2f} GB")
        r = _measure("enhance", tree, args.work / "out", args.batch)
        tm = r["timings"]
        enh = tm.get("enhance", 0.0) + tm.get("aggregate", 0.0)
        print(f"[{n} run(s)] load+enhance+write: {r['seconds']:.2f}s = "
              f"{r['lines'] / r['seconds']:,.0f} lines/s (batch {args.batch or 'all'}), "
              f"peak RSS {r['peak_rss_gb']:.2f} GB")
        print(f"[{n} run(s)] enhancement alone: {enh:.2f}s = {r['lines'] / max(enh, 1e-9):,.0f} "
              f"lines/s; steps: " + ", ".join(f"{k} {v:.2f}s" for k, v in tm.items()))
        v = _vocab(args.work / "out")
        print(f"[{n} run(s)] vocabulary: {v['words']:,} distinct normalised words, "
              f"{v['templates']:,} Drain templates, {v['top50_id_fragments']} id fragment(s) "
              "among the 50 most frequent words of each service")
    return 0


if __name__ == "__main__":
    sys.exit(main())
