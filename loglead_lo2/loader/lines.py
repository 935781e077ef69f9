"""Read log files into one polars column of lines without copying their text.

Each file is read as bytes, checked (UTF-8, line breaks) and kept as it is; its line breaks
are found by numpy comparisons (:data:`SCAN_BYTES` at a time), and the lines become an Arrow
*string view* array whose views point into the files' bytes (one data buffer per file, or
per :data:`BUFFER_SPAN` of a larger one). Polars stores strings as views,
so the column is imported without a copy: on a generated full-scale run (247 MB, 1.04 M
lines) this takes ~0.3 s where decoding to Python strings, converting them and
``str.split`` + ``explode`` took ~1.9 s of one core.

Rules (the parser's, see :mod:`loglead_lo2.loader.parse`):

* a line ends at ``\\n``; the text after the last ``\\n`` is a line when it is not empty;
* ``\\r\\n`` is a line break, and so is a lone ``\\r`` (the file is named in
  :attr:`Lines.lone_cr_files`);
* invalid UTF-8 is decoded with replacement characters (the file is named in
  :attr:`Lines.invalid_utf8_files`);
* a file that cannot be read (permission, vanished, not a regular file) has no lines and is
  named with the reason in :attr:`Lines.unreadable_files`; a file that is empty or only
  whitespace is named in :attr:`Lines.empty_files`.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

log = logging.getLogger(__name__)

VIEW_INLINE = 12
"""Arrow string views hold strings of up to 12 bytes inline, longer ones by reference."""
BUFFER_SPAN = 1 << 30
"""Bytes of a file one data buffer is addressed from: a view's offset is a 32-bit integer, so a
file of more than this is exposed as several buffers (each from a multiple of this to the
end of the file), and a line is referenced from the buffer its first byte falls in."""
SCAN_BYTES = 1 << 26
"""Bytes compared with ``\\n`` at a time (the comparison's temporary array is this big)."""
_NOT_SPACE = re.compile(rb"[^ \t\n\r\x0b\x0c\x1c-\x1f]")
"""An ASCII character ``str.strip`` keeps (``bytes.strip`` also keeps ``\\x1c``-``\\x1f``)."""


@dataclass
class Lines:
    """Lines of several files: :attr:`frame` has ``file_idx`` (UInt32, the file's position),
    ``line_no`` (Int64, from 1 within its file) and ``line`` (String), in file order;
    :attr:`n_lines` counts each file's lines (Int64, one value per file)."""

    frame: pl.DataFrame
    n_lines: pl.Series
    unreadable_files: list[str] = field(default_factory=list)
    invalid_utf8_files: list[str] = field(default_factory=list)
    lone_cr_files: list[str] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)


def read_bytes(path_str: str) -> bytes:
    """The bytes of a regular file; ``OSError`` for anything else (never blocks on a FIFO)."""
    fd = os.open(path_str, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"not a regular file: {path_str}")
        return fh.read()


def _clean(path_str: str, data: bytes, out: Lines) -> bytes:
    """``data`` as valid UTF-8 with ``\\n`` line breaks only."""
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            out.invalid_utf8_files.append(path_str)
            data = data.decode("utf-8", errors="replace").encode("utf-8")
    if b"\r" in data:  # never part of a multi-byte character
        data = data.replace(b"\r\n", b"\n")
        if b"\r" in data:
            out.lone_cr_files.append(path_str)
            data = data.replace(b"\r", b"\n")
    return data


def _blank(data: bytes) -> bool:
    """Whether the (valid UTF-8) text is empty or only whitespace, as ``str.strip`` sees it."""
    if data.isascii():  # found at once in a log file, without copying it as strip would
        return _NOT_SPACE.search(data) is None
    return not data.decode("utf-8").strip()


def _views(data: bytes, first_buffer: int) -> np.ndarray:
    """The string views (one 16-byte row per line) of one file's lines; the file's data
    buffers are numbered from ``first_buffer``."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.concatenate([np.flatnonzero(buf[at : at + SCAN_BYTES] == 10) + at
                           for at in range(0, len(buf), SCAN_BYTES)] or [np.zeros(0, np.int64)])
    if len(data) and data[-1] != 10:
        ends = np.append(ends, len(data))
    starts = np.zeros(len(ends), dtype=np.int64)
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    if len(lengths) and int(lengths.max()) >= 1 << 31:
        raise ValueError("a line of 2 GiB or more cannot be held in a string column")
    views = np.zeros((len(ends), 16), dtype=np.uint8)
    words = views.view(np.int32)
    words[:, 0] = lengths
    inline = np.flatnonzero(lengths <= VIEW_INLINE)
    if len(inline):
        pos = starts[inline, None] + np.arange(VIEW_INLINE)
        chars = buf[np.minimum(pos, len(buf) - 1)]
        chars[np.arange(VIEW_INLINE) >= lengths[inline, None]] = 0
        views[inline, 4:] = chars
    long = np.flatnonzero(lengths > VIEW_INLINE)
    if len(long):
        at = starts[long]
        views[long, 4:8] = buf[at[:, None] + np.arange(4)]
        words[long, 2] = first_buffer + at // BUFFER_SPAN
        words[long, 3] = at % BUFFER_SPAN
    return views


def read_lines(paths: Sequence[str]) -> Lines:
    """The lines of ``paths`` (see the module docstring for the rules)."""
    out = Lines(frame=pl.DataFrame(), n_lines=pl.Series(dtype=pl.Int64))
    buffers: list[pa.Buffer] = []
    views: list[np.ndarray] = []
    for path_str in paths:
        try:
            data = read_bytes(path_str)
        except OSError as exc:  # permission denied, vanished file, I/O error: skip, never crash
            log.warning("cannot read %s: %s", path_str, exc)
            out.unreadable_files.append(f"{path_str} ({exc.strerror or exc})")
            data = b""
        else:
            data = _clean(path_str, data, out)
            if _blank(data):
                out.empty_files.append(path_str)
        views.append(_views(data, len(buffers)))
        whole = pa.py_buffer(data)
        buffers.extend(whole.slice(start) for start in range(0, len(data), BUFFER_SPAN))
    counts = np.array([len(v) for v in views], dtype=np.int64)
    total = int(counts.sum())
    array = pa.Array.from_buffers(
        pa.string_view(), total,
        [None, pa.py_buffer(np.concatenate(views) if views else np.zeros((0, 16), np.uint8)),
         *buffers])
    offsets = np.cumsum(counts) - counts
    file_idx = np.repeat(np.arange(len(paths), dtype=np.uint32), counts)
    line_no = np.arange(1, total + 1, dtype=np.int64) - np.repeat(offsets, counts)
    line = pl.Series("line", pl.from_arrow(array), dtype=pl.String)
    out.frame = pl.DataFrame({"file_idx": file_idx, "line": line, "line_no": line_no})
    out.n_lines = pl.Series(counts, dtype=pl.Int64)
    return out
