"""Token enhancers: word tokens, character trigrams and lengths.

All token lists are computed once per DISTINCT ``e_message_normalized`` (a few thousand values
even for millions of events) and joined back to the events.

Word rule (:data:`WORD_PATTERN`): a word is a placeholder such as ``<NUM>``, or a run of
letters, digits and ``_`` optionally joined by ``.`` or ``$`` to further such runs. So
``ERR12014``, ``CLIENT_NOT_FOUND``, ``c.n.o.t.h.Oauth2TokenPostHandler``,
``com.networknt.exception.ApiException`` and ``primary.jks`` are single words, while whitespace,
quotes, braces, ``:``, ``,``, ``=``, ``/``, ``-`` and a trailing ``.`` separate words
(``"statusCode":404`` gives ``statusCode``, ``404``; ``/oauth2/token`` gives ``oauth2``,
``token``; ``<init>`` gives ``init``).

Trigrams are LogLead's character 3-grams: every substring of 3 characters at every offset
(``len - 2`` of them, none for messages shorter than 3 characters).
"""

from __future__ import annotations

import logging

import polars as pl

from loglead_lo2.enhancers._common import declares, lists_from_lengths, map_distinct, require

log = logging.getLogger(__name__)

SOURCE = "e_message_normalized"
WORD_PATTERN = r"<[A-Z][A-Z0-9_]*>|[A-Za-z0-9_]+(?:[.$][A-Za-z0-9_]+)*"
TOKEN_COLUMNS: tuple[str, ...] = ("e_words", "e_trigrams")


def word_table(distinct: pl.DataFrame, column: str = SOURCE) -> pl.DataFrame:
    """Add ``e_words``/``e_words_len`` to a frame of distinct messages."""
    return distinct.with_columns(
        pl.col(column).fill_null("").str.extract_all(WORD_PATTERN).alias("e_words")
    ).with_columns(pl.col("e_words").list.len().cast(pl.Int64).alias("e_words_len"))


def trigram_table(distinct: pl.DataFrame, column: str = SOURCE) -> pl.DataFrame:
    """Add ``e_trigrams``/``e_trigrams_len`` to a frame of distinct messages."""
    text = pl.col(column).fill_null("")
    n_grams = (text.str.len_chars().cast(pl.Int64) - 2).clip(lower_bound=0)
    counts = distinct.select(n_grams.alias("e_trigrams_len")).get_column("e_trigrams_len")
    flat = (
        distinct.select(text.alias("t"), pl.int_ranges(0, n_grams).alias("o"))
        .explode("o", empty_as_null=False)
        .select(pl.col("t").str.slice(pl.col("o"), 3))
        .get_column("t")
    )
    grams = lists_from_lengths(flat, counts.to_numpy(), "e_trigrams")
    return distinct.with_columns(grams, counts)


TABLES = {"e_words": word_table, "e_trigrams": trigram_table}
"""Token column -> function adding it (and its ``_len``) to a frame of distinct messages."""


@declares(requires=(SOURCE,), adds=("e_words", "e_words_len"))
def words(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``e_words`` (List[str]) and ``e_words_len`` (Int64); skipped when present."""
    if "e_words" in df.columns and "e_words_len" in df.columns:
        return df
    require(df, [SOURCE], "words")
    return map_distinct(df.drop("e_words", "e_words_len", strict=False), SOURCE, word_table,
                        ["e_words", "e_words_len"])


@declares(requires=(SOURCE,), adds=("e_trigrams", "e_trigrams_len"))
def trigrams(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``e_trigrams`` (List[str]) and ``e_trigrams_len`` (Int64); skipped when present."""
    if "e_trigrams" in df.columns and "e_trigrams_len" in df.columns:
        return df
    require(df, [SOURCE], "trigrams")
    return map_distinct(df.drop("e_trigrams", "e_trigrams_len", strict=False), SOURCE,
                        trigram_table, ["e_trigrams", "e_trigrams_len"])


@declares(requires=("m_message",), adds=("e_chars_len",))
def length(df: pl.DataFrame, column: str = "m_message") -> pl.DataFrame:
    """Add ``e_chars_len`` (Int64 characters of ``column``, as LogLead: the raw message) and
    the ``_len`` partner of every ``e_*`` list column that lacks one. Existing columns are
    left as they are."""
    exprs = []
    if "e_chars_len" not in df.columns:
        require(df, [column], "length")
        exprs.append(pl.col(column).str.len_chars().fill_null(0).cast(pl.Int64).alias("e_chars_len"))
    for name, dtype in df.schema.items():
        if name.startswith("e_") and isinstance(dtype, pl.List) and f"{name}_len" not in df.columns:
            exprs.append(pl.col(name).list.len().fill_null(0).cast(pl.Int64).alias(f"{name}_len"))
    return df.with_columns(exprs) if exprs else df
