"""Label modes, per-service models, windows, ground truth and the settings in every report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import joblib
import numpy as np
import polars as pl
import pytest

from loglead_lo2.detection.cli import main as detect_main
from loglead_lo2.detection.evaluations import GT_ABSENT
from loglead_lo2.detection.labels import (
    apply_label_mode,
    detect_windowing,
    label_lines,
    service_parts,
)
from loglead_lo2.explain.cli import main as explain_main
from loglead_lo2.schema import write_parquet
from tests.detection_data import make_enhanced_sequences

ENHANCED = "lo2_sequences_enhanced.parquet"
TOKEN_CASE = "verification_failed_pkce_400"  # token, ERR12041
USER_CASE = "register_user_400_user_exists"  # user, ERR12021
SETTINGS = ["label_mode", "split", "window", "per_service", "service"]


def key_frame(runs: int = 2, services: tuple[str, ...] = ("code", "token", "user"),
              cases: tuple[str, ...] = ("correct", TOKEN_CASE, USER_CASE)) -> pl.DataFrame:
    """A keys-only sequence table: every (run, case, service), loader-style labels."""
    rows = list(itertools.product([f"r-{i}" for i in range(runs)], cases, services))
    df = pl.DataFrame(rows, schema=["run", "test_case", "service"], orient="row")
    targets = {TOKEN_CASE: "token", USER_CASE: "user"}
    return df.with_columns(
        normal=pl.col("test_case") == "correct", anomaly=pl.col("test_case") != "correct",
        target_service=pl.col("test_case").replace_strict(targets, default=None,
                                                          return_dtype=pl.String))


# --- label modes ------------------------------------------------------------------------


def test_target_service_mode_keeps_non_target_rows_as_normal() -> None:
    df = key_frame()  # 2 runs x 3 cases x 3 services = 18 rows
    out, info = apply_label_mode(df, "target-service")
    # 2 x 3 correct rows, 2 x 2 target rows, 2 x (2 + 2) other services' rows: all kept
    assert (info.rows_in, info.rows_kept, info.dropped) == (18, 18, 0)
    assert info.groups == {"correct": 6, "target": 4, "non-target": 8}
    assert info.non_target_by_service == {"code": 4, "token": 2, "user": 2}
    assert (info.anomalous, info.normal) == (4, 14)
    non_target = out.filter(pl.col("row_group") == "non-target")
    assert non_target.height == 8 and not non_target["anomaly"].any()
    assert non_target["normal"].all() and (out["normal"] == ~out["anomaly"]).all()
    assert out.filter(pl.col("anomaly"))["service"].sort().to_list() == [
        "token", "token", "user", "user"]
    assert out.filter(pl.col("anomaly")).select(
        (pl.col("service") == pl.col("target_service")).all()).item()
    assert out.filter(pl.col("test_case") == "correct").height == 6
    assert not out.filter(pl.col("test_case") == "correct")["anomaly"].any()
    assert "6 correct, 4 target, 8 non-target rows" in label_lines(info)[-1]
    assert info.as_dict()["non_target_label"] == 0


def test_test_case_mode_keeps_every_row() -> None:
    out, info = apply_label_mode(key_frame(), "test-case")
    assert (info.rows_kept, info.dropped, info.anomalous, info.normal) == (18, 0, 12, 6)
    assert info.groups == {"correct": 6, "target": 4, "non-target": 8}
    assert info.as_dict()["non_target_label"] == 1
    assert out["anomaly"].to_list() == (out["test_case"] != "correct").to_list()


def test_missing_target_service_is_derived_from_the_map() -> None:
    df = key_frame().drop("target_service")
    out, info = apply_label_mode(df, "target-service")
    assert info.derived_target_service and "derived it from" in info.notes[0]
    assert (info.rows_kept, info.groups["non-target"], info.anomalous) == (18, 8, 4)
    assert set(out.filter(pl.col("anomaly"))["target_service"]) == {"token", "user"}


def test_unknown_error_case_is_non_target_and_named() -> None:
    df = key_frame(runs=1, cases=("correct", "not_a_case_500"))
    out, info = apply_label_mode(df, "target-service")
    assert (info.rows_kept, info.groups["non-target"], info.anomalous) == (6, 3, 0)
    assert any("not_a_case_500" in n for n in info.notes)


def test_service_parts_share_the_run_split_and_report_skips() -> None:
    df, _ = apply_label_mode(key_frame(runs=4, services=("code", "token", "user", "key")),
                             "target-service")
    parts = {p.service: p for p in service_parts(df, ["r-0", "r-1", "r-2"], ["r-3"], True)}
    assert sorted(parts) == ["code", "key", "token", "user"]
    for p in parts.values():
        assert set(p.rows["service"]) == {p.service}
        assert set(p.train["run"]) <= {"r-0", "r-1", "r-2"} and set(p.hold["run"]) == {"r-3"}
    # no error case targets code or key: nothing anomalous to evaluate there
    assert "no anomalous" in parts["code"].skip and "no anomalous" in parts["key"].skip
    assert parts["token"].skip is None and parts["user"].skip is None


def test_detect_windowing_from_column_and_load_info(tmp_path: Path) -> None:
    df = key_frame().with_columns(window=pl.lit(None, dtype=pl.Int32))
    assert detect_windowing(df, tmp_path).label == "none"
    win = df.with_columns(window=pl.lit(0, dtype=pl.Int32))
    assert detect_windowing(win, tmp_path).label == "yes"
    (tmp_path / "lo2_load_info.json").write_text(
        json.dumps({"windowed": True, "window_seconds": 10}))
    info = detect_windowing(win, tmp_path)
    assert info.windowed and info.label == "10s" and "lo2_load_info.json" in info.source


def test_macro_row_counts_a_silent_service_as_f1_zero() -> None:
    from loglead_lo2.detection.report import macro_record

    def rec(service: str, tp: int, fp: int, fn: int, auc: float) -> dict[str, object]:
        precision = tp / (tp + fp) if tp + fp else None
        f1 = None if precision is None else 2 * tp / (2 * tp + fp + fn)
        return {"model": "m", "service": service, "metrics": {
            "tp": tp, "fp": fp, "fn": fn, "tn": 5, "precision": precision,
            "recall": tp / (tp + fn), "f1": f1, "roc_auc": auc}}

    macro = macro_record("m", [rec("a", 4, 0, 0, 1.0), rec("b", 0, 0, 4, 0.5)])
    assert macro["service"] == "macro"
    assert macro["metrics"]["f1"] == pytest.approx(0.5)  # (1 + 0) / 2, not 1
    assert macro["metrics"]["precision"] == pytest.approx(1.0)  # defined for one service
    assert macro["macro_defined"]["per_metric"]["precision"] == 1
    assert macro["metrics"]["roc_auc"] == pytest.approx(0.75)
    assert macro["metrics"]["tp"] == 4 and macro["metrics"]["fn"] == 4


# --- the detection CLI ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sequences() -> pl.DataFrame:
    """8 runs; every error case has a sequence in each of code/token/user (non-target ones
    look normal but are labelled anomalous, as in LO2)."""
    return make_enhanced_sequences(8, non_target=True, seed=5)


@pytest.fixture()
def root(tmp_path: Path, sequences: pl.DataFrame) -> Path:
    write_parquet(sequences, tmp_path / ENHANCED, "sequences_enhanced")
    return tmp_path


def run(root: Path, *args: str) -> int:
    return detect_main(["--root", str(root), *args])


def test_help_lists_the_new_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        detect_main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--label-mode", "test-case", "target-service", "--per-service", "--manifest"):
        assert flag in out, flag
    with pytest.raises(SystemExit):
        explain_main(["--help"])
    assert "--label-mode" in capsys.readouterr().out


def test_target_service_run_counts_and_names_settings(
        root: Path, sequences: pl.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "--phase", "full", "--label-mode", "target-service",
               "--models", "event_lr_words") == 0
    out = capsys.readouterr().out
    non_target = sequences.filter((pl.col("test_case") != "correct")
                                  & (pl.col("service") != pl.col("target_service"))).height
    assert non_target > 0 and f"{non_target:,} non-target rows" in out
    assert "are normal and kept" in out
    assert GT_ABSENT in out
    metric_lines = [line for line in out.splitlines() if line.startswith("[Metrics]")]
    assert len(metric_lines) == 2
    assert all("labels target-service, window none, per-service no" in m
               for m in metric_lines)
    run_json = json.loads((root / "metrics/detect_run.json").read_text())
    assert run_json["labels"]["non_target_rows"] == non_target
    assert run_json["settings"]["label_mode"] == "target-service"
    assert run_json["ground_truth"]["note"] == GT_ABSENT
    board = pl.read_csv(root / "metrics/leaderboard.csv")
    assert board.select(SETTINGS).unique().rows() == [
        ("target-service", "holdout", "none", False, "all")]
    assert board["gt_recall"].null_count() == board.height  # no manifest
    assert "label mode `target-service`" in (root / "metrics/leaderboard.md").read_text()
    preds = pl.read_parquet(root / "lo2_if_predictions.parquet")
    assert preds.height == sequences.height  # every row is kept and scored
    assert preds.filter(pl.col("anomaly")).select(
        (pl.col("service") == pl.col("target_service")).all()).item()
    assert preds.filter((pl.col("test_case") != "correct")
                        & (pl.col("service") != pl.col("target_service"))
                        )["anomaly"].sum() == 0
    record = json.loads((root / "metrics/event_lr_words.json").read_text())
    assert record["settings"]["label_mode"] == "target-service"
    assert record["split"]["holdout_anomalous"] == int(
        preds.filter((pl.col("split") == "holdout") & pl.col("anomaly")).height)


def test_per_service_models_never_see_other_services(
        root: Path, sequences: pl.DataFrame, capsys: pytest.CaptureFixture[str]) -> None:
    sup, models = root / "sup", root / "models"
    assert run(root, "--phase", "full", "--per-service", "--models", "event_lr_words",
               "--save-sup-models", str(sup), "--save-model", str(models / "lo2_if.joblib"),
               "--dump-metadata", "--if-threshold-percentile", "99") == 0
    out = capsys.readouterr().out
    services = ["code", "token", "user"]
    for svc in services:
        assert (sup / svc / "event_lr_words.joblib").is_file()
        assert (sup / svc / "event_lr_words.yml").is_file()
        assert (models / svc / "lo2_if.joblib").is_file()
        assert (models / svc / "model.yml").is_file()
        assert f"service {svc}]" in out
    assert not (sup / "event_lr_words.joblib").exists()
    # vocabularies: each service's model only knows tokens of its own rows
    vocab = {svc: set(joblib.load(sup / svc / "event_lr_words.joblib")[1].vocabulary_)
             for svc in services}
    assert any("ERR12041" in t for t in vocab["token"])  # token's own error code
    assert not any("ERR12041" in t for t in vocab["code"] | vocab["user"])
    assert any("ERR12021" in t for t in vocab["user"])
    assert not any("ERR12021" in t for t in vocab["code"] | vocab["token"])
    record = json.loads((root / "metrics/event_lr_words.json").read_text())
    holdout = set(record["split"]["holdout_runs"])
    for svc in services:
        part = record["per_service"][svc]
        assert part["training"]["services"] == [svc]
        train = sequences.filter((pl.col("service") == svc) & ~pl.col("run").is_in(holdout))
        assert part["split"]["train_rows"] == train.height
        # fitted on the training runs minus the calibration runs of the threshold
        calibration = part["training"]["calibration_runs"]
        assert calibration and not set(calibration) & holdout
        assert part["training"]["rows"] == train.filter(
            ~pl.col("run").is_in(calibration)).height
    # the same run partition for every service
    assert {tuple(record["per_service"][s]["split"]["holdout_runs"]) for s in services} == {
        tuple(sorted(holdout))}
    board = pl.read_csv(root / "metrics/leaderboard.csv")
    assert board.height == 2 * (len(services) + 1)
    assert sorted(board.filter(pl.col("model") == "event_lr_words")["service"]) == [
        "code", "macro", "token", "user"]
    assert set(board["per_service"]) == {True}
    lr = board.filter(pl.col("model") == "event_lr_words")
    macro = lr.filter(pl.col("service") == "macro")["roc_auc"].item()
    assert macro == pytest.approx(lr.filter(pl.col("service") != "macro")["roc_auc"].mean())
    # a sequence's IF score comes from its own service's forest
    preds = pl.read_parquet(root / "lo2_if_predictions.parquet")
    assert preds.height == sequences.height
    token_if, token_vec = joblib.load(models / "token" / "lo2_if.joblib")
    tok = preds.filter(pl.col("service") == "token").sort("seq_id")
    rows = sequences.filter(pl.col("service") == "token").sort("seq_id")
    assert np.allclose(-token_if.score_samples(token_vec.transform(rows)),
                       tok["score_if"].to_numpy())
    # --load-model reads the per-service layout and reproduces the scores
    assert run(root, "--phase", "if", "--per-service",
               "--load-model", str(models / "lo2_if.joblib")) == 0
    again = pl.read_parquet(root / "lo2_if_predictions.parquet")
    assert again.sort("seq_id")["score_if"].to_list() == preds.sort("seq_id")[
        "score_if"].to_list()
    assert again.sort("seq_id")["pred_if_threshold"].to_list() == preds.sort("seq_id")[
        "pred_if_threshold"].to_list()
    # a missing service bundle is one clear error line
    (models / "user" / "lo2_if.joblib").unlink()
    capsys.readouterr()
    assert run(root, "--phase", "if", "--per-service",
               "--load-model", str(models / "lo2_if.joblib")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "service 'user'" in err[0] and "user/lo2_if.joblib" in err[0]


def test_per_service_skips_services_without_a_valid_split(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seqs = make_enhanced_sequences(6, services=("code", "key", "token", "user"),
                                   non_target=True, seed=9)
    write_parquet(seqs, tmp_path / ENHANCED, "sequences_enhanced")
    assert run(tmp_path, "--phase", "full", "--per-service", "--label-mode",
               "target-service", "--models", "event_lr_words") == 0
    out = capsys.readouterr().out
    assert "[Service] key: skipped (no anomalous training rows" in out
    run_json = json.loads((tmp_path / "metrics/detect_run.json").read_text())
    assert list(run_json["skipped_services"]) == ["key"]  # no error case targets key
    board = pl.read_csv(tmp_path / "metrics/leaderboard.csv")
    assert set(board["service"]) == {"code", "token", "user", "macro"}
    assert board.height == 2 * 4
    record = json.loads((tmp_path / "metrics/event_lr_words.json").read_text())
    assert list(record["skipped_services"]) == ["key"]
    assert sorted(record["per_service"]) == ["code", "token", "user"]


def hand_manifest(sequences: pl.DataFrame) -> pl.DataFrame:
    """One injected event per (run, error case, target service), at its sequence's start."""
    units = sequences.filter(pl.col("service") == pl.col("target_service"))
    return units.select(
        "run", "test_case", "service", line_no=pl.lit(500, dtype=pl.Int64),
        n_lines=pl.lit(1, dtype=pl.Int64),
        timestamp=pl.col("start_time").dt.strftime("%Y-%m-%dT%H:%M:%S%.3f"),
        kind=pl.lit("injected"), mechanism=pl.lit("A"), code=pl.lit("ERR12014"))


