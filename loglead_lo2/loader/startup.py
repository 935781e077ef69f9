"""The start-up block of a log file (found by content), and start-up lines kept as events.

See :mod:`loglead_lo2.loader.parse` for the rule: the block is the longest prefix of a file
made only of start-up lines, ending at the first logback line on a thread other than
``main``, trimmed only when it holds a marker (a ``main``-thread line or a JVM notice).
"""

from __future__ import annotations

import polars as pl

MAIN_THREAD = "[main] "
MAIN_AT = 13  # "HH:MM:SS.mmm " is 13 characters: the thread's "[" follows
JVM_PREFIX = "Picked up "  # the JVM's notice of JAVA_TOOL_OPTIONS / _JAVA_OPTIONS


def _on_main(line: pl.Expr) -> pl.Expr:
    """Whether a logback-layout ``line`` was logged on the ``main`` thread."""
    return line.str.slice(MAIN_AT, len(MAIN_THREAD)) == MAIN_THREAD


def startup_block_lengths(lines: pl.DataFrame, n_lines: pl.Series) -> pl.Series:
    """Length of each file's start-up block (0 without one), indexed by ``file_idx``.

    ``lines``: ``file_idx, line, line_no, is_lb`` (physical lines in file order, logback-layout
    flag) of files ``0 .. len(n_lines) - 1``; ``n_lines``: their physical line counts. The
    candidate prefix of a file ends at its first logback line that is not on ``main``; only
    the rows of the few files whose first logback line is on ``main`` (and of prefixes to
    check for a marker) are looked at again, as contiguous slices of ``lines``.
    """
    n = n_lines.cast(pl.Int64)
    offsets = (n.cum_sum() - n).to_list()
    counts = n.to_list()
    first = (lines.select("file_idx", "line_no", "is_lb").with_row_index("row").lazy()
             .filter("is_lb")
             .group_by("file_idx")
             .agg(pl.col("line_no").min().alias("first_lb"), pl.col("row").min())
             .collect())
    on_main = (lines.select(pl.col("line").gather(first["row"]))
               .select(_on_main(pl.col("line")).fill_null(False))["line"])
    # end: the first line after the candidate prefix (n + 1 when the whole file is one).
    ends = [c + 1 for c in counts]
    for f, first_lb in zip(first["file_idx"].to_list(), first["first_lb"].to_list(),
                           strict=True):
        ends[f] = first_lb
    startup = first.filter(on_main)["file_idx"].to_list()
    if startup:
        other = (_slices(lines, [(offsets[f], counts[f]) for f in startup])
                 .filter(pl.col("is_lb") & ~_on_main(pl.col("line")))
                 .group_by("file_idx")
                 .agg(pl.col("line_no").min())
                 .collect())
        for f in startup:
            ends[f] = counts[f] + 1
        for f, line_no in other.iter_rows():
            ends[f] = line_no
    # A candidate prefix is the start-up block only if it holds a marker: a main-thread line
    # (every logback line in it is one) or a JVM "Picked up" line.
    candidates = [f for f, e in enumerate(ends) if e > 1]
    trim = [0] * len(counts)
    if candidates:
        marked = (_slices(lines, [(offsets[f], ends[f] - 1) for f in candidates])
                  .filter(pl.col("is_lb") | pl.col("line").str.starts_with(JVM_PREFIX))
                  .select(pl.col("file_idx").unique())
                  .collect()["file_idx"].to_list())
        for f in marked:
            trim[f] = ends[f] - 1
    return pl.Series("trim", trim, dtype=pl.Int64)


def _slices(lines: pl.DataFrame, spans: list[tuple[int, int]]) -> pl.LazyFrame:
    """The rows ``offset .. offset + length - 1`` of ``lines`` for each span, stacked."""
    return pl.concat([lines.slice(o, k).lazy() for o, k in spans], how="vertical")


def startup_kept(events: pl.DataFrame) -> tuple[int, int]:
    """Start-up lines (main thread, JVM notice) that are events, and the files they are in:
    they leak the label."""
    # Two cheap scans (view compare, null mask); the string test runs on the few level-less rows.
    main = events.filter(pl.col("m_thread") == "main").select("seq_id")
    jvm = (events.filter(pl.col("m_level").is_null())
           .filter(pl.col("m_message").str.starts_with(JVM_PREFIX)).select("seq_id"))
    late = pl.concat([main, jvm]).select(n=pl.len(), files=pl.col("seq_id").n_unique()).row(
        0, named=True)
    return int(late["n"]), int(late["files"])
