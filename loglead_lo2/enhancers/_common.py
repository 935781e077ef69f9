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


def map_distinct(
    df: pl.DataFrame,
    key: str,
    compute: Callable[[pl.DataFrame], pl.DataFrame],
    adds: list[str],
) -> pl.DataFrame:
    """Compute ``adds`` once per distinct value of ``key`` and join them back to every row.

    ``compute`` receives a one-column frame of the distinct (non-null) values of ``key`` and
    returns it with the ``adds`` columns. Null keys are processed as ``""``. Row order of ``df``
    is kept.
    """
    key_expr = pl.col(key).fill_null("")
    distinct = df.select(key_expr.unique().sort())
    table = compute(distinct).select([key, *adds])
    joined = (
        df.select(key_expr.alias("__key"))
        .join(table.rename({key: "__key"}), on="__key", how="left", maintain_order="left")
        .drop("__key")
    )
    return df.with_columns(joined.get_columns())


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


def lists_from_lengths(flat: pl.Series, lengths: np.ndarray, name: str) -> pl.Series:
    """Cut the flat ``flat`` values into consecutive lists of ``lengths`` (no copy of values).

    ``sum(lengths)`` must equal ``len(flat)``. Used to build token lists without a group-by.
    """
    import pyarrow as pa

    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total != flat.len():
        raise ValueError(f"{name}: lengths sum to {total} but there are {flat.len()} values")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = flat.to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if total < 2**31 - 1:
        arr = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)
    else:
        arr = pa.LargeListArray.from_arrays(pa.array(offsets), values)
    return pl.Series(name, arr)
