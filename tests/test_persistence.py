"""Model bundles: joblib tuple format, signed model.yml, refusals, registry bundles
(the trust model's planted cases: tests/test_bundle_trust.py)."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import polars as pl
import pytest
import yaml

from loglead_lo2.detection.cli import main
from loglead_lo2.detection.defaults import is_isolation_forest
from loglead_lo2.detection.iforest import IFConfig, IFResult, train_iforest
from loglead_lo2.detection.persistence import (
    find_metadata,
    load_bundle,
    read_metadata,
    save_bundle,
    save_bundle_pair,
    sha256_file,
    write_metadata,
)
from loglead_lo2.detection.registry import REGISTRY
from loglead_lo2.errors import UserError
from loglead_lo2.schema import write_parquet
from tests.detection_data import make_enhanced_sequences


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return make_enhanced_sequences(6, seed=5)


@pytest.fixture(scope="module")
def forest(data: pl.DataFrame) -> IFResult:
    return train_iforest(data, IFConfig(n_estimators=30, seed=1))


def test_bundle_is_a_plain_tuple(tmp_path: Path, forest: IFResult, data: pl.DataFrame) -> None:
    path = tmp_path / "m.joblib"
    sha = save_bundle(path, forest.model, forest.vectorizer)
    assert sha == sha256_file(path) and len(sha) == 64
    model, vectorizer = joblib.load(path)  # the users' one-liner
    X = vectorizer.transform(data)
    assert np.array_equal(model.score_samples(X),
                          forest.model.score_samples(forest.vectorizer.transform(data)))


def test_refuses_overwrite(tmp_path: Path, forest: IFResult) -> None:
    path = tmp_path / "m.joblib"
    save_bundle(path, forest.model, forest.vectorizer)
    with pytest.raises(UserError, match="--overwrite-model"):
        save_bundle(path, forest.model, forest.vectorizer)
    save_bundle(path, forest.model, forest.vectorizer, overwrite=True)


def _with_meta(tmp_path: Path, forest: IFResult, name: str = "lo2_if.joblib") -> Path:
    path = tmp_path / name
    save_bundle_pair(path, forest.model, forest.vectorizer,
                     lambda p, sha: {"model": {"key": "isolation_forest"},
                                     "threshold": {"value": 0.5}},
                     metadata_name="model.yml", overwrite=True)
    return path


def _resign(tmp_path: Path, path: Path, meta: dict) -> None:
    """Write changed metadata and sign it again (the user changing their own bundle)."""
    from loglead_lo2.detection.persistence import sign_bundle

    write_metadata(tmp_path / "model.yml", meta)
    sign_bundle(path, metadata_path=tmp_path / "model.yml")


def test_load_verified(tmp_path: Path, forest: IFResult) -> None:
    path = _with_meta(tmp_path, forest)
    loaded = load_bundle(path, expected_item="e_words", expected_key="isolation_forest",
                         model_check=is_isolation_forest)
    assert loaded.verified and loaded.threshold == 0.5
    assert loaded.metadata_path == tmp_path / "model.yml"
    meta = read_metadata(tmp_path / "model.yml")
    assert meta["bundle"]["file"] == "lo2_if.joblib" and len(meta["bundle"]["hmac_sha256"]) == 64
    assert meta["bundle"]["bytes"] == path.stat().st_size and len(meta["bundle"]["key_id"]) == 16


def test_load_unsigned_refused_unless_trusted(tmp_path: Path, forest: IFResult) -> None:
    path = tmp_path / "x.joblib"
    save_bundle(path, forest.model, forest.vectorizer)  # joblib only: unsigned
    with pytest.raises(UserError, match="not signed.*--trust-unsigned-bundle"):
        load_bundle(path)
    loaded = load_bundle(path, trust_unsigned=True)
    assert not loaded.verified and "WARNING" in loaded.notes[0]


def test_model_yml_for_another_file_is_not_used(tmp_path: Path, forest: IFResult) -> None:
    _with_meta(tmp_path, forest, "a.joblib")
    other = tmp_path / "b.joblib"
    save_bundle(other, forest.model, forest.vectorizer)
    assert find_metadata(other) is None
    assert find_metadata(tmp_path / "a.joblib") == tmp_path / "model.yml"
    with pytest.raises(UserError, match="describes a.joblib, not b.joblib"):
        load_bundle(other, metadata_path=tmp_path / "model.yml")


def test_tampered_file_refused_before_unpickling(tmp_path: Path, forest: IFResult) -> None:
    path = _with_meta(tmp_path, forest)
    joblib.dump({"not": "a model"}, path)  # replaced by another (valid) pickle
    with pytest.raises(UserError, match="sha256"):
        load_bundle(path)


@pytest.mark.parametrize("content", [b"plain text, not a pickle", None])
def test_foreign_files_refused(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "foreign.joblib"
    if content is None:
        joblib.dump({"a": 1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match="not signed"):
        load_bundle(path)
    with pytest.raises(UserError, match="not a (readable joblib model bundle|loglead-lo2)"):
        load_bundle(path, trust_unsigned=True)  # vouched for, still checked after unpickling


def test_vectorizer_and_model_checks(tmp_path: Path, forest: IFResult) -> None:
    path = _with_meta(tmp_path, forest)
    with pytest.raises(UserError, match="fitted on 'e_words', not 'e_trigrams'"):
        load_bundle(path, expected_item="e_trigrams")
    with pytest.raises(UserError, match="numeric columns"):
        load_bundle(path, expected_numeric=("seq_len",))
    with pytest.raises(UserError, match="expected 'event_lr_words'"):
        load_bundle(path, expected_key="event_lr_words")
    other = tmp_path / "lr.joblib"
    save_bundle_pair(other, object(), forest.vectorizer, lambda p, sha: {})
    with pytest.raises(UserError, match="not an IsolationForest"):
        load_bundle(other, model_check=is_isolation_forest)


def test_metadata_yaml_is_plain(tmp_path: Path) -> None:
    path = write_metadata(tmp_path / "m.yml", {"a": np.float64(0.25), "b": (1, 2),
                                                "c": np.array([1, 2]), "d": float("nan")})
    assert yaml.safe_load(path.read_text()) == {"a": 0.25, "b": [1, 2], "c": [1, 2], "d": None}


def test_save_sup_models_round_trip(tmp_path: Path, data: pl.DataFrame) -> None:
    write_parquet(data, tmp_path / "lo2_sequences_enhanced.parquet", "sequences_enhanced")
    out = tmp_path / "sup"
    keys = "event_lr_words,event_oov_words"
    args = ["--root", str(tmp_path), "--skip-if", "--models", keys, "--save-sup-models",
            str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "event_lr_words.joblib", "event_lr_words.yml", "event_oov_words.joblib",
        "event_oov_words.yml"]
    assert main(args) == 2  # refuses to overwrite
    for key in keys.split(","):
        loaded = load_bundle(out / f"{key}.joblib", expected_key=key)
        assert loaded.verified
        meta = loaded.metadata
        assert meta["model"]["key"] == key and meta["metrics"]["split"] == "holdout"
        hold = data.filter(pl.col("run").is_in(meta["evaluation"]["holdout_runs"]))
        scores = REGISTRY[key].scores(loaded.model, loaded.vectorizer.transform(hold))
        y = hold["anomaly"].to_numpy()
        from loglead_lo2.detection.evaluate import evaluate

        record = json.loads((tmp_path / "metrics" / f"{key}.json").read_text())
        m = evaluate(y, scores, threshold=record["threshold"]["value"])
        assert m["roc_auc"] == pytest.approx(record["metrics"]["roc_auc"])
        assert m["f1"] == pytest.approx(record["metrics"]["f1"])


def test_bundle_from_another_version(tmp_path: Path, forest: IFResult) -> None:
    from loglead_lo2.detection.persistence import FORMAT_VERSION, library_versions

    path = _with_meta(tmp_path, forest)
    meta = read_metadata(tmp_path / "model.yml")
    meta["versions"] = {**library_versions(), "scikit-learn": "0.24.2", "loglead-lo2": "0.0.1"}
    _resign(tmp_path, path, meta)
    loaded = load_bundle(path)
    drift = [n for n in loaded.notes if "other library versions" in n]
    assert drift and "scikit-learn 0.24.2 ->" in drift[0] and "loglead-lo2 0.0.1 ->" in drift[0]
    meta["bundle"]["format_version"] = FORMAT_VERSION + 1
    write_metadata(tmp_path / "model.yml", meta)  # unsigned edit: refused as such
    with pytest.raises(UserError, match="signature does not match"):
        load_bundle(path)
    with pytest.raises(UserError, match="format version"):
        load_bundle(path, trust_unsigned=True)
    meta["bundle"]["format_version"] = FORMAT_VERSION
    meta["versions"] = library_versions()
    _resign(tmp_path, path, meta)
    assert not [n for n in load_bundle(path).notes if "WARNING" in n]
