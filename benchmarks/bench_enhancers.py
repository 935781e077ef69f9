#!/usr/bin/env python3
"""Where the loader + enhancers spend memory, stage by stage (prints figures, asserts nothing).

    python benchmarks/bench_enhancers.py --runs 1 5                # every stage, 1 and 5 runs
    python benchmarks/bench_enhancers.py --runs 5 20 --stages loader loader_batch1
    python benchmarks/bench_enhancers.py --runs 1 --json-share 0.5 --leak 1.0  # leaky ids
    python benchmarks/bench_enhancers.py --trigrams                  # 1 MB line vs short lines
    python benchmarks/bench_enhancers.py --long-line                 # whole loader, one huge line
    python benchmarks/bench_enhancers.py --long-line --uncapped      # ... without the cap

Input: full-scale runs of the package generator (``lo2-sample --scale 1.0``, ~1.1 M lines per
run), which follows the recording harness: request bodies with fresh random ids, so that
about 40 % of the raw ``m_message`` values are distinct. ``--json-share`` makes it harder: that
share of the ``ApiNormalisedPath`` lines become further ``TypeValidator`` lines that carry a
whole JSON request body (8-hex ids, UUIDs, 32-character UUID prefixes, base64url secrets,
e-mails, names), and ``--leak`` is the share of those that also carry a random word no
normaliser can mask (a made-up first name), so that many distinct *normalised* messages
remain: the pipeline has to hold its memory even then. Trees are cached under ``--work``
(per generator version).

Every stage runs in a fresh subprocess. The input of a stage (the previous stage's output,
cached as Parquet) is read first, then the stage alone is timed and its RSS sampled (psutil,
every 5 ms). ``peak`` is the process's peak RSS during the stage, ``rise`` the increase over
the RSS once the input was loaded. The ``loader`` stages run the whole loader
(``run_loader`` with ``--save-parquet``, default batching, i.e. what ``lo2-load`` does) and
report the process peak (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = (
    "parse", "distinct_codes", "normalize", "drain", "length", "word_table", "trigram_table",
    "bags_words", "bags_trigrams", "aggregate", "write", "loader", "loader_batch1",
)
DEFAULT_STAGES = tuple(s for s in STAGES if s != "loader_batch1")
_TARGET = " DEBUG c.n.openapi.ApiNormalisedPath <init> - "
_FIRST = ("Steve", "Anna", "Li", "Maria", "John", "Aino", "Mika", "Sara", "Omar", "Yuki",
          "Pekka", "Jose", "Ella", "Noah", "Eeva", "Ivan")
_LAST = ("Hu", "Smith", "Virtanen", "Garcia", "Korhonen", "Chen", "Nieminen", "Khan",
         "Lopez", "Makinen", "Tanaka", "Rossi")


# ---------------------------------------------------------------- realistic input trees

def _chars(rng: np.random.Generator, n: int, alphabet: bytes, width: int) -> pl.Series:

    table = np.frombuffer(alphabet, dtype=np.uint8)
    raw = np.ascontiguousarray(table[rng.integers(0, len(table), size=(n, width))])
    return pl.Series(raw.view(f"S{width}").ravel()).cast(pl.String)


def _json_messages(rng: np.random.Generator, n: int, leak: float) -> pl.Series:
    """``n`` TypeValidator messages whose JSON body carries random ids (columnar)."""

    hexd = b"0123456789abcdef"
    b64u = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    uuid = pl.select(pl.concat_str([_chars(rng, n, hexd, w) for w in (8, 4, 4, 4, 12)],
                                    separator="-")).to_series()
    prefix32 = uuid.str.slice(0, 32)
    cols = {
        "kind": pl.Series(rng.integers(0, 3, n)),
        "field": pl.Series(rng.integers(0, 3, n)),
        "id8": _chars(rng, n, hexd, 8),
        "owner": _chars(rng, n, hexd, 8),
        "uuid": uuid,
        "name32": prefix32,
        "desc32": _chars(rng, n, hexd, 8) + uuid.str.slice(8, 24),
        "secret": _chars(rng, n, b64u, 22),
        "password": _chars(rng, n, b64u, 16),
        "first": pl.Series(_FIRST).gather(rng.integers(0, len(_FIRST), n)),
        "last": pl.Series(_LAST).gather(rng.integers(0, len(_LAST), n)),
        "made_up": _chars(rng, n, b"abcdefghijklmnopqrstuvwxyz", 7).str.to_titlecase(),
        "leak": pl.Series(rng.random(n) < leak),
    }
    c, q = pl.col, pl.lit('"')
    first = pl.when(c("leak")).then(c("made_up")).otherwise(c("first"))
    user = pl.concat_str([
        pl.lit('{"userId":"'), c("id8"), pl.lit('","userType":"customer","firstName":"'), first,
        pl.lit('","lastName":"'), c("last"), pl.lit('","email":"'), c("id8"),
        pl.lit('@example.com","password":"'), c("password"), pl.lit('","passwordConfirm":"'),
        c("password"), pl.lit('","roles":"user"}'),
    ])
    client = pl.concat_str([
        pl.lit('{"clientId":"'), c("uuid"), pl.lit('","clientSecret":"'), c("secret"),
        pl.lit('","clientType":"public","clientProfile":"mobile","clientName":"'), c("name32"),
        pl.lit('","clientDesc":"'), c("desc32"), pl.lit('","ownerId":"'), c("owner"),
        pl.lit('","host":"lightapi.net","scope":"read write","contact":"'), first,
        pl.lit('","redirectUri":"http://localhost:8080/authorization"}'),
    ])
    service = pl.concat_str([
        pl.lit('{"serviceId":"'), c("id8"), pl.lit('","serviceType":"openapi","serviceName":"'),
        c("name32"), pl.lit('","serviceDesc":"'), c("desc32"), pl.lit('","ownerId":"'),
        c("owner"), pl.lit('","host":"lightapi.net","scope":"read write","contact":"'), first,
        pl.lit('"}'),
    ])
    email = pl.concat_str([c("id8"), pl.lit("@example.com")])
    fields = {0: (("userId", c("id8")), ("email", email), ("firstName", first)),
              1: (("clientId", c("uuid")), ("clientName", c("name32")), ("ownerId", c("owner"))),
              2: (("serviceId", c("id8")), ("serviceName", c("name32")), ("ownerId", c("owner")))}
    body = pl.when(c("kind") == 0).then(user).when(c("kind") == 1).then(client).otherwise(service)
    value, name = pl.lit(""), pl.lit("")
    for kind, options in fields.items():
        for i, (fname, fvalue) in enumerate(options):
            hit = (c("kind") == kind) & (c("field") == i)
            value = pl.when(hit).then(fvalue).otherwise(value)
            name = pl.when(hit).then(pl.lit(fname)).otherwise(name)
    message = pl.concat_str([
        pl.lit(" DEBUG com.networknt.schema.TypeValidator debug - validate( "), q, value, q,
        pl.lit(", "), body, pl.lit(", $."), name, pl.lit(")"),
    ])
    return pl.DataFrame(cols).select(message.alias("m")).get_column("m")


def _realistic_run(src: Path, dst: Path, rng: np.random.Generator, share: float,
                   leak: float) -> int:
    """Copy one run folder, turning a share of the ApiNormalisedPath lines into JSON lines."""

    files = sorted(src.rglob("*.log"))
    texts = [f.read_text() for f in files]
    lines = (
        pl.DataFrame({"f": pl.Series(range(len(files)), dtype=pl.UInt32), "line": texts})
        .with_columns(pl.col("line").str.split("\n")).explode("line")
    )
    del texts
    pos = pl.col("line").str.find(_TARGET, literal=True)
    lines = lines.with_columns(pos.alias("pos"))
    pick = lines.get_column("pos").is_not_null().to_numpy() & (rng.random(lines.height) < share)
    idx = np.flatnonzero(pick)
    picked = lines[idx]
    new = picked.select(
        pl.col("f"),
        pl.concat_str([pl.col("line").str.slice(0, pl.col("pos")),
                       _json_messages(rng, len(idx), leak)]).alias("line"),
    )
    replaced = lines.with_row_index("i").filter(~pl.Series(pick)).drop("pos")
    new = new.with_columns(pl.Series("i", idx, dtype=pl.UInt32)).select("i", "f", "line")
    merged = pl.concat([replaced.select("i", "f", "line"), new]).sort("i")
    per_file = merged.group_by("f", maintain_order=True).agg(pl.col("line").str.join("\n"))
    for f, text in per_file.iter_rows():
        out = dst / files[f].relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    for extra in src.rglob("*"):
        target = dst / extra.relative_to(src)
        if extra.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(extra, target)
    return len(idx)


def _generator_tag() -> str:
    """crc32 of the generator's sources: a cached tree is reused only by the same generator."""
    crc = 0
    for path in sorted((ROOT / "loglead_lo2" / "generator").glob("*.py")):
        crc = zlib.crc32(path.read_bytes(), crc)
    return f"{crc:08x}"


