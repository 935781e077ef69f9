"""A simulated full-size sequence table: copies of an enhanced table with distinct runs.

:func:`replicate_sequences` stacks copies of an enhanced-sequences table until it has the
requested rows. Every copy gets its own run names and ``seq_id`` values, so the run-grouped
split, the calibration runs and the duplicate-``seq_id`` check behave as on a real load of that
many runs: a run named ``<prefix><epoch>`` becomes ``<prefix><epoch + i * span>`` in copy ``i``
(``span`` = the base runs' epoch range plus one hour, so copies follow each other in time),
other names get a ``~<i>`` suffix. A ``seq_id`` that starts with its run name gets the new run
name; any other ``seq_id`` gets the suffix.

The content of the rows is the base table's, so the vocabulary does not grow with the copies:
a simulated table measures what rows cost (feature matrix, fit, scoring), not what a larger
vocabulary would. ``benchmarks/bench_detect.py --rows 600000`` uses it.
"""

from __future__ import annotations

import math
import re

import polars as pl

from loglead_lo2.errors import UserError

_EPOCH = re.compile(r"^(.*?)([0-9]+)\Z")


def _run_names(runs: list[str], copy: int) -> dict[str, str]:
    """New name of every base run in copy ``copy`` (copy 0 keeps the names)."""
    if copy == 0:
        return {r: r for r in runs}
    parsed = [_EPOCH.match(r) for r in runs]
    if all(parsed):
        epochs = [int(m.group(2)) for m in parsed if m]
        span = max(epochs) - min(epochs) + 3600
        return {r: f"{m.group(1)}{int(m.group(2)) + copy * span}"
                for r, m in zip(runs, parsed, strict=True) if m}
    return {r: f"{r}~{copy}" for r in runs}


def replica(df: pl.DataFrame, copy: int) -> pl.DataFrame:
    """Copy ``copy`` of ``df`` (copy 0 is ``df`` itself) with its own run names and
    ``seq_id``s (see the module docstring)."""
    if df.height == 0 or "run" not in df.columns:
        raise UserError("replicate: the base table needs rows and a 'run' column.")
    if copy == 0:
        return df
    names = _run_names(sorted(df.get_column("run").unique().to_list()), copy)
    part = df.with_columns(pl.col("run").replace_strict(names).alias("__new_run"))
    if "seq_id" in df.columns:
        starts = pl.col("seq_id").str.starts_with(pl.col("run"))
        new_id = (pl.when(starts)
                  .then(pl.col("__new_run") + pl.col("seq_id").str.slice(
                      pl.col("run").str.len_chars()))
                  .otherwise(pl.col("seq_id") + pl.lit(f"~{copy}")))
        part = part.with_columns(new_id.alias("seq_id"))
    return part.with_columns(pl.col("__new_run").alias("run")).drop("__new_run")


def copies_needed(base_rows: int, *, copies: int | None = None,
                  rows: int | None = None) -> int:
    """Copies of a ``base_rows`` table that give ``rows`` rows (or ``copies`` itself)."""
    if (copies is None) == (rows is None):
        raise UserError("replicate: give exactly one of copies= or rows=.")
    if base_rows < 1:
        raise UserError("replicate: the base table has no rows.")
    n = copies if copies is not None else math.ceil(int(rows or 0) / base_rows)
    if n < 1:
        raise UserError(f"replicate: copies must be >= 1, got {n}.")
    return n


def replicate_sequences(df: pl.DataFrame, *, copies: int | None = None,
                        rows: int | None = None) -> pl.DataFrame:
    """``copies`` copies of ``df`` (or as many as reach ``rows``, then cut to ``rows`` by
    dropping the newest copy's last rows), each with its own run names and ``seq_id``s."""
    n = copies_needed(df.height, copies=copies, rows=rows)
    out = pl.concat([replica(df, i) for i in range(n)], rechunk=True)
    return out.head(rows) if rows is not None else out


__all__ = ["copies_needed", "replica", "replicate_sequences"]
