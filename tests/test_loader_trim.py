"""Trimming by content (the start-up block) vs. by count, its report, and the ground truth.

Hand-written LO2 trees, so that every count is known exactly and nothing depends on what the
sample generator writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from loglead_lo2.detection.evaluations import ground_truth_input
from loglead_lo2.detection.groundtruth import MANIFEST_SCHEMA
from loglead_lo2.loader.cli import main
from loglead_lo2.loader.discover import SelectOptions, select
from loglead_lo2.loader.parse import parse_files
from tests.lo2_tree import RUN, log_path, write_file

TOKEN_CASE = "access_token_client_secret_wrong_401"  # target: token
CODE_CASE = "authorization_code_invalid_client_id_404"  # target: code
CID = "sxn9TW9eQq6pn3-ZVwo2iw"


def main_line(t: str, logger: str, method: str, msg: str) -> str:
    return f"16:29:{t} [main]   INFO  {logger} {method} - {msg}"


def jul(t: str, cls: str, msg: str) -> list[str]:
    return [f"Jun 28, 2024 4:29:{t} PM {cls}", f"INFO: [172.18.0.9]:5701 [dev] [3.12] {msg}"]


def request(t: str, msg: str = "normalised = /oauth2/token", level: str = "DEBUG") -> str:
    return f"16:29:{t} [XNIO-1 task-1]  {CID} {level} c.n.openapi.ApiNormalisedPath <init> - {msg}"


def hz(t: str) -> str:
    return (f"16:29:{t} [hz._hzInstance_1_dev.partition-operation.thread-3]   DEBUG "
            "c.networknt.oauth.cache.UserMapStore load - Load:66c2c2bd")


# A start-up block like the real one: JVM notice, main-thread logback lines, Hazelcast
# java.util.logging pairs with a Members block (blank lines, tab-indented members, "]").
STARTUP = [
    "Picked up JAVA_TOOL_OPTIONS: -Xms128m -Xmx512m -Dlight-4j-config-dir=/config",
    main_line("30.100", "com.networknt.server.Server", "init", "server starting"),
    main_line("30.200", "com.networknt.config.Config", "getConfigStream",
              "Config loaded from externalized folder for server.yml in /config"),
    main_line("30.300", "com.zaxxer.hikari.HikariDataSource", "<init>",
              "HikariPool-1 - Starting..."),
    *jul("31", "com.hazelcast.system", "Hazelcast 3.12 (20190409 - 915d83a) starting"),
    "Jun 28, 2024 4:29:32 PM com.hazelcast.internal.cluster.ClusterService",
    "INFO: [172.18.0.9]:5701 [dev] [3.12] ",
    "",
    "Members {size:2, ver:2} [",
    "\tMember [172.18.0.4]:5701 - member",
    "\tMember [172.18.0.9]:5701 - this",
    "]",
    "",
    *jul("33", "com.hazelcast.core.LifecycleService", "[172.18.0.9]:5701 is STARTED"),
    main_line("33.500", "com.networknt.server.Server", "start",
              "Http Server started on ip:0.0.0.0 Port:6882"),
    main_line("33.600", "com.networknt.server.Server", "start",
              "Server started: oauth2-token 2.0.28"),
]
TRAFFIC = [request("40.100"), hz("40.148"), request("40.200"), request("40.300")]
ERROR_FIRST = [  # an error-case log cut by `docker logs --since` right at an ERROR event
    request("41.000", "ApiException", level="ERROR"),
    'com.networknt.exception.ApiException: {"statusCode":401,"code":"ERR12007"}',
    "\tat com.networknt.oauth.token.handler.Oauth2TokenPostHandler.handleRequest"
    "(Oauth2TokenPostHandler.java:120)",
    *TRAFFIC,
]


def _parse(root: Path, skip: int | None = None, head: int | None = None):
    return parse_files(select(root, SelectOptions()).files, skip=skip, head=head)


def _trimmed(stats) -> dict[tuple[str, str], int]:
    return {(r["test_case"], r["service"]): r["trimmed_lines"]
            for r in stats.per_file.iter_rows(named=True)}


def _tree(root: Path) -> Path:
    write_file(log_path(root, RUN, "correct", "token"), STARTUP + TRAFFIC)
    write_file(log_path(root, RUN, TOKEN_CASE, "token"), ERROR_FIRST)
    return root


def test_startup_block_trimmed_exactly_and_error_case_kept_whole(tmp_path: Path) -> None:
    events, stats = _parse(_tree(tmp_path))
    assert _trimmed(stats) == {("correct", "token"): len(STARTUP), (TOKEN_CASE, "token"): 0}
    assert (stats.trimmed_lines, stats.trimmed_files) == (len(STARTUP), 1)
    assert stats.orphan_lines == 0 and stats.startup_lines_kept == 0
    correct = events.filter(pl.col("test_case") == "correct")
    assert correct["line_no"].to_list() == [len(STARTUP) + i for i in (1, 2, 3, 4)]
    assert correct["m_thread"].to_list()[:2] == [
        "XNIO-1 task-1", "hz._hzInstance_1_dev.partition-operation.thread-3"]
    error = events.filter(pl.col("test_case") == TOKEN_CASE)
    assert error["line_no"].to_list() == [1, 4, 5, 6, 7]
    assert error["m_message"][0].splitlines()[1:] == ERROR_FIRST[1:3]  # stack trace kept
    assert stats.per_file["lines"].to_list() == [len(STARTUP + TRAFFIC), len(ERROR_FIRST)]


@pytest.mark.parametrize(
    "top",
    [
        # a stack trace cut off at the top of the file: orphans, dropped as before, not trimmed
        ["\tat com.networknt.handler.Handler.next(Handler.java:202)", "\t... 12 common frames"],
        # a Hazelcast java.util.logging pair logged at run time (no start-up marker)
        jul("39", "com.hazelcast.internal.partition.impl.MigrationManager",
            "Re-partitioning cluster data... Migration queue size: 271"),
        [],  # a plain mid-traffic file
    ],
    ids=["orphan-stack-trace", "runtime-jul-pair", "traffic"],
)
def test_files_starting_mid_traffic_lose_nothing(tmp_path: Path, top: list[str]) -> None:
    write_file(log_path(tmp_path, RUN, TOKEN_CASE, "token"), top + TRAFFIC)
    events, stats = _parse(tmp_path)
    assert stats.trimmed_lines == 0 and _trimmed(stats) == {(TOKEN_CASE, "token"): 0}
    assert events["line_no"].to_list()[-4:] == [len(top) + i for i in (1, 2, 3, 4)]


def test_rule_goes_by_content_not_by_test_case_name(tmp_path: Path) -> None:
    # Newer releases shuffle the test order: the case recorded first holds the start-up
    # block, and `correct` may start mid-traffic.
    write_file(log_path(tmp_path, RUN, CODE_CASE, "code"), STARTUP + TRAFFIC)
    write_file(log_path(tmp_path, RUN, "correct", "code"), TRAFFIC)
    _, stats = _parse(tmp_path)
    assert _trimmed(stats) == {("correct", "code"): 0, (CODE_CASE, "code"): len(STARTUP)}
    assert stats.trimmed_split() == {"correct": (0, 0), "error": (len(STARTUP), 1)}


def test_file_of_start_up_lines_only_and_service_without_requests(tmp_path: Path) -> None:
    write_file(log_path(tmp_path, RUN, "correct", "key"), STARTUP)
    write_file(log_path(tmp_path, RUN, "correct", "client"), STARTUP + [hz("50.000")])
    write_file(log_path(tmp_path, RUN, TOKEN_CASE, "key"), [], raw=b"")
    write_file(log_path(tmp_path, RUN, CODE_CASE, "key"), [hz("51.000"), hz("52.000")])
    events, stats = _parse(tmp_path)
    assert _trimmed(stats) == {("correct", "client"): len(STARTUP), ("correct", "key"):
                               len(STARTUP), (TOKEN_CASE, "key"): 0, (CODE_CASE, "key"): 0}
    # the whole start-up-only file is trimmed; Hazelcast lines are never start-up lines
    assert events.filter(pl.col("service") == "key")["test_case"].to_list() == [CODE_CASE] * 2
    assert events.filter(pl.col("test_case") == "correct")["line_no"].to_list() == [
        len(STARTUP) + 1]
    assert stats.empty_files and stats.startup_lines_kept == 0


def test_start_up_lines_after_the_first_request_are_kept_and_counted(tmp_path: Path) -> None:
    late = main_line("40.150", "com.networknt.server.Server", "start", "Server started: x")
    write_file(log_path(tmp_path, RUN, "correct", "token"),
               STARTUP[:-1] + [TRAFFIC[0], late] + TRAFFIC[1:])
    events, stats = _parse(tmp_path)
    assert stats.trimmed_lines == len(STARTUP) - 1
    assert (stats.startup_lines_kept, stats.startup_kept_files) == (1, 1)
    assert events["m_thread"].to_list().count("main") == 1


def test_first_n_lines_rule_is_the_old_behaviour(tmp_path: Path) -> None:
    _tree(tmp_path)
    events, stats = _parse(tmp_path, skip=5)
    assert _trimmed(stats) == {("correct", "token"): 5, (TOKEN_CASE, "token"): 5}
    assert stats.trimmed_lines == 10 and stats.trimmed_files == 2
    error = events.filter(pl.col("test_case") == TOKEN_CASE)
    assert error["line_no"].to_list() == [6, 7]  # the ERROR event and its trace are gone
    assert stats.startup_lines_kept == 2  # the two "... started" main lines after line 5
    _, everything = _parse(tmp_path, skip=0)
    assert everything.trimmed_lines == 0 and everything.startup_lines_kept == 6
    _, short = _parse(tmp_path, skip=1000)  # more than a file has: the whole file, no more
    assert _trimmed(short) == {("correct", "token"): len(STARTUP + TRAFFIC),
                               (TOKEN_CASE, "token"): len(ERROR_FIRST)}
    with pytest.raises(ValueError, match="skip"):
        _parse(tmp_path, skip=-1)


def test_head_counts_after_the_start_up_block(tmp_path: Path) -> None:
    _tree(tmp_path)
    events, stats = _parse(tmp_path, head=2)
    correct = events.filter(pl.col("test_case") == "correct")
    assert correct["line_no"].to_list() == [len(STARTUP) + 1, len(STARTUP) + 2]
    assert stats.trimmed_lines == len(STARTUP)
    assert stats.head_cut_lines == (len(TRAFFIC) - 2) + (len(ERROR_FIRST) - 2)


# --- the CLI: summary, lo2_load_info.json, lo2_files.parquet --------------------------------


def _load(root: Path, out: Path, *flags: str) -> int:
    return main(["--root", str(root), "--output-dir", str(out), "--save-base-sequences",
                 "--quiet", *flags])


def test_summary_and_load_info_report_trimmed_lines_per_test_case(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path / "tree")
    write_file(log_path(root, RUN, "correct", "user"), STARTUP[:3] + TRAFFIC)
    assert _load(root, tmp_path / "out") == 0
    out = capsys.readouterr().out
    total = len(STARTUP) + 3
    assert (f"trim: start-up block: {total} lines (correct: {total} lines in 2 files; "
            "error cases: 0 lines)") in out
    assert "trim=start-up block" in out
    info = json.loads((tmp_path / "out/lo2_load_info.json").read_text())
    trim = info["trim"]
    assert (trim["rule"], trim["init_lines_to_skip"], trim["trimmed_lines"]) == (
        "startup_block", None, total)
    assert trim["per_test_case"] == {"correct": total, TOKEN_CASE: 0}
    assert trim["correct"] == {"lines": total, "files": 2}
    assert trim["error_cases"] == {"lines": 0, "files": 0}
    assert info["options"]["init_lines_to_skip"] is None
    files = pl.read_parquet(tmp_path / "out" / trim["per_file"])
    assert files.columns == ["run", "test_case", "service", "lines", "trimmed_lines",
                             "window_dropped_lines"]
    assert (files["window_dropped_lines"] == 0).all()  # no --window: nothing dropped
    assert files.drop("window_dropped_lines").sort("test_case", "service").rows() == [
        (RUN, TOKEN_CASE, "token", len(ERROR_FIRST), 0),
        (RUN, "correct", "token", len(STARTUP + TRAFFIC), len(STARTUP)),
        (RUN, "correct", "user", 3 + len(TRAFFIC), 3),
    ]

    assert _load(root, tmp_path / "old", "--init-lines-to-skip", "2") == 0
    out = capsys.readouterr().out
    assert ("trim: first 2 lines: 6 lines (correct: 4 lines in 2 files; error cases: 2 lines "
            "in 1 files)") in out
    assert "start-up lines kept:" in out  # the old rule leaves main-thread lines behind
    info = json.loads((tmp_path / "old/lo2_load_info.json").read_text())
    assert (info["trim"]["rule"], info["trim"]["init_lines_to_skip"]) == ("first_lines", 2)
    assert info["trim"]["per_test_case"] == {"correct": 4, TOKEN_CASE: 2}


def test_negative_skip_exits_2_with_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path / "tree")
    assert _load(root, tmp_path / "out", "--init-lines-to-skip", "-1") == 2
    err = capsys.readouterr().err.strip()
    assert "--init-lines-to-skip" in err and len(err.splitlines()) == 1
    assert "Traceback" not in err


# --- ground truth: trimmed injected events are misses -----------------------------------------


def _manifest(root: Path, rows: list[tuple[str, str, int, str]]) -> None:
    lines = [",".join(MANIFEST_SCHEMA)]
    for case, service, line_no, time in rows:
        lines.append(f"{RUN},{case},{service},{line_no},1,2024-06-28T16:29:{time},injected,A,"
                     "ERR12007")
    (root / "lo2_manifest.csv").write_text("\n".join(lines) + "\n")


def test_ground_truth_counts_trimmed_injected_events_as_misses(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree")
    # the code case's target log is four lines long: the old rule below trims all of it
    write_file(log_path(root, RUN, CODE_CASE, "code"), TRAFFIC)
    write_file(log_path(root, RUN, "correct", "code"), STARTUP + TRAFFIC)
    _manifest(root, [(TOKEN_CASE, "token", 1, "41.000"), (CODE_CASE, "code", 3, "40.200")])

    def truth_for(out: Path) -> tuple[object, pl.DataFrame]:
        truth = ground_truth_input(out)
        assert truth is not None
        return truth, pl.read_parquet(out / "lo2_sequences.parquet")

    # Start-up block rule: the error-case logs lose nothing, both events are found.
    assert _load(root, tmp_path / "new") == 0
    truth, seqs = truth_for(tmp_path / "new")
    o = truth.report(seqs, np.ones(seqs.height, dtype=bool)).overall
    assert (o["with_trace"], o["detected"], o["trimmed_events"]) == (2, 2, 0)

    # First 5 lines: the token ERROR event (line 1) is trimmed and the code log is gone
    # entirely; both units stay in the denominator, as misses, however the model flags.
    assert _load(root, tmp_path / "old", "--init-lines-to-skip", "5") == 0
    truth, seqs = truth_for(tmp_path / "old")
    assert set(seqs["test_case"]) == {"correct", TOKEN_CASE}  # no code-case sequence left
    report = truth.report(seqs, np.ones(seqs.height, dtype=bool))
    o = report.overall
    assert (o["units"], o["with_trace"], o["detected"], o["recall"]) == (2, 2, 0, 0.0)
    assert (o["injected_events"], o["trimmed_events"], o["surviving_events"]) == (2, 2, 0)
    rows = {r["test_case"]: r for r in report.per_case.to_dicts()}
    assert rows[CODE_CASE]["units_with_trace"] == 1 and rows[CODE_CASE]["detected"] == 0


def test_ground_truth_without_the_per_file_record(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree")
    _manifest(root, [(TOKEN_CASE, "token", 1, "41.000")])
    out = tmp_path / "out"
    assert _load(root, out) == 0
    (out / "lo2_files.parquet").unlink()
    truth = ground_truth_input(out)
    assert truth is not None and truth.files is None
    assert "missing" in truth.line and "re-run the loader" in truth.line
    seqs = pl.read_parquet(out / "lo2_sequences.parquet")
    with pytest.raises(ValueError, match="lo2_files.parquet"):
        truth.report(seqs, np.ones(seqs.height, dtype=bool))



def test_real_excerpt_mid_traffic_and_with_a_start_up_block(tmp_path: Path) -> None:
    excerpt = Path(__file__).resolve().parents[2] / "shared/lo2-reference/token_correct_excerpt.log"
    if not excerpt.is_file():
        pytest.skip("shared/lo2-reference not present")
    real = excerpt.read_text(encoding="utf-8").splitlines()
    write_file(log_path(tmp_path, RUN, TOKEN_CASE, "token"), real)  # starts mid-traffic
    write_file(log_path(tmp_path, RUN, "correct", "token"), STARTUP + real)
    _, stats = _parse(tmp_path)
    assert _trimmed(stats) == {("correct", "token"): len(STARTUP), (TOKEN_CASE, "token"): 0}
    assert stats.startup_lines_kept == 0
