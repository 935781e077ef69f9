"""Cut each (run, test case, service) sequence into fixed time windows.

``correct`` lasts 60 s and error cases 10 s, so whole-file sequences differ in length and
duration by recording design. With windows of ``seconds`` each window becomes its own
sequence: ``window`` is the 0-based window index from the sequence's first event and
``seq_id`` gets the suffix ``__wNNNN``. Labels are those of the test case.
"""

from __future__ import annotations

import polars as pl


def add_windows(events: pl.DataFrame, seconds: float | None) -> pl.DataFrame:
    """Return ``events`` with an Int32 ``window`` column (null when ``seconds`` is None)."""
    if "window" in events.columns:
        return events
    if not seconds:
        return events.with_columns(window=pl.lit(None, dtype=pl.Int32))
    if seconds <= 0:
        raise ValueError("window length must be positive")
    step_ms = int(round(seconds * 1000))
    ts = pl.col("m_timestamp").cast(pl.Int64)
    start = ts.min().over("seq_id")
    return events.with_columns(
        window=((ts - start) // step_ms).cast(pl.Int32),
    ).with_columns(
        seq_id=pl.concat_str(
            [pl.col("seq_id"), pl.lit("__w"), pl.col("window").cast(pl.String).str.zfill(4)]
        )
    )
