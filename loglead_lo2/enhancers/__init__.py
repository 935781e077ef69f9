"""Enhancers: pure ``DataFrame -> DataFrame`` steps that add ``e_*`` columns.

Event level (each declares ``REQUIRES``/``ADDS``, raises ``ValueError`` naming a missing
column and is skipped when its output exists):

* :func:`normalize` -> ``e_message_normalized`` (variable parts masked, ERR codes kept)
* :func:`words` -> ``e_words``, ``e_words_len``; :func:`trigrams` -> ``e_trigrams``,
  ``e_trigrams_len``
* :class:`DrainParser` ``.parse`` -> ``e_event_drain_id``
* :func:`length` -> ``e_chars_len`` and missing ``_len`` partners
* :func:`enhance_events` runs them all.

Sequence level: :func:`aggregate_sequences`. Streaming: :func:`enhance_in_batches`.
See ``docs/enhancers.md``.
"""

from __future__ import annotations

from loglead_lo2.enhancers.drain import DrainConfig, DrainParser
from loglead_lo2.enhancers.events import enhance_events
from loglead_lo2.enhancers.normalize import normalize
from loglead_lo2.enhancers.pipeline import TEMPLATES_FILE, EnhanceSummary, enhance_in_batches
from loglead_lo2.enhancers.sequences import aggregate_sequences
from loglead_lo2.enhancers.tokens import length, trigrams, words

__all__ = [
    "TEMPLATES_FILE",
    "DrainConfig",
    "DrainParser",
    "EnhanceSummary",
    "aggregate_sequences",
    "enhance_events",
    "enhance_in_batches",
    "length",
    "normalize",
    "trigrams",
    "words",
]
