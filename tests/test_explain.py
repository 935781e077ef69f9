"""Explainability phase (F): artifacts of the users' commands, guards, errors, explainers.

Data: seeded synthetic enhanced sequences (``tests/detection_data.py``) written to tmp_path;
``main([...])`` runs in-process with reduced sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from loglead_lo2.detection.evaluate import fit_model
from loglead_lo2.detection.registry import REGISTRY
from loglead_lo2.detection.split import run_grouped_split
from loglead_lo2.explain.cli import build_parser, main
from loglead_lo2.explain.false_positives import false_positives, rarest_tokens
from loglead_lo2.explain.nearest import nearest_rows, token_differences
from loglead_lo2.explain.shap_report import EXPLAINERS, ShapSettings, explain_model
from loglead_lo2.schema import write_parquet
from tests.detection_data import make_enhanced_sequences

SUP = "event_lr_words,event_dt_trigrams,event_xgb_words,sequence_shap_lr_words"
SECOND_COMMAND = [
    "--skip-if", "--sup-models", SUP, "--nn-source", "sequence_shap_lr_words",
    "--nn-top-k", "6", "--shap-sample", "20", "--shap-background", "16",
    "--shap-feature-threshold", "30", "--shap-cell-threshold", "2000000",
    "--sup-holdout-fraction", "0.2",
]
SHAP_KEYS = [k for k, s in REGISTRY.items() if s.shap != "none"]


def _data() -> pl.DataFrame:
    return make_enhanced_sequences(6, seed=7)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain_root")
    write_parquet(_data(), out / "lo2_sequences_enhanced.parquet", "sequences_enhanced")
    return out


@pytest.fixture(scope="module")
def second(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain_second") / "explainability"
    assert main(["--root", str(root), "--out-dir", str(out), *SECOND_COMMAND]) == 0
    return out


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_second_command_writes_every_artifact(second: Path) -> None:
    names = {p.name for p in second.iterdir()}
    expected = {"nn_mapping.csv", "nn_mapping.md", "summary.md", "summary.json"}
    for key in SUP.split(","):
        expected |= {f"shap_{key}_summary.png", f"shap_{key}_top_features.csv",
                     f"false_positives_{key}.csv"}
    assert expected <= names
    assert "false_positives_if.csv" not in names  # --skip-if
    for png in second.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


def test_summary_names_the_held_out_split(second: Path) -> None:
    s = _summary(second)
    split = s["split"]
    assert set(split["train_runs"]).isdisjoint(split["holdout_runs"])
    assert len(split["holdout_runs"]) == 2  # ceil(0.2 * 6)
    assert "held-out" in s["evaluated_on"]
    assert "HELD-OUT" in (second / "summary.md").read_text()
    assert "HELD-OUT" in (second / "nn_mapping.md").read_text()
    assert list(s["models"]) == SUP.split(",")
    for m in s["models"].values():
        assert m["holdout"]["split"] == "holdout"
        assert m["holdout"]["rows"] == split["holdout_rows"]
        assert m["threshold"]["value"] == 0.5


def test_nn_mapping_maps_top_scores_to_training_normals(second: Path) -> None:
    s = _summary(second)
    nn = pl.read_csv(second / "nn_mapping.csv")
    df = _data()
    assert 0 < nn.height <= 6
    assert nn["rank"].to_list() == list(range(1, nn.height + 1))
    assert nn["score"].is_sorted(descending=True)
    assert set(nn["run"]) <= set(s["split"]["holdout_runs"])
    neigh = df.filter(pl.col("seq_id").is_in(nn["neighbour_seq_id"].to_list()))
    assert neigh["normal"].all()
    assert set(neigh["run"]) <= set(s["split"]["train_runs"])
    assert ((nn["cosine_similarity"] >= -1) & (nn["cosine_similarity"] <= 1.000001)).all()
    # the obvious synthetic anomalies carry ERR codes no normal sequence has
    anomalies = nn.filter(pl.col("anomaly"))
    assert anomalies.height > 0
    assert all("ERR1" in t for t in anomalies["top_tokens"].to_list())
    # tokens listed as absent from the neighbour really are absent
    row = anomalies.row(0, named=True)
    neighbour_words = set(df.filter(pl.col("seq_id") == row["neighbour_seq_id"])["e_words"][0])
    absent = [item.rsplit(" (", 1)[0] for item in row["top_tokens"].split("; ")
              if item.endswith("/0)")]
    assert absent and not set(absent) & neighbour_words
    assert row["n_tokens_absent_in_neighbour"] >= len(absent)


def test_shap_tables_are_sorted_and_guarded(second: Path) -> None:
    s = _summary(second)
    for key in SUP.split(","):
        table = pl.read_csv(second / f"shap_{key}_top_features.csv")
        assert table.columns == ["rank", "feature", "mean_abs_shap", "mean_shap", "direction"]
        assert table.height > 0
        assert table["mean_abs_shap"].is_sorted(descending=True)
        assert (table["mean_abs_shap"] >= 0).all()
        assert set(table["direction"]) <= {"raises score", "lowers score", "none"}
        assert table.height <= 30  # --shap-feature-threshold
        assert s["models"][key]["shap"]["explainer"] == REGISTRY[key].shap
    lr = s["models"]["event_lr_words"]["shap"]
    assert lr["features_total"] > 30 and lr["features_explained"] == 30
    assert any("--shap-feature-threshold" in w for w in s["warnings"])


def test_false_positives_are_flagged_held_out_normals(second: Path) -> None:
    s = _summary(second)
    df = _data()
    for key in SUP.split(","):
        fps = pl.read_csv(second / f"false_positives_{key}.csv",
                          schema_overrides={"top_tokens": pl.String})
        assert fps.height == s["models"][key]["holdout"]["false_positives"]
        assert fps.height == s["models"][key]["holdout"]["fp"]
        rows = df.filter(pl.col("seq_id").is_in(fps["seq_id"].to_list()))
        assert rows["normal"].all()
        assert set(rows["run"]) <= set(s["split"]["holdout_runs"])
        assert (fps["score"] >= fps["threshold"]).all()


def test_first_command_with_isolation_forest(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ex"
    code = main(["--root", str(root), "--out-dir", str(out), "--if-contamination", "0.15",
                 "--nn-top-k", "5", "--shap-sample", "20",
                 "--sup-models", "sequence_shap_lr_words"])
    assert code == 0
    s = _summary(out)
    assert s["nn_mapping"]["source"] == "if"
    assert s["models"]["if"]["training"]["runs"] == s["split"]["train_runs"]
    assert "contamination=0.15" in s["models"]["if"]["threshold"]["source"]
    assert (out / "false_positives_if.csv").is_file()
    assert not (out / "shap_if_summary.png").exists()


def test_load_model_reuses_a_saved_forest(root: Path, tmp_path: Path) -> None:
    from loglead_lo2.detection.iforest import IFConfig, train_iforest
    from loglead_lo2.detection.persistence import save_bundle

    df = _data()
    split = run_grouped_split(df, fraction=0.2)
    res = train_iforest(split.frames(df)[0], IFConfig(holdout_fraction=0.0))
    bundle = tmp_path / "lo2_if.joblib"
    save_bundle(bundle, res.model, res.vectorizer)
    out = tmp_path / "ex"
    code = main(["--root", str(root), "--out-dir", str(out), "--load-model", str(bundle),
                 "--skip-shap", "--sup-models", "event_lr_words", "--nn-top-k", "3"])
    assert code == 0
    m = _summary(out)["models"]["if"]
    assert m["training"]["loaded_from"] == str(bundle)
    assert m["threshold"]["value"] == pytest.approx(-res.model.offset_)
    assert _summary(out)["detection_predictions"] is None  # no predictions file in root


def test_detection_predictions_are_compared(tmp_path: Path) -> None:
    from loglead_lo2.detection.iforest import IFConfig, score_with_bundle, train_iforest
    from loglead_lo2.detection.persistence import save_bundle

    df = _data()
    write_parquet(df, tmp_path / "lo2_sequences_enhanced.parquet", "sequences_enhanced")
    split = run_grouped_split(df, fraction=0.2)
    res = train_iforest(split.frames(df)[0], IFConfig(holdout_fraction=0.0))
    bundle = tmp_path / "if.joblib"
    save_bundle(bundle, res.model, res.vectorizer)
    preds = score_with_bundle(df, bundle).with_columns(
        split=pl.when(pl.col("run").is_in(split.test_runs)).then(pl.lit("holdout"))
        .otherwise(pl.lit("train")))
    write_parquet(preds, tmp_path / "lo2_if_predictions.parquet")
    assert main(["--root", str(tmp_path), "--load-model", str(bundle), "--skip-shap",
                 "--sup-models", "event_lr_words", "--nn-top-k", "3"]) == 0
    cmp_ = _summary(tmp_path / "explainability")["detection_predictions"]
    assert cmp_["shared_holdout_sequences"] == df.filter(
        pl.col("run").is_in(split.test_runs)).height
    assert cmp_["spearman"] == pytest.approx(1.0)
    assert cmp_["their_split_of_our_holdout"] == {"holdout": cmp_["shared_holdout_sequences"]}


def test_skip_shap_writes_no_shap_files(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ex"
    assert main(["--root", str(root), "--out-dir", str(out), "--skip-if", "--skip-shap",
                 "--sup-models", "event_lr_words", "--nn-top-k", "3"]) == 0
    assert not list(out.glob("shap_*"))
    assert _summary(out)["models"]["event_lr_words"]["shap"] == {"skipped": "--skip-shap"}
    assert (out / "nn_mapping.csv").is_file()


def test_existing_results_need_overwrite_and_stale_files_go(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ex"
    base = ["--root", str(root), "--out-dir", str(out), "--skip-if", "--nn-top-k", "3",
            "--shap-sample", "10"]
    assert main([*base, "--sup-models", "event_lr_words,sequence_shap_lr_words"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main([*base, "--sup-models", "event_lr_words"]) == 2
    assert (out / "shap_sequence_shap_lr_words_summary.png").is_file()  # untouched
    assert main([*base, "--sup-models", "event_lr_words", "--overwrite"]) == 0
    assert not list(out.glob("*sequence_shap_lr_words*"))
    assert (out / "notes.txt").read_text() == "mine"


def test_deterministic_given_the_seed(root: Path, tmp_path: Path) -> None:
    args = ["--root", str(root), "--skip-if", "--sup-models", "event_lr_words",
            "--nn-top-k", "4", "--shap-sample", "10", "--sup-holdout-shuffle"]
    assert main([*args, "--out-dir", str(tmp_path / "a")]) == 0
    assert main([*args, "--out-dir", str(tmp_path / "b")]) == 0
    for name in ("nn_mapping.csv", "shap_event_lr_words_top_features.csv",
                 "false_positives_event_lr_words.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


@pytest.mark.parametrize("argv, fragment", [
    (["--sup-models", "event_lr_words,nope"], "Valid keys: isolation_forest, event_lr_words"),
    (["--skip-if", "--nn-source", "if", "--sup-models", "event_lr_words"], "--nn-source if"),
    (["--skip-if", "--sup-models", "event_lr_words", "--nn-source", "event_dt_trigrams"],
     "choose one of: event_lr_words"),
    (["--skip-if", "--if-contamination", "0.1"], "--skip-if contradicts"),
    (["--skip-if", "--sup-models", "event_lr_words", "--sup-holdout-fraction", "1.5"],
     "--sup-holdout-fraction"),
])
def test_bad_options_exit_2(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            argv: list[str], fragment: str) -> None:
    assert main(["--root", str(root), "--out-dir", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert "error: " in err.splitlines()[0] and fragment in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_missing_input_names_file_and_command(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "lo2_sequences_enhanced.parquet not found" in err
    assert "run_lo2_loader.py" in err and len(err.strip().splitlines()) == 1


def test_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser("x").parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--root", "--out-dir", "--if-contamination", "--if-n-estimators", "--if-item",
                 "--if-numeric", "--load-model", "--skip-if", "--sup-models", "--nn-source",
                 "--nn-top-k", "--shap-sample", "--shap-background",
                 "--shap-feature-threshold", "--shap-cell-threshold", "--sup-holdout-fraction",
                 "--sup-holdout-min-groups", "--sup-holdout-shuffle", "--sample-seed",
                 "--skip-shap", "--overwrite"):
        assert flag in text


# -- library level ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    df = _data()
    return run_grouped_split(df, fraction=0.34).frames(df)


@pytest.mark.parametrize("key", SHAP_KEYS)
def test_every_shap_kind_of_the_registry_is_explained(
        key: str, frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    train, hold = frames
    spec = REGISTRY[key]
    assert spec.shap in EXPLAINERS
    fitted = fit_model(spec, train)
    outcome = explain_model(fitted, hold, train,
                            ShapSettings(sample=12, background=10, feature_threshold=40))
    assert outcome.explainer == spec.shap
    assert outcome.rows > 0 and 0 < outcome.features_explained <= 40
    assert outcome.table.height == outcome.features_explained
    assert outcome.table["mean_abs_shap"].is_sorted(descending=True)
    assert set(outcome.table["feature"]) <= set(fitted.vectorizer.feature_names_)


def test_linear_shap_is_weight_times_deviation(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    train, hold = frames
    fitted = fit_model(REGISTRY["sequence_lr_numeric"], train)
    big = 10_000
    outcome = explain_model(fitted, hold, train, ShapSettings(sample=big, background=big))
    X = fitted.vectorizer.transform(hold).toarray()
    B = fitted.vectorizer.transform(train).toarray()
    expected = np.abs(fitted.estimator.coef_[0] * (X - B.mean(axis=0))).mean(axis=0)
    got = dict(zip(outcome.table["feature"], outcome.table["mean_abs_shap"], strict=True))
    for name, value in zip(fitted.vectorizer.feature_names_, expected, strict=True):
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9)


def test_cell_threshold_reduces_the_rows(frames: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    train, hold = frames
    fitted = fit_model(REGISTRY["sequence_shap_lr_words"], train)
    outcome = explain_model(fitted, hold, train,
                            ShapSettings(sample=50, feature_threshold=20, cell_threshold=100))
    assert outcome.rows == 5
    assert any("--shap-cell-threshold" in w for w in outcome.warnings)


def test_nearest_rows_cosine_and_ties() -> None:
    q = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    pool = np.array([[0.0, 1.0, 1.0], [5.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    idx, sim = nearest_rows(q, pool, block=2)
    assert idx.tolist() == [1, 0, 0]
    assert sim == pytest.approx([1.0, 1.0, 0.0])


def test_token_differences_by_share() -> None:
    seqs = pl.DataFrame({"seq_id": ["a", "n"],
                         "tok": [["x", "x", "ERR1", "y"], ["x", "y", "y", "y", "z"]]})
    pairs = pl.DataFrame({"rank": [1], "seq_id": ["a"], "neighbour_seq_id": ["n"]})
    out = token_differences(pairs, seqs, "tok")
    assert out["n_absent"].to_list() == [1]
    assert out["text"].to_list() == ["ERR1 (1/0); x (2/1)"]


def test_rarest_tokens_and_false_positive_rule() -> None:
    ref = pl.DataFrame({"seq_id": ["r1", "r2"], "e_words": [["a", "b"], ["a", "a"]]})
    hold = pl.DataFrame({"seq_id": ["h1", "h2", "h3"], "run": ["r"] * 3,
                         "test_case": ["correct", "correct", "x_404"],
                         "service": ["token"] * 3, "normal": [True, True, False],
                         "e_words": [["a", "b", "new"], ["a"], ["a"]]})
    text = rarest_tokens(hold[:1], ref, "e_words")["top_tokens"].to_list()
    assert text == ["new (0/2); b (1/2); a (2/2)"]
    fps = false_positives(hold, np.array([0.9, 0.1, 0.95]), 0.5, ref, "e_words")
    assert fps["seq_id"].to_list() == ["h1"]  # h2 below threshold, h3 not normal
    assert fps["holdout_rank"].to_list() == [2]
