"""Ground-truth recall against a hand-built manifest, manifest discovery and validation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from loglead_lo2.cases import target_service_map
from loglead_lo2.detection.groundtruth import (
    MANIFEST_SCHEMA,
    empty_report,
    find_manifest,
    ground_truth_recall,
    load_manifest,
    load_trim_record,
    no_ground_truth_message,
    read_load_info,
    trim_record_path,
    trim_settings,
)
from loglead_lo2.errors import UserError

TOKEN_CASE = "access_token_client_secret_wrong_401"  # target: token
CLIENT_CASE = "get_client_404_no_client"  # target: client
NO_TRACE_CASE = "code_challenge_too_short_pkce_400"  # target: code, leaves no trace
USER_CASE = "get_user_404_no_user"  # target: user
REFRESH_CASE = "get_token_404"  # target: refresh-token (a service not evaluated here)
T0 = datetime(2024, 6, 28, 16, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stamp(seconds: float) -> str:
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at(seconds).microsecond // 1000:03d}"


# (run, test_case, service, start s, end s, flagged)
SEQUENCES = [
    # token case, run r1: two windows; the flagged one holds only a trimmed event.
    ("r1", TOKEN_CASE, "token", 0.0, 9.9, True),
    ("r1", TOKEN_CASE, "token", 10.0, 15.0, False),
    ("r1", TOKEN_CASE, "client", 0.0, 15.0, True),  # non-target service, flagged
    # token case, run r2: one window, flagged, holds a surviving event.
    ("r2", TOKEN_CASE, "token", 0.0, 8.0, True),
    ("r2", TOKEN_CASE, "user", 0.0, 8.0, False),  # non-target service, not flagged
    # client case, run r1: the target is not flagged, the non-target token row is.
    ("r1", CLIENT_CASE, "client", 20.0, 30.0, False),
    ("r1", CLIENT_CASE, "token", 20.0, 30.0, True),
    # no-trace case: flagged, but nothing was injected.
    ("r1", NO_TRACE_CASE, "code", 40.0, 50.0, True),
    # normal rows: 2 of 5 flagged.
    ("r1", "correct", "token", 100.0, 109.0, True),
    ("r1", "correct", "token", 110.0, 119.0, False),
    ("r1", "correct", "client", 100.0, 119.0, False),
    ("r2", "correct", "token", 100.0, 119.0, True),
    ("r2", "correct", "client", 100.0, 119.0, False),
]

# (run, test_case, service, line_no, seconds, kind)
MANIFEST = [
    ("r1", TOKEN_CASE, "token", 50, 1.0, "injected"),  # trimmed (line <= 100)
    ("r1", TOKEN_CASE, "token", 150, 12.0, "injected"),  # window 10-15 s, not flagged
    ("r2", TOKEN_CASE, "token", 200, 3.0, "injected"),  # flagged window
    ("r2", TOKEN_CASE, "token", 300, 9.0, "injected"),  # after the sequence ends: unplaced
    ("r1", CLIENT_CASE, "client", 120, 25.0, "injected"),  # target row, not flagged
    ("r1", CLIENT_CASE, "token", 130, 25.0, "injected"),  # non-target service: ignored
    ("r1", CLIENT_CASE, "client", 140, 26.0, "background"),  # not ground truth
    ("r1", "correct", "token", 400, 105.0, "background"),
    ("r3", TOKEN_CASE, "token", 150, 5.0, "injected"),  # run not evaluated
]


def sequences() -> tuple[pl.DataFrame, np.ndarray]:
    df = pl.DataFrame(
        {
            "run": [r[0] for r in SEQUENCES],
            "test_case": [r[1] for r in SEQUENCES],
            "service": [r[2] for r in SEQUENCES],
            "start_time": [at(r[3]) for r in SEQUENCES],
            "end_time": [at(r[4]) for r in SEQUENCES],
        },
        schema_overrides={"start_time": pl.Datetime("ms"), "end_time": pl.Datetime("ms")},
    )
    return df, np.array([r[5] for r in SEQUENCES])


def manifest_csv(rows: list[tuple] = MANIFEST) -> str:
    lines = [",".join(MANIFEST_SCHEMA)]
    for run, case, service, line_no, seconds, kind in rows:
        lines.append(f"{run},{case},{service},{line_no},1,{stamp(seconds)},{kind},A,ERR12014")
    return "\n".join(lines) + "\n"


@pytest.fixture
def manifest(tmp_path: Path) -> pl.DataFrame:
    path = tmp_path / "lo2_manifest.csv"
    path.write_text(manifest_csv())
    return load_manifest(path)


def case_rows(report) -> dict[str, dict]:
    return {row["test_case"]: row for row in report.per_case.to_dicts()}


def test_recall_per_case_and_overall(manifest: pl.DataFrame) -> None:
    seqs, flags = sequences()
    report = ground_truth_recall(manifest, seqs, flags, skip_lines=100)
    rows = case_rows(report)
    assert list(rows) == sorted([CLIENT_CASE, NO_TRACE_CASE, TOKEN_CASE])
    assert rows[TOKEN_CASE] == {
        "test_case": TOKEN_CASE, "target_service": "token", "units": 2, "units_with_trace": 2,
        "detected": 1, "recall": 0.5, "injected_events": 4, "surviving_events": 2,
        "trimmed_events": 1,
    }
    assert rows[CLIENT_CASE] == {
        "test_case": CLIENT_CASE, "target_service": "client", "units": 1,
        "units_with_trace": 1, "detected": 0, "recall": 0.0, "injected_events": 1,
        "surviving_events": 1, "trimmed_events": 0,
    }
    assert rows[NO_TRACE_CASE] == {
        "test_case": NO_TRACE_CASE, "target_service": "code", "units": 1,
        "units_with_trace": 0, "detected": 0, "recall": None, "injected_events": 0,
        "surviving_events": 0, "trimmed_events": 0,
    }
    o = report.overall
    assert (o["units"], o["with_trace"], o["detected"]) == (4, 3, 1)
    assert o["recall"] == pytest.approx(1 / 3)
    assert o["macro_recall"] == pytest.approx(0.25)
    assert o["fp_rate_normal"] == pytest.approx(0.4)
    assert (o["n_normal"], o["flagged_normal"]) == (5, 2)
    assert (o["injected_events"], o["surviving_events"]) == (5, 3)
    assert (o["trimmed_events"], o["unplaced_events"], o["beyond_head_events"]) == (1, 1, 0)
    assert o["cases_without_trace"] == [NO_TRACE_CASE]
    assert (o["trim"], o["per_file_record"], o["skip_lines"]) == ("first 100 lines", False, 100)
    # Error rows without a surviving event: r1 token w0 (trimmed event only), the two
    # non-target rows of the token case, the client case's token row, the no-trace case.
    assert (o["n_no_trace"], o["flagged_no_trace"]) == (5, 4)
    assert o["flag_rate_no_trace"] == pytest.approx(0.8)
    assert report.per_case.schema["recall"] == pl.Float64


def test_head_leaves_late_events_out(manifest: pl.DataFrame) -> None:
    seqs, flags = sequences()
    report = ground_truth_recall(manifest, seqs, flags, skip_lines=100, head=60)
    rows = case_rows(report)
    # Lines 101..160 are loaded: r1 token line 150 (unflagged window), client line 120; the
    # trimmed line 50 still counts (a miss); r2's lines 200 and 300 lie past --head: the
    # loader never looked there, so r2 has no trace in what was loaded.
    assert rows[TOKEN_CASE]["units_with_trace"] == 1
    assert rows[TOKEN_CASE]["detected"] == 0
    assert rows[TOKEN_CASE]["injected_events"] == 2
    assert rows[CLIENT_CASE]["units_with_trace"] == 1
    o = report.overall
    assert (o["with_trace"], o["detected"], o["recall"]) == (2, 0, 0.0)
    assert (o["trimmed_events"], o["beyond_head_events"]) == (1, 2)
    assert o["head"] == 60


def test_trimmed_events_are_misses_and_stay_in_the_denominator(
        manifest: pl.DataFrame) -> None:
    seqs, flags = sequences()
    # Lines 1..160 trimmed: both r1 token events are gone; r1 still counts, as a miss, even
    # though its first window (where line 50's timestamp lies) is flagged.
    report = ground_truth_recall(manifest, seqs, flags, skip_lines=160)
    row = case_rows(report)[TOKEN_CASE]
    assert (row["units"], row["units_with_trace"], row["detected"]) == (2, 2, 1)
    assert (row["injected_events"], row["trimmed_events"], row["surviving_events"]) == (4, 2, 1)
    o = report.overall
    assert (o["with_trace"], o["detected"]) == (3, 1)
    # Everything trimmed: every unit with an injected event is a miss, none leaves the
    # denominator.
    everything = ground_truth_recall(manifest, seqs, np.ones(len(flags), dtype=bool),
                                     skip_lines=10_000)
    o = everything.overall
    assert (o["with_trace"], o["detected"], o["recall"]) == (3, 0, 0.0)
    assert (o["trimmed_events"], o["surviving_events"]) == (5, 0)


def files_record(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"run": pl.String, "test_case": pl.String,
                                      "service": pl.String, "trimmed_lines": pl.Int64},
                        orient="row")


def test_per_file_record_says_what_was_trimmed(tmp_path: Path) -> None:
    rows = [*MANIFEST,
            ("r1", USER_CASE, "user", 20, 60.0, "injected"),  # its log was trimmed whole
            ("r1", REFRESH_CASE, "refresh-token", 20, 60.0, "injected"),  # not evaluated
            ("r3", USER_CASE, "user", 20, 60.0, "injected")]  # run not evaluated
    path = tmp_path / "lo2_manifest.csv"
    path.write_text(manifest_csv(rows))
    manifest = load_manifest(path)
    seqs, flags = sequences()
    files = files_record([
        ("r1", TOKEN_CASE, "token", 0),  # the start-up block rule found nothing here
        ("r2", TOKEN_CASE, "token", 350),  # ... and a block of 350 lines here
        ("r1", CLIENT_CASE, "client", 0),
        ("r1", NO_TRACE_CASE, "code", 0),
        ("r1", USER_CASE, "user", 80),  # every line trimmed: no sequence, still a unit
        ("r1", REFRESH_CASE, "refresh-token", 0),  # refresh-token rows are not evaluated
        ("r3", USER_CASE, "user", 0),
        ("r1", "correct", "token", 70),
    ])
    report = ground_truth_recall(manifest, seqs, flags, skip_lines=None, files=files)
    rows_ = case_rows(report)
    assert list(rows_) == sorted([CLIENT_CASE, NO_TRACE_CASE, TOKEN_CASE, USER_CASE])
    # r1: line 50 is kept and sits in the flagged first window; r2: both events trimmed.
    token = rows_[TOKEN_CASE]
    assert (token["units_with_trace"], token["detected"], token["trimmed_events"]) == (2, 1, 2)
    user = rows_[USER_CASE]
    assert (user["units"], user["units_with_trace"], user["detected"],
            user["trimmed_events"]) == (1, 1, 0, 1)
    o = report.overall
    assert (o["units"], o["with_trace"], o["detected"]) == (5, 4, 1)
    assert (o["trim"], o["per_file_record"]) == ("start-up block", True)
    with pytest.raises(ValueError, match="lo2_files.parquet"):
        ground_truth_recall(manifest, seqs, flags, skip_lines=None)


def test_no_trimming_counts_early_event(manifest: pl.DataFrame) -> None:
    seqs, flags = sequences()
    report = ground_truth_recall(manifest, seqs, flags, skip_lines=0)
    # Line 50 now survives and sits in r1's flagged first window: r1 is detected too.
    assert case_rows(report)[TOKEN_CASE]["detected"] == 2
    assert (report.overall["n_no_trace"], report.overall["flagged_no_trace"]) == (4, 3)
    assert report.overall["recall"] == pytest.approx(2 / 3)


def test_flag_one_target_window_is_enough(manifest: pl.DataFrame) -> None:
    seqs, flags = sequences()
    flags = flags.copy()
    flags[1] = True  # r1 token case, second window
    flags[5] = True  # client case target row
    report = ground_truth_recall(manifest, seqs, flags, skip_lines=100)
    assert report.overall["detected"] == 3
    assert report.overall["recall"] == 1.0
    assert report.overall["flagged_no_trace"] == 4  # unchanged: the new flags hold events


def test_timezone_aware_sequences(manifest: pl.DataFrame) -> None:
    seqs, flags = sequences()
    aware = seqs.with_columns(pl.col("start_time", "end_time").dt.replace_time_zone("UTC")
                              .dt.convert_time_zone("Europe/Helsinki"))
    assert (ground_truth_recall(manifest, aware, flags, skip_lines=100).overall
            == ground_truth_recall(manifest, seqs, flags, skip_lines=100).overall)


def test_evaluated_rows_only(manifest: pl.DataFrame) -> None:
    seqs, flags = sequences()
    keep = (seqs["run"] == "r2").to_numpy()
    report = ground_truth_recall(manifest, seqs.filter(keep), flags[keep], skip_lines=100)
    assert case_rows(report)[TOKEN_CASE]["units"] == 1
    assert report.overall["cases"] == 1
    assert (report.overall["detected"], report.overall["n_normal"]) == (1, 2)


def test_report_json_and_line(manifest: pl.DataFrame) -> None:
    seqs, flags = sequences()
    report = ground_truth_recall(manifest, seqs, flags, skip_lines=100)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["overall"]["with_trace"] == 3
    assert len(data["per_case"]) == 3
    assert "target service" in data["note"]
    line = report.summary_line("event_lr_words")
    assert "recall 0.3333 (1/3 units with a trace, 4 units)" in line
    assert "fp_rate_normal 0.4000 (5 normal" in line


def test_bad_arguments(manifest: pl.DataFrame) -> None:
    seqs, flags = sequences()
    with pytest.raises(ValueError, match="flagged has 3 values"):
        ground_truth_recall(manifest, seqs, flags[:3])
    with pytest.raises(ValueError, match="end_time"):
        ground_truth_recall(manifest, seqs.drop("end_time"), flags)


def test_no_manifest_message() -> None:
    assert no_ground_truth_message().startswith("no ground truth (no manifest)")
    empty = empty_report()
    assert empty.per_case.height == 0
    assert empty.to_dict()["note"] == no_ground_truth_message()


# --- finding and reading the manifest ------------------------------------------------------


def write_info(result: Path, **data: object) -> None:
    result.mkdir(parents=True, exist_ok=True)
    (result / "lo2_load_info.json").write_text(json.dumps(data))


def test_find_manifest_via_load_info(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    path = tree / "lo2_manifest.csv"
    path.write_text(manifest_csv())
    result = tmp_path / "result"
    write_info(result, manifest=str(path), root=str(tree),
               options={"init_lines_to_skip": 50, "head": 1000})
    assert find_manifest(result) == path
    assert trim_settings(read_load_info(result)) == (50, 1000)
    assert trim_record_path(result, read_load_info(result)) is None
    # The start-up block rule: no line count, a per-file record beside the info.
    write_info(result, manifest=str(path), root=str(tree),
               options={"init_lines_to_skip": None, "head": None},
               trim={"per_file": "lo2_files.parquet"})
    assert trim_settings(read_load_info(result)) == (None, None)
    assert trim_record_path(result, read_load_info(result)) == result / "lo2_files.parquet"
    # An info from before the rule, without the option: the old default of 100 lines.
    write_info(result, manifest=str(path), root=str(tree), options={})
    assert trim_settings(read_load_info(result)) == (100, None)
    # The manifest entry is null (older load info) but the tree has one: found via root.
    write_info(result, manifest=None, root=str(tree))
    assert find_manifest(result) == path
    # Real data: no manifest anywhere.
    path.unlink()
    assert find_manifest(result) is None


def test_find_manifest_without_info_and_explicit(tmp_path: Path) -> None:
    assert find_manifest(tmp_path) is None
    assert trim_settings(read_load_info(tmp_path)) == (0, None)
    explicit = tmp_path / "elsewhere.csv"
    explicit.write_text(manifest_csv())
    assert find_manifest(tmp_path, explicit) == explicit
    with pytest.raises(UserError, match="missing.csv"):
        find_manifest(tmp_path, tmp_path / "missing.csv")


def test_unreadable_load_info(tmp_path: Path) -> None:
    (tmp_path / "lo2_load_info.json").write_text("{not json")
    with pytest.raises(UserError, match="lo2_load_info.json"):
        find_manifest(tmp_path)


def test_unreadable_trim_record_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "lo2_files.parquet"
    bad.write_text("not parquet")
    with pytest.raises(UserError, match="lo2_files.parquet.*re-run the loader"):
        load_trim_record(bad)


def test_load_manifest_types(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(manifest_csv())
    df = load_manifest(path)
    assert df.height == len(MANIFEST)
    assert df.schema["timestamp"] == pl.Datetime("ms")
    assert df.schema["line_no"] == pl.Int64
    assert df["timestamp"][1] == at(12.0)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("run,test_case,service,line_no\nr1,correct,token,5\n", "lacks column"),
        (manifest_csv().replace(stamp(12.0), "12:00:00"), "bad timestamp"),
        (manifest_csv().replace(",150,", ",abc,"), "malformed manifest"),
        (manifest_csv().replace(",150,", ",0,"), "malformed row"),
        (manifest_csv().replace("background", "other"), "malformed row"),
        ("", "not a readable manifest"),
    ],
)
def test_malformed_manifest_names_file(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "broken_manifest.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=reason) as info:
        load_manifest(path)
    assert "broken_manifest.csv" in str(info.value)


def test_generated_sample_end_to_end(tmp_path: Path) -> None:
    """Generator timestamps and line numbers agree with the loader's sequences and record."""
    from loglead_lo2.detection.evaluations import ground_truth_input
    from loglead_lo2.generator import generate
    from loglead_lo2.loader import LoadOptions, run_loader

    tree = tmp_path / "tree"
    generate(tree, runs=1, scale=0.02, seed=7)
    result = tmp_path / "result"
    run_loader(LoadOptions(root=tree, output_dir=result, window=2.0,
                           save_base_sequences=True))
    path = find_manifest(result)
    assert path == (tree / "lo2_manifest.csv").resolve()
    assert trim_settings(read_load_info(result)) == (None, None)  # the start-up block rule
    truth = ground_truth_input(result)
    assert truth is not None and truth.files is not None
    assert truth.files_path == result / "lo2_files.parquet"
    assert "start-up block" in truth.line and "misses" in truth.line
    seqs = pl.read_parquet(result / "lo2_sequences.parquet")
    assert seqs["window"].max() > 0  # really windowed
    everything = truth.report(seqs, np.ones(seqs.height, dtype=bool))
    o = everything.overall
    # Error-case logs start mid-traffic: the start-up block rule trims none of their events.
    # Only full windows are kept: injected events in a case's partial tail window are in no
    # sequence (unplaced, a miss), all the others lie in a window of their log.
    target_keys = pl.DataFrame(list(target_service_map().items()),
                               schema=["test_case", "service"], orient="row")
    injected = (load_manifest(path).filter(pl.col("kind") == "injected")
                .join(target_keys, on=["test_case", "service"], how="semi")
                .with_row_index("event"))

    def in_windows(seqs: pl.DataFrame, first_line: int = 1) -> pl.DataFrame:
        """The injected events loaded (``line_no >= first_line``) into a kept window."""
        return injected.filter(pl.col("line_no") >= first_line).join(
            seqs.select("run", "test_case", "service", "window_start", "window_end"),
            on=["run", "test_case", "service"]).filter(
            (pl.col("timestamp") >= pl.col("window_start"))
            & (pl.col("timestamp") < pl.col("window_end"))).unique("event")

    placed = in_windows(seqs)
    assert o["unplaced_events"] == injected.height - placed.height and o["trimmed_events"] == 0
    assert o["surviving_events"] == placed.height and o["injected_events"] == injected.height
    assert o["with_trace"] > 0 and o["fp_rate_normal"] == 1.0
    assert o["recall"] == pytest.approx(
        placed.select("run", "test_case").n_unique() / o["with_trace"])
    assert NO_TRACE_CASE in o["cases_without_trace"]
    assert o["flag_rate_no_trace"] == 1.0 and o["n_no_trace"] > o["with_trace"]
    nothing = truth.report(seqs, np.zeros(seqs.height, dtype=bool))
    assert nothing.overall["recall"] == 0.0 and nothing.overall["fp_rate_normal"] == 0.0

    # The old rule: the first 20 lines of every log go, and with them some injected events.
    old = tmp_path / "old"
    run_loader(LoadOptions(root=tree, output_dir=old, window=2.0, init_lines_to_skip=20,
                           save_base_sequences=True))
    truth20 = ground_truth_input(old)
    assert truth20 is not None and (truth20.skip_lines, truth20.head) == (20, None)
    seqs20 = pl.read_parquet(old / "lo2_sequences.parquet")
    o20 = truth20.report(seqs20, np.ones(seqs20.height, dtype=bool)).overall
    # Same denominator as without trimming: trimmed events are misses, not left out.
    assert (o20["with_trace"], o20["injected_events"]) == (o["with_trace"], o["injected_events"])
    assert (o20["surviving_events"] + o20["trimmed_events"] + o20["unplaced_events"]
            == o20["injected_events"])
    placed20 = in_windows(seqs20, first_line=21)
    assert o20["surviving_events"] == placed20.height
    man = load_manifest(path)
    targets = pl.DataFrame(list(target_service_map().items()), schema=["test_case", "service"],
                           orient="row")
    survivors = (man.filter(pl.col("kind") == "injected")
                 .join(targets, on=["test_case", "service"], how="semi")
                 .group_by("run", "test_case").agg((pl.col("line_no") > 20).any().alias("hit")))
    assert o20["trimmed_events"] == int(
        man.filter(pl.col("kind") == "injected", pl.col("line_no") <= 20)
        .join(targets, on=["test_case", "service"], how="semi").height)
    assert int(survivors["hit"].sum()) >= o20["detected"] == placed20.select(
        "run", "test_case").n_unique()