def realistic_tree(work: Path, runs: int, seed: int, share: float, leak: float) -> Path:
    """Generate (or reuse) ``runs`` full-scale runs, plus their high-cardinality copy when
    ``share`` > 0."""
    from loglead_lo2.generator import generate

    plain = work / f"gen{_generator_tag()}_runs{runs}_seed{seed}"
    if not (plain / "lo2_sample.json").exists():
        t = time.perf_counter()
        generate(plain, runs=runs, seed=seed, scale=1.0, overwrite=True)
        print(f"[{runs} run(s)] generated in {time.perf_counter() - t:.0f}s", flush=True)
    if share <= 0:
        return plain
    tree = plain.with_name(f"{plain.name}_json{share:g}_leak{leak:g}")
    if (tree / "lo2_sample.json").exists():
        return tree
    tmp = tree.with_name(tree.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t = time.perf_counter()
    replaced = 0
    for i, run_dir in enumerate(sorted(p for p in plain.iterdir() if p.is_dir())):
        rng = np.random.default_rng([seed, i, 7])
        replaced += _realistic_run(run_dir, tmp / run_dir.name, rng, share, leak)
    for name in ("lo2_manifest.csv", "lo2_sample.json"):
        if (plain / name).exists():
            shutil.copy2(plain / name, tmp / name)
    tmp.rename(tree)
    print(f"[{runs} run(s)] {replaced:,} JSON lines written in {time.perf_counter() - t:.0f}s",
          flush=True)
    return tree


# ---------------------------------------------------------------- stage workers

def _cache(cache: Path, name: str) -> Path:
    return cache / f"{name}.parquet"


def _worker(stage: str, tree: Path, cache: Path) -> dict[str, object]:
    """Run ``stage`` on the input of ``tree`` cached in ``cache``; cache its output."""

    from loglead_lo2.enhancers import DrainParser, aggregate_sequences, length, normalize
    from loglead_lo2.enhancers._common import distinct_codes
    from loglead_lo2.enhancers.tokens import SOURCE, TABLES, TOKEN_COLUMNS
    from loglead_lo2.loader import LoadOptions, SelectOptions, parse_files, run_loader, select
    from loglead_lo2.schema import ParquetStreamWriter

    info: dict[str, object] = {}
    inputs = {"distinct_codes": "events", "normalize": "events", "drain": "normalized",
              "length": "drained", "word_table": "enhanced", "trigram_table": "enhanced",
              "bags_words": "enhanced", "bags_trigrams": "enhanced", "aggregate": "enhanced",
              "write": "sequences"}
    data = None
    if stage in inputs:
        data = pl.read_parquet(_cache(cache, inputs[stage]))
        info["input_rows"] = data.height
    if stage in ("word_table", "trigram_table"):
        data = data.select(pl.col(SOURCE).unique().sort())
        info["distinct_normalized"] = data.height
    gc.collect()
    out = None
    from loglead_lo2.enhancers.benchmark import PeakRss

    with PeakRss() as rss:
        t0 = time.perf_counter()
        if stage == "parse":
            sel = select(tree, SelectOptions())
            out, stats = parse_files(sel.files)
            info["lines"] = stats.lines
        elif stage == "distinct_codes":
            codes, distinct = distinct_codes(data.get_column("m_message"))
            info["distinct_raw"] = distinct.len()
        elif stage == "normalize":
            out = normalize(data)
        elif stage == "drain":
            out = DrainParser().parse(data)
        elif stage == "length":
            out = length(data)
        elif stage in ("word_table", "trigram_table"):
            table = TABLES["e_words" if stage == "word_table" else "e_trigrams"](data)
            info["tokens"] = int(table.get_column(table.columns[-1]).sum())
        elif stage.startswith("bags_"):
            seqs = aggregate_sequences(data, tokens=(f"e_{stage[5:]}",))
            info["sequences"] = seqs.height
        elif stage == "aggregate":
            out = aggregate_sequences(data, tokens=TOKEN_COLUMNS)
        elif stage == "write":
            writer = ParquetStreamWriter(cache / "out.parquet", kind="sequences_enhanced")
            writer.write(data)
            writer.close()
        elif stage in ("loader", "loader_batch1"):
            opts = LoadOptions(root=tree, output_dir=cache / "out", save_parquet=True,
                               overwrite=True, **({"run_batch": 1} if stage != "loader" else {}))
            report = run_loader(opts)
            info["events"] = report.events
            info["timings"] = {k: round(v, 2) for k, v in report.timings.items()}
        seconds = time.perf_counter() - t0
    names = {"parse": "events", "normalize": "normalized", "drain": "drained",
             "length": "enhanced", "aggregate": "sequences"}
    if out is not None and stage in names:
        out.write_parquet(_cache(cache, names[stage]))
    info.update(seconds=seconds, start_mib=rss.start / 2**20, peak_mib=rss.peak / 2**20)
    return info


def _old_trigrams(text: pl.Series) -> int:
    """The former ``trigram_table`` (``int_ranges`` + ``explode`` + ``str.slice``), for
    comparison: ``str.slice`` at a character offset is O(offset), so it is quadratic."""

    t = pl.col("t").fill_null("")
    n = (t.str.len_chars().cast(pl.Int64) - 2).clip(lower_bound=0)
    return (
        text.to_frame("t").select(t, pl.int_ranges(0, n).alias("o"))
        .explode("o", empty_as_null=False)
        .select(pl.col("t").str.slice(pl.col("o"), 3)).height
    )


def trigram_bench(old_max: int) -> None:
    """Seconds for the trigrams of one long line vs the same bytes as 100-character lines."""

    from loglead_lo2.enhancers.tokens import trigram_table

    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789 {}:,\"", dtype=np.uint8)
    trigram_table(pl.Series(["warm-up Ä"]).to_frame("m"), "m")
    print(f"{'input':34s} {'chars':>10s} {'trigrams':>10s} {'new s':>8s} {'old s':>8s}")
    for size in (10_000, 100_000, 1_000_000):
        raw = bytes(alphabet[rng.integers(0, len(alphabet), size)])
        cases = [
            (f"one line of {size:,} chars", pl.Series([raw.decode()])),
            (f"{size // 100:,} lines of 100 chars",
             pl.Series([raw[i : i + 100].decode() for i in range(0, size, 100)])),
            (f"one line of {size:,} chars, with 'Ä'",
             pl.Series([raw.decode()]).str.replace_all("a", "Ä", literal=True)),
        ]
        for name, text in cases:
            t = time.perf_counter()
            out = trigram_table(text.to_frame("m"), "m")
            new = time.perf_counter() - t
            old = float("nan")
            if size <= old_max:
                t = time.perf_counter()
                _old_trigrams(text)
                old = time.perf_counter() - t
            grams = int(out.get_column("e_trigrams_len").sum())
            chars = int(text.str.len_chars().sum())
            print(f"{name:34s} {chars:10,d} {grams:10,d} {new:8.3f} {old:8.3f}", flush=True)