def test_hand_made_manifest_gives_ground_truth(
        root: Path, sequences: pl.DataFrame, tmp_path: Path) -> None:
    # one injected event per (run, error case, target service), at the sequence's start (no
    # lo2_load_info.json here: nothing is assumed trimmed)
    manifest = hand_manifest(sequences)
    path = tmp_path / "lo2_manifest.csv"
    manifest.write_csv(path)
    assert run(root, "--phase", "full", "--label-mode", "target-service", "--models",
               "event_lr_words", "--manifest", str(path)) == 0
    record = json.loads((root / "metrics/event_lr_words.json").read_text())
    gt = record["ground_truth"]["overall"]
    metrics = record["metrics"]
    # every held-out target sequence is one unit with a trace: recall is the model's recall
    assert gt["with_trace"] == metrics["support_pos"] > 0
    assert gt["recall"] == pytest.approx(metrics["recall"])
    assert gt["fp_rate_normal"] == pytest.approx(metrics["fp_rate_correct"])
    table = pl.read_csv(root / "metrics/ground_truth_event_lr_words.csv")
    assert table["service"].unique().to_list() == ["all"]
    assert table["detected"].sum() / table["units_with_trace"].sum() == pytest.approx(
        gt["recall"])
    board = pl.read_csv(root / "metrics/leaderboard.csv")
    row = board.filter(pl.col("model") == "event_lr_words")
    assert row["gt_recall"].item() == pytest.approx(gt["recall"])
    assert (root / "metrics/ground_truth_isolation_forest.csv").is_file()


