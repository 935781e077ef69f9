"""Streaming enhancement: batches of events -> one enhanced sequences Parquet file.

Each batch (the events of some runs) is enhanced without per-event token lists, aggregated
to sequences (token bags built from distinct messages) and appended through
:class:`loglead_lo2.schema.ParquetStreamWriter`, so memory is bounded by one batch: a batch
is released before the next one is read, and its raw ``m_message`` is dropped before the
aggregation unless the events file is written. One
:class:`DrainParser` spans all batches, so Drain ids agree across them; its template table is
written beside the output as ``lo2_drain_templates.parquet``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from loglead_lo2.artifacts import TEMPLATES_FILE
from loglead_lo2.enhancers.drain import DrainParser
from loglead_lo2.enhancers.events import enhance_events
from loglead_lo2.enhancers.sequences import aggregate_sequences
from loglead_lo2.enhancers.tokens import TOKEN_COLUMNS
from loglead_lo2.errors import UserError
from loglead_lo2.schema import ParquetStreamWriter

log = logging.getLogger(__name__)


Progress = Callable[[int, int, int], None]
"""``progress(batches_done, events_so_far, sequences_so_far)``, called after each batch."""


@dataclass
class EnhanceSummary:
    """What :func:`enhance_in_batches` wrote and how long each stage took (seconds)."""

    sequences_path: Path
    templates_path: Path
    events_path: Path | None = None
    rows: int = 0
    events: int = 0
    batches: int = 0
    templates: int = 0
    seconds: dict[str, float] = field(
        default_factory=lambda: {"enhance": 0.0, "aggregate": 0.0, "write": 0.0, "total": 0.0}
    )


def enhance_in_batches(
    batches: Iterable[pl.DataFrame],
    out_path: str | Path,
    *,
    drain: DrainParser,
    events_out: str | Path | None = None,
    progress: Progress | None = None,
) -> EnhanceSummary:
    """Enhance and aggregate each batch, appending to ``out_path`` (kind
    ``sequences_enhanced``) and, if given, the token-less events to ``events_out`` (kind
    ``events``). Files appear atomically only when all batches succeeded. Empty batches are
    skipped; no events at all is a :class:`UserError`.
    """
    start = time.perf_counter()
    out_path = Path(out_path)
    summary = EnhanceSummary(
        sequences_path=out_path,
        templates_path=out_path.parent / TEMPLATES_FILE,
        events_path=Path(events_out) if events_out is not None else None,
    )
    writers = [ParquetStreamWriter(out_path, kind="sequences_enhanced")]
    if summary.events_path is not None:
        writers.append(ParquetStreamWriter(summary.events_path, kind="events"))
    try:
        for batch in batches:
            if batch.height == 0:
                continue
            t0 = time.perf_counter()
            events = enhance_events(batch, drain, tokens=False)
            del batch  # not kept alive while the next batch is read
            if len(writers) == 1:  # only the events file needs the raw text
                events = events.drop("m_message", strict=False)
            t1 = time.perf_counter()
            sequences = aggregate_sequences(events, tokens=TOKEN_COLUMNS)
            t2 = time.perf_counter()
            writers[0].write(sequences)
            if len(writers) > 1:
                writers[1].write(events)
            t3 = time.perf_counter()
            summary.seconds["enhance"] += t1 - t0
            summary.seconds["aggregate"] += t2 - t1
            summary.seconds["write"] += t3 - t2
            summary.batches += 1
            summary.events += events.height
            summary.rows += sequences.height
            log.info("batch %d: %d events -> %d sequences (%.1f s)", summary.batches,
                     events.height, sequences.height, t3 - t0)
            del events, sequences
            if progress is not None:
                progress(summary.batches, summary.events, summary.rows)
        if summary.batches == 0:
            raise UserError(f"{out_path}: no events to enhance (every batch was empty).")
        for writer in writers:
            writer.close()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    summary.templates = drain.save_templates(summary.templates_path)
    summary.seconds["total"] = time.perf_counter() - start
    return summary
