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

Stability: each distinct normalised message is fed to Drain once, in sorted order per
:meth:`DrainParser.parse` call, and its cluster id is cached, so a message keeps its id for the
life of the parser, and one parser shared across batches gives every batch the same ids.
Drain itself depends on input order: the ids (and the final template text) are reproducible
for the same data fed in the same batch layout, not across different batchings.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import polars as pl
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from loglead_lo2.enhancers._common import require
from loglead_lo2.schema import write_parquet

log = logging.getLogger(__name__)

SOURCE = "e_message_normalized"
OUTPUT = "e_event_drain_id"


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
        self._ids: dict[str, int] = {}
        self._counts: dict[int, int] = {}

    @property
    def n_messages(self) -> int:
        """Distinct normalised messages seen so far."""
        return len(self._ids)

    def parse(self, df: pl.DataFrame) -> pl.DataFrame:
        """Add ``e_event_drain_id``; skipped (no counting) when the column exists."""
        if OUTPUT in df.columns:
            return df
        require(df, [SOURCE], "DrainParser.parse")
        msg = pl.col(SOURCE).fill_null("")
        per_message = df.group_by(msg.alias("m")).agg(pl.len().alias("n")).sort("m")
        new = per_message.filter(~pl.col("m").is_in(list(self._ids))).get_column("m")
        for text in new.to_list():  # distinct messages only, sorted: deterministic
            self._ids[text] = self._miner.add_log_message(text)["cluster_id"]
        ids = per_message.get_column("m").replace_strict(self._ids, return_dtype=pl.Int64)
        table = per_message.with_columns(ids.alias("cid"))
        for cid, n in table.group_by("cid").agg(pl.col("n").sum()).iter_rows():
            self._counts[cid] = self._counts.get(cid, 0) + n
        mapping = table.select(
            pl.col("m"), pl.format("e{}", pl.col("cid")).alias(OUTPUT)
        )
        out = (
            df.select(msg.alias("m"))
            .join(mapping, on="m", how="left", maintain_order="left")
            .get_column(OUTPUT)
        )
        return df.with_columns(out)

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
