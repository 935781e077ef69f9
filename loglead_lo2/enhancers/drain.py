"""Drain3 event templates for normalised messages, shared across batches.

The :class:`DrainParser` wraps a drain3 ``TemplateMiner`` built from an explicit
:class:`DrainConfig` (drain3 never reads ``drain3.ini`` from the working directory here, and
applies no masking of its own: messages are normalised first by
:func:`loglead_lo2.enhancers.normalize`).

Chosen values:

* ``depth = 8``: drain3 routes a message through ``depth - 2`` tree layers, the first keyed by
  the token count and the others by the first ``depth - 3 = 5`` tokens. For LO2 these are the
  level, logger, method, ``-`` and the first message token, all fixed text after
  normalisation, so messages of different loggers/methods/first words never share a template.
  (drain3's default ``depth = 4`` routes by the level only and merged
  ``ExceptionHandler handleRequest - Exception:`` with ``Oauth2TokenPostHandler handleRequest
  - ApiException``; routing by the first message token keeps the Light-4j status lines of
  different ERR codes apart, since the JSON up to the first space is one token.)
* ``sim_th = 0.5``: within a leaf a message joins a template when at least half of its
  tokens are equal; ``max_children = 100`` (drain3's default) bounds the fan-out when a routing
  token is variable after all.
* ``parametrize_numeric_tokens = False``: tokens with digits (``ERR12014``, ``404``) route
  as themselves; variable numbers are ``<NUM>`` already.

Stability and bounded memory: each :meth:`DrainParser.parse` call takes the distinct
normalised messages of its frame in sorted order. A message the previous call saw keeps its
cluster id (a cache looked up by a 128-bit hash of the message); any other message is first
*matched* against the existing templates (drain3 ``match``: every token equal or a ``<*>``
of the template) and keeps the id of the template that covers it, and only a message no
template covers is *added* (drain3 ``add_log_message``: it joins the most similar template
of its leaf, generalising it, or starts a new one). The cache holds only the messages of the
last call (the loader calls once per run), so the parser's memory is its templates plus one
run's distinct messages, however many runs it has seen, and it costs the same per run after
1 or 1,000 runs. Since a template only ever generalises, a message once given a template is
still covered by it, so dropping it from the cache does not change its id (except in the
rare case where two templates of one leaf both cover it; drain3 then picks the one with
more ``<*>``). Drain itself depends on input order: the ids (and the final template text)
are reproducible for the same data fed in the same order, not across different orders.

Across loads: :meth:`DrainParser.save_state` writes the parser (drain3's clusters and prefix
tree plus the message cache of the last call) to ``lo2_drain_state.parquet`` and
:meth:`DrainParser.from_state` restores it (:mod:`loglead_lo2.enhancers.drain_state`): a load
started from a saved state gives every message the earlier load saw its earlier id (cached
or covered by its template), and new templates new ids.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from loglead_lo2.enhancers._common import HASH_SEEDS, add_columns, distinct_codes, require
from loglead_lo2.enhancers.drain_state import DrainStateInfo
from loglead_lo2.errors import UserError
from loglead_lo2.schema import write_parquet

log = logging.getLogger(__name__)

SOURCE = "e_message_normalized"
OUTPUT = "e_event_drain_id"
FEED_CHUNK = 10_000
"""Messages turned into Python strings at a time when feeding Drain."""
_KEYS = ("__h0", "__h1")
_KNOWN_SCHEMA = {"__h0": pl.UInt64, "__h1": pl.UInt64, "m": pl.String, "cid": pl.Int64}


def _key_exprs(column: str) -> list[pl.Expr]:
    """Two 64-bit hashes (different seeds) that identify a message in the parser's cache.

    A 128-bit key costs 16 bytes per distinct message however long it is, so the cache of a
    parser that spans many batches stays small even when the normalisation leaves ids in
    and most messages are distinct; two different messages sharing both hashes is about as
    likely as ``n**2 / 2**129`` (never, in practice).
    """
    return [pl.col(column).hash(seed=seed).alias(name)
            for seed, name in zip(HASH_SEEDS, _KEYS, strict=True)]


def id_names(cids: pl.Series) -> pl.Series:
    """Cluster ids as ``e_event_drain_id`` values (``"e<id>"``)."""
    return cids.to_frame("cid").select(pl.format("e{}", "cid").alias(OUTPUT)).get_column(OUTPUT)


@dataclass(frozen=True)
class DrainSnapshot:
    """A parser's state as data: drain3's header (JSON), the cached messages, the lineage."""

    header: dict[str, Any]
    messages: pl.DataFrame
    lineage: tuple[str, ...]

    def save(self, path: str | os.PathLike[str]) -> DrainStateInfo:
        from loglead_lo2.enhancers.drain_state import write_state

        return write_state(path, self.header, self.messages, self.lineage)


@dataclass(frozen=True)
class DrainConfig:
    """Drain3 parameters (see the module doc for why these values)."""

    sim_th: float = 0.5
    depth: int = 8
    max_children: int = 100
    max_clusters: int | None = None
    extra_delimiters: tuple[str, ...] = ()
    parametrize_numeric_tokens: bool = False

    def to_drain3(self) -> TemplateMinerConfig:
        cfg = TemplateMinerConfig()  # its constructor sets defaults only; we never call load()
        cfg.drain_sim_th = self.sim_th
        cfg.drain_depth = self.depth
        cfg.drain_max_children = self.max_children
        cfg.drain_max_clusters = self.max_clusters
        cfg.drain_extra_delimiters = list(self.extra_delimiters)
        cfg.parametrize_numeric_tokens = self.parametrize_numeric_tokens
        cfg.masking_instructions = []
        cfg.profiling_enabled = False
        return cfg


class DrainParser:
    """Assign Drain3 template ids (``"e<id>"``) to events; one instance spans all batches."""

    REQUIRES: tuple[str, ...] = (SOURCE,)
    ADDS: tuple[str, ...] = (OUTPUT,)

    def __init__(self, config: DrainConfig | None = None) -> None:
        self.config = config or DrainConfig()
        self._miner = TemplateMiner(persistence_handler=None, config=self.config.to_drain3())
        self._known = pl.DataFrame(schema=_KNOWN_SCHEMA)
        self._counts: dict[int, int] = {}
        self.lineage: tuple[str, ...] = ()
        """Fingerprints of the saved states this parser grew from, oldest first."""
        self.start_state: DrainStateInfo | None = None

    @classmethod
    def from_state(cls, path: str | os.PathLike[str], *,
                   checkpoint: bool = False) -> DrainParser:
        """A parser restored from a state file written by :meth:`save_state` (checked by
        :func:`~loglead_lo2.enhancers.drain_state.read_state`; a bad file is a UserError).

        ``checkpoint``: the state is a resumed load's own intermediate state (a part's), not
        an earlier load's: the parser carries on exactly as the one that saved it (same
        lineage, no ``start_state``)."""
        from loglead_lo2.enhancers.drain_state import read_state, restore_drain

        state = read_state(path)
        config = dict(state.header["config"])
        try:
            config["extra_delimiters"] = tuple(config.get("extra_delimiters") or ())
            parser = cls(DrainConfig(**config))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{path}: not a usable Drain state (config: {exc}).") from exc
        restore_drain(parser._miner.drain, state.header)
        msgs = state.messages.rename({"message": "m"})
        parser._known = msgs.with_columns(*_key_exprs("m")).select(list(_KNOWN_SCHEMA))
        if checkpoint:
            parser.lineage = state.info.lineage
        else:
            parser.lineage = (*state.info.lineage, state.info.sha256)
            parser.start_state = state.info
        return parser

    @property
    def counts(self) -> dict[int, int]:
        """Events given each cluster id by every :meth:`parse` call (a copy)."""
        return dict(self._counts)

    def set_counts(self, counts: Mapping[Any, Any]) -> None:
        """Carry on counting from ``counts`` (a resumed load's counts so far; keys and values
        as JSON gives them back are converted)."""
        self._counts = {int(k): int(v) for k, v in counts.items()}

    def snapshot(self) -> DrainSnapshot:
        """The parser's state as data (small: templates and the cached messages), to be
        written elsewhere, e.g. by a cluster worker (:meth:`DrainSnapshot.save`)."""
        from loglead_lo2.enhancers.drain_state import config_dict, header_of

        return DrainSnapshot(header_of(self._miner.drain, config_dict(self.config)),
                             self._known.select(pl.col("m").alias("message"), "cid"),
                             self.lineage)

    def save_state(self, path: str | os.PathLike[str]) -> DrainStateInfo:
        """Write the parser's whole state (atomically) for :meth:`from_state`."""
        return self.snapshot().save(path)

    @property
    def n_messages(self) -> int:
        """Distinct normalised messages in the cache (those of the last :meth:`parse`)."""
        return self._known.height

    def parse(self, df: pl.DataFrame) -> pl.DataFrame:
        """Add ``e_event_drain_id``; skipped (no counting) when the column exists."""
        if OUTPUT in df.columns:
            return df
        require(df, [SOURCE], "DrainParser.parse")
        codes, distinct = distinct_codes(df.get_column(SOURCE))
        counts = pl.Series(np.bincount(codes.to_numpy(), minlength=len(distinct)))
        cids = self.assign(distinct, counts)
        return add_columns(df, [id_names(cids).gather(codes)])

    def assign(self, distinct: pl.Series, events: pl.Series | None = None) -> pl.Series:
        """Cluster ids (Int64) of ``distinct`` (sorted unique normalised messages), learning
        the new ones; ``events[i]``: how many events carry ``distinct[i]`` (for the template
        counts). The cache becomes these messages."""
        table = (
            distinct.alias("m").to_frame()
            .with_columns(*_key_exprs("m"))
            .join(self._known.select(*_KEYS, "cid"), on=_KEYS, how="left",
                  maintain_order="left")
        )
        new = table.filter(pl.col("cid").is_null()).drop("cid")
        if new.height:
            ids = self._feed(new.get_column("m"))
            fed = new.select(*_KEYS, ids.alias("cid"))
            table = table.join(fed, on=_KEYS, how="left", maintain_order="left").select(
                *_KEYS, "m", pl.coalesce("cid", "cid_right").alias("cid"))
        self._known = table.select(list(_KNOWN_SCHEMA)).rechunk()  # this call's messages only
        cids = table.get_column("cid")
        del table, new
        if events is not None:
            per = pl.DataFrame({"cid": cids, "n": events}).group_by("cid").agg(pl.col("n").sum())
            for cid, n in per.iter_rows():
                self._counts[cid] = self._counts.get(cid, 0) + int(n)
        return cids

    def _feed(self, messages: pl.Series) -> pl.Series:
        """Cluster ids of ``messages`` (sorted, not in the cache), in order: the template that
        covers a message, else the one Drain adds it to."""
        ids: list[int] = []
        miner = self._miner
        for start in range(0, len(messages), FEED_CHUNK):  # bounded Python string copies
            for text in messages.slice(start, FEED_CHUNK).to_list():
                covering = miner.match(text)
                ids.append(covering.cluster_id if covering is not None
                           else miner.add_log_message(text)["cluster_id"])
        return pl.Series("cid", ids, dtype=pl.Int64)

    def template_table(self) -> pl.DataFrame:
        """One row per template: ``e_event_drain_id``, ``template``, ``count`` (events assigned
        by all :meth:`parse` calls), ordered by numeric id."""
        rows = sorted(
            (c.cluster_id, c.get_template()) for c in self._miner.drain.clusters
        )
        return pl.DataFrame(
            {
                OUTPUT: [f"e{cid}" for cid, _ in rows],
                "template": [t for _, t in rows],
                "count": [self._counts.get(cid, 0) for cid, _ in rows],
            },
            schema={OUTPUT: pl.String, "template": pl.String, "count": pl.Int64},
        )

    def save_templates(self, path: str | os.PathLike[str]) -> int:
        """Write :meth:`template_table` to Parquet (atomically); returns rows written."""
        return write_parquet(self.template_table(), path)