# --- the generated sample: manifest from lo2_load_info.json, windows ------------------------


def test_generated_sample_ground_truth_per_service(
        lo2_result: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "metrics"
    assert detect_main(["--root", str(lo2_result), "--phase", "full", "--per-service",
                        "--label-mode", "target-service", "--models", "event_lr_words",
                        "--metrics-dir", str(metrics),
                        "--save-if", str(tmp_path / "p.parquet")]) == 0
    out = capsys.readouterr().out
    assert "[GroundTruth] manifest" in out and GT_ABSENT not in out
    assert "loader trimmed each file's start-up block" in out  # read from lo2_files.parquet
    table = pl.read_csv(metrics / "ground_truth_event_lr_words.csv")
    assert table.height > 0
    # per-service: each block holds only the cases that target that service
    assert table.filter(pl.col("service") != pl.col("target_service")).height == 0
    board = pl.read_csv(metrics / "leaderboard.csv")
    per = board.filter((pl.col("model") == "event_lr_words") & (pl.col("service") != "macro"))
    assert per["gt_recall"].null_count() == 0
    assert per["gt_recall"].min() >= 0 and per["gt_fp_rate"].max() <= 1


def test_windowed_sample_keeps_labels_per_window(
        lo2_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from loglead_lo2.loader.cli import main as load_main

    out = tmp_path / "w"
    assert load_main(["--root", str(lo2_sample), "--output-dir", str(out), "--save-parquet",
                      "--window", "10", "--quiet"]) == 0
    seqs = pl.read_parquet(out / ENHANCED, columns=["seq_id", "test_case", "service",
                                                    "target_service", "window"])
    assert seqs["window"].null_count() == 0 and seqs["window"].max() > 0
    capsys.readouterr()
    assert detect_main(["--root", str(out), "--phase", "full", "--label-mode",
                        "target-service", "--models", "event_lr_words"]) == 0
    text = capsys.readouterr().out
    assert "[Window] per-window rows of 10s" in text and "window 10s" in text
    preds = pl.read_parquet(out / "lo2_if_predictions.parquet")
    assert preds.height == seqs.height  # one row per window, non-target windows included
    assert preds["seq_id"].str.contains(r"__w\d{4}$").all()
    assert preds.select((pl.col("anomaly") == (pl.col("service") == pl.col("target_service"))
                         .fill_null(False)).all()).item()
    board = pl.read_csv(out / "metrics/leaderboard.csv")
    assert set(board["window"]) == {"10s"}
    assert (out / "metrics/ground_truth_event_lr_words.csv").is_file()


def test_explain_target_service_summary(root: Path, sequences: pl.DataFrame,
                                        tmp_path: Path) -> None:
    out = tmp_path / "explain"
    # explanations reuse the detection phase's models: detection first
    assert run(root, "--phase", "full", "--skip-if", "--models", "event_lr_words") == 0
    assert explain_main(["--root", str(root), "--out-dir", str(out), "--label-mode",
                         "target-service", "--skip-if", "--sup-models", "event_lr_words",
                         "--skip-shap", "--nn-top-k", "5"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    non_target = sequences.filter((pl.col("test_case") != "correct")
                                  & (pl.col("service") != pl.col("target_service"))).height
    assert summary["settings"]["label_mode"] == "target-service"
    assert summary["settings"]["window"] == "none"
    assert summary["settings"]["per_service"] is False
    assert summary["labels"]["non_target_rows"] == non_target
    assert summary["split"]["holdout_anomalous"] == summary["models"]["event_lr_words"][
        "holdout"]["tp"] + summary["models"]["event_lr_words"]["holdout"]["fn"]
    assert "label mode `target-service`" in (out / "summary.md").read_text()


def test_signature_table_per_error_case_with_and_without_ground_truth(
        root: Path, sequences: pl.DataFrame, tmp_path: Path) -> None:
    # without a manifest: the error cases' target-service hold-out rows
    assert run(root, "--phase", "full", "--models", "event_lr_words", "--skip-if") == 0
    table = pl.read_csv(root / "metrics/signature_recall.csv")
    hold_runs = json.loads((root / "metrics/detect_run.json").read_text())["split"][
        "holdout_runs"]
    preds = pl.read_parquet(root / "metrics/event_lr_words_predictions.parquet").filter(
        pl.col("split") == "holdout", pl.col("row_group") == "target")
    assert set(table["basis"]) == {"target-service rows (no manifest)"}
    assert sorted(table["test_case"]) == sorted(preds["test_case"].unique())
    for row in table.iter_rows(named=True):
        rows = preds.filter(pl.col("test_case") == row["test_case"])
        assert row["rows"] == rows.height
        assert row["recall_at_threshold"] == pytest.approx(rows["pred"].mean())
        assert 0 <= row["recall_at_1pct_fp"] <= 1
    assert "Settings: label mode `target-service`" in (
        root / "metrics/signature_recall.md").read_text()
    # with a manifest: units of (run, error case, target service) with injected events
    manifest = hand_manifest(sequences)
    manifest.write_csv(tmp_path / "lo2_manifest.csv")
    assert run(root, "--phase", "full", "--models", "event_lr_words", "--skip-if",
               "--manifest", str(tmp_path / "lo2_manifest.csv")) == 0
    table = pl.read_csv(root / "metrics/signature_recall.csv")
    gt = pl.read_csv(root / "metrics/ground_truth_event_lr_words.csv")
    assert set(table["basis"]) == {"ground truth (units with an injected event)"}
    joined = table.join(gt, on="test_case")
    assert (joined["recall_at_threshold"] == joined["recall"]).all()
    assert (joined["injected_events"] == joined["injected_events_right"]).all()
    expected = manifest.filter(pl.col("run").is_in(hold_runs)).group_by("test_case").len()
    assert dict(table.select("test_case", "injected_events").iter_rows()) == dict(
        expected.iter_rows())
    record = json.loads((root / "metrics/event_lr_words.json").read_text())
    assert record["ground_truth"]["overall"]["roc_auc_true"] is not None
    assert record["at_1pct_fp"]["normal_rows"] > 0


def test_read_load_info_lenient_and_strict(tmp_path: Path) -> None:
    from loglead_lo2.detection.labels import read_load_info
    from loglead_lo2.errors import UserError

    assert read_load_info(tmp_path) is None and read_load_info(tmp_path, strict=True) is None
    info = tmp_path / "lo2_load_info.json"
    for text, why in (("{not json", "Expecting"), ("[1, 2]", "JSON object"),
                      ("[" * 200_000 + "]" * 200_000, "nested too deeply")):
        info.write_text(text)
        assert read_load_info(tmp_path) is None
        with pytest.raises(UserError, match=why):
            read_load_info(tmp_path, strict=True)
    info.write_text('{"window_seconds": 5}')
    assert read_load_info(tmp_path, strict=True) == {"window_seconds": 5}
