"""Sequence level: one row per ``seq_id`` from the events of that sequence.

Sequence-level token columns are **bags**: ``e_words`` / ``e_trigrams`` hold the distinct
tokens of the sequence (sorted) and ``e_words_counts`` / ``e_trigrams_counts`` their
multiplicities; ``e_words_len`` / ``e_trigrams_len`` are the total number of tokens (the sum
of the counts). A bag gives exactly the features of a bag-of-tokens vectoriser over the
concatenated token list at a tiny fraction of its size: a full-scale run has ~90 M character
trigrams but only a few hundred thousand (sequence, trigram) pairs, which is what keeps 20
runs within a few GB. Token order is not kept (``e_event_drain_id`` keeps the event order of
templates).

Bags are built from distinct messages, so no per-event token list is materialised when
``tokens=`` is used: the (sequence, message, events) pairs are expanded into (sequence,
token, count) rows in steps of about :data:`BAG_CHUNK_ROWS` rows (:class:`_BagPlan`), which
bounds memory even when leaked ids leave most normalised messages distinct. Trigrams travel
as ``uint64`` keys (:func:`loglead_lo2.enhancers.tokens.trigram_keys`) and become strings
only for the final bag entries. See the Memory section of ``docs/enhancers.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.enhancers._common import (
    distinct_codes,
    list_parts,
    lists_from_lengths,
    range_index,
    require,
)
from loglead_lo2.enhancers.tokens import (
    SOURCE,
    TABLES,
    TOKEN_COLUMNS,
    TOKEN_DECODE,
    TOKEN_DTYPES,
    TOKEN_VALUES,
)

log = logging.getLogger(__name__)

KEYS: tuple[str, ...] = (
    "run", "test_case", "service", "seq_id", "normal", "anomaly", "target_service", "window",
    "window_start", "window_end",
)
REQUIRES: tuple[str, ...] = ("seq_id", "line_no", "m_timestamp")
ADDS: tuple[str, ...] = (
    "seq_len", "start_time", "end_time", "duration", "duration_sec", "e_error_count",
    "e_chars_len", "e_event_drain_id", "e_event_drain_id_len", "e_event_templates",
    "e_event_templates_counts",
    *(c for t in TOKEN_COLUMNS for c in (t, f"{t}_counts", f"{t}_len")),
)
_KEY_TYPES: dict[str, Any] = {"target_service": pl.String, "window": pl.Int32,
              "window_start": pl.Datetime("ms"), "window_end": pl.Datetime("ms")}


def aggregate_sequences(events: pl.DataFrame, *, tokens: Iterable[str] = (),
                        messages: tuple[pl.Series, pl.Series] | None = None) -> pl.DataFrame:
    """Aggregate events to one row per ``seq_id`` (sorted by ``seq_id``).

    Keys (``run``, ``test_case``, ``service``, ``normal``, ``anomaly``, ``target_service``,
    ``window`` and the loader's grid bounds ``window_start``/``window_end``, those present) are
    the first value in ``line_no`` order. Adds ``seq_len``,
    ``start_time``/``end_time`` (min/max ``m_timestamp``), ``duration``, ``duration_sec``;
    ``e_error_count`` (events with ``m_level == "ERROR"``) when ``m_level`` exists;
    ``e_chars_len`` as the sum; ``e_event_drain_id`` as the list in order plus its ``_len``;
    and ``e_words``/``e_trigrams`` (present per event, or named in ``tokens`` to be computed
    from ``e_message_normalized``) as bags: sorted distinct tokens, ``_counts``, ``_len``.
    ``messages``: ``(codes, distinct)`` of ``e_message_normalized`` as
    :func:`~loglead_lo2.enhancers.normalize.normalize_codes` returns them (aligned with
    ``events``), so they are not found again.
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
    base = events.select(*cols, *present)
    in_blocks = _in_blocks(base)
    if not in_blocks:
        base = base.with_row_index("__row").sort(["seq_id", "line_no", "__row"]).drop("__row")
    base = base.with_columns(
        [base.get_column(t).list.len().fill_null(0).cast(pl.Int64).alias(f"__n_{t}")
         for t in present]
    )

    distinct: pl.Series | None = None
    if tokens:
        if messages is not None and in_blocks:  # rows not reordered: the codes still fit
            codes, distinct = messages
        else:
            codes, distinct = distinct_codes(base.get_column(SOURCE))
        base = base.drop(SOURCE).with_columns(codes.alias("__code"))

    all_tokens = [t for t in TOKEN_COLUMNS if t in present or t in tokens]
    seq = _sequence_table(base, present)
    duration = pl.col("end_time") - pl.col("start_time")
    seq = seq.with_columns(
        duration.alias("duration"),
        (duration.dt.total_milliseconds().cast(pl.Float64) / 1000.0).alias("duration_sec"),
        *(pl.col(k).cast(t) for k, t in _KEY_TYPES.items() if k in seq.columns),
    )

    plan = _BagPlan(base, distinct) if distinct is not None else None
    for t in all_tokens:
        bags = plan.bags(t) if plan is not None and t in tokens else _bags_from_lists(base, t)
        bags = bags.join(seq.select("seq_id").with_row_index("__seq"), on="__seq",
                         how="inner").drop("__seq")
        seq = seq.join(bags, on="seq_id", how="left", maintain_order="left").with_columns(
            pl.col(t).fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col(f"{t}_counts").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
        )
        if t in tokens:
            seq = seq.with_columns(
                pl.col(f"{t}_counts").list.sum().fill_null(0).cast(pl.Int64).alias(f"{t}_len")
            )

    ordered = [c for c in (*KEYS, *ADDS) if c in seq.columns]
    return seq.select(ordered).sort("seq_id")


def _sequence_table(base: pl.DataFrame, present: list[str]) -> pl.DataFrame:
    """One row per sequence of ``base`` (one block of rows each, in line order), in block
    order: keys from the block's first row, counts, times, sums, the Drain id list.

    Nothing is grouped by a string: string columns are only gathered at block starts, and
    the numeric aggregations group by an integer block number. (A group-by over loader
    events, which come in many chunks, first copies every string column it touches.)
    """
    seq_ids = base.get_column("seq_id")
    starts = np.flatnonzero((seq_ids != seq_ids.shift()).fill_null(True).to_numpy())
    lengths = np.diff(np.append(starts, base.height)).astype(np.int64)
    index = pl.Series(starts, dtype=pl.UInt32)
    keys = [base.get_column(k).gather(index) for k in KEYS if k in base.columns]
    block = np.repeat(np.arange(len(starts), dtype=np.uint32), lengths)
    numeric = {"__seq": block, "m_timestamp": base.get_column("m_timestamp")}
    aggs = [pl.len().cast(pl.Int64).alias("seq_len"),
            pl.col("m_timestamp").min().alias("start_time"),
            pl.col("m_timestamp").max().alias("end_time")]
    if "m_level" in base.columns:
        numeric["__error"] = base.get_column("m_level") == "ERROR"
        aggs.append(pl.col("__error").sum().cast(pl.Int64).alias("e_error_count"))
    for name, out in [("e_chars_len", "e_chars_len"),
                      *((f"__n_{t}", f"{t}_len") for t in present)]:
        if name in base.columns:
            numeric[name] = base.get_column(name)
            aggs.append(pl.col(name).sum().cast(pl.Int64).alias(out))
    per_seq = (pl.DataFrame(numeric).group_by("__seq", maintain_order=True).agg(aggs)
               .drop("__seq"))
    columns = [*keys, *per_seq.get_columns()]
    if "e_event_drain_id" in base.columns:
        columns.append(lists_from_lengths(base.get_column("e_event_drain_id"), lengths,
                                          "e_event_drain_id"))
        columns.append(pl.Series("e_event_drain_id_len", lengths, dtype=pl.Int64))
        columns.extend(_template_bag(block, base.get_column("e_event_drain_id")))
    return pl.DataFrame(columns)


TEMPLATE_BAG = "e_event_templates"
"""The bag of a sequence's Drain templates (sorted distinct ids, ``_counts``): what a bag of
templates model reads instead of the ordered ``e_event_drain_id`` list, which has one entry
per event (811 M entries at 600 k full-size windows, against ~20 distinct per sequence)."""


def _template_bag(seq: np.ndarray, ids: pl.Series) -> list[pl.Series]:
    """``e_event_templates`` and ``e_event_templates_counts``, one row per block of ``seq``
    (every block has at least one event, so every block has a row, in block order)."""
    bag = (pl.DataFrame({"__seq": seq, "t": ids})
           .group_by("__seq", "t").agg(pl.len().cast(pl.Int64).alias("n"))
           .sort("__seq", "t")
           .group_by("__seq", maintain_order=True)
           .agg(pl.col("t").alias(TEMPLATE_BAG), pl.col("n").alias(f"{TEMPLATE_BAG}_counts")))
    return [bag.get_column(TEMPLATE_BAG), bag.get_column(f"{TEMPLATE_BAG}_counts")]


def _in_blocks(df: pl.DataFrame) -> bool:
    """Whether each sequence's rows are one contiguous block in ``line_no`` order (loader
    output is: one block per file). Then the rows need no sort: groups are taken in block
    order and only the sequence table is sorted by ``seq_id``. (Series operations: an
    expression over the frame could make polars rechunk it.)"""
    if df.height < 2:
        return True
    seq, line = df.get_column("seq_id"), df.get_column("line_no")
    same = (seq == seq.shift()).fill_null(False)
    back = (line < line.shift()).fill_null(False)
    return not bool((same & back).any()) and int((~same).sum()) == seq.n_unique()


def _blocks(df: pl.DataFrame) -> np.ndarray:
    """uint32 block number (sequence index, in row order) of every row of ``df``."""
    seq = df.get_column("seq_id")
    starts = (seq != seq.shift()).fill_null(True).to_numpy()
    return (np.cumsum(starts, dtype=np.int64) - 1).astype(np.uint32)


BAG_CHUNK_ROWS = 1_000_000
"""About how many (sequence, token) rows :class:`_BagPlan` builds per step."""


class _BagPlan:
    """Token bags of every sequence from its distinct messages, in bounded memory.

    ``base`` holds one row per event with ``__code``, the index of its message in
    ``distinct``, each sequence's rows forming one block. The (sequence, message, events)
    pairs, in sequence order, are cut into steps of about :data:`BAG_CHUNK_ROWS` estimated
    tokens (a message of ``c`` characters has at most ``c`` tokens of either kind), so no step
    materialises more than about that many (sequence, token) rows, however many distinct
    messages there are and however big one sequence is: a sequence cut by a step boundary
    carries its partial (token, count) rows into the next step. Each distinct message is
    tokenised once: a message that occurs in one step only is tokenised in that step and
    dropped afterwards; one that occurs in several steps is tokenised once up front and kept,
    reduced to (token, count) (a few hundred such messages when normalisation works).
    """

    def __init__(self, base: pl.DataFrame, distinct: pl.Series) -> None:
        self.distinct = distinct
        chars = distinct.str.len_chars().cast(pl.Int64) + 1
        # (sequence, message) pairs and their event counts, sorted, from one uint64 key each
        key = (_blocks(base).astype(np.uint64) << np.uint64(32)) | base.get_column(
            "__code").cast(pl.UInt32).to_numpy().astype(np.uint64)
        key, n = np.unique(key, return_counts=True)
        pairs = pl.DataFrame({
            "__seq": pl.Series((key >> np.uint64(32)).astype(np.uint32), dtype=pl.UInt32),
            "__code": pl.Series((key & np.uint64(0xFFFFFFFF)).astype(np.uint32),
                                dtype=pl.UInt32),
            "__n": pl.Series(n, dtype=pl.Int64),
        })
        del key, n
        weight = chars.gather(pairs.get_column("__code")).to_numpy()
        steps = (np.cumsum(weight) - weight) // BAG_CHUNK_ROWS
        pairs = pairs.with_columns(pl.Series("__step", steps, dtype=pl.Int64))
        spread = pairs.group_by("__code").agg(pl.col("__step").n_unique().alias("__k"))
        self.shared = spread.filter(pl.col("__k") > 1).get_column("__code").sort()
        cuts = (np.flatnonzero(np.diff(steps)) + 1).tolist() if len(steps) else []
        self.bounds = [0, *cuts, len(steps)]
        self.pairs = pairs.drop("__step")
        log.debug("bags: %d (sequence, message) pairs in %d step(s), %d shared messages",
                  pairs.height, len(self.bounds) - 1, self.shared.len())

    def bags(self, t: str) -> pl.DataFrame:
        """``__seq``, ``t`` (sorted distinct tokens) and ``{t}_counts`` of every sequence
        that has tokens, in sequence order."""
        shared = _Tokens(self.distinct, self.shared, t, reduce=True)
        is_shared = pl.col("__code").is_in(self.shared.implode())
        seqs = self.pairs.get_column("__seq").to_numpy()

        def steps() -> Iterator[tuple[pl.DataFrame, int | None]]:
            for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True):
                pairs = self.pairs.slice(a, b - a).with_columns(is_shared.alias("__s"))
                on_shared = pairs.filter(pl.col("__s"))
                on_local = pairs.filter(~pl.col("__s"))
                local = _Tokens(self.distinct, on_local.get_column("__code").unique().sort(), t,
                                reduce=False)
                yield (pl.concat([shared.expand(on_shared), local.expand(on_local)]),
                       _open_sequence(seqs, b))
                del local, on_local, on_shared

        bags = _fold_steps(steps(), t)
        if t in TOKEN_DECODE:  # keys -> strings, only for the distinct tokens of each bag
            values, _, lengths = list_parts(bags.get_column(t).rechunk())
            strings = TOKEN_DECODE[t](np.asarray(values), t)
            bags = bags.with_columns(lists_from_lengths(strings, lengths, t))
        return bags


