"""The line reader (``loglead_lo2/loader/lines.py``): string views into the files' bytes give
exactly the lines of a plain decode-and-split reading, for any bytes."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loglead_lo2.loader import lines as L
from loglead_lo2.schema import write_parquet

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def reference(data: bytes) -> tuple[list[str], bool, bool, bool]:
    """(lines, invalid UTF-8, lone CR, blank) the slow, obvious way."""
    try:
        text = data.decode("utf-8")
        invalid = False
    except UnicodeDecodeError:
        text, invalid = data.decode("utf-8", errors="replace"), True
    text = text.replace("\r\n", "\n")
    lone = "\r" in text
    text = text.replace("\r", "\n")
    pieces = text.split("\n")
    if pieces[-1] == "":
        pieces.pop()
    return pieces, invalid, lone, not text.strip()


PIECE = st.one_of(
    st.sampled_from(["", " ", "\x1c", "\u00a0", "caf\u00e9", "12345678901", "123456789012",
                     "1234567890123", "16:29:41.000 [main] INFO  a.b.C m - up", "\t... 2 more"]),
    st.text(max_size=30),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)


@st.composite
def file_bytes(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    pieces = draw(st.lists(PIECE, max_size=15))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(pieces) + (newline if draw(st.booleans()) else "")
    data = text.encode("utf-8")
    if draw(st.booleans()):  # a stray invalid byte
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff" + data[at:]
    return data


@SETTINGS
@given(files=st.lists(file_bytes(), min_size=1, max_size=4),
       span=st.sampled_from([L.BUFFER_SPAN, 7, 64]), scan=st.sampled_from([L.SCAN_BYTES, 5]))
def test_lines_match_a_plain_split(files: list[bytes], span: int, scan: int, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # a small span exercises files addressed through several data buffers, a small scan
    # line breaks found in several pieces of a file
    monkeypatch.setattr(L, "BUFFER_SPAN", span)
    monkeypatch.setattr(L, "SCAN_BYTES", scan)
    paths = []
    for i, data in enumerate(files):
        path = tmp_path / f"f{i}.log"
        path.write_bytes(data)
        paths.append(str(path))
    got = L.read_lines(paths)
    want = [reference(data) for data in files]
    expect_rows = [(i, n, line) for i, (lines, *_) in enumerate(want)
                   for n, line in enumerate(lines, start=1)]
    assert got.frame.schema == pl.Schema({"file_idx": pl.UInt32, "line": pl.String,
                                          "line_no": pl.Int64})
    assert got.frame.select("file_idx", "line_no", "line").rows() == expect_rows
    # polars compares views by length and 4-byte prefix first: those must be right too
    plain = pl.Series([line for *_, line in expect_rows], dtype=pl.String)
    assert (got.frame.get_column("line") == plain).all()
    assert got.frame.get_column("line").n_unique() == plain.n_unique()
    assert got.n_lines.to_list() == [len(lines) for lines, *_ in want]
    assert got.invalid_utf8_files == [p for p, w in zip(paths, want, strict=True) if w[1]]
    assert got.lone_cr_files == [p for p, w in zip(paths, want, strict=True) if w[2]]
    assert got.empty_files == [p for p, w in zip(paths, want, strict=True) if w[3]]
    assert got.unreadable_files == []


def test_unreadable_and_missing_files_have_no_lines(tmp_path: Path) -> None:
    good = tmp_path / "good.log"
    good.write_bytes(b"one\ntwo\n")
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    got = L.read_lines([str(tmp_path / "gone.log"), str(fifo), str(good)])
    assert got.frame.select("file_idx", "line").rows() == [(2, "one"), (2, "two")]
    assert got.n_lines.to_list() == [0, 0, 2]
    assert [p.split(" (")[0] for p in got.unreadable_files] == [
        str(tmp_path / "gone.log"), str(fifo)]
    assert got.empty_files == []


def test_no_files_give_an_empty_typed_frame() -> None:
    got = L.read_lines([])
    assert got.frame.height == 0 and got.n_lines.len() == 0
    assert got.frame.schema["line"] == pl.String


def test_lines_are_usable_after_the_reader_returns(tmp_path: Path) -> None:
    """The views point into the files' bytes: the column must keep them alive."""
    path = tmp_path / "f.log"
    path.write_bytes(b"".join(b"line number %06d of the file\n" % i for i in range(5000)))
    frame = L.read_lines([str(path)]).frame
    gc.collect()
    clutter = [bytes([i]) * 150_000 for i in range(1, 40)]  # reuse freed memory, if any
    assert frame["line"].to_list() == [f"line number {i:06d} of the file" for i in range(5000)]
    del clutter


def test_written_parquet_does_not_depend_on_how_a_frame_is_chunked(tmp_path: Path) -> None:
    """Same values, different chunks (as from a different number of parse threads) give
    the same bytes: pyarrow's pages follow the chunks of what it writes."""
    values = [f"message {i:08d} " + "x" * 200 for i in range(20_000)]
    one = pl.DataFrame({"m": values})
    many = pl.concat([one.slice(0, 7), one.slice(7, 12_000), one.slice(12_007)], rechunk=False)
    assert many.n_chunks() > 1
    write_parquet(one, tmp_path / "one.parquet")
    write_parquet(many, tmp_path / "many.parquet")
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "many.parquet").read_bytes()
    assert pl.read_parquet(tmp_path / "many.parquet").equals(one)
