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

import numpy as np
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
    flat, counts = trigram_values(distinct.get_column(column))
    grams = lists_from_lengths(flat, counts, "e_trigrams")
    return distinct.with_columns(grams, pl.Series("e_trigrams_len", counts, dtype=pl.Int64))


TRIGRAM_CHUNK_BYTES = 1 << 22
"""Text bytes handled per step by :func:`trigram_keys` (bounds its temporary arrays)."""
_CP_BITS = 21  # a Unicode code point fits in 21 bits, so three of them fit in a uint64
_CP_MASK = (1 << _CP_BITS) - 1


def trigram_values(text: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """All character trigrams of ``text`` as one flat String Series, plus the count per row.

    Row ``i`` (null = ``""``) gives its ``max(len_chars - 2, 0)`` trigrams in offset order.
    Linear in the total text size whatever the line lengths (see :func:`trigram_keys`).
    """
    keys, counts = trigram_keys(text)
    return decode_trigrams(keys), counts


def trigram_keys(text: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Every character trigram of ``text`` as a uint64 key, plus the count per row.

    A key packs the three code points (21 bits each, first one highest), so distinct
    trigrams have distinct keys and keys sort exactly like the trigram strings do (UTF-8
    byte order is code point order). :func:`decode_trigrams` turns keys back into strings.
    The UTF-8 bytes are read once with numpy, in steps of about
    :data:`TRIGRAM_CHUNK_BYTES`: the cost is linear in the total text size, so one 1 MB line
    costs what 1 MB of short lines does (``str.slice`` at a character offset is O(offset),
    which made the former slicing quadratic in the line length).
    """
    text = text.fill_null("")
    counts = np.zeros(len(text), dtype=np.int64)
    ends = np.cumsum(text.str.len_bytes().to_numpy().astype(np.int64))
    parts = []
    row = 0
    while row < len(text):
        base = int(ends[row - 1]) if row else 0
        stop = max(int(np.searchsorted(ends, base + TRIGRAM_CHUNK_BYTES, side="right")), row + 1)
        keys, counts[row:stop] = _chunk_keys(text.slice(row, stop - row))
        parts.append(keys)
        row = stop
    keys = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return keys, counts


def _chunk_keys(text: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa

    arr = text.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string: one buffer
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)
    offsets = offsets[arr.offset : arr.offset + len(arr) + 1]
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = np.zeros(0, dtype=np.uint8)
    if hi > lo:
        data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[lo:hi]
    offsets = offsets - lo
    if not len(data) or int(data.max()) < 0x80:  # ASCII: one character per byte
        bounds, cps = offsets, data.astype(np.uint64)
    else:
        starts = np.flatnonzero((data & 0xC0) != 0x80)  # byte position of every character
        bounds = np.searchsorted(starts, offsets)  # first character of each row
        cps = _code_points(data, starts)
    n_chars = np.diff(bounds)
    counts = np.maximum(n_chars - 2, 0)
    if int(counts.sum()) == 0:
        return np.zeros(0, dtype=np.uint64), counts
    # a character starts a trigram unless it is one of the last two of its row
    valid = np.ones(len(cps), dtype=bool)
    valid[bounds[1:][n_chars >= 1] - 1] = False
    valid[bounds[1:][n_chars >= 2] - 2] = False
    keys = (cps[:-2] << np.uint64(2 * _CP_BITS)) | (cps[1:-1] << np.uint64(_CP_BITS)) | cps[2:]
    return keys[valid[:-2]], counts


def _code_points(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """uint64 code point of the UTF-8 character starting at each of ``starts``."""
    lead = data[starts].astype(np.uint64)
    padded = np.concatenate([data, np.zeros(3, dtype=np.uint8)])
    tail = [padded[starts + j].astype(np.uint64) & np.uint64(0x3F) for j in (1, 2, 3)]
    six = np.uint64(6)
    return np.select(
        [lead < 0x80, lead < 0xE0, lead < 0xF0],
        [lead,
         ((lead & np.uint64(0x1F)) << six) | tail[0],
         ((lead & np.uint64(0x0F)) << np.uint64(12)) | (tail[0] << six) | tail[1]],
        ((lead & np.uint64(0x07)) << np.uint64(18)) | (tail[0] << np.uint64(12))
        | (tail[1] << six) | tail[2],
    )


DECODE_CHUNK = 1 << 20
"""Keys decoded per step by :func:`decode_trigrams` (keeps its temporaries in cache)."""
_NON_ASCII = ~np.uint64((0x7F << 42) | (0x7F << 21) | 0x7F)


def decode_trigrams(keys: np.ndarray, name: str = "e_trigrams") -> pl.Series:
    """String Series of the trigrams packed in ``keys`` (see :func:`trigram_keys`).

    Each trigram (3 to 12 UTF-8 bytes) is written straight into an inline Arrow string view
    (16 bytes: length, then the bytes), the layout polars keeps strings in, so nothing is
    sliced or copied per value. Runs of ASCII-only keys take a shortcut.
    """
    import pyarrow as pa

    keys = np.asarray(keys, dtype=np.uint64)
    m = len(keys)
    if m == 0:
        return pl.Series(name, [], dtype=pl.String)
    views = np.zeros((m, 16), dtype=np.uint8)
    words = views.view("<u8").reshape(m, 2)
    a = np.empty(min(m, DECODE_CHUNK), dtype=np.uint64)
    b = np.empty_like(a)
    for i in range(0, m, DECODE_CHUNK):
        k = keys[i : i + DECODE_CHUNK]
        x, y = a[: len(k)], b[: len(k)]
        np.bitwise_and(k, _NON_ASCII, out=x)
        if x.any():
            _decode_utf8(k, views[i : i + len(k)])
            continue
        # ASCII: little-endian word 0 = length 3 | byte0 << 32 | byte1 << 40 | byte2 << 48
        np.right_shift(k, np.uint64(42), out=x)
        np.left_shift(x, np.uint64(32), out=x)
        np.right_shift(k, np.uint64(21), out=y)
        np.bitwise_and(y, np.uint64(0x7F), out=y)
        np.left_shift(y, np.uint64(40), out=y)
        np.bitwise_or(x, y, out=x)
        np.bitwise_and(k, np.uint64(0x7F), out=y)
        np.left_shift(y, np.uint64(48), out=y)
        np.bitwise_or(x, y, out=x)
        np.bitwise_or(x, np.uint64(3), out=x)
        words[i : i + len(k), 0] = x
    array = pa.Array.from_buffers(pa.string_view(), m, [None, pa.py_buffer(views)])
    return pl.Series(name, array)


def _decode_utf8(keys: np.ndarray, views: np.ndarray) -> None:
    """Write the UTF-8 encoding of the trigram ``keys`` into ``views`` (``(m, 16)`` zeros)."""
    m = len(keys)
    cps = [(keys >> np.uint64(shift)) & np.uint64(_CP_MASK) for shift in (42, 21, 0)]
    sizes = [1 + (c >= 0x80).astype(np.int64) + (c >= 0x800) + (c >= 0x10000) for c in cps]
    views.view("<i4").reshape(m, 4)[:, 0] = sizes[0] + sizes[1] + sizes[2]
    flat = views.reshape(-1)
    at = np.arange(m, dtype=np.int64) * 16 + 4
    for c, n in zip(cps, sizes, strict=True):
        lead = np.select([n == 1, n == 2, n == 3],
                         [c, 0xC0 | (c >> np.uint64(6)), 0xE0 | (c >> np.uint64(12))],
                         0xF0 | (c >> np.uint64(18)))
        flat[at] = lead.astype(np.uint8)
        for j in (1, 2, 3):
            rows = np.flatnonzero(n > j)
            shift = (6 * (n[rows] - 1 - j)).astype(np.uint64)
            byte = np.uint64(0x80) | ((c[rows] >> shift) & np.uint64(0x3F))
            flat[at[rows] + j] = byte.astype(np.uint8)
        at += n


TABLES = {"e_words": word_table, "e_trigrams": trigram_table}
"""Token column -> function adding it (and its ``_len``) to a frame of distinct messages."""


def word_values(text: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """All words of ``text`` as one flat String Series, plus the count per row (null = 0)."""
    lists = text.fill_null("").str.extract_all(WORD_PATTERN)
    counts = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    return lists.explode(empty_as_null=False).drop_nulls().rename("e_words"), counts


def _trigram_key_series(text: pl.Series) -> tuple[pl.Series, np.ndarray]:
    keys, counts = trigram_keys(text)
    return pl.Series("e_trigrams", keys, dtype=pl.UInt64), counts


TOKEN_VALUES = {"e_words": word_values, "e_trigrams": _trigram_key_series}
"""Token column -> function giving (flat tokens, tokens per row) of a String Series. Tokens
are strings, or (trigrams) uint64 keys that sort like the strings: see :data:`TOKEN_DECODE`."""

TOKEN_DTYPES = {"e_words": pl.String, "e_trigrams": pl.UInt64}
"""Token column -> dtype of the tokens :data:`TOKEN_VALUES` gives."""

TOKEN_DECODE = {"e_trigrams": decode_trigrams}
"""Token column -> function turning the keys of :data:`TOKEN_VALUES` back into strings."""


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
    # Series, not expressions: an expression over a frame whose columns are chunked
    # differently (loader output plus columns added per distinct message) makes polars
    # rechunk every column, a full copy of the events while the caller still holds them.
    out = []
    if "e_chars_len" not in df.columns:
        require(df, [column], "length")
        chars = df.get_column(column).str.len_chars().fill_null(0).cast(pl.Int64)
        out.append(chars.alias("e_chars_len"))
    for name, dtype in df.schema.items():
        if name.startswith("e_") and isinstance(dtype, pl.List) and f"{name}_len" not in df.columns:
            lens = df.get_column(name).list.len().fill_null(0).cast(pl.Int64)
            out.append(lens.alias(f"{name}_len"))
    return df.with_columns(out) if out else df