def _open_sequence(seqs: np.ndarray, stop: int) -> int | None:
    """The sequence that a step ending before row ``stop`` leaves unfinished, if any."""
    return int(seqs[stop - 1]) if 0 < stop < len(seqs) and seqs[stop] == seqs[stop - 1] else None


def _fold_steps(steps: Iterable[tuple[pl.DataFrame, int | None]], t: str) -> pl.DataFrame:
    """Bags (``__seq``, sorted ``t``, ``{t}_counts``) from steps of (``__seq``, ``t``, ``__c``)
    rows in sequence order. Each step is reduced to (sequence, token) counts; the rows of the
    sequence a step leaves open are carried into the next step, the others are final."""
    parts = []
    carry: pl.DataFrame | None = None
    dtype: pl.DataType | None = None
    for rows, open_seq in steps:
        dtype = rows.schema[t]
        reduced = (pl.concat([rows, carry]) if carry is not None else rows).group_by(
            "__seq", t).agg(pl.col("__c").sum())
        del rows
        carry = None
        if open_seq is not None:
            is_open = pl.col("__seq") == open_seq
            carry = reduced.filter(is_open)
            reduced = reduced.filter(~is_open)
        parts.append(
            reduced.sort("__seq", t)
            .group_by("__seq", maintain_order=True)
            .agg(pl.col(t), pl.col("__c").alias(f"{t}_counts"))
        )
    if not parts:
        return pl.DataFrame(schema={"__seq": pl.UInt32, t: pl.List(dtype or TOKEN_DTYPES[t]),
                                    f"{t}_counts": pl.List(pl.Int64)})
    return pl.concat(parts)


