"""Score new data with any saved model bundle (the forest or a registry model).

The short way for users, on a freshly loaded LO2 folder::

    from loglead_lo2.detection.scoring import score_folder
    preds = score_folder("new_out", "demo/result/lo2/metrics/models/event_lr_words.joblib")

or, with sequences at hand, ``score_bundle(seqs, bundle, load_info="new_out")``. Models over
Drain template ids (``*_templates``) need the new logs loaded with the training load's Drain
state, ``lo2-load ... --drain-state demo/result/lo2/metrics/models/lo2_drain_state.parquet``,
so that each id means the same template; their scoring refuses rows of any other load
(:mod:`loglead_lo2.detection.drain_link`).

Load (signature checked against the bundle's ``.yml`` / ``model.yml``) -> vectorise with the
saved vectoriser -> the registry's score adapter of the model key recorded in the metadata
(higher = more anomalous) -> ``pred = score >= threshold`` with the recorded threshold (or
``threshold=``). The rows must come from the same loader settings as the training data
(window length, trimming); the normalised words are a pure function of each message, so a
fresh load of the same logs gives the same features and the same scores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2.artifacts import ENHANCED_FILE, LOAD_INFO_FILE
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

KEY_COLUMNS: tuple[str, ...] = ("seq_id", "run", "test_case", "service", "window")


def bundle_key(loaded: Any) -> str:
    """The registry key of a loaded bundle: from its metadata, else ``isolation_forest`` for
    a forest (bundles saved before keys were recorded)."""
    from sklearn.ensemble import IsolationForest

    from loglead_lo2.detection.defaults import IF_KEY

    key = ((loaded.metadata or {}).get("model") or {}).get("key")
    if key:
        return str(key)
    if isinstance(loaded.model, IsolationForest):
        return IF_KEY
    raise UserError(f"{loaded.path}: no model key in its metadata; cannot tell how to score "
                    "it (save it with the detection phase, which writes the .yml).")


def _drain_of(load_info: str | os.PathLike[str] | Mapping[str, Any] | None
              ) -> tuple[Mapping[str, Any] | None, str]:
    """The ``"drain"`` block of a load (a folder, its ``lo2_load_info.json`` or the parsed
    info) and how to name it in an error."""
    from loglead_lo2.detection.drain_link import load_drain_block

    if load_info is None:
        return None, "rows of an unnamed load (pass load_info=<the loader folder>)"
    if isinstance(load_info, Mapping):
        block = load_info.get("drain", load_info)
        return (block if isinstance(block, Mapping) else None), "the given load info"
    path = Path(load_info)
    folder = path.parent if path.name == LOAD_INFO_FILE else path
    return load_drain_block(folder), str(folder / LOAD_INFO_FILE)


def score_bundle(sequences: pl.DataFrame, bundle: str | os.PathLike[str], *,
                 metadata: str | os.PathLike[str] | None = None,
                 threshold: float | None = None, batch_size: int = 50_000,
                 load_info: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                 expected_key: str | None = None,
                 trust_unsigned: bool | None = None) -> pl.DataFrame:
    """Keys + ``score`` (+ ``threshold`` and ``pred`` when a threshold is known) per row.

    ``load_info`` names the load the rows come from (its folder, its ``lo2_load_info.json``
    or the parsed info); needed for bundles over Drain template ids, whose Drain state must be
    the load's or one of its ancestors. ``expected_key`` refuses a bundle of another model
    (``isolation_forest`` also checks that it holds an Isolation Forest). The bundle's
    signature is verified before it is unpickled (:func:`~.persistence.load_bundle`);
    ``trust_unsigned=True`` loads one you vouch for with a warning.
    """
    from loglead_lo2.detection.drain_link import check_lineage
    from loglead_lo2.detection.evaluate import score_rows
    from loglead_lo2.detection.persistence import load_bundle
    from loglead_lo2.detection.registry import REGISTRY

    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}.")
    check = None
    if expected_key is not None:
        from loglead_lo2.detection.defaults import IF_KEY, is_isolation_forest

        check = is_isolation_forest if expected_key == IF_KEY else None
    loaded = load_bundle(bundle, metadata_path=metadata, expected_key=expected_key,
                         model_check=check, trust_unsigned=trust_unsigned)
    for note in loaded.notes:
        (log.warning if "WARNING" in note else log.info)(note)
    block, where = _drain_of(load_info)
    check_lineage(loaded.metadata, block, bundle, where)
    key = bundle_key(loaded)
    if key not in REGISTRY:
        raise UserError(f"{bundle}: model key {key!r} is not in this version's registry.")
    spec = REGISTRY[key]
    vec = loaded.vectorizer
    needed = [c for c in (vec.item, *vec.numeric) if c]
    missing = [c for c in needed if c not in sequences.columns]
    if missing:
        from loglead_lo2.enhancers.metric_features import missing_hint

        raise UserError(f"sequences lack column(s) {', '.join(missing)} used by {bundle}."
                        + missing_hint(missing))
    scores = score_rows(spec, loaded.model, vec, sequences, batch_size)
    out = sequences.select([c for c in KEY_COLUMNS if c in sequences.columns]).with_columns(
        score=pl.Series(scores, dtype=pl.Float64), model=pl.lit(key))
    cut = threshold if threshold is not None else loaded.threshold
    if cut is not None:
        out = out.with_columns(threshold=pl.lit(float(cut)),
                               pred=(pl.col("score") >= float(cut)).cast(pl.Int8))
    return out


def score_folder(folder: str | os.PathLike[str], bundle: str | os.PathLike[str],
                 **kwargs: Any) -> pl.DataFrame:
    """:func:`score_bundle` on ``<folder>/lo2_sequences_enhanced.parquet`` of a loader output
    folder (its ``lo2_load_info.json`` names the rows' Drain state)."""
    from loglead_lo2.schema import read_parquet

    path = Path(folder) / ENHANCED_FILE
    if not path.is_file():
        raise UserError(f"{path}: not found; load the logs with lo2-load --save-parquet "
                        f"--output-dir {folder}.")
    return score_bundle(read_parquet(path, "sequences_enhanced"), bundle, load_info=folder,
                        **kwargs)


__all__ = ["bundle_key", "score_bundle", "score_folder"]
