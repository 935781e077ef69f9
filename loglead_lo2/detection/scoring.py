"""Score new data with any saved model bundle (the forest or a registry model).

The short way for users, on a freshly loaded LO2 folder::

    from loglead_lo2.detection.scoring import score_bundle
    from loglead_lo2.schema import read_parquet
    seqs = read_parquet("new_out/lo2_sequences_enhanced.parquet")
    preds = score_bundle(seqs, "demo/result/lo2/metrics/models/event_lr_words.joblib")

Load (sha256 checked against the bundle's ``.yml`` / ``model.yml``) -> vectorise with the
saved vectoriser -> the registry's score adapter of the model key recorded in the metadata
(higher = more anomalous) -> ``pred = score >= threshold`` with the recorded threshold (or
``threshold=``). The rows must come from the same loader settings as the training data
(window length, trimming); the normalised words are a pure function of each message, so a
fresh load of the same logs gives the same features and the same scores.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import polars as pl

from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

KEY_COLUMNS: tuple[str, ...] = ("seq_id", "run", "test_case", "service", "window")


def bundle_key(loaded: Any) -> str:
    """The registry key of a loaded bundle: from its metadata, else ``isolation_forest`` for
    a forest (bundles saved before keys were recorded)."""
    from sklearn.ensemble import IsolationForest

    from loglead_lo2.detection.iforest import IF_KEY

    key = ((loaded.metadata or {}).get("model") or {}).get("key")
    if key:
        return str(key)
    if isinstance(loaded.model, IsolationForest):
        return IF_KEY
    raise UserError(f"{loaded.path}: no model key in its metadata; cannot tell how to score "
                    "it (save it with the detection phase, which writes the .yml).")


def score_bundle(sequences: pl.DataFrame, bundle: str | os.PathLike[str], *,
                 metadata: str | os.PathLike[str] | None = None,
                 threshold: float | None = None, batch_size: int = 50_000) -> pl.DataFrame:
    """Keys + ``score`` (+ ``threshold`` and ``pred`` when a threshold is known) per row."""
    from loglead_lo2.detection.evaluate import score_rows
    from loglead_lo2.detection.persistence import load_bundle
    from loglead_lo2.detection.registry import REGISTRY

    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}.")
    loaded = load_bundle(bundle, metadata_path=metadata)
    for note in loaded.notes:
        log.info(note)
    key = bundle_key(loaded)
    if key not in REGISTRY:
        raise UserError(f"{bundle}: model key {key!r} is not in this version's registry.")
    spec = REGISTRY[key]
    vec = loaded.vectorizer
    needed = [c for c in (vec.item, *vec.numeric) if c]
    missing = [c for c in needed if c not in sequences.columns]
    if missing:
        raise UserError(f"sequences lack column(s) {', '.join(missing)} used by {bundle}.")
    scores = score_rows(spec, loaded.model, vec, sequences, batch_size)
    out = sequences.select([c for c in KEY_COLUMNS if c in sequences.columns]).with_columns(
        score=pl.Series(scores, dtype=pl.Float64), model=pl.lit(key))
    cut = threshold if threshold is not None else loaded.threshold
    if cut is not None:
        out = out.with_columns(threshold=pl.lit(float(cut)),
                               pred=(pl.col("score") >= float(cut)).cast(pl.Int8))
    return out


__all__ = ["bundle_key", "score_bundle"]
