"""Shared helpers of the enhancers: prerequisite checks, declarations, distinct-value mapping."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
import polars as pl

F = TypeVar("F", bound=Callable[..., Any])


def declares(requires: Iterable[str], adds: Iterable[str]) -> Callable[[F], F]:
    """Attach ``REQUIRES``/``ADDS`` tuples to an enhancer function."""

    def wrap(fn: F) -> F:
        fn.REQUIRES = tuple(requires)  # type: ignore[attr-defined]
        fn.ADDS = tuple(adds)  # type: ignore[attr-defined]
        return fn

    return wrap


def require(df: pl.DataFrame, columns: Iterable[str], who: str) -> None:
    """Raise ``ValueError`` naming every missing column (a programmer error, not a user one)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{who}: missing column(s) {', '.join(missing)}; "
            f"present: {', '.join(df.columns) or 'none'}"
        )


DISTINCT_CHUNK = 1 << 16
"""Distinct values :func:`map_distinct` hands to ``compute`` at a time."""


def map_distinct(
    df: pl.DataFrame,
    key: str,
    compute: Callable[[pl.DataFrame], pl.DataFrame],
    adds: list[str],
) -> pl.DataFrame:
    """Compute ``adds`` once per distinct value of ``key`` and gather them back to every row.

    ``compute`` receives a one-column frame of sorted distinct values of ``key`` and returns
    it with the ``adds`` columns; it must work row by row, because it is called on
    consecutive slices of at most :data:`DISTINCT_CHUNK` values, so that its temporaries
    (a regex pass over a few hundred MB of raw messages, say) stay small when nearly every
    value is distinct. Null keys are processed as ``""``. Row order of ``df`` is kept. List
    columns are gathered through their flat values (:func:`concat_lists`), which is much
    faster than a join or a list gather when few distinct lists repeat.
    """
    codes, distinct = distinct_codes(df.get_column(key))
    parts = [
        compute(distinct.slice(start, DISTINCT_CHUNK).to_frame(key)).select(adds)
        for start in range(0, max(len(distinct), 1), DISTINCT_CHUNK)
    ]
    table = pl.concat(parts) if len(parts) > 1 else parts[0]
    del distinct
    pick = codes.to_numpy()
    out = []
    for name in adds:
        column = table.get_column(name)
        if isinstance(column.dtype, pl.List):
            _, _, lengths = list_parts(column)
            out.append(concat_lists(column, pick, lengths[pick], name))
        else:
            out.append(column.gather(codes))
    return add_columns(df, out)


def add_columns(df: pl.DataFrame, columns: list[pl.Series]) -> pl.DataFrame:
    """``df.with_columns(columns)`` with each new column cut into ``df``'s chunk layout.

    Loader events come in many chunks (one per parsed file group). A column gathered per
    distinct message is one chunk; a frame mixing the two layouts is rechunked by polars as a
    whole at the next expression over it: a full copy of the events, while the caller still
    holds the original. Cutting the new column into zero-copy slices of the same lengths keeps
    the frame aligned, so nothing is ever copied.
    """
    if df.width and df.height:
        lengths = [len(c) for c in df.get_column(df.columns[0]).get_chunks()]
        if len(lengths) > 1:
            bounds = np.cumsum([0, *lengths])
            columns = [
                pl.concat([c.slice(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:],
                                                                      strict=True)],
                          rechunk=False)
                if c.n_chunks() == 1 and len(c) == df.height else c
                for c in columns
            ]
    return df.with_columns(columns)


