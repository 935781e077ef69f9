"""Event level: all event enhancers in one call."""

from __future__ import annotations

import logging

import polars as pl

from loglead_lo2.enhancers.drain import DrainParser
from loglead_lo2.enhancers.normalize import normalize
from loglead_lo2.enhancers.tokens import length, trigrams, words

log = logging.getLogger(__name__)

REQUIRES: tuple[str, ...] = ("m_message",)
ADDS: tuple[str, ...] = (
    "e_message_normalized", "e_words", "e_words_len", "e_trigrams", "e_trigrams_len",
    "e_event_drain_id", "e_chars_len",
)


def enhance_events(
    df: pl.DataFrame, drain: DrainParser | None = None, *, tokens: bool = True
) -> pl.DataFrame:
    """Run normalize, words, trigrams, Drain and length on an events frame.

    ``drain`` should be one parser shared by every batch of a data set (ids are per parser);
    ``None`` uses a fresh parser, so the ids are only comparable within ``df``. With
    ``tokens=False`` the per-event ``e_words``/``e_trigrams`` lists are skipped (for the
    events Parquet file; sequence lists are built from distinct messages instead). Each step is
    skipped when its columns exist, so the call is idempotent.
    """
    out = normalize(df)
    if tokens:
        out = trigrams(words(out))
    out = (drain if drain is not None else DrainParser()).parse(out)
    return length(out)
