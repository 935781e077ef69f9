"""Hostile input for the loader (issue 10, sections 3 and 4): no hangs, no quadratic paths,
no tracebacks, and nothing corrupted silently. One test per reported bug."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from loglead_lo2.limits import MAX_MESSAGE_CHARS
from loglead_lo2.loader.cli import main
from loglead_lo2.loader.discover import SelectOptions, select
from loglead_lo2.loader.metrics import load_metrics
from loglead_lo2.loader.parse import parse_files
from tests.lo2_tree import RUN, TOKEN_LINES, log_path, write_file

CASE = "access_token_client_secret_wrong_401"
SERIES = [{"metric": {"__name__": "node_load1", "job": "node", "instance": "n:9100"},
           "values": [[1719592990, "1.5"], [1719592995, "2"]]}]


def _bounded(fn: Callable[[], Any], seconds: float = 120) -> Any:
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it never returns."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "the load blocked (a FIFO opened?)"
    if "error" in box:
        raise box["error"]
    return box["value"]


def _tree(root: Path, cases: tuple[str, ...] = ("correct", CASE)) -> Path:
    for case in cases:
        write_file(log_path(root, RUN, case, "token"), TOKEN_LINES)
    return root


def _load(root: Path, out: Path, *flags: str) -> int:
    return int(main(["--root", str(root), "--output-dir", str(out), "--quiet", *flags]))


def _info(out: Path) -> dict[str, Any]:
    return json.loads((out / "lo2_load_info.json").read_text())


def _skipped(info: dict[str, Any]) -> dict[str, str]:
    return {Path(i["path"]).name: i["reason"] for i in info["input_problems"]["skipped"]["items"]}


# --- section 3: no hangs, no quadratic paths, no tracebacks --------------------------------


def test_fifo_named_like_a_metrics_file_is_skipped_not_opened(tmp_path: Path,
                                                              capsys: Any) -> None:
    root = _tree(tmp_path / "tree")
    metrics = root / RUN / "correct" / "metrics"
    metrics.mkdir()
    (metrics / "metric_node_load1.json").write_text(json.dumps(SERIES))
    os.mkfifo(metrics / "metric_x.json")
    assert _bounded(lambda: _load(root, tmp_path / "out", "--load-metrics")) == 0
    reasons = _skipped(_info(tmp_path / "out"))
    assert "FIFO" in reasons["metric_x.json"]
    assert pl.read_parquet(tmp_path / "out" / "lo2_metrics.parquet").height == 2
    assert "metric_x.json: a FIFO, not a regular file" in capsys.readouterr().out


def test_fifo_and_device_named_like_a_log_are_skipped_not_opened(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    fifo = log_path(root, RUN, "correct", "user")
    os.mkfifo(fifo)
    broken = log_path(root, RUN, CASE, "user")
    broken.symlink_to(root / RUN / "nowhere")
    null = log_path(root, RUN, "correct", "code")
    null.symlink_to("/dev/null")
    device = log_path(root, RUN, CASE, "code")
    try:
        os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    except (PermissionError, AttributeError):
        device.symlink_to(fifo)  # no mknod here: a symlink (in the tree) to the FIFO
    sel = _bounded(lambda: select(root, SelectOptions()))
    reasons = dict(sel.skipped)
    assert "a FIFO, not a regular file" in reasons[str(fifo)]
    assert "outside the tree" in reasons[str(null)]
    assert "cannot stat" in reasons[str(broken)]
    assert "not a regular file" in reasons[str(device)]
    assert {f.service for f in sel.files} == {"token"}
    # a FIFO swapped in after discovery is reported as unreadable, never opened blocking
    swapped = log_path(root, RUN, CASE, "token")
    swapped.unlink()
    os.mkfifo(swapped)
    _events, stats = _bounded(lambda: parse_files(sel.files))
    assert [p.split(" (")[0] for p in stats.unreadable_files] == [str(swapped)]


def test_long_line_work_is_bounded(tmp_path: Path) -> None:
    from loglead_lo2.enhancers import aggregate_sequences, enhance_events

    body = ("abcdefghij0123456789 .:-/{}\"Ä" * 70_000)[:2_000_000]
    line = f"16:29:43.001 [XNIO-1 task-1]  sxn9TW9eQq6pn3-ZVwo2iw INFO  c.n.Config get - {body}"
    write_file(log_path(tmp_path, RUN, "correct", "token"), [*TOKEN_LINES[:2], line])
    events, stats = parse_files(select(tmp_path, SelectOptions()).files, skip=0)
    assert stats.long_messages == 1
    assert events["m_message"].str.len_chars().max() > 1_900_000  # the event keeps it all
    enhanced = enhance_events(events)
    # the work after parsing is bounded by the cap, not by the line: every enhancer sees at
    # most MAX_MESSAGE_CHARS characters (placeholders may expand them a little)
    assert enhanced["e_message_normalized"].str.len_chars().max() <= 6 * MAX_MESSAGE_CHARS
    assert enhanced["e_trigrams_len"].max() <= 6 * MAX_MESSAGE_CHARS
    assert enhanced["e_chars_len"].max() > 1_900_000  # the raw length is still told
    seqs = aggregate_sequences(enhanced.drop("e_words", "e_trigrams", "e_words_len",
                                             "e_trigrams_len"), tokens=("e_trigrams",))
    assert int(seqs["e_trigrams_len"].sum()) <= 6 * MAX_MESSAGE_CHARS + 1000


def _metrics_tree(root: Path, files: dict[str, str]) -> Path:
    _tree(root)
    folder = root / RUN / "correct" / "metrics"
    folder.mkdir(parents=True)
    (folder / "metric_node_load1.json").write_text(json.dumps(SERIES))
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_metrics_json_nested_200000_deep_is_skipped(tmp_path: Path) -> None:
    folder = _metrics_tree(tmp_path, {"metric_deep.json": "[" * 200_000 + "]" * 200_000})
    table, skipped = load_metrics([(RUN, "correct", folder)])
    assert table.height == 2
    assert [(Path(p).name, "nested too deep" in why) for p, why in skipped] == [
        ("metric_deep.json", True)]


def test_metric_timestamp_1e300_is_skipped_not_overflowing(tmp_path: Path) -> None:
    bad = [{"metric": {"__name__": "x"}, "values": [[1e300, "1"]]}]
    nan = [{"metric": {"__name__": "y"}, "values": [["NaN", "1"]]}]
    folder = _metrics_tree(tmp_path, {"metric_huge.json": json.dumps(bad),
                                      "metric_nan.json": json.dumps(nan)})
    table, skipped = load_metrics([(RUN, "correct", folder)])
    assert table.height == 2
    reasons = {Path(p).name: why for p, why in skipped}
    assert set(reasons) == {"metric_huge.json", "metric_nan.json"}
    assert "1e+300" in reasons["metric_huge.json"] and "1970-9999" in reasons["metric_huge.json"]


def test_metric_values_that_are_not_numbers_are_skipped(tmp_path: Path) -> None:
    """Prometheus writes values as strings ("NaN" and "+Inf" too); a null, a list or a word
    makes the file malformed, never a silent NaN."""
    files = {f"metric_{name}.json": json.dumps([{"metric": {"__name__": name},
                                                  "values": [[1719592990, value]]}])
             for name, value in (("null", None), ("list", [1]), ("word", "high"))}
    files["metric_special.json"] = json.dumps([{"metric": {"__name__": "special"}, "values": [
        [1719592990, "NaN"], [1719592991, "+Inf"], [1719592992, 3]]}])
    table, skipped = load_metrics([(RUN, "correct", _metrics_tree(tmp_path, files))])
    assert sorted(Path(p).name for p, _ in skipped) == [
        "metric_list.json", "metric_null.json", "metric_word.json"]
    special = table.filter(pl.col("metric") == "special")["value"].to_list()
    assert special[1:] == [float("inf"), 3.0] and special[0] != special[0]  # NaN kept


@pytest.mark.parametrize("polars_style", [False, True])
def test_disk_full_writing_metrics_is_one_line_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, polars_style: bool) -> None:
    _metrics_tree(tmp_path / "tree", {})
    original = pl.DataFrame.write_parquet

    def full(self: pl.DataFrame, file: Any, *args: Any, **kwargs: Any) -> None:
        if "metrics.parquet" in Path(str(file)).name:  # a run's metrics, in its part
            if polars_style:  # what polars raises on a full disk
                raise pl.exceptions.ComputeError(
                    "parquet: underlying IO error: No space left on device (os error 28)")
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, file, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    out = tmp_path / "out"
    assert _load(tmp_path / "tree", out, "--load-metrics") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(out / "lo2_parts") in err[0] and "metrics.parquet" in err[0]
    assert "No space left on device" in err[0] and "free some space" in err[0]
    assert not (out / "lo2_metrics.parquet").exists()


def test_one_bad_metrics_file_is_skipped_and_reported(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: Any) -> None:
    folder = _metrics_tree(tmp_path / "tree", {"metric_locked.json": json.dumps(SERIES)})
    (folder / "metric_dir.json").mkdir()
    (folder / "metric_out.json").symlink_to("/etc/hostname")
    original = Path.read_text

    def locked(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == "metric_locked.json":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", locked)
    out = tmp_path / "out"
    assert _load(tmp_path / "tree", out, "--load-metrics") == 0
    reasons = _skipped(_info(out))
    assert "Permission denied" in reasons["metric_locked.json"]
    assert "folder" in reasons["metric_dir.json"]
    assert "outside the tree" in reasons["metric_out.json"]
    summary = capsys.readouterr().out
    assert "metric_locked.json: unreadable metrics file (Permission denied)" in summary
    assert pl.read_parquet(out / "lo2_metrics.parquet").height == 2


# --- section 4: the loader never corrupts silently --------------------------------------


def test_trailing_newline_in_a_file_name_is_not_a_log(tmp_path: Path) -> None:
    _tree(tmp_path)
    twin = log_path(tmp_path, RUN, "correct", "token").with_name(
        "light-oauth2-oauth2-token-1.log\n")
    write_file(twin, TOKEN_LINES[:2])
    (tmp_path / f"{RUN}\n").mkdir()  # a run folder's twin
    sel = select(tmp_path, SelectOptions())
    assert [f.path.name for f in sel.files].count("light-oauth2-oauth2-token-1.log") == 2
    assert all(f.path != twin for f in sel.files)
    reasons = {p: why for p, why in sel.skipped}
    assert "control character" in reasons[str(twin)]
    assert "control character" in reasons[str(tmp_path / f"{RUN}\n")]
    events, _ = parse_files(sel.files)
    assert events.filter(pl.col("test_case") == "correct").height == 5


def test_impossible_time_of_day_is_not_a_timestamp(tmp_path: Path) -> None:
    good = TOKEN_LINES[1]
    bad = "99:99:99.999" + good[12:]
    write_file(log_path(tmp_path, RUN, "correct", "token"), [good, bad, TOKEN_LINES[-1]])
    events, stats = parse_files(select(tmp_path, SelectOptions()).files, skip=0)
    assert stats.bad_time_lines == 1
    assert events.height == 3
    row = events.row(1, named=True)
    assert row["m_level"] is None and row["m_message"] == bad  # outside the layout
    assert row["m_timestamp"] == datetime(2024, 6, 28, 16, 29, 43, 1000)  # the next event's
    span = events["m_timestamp"].max() - events["m_timestamp"].min()
    assert span.total_seconds() < 10  # not a 216,274 s sequence


def test_lone_cr_line_breaks_split_lines(tmp_path: Path) -> None:
    path = write_file(log_path(tmp_path, RUN, "correct", "token"), [],
                      raw=("\r".join(TOKEN_LINES) + "\r").encode())
    events, stats = parse_files(select(tmp_path, SelectOptions()).files, skip=0)
    assert stats.lone_cr_files == [str(path)]
    assert events.height == 5 and stats.continuation_lines == 4
    assert stats.lines == len(TOKEN_LINES)


def test_symlink_out_of_the_tree_is_skipped_and_one_inside_followed(tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree")
    (root / RUN / "correct" / "light-oauth2-oauth2-user-1.log").symlink_to("/etc/passwd")
    inside = root / RUN / CASE / "light-oauth2-oauth2-user-1.log"
    inside.symlink_to(log_path(root, RUN, CASE, "token"))
    outside_run = tmp_path / "elsewhere" / "LO2_run_1739743201"
    write_file(outside_run / "correct" / "light-oauth2-oauth2-token-1.log", TOKEN_LINES)
    (root / "LO2_run_1739743201").symlink_to(outside_run)
    sel = select(root, SelectOptions())
    reasons = {Path(p).name: why for p, why in sel.skipped}
    assert "/etc/passwd, outside the tree" in reasons["light-oauth2-oauth2-user-1.log"]
    assert "outside the tree" in reasons["LO2_run_1739743201"]
    assert [r.name for r in sel.runs] == [RUN]
    assert sorted((f.test_case, f.service) for f in sel.files) == [
        (CASE, "token"), (CASE, "user"), ("correct", "token")]


def test_problem_inputs_are_named_in_summary_and_info(tmp_path: Path, capsys: Any) -> None:
    root = tmp_path / "tree"
    other = "light-oauth2-data-1719599999"
    write_file(log_path(root, RUN, "correct", "token"), TOKEN_LINES)
    write_file(log_path(root, RUN, "correct", "user"), [])  # empty
    write_file(log_path(root, RUN, CASE, "token"), TOKEN_LINES[4:7])  # continuation only
    # CASE lacks the user log; the second run has no correct folder
    write_file(log_path(root, other, CASE, "token"), TOKEN_LINES)
    write_file(log_path(root, other, CASE, "user"), TOKEN_LINES[:2])
    out = tmp_path / "out"
    assert _load(root, out, "--service-types", "token", "user", "--save-base-sequences") == 0
    problems = _info(out)["input_problems"]
    assert problems["empty_files"]["count"] == 1
    assert problems["empty_files"]["items"][0].endswith("correct/light-oauth2-oauth2-user-1.log")
    assert problems["continuation_only_files"]["count"] == 1
    assert problems["continuation_only_files"]["items"][0].endswith(
        f"{CASE}/light-oauth2-oauth2-token-1.log")
    assert problems["missing_service_logs"] == {
        "count": 1, "items": [f"{RUN}/{CASE}/user"],
        "description": problems["missing_service_logs"]["description"]}
    assert problems["runs_without_correct"]["items"] == [other]
    summary = capsys.readouterr().out
    for text in ("empty files: 1", "continuation-only files (no event): 1",
                 f"missing service logs: 1 ({RUN}/{CASE}/user)",
                 f"runs without correct: 1 ({other})"):
        assert text in summary


def test_detection_refuses_duplicate_seq_id(tmp_path: Path, capsys: Any) -> None:
    from loglead_lo2.detection.cli import main as detect
    from loglead_lo2.schema import write_parquet
    from tests.detection_data import make_enhanced_sequences

    seqs = make_enhanced_sequences(4, seed=1)
    doubled = pl.concat([seqs, seqs.head(3)])
    path = tmp_path / "lo2_sequences_enhanced.parquet"
    write_parquet(doubled, path, "sequences_enhanced")
    assert detect(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert str(path) in err[0] and "3 duplicate seq_id" in err[0]
    assert repr(seqs["seq_id"][0]) in err[0] and "--overwrite" in err[0]


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_detect_and_explain_refuse_non_finite_features(tmp_path: Path, capsys: Any,
                                                       bad: float) -> None:
    """inf in duration_sec used to reach the models ('Input X contains NaN')."""
    from loglead_lo2.detection.cli import main as detect
    from loglead_lo2.explain.cli import main as explain
    from loglead_lo2.schema import write_parquet
    from tests.detection_data import make_enhanced_sequences

    seqs = make_enhanced_sequences(4, seed=1)
    first = seqs["seq_id"][0]
    seqs = seqs.with_columns(duration_sec=pl.when(pl.col("seq_id") == first).then(bad)
                             .otherwise(pl.col("duration_sec")))
    path = tmp_path / "lo2_sequences_enhanced.parquet"
    write_parquet(seqs, path, "sequences_enhanced")
    for phase in (detect, explain):
        args = ["--root", str(tmp_path)] + (["--retrain"] if phase is explain else [])
        assert phase(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert str(path) in err[0] and "duration_sec" in err[0] and repr(first) in err[0]
