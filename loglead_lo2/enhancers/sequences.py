"""Sequence level: one row per ``seq_id`` from the events of that sequence.

Sequence-level token columns are **bags**: ``e_words`` / ``e_trigrams`` hold the distinct
tokens of the sequence (sorted) and ``e_words_counts`` / ``e_trigrams_counts`` their
multiplicities; ``e_words_len`` / ``e_trigrams_len`` are the total number of tokens (the sum
of the counts). A bag gives exactly the features of a bag-of-tokens vectoriser over the
concatenated token list at a tiny fraction of its size: a full-scale run has ~90 M character
trigrams but only a few hundred thousand (sequence, trigram) pairs, which is what keeps 20
runs within a few GB. Token order is not kept (``e_event_drain_id`` keeps the event order of
templates).

Bags are built from distinct messages: (sequence, message) counts are joined with
(message, token) counts, so no per-event token list is materialised when ``tokens=`` is used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import polars as pl

from loglead_lo2.enhancers._common import distinct_codes, require
from loglead_lo2.enhancers.tokens import SOURCE, TABLES, TOKEN_COLUMNS

log = logging.getLogger(__name__)

KEYS: tuple[str, ...] = (
    "run", "test_case", "service", "seq_id", "normal", "anomaly", "target_service", "window",
)
REQUIRES: tuple[str, ...] = ("seq_id", "line_no", "m_timestamp")
ADDS: tuple[str, ...] = (
    "seq_len", "start_time", "end_time", "duration", "duration_sec", "e_error_count",
    "e_chars_len", "e_event_drain_id", "e_event_drain_id_len",
    *(c for t in TOKEN_COLUMNS for c in (t, f"{t}_counts", f"{t}_len")),
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
    from ``e_message_normalized``) as bags: sorted distinct tokens, ``_counts``, ``_len``.
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

    for t in all_tokens:
        if t in distinct_tables:
            pairs = _message_token_counts(distinct_tables[t], t)
            bags = _bags_from_messages(base, pairs, t)
        else:
            bags = _bags_from_events(events, t)
        seq = seq.join(bags, on="seq_id", how="left", maintain_order="left").with_columns(
            pl.col(t).fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col(f"{t}_counts").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
        )

    ordered = [c for c in (*KEYS, *ADDS) if c in seq.columns]
    return seq.select(ordered)


def _is_sorted(df: pl.DataFrame) -> bool:
    """Whether rows are already in ``(seq_id, line_no)`` order (the loader's usual output)."""
    if df.height < 2:
        return True
    seq, prev = pl.col("seq_id"), pl.col("seq_id").shift()
    ok = (seq > prev) | ((seq == prev) & (pl.col("line_no") >= pl.col("line_no").shift()))
    return bool(df.select(ok.fill_null(True).all()).item())


def _message_token_counts(table: pl.DataFrame, t: str) -> pl.DataFrame:
    """(distinct message code, token, count) from a distinct-message token table."""
    return (
        table.select(pl.col(t))
        .with_row_index("__code")
        .explode(t, empty_as_null=False)
        .drop_nulls(t)
        .group_by("__code", t)
        .agg(pl.len().cast(pl.Int64).alias("__c"))
        .with_columns(pl.col("__code").cast(pl.UInt32))
    )


def _to_bags(pairs: pl.DataFrame, t: str) -> pl.DataFrame:
    """(seq_id, token, count) rows -> one row per seq_id with sorted tokens and counts."""
    return (
        pairs.sort("seq_id", t)
        .group_by("seq_id", maintain_order=True)
        .agg(pl.col(t), pl.col("__c").alias(f"{t}_counts"))
    )


def _bags_from_messages(base: pl.DataFrame, pairs: pl.DataFrame, t: str) -> pl.DataFrame:
    per_seq = (
        base.group_by("seq_id", "__code")
        .agg(pl.len().cast(pl.Int64).alias("__n"))
        .with_columns(pl.col("__code").cast(pl.UInt32))
    )
    joined = (
        per_seq.join(pairs, on="__code", how="inner")
        .group_by("seq_id", t)
        .agg((pl.col("__n") * pl.col("__c")).sum().alias("__c"))
    )
    return _to_bags(joined, t)


def _bags_from_events(events: pl.DataFrame, t: str) -> pl.DataFrame:
    pairs = (
        events.select("seq_id", t)
        .explode(t, empty_as_null=False)
        .drop_nulls(t)
        .group_by("seq_id", t)
        .agg(pl.len().cast(pl.Int64).alias("__c"))
    )
    return _to_bags(pairs, t)