def distinct_codes(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Return (codes, distinct): ``distinct`` sorted unique values, ``codes[i]`` the UInt32
    position of ``values[i]`` in it (nulls are treated as ``""``)."""
    values = values.fill_null("")
    distinct = values.unique().sort()
    table = pl.DataFrame({"__v": distinct}).with_row_index("__code")
    codes = (
        pl.DataFrame({"__v": values})
        .join(table, on="__v", how="left", maintain_order="left")
        .get_column("__code")
    )
    return codes, distinct


HASH_SEEDS = (0, 0x5851F42D)
"""The two seeds of the 128-bit string keys (two 64-bit polars hashes) used where strings
are matched by hash: :func:`first_seen_codes` and the Drain message cache."""


def first_seen_codes(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Like :func:`distinct_codes`, but ``distinct`` in order of first appearance, found by a
    128-bit hash of each value (two seeded 64-bit hashes) instead of comparing the strings:
    about twice as fast on long, mostly distinct strings. For intermediate steps whose
    result does not depend on the order; two different values sharing both hashes is about
    as likely as ``n**2 / 2**129`` (never, in practice)."""
    values = values.fill_null("")
    keys = pl.DataFrame({"__a": values.hash(seed=HASH_SEEDS[0]),
                         "__b": values.hash(seed=HASH_SEEDS[1])})
    # groups in order of first appearance, each with its rows: the code of a group is its
    # position, scattered to its rows (a third faster than a join back on the keys)
    rows = (keys.with_row_index("__i").group_by("__a", "__b", maintain_order=True)
            .agg("__i").get_column("__i"))
    codes = np.empty(len(values), dtype=np.uint32)
    codes[rows.explode().to_numpy()] = np.repeat(np.arange(len(rows), dtype=np.uint32),
                                                 rows.list.len().to_numpy())
    return pl.Series("__code", codes), values.gather(rows.list.first())


def lists_from_lengths(flat: pl.Series | Any, lengths: np.ndarray, name: str) -> pl.Series:
    """Cut ``flat`` (a Series or Arrow array) into consecutive lists of ``lengths``.

    The values are not copied: the result is an Arrow list array over them. ``sum(lengths)``
    must equal ``len(flat)``. Used to build token lists without a group-by.
    """
    import pyarrow as pa

    lengths = np.asarray(lengths, dtype=np.int64)
    if isinstance(flat, pl.Series):
        flat = flat.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(flat, pa.ChunkedArray):
        flat = flat.combine_chunks()
    total = int(lengths.sum())
    if total != len(flat):
        raise ValueError(f"{name}: lengths sum to {total} but there are {len(flat)} values")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if total < 2**31 - 1:
        arr = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), flat)
    else:
        arr = pa.LargeListArray.from_arrays(pa.array(offsets), flat)
    return pl.Series(name, arr)


def list_parts(lists: pl.Series) -> tuple[Any, np.ndarray, np.ndarray]:
    """Split a single-chunk list Series into (flat Arrow values, start offsets, lengths).

    Nulls have length 0. The values stay an Arrow array: slicing it is free, while a polars
    Series built from an Arrow slice is slow to export again.
    """
    import pyarrow as pa

    arr = lists.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    offsets = np.asarray(arr.offsets, dtype=np.int64)
    starts = offsets[:-1] - offsets[0]
    lengths = np.diff(offsets)
    if arr.null_count:
        lengths = np.where(np.asarray(arr.is_null()), 0, lengths)
    values = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    return values, starts, lengths


CHUNK_VALUES = 8_000_000
"""Values gathered per chunk by :func:`concat_lists` (small gathers are several times faster
than one huge one on this kind of machine, and keep the index small)."""


def concat_lists(
    lists: pl.Series, pick: np.ndarray | None, group_totals: np.ndarray, name: str
) -> pl.Series:
    """Concatenate the lists ``lists[pick[0]], lists[pick[1]], ...`` into one list per group.

    Groups are consecutive runs of picked items and ``group_totals[g]`` is the number of
    values group ``g`` holds. ``pick=None`` takes every item in order (no copy of the values).
    Otherwise the values are gathered through a flat index, in chunks of about
    :data:`CHUNK_VALUES` values cut at group boundaries (fast for few distinct lists picked
    many times, unlike a list gather); the result then has one chunk per gather.
    """
    group_totals = np.asarray(group_totals, dtype=np.int64)
    if pick is None and lists.n_chunks() > 1:
        return _concat_chunked_in_order(lists, group_totals, name)
    values, starts, lengths = list_parts(lists.rechunk() if lists.n_chunks() > 1 else lists)
    if pick is None:
        return lists_from_lengths(values, group_totals, name)
    series = pl.Series(name, values)
    pick = np.asarray(pick, dtype=np.int64)
    picked_lengths = lengths[pick]
    item_ends = np.cumsum(picked_lengths)
    group_ends = np.cumsum(group_totals)
    total = int(group_ends[-1]) if len(group_ends) else 0
    if total != (int(item_ends[-1]) if len(item_ends) else 0):
        raise ValueError(f"{name}: group totals do not match the picked list lengths")
    group_bounds = _group_bounds(group_ends, total)
    parts = []
    item_start = 0
    for g0, g1 in zip(group_bounds[:-1], group_bounds[1:], strict=True):
        if g1 <= g0:
            continue
        value_end = int(group_ends[g1 - 1])
        item_end = int(np.searchsorted(item_ends, value_end, side="right"))
        if g1 == len(group_totals):
            item_end = len(pick)
        sel = slice(item_start, item_end)
        index = range_index(starts[pick[sel]], picked_lengths[sel], len(values))
        parts.append(lists_from_lengths(series.gather(index), group_totals[g0:g1], name))
        item_start = item_end
    if not parts:
        return lists_from_lengths(series.head(0), group_totals, name)
    return pl.concat(parts, rechunk=False)


