"""False-positive lists: held-out normal sequences a model flags at its threshold.

A false positive is a held-out normal sequence the model flags (``pred``: ``score >=
threshold``, the project's one thresholding rule). Each is listed with its score, its rank
among all held-out sequences and its *rarest* tokens: the tokens of the sequence that occur
in the fewest normal sequences of the TRAINING runs (``token (k/n)`` = seen in ``k`` of
``n`` training normal sequences). Those are the usual reason a normal sequence looks unusual
(a rare ERROR line in a ``correct`` case, a start-up remnant, an unseen identifier).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from loglead_lo2.schema import write_text_atomic

RARE_TOP_N = 8
"""Rarest tokens listed per false positive."""

FP_COLUMNS: tuple[str, ...] = (
    "seq_id", "run", "test_case", "service", "score", "threshold", "holdout_rank",
    "top_tokens",
)


def rarest_tokens(
    rows: pl.DataFrame, reference: pl.DataFrame, column: str, top_n: int = RARE_TOP_N
) -> pl.DataFrame:
    """``seq_id`` -> ``top_tokens``: each row's tokens of ``column`` that the fewest
    ``reference`` rows contain (ties: more occurrences in the row first, then the token)."""
    n_ref = reference.height
    doc_freq = (
        reference.select(pl.col(column).list.unique().alias("token"))
        .explode("token")
        .drop_nulls("token")
        .group_by("token")
        .agg(pl.len().cast(pl.Int64).alias("df"))
    )
    counts = (
        rows.select("seq_id", pl.col(column).alias("token"))
        .explode("token")
        .drop_nulls("token")
        .group_by("seq_id", "token")
        .agg(pl.len().cast(pl.Int64).alias("n"))
        .join(doc_freq, on="token", how="left")
        .with_columns(pl.col("df").fill_null(0))
        .sort(["seq_id", "df", "n", "token"], descending=[False, False, True, False])
        .group_by("seq_id", maintain_order=True)
        .head(top_n)
    )
    text = counts.group_by("seq_id", maintain_order=True).agg(
        pl.format("{} ({}/{})", pl.col("token"), pl.col("df"), pl.lit(n_ref))
        .str.join("; ").alias("top_tokens")
    )
    return rows.select("seq_id").join(text, on="seq_id", how="left").with_columns(
        pl.col("top_tokens").fill_null("")
    )


def false_positives(
    hold: pl.DataFrame,
    scores: np.ndarray,
    threshold: float,
    train_normal: pl.DataFrame,
    column: str,
    flags: np.ndarray | None = None,
) -> pl.DataFrame:
    """Held-out normal rows the model flags, highest score first (columns
    :data:`FP_COLUMNS`). ``flags`` (aligned with ``hold``) are its predictions (the
    detection phase's ``pred``), by default ``score >= threshold``. ``train_normal`` are the
    training runs' normal sequences."""
    from loglead_lo2.detection.evaluate import threshold_scores

    flagged = (np.asarray(flags, dtype=bool) if flags is not None
               else threshold_scores(np.asarray(scores, dtype=np.float64), threshold) == 1)
    ranked = hold.with_columns(score=pl.Series(scores, dtype=pl.Float64)).with_columns(
        holdout_rank=pl.col("score").rank(method="min", descending=True).cast(pl.Int64),
        threshold=pl.lit(float(threshold), dtype=pl.Float64),
        _flagged=pl.Series(flagged),
    )
    fps = ranked.filter(pl.col("normal") & pl.col("_flagged")).sort(
        ["score", "seq_id"], descending=[True, False]
    )
    if fps.height == 0:
        return pl.DataFrame(
            schema={c: (pl.Float64 if c in ("score", "threshold") else
                        pl.Int64 if c == "holdout_rank" else pl.String) for c in FP_COLUMNS}
        )
    tokens = rarest_tokens(fps, train_normal, column)
    return fps.join(tokens, on="seq_id", how="left", maintain_order="left").select(FP_COLUMNS)


def write_false_positives(table: pl.DataFrame, out_dir: Path, key: str) -> Path:
    """``false_positives_<key>.csv`` (a header only when there is none)."""
    path = out_dir / f"false_positives_{key}.csv"
    write_text_atomic(path, table.write_csv())
    return path


__all__ = ["FP_COLUMNS", "false_positives", "rarest_tokens", "write_false_positives"]