LONG_LINE_SIZES = (250_000, 1_000_000, 2_000_000, 20_000_000)


def long_line_bench(work: Path, sizes: list[int], uncapped: bool) -> None:
    """Seconds of the whole loader (``--save-parquet``) on a file with one line of each size
    (random bytes, the hardest case for the normaliser), per stage. ``uncapped`` lifts
    :data:`loglead_lo2.limits.MAX_MESSAGE_CHARS` (how it was before the cap)."""

    import importlib

    from loglead_lo2.loader import LoadOptions, run_loader

    norm = importlib.import_module("loglead_lo2.enhancers.normalize")  # not the function

    if uncapped:
        norm.MAX_MESSAGE_CHARS = 1 << 40
    head = (b"16:29:43.001 [XNIO-1 task-1]  sxn9TW9eQq6pn3-ZVwo2iw INFO  "
            b"com.networknt.config.Config getConfigStream - ")
    rng = np.random.default_rng(0)
    print(f"cap: {'none' if uncapped else f'{norm.MAX_MESSAGE_CHARS:,} characters'}")
    print(f"{'line bytes':>12s} {'seconds':>8s}  stages")
    for size in sizes:
        root = work / f"long_line_{size}"
        shutil.rmtree(root, ignore_errors=True)
        path = root / "light-oauth2-data-1719592986" / "correct" / "light-oauth2-oauth2-token-1.log"
        path.parent.mkdir(parents=True)
        body = rng.integers(0, 256, size, dtype=np.uint8)
        body[(body == 10) | (body == 13)] = 32
        path.write_bytes(head + body.tobytes() + b"\n")
        t = time.perf_counter()
        report = run_loader(LoadOptions(root=root, output_dir=root / "out", save_parquet=True,
                                        overwrite=True))
        seconds = time.perf_counter() - t
        stages = ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items())
        print(f"{size:12,d} {seconds:8.2f}  {stages}", flush=True)
        shutil.rmtree(root, ignore_errors=True)