def _group_bounds(group_ends: np.ndarray, total: int) -> list[int]:
    """Group indices cutting the groups into runs of about :data:`CHUNK_VALUES` values."""
    cuts = np.searchsorted(group_ends, np.arange(CHUNK_VALUES, total, CHUNK_VALUES))
    return [0, *sorted({int(g) + 1 for g in cuts if g + 1 < len(group_ends)}), len(group_ends)]


def _concat_chunked_in_order(lists: pl.Series, group_totals: np.ndarray, name: str) -> pl.Series:
    """``concat_lists(lists, None, ...)`` for a multi-chunk Series without rechunking it.

    Runs of groups that lie inside one input chunk become zero-copy slices of its flat values;
    only a group that straddles two input chunks is copied.
    """
    import pyarrow as pa

    flats = [list_parts(chunk)[0] for chunk in lists.get_chunks()]
    flat_ends = np.cumsum([len(f) for f in flats])
    group_ends = np.cumsum(group_totals)
    total = int(group_ends[-1]) if len(group_ends) else 0
    if total != (int(flat_ends[-1]) if len(flat_ends) else 0):
        raise ValueError(f"{name}: group totals do not match the list lengths")
    if len(group_totals) == 0:
        return lists.head(0).rename(name)
    group_starts = group_ends - group_totals
    last = len(flats) - 1
    first_chunk = np.minimum(np.searchsorted(flat_ends, group_starts, side="right"), last)
    last_chunk = np.minimum(
        np.searchsorted(flat_ends, np.maximum(group_ends - 1, group_starts), side="right"), last
    )
    straddles = (group_totals > 0) & (first_chunk != last_chunk)
    key = np.where(straddles, -1 - np.arange(len(group_totals)), first_chunk)
    bounds = [0, *np.flatnonzero(key[1:] != key[:-1]) + 1, len(group_totals)]
    parts = []
    for g0, g1 in zip(bounds[:-1], bounds[1:], strict=True):
        v0, v1 = int(group_starts[g0]), int(group_ends[g1 - 1])
        pieces = []
        for k, flat in enumerate(flats):
            c0 = int(flat_ends[k]) - len(flat)
            lo, hi = max(v0, c0), min(v1, int(flat_ends[k]))
            if hi > lo:
                pieces.append(flat.slice(lo - c0, hi - lo))
        values = pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces or [flats[0][:0]])
        parts.append(lists_from_lengths(values, group_totals[g0:g1], name))
    return pl.concat(parts, rechunk=False)


def range_index(starts: np.ndarray, lengths: np.ndarray, n_values: int) -> pl.Series:
    """``concat(range(s, s + n) for s, n in zip(starts, lengths))`` as one integer Series.

    Built with a single cumulative sum (every position steps by 1, the first position of
    each range jumps from the previous range's end), which is several times faster than
    ``np.repeat`` + ``np.arange`` on large outputs.
    """
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    total = int(lengths.sum())
    dtype = np.int32 if n_values < 2**31 - 1 else np.int64
    if total == 0:
        return pl.Series(np.zeros(0, dtype=dtype))
    steps = np.ones(total, dtype=dtype)
    firsts = np.cumsum(lengths[:-1])
    steps[0] = starts[0]
    steps[firsts] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    np.cumsum(steps, out=steps)
    return pl.Series(steps)
