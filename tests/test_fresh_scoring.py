"""A saved bundle scores a freshly loaded copy of a hold-out run exactly as the evaluation did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from loglead_lo2.detection.cli import main as detect_main
from loglead_lo2.detection.scoring import score_bundle
from loglead_lo2.errors import UserError

MODELS = ("isolation_forest", "event_lr_words", "event_surprisal_words", "event_dt_words",
          "event_lr_templates", "event_surprisal_templates")
TEMPLATE_MODELS = ("event_lr_templates", "event_surprisal_templates")


@pytest.fixture(scope="module")
def evaluated(lo2_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared sample loaded in 5 s windows and evaluated with every model above."""
    from loglead_lo2.loader import LoadOptions, run_loader

    out = tmp_path_factory.mktemp("fresh") / "result"
    run_loader(LoadOptions(root=lo2_sample, output_dir=out, window=5.0, save_parquet=True))
    assert detect_main(["--root", str(out), "--models", ",".join(MODELS[1:])]) == 0
    return out


def _fresh_load(evaluated: Path, lo2_sample: Path, tmp_path: Path, **kw: object
                ) -> tuple[str, Path]:
    """The newest hold-out run's logs alone, loaded from scratch into a new folder."""
    from loglead_lo2.loader import LoadOptions, run_loader

    hold_runs = json.loads((evaluated / "metrics/detect_run.json").read_text())["split"][
        "holdout_runs"]
    run = hold_runs[-1]
    tree = tmp_path / "new_tree"
    if not tree.exists():
        shutil.copytree(lo2_sample / run, tree / run)
    fresh = tmp_path / f"new_out{len(list(tmp_path.glob('new_out*')))}"
    run_loader(LoadOptions(root=tree, output_dir=fresh, window=5.0, save_parquet=True,
                           **kw))  # type: ignore[arg-type]
    return run, fresh


def test_bundles_score_a_fresh_load_of_a_holdout_run(
        evaluated: Path, lo2_sample: Path, tmp_path: Path) -> None:
    models = evaluated / "metrics" / "models"
    run, fresh = _fresh_load(evaluated, lo2_sample, tmp_path,
                             drain_state=models / "lo2_drain_state.parquet")
    seqs = pl.read_parquet(fresh / "lo2_sequences_enhanced.parquet")
    assert seqs.height > 0 and set(seqs["run"]) == {run}
    for key in MODELS:
        preds = score_bundle(seqs, models / f"{key}.joblib", load_info=fresh)
        evaluation = pl.read_parquet(evaluated / f"metrics/{key}_predictions.parquet").filter(
            pl.col("run") == run, pl.col("split") == "holdout")
        both = evaluation.join(preds, on="seq_id", suffix="_new")
        assert both.height == evaluation.height == preds.height, key
        assert np.allclose(both["score"].to_numpy(), both["score_new"].to_numpy(),
                           rtol=0, atol=1e-12), key
        assert (both["pred"] == both["pred_new"]).all(), key
        assert preds["model"].unique().to_list() == [key]


def test_score_bundle_errors(evaluated: Path, tmp_path: Path) -> None:
    seqs = pl.read_parquet(evaluated / "lo2_sequences_enhanced.parquet")
    with pytest.raises(UserError, match="lack column"):
        score_bundle(seqs.drop("e_words"),
                     evaluated / "metrics" / "models" / "event_lr_words.joblib")
    with pytest.raises(UserError, match="not found"):
        score_bundle(seqs, tmp_path / "nope.joblib")
    own = score_bundle(seqs, evaluated / "metrics" / "models" / "event_lr_words.joblib",
                       threshold=0.5)
    assert (own["pred"] == (own["score"] >= 0.5).cast(pl.Int8)).all()


def test_metadata_names_every_part_by_hash(evaluated: Path) -> None:
    import yaml

    from loglead_lo2.detection.persistence import load_bundle, vectorizer_sha256
    from loglead_lo2.enhancers.normalize import rules_fingerprint

    for key in MODELS:
        path = evaluated / "metrics" / "models" / f"{key}.joblib"
        parts = yaml.safe_load(path.with_suffix(".yml").read_text())["parts"]
        bundle = load_bundle(path)
        assert parts["normaliser"]["rules_sha256"] == rules_fingerprint()
        assert parts["vectorizer"]["sha256"] == vectorizer_sha256(bundle.vectorizer)
        assert len(parts["estimator"]["params_sha256"]) == 64
        assert parts["vectorizer"]["item"] == bundle.vectorizer.item
    assert len(rules_fingerprint()) == 64


def test_template_models_refuse_a_load_with_another_drain_state(
        evaluated: Path, lo2_sample: Path, tmp_path: Path) -> None:
    """Without --drain-state the new load numbers its templates afresh: the ids differ from the
    training load's, and scoring refuses instead of returning wrong scores."""
    from loglead_lo2.detection.scoring import score_folder

    models = evaluated / "metrics" / "models"
    _, plain = _fresh_load(evaluated, lo2_sample, tmp_path)
    for key in TEMPLATE_MODELS:
        with pytest.raises(UserError, match="--drain-state"):
            score_folder(plain, models / f"{key}.joblib")
        seqs = pl.read_parquet(plain / "lo2_sequences_enhanced.parquet")
        with pytest.raises(UserError, match="unnamed load"):
            score_bundle(seqs, models / f"{key}.joblib")
    # word models do not depend on Drain state: any load will do
    assert score_folder(plain, models / "event_lr_words.joblib").height > 0


def test_drain_state_is_saved_beside_template_bundles(evaluated: Path) -> None:
    import yaml

    from loglead_lo2.enhancers.drain_state import read_state

    info = json.loads((evaluated / "lo2_load_info.json").read_text())["drain"]
    state = read_state(evaluated / "metrics" / "models" / "lo2_drain_state.parquet")
    assert state.info.sha256 == info["sha256"] and state.info.templates == info["templates"]
    for key in MODELS:
        part = yaml.safe_load(
            (evaluated / "metrics" / "models" / f"{key}.yml").read_text())["parts"]["drain"]
        if key in TEMPLATE_MODELS:
            assert part["sha256"] == info["sha256"] and part["file"] == "lo2_drain_state.parquet"
        else:
            assert part == "not used"
