"""Detection at full size, forced on a small table: sampling caps, the memory guard's skip
(before a fit and before reading a token column), the simulated full-size table, determinism
and the save/load round trip of a sampled model. No timings are asserted."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from loglead_lo2.detection import budget
from loglead_lo2.detection.cli import main
from loglead_lo2.detection.evaluate import fit_model, score_model
from loglead_lo2.detection.registry import REGISTRY
from loglead_lo2.detection.simulate import replicate_sequences
from loglead_lo2.detection.split import run_grouped_split
from loglead_lo2.schema import write_parquet
from tests.detection_data import make_enhanced_sequences

ENHANCED = "lo2_sequences_enhanced.parquet"


@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    """About 2,000 rows: 36 copies of an 8-run generated table (288 runs)."""
    return replicate_sequences(make_enhanced_sequences(8, seed=3), rows=2000)


@pytest.fixture()
def root(tmp_path: Path, table: pl.DataFrame) -> Path:
    write_parquet(table, tmp_path / ENHANCED, "sequences_enhanced")
    return tmp_path


def _cap(monkeypatch: pytest.MonkeyPatch, key: str, **changes: object) -> None:
    monkeypatch.setitem(REGISTRY, key, dataclasses.replace(REGISTRY[key], **changes))


def _record(root: Path, key: str) -> dict:
    return json.loads((root / "metrics" / f"{key}.json").read_text())


def test_replicated_table_has_distinct_runs_and_ids(table: pl.DataFrame) -> None:
    base = make_enhanced_sequences(8, seed=3)
    assert table.height == 2000
    assert table["seq_id"].n_unique() == table.height
    assert 8 * 35 < table["run"].n_unique() <= 8 * 36  # the last copy is cut
    assert all(s.startswith(r) for s, r in zip(table["seq_id"], table["run"], strict=True))
    # same content: the first copy is the base table, the others its rows under new names
    assert table.head(base.height)["e_words"].to_list() == base["e_words"].to_list()
    split = run_grouped_split(table, fraction=0.2)
    assert not set(split.train_runs) & set(split.test_runs)
    assert len(replicate_sequences(base, copies=3)) == 3 * base.height


def test_stratified_sample_is_seeded_and_keeps_every_run(table: pl.DataFrame) -> None:
    a = budget.stratified_sample(table, 500, seed=7)
    assert np.array_equal(a, budget.stratified_sample(table, 500, seed=7))
    assert not np.array_equal(a, budget.stratified_sample(table, 500, seed=8))
    assert a.size == 500 and np.all(np.diff(a) > 0)
    per_run = table[a].group_by("run").len()["len"]
    assert per_run.min() >= 1  # every run keeps its share (7 rows a run, ~1.75 sampled)
    assert budget.stratified_sample(table, 5000, seed=7).size == table.height


def test_fit_plan_skip_is_one_line() -> None:
    frame = make_enhanced_sequences(8, seed=3)
    with pytest.raises(budget.ModelSkipped) as exc:
        budget.plan_fit(REGISTRY["event_lr_words"], frame.height, frame, seed=1, n_numeric=0,
                        budget=1000)
    message = str(exc.value)
    assert "\n" not in message and "memory guard's budget" in message
    plan = budget.plan_fit(REGISTRY["event_lr_words"], frame.height, frame, seed=1,
                           n_numeric=0, budget=None)
    assert not plan.sampled and "memory guard off" in plan.text()


def test_sampling_is_applied_and_stated(root: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _cap(monkeypatch, "event_lr_words", max_fit_rows=300)
    assert main(["--root", str(root), "--models", "event_lr_words,sequence_lr_numeric"]) == 0
    out = capsys.readouterr().out
    rec = _record(root, "event_lr_words")
    bounded = rec["training"]["bounded"]
    assert bounded["sampled"] and bounded["fit_rows"] == 300
    assert bounded["sample"] == {"seed": 42, "cap": 300, "stratified_by": "run"}
    assert rec["training"]["rows"] == 300
    assert f"fitted on 300 of {bounded['rows']:,} training rows" in rec["bounded"]
    assert "vocabulary capped at 100,000" in rec["bounded"]
    assert "fitted on 300 of" in out  # on the [Resource] line
    other = _record(root, "sequence_lr_numeric")
    assert not other["training"]["bounded"]["sampled"]
    board = pl.read_csv(root / "metrics" / "leaderboard.csv")
    row = board.filter(pl.col("model") == "event_lr_words")
    assert row["bounded"].item().startswith("fitted on 300 of")
    meta = yaml.safe_load((root / "metrics/models/event_lr_words.yml").read_text())
    assert meta["training"]["bounded"]["fit_rows"] == 300


def test_memory_guard_skips_one_model_and_the_others_run(
        root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _cap(monkeypatch, "event_dt_words", fit_bytes_per_entry=1e12)
    # the estimate before reading would skip it too; here the check before the fit does
    monkeypatch.setattr(budget, "input_skips", lambda *_a, **_k: {})
    assert main(["--root", str(root), "--models", "event_dt_words,event_lr_words"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "[Resource] event_dt_words: skipped" in line]
    assert len(lines) == 1 and "memory guard's budget" in lines[0]
    rec = _record(root, "event_dt_words")
    assert rec["skipped"] and rec["metrics"] is None
    assert rec["bounded"].startswith("skipped: fitting")
    assert not (root / "metrics/event_dt_words_predictions.parquet").exists()
    assert not (root / "metrics/models/event_dt_words.joblib").exists()
    assert _record(root, "event_lr_words")["metrics"]["roc_auc"] is not None
    assert (root / "metrics/event_lr_words_predictions.parquet").is_file()
    board = pl.read_csv(root / "metrics" / "leaderboard.csv")
    assert board.filter(pl.col("model") == "event_dt_words")["bounded"].item().startswith(
        "skipped:")
    md = (root / "metrics/leaderboard.md").read_text()
    assert "skipped: fitting" in md
    # the guard off fits it anyway
    assert main(["--root", str(root), "--models", "event_dt_words",
                 "--disable-memory-guard"]) == 0
    assert _record(root, "event_dt_words")["metrics"] is not None


def test_input_guard_counts_the_fit_of_the_capped_rows(table: pl.DataFrame,
                                                       tmp_path: Path) -> None:
    path = tmp_path / ENHANCED
    write_parquet(table, path, "sequences_enhanced")
    spec = REGISTRY["event_dt_trigrams"]
    entries = budget.column_entries([path], "e_trigrams") or 0
    read = int(entries * budget.INPUT_BYTES_PER_ENTRY)
    assert budget.input_skips([path], [spec], budget=read * 3) == {}
    skips = budget.input_skips([path], [dataclasses.replace(spec, fit_bytes_per_entry=1e9)],
                               budget=read * 3)
    assert "fitting 2,000 rows" in skips["event_dt_trigrams"]
    capped = dataclasses.replace(spec, max_fit_rows=10, fit_bytes_per_entry=1e3)
    assert budget.input_skips([path], [capped], budget=read * 3) == {}
    assert budget.input_skips([path], [spec], enabled=False, budget=1) == {}


def test_input_guard_skips_a_column_too_large_to_read(
        root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    entries = budget.column_entries([root / ENHANCED], "e_event_templates")
    ordered = budget.column_entries([root / ENHANCED], "e_event_drain_id")
    assert entries is not None and ordered is not None and 0 < entries < ordered
    assert budget.column_entries([root / ENHANCED], "no_such_column") is None
    monkeypatch.setattr(budget, "INPUT_BYTES_PER_ENTRY", 1e12)
    assert main(["--root", str(root), "--skip-if",
                 "--models", "event_lr_templates,sequence_lr_numeric"]) == 0
    out = capsys.readouterr().out
    assert sum("[Resource] event_lr_templates: skipped (reading e_event_templates" in line
               for line in out.splitlines()) == 1
    assert _record(root, "event_lr_templates")["skipped"].startswith("reading e_event_templates")
    assert _record(root, "sequence_lr_numeric")["metrics"] is not None


def test_sampled_fit_is_deterministic(table: pl.DataFrame) -> None:
    spec = dataclasses.replace(REGISTRY["event_surprisal_words"], max_fit_rows=250)
    train = table.filter(pl.col("run").is_in(run_grouped_split(table, 0.2).train_runs))
    a = fit_model(spec, train, seed=5)
    b = fit_model(spec, train, seed=5)
    c = fit_model(spec, train, seed=6)
    assert a.train_rows == b.train_rows == 250 and a.bounded["sampled"]
    assert np.array_equal(score_model(a, table), score_model(b, table))
    assert a.train_runs == b.train_runs
    assert a.bounded == b.bounded
    assert not np.array_equal(score_model(a, table), score_model(c, table)) or \
        a.train_runs != c.train_runs


def test_sampled_model_round_trips(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loglead_lo2.detection.scoring import score_bundle
    from loglead_lo2.schema import read_parquet

    _cap(monkeypatch, "event_lr_words", max_fit_rows=300)
    assert main(["--root", str(root), "--skip-if", "--models", "event_lr_words"]) == 0
    preds = pl.read_parquet(root / "metrics/event_lr_words_predictions.parquet")
    seqs = read_parquet(root / ENHANCED, "sequences_enhanced")
    scored = score_bundle(seqs, root / "metrics/models/event_lr_words.joblib")
    joined = preds.select("seq_id", "score").join(
        scored.select("seq_id", pl.col("score").alias("again")), on="seq_id")
    assert joined.height == preds.height
    assert np.allclose(joined["score"].to_numpy(), joined["again"].to_numpy(), rtol=0,
                       atol=1e-12)


def test_benchmark_writes_copies_and_prints_the_target(tmp_path: Path) -> None:
    from tests.benchmarks_import import load_benchmark

    bench = load_benchmark("bench_detect")
    base = make_enhanced_sequences(8, seed=3)
    glob = bench._write_copies(base, tmp_path, 3, 150)
    table = pl.read_parquet(glob)
    assert table.height == 150 and table["seq_id"].n_unique() == 150
    assert "e_words" in bench._columns(str(glob), "event_lr_words")
    assert "e_trigrams" not in bench._columns(str(glob), "event_lr_words")
    rows = [{"model": k, "wall_seconds": 1.0, "peak_rss_mib": 100.0, "rows": 150}
            for k in ("isolation_forest", *bench.DEFAULT_MODELS)]
    assert bench._target_line(rows).endswith("met on 150 rows")
    assert "not measured" in bench._target_line(rows[:2])
