"""Deployable thresholds, predictions of every model, cross-validation folds, precision@k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from loglead_lo2.detection.cli import main
from loglead_lo2.detection.cv import run_folds
from loglead_lo2.detection.evaluate import evaluate
from loglead_lo2.detection.registry import REGISTRY
from loglead_lo2.detection.runner import PREDICTION_COLUMNS
from loglead_lo2.detection.thresholds import (
    ThresholdSettings,
    calibration_split,
    fp_target_threshold,
)
from loglead_lo2.errors import UserError
from loglead_lo2.schema import write_parquet
from tests.detection_data import make_enhanced_sequences

ENHANCED = "lo2_sequences_enhanced.parquet"
MODELS = ("event_lr_words", "event_oov_words", "event_rarity_words", "sequence_lr_numeric")


@pytest.fixture(scope="module")
def sequences() -> pl.DataFrame:
    return make_enhanced_sequences(6, non_target=True, seed=5, metrics=True)


@pytest.fixture()
def root(tmp_path: Path, sequences: pl.DataFrame) -> Path:
    write_parquet(sequences, tmp_path / ENHANCED, "sequences_enhanced")
    return tmp_path


def run(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


# --- the threshold rule ------------------------------------------------------------------


def test_fp_target_threshold_flags_at_most_the_target_share() -> None:
    scores = np.arange(100, dtype=np.float64)  # 0..99
    t = fp_target_threshold(scores, 0.05)
    assert (scores >= t).sum() == 5 and 94 < t <= 95
    assert (scores >= fp_target_threshold(scores, 0.0)).sum() == 0
    # ties are never split: 10 rows share the top score, a 5 % target flags none of them
    tied = np.r_[np.zeros(90), np.ones(10)]
    assert (tied >= fp_target_threshold(tied, 0.05)).sum() == 0
    assert (tied >= fp_target_threshold(tied, 0.10)).sum() == 10
    # an OOV-like score that is 0 on every calibration row: only positive scores flag
    zeros = np.zeros(50)
    t0 = fp_target_threshold(zeros, 0.01)
    assert t0 > 0 and not (zeros >= t0).any() and 1e-9 >= t0
    with pytest.raises(ValueError):
        fp_target_threshold(np.zeros(0), 0.01)


def test_small_calibration_sets_are_named() -> None:
    from loglead_lo2.detection.thresholds import CalibrationSplit, from_calibration

    split = CalibrationSplit(("a",), ("b",), "")
    few = from_calibration(np.arange(6.0), ThresholdSettings(), split, in_sample=False)
    assert few.value > 5 and "only 6 calibration normal row(s)" in few.notes[0]
    many = from_calibration(np.arange(500.0), ThresholdSettings(), split, in_sample=False)
    assert many.notes == () and many.calibration_fp == pytest.approx(5 / 500)


def test_calibration_split_holds_back_the_newest_training_runs(
        sequences: pl.DataFrame) -> None:
    runs = sorted(sequences["run"].unique().to_list())
    train = sequences.filter(pl.col("run").is_in(runs[:5])).with_columns(
        normal=pl.col("test_case") == "correct")
    cal = calibration_split(train, ThresholdSettings(calibration_fraction=0.2))
    assert cal.calibration_runs == (runs[4],) and cal.fit_runs == tuple(runs[:4])
    assert calibration_split(train, ThresholdSettings(rule="model")).calibration_runs == ()
    one = train.filter(pl.col("run") == runs[0])
    single = calibration_split(one, ThresholdSettings())
    assert single.calibration_runs == () and "optimistic" in single.note
    with pytest.raises(UserError):
        ThresholdSettings(rule="nope")
    with pytest.raises(UserError):
        ThresholdSettings(fp_target=1.5)


def test_thresholds_come_from_calibration_normals_never_from_holdout(
        root: Path, sequences: pl.DataFrame, tmp_path: Path) -> None:
    assert run(root, "--models", ",".join(MODELS), "--skip-if", "--fp-target", "0.05") == 0
    for key in MODELS:
        preds = pl.read_parquet(root / f"metrics/{key}_predictions.parquet")
        cal = preds.filter((pl.col("split") == "calibration") & (pl.col("label") == 0))
        assert cal.height > 0
        threshold = preds["threshold"].unique().item()
        assert threshold == fp_target_threshold(cal["score"].to_numpy(), 0.05), key
        assert (cal["score"] >= threshold).mean() <= 0.05
        record = json.loads((root / f"metrics/{key}.json").read_text())
        assert record["threshold"]["rule"] == "fp-target"
        assert record["threshold"]["calibration_runs"] == sorted(cal["run"].unique())
        assert not set(record["threshold"]["calibration_runs"]) & set(
            record["split"]["holdout_runs"])
    # Replacing every hold-out normal row by an extreme one changes no threshold.
    hold_runs = json.loads((root / "metrics/detect_run.json").read_text())["split"][
        "holdout_runs"]
    before = {k: pl.read_parquet(root / f"metrics/{k}_predictions.parquet")["threshold"][0]
              for k in MODELS}
    is_hold = pl.col("run").is_in(hold_runs)
    weird = sequences.with_columns(
        e_words=pl.when(is_hold).then(pl.lit(["never", "seen", "words"]))
        .otherwise(pl.col("e_words")),
        e_words_counts=pl.when(is_hold).then(pl.lit([1, 1, 1], dtype=pl.List(pl.UInt32)))
        .otherwise(pl.col("e_words_counts").cast(pl.List(pl.UInt32))),
        seq_len=pl.when(is_hold).then(10_000).otherwise(pl.col("seq_len")))
    other = tmp_path / "other"
    other.mkdir()
    write_parquet(weird, other / ENHANCED, "sequences_enhanced")
    assert run(other, "--models", ",".join(MODELS), "--skip-if", "--fp-target", "0.05") == 0
    for key in MODELS:
        after = pl.read_parquet(other / f"metrics/{key}_predictions.parquet")["threshold"][0]
        assert after == before[key], key


def test_model_rule_uses_each_models_own_cutoff(root: Path) -> None:
    assert run(root, "--models", "event_lr_words,event_oov_words", "--skip-if",
               "--threshold", "model") == 0
    lr = json.loads((root / "metrics/event_lr_words.json").read_text())["threshold"]
    oov = json.loads((root / "metrics/event_oov_words.json").read_text())["threshold"]
    assert lr["rule"] == "model" and lr["value"] == 0.5
    assert oov["rule"] == "model" and oov["value"] == 0.5
    assert "threshold `model`" in (root / "metrics/leaderboard.md").read_text()


# --- predictions of every model ------------------------------------------------------------


def test_predictions_file_for_every_model_covers_every_row(
        root: Path, sequences: pl.DataFrame) -> None:
    assert run(root, "--models", ",".join(MODELS)) == 0
    run_json = json.loads((root / "metrics/detect_run.json").read_text())
    hold_runs = set(run_json["split"]["holdout_runs"])
    for key in (*MODELS, "isolation_forest"):
        preds = pl.read_parquet(root / f"metrics/{key}_predictions.parquet")
        assert set(PREDICTION_COLUMNS) <= set(preds.columns), key
        assert preds.height == sequences.height
        assert sorted(preds["seq_id"]) == sorted(sequences["seq_id"])
        assert set(preds.filter(pl.col("split") == "holdout")["run"]) == hold_runs
        assert not set(preds.filter(pl.col("split") != "holdout")["run"]) & hold_runs
        assert set(preds["split"]) == {"train", "calibration", "holdout"}
        assert (preds["pred"] == (preds["score"] >= preds["threshold"]).cast(pl.Int8)).all()
        expected = (pl.col("service") == pl.col("target_service")).fill_null(False)
        assert preds.join(sequences.select("seq_id", "service", "target_service"),
                          on=["seq_id", "service"]).select(
            (pl.col("label") == expected.cast(pl.Int8)).all()).item()
        # the hold-out figures of the record can be recounted from the file
        if key != "isolation_forest":
            hold = preds.filter(pl.col("split") == "holdout")
            metrics = json.loads((root / f"metrics/{key}.json").read_text())["metrics"]
            again = evaluate(hold["label"].to_numpy(), hold["score"].to_numpy(),
                             threshold=hold["threshold"][0],
                             groups=hold["row_group"].to_numpy())
            for name in ("roc_auc", "tp", "fp", "fp_rate_correct", "fp_rate_non_target"):
                assert metrics[name] == pytest.approx(again[name]), (key, name)


def test_fp_rates_are_split_by_row_group() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.9, 0.1, 0.8, 0.2, 0.95, 0.05])
    groups = np.array(["correct", "correct", "non-target", "non-target", "target", "target"])
    m = evaluate(y, s, threshold=0.5, groups=groups)
    assert (m["fp_rate_correct"], m["n_correct"]) == (0.5, 2)
    assert (m["fp_rate_non_target"], m["n_non_target"]) == (0.5, 2)
    assert m["fp"] == 2 and m["tp"] == 1


def test_precision_at_k_says_when_k_exceeds_the_rows() -> None:
    y = np.array([0, 1, 0, 1, 0, 0])
    s = np.arange(6, dtype=float)
    m = evaluate(y, s, threshold=3, k=200)
    assert m["k_rows"] == 6 and m["precision_at_k"] == pytest.approx(2 / 6)
    assert "exceeds the 6 evaluated rows" in m["k_note"]
    assert evaluate(y, s, threshold=3, k=2)["k_note"] is None


# --- cross-validation ----------------------------------------------------------------------


def test_run_folds_are_disjoint_and_cover_every_run_once() -> None:
    runs = [f"light-oauth2-data-{1700000000 + i}" for i in (5, 1, 3, 2, 4, 0, 6)]
    folds = run_folds(runs, 3)
    held = [r for f in folds for r in f.test_runs]
    assert sorted(held) == sorted(runs) and len(held) == len(set(held))
    for f in folds:
        assert not set(f.train_runs) & set(f.test_runs)
        assert set(f.train_runs) | set(f.test_runs) == set(runs)
    assert [len(f.test_runs) for f in folds] == [3, 2, 2]
    with pytest.raises(UserError):
        run_folds(runs, 8)
    with pytest.raises(UserError):
        run_folds(runs, 1)


def test_cv_reports_mean_and_spread_per_model(root: Path, sequences: pl.DataFrame) -> None:
    assert run(root, "--models", "event_lr_words,event_oov_words", "--cv", "3") == 0
    folds = pl.read_csv(root / "metrics/cv_folds.csv")
    assert set(folds["model"]) == {"event_lr_words", "event_oov_words", "isolation_forest"}
    for _, part in folds.group_by("model"):
        assert sorted(part["fold"]) == [1, 2, 3]
        held = [r for cell in part["holdout_runs"] for r in cell.split(",")]
        assert sorted(held) == sorted(sequences["run"].unique())  # each run once
    summary = pl.read_csv(root / "metrics/cv_leaderboard.csv")
    lr = summary.filter(pl.col("model") == "event_lr_words")
    fold_auc = folds.filter(pl.col("model") == "event_lr_words")["roc_auc"]
    assert lr["folds"].item() == 3
    assert lr["roc_auc_mean"].item() == pytest.approx(fold_auc.mean())
    assert lr["roc_auc_std"].item() == pytest.approx(fold_auc.std())
    assert "3-fold cross-validation" in (root / "metrics/cv_leaderboard.md").read_text()


def test_cv_flag_errors(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "--phase", "if", "--cv", "3") == 2
    assert "--cv" in capsys.readouterr().err
    assert run(root, "--cv", "50", "--models", "event_lr_words") == 2
    assert "only 6 run(s)" in capsys.readouterr().err


def test_registry_models_all_take_the_one_path(root: Path) -> None:
    """Every registry key fits, thresholds on calibration rows and writes predictions."""
    keys = ",".join(REGISTRY)
    assert run(root, "--models", keys, "--skip-if") == 0
    for key in REGISTRY:
        preds = pl.read_parquet(root / f"metrics/{key}_predictions.parquet")
        assert preds["score"].is_finite().all(), key
        assert json.loads((root / f"metrics/{key}.json").read_text())["threshold"][
            "rule"] == "fp-target"


def test_run_bundles_reproduce_the_predictions(root: Path, sequences: pl.DataFrame) -> None:
    """Every model of a run is saved under <metrics>/models/ and scores its rows again."""
    from loglead_lo2.detection.persistence import load_bundle

    assert run(root, "--models", "event_lr_words,event_surprisal_words") == 0
    for key in ("event_lr_words", "event_surprisal_words", "isolation_forest"):
        bundle = load_bundle(root / "metrics" / "models" / f"{key}.joblib")
        assert bundle.verified and bundle.metadata is not None
        preds = pl.read_parquet(root / f"metrics/{key}_predictions.parquet").sort("seq_id")
        rows = sequences.sort("seq_id")
        X = bundle.vectorizer.transform(rows)
        spec = REGISTRY.get(key)
        scores = (spec.scores(bundle.model, X) if spec is not None
                  else -bundle.model.score_samples(X))
        assert np.allclose(scores, preds["score"].to_numpy()), key
        assert bundle.threshold == pytest.approx(preds["threshold"][0]), key


def test_calibration_fraction_sets_the_calibration_runs(root: Path) -> None:
    assert run(root, "--models", "event_lr_words", "--skip-if",
               "--calibration-fraction", "0.5") == 0
    record = json.loads((root / "metrics/event_lr_words.json").read_text())
    train_runs = record["split"]["train_runs"]
    assert len(record["threshold"]["calibration_runs"]) == len(train_runs) // 2 + (
        len(train_runs) % 2)  # ceil(0.5 x training runs), the newest ones
    assert record["threshold"]["calibration_runs"] == sorted(train_runs)[-len(
        record["threshold"]["calibration_runs"]):]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--fp-target", "1.5"], "--fp-target must be in [0, 1)"),
    (["--calibration-fraction", "1"], "--calibration-fraction must be in [0, 1)"),
])
def test_bad_threshold_flags_give_one_line(root: Path, capsys: pytest.CaptureFixture[str],
                                           argv: list[str], needle: str) -> None:
    assert run(root, "--models", "event_lr_words", *argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]
