"""Per-run parts: an interrupted load resumes to the same bytes, new runs are appended without
reloading old ones, ``--overwrite`` starts over, damaged parts are loaded again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.loader import runs as R
from loglead_lo2.loader.cli import main
from tests.conftest import load_digests

FLAGS = ("--save-parquet", "--save-events", "--save-base-sequences")


def _load(tree: Path, out: Path, *flags: str) -> int:
    return main(["--root", str(tree), "--output-dir", str(out), "--quiet", *FLAGS, *flags])


def _parts(out: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((out / "lo2_parts").iterdir())}


def _info(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / "lo2_load_info.json").read_text())


@pytest.fixture(scope="module")
def whole(lo2_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "out"
    assert _load(lo2_sample, out) == 0
    return out


def test_parts_are_one_folder_per_run(whole: Path, lo2_sample: Path) -> None:
    runs = sorted(p.name for p in lo2_sample.iterdir() if p.is_dir())
    assert list(_parts(whole)) == [f"part-{r}" for r in runs]
    part = _parts(whole)[f"part-{runs[0]}"]
    record = json.loads((part / "part.json").read_text())
    assert record["run"] == runs[0] and set(record["files"]) >= {
        "events.parquet", "sequences.parquet", "sequences_enhanced.parquet",
        "drain_state.parquet"}
    union = pl.read_parquet(whole / "lo2_parts" / "part-*" / "sequences_enhanced.parquet")
    assert union.equals(pl.read_parquet(whole / "lo2_sequences_enhanced.parquet"))
    assert _info(whole)["parts"] == {"folder": "lo2_parts", "runs": len(runs), "reused": 0,
                                     "loaded": len(runs)}


def test_interrupted_load_resumes_to_the_same_bytes(whole: Path, lo2_sample: Path,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    real = R.compute_run
    calls = []

    def dies_on_the_third_run(*a: object, **k: object) -> R.RunResult:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of the load
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(R, "compute_run", dies_on_the_third_run)
    assert _load(lo2_sample, out) == 130  # interrupted: exit 130, nothing committed
    assert len(_parts(out)) == 2 and not (out / "lo2_sequences_enhanced.parquet").exists()
    monkeypatch.setattr(R, "compute_run", real)
    assert _load(lo2_sample, out) == 0  # the same command finishes the job
    assert _info(out)["parts"]["reused"] == 2 and _info(out)["parts"]["loaded"] == 1
    assert load_digests(out) == load_digests(whole)


def test_new_runs_are_appended_without_reloading_old_ones(whole: Path, lo2_sample: Path,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(lo2_sample, tree)
    runs = sorted(p.name for p in tree.iterdir() if p.is_dir())
    newest = runs[-1]
    shutil.move(tree / newest, tmp_path / newest)
    out = tmp_path / "out"
    assert _load(tree, out) == 0
    first = pl.read_parquet(out / "lo2_sequences_enhanced.parquet",
                            columns=["seq_id", "e_event_drain_id"])
    shutil.move(tmp_path / newest, tree / newest)  # a new run was recorded
    assert _load(tree, out) == 2  # an existing load is never replaced without a flag
    loaded: list[str] = []
    real = R.compute_run
    monkeypatch.setattr(R, "compute_run", lambda opts, step, *a, **k: (
        loaded.append(step.run), real(opts, step, *a, **k))[1])
    assert _load(tree, out, "--append") == 0
    assert loaded == [newest]
    after = pl.read_parquet(out / "lo2_sequences_enhanced.parquet",
                            columns=["seq_id", "e_event_drain_id"])
    # old runs keep their template ids; here the new run sorts last, so the appended load
    # is byte for byte a load from scratch (see docs/loader.md for the other case)
    assert after.filter(pl.col("seq_id").is_in(first["seq_id"].to_list())).equals(first)
    digests = load_digests(out)
    assert {k: v for k, v in digests.items() if k != "lo2_files.parquet"} == {
        k: v for k, v in load_digests(whole).items() if k != "lo2_files.parquet"}


def test_overwrite_starts_over_and_drops_parts_of_runs_left_out(whole: Path, lo2_sample: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(whole, out)
    assert _load(lo2_sample, out, "--overwrite") == 0
    assert _info(out)["parts"]["reused"] == 0 and load_digests(out) == load_digests(whole)
    assert _load(lo2_sample, out, "--overwrite", "--runs", "1") == 0
    assert len(_parts(out)) == 1  # the parts are the load's runs


def test_a_damaged_part_is_loaded_again(whole: Path, lo2_sample: Path, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    shutil.copytree(whole, out)
    victim = list(_parts(out).values())[1] / "sequences_enhanced.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert _load(lo2_sample, out, "--append") == 0
    assert _info(out)["parts"] == {"folder": "lo2_parts", "runs": 3, "reused": 2, "loaded": 1}
    assert "does not match part.json" in caplog.text
    assert load_digests(out) == load_digests(whole)


def test_other_options_do_not_reuse_parts(whole: Path, lo2_sample: Path,
                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(whole, out)
    assert _load(lo2_sample, out, "--append", "--window", "5") == 0
    assert _info(out)["parts"]["reused"] == 0
    seqs = pl.read_parquet(out / "lo2_parts" / "part-*" / "sequences.parquet")
    assert seqs["seq_id"].str.contains("__w").all()


def test_unfinished_part_folders_are_cleaned(whole: Path, lo2_sample: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(whole, out)
    junk = out / "lo2_parts" / ".tmp-part-x-123"
    junk.mkdir()
    (junk / "events.parquet").write_bytes(b"half")
    assert _load(lo2_sample, out, "--append") == 0
    assert not junk.exists() and _info(out)["parts"]["reused"] == 3


def test_the_scan_checks_the_parts(whole: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from loglead_lo2.tools import scan

    out = tmp_path / "out"
    shutil.copytree(whole, out)

    def parts_finding(*flags: str) -> dict:  # type: ignore[type-arg]
        scan.main(["--root", str(out), "--models-dir", str(tmp_path / "models"), "--json",
                   *flags])
        found = json.loads(capsys.readouterr().out)["findings"]
        return next(f for f in found if f["name"] == "lo2_parts")

    assert parts_finding()["status"] == "ok" and "3 run part(s)" in parts_finding()["detail"]
    victim = list(_parts(out).values())[0] / "sequences.parquet"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the sha256 (--deep) sees it
    victim.write_bytes(bytes(data))
    assert parts_finding()["status"] == "ok"
    deep = parts_finding("--deep")
    assert deep["status"] == "inconsistent" and str(victim) in deep["detail"]
    (out / "lo2_parts" / ".tmp-part-x-1").mkdir()
    assert "unfinished part folder" in parts_finding()["detail"]
