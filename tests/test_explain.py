"""Explainability phase (F): reuse of the detection run's models, --retrain, artifacts of the
users' commands, guards, errors, explainers.

Data: seeded synthetic enhanced sequences (``tests/detection_data.py``) written to tmp_path;
the detection phase (``lo2-detect``) runs first in-process, then ``main([...])`` explains its
models with reduced sizes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from loglead_lo2.detection.cli import main as detect_main
from loglead_lo2.detection.evaluate import fit_model
from loglead_lo2.detection.registry import DEFAULT_MODELS, REGISTRY
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
FIRST_COMMAND = ["--if-contamination", "0.15", "--nn-top-k", "5", "--shap-sample", "20"]
DETECTED = ",".join(dict.fromkeys([*SUP.split(","), *DEFAULT_MODELS]))
"""The models of the detection run both users' commands explain."""
SHAP_KEYS = [k for k, s in REGISTRY.items() if s.shap != "none" and k != "isolation_forest"]


def _data() -> pl.DataFrame:
    return make_enhanced_sequences(6, seed=7, metrics=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enhanced sequences + a default detection run (forest + DETECTED) in <root>/metrics."""
    out = tmp_path_factory.mktemp("explain_root")
    write_parquet(_data(), out / "lo2_sequences_enhanced.parquet", "sequences_enhanced")
    assert detect_main(["--root", str(out), "--models", DETECTED]) == 0
    return out


@pytest.fixture(scope="module")
def second(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain_second") / "explainability"
    assert main(["--root", str(root), "--out-dir", str(out), *SECOND_COMMAND]) == 0
    return out


@pytest.fixture(scope="module")
def first(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("explain_first") / "explainability"
    assert main(["--root", str(root), "--out-dir", str(out), *FIRST_COMMAND]) == 0
    return out


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _preds(root: Path, key: str) -> pl.DataFrame:
    name = key
    return pl.read_parquet(root / "metrics" / f"{name}_predictions.parquet")


def _copy(root: Path, tmp_path: Path) -> Path:
    """A writable copy of the module's root (enhanced sequences + detection run)."""
    out = tmp_path / "root"
    shutil.copytree(root, out, ignore=shutil.ignore_patterns("explainability"))
    return out


def test_second_command_writes_every_artifact(second: Path) -> None:
    names = {p.name for p in second.iterdir()}
    expected = {"nn_mapping.csv", "nn_mapping.md", "summary.md", "summary.json"}
    for key in SUP.split(","):
        expected |= {f"shap_{key}_summary.png", f"shap_{key}_top_features.csv",
                     f"false_positives_{key}.csv"}
    assert expected <= names
    assert "false_positives_isolation_forest.csv" not in names  # --skip-if
    for png in second.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


def test_summary_names_the_detection_runs_split(root: Path, second: Path) -> None:
    s = _summary(second)
    split = s["split"]
    run = json.loads((root / "metrics" / "detect_run.json").read_text())
    assert split["train_runs"] == run["split"]["train_runs"]
    assert split["holdout_runs"] == run["split"]["holdout_runs"]
    assert set(split["train_runs"]).isdisjoint(split["holdout_runs"])
    assert len(split["holdout_runs"]) == 2  # ceil(0.2 * 6)
    assert s["settings"] == run["settings"]  # label mode, window, threshold rule
    assert s["models_from"]["mode"] == "reuse"
    assert s["models_from"]["ignored_flags"] == ["--sup-holdout-fraction"]
    assert "held-out" in s["evaluated_on"]
    assert "HELD-OUT" in (second / "summary.md").read_text()
    assert "**reused**" in (second / "summary.md").read_text()
    assert "HELD-OUT" in (second / "nn_mapping.md").read_text()
    assert list(s["models"]) == SUP.split(",")
    for key, m in s["models"].items():
        assert m["holdout"]["split"] == "holdout"
        assert m["holdout"]["rows"] == split["holdout_rows"]
        record = json.loads((root / "metrics" / f"{key}.json").read_text())
        assert m["threshold"]["rule"] == record["threshold"]["rule"] == "fp-target"
        assert m["threshold"]["source"] == record["threshold"]["source"]
        assert m["training"]["runs"] == record["training"]["runs"]
        assert m["origin"]["bundle"] == str(root / "metrics" / "models" / f"{key}.joblib")


@pytest.mark.parametrize("command", ["first", "second"])
def test_everything_written_is_the_detection_phases_predictions(
        root: Path, command: str, request: pytest.FixtureRequest) -> None:
    """Scores, thresholds and flags of every file equal <metrics>/<key>_predictions.parquet."""
    out: Path = request.getfixturevalue(command)
    s = _summary(out)
    for key, m in s["models"].items():
        preds = _preds(root, key)
        hold = preds.filter(pl.col("split") == "holdout")
        threshold = preds["threshold"].unique().to_list()
        assert m["threshold"]["value"] == threshold[0] and len(threshold) == 1
        assert m["holdout"]["rows"] == hold.height
        assert m["holdout"]["flagged"] == int(hold["pred"].sum())
        name = key
        metrics = json.loads((root / "metrics" / f"{name}.json").read_text())["metrics"]
        for field in ("precision", "recall", "f1", "roc_auc", "pr_auc", "tp", "fp", "tn", "fn",
                      "fp_rate_correct"):
            assert m["holdout"][field] == metrics[field], (key, field)
        fps = pl.read_csv(out / f"false_positives_{key}.csv",
                          schema_overrides={"top_tokens": pl.String})
        expected = (hold.filter((pl.col("label") == 0) & (pl.col("pred") == 1))
                    .sort(["score", "seq_id"], descending=[True, False]))
        assert fps["seq_id"].to_list() == expected["seq_id"].to_list()
        assert fps["score"].to_list() == expected["score"].to_list()
        assert fps["threshold"].to_list() == expected["threshold"].to_list()
        assert m["holdout"]["false_positives"] == expected.height == m["holdout"]["fp"]
    nn = pl.read_csv(out / "nn_mapping.csv").join(
        _preds(root, s["nn_mapping"]["source"]), on="seq_id", how="left")
    assert nn["split"].to_list() == ["holdout"] * nn.height
    assert nn["score"].to_list() == nn["score_right"].to_list()
    assert nn["flagged"].to_list() == (nn["pred"] == 1).to_list()
    ranked = (_preds(root, s["nn_mapping"]["source"]).filter(pl.col("split") == "holdout")
              .sort(["score", "seq_id"], descending=[True, False]).head(nn.height))
    assert nn.sort("rank")["seq_id"].to_list() == ranked["seq_id"].to_list()


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


def test_shap_tables_are_sorted_and_guarded(root: Path, second: Path) -> None:
    s = _summary(second)
    for key in SUP.split(","):
        table = pl.read_csv(second / f"shap_{key}_top_features.csv")
        assert table.columns == ["rank", "feature", "mean_abs_shap", "mean_shap", "direction",
                                 "meaning"]
        assert table.height > 0
        assert table["mean_abs_shap"].is_sorted(descending=True)
        assert (table["mean_abs_shap"] >= 0).all()
        assert set(table["direction"]) <= {"raises score", "lowers score", "none"}
        assert table.height <= 30  # --shap-feature-threshold
        assert s["models"][key]["shap"]["explainer"] == REGISTRY[key].shap
    lr = s["models"]["event_lr_words"]["shap"]
    assert lr["features_total"] > 30 and lr["features_explained"] == 30
    assert any("--shap-feature-threshold" in w for w in s["warnings"])
    # background: the rows event_lr_words was fitted on (its split 'train'), at most 16
    fit_rows = _preds(root, "event_lr_words").filter(pl.col("split") == "train").height
    assert lr["background_rows"] == min(16, fit_rows)


def test_shap_is_the_loaded_estimators(root: Path, second: Path) -> None:
    """SHAP runs on the saved bundle: its linear SHAP values are the bundle's weights."""
    from loglead_lo2.detection.persistence import load_bundle

    bundle = load_bundle(root / "metrics" / "models" / "sequence_shap_lr_words.joblib")
    table = pl.read_csv(second / "shap_sequence_shap_lr_words_top_features.csv")
    names = list(bundle.vectorizer.feature_names_)
    coef = dict(zip(names, bundle.model.coef_[0], strict=True))
    # a word with a positive weight raises the score, a negative one lowers it
    for row in table.filter(pl.col("mean_abs_shap") > 1e-9).iter_rows(named=True):
        want = "raises score" if coef[row["feature"]] > 0 else "lowers score"
        assert row["direction"] == want, row


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


def test_first_command_reuses_the_forest_and_names_ignored_flags(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ex"
    assert main(["--root", str(root), "--out-dir", str(out), *FIRST_COMMAND]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[Reuse]")]
    assert len(lines) == 1
    assert f"reused the saved models of {root / 'metrics'}" in lines[0]
    assert "ignored --if-contamination 0.15 (detection: auto)" in lines[0]
    assert "--retrain" in lines[0]
    s = _summary(out)
    assert s["nn_mapping"]["source"] == "isolation_forest"
    assert list(s["models"]) == ["isolation_forest", *DEFAULT_MODELS]
    forest = json.loads((root / "metrics" / "isolation_forest.json").read_text())
    assert s["models"]["isolation_forest"]["training"]["runs"] == forest["training"]["runs"]
    assert s["models"]["isolation_forest"]["threshold"]["source"] == forest["threshold"]["source"]
    assert "contamination=0.15" not in json.dumps(s["models"]["isolation_forest"])
    assert s["if_config"]["contamination"] == "auto"  # detection's forest
    assert (out / "false_positives_isolation_forest.csv").is_file()
    assert not (out / "shap_isolation_forest_summary.png").exists()


def test_no_training_flag_no_ignored_list(root: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(root), "--out-dir", str(tmp_path / "ex"), "--skip-if",
                 "--skip-shap", "--sup-models", "event_lr_words", "--nn-top-k", "3"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[Reuse]")]
    assert len(lines) == 1 and "no training flag given" in lines[0]


def test_retrain_gives_the_detection_phases_scores(root: Path, second: Path,
                                                   tmp_path: Path) -> None:
    """--retrain runs the detection phase's own model path: with the same seed and settings
    every score, threshold and flag is exactly the detection run's, so the files match the
    reused ones byte for byte (SHAP values aside: same estimator, same rows)."""
    out = tmp_path / "re"
    assert main(["--root", str(root), "--out-dir", str(out), "--retrain",
                 *[a for a in SECOND_COMMAND if a != "--skip-if"]]) == 0
    s = _summary(out)
    assert s["models_from"]["mode"] == "retrain"
    assert "**retrained**" in (out / "summary.md").read_text()
    comparison = s["models_from"]["comparison"]
    assert list(comparison) == ["isolation_forest", *SUP.split(",")]
    for key, c in comparison.items():
        assert c["shared_holdout_rows"] == s["split"]["holdout_rows"], key
        assert c["max_abs_score_difference"] == 0.0 and c["same_flags"], key
        preds = _preds(root, key)
        assert s["models"][key]["threshold"]["value"] == preds["threshold"][0], key
    for name in ("nn_mapping.csv", *(f"false_positives_{k}.csv" for k in SUP.split(",")),
                 *(f"shap_{k}_top_features.csv" for k in SUP.split(","))):
        assert (out / name).read_text() == (second / name).read_text(), name
    assert s["split"]["holdout_runs"] == _summary(second)["split"]["holdout_runs"]


def test_retrain_applies_the_training_flags(root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "re"
    assert main(["--root", str(root), "--out-dir", str(out), "--retrain", "--skip-shap",
                 "--if-contamination", "0.15", "--threshold", "model",
                 "--sup-models", "event_lr_words", "--nn-top-k", "3"]) == 0
    text = capsys.readouterr().out
    assert "[Reuse]" not in text and "--if-contamination 0.15" in text
    s = _summary(out)
    assert s["models"]["isolation_forest"]["threshold"]["rule"] == "model"
    forest = _preds(root, "isolation_forest")
    assert s["models"]["isolation_forest"]["threshold"]["value"] != forest["threshold"][0]
    assert s["models"]["event_lr_words"]["threshold"]["value"] == 0.5  # the model's cut-off
    assert s["if_config"]["contamination"] == 0.15
    assert s["settings"]["threshold"] == "model"


def test_retrain_load_model_scores_a_saved_forest(root: Path, tmp_path: Path) -> None:
    from loglead_lo2.detection.iforest import IFConfig, train_iforest
    from loglead_lo2.detection.persistence import save_bundle

    df = _data()
    split = run_grouped_split(df, fraction=0.2)
    res = train_iforest(split.frames(df)[0], IFConfig(holdout_fraction=0.0))
    bundle = tmp_path / "lo2_if.joblib"
    save_bundle(bundle, res.model, res.vectorizer)
    out = tmp_path / "ex"
    args = ["--root", str(root), "--out-dir", str(out), "--retrain", "--load-model",
            str(bundle), "--skip-shap", "--sup-models", "event_lr_words", "--nn-top-k", "3"]
    assert main(args) == 2  # an unsigned bundle (save_bundle writes only the joblib)
    assert main([*args, "--trust-unsigned-bundle"]) == 0  # vouched for: loads, warned
    m = _summary(out)["models"]["isolation_forest"]
    assert m["training"]["loaded_from"] == str(bundle)
    assert m["threshold"]["value"] == pytest.approx(-res.model.offset_)


def test_missing_bundle_exits_2_with_one_line(root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(root, tmp_path)
    (copy / "metrics" / "models" / "event_xgb_words.joblib").unlink()
    assert main(["--root", str(copy), *SECOND_COMMAND]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert f"{copy / 'metrics' / 'models' / 'event_xgb_words.joblib'} not found" in err[0]
    assert f"run lo2-detect --root {copy} --skip-if --models {SUP} first" in err[0]
    assert "or pass --retrain" in err[0]
    assert not (copy / "explainability").exists()


@pytest.mark.parametrize("case, fragment", [
    ("no-run", "detect_run.json not found"),
    ("per-service", "detection ran --per-service"),
    ("not-run", "event_lsvm_words is not among the models of the last detection run"),
    ("predictions", "event_lr_words_predictions.parquet not found"),
])
def test_unusable_detection_runs_exit_2(root: Path, tmp_path: Path, case: str, fragment: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(root, tmp_path)
    metrics = copy / "metrics"
    argv = ["--root", str(copy), "--skip-if", "--sup-models", "event_lr_words"]
    if case == "no-run":
        (metrics / "detect_run.json").unlink()
    elif case == "per-service":
        run = json.loads((metrics / "detect_run.json").read_text())
        run["settings"]["per_service"] = True
        (metrics / "detect_run.json").write_text(json.dumps(run))
        (metrics / "detect_manifest.json").unlink()  # as an older version wrote it
    elif case == "not-run":
        for name in ("event_lsvm_words_predictions.parquet", "models/event_lsvm_words.joblib"):
            shutil.copy(metrics / name.replace("event_lsvm_words", "event_lr_words"),
                        metrics / name)
        argv[-1] = "event_lsvm_words"
    else:
        (metrics / "event_lr_words_predictions.parquet").unlink()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "--retrain" in err[0], err
    # --retrain needs none of these files
    if case != "not-run":
        assert main([*argv, "--retrain", "--skip-shap", "--nn-top-k", "3"]) == 0


@pytest.mark.parametrize("change", ["row dropped", "tokens edited"])
def test_changed_sequences_are_never_mixed(root: Path, tmp_path: Path, change: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    copy = _copy(root, tmp_path)
    df = _data()
    hold_run = json.loads((copy / "metrics" / "detect_run.json").read_text())[
        "split"]["holdout_runs"][0]
    if change == "row dropped":
        df = df.slice(1)
    else:  # same seq_ids and labels, other tokens in one hold-out sequence
        target = df.filter((pl.col("run") == hold_run) & pl.col("normal"))["seq_id"][0]
        noise = [f"NEWTOKEN{i}" for i in range(40)]
        df = df.with_columns(
            e_words=pl.when(pl.col("seq_id") == target)
            .then(pl.lit(noise, dtype=pl.List(pl.String))).otherwise(pl.col("e_words")),
            e_words_counts=pl.when(pl.col("seq_id") == target)
            .then(pl.lit([1] * 40, dtype=pl.List(pl.Int64)))
            .otherwise(pl.col("e_words_counts")))
    write_parquet(df, copy / "lo2_sequences_enhanced.parquet", "sequences_enhanced")
    assert main(["--root", str(copy), "--skip-if", "--sup-models", "event_lr_words"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed since detection" in err[0], err
    assert "re-run lo2-detect" in err[0] and "Traceback" not in err[0]
    why = "seq_id(s) not in the predictions" if change == "row dropped" else \
        "scores its hold-out rows differently"
    assert why in err[0]


def test_label_mode_comes_from_the_detection_run(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Reused models keep detection's label mode (non-target rows and all): a different
    --label-mode is named as ignored, and --retrain applies it."""
    seqs = make_enhanced_sequences(8, non_target=True, seed=5)
    write_parquet(seqs, tmp_path / "lo2_sequences_enhanced.parquet", "sequences_enhanced")
    assert detect_main(["--root", str(tmp_path), "--skip-if", "--models", "event_lr_words",
                        "--label-mode", "test-case"]) == 0
    capsys.readouterr()
    base = ["--root", str(tmp_path), "--label-mode", "target-service", "--skip-if",
            "--sup-models", "event_lr_words", "--skip-shap", "--nn-top-k", "5"]
    assert main([*base, "--out-dir", str(tmp_path / "reuse")]) == 0
    assert "--label-mode target-service (detection: test-case)" in capsys.readouterr().out
    assert main([*base, "--out-dir", str(tmp_path / "re"), "--retrain"]) == 0
    non_target = seqs.filter((pl.col("test_case") != "correct")
                             & (pl.col("service") != pl.col("target_service"))).height
    for name, mode in (("reuse", "test-case"), ("re", "target-service")):
        s = _summary(tmp_path / name)
        m = s["models"]["event_lr_words"]["holdout"]
        assert s["settings"]["label_mode"] == s["labels"]["mode"] == mode
        assert s["labels"]["non_target_rows"] == non_target > 0
        assert s["split"]["holdout_anomalous"] == m["tp"] + m["fn"]
        assert f"label mode `{mode}`" in (tmp_path / name / "summary.md").read_text()


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


def test_retrain_is_deterministic_given_the_seed(root: Path, tmp_path: Path) -> None:
    args = ["--root", str(root), "--skip-if", "--sup-models", "event_lr_words",
            "--nn-top-k", "4", "--shap-sample", "10", "--retrain", "--sup-holdout-shuffle"]
    assert main([*args, "--out-dir", str(tmp_path / "a")]) == 0
    assert main([*args, "--out-dir", str(tmp_path / "b")]) == 0
    for name in ("nn_mapping.csv", "shap_event_lr_words_top_features.csv",
                 "false_positives_event_lr_words.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


@pytest.mark.parametrize("argv, fragment", [
    (["--sup-models", "event_lr_words,nope"], "Valid keys: isolation_forest, event_lr_words"),
    (["--skip-if", "--nn-source", "if", "--sup-models", "event_lr_words"],
     "--nn-source isolation_forest"),
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
                 "--skip-shap", "--overwrite", "--metrics-dir", "--retrain", "--threshold",
                 "--fp-target", "--calibration-fraction", "--if-holdout-fraction"):
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


def test_shap_names_metric_features_readably(
        frames: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path) -> None:
    """The fused model's SHAP table says what each metric feature measures; the CPU rate,
    which carries the synthetic signal, ranks first and raises the score."""
    from loglead_lo2.detection.shap import write_shap

    train, hold = frames
    fitted = fit_model(REGISTRY["event_lr_words_metrics"], train)
    outcome = explain_model(fitted, hold, train, ShapSettings(sample=40, background=30))
    table = outcome.table
    metric = table.filter(pl.col("feature").str.starts_with("mx_"))
    assert set(metric["feature"]) == {"mx_cpu_rate", "mx_host_load1_mean", "mx_host_load1_max"}
    cpu = metric.filter(pl.col("feature") == "mx_cpu_rate").row(0, named=True)
    assert cpu["meaning"] == "metric: CPU use of the service's container (cores), rate over " \
        "the span"
    assert cpu["direction"] == "raises score"
    assert (table.filter(~pl.col("feature").str.starts_with("mx_"))["meaning"] == "").all()
    metrics_only = explain_model(fit_model(REGISTRY["metrics_lr"], train), hold, train,
                                 ShapSettings(sample=40, background=30))
    assert metrics_only.table["feature"][0] == "mx_cpu_rate"
    written = write_shap(outcome, tmp_path, held_out_runs=2)
    assert "rate over the span" in written[0].read_text()


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


def test_detection_files_changed_after_the_run_are_refused(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The detection run's manifest names every file it wrote: an edited detect_run.json
    or a detection run of an earlier load is refused instead of explained."""
    copy = _copy(root, tmp_path)
    metrics = copy / "metrics"
    argv = ["--root", str(copy), "--skip-if", "--sup-models", "event_lr_words"]
    run = json.loads((metrics / "detect_run.json").read_text())
    (metrics / "detect_run.json").write_text(json.dumps(run) + " ")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "replaced or damaged" in err[0]
    (metrics / "detect_run.json").write_text(json.dumps(run, indent=2) + "\n")
    manifest = json.loads((metrics / "detect_manifest.json").read_text())
    manifest["files"]["detect_run.json"]["bytes"] = (metrics / "detect_run.json").stat().st_size
    manifest["load_set_id"] = "0" * 64  # computed from another load than the one in root
    (metrics / "detect_manifest.json").write_text(json.dumps(manifest))
    (copy / "lo2_load_manifest.json").write_text(json.dumps(
        {"format": "loglead-lo2 output set", "phase": "load", "set_id": "1" * 64, "files": {}}))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "computed from an earlier load" in err[0]
