"""Bounded fits at full size: sampling caps, a memory estimate and the memory guard's skip.

Before a registry model is fitted, :func:`plan_fit` decides on which rows:

* **Sampling where the model needs it.** A spec with ``max_fit_rows`` (a model whose fit does
  not scale to 600 k rows: kernel and neighbour methods, large ensembles, the tree over
  ~500 trigrams a row) is fitted on a seeded sample of at most that many of its training rows,
  stratified by run (every run keeps its share). The sample depends only on the rows, the cap
  and the seed, never on the machine, so the same data gives the same model everywhere.
* **The memory guard.** The fit's memory is estimated from the rows and the non-zero entries
  their token bags give (``entries x fit_bytes_per_entry`` of the spec, which covers the
  feature matrix, its transient copies and the estimator's own copy, plus the numeric
  columns). When the estimate exceeds the budget (:func:`fit_budget`: 70 % of the RAM
  available at that moment, at most :data:`MAX_FIT_BYTES`), the model is not fitted:
  :class:`ModelSkipped` carries the one-line reason, which the detection phase prints as a
  ``[Resource]`` line and records, and the other models still run. A model whose token
  column alone would not fit once read (:func:`input_skips`, from the Parquet metadata) is
  skipped the same way before the table is read.

:class:`FitPlan` says what was done; it goes into the model's record, its leaderboard row and
its bundle's YAML (``bounded``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.cli_common import human_bytes
from loglead_lo2.detection.guards import available_memory
from loglead_lo2.errors import UserError
from loglead_lo2.schema import BAG_COUNTS_SUFFIX

log = logging.getLogger(__name__)

GIB = 1024**3
MAX_FIT_BYTES = 8 * GIB
"""Largest estimated memory one model's fit may take, whatever RAM is available."""
AVAILABLE_SHARE = 0.7
"""Share of the RAM available before a fit that the fit may take."""
NUMERIC_BYTES_PER_VALUE = 48.0
"""Estimated bytes per (row, numeric column): the dense block, its scaling and stacking."""


class ModelSkipped(UserError):
    """The memory guard did not fit a model; the message is the one-line reason."""


@dataclass(frozen=True)
class FitPlan:
    """Which training rows a model is fitted on and why (see the module docstring)."""

    key: str
    rows: int
    """Training rows the model trains on (after the normal-only selection)."""
    fit_rows: int
    """Rows it is fitted on: ``rows``, or the sample."""
    seed: int
    cap: int | None
    entries: int
    """Non-zero token entries of the fitted rows (their bags' distinct tokens)."""
    estimate_bytes: int
    budget_bytes: int | None
    vocabulary_cap: int | None = None
    skipped: str | None = None

    @property
    def sampled(self) -> bool:
        return self.fit_rows < self.rows

    def text(self, vocabulary: int | None = None) -> str:
        """One line for the record, the leaderboard and the benchmark."""
        if self.skipped:
            return f"skipped: {self.skipped}"
        parts = []
        if self.sampled:
            parts.append(f"fitted on {self.fit_rows:,} of {self.rows:,} training rows "
                         f"(seeded sample, stratified by run, seed {self.seed}, cap "
                         f"{self.cap:,})")
        if self.vocabulary_cap is not None:
            kept = f", {vocabulary:,} kept" if vocabulary is not None else ""
            parts.append(f"vocabulary capped at {self.vocabulary_cap:,}{kept}")
        budget = (f"budget {human_bytes(self.budget_bytes)}" if self.budget_bytes is not None
                  else "memory guard off")
        parts.append(f"fit memory ~{human_bytes(self.estimate_bytes)} ({budget})")
        return "; ".join(parts)

    def as_dict(self, vocabulary: int | None = None) -> dict[str, Any]:
        """The ``bounded`` block of the record's ``training`` and of the bundle's YAML."""
        return {
            "rows": self.rows, "fit_rows": self.fit_rows, "sampled": self.sampled,
            "sample": ({"seed": self.seed, "cap": self.cap, "stratified_by": "run"}
                       if self.sampled else None),
            "vocabulary_cap": self.vocabulary_cap, "vocabulary": vocabulary,
            "entries": self.entries, "estimate_bytes": self.estimate_bytes,
            "budget_bytes": self.budget_bytes, "skipped": self.skipped,
            "text": self.text(vocabulary),
        }


