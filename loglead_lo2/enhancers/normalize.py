"""Mask the variable parts of LO2 log messages, keep what identifies the event.

``m_message`` is ``LEVEL logger method - message`` (plus stack-trace lines after ``\\n``). The
header up to the first `` - `` is kept verbatim (only runs of spaces are collapsed, so the
padded ``INFO `` level reads ``INFO``); the rules below are applied, in this order, to the rest:

====  ===========  ==========================================================================
 #    placeholder  what it replaces
====  ===========  ==========================================================================
 1    ``<B64>``    the credentials of ``Basic <base64>`` (kept: the word ``Basic``)
 2    ``<JWT>``    JSON web tokens ``eyJ...``
 3    ``<URL>``    ``scheme://...`` up to whitespace, quote, comma or closing bracket
 4    ``<EMAIL>``  e-mail addresses
 5    ``<UUID>``   8-4-4-4-12 hexadecimal UUIDs, and UUIDs cut anywhere after their first
                   group (``str(uuid4())[:32]`` = ``8-4-4-4-8``, ``1c9a93c6-75``)
 6    ``<TIME>``   ISO dates/times, ``HH:MM:SS(.mmm)``, ``Nov 20, 2024``
 7    ``<IP>``     dotted IPv4 addresses
 8    ``<ID>``     22-character base64url ids (codes, correlation ids) that contain a lower-case
                   letter or a digit (so the enum ``CODE_VERIFIER_TOO_LONG`` survives), and
                   base64url tokens of 40 or more characters with a lower-case letter (PKCE
                   verifiers and challenges);
                   not when glued to a ``.`` (class names such as ``Oauth2TokenPostHandler``)
 9    ``<B64>``    other padded base64 strings of 20+ characters (``...=``)
10    ``<NUM>``    line numbers of stack frames ``(Foo.java:123)`` and the counts of
                   ``... 12 common frames omitted`` / ``... 12 more``
11    ``<HEX>``    ``0x..``, ``@1b6d3586`` object hashes, 8-character and 12+-character
                   hexadecimal words (``Load:66c2c2bd``), and shorter lower-case hex words that
                   mix digits and letters (``4e3a``: pieces of ids; not glued to a ``.``);
                   digit-only words of 9+ digits are ``<NUM>``
12    ``<NUM>``    other stand-alone numbers and versions, EXCEPT 3-digit values 100-599 (HTTP
                   statuses such as ``"statusCode":404`` and ``404`` stay); digits glued to
                   letters stay, so ``ERR12014`` and ``oauth2`` survive intact
====  ===========  ==========================================================================

Only the first :data:`~loglead_lo2.limits.MAX_MESSAGE_CHARS` characters of a message are
normalised (so Drain and the token bags see at most that, a few times over for placeholders
longer than what they replace): the regex passes cost about a second per MB of text, and one
multi-megabyte line would otherwise dominate a load. Longer messages are logged.

Kept as they are: logger and method names, exception class names
(``com.networknt.exception.ApiException``), enum words (``CLIENT_NOT_FOUND``), ERR codes, HTTP
statuses, stack-trace lines (with their line numbers masked).
"""

from __future__ import annotations

import logging
import os

import polars as pl

from loglead_lo2.enhancers._common import (
    add_columns,
    declares,
    distinct_codes,
    first_seen_codes,
    require,
)
from loglead_lo2.limits import MAX_MESSAGE_CHARS

log = logging.getLogger(__name__)

OUTPUT = "e_message_normalized"

_B64URL = r"A-Za-z0-9_\-"


def _id22() -> str:
    """22 base64url characters of which at least one is lower-case or a digit."""
    branches = [f"[A-Z_\\-]{{{k}}}[a-z0-9][{_B64URL}]{{{21 - k}}}" for k in range(22)]
    return "(?:" + "|".join(branches) + ")"


def _id_long(min_len: int = 40) -> str:
    """``min_len`` or more base64url characters of which at least one is lower-case."""
    upper = r"[A-Z0-9_\-]"
    branches = [
        f"{upper}{{{k}}}[a-z][{_B64URL}]{{{min_len - 1 - k},}}" for k in range(min_len - 1)
    ]
    branches.append(f"{upper}{{{min_len - 1},}}[a-z][{_B64URL}]*")
    return "(?:" + "|".join(branches) + ")"


