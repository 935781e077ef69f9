"""Property-based tests of the log parser (``loglead_lo2/loader/parse.py``): random small
trees of random lines and arbitrary bytes. Bounded: a few dozen examples per property, the
file runs in seconds."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loglead_lo2.loader.discover import SelectOptions, select
from loglead_lo2.loader.parse import ParseStats, parse_files
from tests.lo2_tree import EPOCH, RUN, TOKEN_LINES, log_path

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
CASES = ("correct", "access_token_client_secret_wrong_401")
SERVICES = ("token", "user")


@st.composite
def logback_line(draw: st.DrawFn) -> str:
    hh = draw(st.integers(0, 99))
    mm, ss = draw(st.integers(0, 99)), draw(st.integers(0, 99))
    ms = draw(st.integers(0, 999))
    thread = draw(st.sampled_from(["XNIO-1 task-2", "main", "hz._hzInstance_1_dev.thread-8"]))
    level = draw(st.sampled_from(["DEBUG", "INFO ", "WARN ", "ERROR", "TRACE"]))
    text = draw(st.text(max_size=30))
    return f"{hh:02d}:{mm:02d}:{ss:02d}.{ms:03d} [{thread}]  cid {level} a.b.C m - {text}"


LINE = st.one_of(
    logback_line(),
    st.sampled_from(TOKEN_LINES),
    st.sampled_from(["", "   ", "\tat a.b.C.m(C.java:1)", "Caused by: x.Y: boom",
                     "\t... 3 common frames omitted", "java.lang.IllegalStateException: z",
                     "Picked up JAVA_TOOL_OPTIONS: -Xmx1g", "INFO: [1.2.3.4]:5701 [dev] up",
                     "Members {size:1, ver:1} ["]),
    st.text(max_size=40),
)
NEWLINE = st.sampled_from(["\n", "\r\n", "\r"])
TRIM = st.sampled_from([None, 0, 1, 3])
HEAD = st.sampled_from([None, 1, 4])


@st.composite
def tree_files(draw: st.DrawFn) -> dict[tuple[str, str], bytes]:
    """Up to four files of random lines (random line breaks) or of arbitrary bytes."""
    keys = draw(st.lists(st.sampled_from([(c, s) for c in CASES for s in SERVICES]),
                         min_size=1, max_size=4, unique=True))
    out = {}
    for key in keys:
        if draw(st.booleans()):
            lines = draw(st.lists(LINE, max_size=12))
            newline = draw(NEWLINE)
            text = newline.join(lines) + (newline if draw(st.booleans()) else "")
            out[key] = text.encode("utf-8", errors="surrogatepass")
        else:
            out[key] = draw(st.binary(max_size=300))
    return out


def _parse(files: dict[tuple[str, str], bytes], skip: int | None,
           head: int | None) -> tuple[pl.DataFrame, ParseStats]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for (case, service), data in files.items():
            path = log_path(root, RUN, case, service)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        sel = select(root, SelectOptions())
        return parse_files(sel.files, skip=skip, head=head)


def _accounted(stats: ParseStats) -> int:
    return (stats.trimmed_lines + stats.head_cut_lines + stats.blank_lines
            + stats.orphan_lines + stats.continuation_lines + stats.events)


@SETTINGS
@given(files=tree_files(), skip=TRIM, head=HEAD)
def test_every_line_is_accounted_for_exactly_once(files: dict[tuple[str, str], bytes],
                                                  skip: int | None, head: int | None) -> None:
    events, stats = _parse(files, skip, head)
    assert stats.files == len(files)
    assert stats.lines == _accounted(stats)
    assert stats.events == events.height
    assert int(stats.per_file["lines"].sum()) == stats.lines
    assert int(stats.per_file["trimmed_lines"].sum()) == stats.trimmed_lines
    assert 0 <= stats.bad_time_lines <= stats.events
    # an empty or continuation-only file gives no event; every event comes from a read file
    quiet = {Path(p).parent.name + "/" + Path(p).name
             for p in [*stats.empty_files, *stats.continuation_only_files]}
    for row in events.select("test_case", "service").unique().iter_rows():
        assert f"{row[0]}/light-oauth2-oauth2-{row[1]}-1.log" not in quiet


@SETTINGS
@given(files=tree_files(), skip=TRIM)
def test_events_are_ordered_and_timed_within_their_file(files: dict[tuple[str, str], bytes],
                                                        skip: int | None) -> None:
    events, stats = _parse(files, skip, None)
    per_file = dict(((r[0], r[1]), r[2]) for r in
                    stats.per_file.select("test_case", "service", "lines").iter_rows())
    anchor = datetime.fromtimestamp(EPOCH, tz=timezone.utc).replace(tzinfo=None)
    for (case, service), group in events.group_by("test_case", "service"):
        line_no = group["line_no"].to_list()
        assert line_no == sorted(line_no) and len(set(line_no)) == len(line_no)
        assert 1 <= line_no[0] and line_no[-1] <= per_file[(case, service)]
        stamps = group["m_timestamp"].drop_nulls()
        # every timestamp is a valid time of day within half a day of the run's epoch
        assert all(abs(t - anchor) <= timedelta(hours=12) for t in stamps)
    assert events.filter(pl.col("m_level").is_not_null())["m_timestamp"].null_count() == 0


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.binary(max_size=2000), skip=TRIM, head=HEAD)
def test_arbitrary_bytes_never_raise(data: bytes, skip: int | None, head: int | None) -> None:
    events, stats = _parse({("correct", "token"): data}, skip, head)
    assert stats.lines == _accounted(stats)
    assert events.height == stats.events <= stats.lines
    if data.strip() == b"":
        assert len(stats.empty_files) == 1
