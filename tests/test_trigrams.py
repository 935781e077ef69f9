"""Character trigrams (loglead_lo2.enhancers.tokens.trigram_values / trigram_table) against a
plain-Python reference on inputs that trip byte/char confusions."""

from __future__ import annotations

import random

import polars as pl
import pytest

from loglead_lo2.enhancers import tokens
from loglead_lo2.enhancers.tokens import trigram_table, trigram_values

TRICKY = [
    "", "a", "ab", "abc", "abcd", None, "ÄÖ", "ÄÖÜ", "aÄbÖc", "\ufffd\ufffd\ufffd\ufffd",
    "x\ny", "\t\t\n\n", "a\tb\nc", "日本語のログ", "emoji 😀 here 😀😀", "e\u0301te\u0301",
    "\x00ab\x00", "12 chars abc", "  ", "€€", "€€€", "a😀", "😀😀😀", "ERR12014 Ä\n\tat x",
]


def reference(text: str | None) -> list[str]:
    text = text or ""
    return [text[i : i + 3] for i in range(len(text) - 2)]


def check(values: list[str | None]) -> None:
    flat, counts = trigram_values(pl.Series(values, dtype=pl.String))
    expected = [reference(v) for v in values]
    assert counts.tolist() == [len(e) for e in expected]
    assert flat.to_list() == [g for e in expected for g in e]
    table = trigram_table(pl.DataFrame({"m": values}, schema={"m": pl.String}), "m")
    assert table["e_trigrams"].to_list() == expected
    assert table["e_trigrams_len"].to_list() == [len(e) for e in expected]
    assert table["e_trigrams_len"].dtype == pl.Int64


def test_tricky_inputs_match_reference() -> None:
    check(TRICKY)


def test_ascii_only_matches_reference() -> None:
    check(["abc", "x\ny", "a\tbc d", "", "ab", "0123456789" * 5])


def test_keys_sort_like_strings() -> None:
    rng = random.Random(3)
    alphabet = "aZ \t\x00\x7f\u0080\u00ff\u0800\uffff\U00010000\U0010ffff\ufffd"
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(3, 12)))
              for _ in range(300)]
    keys, _ = tokens.trigram_keys(pl.Series(values))
    grams = [g for v in values for g in reference(v)]
    assert tokens.decode_trigrams(keys).to_list() == grams
    by_key = [grams[i] for i in sorted(range(len(grams)), key=lambda i: int(keys[i]))]
    assert by_key == sorted(grams)
    assert len(set(keys.tolist())) == len(set(grams))


def test_empty_and_all_short() -> None:
    check([])
    check(["", None, "a", "ab"])


def test_random_unicode_matches_reference() -> None:
    rng = random.Random(7)
    alphabet = "ab \t\n\u00c4\u00e9\u20ac\ufffd\U0001f600\u65e5\x00"
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
              for _ in range(500)]
    check(values)


def test_rows_split_across_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are read, and keys decoded, in bounded steps; tiny steps must give the same
    result, including a row longer than one step."""
    monkeypatch.setattr(tokens, "TRIGRAM_CHUNK_BYTES", 7)
    monkeypatch.setattr(tokens, "DECODE_CHUNK", 5)  # ASCII-only and mixed runs of keys
    check(TRICKY + ["x" * 50 + "Ä" * 20, "", "abc"])


def test_long_line() -> None:
    line = ("0123456789abcdefÄ€😀" * 7000)[:100_003]
    flat, counts = trigram_values(pl.Series([line, "xyz"]))
    assert counts.tolist() == [len(line) - 2, 1]
    assert flat[0] == line[:3] and flat[len(line) - 3] == line[-3:] and flat[-1] == "xyz"
    assert flat.slice(50_000, 5).to_list() == reference(line)[50_000:50_005]
