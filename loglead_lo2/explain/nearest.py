"""Nearest-normal mapping: each top-scored held-out sequence next to its closest normal one.

For the ``top_k`` held-out sequences with the highest score of one model, the nearest normal
sequence is found by cosine similarity **in that model's feature space** (its fitted
:class:`~loglead_lo2.detection.features.ListVectorizer`) among the normal sequences of the
TRAINING runs. The tokens and Drain templates that differ most are then listed: present in the
anomaly and absent from the neighbour first, then those whose share of the sequence is larger
in the anomaly. Shares (count / sequence token total) are compared, not raw counts, because
``correct`` recordings are ~6x longer than error cases.

Everything is columnar: one sparse matrix product per block of normal rows, and polars
``explode -> group_by -> join`` for the token differences.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from loglead_lo2 import artifacts as A
from loglead_lo2.schema import write_text_atomic

log = logging.getLogger(__name__)

DIFF_TOP_N = 10
"""Differing tokens / templates listed per anomaly."""

NN_COLUMNS: tuple[str, ...] = (
    "rank", "seq_id", "run", "test_case", "service", "anomaly", "target_service", "score",
    "flagged", "neighbour_seq_id", "neighbour_run", "neighbour_test_case",
    "neighbour_service", "cosine_similarity", "n_tokens_absent_in_neighbour", "top_tokens",
    "top_templates",
)


def _l2_rows(X: Any) -> sp.csr_matrix:
    X = sp.csr_matrix(X, dtype=np.float64)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ X)


def nearest_rows(
    queries: Any, pool: Any, block: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Index in ``pool`` of each query row's most cosine-similar row, and that similarity.

    Ties go to the lowest pool index (deterministic). A query or pool row without any
    non-zero feature has similarity 0 to everything. ``pool`` is processed ``block`` rows at
    a time, so memory is ``queries x block``.
    """
    Q, P = _l2_rows(queries), _l2_rows(pool)
    if P.shape[0] == 0:
        raise ValueError("the pool of normal rows is empty")
    best = np.full(Q.shape[0], -np.inf)
    idx = np.zeros(Q.shape[0], dtype=np.int64)
    for start in range(0, P.shape[0], block):
        sims = (Q @ P[start:start + block].T).toarray()
        arg = sims.argmax(axis=1)
        val = sims[np.arange(Q.shape[0]), arg]
        better = val > best
        best[better] = val[better]
        idx[better] = arg[better] + start
    return idx, best


def _counts(pairs: pl.DataFrame, key: str, seqs: pl.DataFrame, column: str,
            suffix: str) -> pl.DataFrame:
    """``(rank, token, n_<suffix>, total_<suffix>)`` for the sequence named by ``key``."""
    return (
        pairs.select("rank", pl.col(key).alias("seq_id"))
        .join(seqs.select("seq_id", pl.col(column).alias("token")), on="seq_id", how="left")
        .drop("seq_id")
        .explode("token")
        .drop_nulls("token")
        .group_by("rank", "token")
        .agg(pl.len().cast(pl.Int64).alias(f"n_{suffix}"))
        .with_columns(pl.col(f"n_{suffix}").sum().over("rank").alias(f"total_{suffix}"))
    )


