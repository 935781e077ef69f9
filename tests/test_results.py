"""Result folders: one per detection run, latest pointers, lo2-clean."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loglead_lo2.detection.cli import main as detect
from loglead_lo2.explain.cli import main as explain
from loglead_lo2.outputs import FolderLock
from loglead_lo2.results import latest_run, list_runs, run_name
from loglead_lo2.schema import write_parquet
from loglead_lo2.tools.clean import main as clean
from tests.detection_data import make_enhanced_sequences

ENHANCED = "lo2_sequences_enhanced.parquet"
FAST = ["--skip-if", "--models", "event_lr_words"]


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_parquet(make_enhanced_sequences(8, seed=3), tmp_path / ENHANCED, "sequences_enhanced")
    return tmp_path


def _runs(root: Path) -> list[str]:
    return [r.name for r in list_runs(root)]


def test_run_name_names_time_features_and_labels() -> None:
    import datetime as dt

    when = dt.datetime(2026, 12, 2, 6, 15, 0, tzinfo=dt.timezone.utc)
    assert run_name(["e_words", None, "e_event_drain_id", "e_words"], "target-service",
                    when) == "20261202-061500_numeric+templates+words_target-service"


def test_each_run_keeps_its_folder_and_metrics_shows_the_latest(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert detect(["--root", str(root), *FAST]) == 0
    first = latest_run(root)
    assert first is not None and (root / "metrics").is_symlink()
    board = (first / "metrics" / "leaderboard.csv").read_text()
    assert detect(["--root", str(root), *FAST, "--label-mode", "test-case"]) == 0
    second = latest_run(root)
    assert second is not None and second != first and second.name.endswith("_test-case")
    assert (root / "metrics").resolve() == second / "metrics"
    assert (first / "metrics" / "leaderboard.csv").read_text() == board  # the first run stays
    assert (root / "metrics" / "leaderboard.csv").read_text() != board  # never the old numbers
    assert len(_runs(root)) == 2 and [r.latest for r in list_runs(root)] == [False, True]
    # explainability of the latest run goes into its folder; <root>/explainability shows it
    capsys.readouterr()
    assert explain(["--root", str(root), "--skip-if", "--sup-models", "event_lr_words",
                    "--skip-shap", "--nn-top-k", "3"]) == 0
    assert (root / "explainability").resolve() == second / "explainability"
    assert (second / "explainability" / "summary.json").is_file()
    assert not (first / "explainability").exists()
    from loglead_lo2.report.cli import main as report

    assert report(["--root", str(root), "-q"]) == 0
    assert (root / "report").resolve() == second / "report"
    assert (second / "report" / "report.html").is_file()
    assert str(root / "report" / "report.html") in capsys.readouterr().out
    # a new detection run: <root>/explainability and report no longer show the previous run's
    assert detect(["--root", str(root), *FAST]) == 0
    assert not (root / "explainability").exists() and (second / "explainability").is_dir()
    assert not (root / "report").exists() and (second / "report" / "report.html").is_file()


def test_an_explicit_metrics_dir_is_written_as_given(root: Path) -> None:
    assert detect(["--root", str(root), *FAST, "--metrics-dir", str(root / "mine")]) == 0
    assert (root / "mine" / "leaderboard.csv").is_file() and not (root / "runs").exists()


def test_an_older_versions_metrics_folder_is_moved_into_runs(root: Path) -> None:
    (root / "metrics").mkdir()
    (root / "metrics" / "leaderboard.csv").write_text("rank,model\n1,old\n")
    (root / "explainability").mkdir()
    (root / "explainability" / "summary.md").write_text("# old\n")
    assert detect(["--root", str(root), *FAST]) == 0
    names = _runs(root)
    assert len(names) == 2 and names[0].endswith("_earlier")
    earlier = root / "runs" / names[0]
    assert (earlier / "metrics" / "leaderboard.csv").read_text() == "rank,model\n1,old\n"
    assert (earlier / "explainability" / "summary.md").read_text() == "# old\n"
    assert not (root / "explainability").exists()


def test_a_failed_run_leaves_no_folder(root: Path) -> None:
    assert detect(["--root", str(root), "--models", "event_lr_words", "--manifest",
                   str(root / "missing.csv")]) == 2
    assert _runs(root) == []


def test_clean_lists_then_archives_or_removes_never_the_latest(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for mode in ("target-service", "test-case", "target-service"):
        assert detect(["--root", str(root), *FAST, "--label-mode", mode]) == 0
    names = _runs(root)
    assert len(names) == 3
    capsys.readouterr()
    assert clean(["--root", str(root), "--keep", "1"]) == 0  # a dry run
    out = capsys.readouterr().out
    assert "would remove 2" in out and "--apply" in out and _runs(root) == names
    with FolderLock(root / "runs" / names[0] / "metrics", exclusive=False):  # being read
        assert clean(["--root", str(root), "--keep", "1", "--apply"]) == 2
    assert "in use" in capsys.readouterr().err and _runs(root) == names
    archive = tmp_path / "archive"
    assert clean(["--root", str(root), "--keep", "2", "--archive", str(archive),
                  "--apply"]) == 0
    assert _runs(root) == names[1:] and (archive / names[0] / "metrics").is_dir()
    assert clean(["--root", str(root), "--keep", "0", "--apply"]) == 0
    assert _runs(root) == names[2:]  # the latest stays
    assert json.loads((root / "metrics" / "detect_manifest.json").read_text())["files"]
    assert clean(["--root", str(root), "--keep", "-1"]) == 2
    assert clean(["--root", str(tmp_path / "nowhere")]) == 2


def test_clean_older_than(root: Path) -> None:
    assert detect(["--root", str(root), *FAST]) == 0
    assert detect(["--root", str(root), *FAST, "--label-mode", "test-case"]) == 0
    old = list_runs(root)[0].path
    os.utime(old, (1_000_000_000, 1_000_000_000))
    assert clean(["--root", str(root), "--older-than", "30", "--apply"]) == 0
    assert not old.exists() and len(_runs(root)) == 1
