"""The bundle trust model (issue 10 §2): signed pairs, every planted case refused without
running code from the file, the pair commit, malformed YAML, the escape hatch, the key file."""

from __future__ import annotations

import hashlib
import os
import pathlib
import stat
import threading
from pathlib import Path
from typing import Any

import joblib
import polars as pl
import pytest
import yaml

from loglead_lo2.detection import pair_commit, signing
from loglead_lo2.detection.iforest import IFConfig, IFResult, train_iforest
from loglead_lo2.detection.persistence import (
    find_metadata,
    load_bundle,
    read_metadata,
    save_bundle,
    save_bundle_pair,
    sign_bundle,
    write_metadata,
)
from loglead_lo2.errors import UserError
from tests.detection_data import make_enhanced_sequences


class Planted:
    """A "bundle" whose unpickling creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return make_enhanced_sequences(6, seed=5)


@pytest.fixture(scope="module")
def forest(data: pl.DataFrame) -> IFResult:
    return train_iforest(data, IFConfig(n_estimators=20, seed=1))


def _meta(threshold: float = 0.5) -> Any:
    return lambda path, sha: {"model": {"key": "isolation_forest"},
                              "threshold": {"value": threshold}}


def _saved(folder: Path, forest: IFResult, threshold: float = 0.5,
           name: str = "lo2_if.joblib") -> Path:
    path = folder / name
    save_bundle_pair(path, forest.model, forest.vectorizer, _meta(threshold),
                     metadata_name="model.yml", overwrite=True)
    return path


def _plant(path: Path, marker: Path) -> bytes:
    """Replace ``path`` by a pickle that would touch ``marker``; returns its bytes."""
    joblib.dump(Planted(marker), path)
    return path.read_bytes()


def _refused(path: Path, marker: Path, match: str, **kwargs: Any) -> str:
    with pytest.raises(UserError, match=match) as info:
        load_bundle(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path.parent) in message  # names the file
    assert not marker.exists(), "code from the refused file ran"
    return message


def test_a_planted_pickle_would_run_code(tmp_path: Path) -> None:
    """The control: the planted file does run code when unpickled by hand."""
    marker = tmp_path / "ran"
    _plant(tmp_path / "x.joblib", marker)
    joblib.load(tmp_path / "x.joblib")
    assert marker.exists()


def test_saved_pair_is_signed_and_loads(tmp_path: Path, forest: IFResult) -> None:
    path = _saved(tmp_path, forest)
    block = read_metadata(tmp_path / "model.yml")["bundle"]
    key = signing.load_key()
    assert block["key_id"] == key.key_id and len(block["hmac_sha256"]) == 64
    loaded = load_bundle(path)
    assert loaded.verified and loaded.threshold == 0.5
    assert any("signature verified" in n for n in loaded.notes)


# --- the planted cases ------------------------------------------------------------------------


def test_load_model_of_an_unsigned_pickle_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _plant(tmp_path / "lo2_if.joblib", marker)
    _refused(tmp_path / "lo2_if.joblib", marker, "not signed")


def test_planted_stem_yml_does_not_override_model_yml(tmp_path: Path, forest: IFResult) -> None:
    path = _saved(tmp_path, forest)
    marker = tmp_path / "ran"
    sha = hashlib.sha256(_plant(path, marker)).hexdigest()
    (tmp_path / "lo2_if.yml").write_text(f"bundle:\n  sha256: {sha}\n")  # the 2-line plant
    _refused(path, marker, "lo2_if.yml and model.yml both describe it and disagree")
    (tmp_path / "model.yml").unlink()  # and alone it vouches for nothing
    _refused(path, marker, "lo2_if.yml describes no bundle file")
    (tmp_path / "lo2_if.yml").write_text(f"bundle:\n  file: lo2_if.joblib\n  sha256: {sha}\n")
    _refused(path, marker, "carries no signature")


def test_recomputed_sha256_is_not_a_signature(tmp_path: Path, forest: IFResult) -> None:
    path = _saved(tmp_path, forest)
    marker = tmp_path / "ran"
    planted = _plant(path, marker)
    meta = yaml.safe_load((tmp_path / "model.yml").read_text())
    meta["bundle"].update(sha256=hashlib.sha256(planted).hexdigest(), bytes=len(planted))
    write_metadata(tmp_path / "model.yml", meta)
    _refused(path, marker, "signature does not match")
    del meta["bundle"]["hmac_sha256"]
    write_metadata(tmp_path / "model.yml", meta)
    _refused(path, marker, "carries no signature")
    meta["bundle"]["hmac_sha256"] = "0" * 64
    write_metadata(tmp_path / "model.yml", meta)
    _refused(path, marker, "signature does not match")


def test_tampered_bundle_refused_by_sha256_first(tmp_path: Path, forest: IFResult) -> None:
    path = _saved(tmp_path, forest)
    marker = tmp_path / "ran"
    _plant(path, marker)
    _refused(path, marker, "sha256 .* does not match")
    _refused(path, marker, "sha256 .* does not match", trust_unsigned=True)  # never waived


def test_edited_threshold_is_detected(tmp_path: Path, forest: IFResult) -> None:
    path = _saved(tmp_path, forest)
    text = (tmp_path / "model.yml").read_text()
    (tmp_path / "model.yml").write_text(text.replace("value: 0.5", "value: 99.0"))
    _refused(path, tmp_path / "ran", "signature does not match")


def test_model_yml_naming_another_file_is_refused(tmp_path: Path, forest: IFResult) -> None:
    _saved(tmp_path, forest, name="a.joblib")
    marker = tmp_path / "ran"
    _plant(tmp_path / "b.joblib", marker)
    _refused(tmp_path / "b.joblib", marker, "not signed")  # model.yml is a.joblib's
    _refused(tmp_path / "b.joblib", marker, "describes a.joblib, not b.joblib",
             metadata_path=tmp_path / "model.yml", trust_unsigned=True)


def test_bundle_signed_with_another_key(tmp_path: Path, forest: IFResult,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path, forest)
    monkeypatch.setenv(signing.KEY_ENV, "another key, at least sixteen characters")
    _refused(path, tmp_path / "ran", "signed with another key")
    monkeypatch.setenv(signing.KEY_FILE_ENV, str(tmp_path / "nowhere" / "bundle.key"))
    monkeypatch.delenv(signing.KEY_ENV)
    _refused(path, tmp_path / "ran", "no bundle key")
    assert not (tmp_path / "nowhere").exists()  # loading never creates a key


def test_hash_and_unpickle_use_the_same_bytes(tmp_path: Path, forest: IFResult,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is swapped for a planted one right after it was read: the verified bytes
    are what is unpickled, so the swap changes nothing."""
    path = _saved(tmp_path, forest)
    marker = tmp_path / "ran"
    original = signing.read_regular

    def read_then_swap(where: Any, what: str, **kwargs: Any) -> bytes:
        out = original(where, what, **kwargs)
        if Path(where) == path:
            _plant(path, marker)
        return out

    monkeypatch.setattr(signing, "read_regular", read_then_swap)
    loaded = load_bundle(path)
    assert loaded.verified and type(loaded.model).__name__ == "IsolationForest"
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_non_regular_bundle_is_never_read(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "lo2_if.joblib"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    result: list[BaseException] = []

    def load() -> None:
        try:
            load_bundle(path, trust_unsigned=True)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "load_bundle waited on a non-regular file"
    assert isinstance(result[0], UserError) and "not a regular file" in str(result[0])


# --- malformed YAML ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "needle"), [
    ("threshold: {value: abc}\n", "'threshold.value' has the wrong type"),
    ("model: [1, 2]\n", "'model' must be a mapping"),
    ("- a\n- b\n", "expected a YAML mapping"),
    ("[" * 20000 + "]" * 20000 + "\n", "cannot read model metadata"),
    ("bundle: {file: lo2_if.joblib, bytes: abc}\n", "'bundle.bytes' has the wrong type"),
    ("training: {runs: [[1]]}\n", "'training.runs' has the wrong type"),
    ("\xff\xfe not utf-8", "cannot read model metadata"),
])
def test_malformed_metadata_is_one_line(tmp_path: Path, forest: IFResult, text: str,
                                        needle: str) -> None:
    path = _saved(tmp_path, forest)
    (tmp_path / "model.yml").write_bytes(text.encode("latin-1") if "\xff" in text
                                         else text.encode())
    for trust in (False, True):  # the escape hatch never skips the shape checks
        message = _refused(path, tmp_path / "ran", needle, trust_unsigned=trust)
        assert "Traceback" not in message