# A token boundary that is not a '.', so dotted class names and file names are left alone.
_LEFT = rf"(^|[^{_B64URL}.])"
_RIGHT = rf"($|[^{_B64URL}.]|\.$|\.[^{_B64URL}])"
_HEXC = "[0-9a-fA-F]"
# A UUID cut anywhere after its first group (``str(uuid4())[:k]``, k >= 9, e.g. the harness's
# 32-character names ``8-4-4-4-8``): the first group, then up to four dash-separated groups
# that may each be cut short, ending at a character that cannot continue an id.
_UUID_CUT = (
    rf"\b{_HEXC}{{8}}-(?:{_HEXC}{{1,4}}(?:-(?:{_HEXC}{{1,4}}(?:-(?:{_HEXC}{{1,4}}"
    rf"(?:-{_HEXC}{{0,12}})?)?)?)?)?)?($|[^{_B64URL}])"
)
_HEX_PIECE = _LEFT + r"[0-9a-f]*(?:[0-9][a-f]|[a-f][0-9])[0-9a-f]*" + _RIGHT
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"

RULES: tuple[tuple[str, str, str], ...] = (
    ("basic", r"\b(Basic)\s+[A-Za-z0-9+/]+={0,2}", "${1} <B64>"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", "<JWT>"),
    ("url", r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>,;)\]}]+", "<URL>"),
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", "<EMAIL>"),
    ("uuid", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
     "<UUID>"),
    ("uuid_cut", _UUID_CUT, "<UUID>${1}"),
    ("iso_time",
     r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b",
     "<TIME>"),
    ("clock", r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?: ?[AP]M)?\b", "<TIME>"),
    ("date", rf"\b(?:{_MONTHS}) \d{{1,2}}, \d{{4}}\b", "<TIME>"),
    ("ip", r"\b\d{1,3}(?:\.\d{1,3}){3}\b", "<IP>"),
    ("id22", _LEFT + _id22() + _RIGHT, "${1}<ID>${2}"),
    ("id22_again", _LEFT + _id22() + _RIGHT, "${1}<ID>${2}"),  # neighbours sharing a delimiter
    ("id_long", _LEFT + _id_long() + _RIGHT, "${1}<ID>${2}"),
    ("b64", r"[A-Za-z0-9+/]{20,}={1,2}", "<B64>"),
    ("java_line", r"(\.(?:java|kt|scala|groovy)):\d+\)", "${1}:<NUM>)"),
    ("frames", r"\.\.\. \d+ (common frames omitted|more)\b", "... <NUM> ${1}"),
    ("long_int", r"\b\d{9,}\b", "<NUM>"),
    ("object_hash", r"@[0-9a-fA-F]{1,8}\b", "@<HEX>"),
    ("hex", r"\b(?:0[xX][0-9a-fA-F]+|[0-9a-fA-F]{8}|[0-9a-fA-F]{12,})\b", "<HEX>"),
    ("hex_piece", _HEX_PIECE, "${1}<HEX>${2}"),
    ("hex_piece_again", _HEX_PIECE, "${1}<HEX>${2}"),  # neighbours sharing a delimiter
    ("num", r"\b(?:\d+(?:\.\d+)+|\d{1,2}|[06-9]\d\d|\d{4,})\b", "<NUM>"),
)
"""(name, regex, replacement) applied in order to the message body (Rust regex syntax)."""

_HEADER = r"^(\S+ +\S+ +\S+ +- )"


def rules_fingerprint() -> str:
    """sha256 of the masking rules (names, patterns, replacements, header rule): two
    normalisers with the same fingerprint turn every message into the same words, so a model
    trained on one scores the other's rows alike. Model metadata records it."""
    import hashlib

    text = "\n".join([_HEADER, *("\t".join(rule) for rule in RULES),
                      f"max_chars\t{MAX_MESSAGE_CHARS}"])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize_expr(column: str = "m_message") -> pl.Expr:
    """Polars expression that normalises ``column`` (header kept, body masked; only its first
    :data:`~loglead_lo2.limits.MAX_MESSAGE_CHARS` characters)."""
    text = pl.col(column).fill_null("").str.slice(0, MAX_MESSAGE_CHARS)
    header = text.str.extract(_HEADER, 1).fill_null("")
    body = _masked(text.str.slice(header.str.len_chars()), RULES)
    return pl.concat_str([header.str.replace_all(" {2,}", " "), body])


