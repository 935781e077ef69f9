"""The loader phase end to end on the generated sample: flags, outputs, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.loader.cli import main
from loglead_lo2.schema import read_parquet
from tests.conftest import SAMPLE_RUNS

ROOT = Path(__file__).resolve().parents[1]


def _load(tree: Path, out: Path, *flags: str) -> int:
    return main(["--root", str(tree), "--output-dir", str(out), "--quiet", *flags])


def test_full_load_outputs_follow_contract(lo2_result: Path) -> None:
    events = read_parquet(lo2_result / "lo2_events.parquet", "events")
    seqs = read_parquet(lo2_result / "lo2_sequences.parquet", "sequences")
    enh = read_parquet(lo2_result / "lo2_sequences_enhanced.parquet", "sequences_enhanced")
    metrics = read_parquet(lo2_result / "lo2_metrics.parquet", "metrics")
    assert seqs["seq_id"].to_list() == enh["seq_id"].to_list()
    assert seqs["seq_id"].n_unique() == seqs.height
    assert events["seq_id"].n_unique() == seqs.height
    assert int(seqs["seq_len"].sum()) == events.height
    assert set(seqs["service"]) <= {"client", "code", "key", "refresh-token", "service",
                                     "token", "user"}
    assert seqs["run"].n_unique() == SAMPLE_RUNS
    assert (enh["e_words_len"] == enh["e_words_counts"].list.sum()).all()
    assert (enh["e_trigrams_len"] == enh["e_trigrams_counts"].list.sum()).all()
    from collections import Counter

    for ids, bag, counts in enh.select("e_event_drain_id", "e_event_templates",
                                       "e_event_templates_counts").head(50).iter_rows():
        assert sorted(Counter(ids).items()) == list(zip(bag, counts, strict=True))
    assert (seqs["normal"] == (seqs["test_case"] == "correct")).all()
    assert (seqs["anomaly"] != seqs["normal"]).all()
    assert metrics.height > 0
    info = json.loads((lo2_result / "lo2_load_info.json").read_text())
    assert info["manifest"] and info["manifest"].endswith("lo2_manifest.csv")
    assert info["sequences"] == seqs.height
    assert (lo2_result / "lo2_drain_templates.parquet").is_file()


def test_default_trimming_removes_startup_lines(lo2_sample: Path, lo2_result: Path,
                                                tmp_path: Path) -> None:
    events = read_parquet(lo2_result / "lo2_events.parquet", "events")
    # start-up lines: the JVM line, main-thread lines, java.util.logging (non-logback) lines
    startup = (pl.col("m_message").str.contains("JAVA_TOOL_OPTIONS")
               | (pl.col("m_thread") == "main") | pl.col("m_level").is_null())
    assert events.filter(startup).height == 0
    files = pl.read_parquet(lo2_result / "lo2_files.parquet")
    assert files.height == SAMPLE_RUNS * 54 * 7
    # the block is trimmed where it is (correct, right after deployment), nothing elsewhere
    correct = files.filter(pl.col("test_case") == "correct")
    assert (correct["trimmed_lines"] > 0).all()
    assert (files.filter(pl.col("test_case") != "correct")["trimmed_lines"] == 0).all()
    # each correct sequence starts on the line right after its block
    first = (events.group_by("run", "test_case", "service")
             .agg(pl.col("line_no").min().alias("first"))
             .join(correct, on=["run", "test_case", "service"]))
    assert (first["first"] == first["trimmed_lines"] + 1).all()
    info = json.loads((lo2_result / "lo2_load_info.json").read_text())
    assert info["trim"]["rule"] == "startup_block"
    assert info["trim"]["per_test_case"]["correct"] == int(correct["trimmed_lines"].sum())
    assert info["trim"]["error_cases"] == {"lines": 0, "files": 0}

    assert _load(lo2_sample, tmp_path / "raw", "--init-lines-to-skip", "0", "--runs", "1",
                 "--save-events") == 0
    raw = read_parquet(tmp_path / "raw" / "lo2_events.parquet", "events")
    assert raw["line_no"].min() == 1
    assert raw.filter(startup)["test_case"].unique().to_list() == ["correct"]
    # the old rule, on request: the first 100 lines of every file, error cases included
    assert _load(lo2_sample, tmp_path / "old", "--init-lines-to-skip", "100", "--runs", "1",
                 "--save-events") == 0
    old = read_parquet(tmp_path / "old" / "lo2_events.parquet", "events")
    assert old["line_no"].min() > 100
    old_files = pl.read_parquet(tmp_path / "old" / "lo2_files.parquet")
    assert (old_files["trimmed_lines"] == old_files["lines"].clip(upper_bound=100)).all()
    old_info = json.loads((tmp_path / "old" / "lo2_load_info.json").read_text())
    assert old_info["trim"]["rule"] == "first_lines"
    assert old_info["options"]["init_lines_to_skip"] == 100


def test_selection_flags_change_output(lo2_sample: Path, tmp_path: Path) -> None:
    assert _load(lo2_sample, tmp_path / "a", "--runs", "2", "--errors-per-run", "2",
                 "--service-types", "code", "token", "--save-base-sequences") == 0
    seqs = read_parquet(tmp_path / "a" / "lo2_sequences.parquet", "sequences")
    assert seqs["run"].n_unique() == 2
    assert set(seqs["service"]) == {"code", "token"}
    per_run = seqs.group_by("run").agg(pl.col("test_case").n_unique())
    assert per_run["test_case"].to_list() == [3, 3]
    assert _load(lo2_sample, tmp_path / "b", "--single-service", "token",
                 "--single-error-type", "get_token_404", "--save-base-sequences") == 0
    seqs = read_parquet(tmp_path / "b" / "lo2_sequences.parquet", "sequences")
    assert set(seqs["service"]) == {"token"}
    assert set(seqs["test_case"]) == {"correct", "get_token_404"}


def test_head_and_window(lo2_sample: Path, tmp_path: Path) -> None:
    assert _load(lo2_sample, tmp_path / "h", "--runs", "1", "--head", "5",
                 "--save-base-sequences") == 0
    seqs = read_parquet(tmp_path / "h" / "lo2_sequences.parquet", "sequences")
    assert seqs["seq_len"].max() <= 5
    assert _load(lo2_sample, tmp_path / "w", "--runs", "1", "--window", "5",
                 "--save-base-sequences") == 0
    win = read_parquet(tmp_path / "w" / "lo2_sequences.parquet", "sequences")
    assert win["seq_id"].str.contains(r"__w\d{4}$").all()
    assert win["duration_sec"].max() < 5
    assert (win["window_end"] - win["window_start"] == timedelta(seconds=5)).all()
    correct = win.filter(pl.col("test_case") == "correct", pl.col("service") == "token")
    assert correct["window"].to_list() == list(range(12))  # 60 s in full 5 s windows


def test_run_batches_give_the_same_tables(lo2_sample: Path, lo2_result: Path,
                                          tmp_path: Path) -> None:
    assert _load(lo2_sample, tmp_path, "--enhancer-run-batch", "1", "--save-parquet",
                 "--save-events") == 0
    # the fixture's load has --load-metrics too: its metric features (mx_*) are not compared
    one = read_parquet(lo2_result / "lo2_sequences_enhanced.parquet").select(
        pl.exclude("^mx_.*$"))
    batched = read_parquet(tmp_path / "lo2_sequences_enhanced.parquet")
    assert one.drop("e_event_drain_id").equals(batched.drop("e_event_drain_id"))
    # Drain ids are shared across batches: same template text for the same events.
    ev1 = read_parquet(lo2_result / "lo2_events.parquet")
    ev2 = read_parquet(tmp_path / "lo2_events.parquet")
    assert ev1["e_message_normalized"].equals(ev2["e_message_normalized"])
    assert ev2["e_event_drain_id"].null_count() == 0
    # 0 = every run in one batch (the fixture used the default, 2 runs per batch)
    assert _load(lo2_sample, tmp_path / "all", "--enhancer-run-batch", "0",
                 "--save-parquet") == 0
    whole = read_parquet(tmp_path / "all" / "lo2_sequences_enhanced.parquet")
    assert whole.drop("e_event_drain_id").equals(one.drop("e_event_drain_id"))
    info = json.loads((tmp_path / "all" / "lo2_load_info.json").read_text())
    assert info["options"]["run_batch"] == 0


def test_same_seed_same_artifacts(lo2_sample: Path, tmp_path: Path) -> None:
    for name in ("x", "y"):
        assert _load(lo2_sample, tmp_path / name, "--runs", "2", "--errors-per-run", "3",
                     "--seed", "5", "--save-parquet") == 0
    x = read_parquet(tmp_path / "x" / "lo2_sequences_enhanced.parquet")
    y = read_parquet(tmp_path / "y" / "lo2_sequences_enhanced.parquet")
    assert x.equals(y)


def test_refuses_to_overwrite_without_flag(lo2_sample: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _load(lo2_sample, tmp_path, "--runs", "1", "--save-base-sequences") == 0
    before = (tmp_path / "lo2_sequences.parquet").read_bytes()
    assert _load(lo2_sample, tmp_path, "--runs", "1", "--save-base-sequences") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "lo2_sequences.parquet").read_bytes() == before
    assert _load(lo2_sample, tmp_path, "--runs", "1", "--save-base-sequences",
                 "--overwrite") == 0
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--root", "/nonexistent/lo2"], "folder not found"),
        (["--single-error-type", "nope"], "unknown error case"),
        (["--window", "0"], "--window"),
        (["--runs", "0"], "--runs"),
    ],
)
def test_bad_input_exits_2_with_one_line(lo2_sample: Path, tmp_path: Path, flags: list[str],
                                         message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--root", str(lo2_sample), "--output-dir", str(tmp_path), "--quiet"]
    assert main(args + flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_conflicting_service_flags_exit_2(lo2_sample: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--root", str(lo2_sample), "--single-service", "token",
              "--service-types", "code"])
    assert exc.value.code == 2


def test_entry_script_help_and_summary(lo2_sample: Path, tmp_path: Path) -> None:
    script = ROOT / "demo/lo2_e2e/run_lo2_loader.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                         text=True, check=True).stdout
    for flag in ("--root", "--runs", "--errors-per-run", "--allow-duplicates", "--no-duplicates",
                 "--single-error-type", "--single-service", "--service-types", "--head",
                 "--load-metrics", "--save-parquet", "--save-events", "--save-base-sequences",
                 "--enhancer-run-batch", "--output-dir", "--seed", "--init-lines-to-skip",
                 "--window"):
        assert flag in out
    res = subprocess.run([sys.executable, str(script), "--root", str(lo2_sample), "--runs", "1",
                          "--output-dir", str(tmp_path), "--save-base-sequences"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    for part in ("runs: 1 loaded of 3 available", "events:", "sequences:", "anomalous",
                 "services:", "test cases:", "skipped:", "downsampled:", "time:",
                 "trim: start-up block: ", "error cases: 0 lines)", "lo2_files.parquet"):
        assert part in res.stdout


def test_unwritable_output_dir_exits_1_with_one_line(lo2_sample: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _load(lo2_sample, blocker / "out", "--runs", "1", "--save-base-sequences") == 1
    err = capsys.readouterr().err.strip()
    assert "cannot access" in err and "Traceback" not in err and len(err.splitlines()) == 1