# --- the pair commit --------------------------------------------------------------------------


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs."""


def _fail_rename_of(monkeypatch: pytest.MonkeyPatch, name: str,
                    error: type[BaseException]) -> None:
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == name and pair_commit.STAGE_PREFIX in str(src):
            raise error("rename failed")
        real(src, dst)

    monkeypatch.setattr(pair_commit.os, "replace", replace)


def test_failed_yml_rename_keeps_the_old_pair(tmp_path: Path, forest: IFResult,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path, forest, threshold=0.1)
    with monkeypatch.context() as m:
        _fail_rename_of(m, "model.yml", OSError)
        with pytest.raises(OSError):
            _saved(tmp_path, forest, threshold=0.2)
    loaded = load_bundle(path)
    assert loaded.verified and loaded.threshold == 0.1  # the old pair, whole
    assert not pair_commit.pending(tmp_path)
    assert not list(tmp_path.glob(".lo2-bundle-*"))
    _saved(tmp_path, forest, threshold=0.2)  # the next save replaces it cleanly
    assert load_bundle(path).threshold == 0.2


def test_kill_at_yml_rename_is_rolled_forward(tmp_path: Path, forest: IFResult,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = _saved(tmp_path, forest, threshold=0.1)
    for step in ("load", "save"):
        with monkeypatch.context() as m:
            _fail_rename_of(m, "model.yml", Killed)
            m.setattr(pair_commit, "_put_back", lambda *a: (_ for _ in ()).throw(Killed()))
            with pytest.raises(Killed):
                _saved(tmp_path, forest, threshold=0.2)
        assert pair_commit.pending(tmp_path)  # new joblib beside the old yml + the journal
        if step == "load":  # the next load finishes the commit: the new pair, verified
            loaded = load_bundle(path)
            assert loaded.verified and loaded.threshold == 0.2
        else:  # the next save finishes it first, then writes its own pair
            _saved(tmp_path, forest, threshold=0.3)
            assert load_bundle(path).threshold == 0.3
        assert not pair_commit.pending(tmp_path)
        assert not list(tmp_path.glob(".lo2-bundle-*"))


def test_pair_save_refuses_existing_files(tmp_path: Path, forest: IFResult) -> None:
    path = tmp_path / "lo2_if.joblib"
    save_bundle_pair(path, forest.model, forest.vectorizer, _meta(), metadata_name="model.yml")
    with pytest.raises(UserError, match="--overwrite-model"):
        save_bundle_pair(path, forest.model, forest.vectorizer, _meta(),
                         metadata_name="model.yml")
    path.unlink()  # a model.yml of an earlier bundle is not replaced silently either
    with pytest.raises(UserError, match="model.yml exists"):
        save_bundle_pair(path, forest.model, forest.vectorizer, _meta(),
                         metadata_name="model.yml")


# --- the escape hatch -------------------------------------------------------------------------


def test_trust_unsigned_loads_with_a_warning(tmp_path: Path, forest: IFResult) -> None:
    path = tmp_path / "old.joblib"
    save_bundle(path, forest.model, forest.vectorizer)
    with pytest.raises(UserError, match="--trust-unsigned-bundle"):
        load_bundle(path)
    with signing.trusting_unsigned():
        loaded = load_bundle(path)
    assert not loaded.verified
    assert any("WARNING" in n and "--trust-unsigned-bundle" in n for n in loaded.notes)
    with pytest.raises(UserError):  # the setting ends with its block
        load_bundle(path)
    sign_bundle(path)  # vouched for once: signed with the user's key, no unpickling
    assert load_bundle(path).verified and find_metadata(path) == tmp_path / "old.yml"


def test_cli_load_model_flag(tmp_path: Path, data: pl.DataFrame, forest: IFResult,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from loglead_lo2.detection.cli import main
    from loglead_lo2.schema import write_parquet

    write_parquet(data, tmp_path / "lo2_sequences_enhanced.parquet", "sequences_enhanced")
    marker = tmp_path / "ran"
    _plant(tmp_path / "planted.joblib", marker)
    base = ["--root", str(tmp_path), "--phase", "if"]
    assert main([*base, "--load-model", str(tmp_path / "planted.joblib")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not signed" in err[0] and "--trust-unsigned-bundle" in err[0]
    assert not marker.exists()
    bundle = tmp_path / "old.joblib"
    save_bundle(bundle, forest.model, forest.vectorizer)
    assert main([*base, "--load-model", str(bundle), "--trust-unsigned-bundle"]) == 0
    out = capsys.readouterr()
    assert "WARNING" in out.out + out.err and "--trust-unsigned-bundle" in out.out + out.err
    assert main([*base, "--load-model", str(bundle)]) == 2  # not sticky


# --- the key ----------------------------------------------------------------------------------


def test_key_file_is_created_private_and_checked(tmp_path: Path, forest: IFResult,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "conf" / "bundle.key"
    monkeypatch.setenv(signing.KEY_FILE_ENV, str(key_file))
    models = tmp_path / "models"
    path = _saved(models, forest)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32
    assert load_bundle(path).verified
    key_file.chmod(0o666)
    message = _refused(path, tmp_path / "ran", "group- or world-writable")
    assert "chmod 600" in message
    with pytest.raises(UserError, match="group- or world-writable"):
        _saved(models, forest)
    key_file.chmod(0o600)
    inside = models / "bundle.key"
    inside.write_bytes(key_file.read_bytes())
    inside.chmod(0o600)
    monkeypatch.setenv(signing.KEY_FILE_ENV, str(inside))
    _refused(path, tmp_path / "ran", "lies inside the bundle folder")


def test_key_from_the_environment(tmp_path: Path, forest: IFResult,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(signing.KEY_ENV, "ab" * 32)
    path = _saved(tmp_path, forest)
    assert load_bundle(path).verified
    monkeypatch.setenv(signing.KEY_ENV, "short")
    with pytest.raises(UserError, match="at least 16"):
        load_bundle(path)
    assert "secret" not in repr(signing.BundleKey(b"x" * 16, "env"))


# --- the scan ---------------------------------------------------------------------------------


def _statuses(models: Path) -> dict[str, tuple[str, str]]:
    from loglead_lo2.tools.scan import scan_models

    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.extend(scan_models(models)), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the scan waited on a non-regular file"
    return {f.name: (f.status, f.detail) for f in out}


def test_scan_reports_instead_of_tracebacks(tmp_path: Path, forest: IFResult) -> None:
    models = tmp_path / "models"
    path = _saved(models, forest)
    assert _statuses(models)["lo2_if.joblib"][0] == "ok"
    assert "signature and sha256 verified" in _statuses(models)["lo2_if.joblib"][1]
    text = (models / "model.yml").read_text()
    (models / "model.yml").write_text(text.replace("value: 0.5", "value: 0.9"))
    assert _statuses(models)["lo2_if.joblib"][0] == "inconsistent"
    meta = yaml.safe_load(text)
    meta["bundle"]["bytes"] = "abc"
    write_metadata(models / "model.yml", meta)
    found = _statuses(models)
    assert found["model.yml"][0] == "invalid" and "bundle.bytes" in found["model.yml"][1]
    assert found["lo2_if.joblib"][0] == "unverified"
    path.unlink()
    path.symlink_to("/dev/zero")
    os.mkfifo(models / "other.joblib")
    (models / "dangling.joblib").symlink_to(tmp_path / "missing")
    (models / "lo2_if.yml").mkdir()
    found = _statuses(models)
    assert found["lo2_if.joblib"][0] == "invalid" and "device" in found["lo2_if.joblib"][1]
    assert found["other.joblib"][0] == "invalid" and "FIFO" in found["other.joblib"][1]
    assert found["dangling.joblib"][0] == "invalid"
    assert "cannot be read" in found["dangling.joblib"][1]
    assert found["lo2_if.yml"][0] == "invalid"
