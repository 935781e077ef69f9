"""Parser rules on hand-written files: multi-line events, trimming, CRLF, UTF-8, dates."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.loader.discover import SelectOptions, select
from loglead_lo2.loader.parse import parse_files
from loglead_lo2.loader.window import add_windows
from tests.lo2_tree import RUN, TOKEN_LINES, log_path, write_file


def _parse(root: Path, skip: int = 0, head: int | None = None):
    sel = select(root, SelectOptions())
    return parse_files(sel.files, skip=skip, head=head)


def test_multiline_stack_trace_attached_to_event_above(tmp_path: Path) -> None:
    write_file(log_path(tmp_path, RUN, "correct", "token"), TOKEN_LINES)
    events, stats = _parse(tmp_path)
    assert events.height == 5
    assert stats.continuation_lines == 4
    err = events.filter(pl.col("line_no") == 3).row(0, named=True)
    assert err["m_level"] == "ERROR"
    assert err["m_message"].splitlines() == [
        "ERROR c.n.o.t.h.Oauth2TokenPostHandler handleRequest - ApiException",
        TOKEN_LINES[3],
        TOKEN_LINES[4],
        TOKEN_LINES[5],
        TOKEN_LINES[6],
    ]
    assert err["m_cid"] == "9lZs5u4cSx6GOlZOowR-bQ"
    assert events["line_no"].to_list() == [1, 2, 3, 8, 9]
    hz = events.row(0, named=True)
    assert hz["m_cid"] is None
    assert hz["m_thread"] == "hz._hzInstance_1_dev.partition-operation.thread-8"
    assert hz["m_message"] == "DEBUG c.networknt.oauth.cache.UserMapStore load - Load:66c2c2bd"


def test_keys_labels_and_full_timestamps(tmp_path: Path) -> None:
    write_file(log_path(tmp_path, RUN, "correct", "token"), TOKEN_LINES[:2])
    write_file(log_path(tmp_path, RUN, "access_token_client_secret_wrong_401", "code"),
               TOKEN_LINES[:1])
    events, _ = _parse(tmp_path)
    row = events.filter(pl.col("test_case") == "correct").row(0, named=True)
    assert row["m_timestamp"] == datetime(2024, 6, 28, 16, 29, 40, 148000)
    assert row["seq_id"] == f"{RUN}__correct__token"
    assert row["normal"] is True and row["anomaly"] is False
    assert row["target_service"] is None
    err = events.filter(pl.col("test_case") != "correct").row(0, named=True)
    assert err["normal"] is False and err["anomaly"] is True
    assert err["target_service"] == "token"
    assert err["service"] == "code"


def test_midnight_rollover_uses_day_closest_to_epoch(tmp_path: Path) -> None:
    # epoch 1719619200 = 2024-06-29 00:00:00 UTC: 23:59 lines belong to June 28.
    run = "LO2_run_1719619200"
    write_file(log_path(tmp_path, run, "correct", "user"), [
        "23:59:59.900 [XNIO-1 task-1]  sxn9TW9eQq6pn3-ZVwo2iw INFO  c.n.Foo bar - before",
        "00:00:00.100 [XNIO-1 task-1]  sxn9TW9eQq6pn3-ZVwo2iw INFO  c.n.Foo bar - after",
    ])
    events, _ = _parse(tmp_path)
    assert events["m_timestamp"].to_list() == [
        datetime(2024, 6, 28, 23, 59, 59, 900000),
        datetime(2024, 6, 29, 0, 0, 0, 100000),
    ]


def test_trimming_drops_first_lines_and_orphan_continuations(tmp_path: Path) -> None:
    write_file(log_path(tmp_path, RUN, "correct", "token"), TOKEN_LINES)
    events, stats = _parse(tmp_path, skip=3)
    # lines 1-3 trimmed: the stack trace lines 4-7 lost their event and are dropped.
    assert stats.trimmed_lines == 3
    assert stats.orphan_lines == 4
    assert events["line_no"].to_list() == [8, 9]
    events, _ = _parse(tmp_path, skip=0, head=2)
    assert events["line_no"].to_list() == [1, 2]


def test_crlf_blank_lines_truncation_and_invalid_utf8(tmp_path: Path) -> None:
    raw = (
        "\r\n".join(TOKEN_LINES[:2]).encode()
        + b"\r\n\r\n"
        + b"16:29:41.000 [XNIO-1 task-1]  sxn9TW9eQq6pn3-ZVwo2iw INFO  c.n.Foo bar - caf\xff\r\n"
        + b"16:29:4"  # truncated last line, no newline
    )
    write_file(log_path(tmp_path, RUN, "correct", "token"), [], raw=raw)
    events, stats = _parse(tmp_path)
    assert stats.lines == 5
    assert stats.blank_lines == 1
    assert len(stats.invalid_utf8_files) == 1 and stats.invalid_utf8_lines == 1
    msgs = events["m_message"].to_list()
    assert not any("\r" in m for m in msgs)
    assert msgs[2] == "INFO  c.n.Foo bar - caf\ufffd"
    assert msgs[3] == "16:29:4" and events["m_level"][3] is None
    # the truncated line takes its neighbour's timestamp instead of a null
    assert events["m_timestamp"].null_count() == 0


def test_startup_lines_that_are_not_logback_are_events(tmp_path: Path) -> None:
    write_file(log_path(tmp_path, RUN, "correct", "client"), [
        "Picked up JAVA_TOOL_OPTIONS: -Xmx512m",
        "Nov 20, 2024 4:29:31 PM com.hazelcast.internal.cluster.ClusterService",
        "INFO: [172.18.0.5]:5701 [dev] [3.12] Members {size:1}",
        TOKEN_LINES[1],
    ])
    events, _ = _parse(tmp_path)
    assert events.height == 3
    assert events["m_message"][1].endswith("Members {size:1}")
    assert events["m_level"].to_list()[:2] == [None, None]


def test_empty_file_counted_not_fatal(tmp_path: Path) -> None:
    write_file(log_path(tmp_path, RUN, "correct", "key"), [], raw=b"")
    write_file(log_path(tmp_path, RUN, "correct", "token"), TOKEN_LINES[:2])
    events, stats = _parse(tmp_path)
    assert stats.empty_files and events.height == 2


def test_windows_split_sequences_by_time(tmp_path: Path) -> None:
    lines = [
        f"16:29:{s:02d}.000 [XNIO-1 task-1]  sxn9TW9eQq6pn3-ZVwo2iw INFO  c.n.Foo bar - m{s}"
        for s in (0, 3, 9, 10, 25)
    ]
    write_file(log_path(tmp_path, RUN, "correct", "token"), lines)
    events, _ = _parse(tmp_path)
    windowed = add_windows(events, 10)
    # grid from 16:29:00 to the last event (16:29:25): [0, 10) and [10, 20) are full, the
    # event at 25 s lies in the partial tail [20, 30) and is dropped
    assert windowed["window"].to_list() == [0, 0, 0, 1]
    assert windowed["seq_id"][3] == f"{RUN}__correct__token__w0001"
    assert windowed["window_start"][3] == datetime(2024, 6, 28, 16, 29, 10)
    assert add_windows(windowed, 10).equals(windowed)  # idempotent
    plain = add_windows(events, None)
    assert plain["window"].null_count() == plain.height
    with pytest.raises(ValueError):
        add_windows(events, -1)


def test_unreadable_file_is_skipped_and_counted(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    write_file(log_path(tmp_path, RUN, "correct", "token"), TOKEN_LINES[:2])
    locked = write_file(log_path(tmp_path, RUN, "correct", "user"), TOKEN_LINES[:2])
    locked.chmod(0)
    try:
        events, stats = _parse(tmp_path)
    finally:
        locked.chmod(0o644)
    assert len(stats.unreadable_files) == 1 and events.height == 2


def test_file_vanishing_between_listing_and_reading(tmp_path: Path) -> None:
    write_file(log_path(tmp_path, RUN, "correct", "token"), TOKEN_LINES[:2])
    gone = write_file(log_path(tmp_path, RUN, "correct", "user"), TOKEN_LINES[:2])
    sel = select(tmp_path, SelectOptions())
    gone.unlink()
    events, stats = parse_files(sel.files, skip=0)
    assert [Path(p.split(" (")[0]).name for p in stats.unreadable_files] == [gone.name]
    assert events.height == 2 and not stats.empty_files