def token_differences(
    pairs: pl.DataFrame,
    seqs: pl.DataFrame,
    column: str,
    *,
    top_n: int = DIFF_TOP_N,
    labels: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per ``rank`` of ``pairs`` (``rank``, ``seq_id``, ``neighbour_seq_id``): the tokens of
    ``column`` more frequent in the anomaly than in its neighbour.

    Returns ``rank``, ``n_absent`` (distinct tokens of the anomaly the neighbour lacks) and
    ``text``: ``token (a/b)`` items joined by ``"; "``, where ``a``/``b`` are the counts in
    the anomaly / the neighbour; absent tokens come first, then by share difference, then by
    token. ``labels`` (``token``, ``label``) appends a readable label (e.g. a Drain template).
    """
    a = _counts(pairs, "seq_id", seqs, column, "a")
    b = _counts(pairs, "neighbour_seq_id", seqs, column, "b")
    diff = (
        a.join(b, on=["rank", "token"], how="left")
        .with_columns(pl.col("n_b").fill_null(0))
        .with_columns(
            share=pl.col("n_a") / pl.col("total_a")
            - (pl.col("n_b") / pl.col("total_b")).fill_null(0.0).fill_nan(0.0),
            absent=pl.col("n_b") == 0,
        )
        .filter(pl.col("share") > 0)
    )
    absent = diff.group_by("rank").agg(pl.col("absent").sum().cast(pl.Int64).alias("n_absent"))
    top = (
        diff.sort(["rank", "absent", "share", "token"], descending=[False, True, True, False])
        .group_by("rank", maintain_order=True)
        .head(top_n)
    )
    item = pl.format("{} ({}/{})", pl.col("token"), pl.col("n_a"), pl.col("n_b"))
    if labels is not None and labels.height:
        top = top.join(labels.select("token", "label"), on="token", how="left",
                       maintain_order="left")
        item = pl.when(pl.col("label").is_not_null()).then(
            pl.format("{} ({}/{}) {}", pl.col("token"), pl.col("n_a"), pl.col("n_b"),
                      pl.col("label"))
        ).otherwise(item)
    text = top.group_by("rank", maintain_order=True).agg(item.str.join("; ").alias("text"))
    return (
        pairs.select("rank")
        .join(absent, on="rank", how="left")
        .join(text, on="rank", how="left")
        .with_columns(pl.col("n_absent").fill_null(0), pl.col("text").fill_null(""))
    )


def template_labels(path: Path, width: int = 90) -> pl.DataFrame | None:
    """``token``/``label`` from ``lo2_drain_templates.parquet`` (quoted, shortened), or None."""
    if not path.is_file():
        return None
    try:
        tpl = pl.read_parquet(path, columns=["e_event_drain_id", "template"])
    except Exception as exc:  # noqa: BLE001 - an optional, informative file
        log.warning("cannot read %s (%s); templates shown by id only", path, exc)
        return None
    short = pl.col("template").str.replace_all(r"\s+", " ")
    short = pl.when(short.str.len_chars() > width).then(
        short.str.slice(0, width - 3) + pl.lit("...")
    ).otherwise(short)
    return tpl.select(
        pl.col("e_event_drain_id").cast(pl.String).alias("token"),
        pl.format('"{}"', short).alias("label"),
    ).unique("token", keep="first").sort("token")


def nn_mapping(
    hold: pl.DataFrame,
    scores: np.ndarray,
    threshold: float,
    pool: pl.DataFrame,
    vectorizer: Any,
    *,
    top_k: int,
    token_column: str,
    template_column: str | None = "e_event_drain_id",
    labels: pl.DataFrame | None = None,
    flags: np.ndarray | None = None,
) -> pl.DataFrame:
    """The nearest-normal table (columns :data:`NN_COLUMNS`) for the top ``top_k`` of ``hold``.

    ``hold`` are the held-out sequences with ``scores`` (higher = more anomalous; ties broken
    by ``seq_id``); ``pool`` the normal sequences of the training runs; ``vectorizer`` the
    model's fitted feature space. ``flags`` (aligned with ``hold``) are the model's
    predictions (the detection phase's ``pred``); without them ``score >= threshold``.
    """
    if pool.height == 0:
        raise ValueError("no normal sequences in the training runs to map to")
    from loglead_lo2.detection.evaluate import threshold_scores

    flagged = pl.Series(np.asarray(flags, dtype=bool) if flags is not None else
                        threshold_scores(np.asarray(scores, dtype=np.float64), threshold) == 1)
    ranked = (
        hold.with_columns(score=pl.Series(scores, dtype=pl.Float64), flagged=flagged)
        .sort(["score", "seq_id"], descending=[True, False])
        .head(top_k)
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64))
    )
    idx, sim = nearest_rows(vectorizer.transform(ranked), vectorizer.transform(pool))
    neigh = pool.select("seq_id", "run", "test_case", "service")[idx]
    pairs = ranked.with_columns(
        neighbour_seq_id=neigh["seq_id"], neighbour_run=neigh["run"],
        neighbour_test_case=neigh["test_case"], neighbour_service=neigh["service"],
        cosine_similarity=pl.Series(np.round(sim, 6), dtype=pl.Float64),
    )
    both = pl.concat([ranked, pool], how="diagonal_relaxed").unique("seq_id", keep="first")
    tokens = token_differences(pairs, both, token_column).rename(
        {"n_absent": "n_tokens_absent_in_neighbour", "text": "top_tokens"})
    out = pairs.join(tokens, on="rank", how="left")
    if template_column and template_column in hold.columns:
        tpl = token_differences(pairs, both, template_column, top_n=5, labels=labels)
        out = out.join(tpl.select("rank", pl.col("text").alias("top_templates")), on="rank",
                       how="left")
    else:
        out = out.with_columns(top_templates=pl.lit("", dtype=pl.String))
    if "target_service" not in out.columns:
        out = out.with_columns(target_service=pl.lit(None, dtype=pl.String))
    return out.select(NN_COLUMNS).sort("rank")


def _md_cell(value: Any, limit: int | None = None) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\n", " ").replace("|", "\\|")
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def nn_markdown(table: pl.DataFrame, header: Sequence[str]) -> str:
    """Readable ``nn_mapping.md``: ``header`` lines, then one row per anomaly."""
    lines = ["# Nearest-normal mapping", "", *header, ""]
    if table.height == 0:
        return "\n".join([*lines, "No held-out sequence to explain.", ""])
    lines += [
        "| rank | held-out sequence | label | score | nearest normal (training run) | cosine "
        "| tokens more frequent in the anomaly (anomaly/neighbour) | templates |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in table.iter_rows(named=True):
        label = "anomaly" if r["anomaly"] else "NORMAL"
        flag = " (flagged)" if r["flagged"] else ""
        toks = "; ".join(str(r["top_tokens"] or "").split("; ")[:5])
        tpls = "; ".join(str(r["top_templates"] or "").split("; ")[:2])
        lines.append(
            f"| {r['rank']} | {_md_cell(r['seq_id'])} | {label}{flag} | {r['score']:.4f} "
            f"| {_md_cell(r['neighbour_seq_id'])} | {r['cosine_similarity']:.3f} "
            f"| {_md_cell(toks, 240)} | {_md_cell(tpls, 240)} |"
        )
    return "\n".join(lines) + "\n"


def write_nn_mapping(table: pl.DataFrame, out_dir: Path, header: Sequence[str]) -> list[Path]:
    """``nn_mapping.csv`` (every column) and ``nn_mapping.md``; returns both paths."""
    csv_path, md_path = out_dir / A.NN_CSV, out_dir / A.NN_MD
    write_text_atomic(csv_path, table.write_csv())
    write_text_atomic(md_path, nn_markdown(table, header))
    return [csv_path, md_path]


__all__ = [
    "NN_COLUMNS",
    "nearest_rows",
    "nn_mapping",
    "nn_markdown",
    "template_labels",
    "token_differences",
    "write_nn_mapping",
]