def _bags_from_lists(base: pl.DataFrame, t: str) -> pl.DataFrame:
    """Bags from per-event token lists, in steps of about :data:`BAG_CHUNK_ROWS` tokens."""
    seqs = pl.Series("__seq", _blocks(base), dtype=pl.UInt32)
    n = base.get_column(f"__n_{t}").to_numpy()
    steps = (np.cumsum(n) - n) // BAG_CHUNK_ROWS
    cuts = (np.flatnonzero(np.diff(steps)) + 1).tolist() if len(steps) else []
    bounds = [0, *cuts, base.height]
    lists = pl.DataFrame([seqs.alias("__seq"), base.get_column(t)])
    seq_array = seqs.to_numpy()

    def step_rows() -> Iterator[tuple[pl.DataFrame, int | None]]:
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            yield (
                lists.slice(a, b - a)
                .explode(t, empty_as_null=False)
                .drop_nulls(t)
                .with_columns(pl.lit(1, dtype=pl.Int64).alias("__c")),
                _open_sequence(seq_array, b),
            )

    return _fold_steps(step_rows(), t)


class _Tokens:
    """The tokens of the messages ``distinct[codes]`` (``codes`` sorted) as one flat array.

    With ``reduce`` each message keeps one entry per distinct token with its count;
    otherwise every occurrence is an entry of count 1 (no hashing: for messages that occur in
    few sequences, reducing first costs more than it saves).
    """

    def __init__(self, distinct: pl.Series, codes: pl.Series, t: str, *, reduce: bool) -> None:
        self.t = t
        self.codes = codes.cast(pl.UInt32).to_numpy()
        values, counts = TOKEN_VALUES[t](distinct.gather(codes).fill_null(""))
        self.weights: np.ndarray | None = None
        if reduce and len(values):
            owner = np.repeat(np.arange(len(self.codes), dtype=np.int64), counts)
            table = (
                pl.DataFrame({"__i": owner, t: values})
                .group_by("__i", t)
                .agg(pl.len().cast(pl.Int64).alias("__c"))
                .sort("__i", t)
            )
            counts = np.bincount(table.get_column("__i").to_numpy(), minlength=len(self.codes))
            values = table.get_column(t)
            self.weights = table.get_column("__c").to_numpy()
        self.values = values
        self.counts = counts.astype(np.int64)
        self.starts = np.cumsum(self.counts) - self.counts

    def expand(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """(``__seq``, ``t``, ``__c``) rows: the tokens of each (``__seq``, ``__code``,
        ``__n``) pair, each counted ``__n`` times."""
        at = np.searchsorted(self.codes, pairs.get_column("__code").to_numpy())
        lengths = self.counts[at] if len(at) else np.zeros(0, dtype=np.int64)
        index = range_index(self.starts[at], lengths, len(self.values))
        n = np.repeat(pairs.get_column("__n").to_numpy(), lengths)
        if self.weights is not None:
            n = n * self.weights[index.to_numpy()]
        return pl.DataFrame({
            "__seq": np.repeat(pairs.get_column("__seq").to_numpy(), lengths),
            self.t: self.values.gather(index) if len(index) else self.values.head(0),
            "__c": n.astype(np.int64),
        }, schema={"__seq": pl.UInt32, self.t: TOKEN_DTYPES[self.t], "__c": pl.Int64})
