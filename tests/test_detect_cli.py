"""The detection CLI in-process: phases, artifacts, flags, errors, reports."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.cases import error_cases
from loglead_lo2.detection.cli import build_parser, main
from loglead_lo2.detection.registry import DEFAULT_MODELS, REGISTRY
from loglead_lo2.schema import write_parquet
from tests.detection_data import make_enhanced_sequences, make_events

ENHANCED = "lo2_sequences_enhanced.parquet"
REPORTS = {"metrics/leaderboard.csv", "metrics/leaderboard.md", "metrics/leakage.json",
           "metrics/per_test_case_recall.csv", "metrics/per_test_case_recall.md",
           "metrics/detect_run.json", "metrics/signature_recall.csv",
           "metrics/signature_recall.md", "metrics/detect_manifest.json"}
IF_FILES = {"lo2_if_predictions.parquet", "metrics/if_metrics.json", "metrics/if_metrics.csv",
            "metrics/isolation_forest.json",
            "metrics/isolation_forest_predictions.parquet",
            "metrics/models/isolation_forest.joblib", "metrics/models/isolation_forest.yml"}


@pytest.fixture(scope="module")
def sequences() -> pl.DataFrame:
    return make_enhanced_sequences(8, seed=3)


@pytest.fixture()
def root(tmp_path: Path, sequences: pl.DataFrame) -> Path:
    write_parquet(sequences, tmp_path / ENHANCED, "sequences_enhanced")
    return tmp_path


def files(root: Path) -> set[str]:
    """Every file under ``root`` but the output sets' locks, as the latest-run pointers show
    them (``metrics/...``; the run folders under ``runs/`` are left out)."""
    import os

    out = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        if Path(folder) == root and "runs" in dirs:
            dirs.remove("runs")
        out.update((Path(folder) / n).relative_to(root).as_posix() for n in names
                   if n != ".lo2.lock")
    return out


def run(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


def test_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--root", "--phase", "--sample-seed", "--predict-batch-size",
                 "--sup-holdout-fraction", "--sup-holdout-min-groups", "--sup-holdout-shuffle",
                 "--if-contamination", "--if-n-estimators", "--if-max-samples", "--skip-if",
                 "--if-item", "--if-numeric", "--save-if", "--save-enhancers",
                 "--enhancers-output-dir", "--overwrite-enhancers", "--save-model",
                 "--save-sup-models", "--load-model", "--overwrite-model",
                 "--if-holdout-fraction", "--if-threshold-percentile", "--report-precision-at",
                 "--report-fp-alpha", "--report-psi", "--metrics-dir", "--dump-metadata",
                 "--disable-memory-guard", "--models", "--list-models", "--label-mode",
                 "--per-service", "--manifest"):
        assert flag in out, flag


def test_defaults() -> None:
    args = build_parser().parse_args([])
    assert args.root == Path("demo/result/lo2")
    assert args.phase == "full"
    assert args.sup_holdout_fraction == 0.2
    assert args.metrics_dir is None  # -> <root>/metrics


def test_list_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    for key, spec in REGISTRY.items():
        assert key in out
        assert spec.kind in out
    assert "unsupervised" in out and "supervised" in out


def test_phase_if_artifacts(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root, "--phase", "if", "--if-threshold-percentile", "99") == 0
    assert files(root) == {ENHANCED} | IF_FILES | REPORTS
    preds = pl.read_parquet(root / "lo2_if_predictions.parquet")
    assert preds.height == 56
    assert {"seq_id", "score_if", "rank_if", "pred_if_threshold", "split"} <= set(preds.columns)
    assert preds.filter(pl.col("rank_if") == 1)["score_if"].min() == preds["score_if"].max()
    # a row in the evaluation hold-out never is a training row of the forest
    assert set(preds.filter(pl.col("split") == "holdout")["run"]) == set(
        json.loads((root / "metrics/detect_run.json").read_text())["split"]["holdout_runs"])
    out = capsys.readouterr().out
    assert "[Resource] isolation_forest" in out and "(holdout)" in out


def test_phase_full_artifacts_and_reports(root: Path) -> None:
    assert run(root, "--phase", "full", "--report-precision-at", "5",
               "--report-fp-alpha", "0.1") == 0
    model_files = {f"metrics/{k}{s}" for k in DEFAULT_MODELS
                   for s in (".json", "_predictions.parquet")} | {
        f"metrics/models/{k}{s}" for k in DEFAULT_MODELS for s in (".joblib", ".yml")}
    shap_files = {f"metrics/shap_sequence_shap_lr_words_{n}"
                  for n in ("top_features.csv", "summary.png")}  # SHAP in this phase
    assert files(root) == {ENHANCED} | IF_FILES | REPORTS | model_files | shap_files
    board = pl.read_csv(root / "metrics/leaderboard.csv")
    assert sorted(board["model"]) == sorted([*DEFAULT_MODELS, "isolation_forest"])
    assert set(board["split"]) == {"holdout"}
    assert board["rank"].to_list() == list(range(1, 6))
    assert board.filter(pl.col("model") != "isolation_forest")["roc_auc"].min() > 0.8
    assert board["fit_seconds"].min() >= 0 and board["score_seconds"].null_count() == 0
    assert "| rank | model |" in (root / "metrics/leaderboard.md").read_text()
    record = json.loads((root / "metrics/event_lr_words.json").read_text())
    assert record["metrics_split"] == "holdout"
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "precision_at_k",
            "fp_rate_at_alpha", "support_pos", "support_neg"} <= set(record["metrics"])
    assert not set(record["split"]["train_runs"]) & set(record["split"]["holdout_runs"])
    assert record["psi_train_vs_holdout"] is None  # only with --report-psi
    recall = pl.read_csv(root / "metrics/per_test_case_recall.csv")
    assert recall.height == 53 and sorted(recall["test_case"]) == error_cases()
    assert "event_lr_words@target" in recall.columns
    shap = json.loads((root / "metrics/sequence_shap_lr_words.json").read_text())["shap"]
    assert shap["split"] == "holdout" and shap["explainer"] == "linear" and shap["top"]
    table = pl.read_csv(root / "metrics/shap_sequence_shap_lr_words_top_features.csv")
    assert table["mean_abs_shap"].to_list() == sorted(table["mean_abs_shap"], reverse=True)


def test_skip_if_artifacts(root: Path) -> None:
    assert run(root, "--phase", "full", "--skip-if", "--models", "event_lr_words") == 0
    assert files(root) == {ENHANCED, "metrics/event_lr_words.json",
                           "metrics/event_lr_words_predictions.parquet",
                           "metrics/models/event_lr_words.joblib",
                           "metrics/models/event_lr_words.yml"} | REPORTS


def test_report_psi(root: Path) -> None:
    assert run(root, "--phase", "full", "--models", "event_lr_words", "--report-psi") == 0
    board = pl.read_csv(root / "metrics/leaderboard.csv")
    assert board["psi"].null_count() == 0 and board["psi"].min() >= 0


def test_save_if_csv_and_parquet(root: Path) -> None:
    assert run(root, "--phase", "if", "--save-if", str(root / "out/p.csv")) == 0
    assert run(root, "--phase", "if", "--save-if", str(root / "out/p.parquet")) == 0
    csv = pl.read_csv(root / "out/p.csv")
    pq = pl.read_parquet(root / "out/p.parquet")
    assert csv["score_if"].to_list() == pytest.approx(pq["score_if"].to_list())
    assert "lo2_if_predictions.parquet" not in files(root)
    assert run(root, "--phase", "if", "--save-if", str(root / "p.txt")) == 2


def test_save_load_round_trip_and_metadata(root: Path) -> None:
    bundle = root / "models/lo2_if.joblib"
    args = ("--phase", "if", "--if-threshold-percentile", "99", "--save-model", str(bundle),
            "--dump-metadata")
    assert run(root, *args) == 0
    first = pl.read_parquet(root / "lo2_if_predictions.parquet")
    import yaml

    meta = yaml.safe_load((root / "models/model.yml").read_text())
    assert {"created_at", "model", "features", "training", "threshold_holdout", "evaluation",
            "threshold", "metrics", "versions", "git_commit", "bundle"} <= set(meta)
    assert meta["threshold"]["percentile"] == 99
    assert meta["metrics"]["split"] == "holdout"
    assert meta["bundle"]["file"] == "lo2_if.joblib" and len(meta["bundle"]["sha256"]) == 64
    # refuses to overwrite the bundle, before training
    assert run(root, *args) == 2
    assert run(root, *args, "--overwrite-model") == 0
    assert run(root, "--phase", "if", "--load-model", str(bundle)) == 0
    second = pl.read_parquet(root / "lo2_if_predictions.parquet")
    assert second["score_if"].to_list() == first["score_if"].to_list()
    assert second["pred_if_threshold"].to_list() == first["pred_if_threshold"].to_list()


def test_load_tampered_bundle_fails_cleanly(root: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bundle = root / "models/lo2_if.joblib"
    assert run(root, "--phase", "if", "--save-model", str(bundle), "--dump-metadata") == 0
    with bundle.open("ab") as handle:
        handle.write(b"tampered")
    before = files(root)
    capsys.readouterr()
    assert run(root, "--phase", "if", "--load-model", str(bundle)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sha256" in err[0] and "Traceback" not in err[0]
    assert files(root) == before  # nothing written after a refused bundle


def test_user_command_e_chars_len(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = root / "models/lo2_if.joblib"
    assert run(root, "--phase", "full", "--if-contamination", "0.15", "--if-item", "e_words",
               "--if-numeric", "e_chars_len", "--save-model", str(bundle),
               "--report-precision-at", "200", "--report-fp-alpha", "0.01",
               "--dump-metadata", "--models", "event_lr_words") == 0
    assert "per-sequence SUM" in capsys.readouterr().out
    record = json.loads((root / "metrics/if_metrics.json").read_text())
    assert record["features"]["numeric"] == ["e_chars_len"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--models", "event_lr_words,nope"), "nope"),
        (("--if-numeric", "seq_len,m_message"), "available numeric"),
        (("--phase", "if", "--skip-if"), "nothing to do"),
        (("--skip-if", "--save-model", "m.joblib"), "--skip-if contradicts"),
        (("--phase", "if", "--models", "event_lr_words"), "--phase full"),
        (("--dump-metadata",), "--save-model"),
        (("--phase", "enhancers", "--models", "event_lr_words"), "enhancers"),
        (("--sup-holdout-fraction", "1.5"), "--sup-holdout-fraction"),
        (("--load-model", "missing.joblib"), "not found"),
        (("--phase", "enhancers", "--per-service"), "--per-service"),
        (("--manifest", "missing.csv"), "no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line(root: Path, capsys: pytest.CaptureFixture[str],
                                         args: tuple[str, ...], needle: str) -> None:
    assert run(root, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_phase_enhancers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path, "--phase", "enhancers") == 2
    err = capsys.readouterr().err
    assert "run_lo2_loader.py --root <LO2 tree> --save-parquet" in err
    write_parquet(make_events(4, seed=1), tmp_path / "lo2_events.parquet", "events")
    assert run(tmp_path, "--phase", "enhancers") == 0
    assert files(tmp_path) == {"lo2_events.parquet", ENHANCED, "lo2_drain_templates.parquet"}
    seqs = pl.read_parquet(tmp_path / ENHANCED)
    assert seqs.height == 4 * 7 and {"e_words", "e_trigrams", "e_event_drain_id"} <= set(
        seqs.columns)
    assert run(tmp_path, "--phase", "enhancers") == 2  # exists
    assert run(tmp_path, "--phase", "enhancers", "--overwrite-enhancers") == 0


def test_missing_enhanced_file_is_built_from_events(tmp_path: Path) -> None:
    write_parquet(make_events(5, seed=2), tmp_path / "lo2_events.parquet", "events")
    assert run(tmp_path, "--phase", "if") == 0
    assert ENHANCED not in files(tmp_path)  # not saved without --save-enhancers
    assert run(tmp_path, "--phase", "if", "--save-enhancers") == 0
    assert ENHANCED in files(tmp_path)


def test_no_honest_split_reports_nothing(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    write_parquet(make_enhanced_sequences(1), tmp_path / ENHANCED, "sequences_enhanced")
    assert run(tmp_path, "--phase", "full") == 0
    out = capsys.readouterr().out
    assert "no honest hold-out split" in out
    record = json.loads((tmp_path / "metrics/if_metrics.json").read_text())
    assert record["metrics"] is None
    assert not any(f"metrics/{k}.json" in files(tmp_path) for k in DEFAULT_MODELS)


def test_load_model_with_numeric_columns_as_users_chain_it(root: Path) -> None:
    """The set-up guide saves an IF with --if-numeric; `--phase if --load-model` must then
    read those columns although the command line does not name them."""
    bundle = root / "models/numeric_if.joblib"
    assert run(root, "--phase", "if", "--if-numeric", "seq_len,duration_sec,e_words_len",
               "--save-model", str(bundle), "--dump-metadata") == 0
    first = pl.read_parquet(root / "lo2_if_predictions.parquet")
    assert run(root, "--phase", "if", "--load-model", str(bundle)) == 0
    second = pl.read_parquet(root / "lo2_if_predictions.parquet")
    assert second["score_if"].to_list() == first["score_if"].to_list()