def fit_budget(enabled: bool = True, available: int | None = None) -> int | None:
    """Bytes one fit may take: ``AVAILABLE_SHARE`` of the available RAM, at most
    :data:`MAX_FIT_BYTES`; ``None`` (no limit) when the guard is off. RAM that cannot be
    measured leaves :data:`MAX_FIT_BYTES`."""
    if not enabled:
        return None
    if available is None:
        available = available_memory()
    if available is None:
        return MAX_FIT_BYTES
    return int(min(MAX_FIT_BYTES, AVAILABLE_SHARE * available))


def stratified_sample(frame: pl.DataFrame, n: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded sample of about ``n`` rows of ``frame``, every run
    keeping its share (``ceil(rows of the run * n / rows)``, so at most one row per run more
    than ``n``; trimmed to ``n``)."""
    if n >= frame.height:
        return np.arange(frame.height)
    keys = np.random.default_rng(seed).random(frame.height)
    share = n / frame.height
    ranked = (
        frame.select(pl.col("run")).with_columns(__k=pl.Series(keys)).with_row_index("__i")
        .with_columns(__r=pl.col("__k").rank("ordinal").over("run"),
                      __n=pl.len().over("run"))
        .filter(pl.col("__r") <= (pl.col("__n") * share).ceil())
    )
    if ranked.height > n:  # the per-run rounding up: drop the highest keys
        ranked = ranked.sort("__k").head(n)
    return np.sort(ranked.get_column("__i").to_numpy())


def token_entries(frame: pl.DataFrame, item: str | None) -> int:
    """Non-zero entries the token bags of ``frame`` give: distinct tokens per row, summed
    (the list lengths of a bag column, distinct values of a plain token list)."""
    if not item or item not in frame.columns or frame.height == 0:
        return 0
    col = pl.col(item)
    per_row = (col.list.len() if f"{item}{BAG_COUNTS_SUFFIX}" in frame.columns
               else col.list.n_unique())
    return int(frame.select(per_row.fill_null(0).sum()).item() or 0)


def estimate_bytes(spec: Any, rows: int, entries: int, n_numeric: int) -> int:
    """Estimated peak memory of fitting ``spec`` on ``rows`` rows with ``entries`` token
    entries and ``n_numeric`` numeric columns (on top of the data already loaded)."""
    per_entry = float(getattr(spec, "fit_bytes_per_entry", 48.0))
    return int(entries * per_entry + rows * max(n_numeric, 0) * NUMERIC_BYTES_PER_VALUE
               + rows * 64)


def sample_indices(spec: Any, runs: pl.DataFrame, seed: int) -> np.ndarray:
    """Indices (into ``runs``, a frame with the training rows' ``run``) of the rows ``spec``
    is fitted on: all of them, or the seeded run-stratified sample of its ``max_fit_rows``."""
    cap = getattr(spec, "max_fit_rows", None)
    if cap is not None and runs.height > cap:
        return stratified_sample(runs, cap, seed)
    return np.arange(runs.height)


def plan_fit(spec: Any, rows: int, fit_frame: pl.DataFrame, *, seed: int, n_numeric: int,
             vectorizer: Mapping[str, Any] | None = None,
             budget: int | None = None) -> FitPlan:
    """The :class:`FitPlan` of ``spec`` fitted on ``fit_frame`` (``rows`` = its training rows
    before sampling). Raises :class:`ModelSkipped` when the estimate exceeds ``budget``."""
    entries = token_entries(fit_frame, spec.item)
    n = fit_frame.height
    estimate = estimate_bytes(spec, n, entries, n_numeric)
    vec = dict(vectorizer or spec.vectorizer)
    plan = FitPlan(key=spec.key, rows=rows, fit_rows=n, seed=seed,
                   cap=getattr(spec, "max_fit_rows", None), entries=entries,
                   estimate_bytes=estimate, budget_bytes=budget,
                   vocabulary_cap=vec.get("max_features") if spec.item else None)
    if budget is not None and estimate > budget:
        per_row = entries / max(n, 1)
        raise ModelSkipped(
            f"fitting {n:,} rows x {per_row:,.0f} token entries needs ~{human_bytes(estimate)}, "
            f"over the memory guard's budget of {human_bytes(budget)} "
            f"({AVAILABLE_SHARE:.0%} of the available RAM, at most "
            f"{human_bytes(MAX_FIT_BYTES)}); use fewer runs or --per-service, or "
            "--disable-memory-guard")
    log.info("%s: %s", spec.key, plan.text())
    return plan


INPUT_BYTES_PER_ENTRY = 40.0
"""Estimated bytes per token-list entry of a column read into memory, the copy of the
training runs' rows the run keeps beside the whole table and the transient memory of the read
included. Measured with ``benchmarks/bench_detect.py`` on replicated rows of ~490
``e_trigrams`` entries (with their counts): 300 k rows (147 M entries) and a 50,000-row tree
fit peaked at 7.2 GiB; 600 k rows passed 9.4 GiB and were killed (``docs/detection.md``)."""


def column_entries(paths: Sequence[str | Path], item: str) -> int | None:
    """Entries of the list column ``item`` in the Parquet file(s) ``paths``, from the files'
    metadata (nothing is read); ``None`` when the column is not there."""
    import pyarrow.parquet as pq

    leaf = f"{item}.list.element"
    total, found = 0, False
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                if column.path_in_schema == leaf:
                    total += int(column.num_values)
                    found = True
    return total if found else None


def column_rows(paths: Sequence[str | Path]) -> int:
    """Rows of the Parquet file(s) ``paths`` (from their metadata)."""
    import pyarrow.parquet as pq

    return sum(int(pq.ParquetFile(p).metadata.num_rows) for p in paths)


def input_skips(paths: Sequence[str | Path], specs: Iterable[Any], *, enabled: bool = True,
                budget: int | None = None) -> dict[str, str]:
    """Models whose token column is too large to read: ``{key: one-line reason}``.

    A token column holding ``entries`` list entries takes about ``entries x``
    :data:`INPUT_BYTES_PER_ENTRY` once read, and the model's fit on its (capped) rows their
    share of the entries times its ``fit_bytes_per_entry``; when the two exceed the memory
    guard's budget, the model is skipped before anything is read (for example Drain template
    ids, one entry per event, or the trigram tree on a full-size table). Nothing is skipped
    with the guard off."""
    if not enabled:
        return {}
    limit = budget if budget is not None else fit_budget(True)
    if limit is None:
        return {}
    out: dict[str, str] = {}
    sizes: dict[str, int | None] = {}
    for spec in specs:
        item = getattr(spec, "item", None)
        if not item:
            continue
        if item not in sizes:
            sizes[item] = column_entries(paths, item)
        entries = sizes[item]
        if entries is None:
            continue
        rows = max(column_rows(paths), 1)
        cap = getattr(spec, "max_fit_rows", None)
        fit_rows = min(cap, rows) if cap is not None else rows
        per_entry = float(getattr(spec, "fit_bytes_per_entry", 48.0))
        need = int(entries * INPUT_BYTES_PER_ENTRY + fit_rows * entries / rows * per_entry)
        if need > limit:
            out[spec.key] = (f"reading {item} ({entries:,} token entries) and fitting "
                             f"{fit_rows:,} rows need ~{human_bytes(need)}, over the memory "
                             f"guard's budget of "
                             f"{human_bytes(limit)}; use fewer runs, or "
                             "--disable-memory-guard")
    return out


def skipped_plan(spec: Any, rows: int, reason: str, seed: int) -> FitPlan:
    """The plan of a model the guard skipped (for its record)."""
    return FitPlan(key=spec.key, rows=rows, fit_rows=0, seed=seed,
                   cap=getattr(spec, "max_fit_rows", None), entries=0, estimate_bytes=0,
                   budget_bytes=None, skipped=reason)


__all__ = [
    "AVAILABLE_SHARE",
    "MAX_FIT_BYTES",
    "INPUT_BYTES_PER_ENTRY",
    "FitPlan",
    "ModelSkipped",
    "estimate_bytes",
    "column_entries",
    "fit_budget",
    "input_skips",
    "plan_fit",
    "sample_indices",
    "skipped_plan",
    "stratified_sample",
    "token_entries",
]
