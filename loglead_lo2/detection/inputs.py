"""Input of the detection phase: read the enhanced sequences (only the columns a run needs,
token bags with their counts) or rebuild them run by run from the loader's events file."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from loglead_lo2.artifacts import ENHANCED_FILE, EVENTS_FILE, SEQUENCES_FILE, TEMPLATES_FILE
from loglead_lo2.detection import iforest as ifo
from loglead_lo2.errors import UserError
from loglead_lo2.schema import read_parquet, read_parquet_schema, with_bag_counts, write_parquet

if TYPE_CHECKING:
    from loglead_lo2.detection.pipeline import DetectOptions, DetectResult

log = logging.getLogger(__name__)
Say = Callable[[str], None]

BASE_COLUMNS: tuple[str, ...] = (*ifo.PREDICTION_KEYS, "seq_len", "duration_sec",
                                 "start_time", "end_time")
LOADER_HINT = (
    "python demo/lo2_e2e/run_lo2_loader.py --root <LO2 tree> --save-parquet "
    "--save-events --save-base-sequences --output-dir {root}"
)


def _replace_if(config: ifo.IFConfig, **changes: Any) -> ifo.IFConfig:
    from dataclasses import replace

    return replace(config, **changes)


def _event_batches(events_path: Path, runs_per_batch: int = 1) -> Any:
    """Events of ``runs_per_batch`` runs at a time (sorted), read lazily from Parquet."""
    runs = sorted(pl.scan_parquet(events_path).select(pl.col("run").unique())
                  .collect()["run"].to_list())
    for i in range(0, len(runs), runs_per_batch):
        part = runs[i:i + runs_per_batch]
        yield pl.scan_parquet(events_path).filter(pl.col("run").is_in(part)).collect()


def rebuild_enhanced(root: Path, out: Path, say: Say) -> int:
    """Write enhanced sequences to ``out`` from ``<root>/lo2_events.parquet``, one run at a
    time (tokens, trigrams, Drain ids; ``lo2_drain_templates.parquet`` beside ``out``)."""
    events_path, seq_path = root / EVENTS_FILE, root / SEQUENCES_FILE
    if not events_path.is_file():
        have = "only lo2_sequences.parquet (no tokens)" if seq_path.is_file() else "neither"
        raise UserError(
            f"{root}: no {ENHANCED_FILE}, and enhancing needs {EVENTS_FILE} + {SEQUENCES_FILE} "
            f"({have} found). Run the loader first: " + LOADER_HINT.format(root=root)
        )
    from loglead_lo2.enhancers import DrainParser, enhance_in_batches

    read_parquet_schema(events_path)
    validate = read_parquet(events_path, "events", columns=["run"])
    say(f"[Enhance] {validate.height:,} events in {events_path}; enhancing run by run ...")
    t = time.perf_counter()
    summary = enhance_in_batches(
        _event_batches(events_path), out, drain=DrainParser(),
        progress=lambda b, e, n: say(
            f"[Enhance] {b} run(s) done: {e:,} events, {n:,} sequences so far"),
    )
    if seq_path.is_file():
        base = read_parquet(seq_path, "sequences", columns=["seq_id"])
        if base.height != summary.rows:
            say(f"[Enhance] note: {seq_path} lists {base.height} sequences, the events give "
                f"{summary.rows}; using the events")
    say(f"[Enhance] {summary.rows:,} enhanced sequences, {summary.templates} Drain templates "
        f"in {time.perf_counter() - t:.1f}s")
    return summary.rows


def needed_columns(opts: DetectOptions, specs: list[Any], schema: dict[str, Any]) -> list[str]:
    """Columns the run reads; resolves ``--if-numeric`` against ``schema`` first."""
    if opts.if_numeric and not opts.if_config.numeric and not opts.skip_if:
        numeric, notes = ifo.resolve_numeric(opts.if_numeric, schema)
        for note in notes:
            log.info(note)
            opts.notes.append(note)
        opts.if_config = _replace_if(opts.if_config, numeric=numeric)
    cols = [c for c in BASE_COLUMNS if c in schema]
    wanted: list[str] = []
    if opts.phase in ("if", "full") and not opts.skip_if:
        wanted += [c for c in (opts.if_config.item, *opts.if_config.numeric) if c]
        if opts.load_model:
            # the bundle may use any token column and any numeric column
            wanted += [c for c in ifo.IF_ITEMS if c in schema] + ifo.numeric_candidates(schema)
    from loglead_lo2.detection.registry import available_numeric

    for spec in specs:
        wanted += [c for c in (spec.item,) if c] + list(available_numeric(spec, schema))
    missing = sorted({c for c in wanted if c not in schema})
    if missing:
        raise UserError(
            f"the enhanced sequences lack column(s) {', '.join(missing)} "
            f"(available: {', '.join(schema)}). Re-run the loader with --save-parquet."
        )
    return with_bag_counts([*cols, *wanted], schema)


def load_input(opts: DetectOptions, specs: list[Any], say: Say,
               result: DetectResult) -> pl.DataFrame:
    """Read the enhanced sequences (only the needed columns) or rebuild them."""
    path = opts.root / ENHANCED_FILE
    if path.is_file():
        schema = read_parquet_schema(path)
        cols = needed_columns(opts, specs, schema)
        df = read_parquet(path, "sequences_enhanced", columns=cols)
        check_rows(df, path)
        say(f"[Input] {path}: {df.height:,} sequences, {df['run'].n_unique()} run(s)")
        if opts.save_enhancers and opts.enhanced_out.resolve() != path.resolve():
            full = read_parquet(path, "sequences_enhanced")
            _save_enhanced(full, opts, say, result)
        elif opts.save_enhancers:
            say(f"[Enhance] --save-enhancers: {path} is already the enhanced file; kept as is")
        return df
    say(f"[Input] {path} not found; enhancing from {EVENTS_FILE} + {SEQUENCES_FILE}")
    if opts.save_enhancers:
        out = opts.enhanced_out
        if out.exists() and not opts.overwrite_enhancers:
            raise UserError(f"{out} exists; pass --overwrite-enhancers to replace it.")
        rebuild_enhanced(opts.root, out, say)
        result.artifacts += [out, out.parent / TEMPLATES_FILE]
        say(f"[Enhance] wrote {out}")
    else:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="lo2-enhance-") as tmp:
            out = Path(tmp) / ENHANCED_FILE
            rebuild_enhanced(opts.root, out, say)
            schema = read_parquet_schema(out)
            df = read_parquet(out, "sequences_enhanced",
                              columns=needed_columns(opts, specs, schema))
        say("[Enhance] not saved (add --save-enhancers to keep lo2_sequences_enhanced.parquet)")
        return df
    schema = read_parquet_schema(out)
    return read_parquet(out, "sequences_enhanced", columns=needed_columns(opts, specs, schema))


def check_rows(df: pl.DataFrame, path: Path) -> None:
    """The checks every reader of enhanced sequences runs: each ``seq_id`` once, and every
    float column finite (an ``inf`` or NaN ``duration_sec`` would reach the models as a
    NaN feature)."""
    check_unique_sequences(df, path)
    floats = [c for c, d in df.schema.items() if d.is_float()]
    if not floats:
        return
    bad = df.select(*((~pl.col(c).is_finite()).fill_null(False).sum().alias(c) for c in floats))
    for column in floats:
        count = int(bad[column][0])
        if count:
            mask = ~pl.col(column).is_finite().fill_null(True)
            example = (df.filter(mask).get_column("seq_id").head(1).to_list()
                       if "seq_id" in df.columns else [])
            raise UserError(
                f"{path}: column {column} holds {count} non-finite value(s) (inf or NaN"
                + (f", e.g. seq_id {example[0]!r}" if example else "") + "); re-run the loader "
                "with --overwrite to rewrite the file: " + LOADER_HINT.format(root=path.parent)
                + " --overwrite")


def check_unique_sequences(df: pl.DataFrame, path: Path) -> None:
    """Refuse an enhanced-sequences table that lists a ``seq_id`` more than once: its rows
    would be trained on and scored twice (a file appended to, or two loads mixed)."""
    if "seq_id" not in df.columns:
        return
    ids = df.get_column("seq_id")
    extra = ids.len() - ids.n_unique()
    if extra:
        example = ids.filter(ids.is_duplicated()).head(1).item()
        raise UserError(
            f"{path}: {extra} duplicate seq_id row(s) (e.g. {example!r}); every sequence must "
            "appear once. Re-run the loader with --overwrite to rewrite the file: "
            + LOADER_HINT.format(root=path.parent) + " --overwrite"
        )


def _save_enhanced(df: pl.DataFrame, opts: DetectOptions, say: Say,
                   result: DetectResult) -> None:
    out = opts.enhanced_out
    if out.exists() and not opts.overwrite_enhancers:
        raise UserError(f"{out} exists; pass --overwrite-enhancers to replace it.")
    write_parquet(df, out, "sequences_enhanced")
    result.artifacts.append(out)
    say(f"[Enhance] wrote {out} ({df.height:,} sequences)")