def _masked(body: pl.Expr, rules: tuple[tuple[str, str, str], ...]) -> pl.Expr:
    """``rules`` applied in order to ``body``."""
    for _name, pattern, replacement in rules:
        body = body.str.replace_all(pattern, replacement)
    return body


STAGES: tuple[int, ...] = (6, 19)
"""Rule positions after which the masked bodies are deduplicated again (after the UUIDs and
after the hex words), so each later rule scans every distinct *partly masked* body once: on
a generated full-scale run, 301 k distinct bodies become 153 k after the UUID rules and 212
after the hex rule, and the twenty-two passes cost about a third of scanning every distinct
raw message (the result is the same: the rules are applied in the same order)."""
CHUNK = 1 << 15
"""Bodies per polars query; ``pl.collect_all`` runs a few of them at once on the thread pool
(one string kernel uses one core), so the regex passes use every core."""


def _apply(values: pl.Series, rules: tuple[tuple[str, str, str], ...]) -> pl.Series:
    """``rules`` applied in order to every value, in parallel chunks (order kept)."""
    if not rules or not len(values):
        return values

    def query(start: int) -> pl.LazyFrame:
        return values.slice(start, CHUNK).to_frame("b").lazy().select(_masked(pl.col("b"), rules))

    queries = [query(start) for start in range(0, len(values), CHUNK)]
    group = max(2, min(os.cpu_count() or 1, 8))
    parts: list[pl.DataFrame] = []
    for i in range(0, len(queries), group):  # a few chunks' temporaries at a time
        parts += pl.collect_all(queries[i : i + group])
    return pl.concat(parts).get_column("b").alias(values.name)


def mask_bodies(bodies: pl.Series) -> pl.Series:
    """:data:`RULES` applied to message bodies, each distinct body once per stage."""
    codes, distinct = first_seen_codes(bodies)
    start = 0
    for end in (*STAGES, len(RULES)):
        distinct = _apply(distinct, RULES[start:end])
        start = end
        if end < len(RULES):
            again, distinct = first_seen_codes(distinct)
            codes = again.gather(codes)
    return distinct.gather(codes)


@declares(requires=("m_message",), adds=(OUTPUT,))
def normalize(df: pl.DataFrame, column: str = "m_message") -> pl.DataFrame:
    """Add ``e_message_normalized``: ``column`` with variable parts masked (see module doc).

    Each distinct message is split once into header and body; the rules then run over
    distinct bodies, deduplicated again between :data:`STAGES`. Same result as
    :func:`normalize_expr`. Skipped when the output column exists.
    """
    if OUTPUT in df.columns:
        return df
    return normalize_codes(df, column)[0]


def normalize_codes(df: pl.DataFrame, column: str = "m_message",
                    ) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
    """:func:`normalize`, also returning ``(codes, messages)``: the sorted distinct normalised
    messages and each row's position among them, found on the distinct raw messages (not
    the rows), for the steps that work per distinct message (Drain, token bags)."""
    require(df, [column], "normalize")
    codes, distinct = first_seen_codes(df.get_column(column))
    long = int((distinct.str.len_bytes() > MAX_MESSAGE_CHARS).sum())
    if long:
        log.warning("%d distinct message(s) longer than %d bytes: only their first %d "
                    "characters are normalised and tokenised", long, MAX_MESSAGE_CHARS,
                    MAX_MESSAGE_CHARS)
    text = pl.col(column).str.slice(0, MAX_MESSAGE_CHARS)
    header = text.str.extract(_HEADER, 1).fill_null("")
    parts = distinct.to_frame(column).select(
        header.str.replace_all(" {2,}", " ").alias("h"),
        text.str.slice(header.str.len_chars()).alias("b"))
    del distinct
    parts = parts.with_columns(mask_bodies(parts.get_column("b")))
    table = parts.select(pl.concat_str(["h", "b"]).alias(OUTPUT)).get_column(OUTPUT)
    del parts
    again, messages = distinct_codes(table)
    rows = again.gather(codes)
    return add_columns(df, [messages.gather(rows).alias(OUTPUT)]), rows, messages
