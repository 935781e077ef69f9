"""Sequence level: one row per ``seq_id`` from the events of that sequence.

Token lists are concatenated without a group-by over tokens: the events are ordered by
``(seq_id, line_no)`` and the sequence lists are cut out of the events' flat token values by
offsets (:func:`loglead_lo2.enhancers._common.concat_lists`). Token kinds requested with
``tokens=`` are computed once per distinct ``e_message_normalized`` and gathered straight into
that order, so the per-event token lists are never held beside the sequence lists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import polars as pl

from loglead_lo2.enhancers._common import concat_lists, distinct_codes, require
from loglead_lo2.enhancers.tokens import SOURCE, TABLES, TOKEN_COLUMNS

log = logging.getLogger(__name__)

KEYS: tuple[str, ...] = (
    "run", "test_case", "service", "seq_id", "normal", "anomaly", "target_service", "window",
)
REQUIRES: tuple[str, ...] = ("seq_id", "line_no", "m_timestamp")
ADDS: tuple[str, ...] = (
    "seq_len", "start_time", "end_time", "duration", "duration_sec", "e_error_count",
    "e_chars_len", "e_event_drain_id", "e_event_drain_id_len",
    *(c for t in TOKEN_COLUMNS for c in (t, f"{t}_len")),
)
_KEY_TYPES = {"target_service": pl.String, "window": pl.Int32}


def aggregate_sequences(events: pl.DataFrame, *, tokens: Iterable[str] = ()) -> pl.DataFrame:
    """Aggregate events to one row per ``seq_id`` (sorted by ``seq_id``).

    Keys (``run``, ``test_case``, ``service``, ``normal``, ``anomaly``, ``target_service``,
    ``window``, those present) are the first value in ``line_no`` order. Adds ``seq_len``,
    ``start_time``/``end_time`` (min/max ``m_timestamp``), ``duration``, ``duration_sec``;
    ``e_error_count`` (events with ``m_level == "ERROR"``) when ``m_level`` exists;
    ``e_chars_len`` as the sum; ``e_event_drain_id`` as the list in order plus its ``_len``;
    and ``e_words``/``e_trigrams`` (present per event, or named in ``tokens`` to be computed
    from ``e_message_normalized``) as the concatenation in ``line_no`` order plus ``_len``.
    """
    require(events, REQUIRES, "aggregate_sequences")
    tokens = [t for t in tokens if t not in events.columns]
    unknown = [t for t in tokens if t not in TABLES]
    if unknown:
        raise ValueError(f"aggregate_sequences: unknown token kind(s) {unknown}; known: "
                         f"{', '.join(TABLES)}")
    if tokens:
        require(events, [SOURCE], f"aggregate_sequences(tokens={tokens})")
    present = [t for t in TOKEN_COLUMNS if t in events.columns]

    cols = [c for c in (*KEYS, "line_no", "m_timestamp", "m_level", "e_chars_len",
                        "e_event_drain_id") if c in events.columns]
    if tokens:
        cols.append(SOURCE)
    base = events.select(
        *cols,
        *(pl.col(t).list.len().fill_null(0).cast(pl.Int64).alias(f"__n_{t}") for t in present),
    ).with_row_index("__row")
    if not _is_sorted(base):
        base = base.sort(["seq_id", "line_no", "__row"])

    distinct_tables: dict[str, pl.DataFrame] = {}
    if tokens:
        codes, distinct = distinct_codes(base.get_column(SOURCE))
        base = base.drop(SOURCE).with_columns(codes.alias("__code"))
        frame = pl.DataFrame({SOURCE: distinct})
        for t in tokens:
            distinct_tables[t] = TABLES[t](frame)
            lens = distinct_tables[t].get_column(f"{t}_len").gather(codes)
            base = base.with_columns(lens.alias(f"__n_{t}"))

    aggs: list[pl.Expr] = [pl.col(k).first() for k in KEYS if k in base.columns and k != "seq_id"]
    aggs += [
        pl.len().cast(pl.Int64).alias("seq_len"),
        pl.col("m_timestamp").min().alias("start_time"),
        pl.col("m_timestamp").max().alias("end_time"),
    ]
    if "m_level" in base.columns:
        aggs.append((pl.col("m_level") == "ERROR").sum().cast(pl.Int64).alias("e_error_count"))
    if "e_chars_len" in base.columns:
        aggs.append(pl.col("e_chars_len").sum().cast(pl.Int64))
    if "e_event_drain_id" in base.columns:
        aggs.append(pl.col("e_event_drain_id"))
    all_tokens = [t for t in TOKEN_COLUMNS if t in present or t in tokens]
    aggs += [pl.col(f"__n_{t}").sum().cast(pl.Int64).alias(f"{t}_len") for t in all_tokens]

    seq = base.group_by("seq_id", maintain_order=True).agg(aggs)
    duration = pl.col("end_time") - pl.col("start_time")
    seq = seq.with_columns(
        duration.alias("duration"),
        (duration.dt.total_milliseconds().cast(pl.Float64) / 1000.0).alias("duration_sec"),
        *(pl.col(k).cast(t) for k, t in _KEY_TYPES.items() if k in seq.columns),
    )
    if "e_event_drain_id" in seq.columns:
        seq = seq.with_columns(
            pl.col("e_event_drain_id").list.len().cast(pl.Int64).alias("e_event_drain_id_len")
        )

    order = base.get_column("__row").to_numpy()
    identity = bool((order == np.arange(len(order))).all())
    for t in all_tokens:
        totals = seq.get_column(f"{t}_len").to_numpy()
        if t in distinct_tables:
            lists, pick = distinct_tables[t].get_column(t), base.get_column("__code").to_numpy()
        else:
            lists, pick = events.get_column(t), None if identity else order
        seq = seq.with_columns(concat_lists(lists, pick, totals, t))

    ordered = [c for c in (*KEYS, *ADDS) if c in seq.columns]
    return seq.select(ordered)


def _is_sorted(df: pl.DataFrame) -> bool:
    """Whether rows are already in ``(seq_id, line_no)`` order (the loader's usual output)."""
    if df.height < 2:
        return True
    seq, prev = pl.col("seq_id"), pl.col("seq_id").shift()
    ok = (seq > prev) | ((seq == prev) & (pl.col("line_no") >= pl.col("line_no").shift()))
    return bool(df.select(ok.fill_null(True).all()).item())