def _measure(stage: str, tree: Path, cache: Path) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--worker", stage, "--tree", str(tree), "--cache", str(cache)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        return {"error": f"exit status {status}"}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["maxrss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, nargs="+", default=[1, 5])
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(DEFAULT_STAGES))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json-share", type=float, default=0.0,
                   help="share of ApiNormalisedPath lines that become JSON lines (default 0: "
                        "the generator's output as it is)")
    p.add_argument("--leak", type=float, default=0.1,
                   help="share of JSON lines with an unmaskable random word (default 0.1)")
    p.add_argument("--work", type=Path, default=Path("/tmp/lo2_bench_enh"))
    p.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    p.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--trigrams", action="store_true",
                   help="only time the trigram step: one long line vs many short lines")
    p.add_argument("--old-max", type=int, default=100_000,
                   help="with --trigrams: longest input also timed with the old slicing")
    p.add_argument("--long-line", type=int, nargs="*", metavar="BYTES", default=None,
                   help="only time the whole loader on one line of each size (default "
                        f"{' '.join(str(s) for s in LONG_LINE_SIZES)})")
    p.add_argument("--uncapped", action="store_true",
                   help="with --long-line: lift the message cap (the behaviour before it)")
    args = p.parse_args(argv)
    if args.long_line is not None:
        long_line_bench(args.work, args.long_line or list(LONG_LINE_SIZES), args.uncapped)
        return 0
    if args.trigrams:
        trigram_bench(args.old_max)
        return 0
    if args.worker:
        print(json.dumps(_worker(args.worker, args.tree, args.cache)))
        return 0
    print(f"cores: {os.cpu_count()}, json share {args.json_share:g}, leak {args.leak:g}")
    for n in args.runs:
        tree = realistic_tree(args.work, n, args.seed, args.json_share, args.leak)
        # stage outputs are cached per tree and per checkout (so two checkouts never mix)
        cache = args.work / "cache" / f"{tree.name}_{zlib.crc32(str(ROOT).encode()):08x}"
        cache.mkdir(parents=True, exist_ok=True)
        stages = list(args.stages)
        needs = {"distinct_codes": "parse", "normalize": "parse", "drain": "normalize",
                 "length": "drain", "word_table": "length", "trigram_table": "length",
                 "bags_words": "length", "bags_trigrams": "length", "aggregate": "length",
                 "write": "aggregate"}
        order = ["parse", "normalize", "drain", "length", "aggregate"]
        for stage in list(stages):
            dep = needs.get(stage)
            while dep is not None:
                cached = {"parse": "events", "normalize": "normalized", "drain": "drained",
                          "length": "enhanced", "aggregate": "sequences"}[dep]
                if dep not in stages and not _cache(cache, cached).exists():
                    stages.append(dep)
                dep = needs.get(dep)
        stages.sort(key=lambda s: (order.index(s) if s in order else len(order),
                                   STAGES.index(s)))
        print(f"\n[{n} run(s)] {tree}")
        print(f"{'stage':16s} {'seconds':>8s} {'peak MiB':>9s} {'rise MiB':>9s}  notes")
        for stage in stages:
            r = _measure(stage, tree, cache)
            if "error" in r:
                print(f"{stage:16s} failed: {r['error']}")
                continue
            peak = max(float(r["peak_mib"]), float(r["maxrss_mib"])) if stage.startswith(
                "loader") else float(r["peak_mib"])
            notes = {k: v for k, v in r.items()
                     if k not in ("seconds", "start_mib", "peak_mib", "maxrss_mib")}
            print(f"{stage:16s} {r['seconds']:8.2f} {peak:9.0f} "
                  f"{peak - float(r['start_mib']):9.0f}  {json.dumps(notes)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
