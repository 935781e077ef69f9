"""Tests of the user tools: the LO2 archive extractor and the result-artifact scan."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.tools import extract as ex
from loglead_lo2.tools import scan as sc
from loglead_lo2.tools.archives import UnsafeMember, classify, inventory, split_member

REPO = Path(__file__).resolve().parents[1]

# --- archives -------------------------------------------------------------------------------

ZIP_RUNS = ("light-oauth2-data-1719592986", "light-oauth2-data-1719600000")
TAR_RUNS = ("LO2_run_1739743201", "LO2_run_1739800000")
NEWEST = ("LO2_run_1739800000", "LO2_run_1739743201", "light-oauth2-data-1719600000",
          "light-oauth2-data-1719592986")


def run_files(run: str) -> dict[str, bytes]:
    """Two files per run whose contents name the run (so a mix-up is visible)."""
    return {
        "correct/light-oauth2-oauth2-token-1.log": f"16:29:40.148 [t] {run} token\n".encode(),
        "correct/metrics/metric_node_load1.json": f'{{"run": "{run}"}}'.encode(),
    }


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    tf.addfile(info, io.BytesIO(data))


@pytest.fixture()
def archives(tmp_path: Path) -> Path:
    """a.zip: two runs under one top-level folder plus a stray README; b.tar.gz: two runs."""
    folder = tmp_path / "arch"
    folder.mkdir()
    with zipfile.ZipFile(folder / "a.zip", "w") as zf:
        zf.writestr("lo2/README.md", "not a run")
        zf.writestr("lo2/", "")  # explicit directory entries, as `zip -r` writes them
        for run in ZIP_RUNS:
            zf.writestr(f"lo2/{run}/", "")
            zf.writestr(f"lo2/{run}/correct/", "")
            for rel, data in run_files(run).items():
                zf.writestr(f"lo2/{run}/{rel}", data)
    with tarfile.open(folder / "b.tar.gz", "w:gz") as tf:
        for run in TAR_RUNS:
            for rel, data in run_files(run).items():
                _tar_add(tf, f"{run}/{rel}", data)
    (folder / "notes.txt").write_text("ignored: not an archive")
    return folder


def env_for(tmp_path: Path, archives: Path, **extra: str) -> dict[str, str]:
    return {"LO2_ARCHIVES": str(archives), "LO2_ROOT": str(tmp_path / "runs"), **extra}


def run_main(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = ex.main([], environ=env)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_extracted(root: Path, runs: tuple[str, ...]) -> None:
    for run in runs:
        for rel, data in run_files(run).items():
            assert (root / run / rel).read_bytes() == data
        marker = json.loads((root / run / ex.MARKER).read_text())
        assert marker["run"] == run and marker["files"] == 2
    assert not list(root.glob(".*.partial"))


def test_split_member_and_classify() -> None:
    assert split_member("LO2_run_1739743201/correct/a.log") == (
        "LO2_run_1739743201", ("correct", "a.log"))
    assert split_member("top/light-oauth2-data-1719592986/x") == (
        "light-oauth2-data-1719592986", ("x",))
    assert split_member("top/README.md") is None
    assert split_member("a/b/LO2_run_1739743201/x") is None  # deeper than one top folder
    for bad in ("../evil", "/etc/passwd", "LO2_run_1739743201/../../x", "C:\\x", "a\\..\\b"):
        with pytest.raises(UnsafeMember):
            split_member(bad)
    link = ex.Member("LO2_run_1739743201/correct/l", 0, "link")
    assert classify(link)[0] == "refused"


def test_split_chunks_sizes() -> None:
    runs = [ex.RunInfo(f"LO2_run_17000000{i:02d}", 1700000000 + i) for i in range(5)]
    assert [len(c) for c in ex.split_chunks(runs, 2)] == [3, 2]
    assert [len(c) for c in ex.split_chunks(runs, 4)] == [2, 1, 1, 1]
    assert [len(c) for c in ex.split_chunks(runs, 7)] == [1, 1, 1, 1, 1, 0, 0]
    assert [r for c in ex.split_chunks(runs, 3) for r in c] == runs


def test_plan_modes_and_chunks(archives: Path) -> None:
    inv = inventory(ex.list_archives(archives), lambda _: None)
    assert sorted(inv.runs) == sorted(ZIP_RUNS + TAR_RUNS)
    assert inv.stray_count == 1 and inv.stray[0][1] == "lo2/README.md"
    assert all(r.files == 2 for r in inv.runs.values())
    newest = [r.name for r in ex.order_runs(inv.runs.values(), "newest")]
    assert tuple(newest) == NEWEST
    assert [r.name for r in ex.order_runs(inv.runs.values(), "oldest")] == newest[::-1]
    assert [r.name for r in ex.order_runs(inv.runs.values(), "all")] == sorted(newest)
    chunks = ex.split_chunks(ex.order_runs(inv.runs.values(), "newest"), 2)
    assert [r.name for r in chunks[1]] == list(NEWEST[2:])


def test_dry_run_changes_nothing(tmp_path: Path, archives: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, _ = run_main(env_for(tmp_path, archives, MODE="newest", SPLIT="2", CHUNK="2"),
                            capsys)
    assert code == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "runs").exists()
    assert "chunk 2/2 <- selected: 2 run(s)" in out
    assert "DRY_RUN=1: nothing was written" in out
    assert "skipped 1 member(s) outside run folders: a.zip: lo2/README.md" in out
    listed = [line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("  [")]
    assert listed == list(NEWEST[2:])


def test_extract_chunk_then_all_then_resume(tmp_path: Path, archives: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs"
    env = env_for(tmp_path, archives, MODE="newest", SPLIT="2", DRY_RUN="0")
    code, out, _ = run_main({**env, "CHUNK": "2"}, capsys)
    assert code == 0
    assert_extracted(root, ZIP_RUNS)
    assert sorted(p.name for p in root.iterdir()) == sorted(ZIP_RUNS)
    assert "[1/2] light-oauth2-data-1719600000: 2 files" in out

    code, out, _ = run_main(env, capsys)  # all chunks: the first is new, the second skipped
    assert code == 0
    assert_extracted(root, ZIP_RUNS + TAR_RUNS)
    assert "[1/4] LO2_run_1739800000: 2 files" in out
    assert "[3/4] light-oauth2-data-1719600000: already extracted, skipped" in out
    markers = {r: (root / r / ex.MARKER).stat().st_mtime_ns for r in NEWEST}

    code, out, _ = run_main(env, capsys)
    assert code == 0
    assert out.count("already extracted, skipped") == 4
    assert markers == {r: (root / r / ex.MARKER).stat().st_mtime_ns for r in NEWEST}


def test_interrupted_run_is_redone(tmp_path: Path, archives: Path,
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    env = env_for(tmp_path, archives, MODE="oldest", DRY_RUN="0")
    real_write = ex._RunWriter.write
    calls = {"n": 0}

    def flaky(self, member, *args, **kwargs):  # noqa: ANN001, ANN202 - test double
        calls["n"] += member.kind == "file"
        if calls["n"] == 4:  # the second file of the second run
            raise KeyboardInterrupt
        return real_write(self, member, *args, **kwargs)

    monkeypatch.setattr(ex._RunWriter, "write", flaky)
    code, _, err = run_main(env, capsys)
    assert code == 130 and "run the same command again to resume" in err
    assert (root / ZIP_RUNS[0] / ex.MARKER).is_file()
    assert (root / f".{ZIP_RUNS[1]}.partial").is_dir()
    assert not (root / ZIP_RUNS[1]).exists()
    monkeypatch.setattr(ex._RunWriter, "write", real_write)

    # a foreign, marker-less run folder is replaced by a complete extraction too
    stale = root / TAR_RUNS[0]
    stale.mkdir()
    (stale / "junk.txt").write_text("half")
    code, out, _ = run_main(env, capsys)
    assert code == 0
    assert "[1/4] light-oauth2-data-1719592986: already extracted, skipped" in out
    assert "removing the partial extraction of an interrupted run" in out
    assert_extracted(root, ZIP_RUNS + TAR_RUNS)
    assert not (stale / "junk.txt").exists()


def test_unsafe_members_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "arch"
    folder.mkdir()
    run = "LO2_run_1739743201"
    with zipfile.ZipFile(folder / "evil.zip", "w") as zf:
        zf.writestr("../evil.txt", "x")
        zf.writestr(f"{run}/../../evil2.txt", "x")
        zf.writestr(f"{run}/correct/ok.log", "fine")
    with tarfile.open(folder / "evil.tar", "w") as tf:
        _tar_add(tf, "/abs.txt", b"x")
        link = tarfile.TarInfo(f"{run}/correct/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    code, out, _ = run_main(env_for(tmp_path, folder, DRY_RUN="0"), capsys)
    assert code == 0
    assert "refused 4 unsafe member(s)" in out
    assert "../evil.txt ('..' in path)" in out and "/abs.txt (absolute path)" in out
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "evil2.txt").exists()
    files = sorted(p.relative_to(tmp_path / "runs").as_posix()
                   for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert files == [f"{run}/.extracted", f"{run}/correct/ok.log"]


def test_run_split_over_two_archives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "arch"
    folder.mkdir()
    run = "LO2_run_1739743201"
    files = run_files(run)
    (first, d1), (second, d2) = files.items()
    with zipfile.ZipFile(folder / "part1.zip", "w") as zf:
        zf.writestr(f"{run}/{first}", d1)
    with tarfile.open(folder / "part2.tgz", "w:gz") as tf:
        _tar_add(tf, f"{run}/{second}", d2)
    code, out, _ = run_main(env_for(tmp_path, folder, DRY_RUN="0"), capsys)
    assert code == 0, out
    assert_extracted(tmp_path / "runs", (run,))


@pytest.mark.parametrize(("extra", "message"), [
    ({"MODE": "latest"}, "MODE=latest: use one of newest, oldest, all."),
    ({"SPLIT": "0"}, "SPLIT=0: must be a whole number of at least 1."),
    ({"SPLIT": "four"}, "SPLIT=four: must be a whole number"),
    ({"SPLIT": "4", "CHUNK": "5"}, "CHUNK=5 is larger than SPLIT=4"),
    ({"CHUNK": "-1"}, "CHUNK=-1: must be a whole number"),
    ({"DRY_RUN": "maybe"}, "DRY_RUN=maybe: use 1"),
    ({"LO2_ARCHIVES": "/nonexistent/lo2"}, "LO2_ARCHIVES=/nonexistent/lo2: folder not found"),
])
def test_bad_values_exit_2(tmp_path: Path, archives: Path, capsys: pytest.CaptureFixture[str],
                           extra: dict[str, str], message: str) -> None:
    code, out, err = run_main(env_for(tmp_path, archives, **{"DRY_RUN": "0", **extra}), capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_no_archives_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run_main(env_for(tmp_path, tmp_path / "empty"), capsys)
    assert code == 2 and "no archives" in err


def test_shell_script_with_env(tmp_path: Path, archives: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "MODE": "newest", "SPLIT": "2",
           "CHUNK": "1", "DRY_RUN": "0", "LO2_ARCHIVES": "arch", "LO2_ROOT": "out/runs"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(REPO / "tools" / "extract-split-resume-lo2.sh")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "[2/2] LO2_run_1739743201: 2 files" in proc.stdout
    assert_extracted(tmp_path / "out" / "runs", TAR_RUNS)
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == sorted(TAR_RUNS)
    proc = subprocess.run(["bash", str(REPO / "tools" / "extract-split-resume-lo2.sh")],
                          cwd=tmp_path, env={**env, "SPLIT": "x"}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: SPLIT=x: must be a whole number of at least 1.")


# --- result scan ----------------------------------------------------------------------------

T0 = dt.datetime(2024, 6, 28, 16, 43, 6)
SEQS = ("r1__correct__token", "r1__get_token_404__refresh-token")


def events_frame() -> pl.DataFrame:
    n = 5
    seq = [SEQS[0]] * 3 + [SEQS[1]] * 2
    normal = [s == SEQS[0] for s in seq]
    return pl.DataFrame({
        "m_message": ["DEBUG a b - x"] * n,
        "m_timestamp": [T0 + dt.timedelta(seconds=i) for i in range(n)],
        "run": ["r1"] * n,
        "test_case": [s.split("__")[1] for s in seq],
        "service": [s.split("__")[2] for s in seq],
        "seq_id": seq,
        "line_no": pl.Series(range(1, n + 1), dtype=pl.Int64),
        "normal": normal,
        "anomaly": [not v for v in normal],
    })


def sequences_frame(enhanced: bool = False) -> pl.DataFrame:
    df = pl.DataFrame({
        "run": ["r1", "r1"], "test_case": ["correct", "get_token_404"],
        "service": ["token", "refresh-token"], "seq_id": list(SEQS),
        "normal": [True, False], "anomaly": [False, True],
        "seq_len": pl.Series([3, 2], dtype=pl.Int64),
        "start_time": [T0, T0], "end_time": [T0, T0], "duration_sec": [2.0, 1.0],
    })
    if enhanced:
        df = df.with_columns(
            e_words=pl.Series([["a", "b"], ["c"]]), e_words_counts=pl.Series([[1, 1], [1]]),
            e_words_len=pl.Series([2, 1]),
            e_trigrams=pl.Series([["abc"], ["bcd"]]), e_trigrams_counts=pl.Series([[1], [1]]),
            e_trigrams_len=pl.Series([1, 1]),
            e_event_drain_id=pl.Series([["e1"], ["e2"]]),
        )
    return df


@pytest.fixture()
def result(tmp_path: Path) -> tuple[Path, Path]:
    """A valid result folder and models folder, written through loglead_lo2.schema."""
    from loglead_lo2.detection.persistence import save_bundle_pair
    from loglead_lo2.schema import write_parquet, write_text_atomic

    root, models = tmp_path / "result", tmp_path / "models"
    outputs = {
        "lo2_events.parquet": write_parquet(events_frame(), root / "lo2_events.parquet",
                                            "events"),
        "lo2_sequences.parquet": write_parquet(sequences_frame(), root / "lo2_sequences.parquet",
                                               "sequences"),
        "lo2_sequences_enhanced.parquet": write_parquet(
            sequences_frame(True), root / "lo2_sequences_enhanced.parquet",
            "sequences_enhanced"),
    }
    write_parquet(pl.DataFrame({"run": ["r1"], "test_case": ["correct"], "metric": ["load1"],
                                "labels": ["{}"], "timestamp": [T0], "value": [0.5]}),
                  root / "lo2_metrics.parquet", "metrics")
    write_parquet(pl.DataFrame({"e_event_drain_id": ["e1"], "template": ["a <*>"],
                                "count": [3]}), root / "lo2_drain_templates.parquet")
    write_parquet(pl.DataFrame({"seq_id": list(SEQS), "score_if": [0.1, 0.9]}),
                  root / "lo2_if_predictions.parquet")
    write_parquet(pl.DataFrame({"run": ["r1"], "test_case": ["correct"], "service": ["token"],
                                "lines": [120], "trimmed_lines": [60],
                                "window_dropped_lines": [0]}),
                  root / "lo2_files.parquet")
    write_text_atomic(root / "lo2_load_info.json", json.dumps({"outputs": outputs}))
    write_text_atomic(root / "metrics" / "if_metrics.json", json.dumps({"f1": 0.5}))
    write_text_atomic(root / "metrics" / "if_metrics.csv", "f1,roc_auc\n0.5,0.7\n")
    write_text_atomic(root / "metrics" / "leaderboard.csv", "rank,model,f1\n1,if,0.5\n")
    write_text_atomic(root / "metrics" / "leaderboard.md", "# board\n\n| rank |\n")
    save_bundle_pair(models / "lo2_if.joblib", {"model": 1}, ["vectorizer"],
                     lambda path, sha: {"model": {"key": "if"}}, metadata_name="model.yml")
    return root, models


def scan_main(root: Path, models: Path, capsys: pytest.CaptureFixture[str],
              *extra: str) -> tuple[int, str, str]:
    code = sc.main(["--root", str(root), "--models-dir", str(models), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def statuses(out: str) -> dict[str, str]:
    return {f["name"]: f["status"] for f in json.loads(out)["findings"]}


def test_scan_valid_result_exit_0(result: tuple[Path, Path],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, models = result
    code, out, _ = scan_main(root, models, capsys, "--dry-run", "--json")
    assert code == 0
    found = statuses(out)
    for name in ("lo2_events.parquet", "lo2_sequences.parquet", "lo2_metrics.parquet",
                 "lo2_sequences_enhanced.parquet", "lo2_drain_templates.parquet",
                 "lo2_if_predictions.parquet", "lo2_load_info.json", "lo2_files.parquet",
                 "leaderboard.csv",
                 "leaderboard.md", "if_metrics.json", "if_metrics.csv", "lo2_if.joblib",
                 "model.yml"):
        assert found[name] == "ok", name
    assert found["explainability/"] == "missing"
    report = json.loads(out)
    events = next(f for f in report["findings"] if f["name"] == "lo2_events.parquet")
    assert events["rows"] == 5 and events["bytes"] > 0
    assert report["exit_code"] == 0 and report["counts"]["ok"] == 14
    code, text, _ = scan_main(root, models, capsys, "--deep")
    assert code == 0 and "sha256 verified against model.yml" in text
    assert "events schema ok, every data page read and its CRC checked" in text


def test_scan_missing_column_and_corrupt_file(result: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from loglead_lo2.schema import write_parquet

    root, models = result
    write_parquet(events_frame().drop("line_no"), root / "lo2_events.parquet")
    (root / "lo2_sequences.parquet").write_bytes(b"PAR1 this is not parquet at all")
    code, out, _ = scan_main(root, models, capsys)
    assert code == 1
    events_line = next(line for line in out.splitlines() if "lo2_events.parquet" in line)
    assert "INVALID" in events_line and "missing column(s) line_no" in events_line
    seq_line = next(line for line in out.splitlines() if " lo2_sequences.parquet" in line)
    assert "CORRUPT" in seq_line and "lo2_sequences.parquet: not a readable Parquet" in seq_line
    assert "-> exit 1" in out


def test_scan_inconsistent_rows(result: tuple[Path, Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    from loglead_lo2.schema import write_parquet

    root, models = result
    write_parquet(events_frame().head(4), root / "lo2_events.parquet", "events")
    code, out, _ = scan_main(root, models, capsys, "--json")
    assert code == 1
    events = next(f for f in json.loads(out)["findings"] if f["name"] == "lo2_events.parquet")
    assert events["status"] == "inconsistent"
    assert "lo2_load_info.json records 5" in events["detail"]


def test_scan_missing_root_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = scan_main(tmp_path / "nope", tmp_path / "models", capsys, "--dry-run")
    assert code == 2 and out == ""
    assert err.startswith("error: --root ") and "folder not found" in err
    assert err.count("\n") == 1


def test_scan_tampered_bundle(result: tuple[Path, Path],
                              capsys: pytest.CaptureFixture[str]) -> None:
    root, models = result
    with open(models / "lo2_if.joblib", "ab") as handle:
        handle.write(b"\0")
    code, out, _ = scan_main(root, models, capsys, "--json")
    assert code == 1
    bundle = next(f for f in json.loads(out)["findings"] if f["name"] == "lo2_if.joblib")
    assert bundle["status"] == "inconsistent" and "does not match model.yml" in bundle["detail"]
    (models / "lo2_if.joblib").unlink()
    code, out, _ = scan_main(root, models, capsys, "--json")
    assert code == 1 and statuses(out)["model.yml"] == "inconsistent"
    (models / "model.yml").unlink()
    (models / "other.joblib").write_bytes(b"x")
    code, out, _ = scan_main(root, models, capsys, "--json")
    assert code == 0 and statuses(out)["other.joblib"] == "unverified"


def test_scan_explainability_files(result: tuple[Path, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    root, models = result
    explain = root / "explainability"
    explain.mkdir()
    (explain / "summary.json").write_text('{"ok": true}')
    (explain / "nn_mapping.csv").write_text("seq_id,neighbour\na,b\n")
    (explain / "shap_lr_summary.png").write_bytes(b"not a png")
    code, out, _ = scan_main(root, models, capsys, "--json")
    assert code == 1
    found = statuses(out)
    assert found["summary.json"] == "ok" and found["nn_mapping.csv"] == "ok"
    assert found["shap_lr_summary.png"] == "corrupt"


def test_scan_temp_leftovers(result: tuple[Path, Path],
                             capsys: pytest.CaptureFixture[str]) -> None:
    root, models = result
    tmp = root / ".lo2_events.parquet.abc123.tmp"
    tmp.write_bytes(b"half")
    old = tmp.stat().st_mtime - 3600
    os.utime(tmp, (old, old))
    fresh = root / "metrics" / ".leaderboard.csv.xyz.tmp"
    fresh.write_bytes(b"now")
    code, out, _ = scan_main(root, models, capsys)
    assert code == 0 and "leftover temp files from interrupted writes: 2" in out
    assert tmp.exists() and fresh.exists()
    code, out, _ = scan_main(root, models, capsys, "--dry-run", "--clean-temp")
    assert "would remove (--dry-run)" in out and tmp.exists()
    code, out, _ = scan_main(root, models, capsys, "--clean-temp", "--json")
    actions = {Path(t["path"]).name: t["action"] for t in json.loads(out)["leftovers"]}
    assert actions[tmp.name] == "removed" and actions[fresh.name].startswith("kept")
    assert not tmp.exists() and fresh.exists()
    assert statuses(out)["lo2_events.parquet"] == "ok"


def test_scan_script_runs_without_install(result: tuple[Path, Path], tmp_path: Path) -> None:
    root, models = result
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "lo2_result_scan.py"),
                           "--root", str(root), "--models-dir", str(models), "--dry-run"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "sha256 verified against model.yml" in proc.stdout


def test_scan_checks_per_service_bundles(result: tuple[Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root, models = result
    service = models / "token"
    service.mkdir()
    for name in ("lo2_if.joblib", "model.yml"):
        (service / name).write_bytes((models / name).read_bytes())
    code, out, _ = scan_main(root, models, capsys, "--json")
    assert code == 0
    paths = {f["path"] for f in json.loads(out)["findings"]}
    assert str(service / "lo2_if.joblib") in paths
    with open(service / "lo2_if.joblib", "ab") as handle:
        handle.write(b"\0")
    code, out, _ = scan_main(root, models, capsys, "--json")
    bad = [f for f in json.loads(out)["findings"] if f["path"] == str(service / "lo2_if.joblib")]
    assert code == 1 and bad[0]["status"] == "inconsistent"


def test_scan_checks_the_drain_state_a_bundle_names(result: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from loglead_lo2.detection.persistence import save_bundle_pair
    from loglead_lo2.enhancers.drain import DrainParser

    root, models = result
    parser = DrainParser()
    parser.parse(pl.DataFrame({"e_message_normalized": ["INFO a b - c d", "INFO a b - c e"]}))
    info = parser.save_state(models / "lo2_drain_state.parquet")
    meta = {"model": {"key": "event_lr_templates"},
            "parts": {"drain": {"file": "lo2_drain_state.parquet", "sha256": info.sha256}}}
    save_bundle_pair(models / "event_lr_templates.joblib", {"model": 1}, ["vectorizer"],
                     lambda path, sha: meta)
    code, out, _ = scan_main(root, models, capsys, "--json")
    assert code == 0 and statuses(out)["event_lr_templates.yml"] == "ok"
    parser.parse(pl.DataFrame({"e_message_normalized": ["WARN x y - entirely new"]}))
    parser.save_state(models / "lo2_drain_state.parquet")  # another state in its place
    code, out, _ = scan_main(root, models, capsys, "--json")
    found = next(f for f in json.loads(out)["findings"] if f["name"] == "event_lr_templates.yml")
    assert code == 1 and found["status"] == "inconsistent"
    assert "template ids would mean other templates" in found["detail"]
    (models / "lo2_drain_state.parquet").unlink()
    code, out, _ = scan_main(root, models, capsys, "--json")
    assert code == 1 and statuses(out)["event_lr_templates.yml"] == "inconsistent"


@pytest.mark.parametrize("which", ["partial", "run"])
def test_extract_refuses_symlinked_run_folders(tmp_path: Path, archives: Path, which: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A symlink where a run's partial or final folder goes is refused with one line, and its
    target is never written or removed (it used to end in a traceback)."""
    root = tmp_path / "runs"
    root.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("not the tool's")
    run = ZIP_RUNS[0]
    link = ex.partial_dir(root, run) if which == "partial" else root / run
    link.symlink_to(target, target_is_directory=True)
    env = env_for(tmp_path, archives, MODE="newest", SPLIT="2", CHUNK="2", DRY_RUN="0")
    code, _, err = run_main(env, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "symbolic link" in lines[0] and str(link) in lines[0], lines
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"] and link.is_symlink()


def test_scan_finds_real_damage(result: tuple[Path, Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    """Content, not only presence: flipped bytes mid-Parquet (--deep), a truncated PNG, a
    JSON list as lo2_load_info.json, 'outputs' that is not a mapping."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root, models = result
    events = root / "lo2_events.parquet"
    data = bytearray(events.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    events.write_bytes(bytes(data))
    buf = io.BytesIO()
    plt.figure(figsize=(2, 2))
    plt.plot([0, 1])
    plt.savefig(buf, format="png")
    plt.close("all")
    png = buf.getvalue()
    (root / "metrics" / "shap_x_summary.png").write_bytes(png[: len(png) // 2])
    (root / "metrics" / "shap_y_summary.png").write_bytes(png)
    code, out, _ = scan_main(root, models, capsys, "--json", "--deep")
    found = {f["name"]: f for f in json.loads(out)["findings"]}
    assert code == 1
    assert found["lo2_events.parquet"]["status"] == "corrupt"
    assert found["shap_x_summary.png"]["status"] == "corrupt"
    assert found["shap_y_summary.png"]["status"] == "ok"
    for text, why in (("[1, 2]", "not an object"), ('{"outputs": [1, 2]}', "not a mapping")):
        (root / "lo2_load_info.json").write_text(text)
        code, out, _ = scan_main(root, models, capsys, "--json")
        info = {f["name"]: f for f in json.loads(out)["findings"]}["lo2_load_info.json"]
        assert code == 1 and info["status"] == "invalid" and why in info["detail"]


def test_scan_never_opens_fifos_or_devices(result: tuple[Path, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root, models = result
    (root / "lo2_metrics.parquet").unlink()
    (root / "lo2_metrics.parquet").symlink_to("/dev/zero")
    os.mkfifo(root / "metrics" / "leakage_fifo.json")
    code, out, _ = scan_main(root, models, capsys, "--json")  # would block or never end
    found = {f["name"]: f for f in json.loads(out)["findings"]}
    assert code == 1
    assert found["lo2_metrics.parquet"]["status"] == "invalid"
    assert "a device" in found["lo2_metrics.parquet"]["detail"]
    assert "a FIFO" in found["leakage_fifo.json"]["detail"]


def test_scan_checks_the_sets_of_a_real_chain(lo2_sample: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Load + detect: the manifests verify; a stray file in metrics/ and a detection run of
    an earlier load are inconsistent."""
    from loglead_lo2.detection.cli import main as detect_main
    from loglead_lo2.loader.cli import main as load_main

    out = tmp_path / "out"
    assert load_main(["--root", str(lo2_sample), "--output-dir", str(out), "--runs", "2",
                      "--save-parquet", "-q"]) == 0
    assert detect_main(["--root", str(out), "--models", "event_lr_words"]) == 0
    capsys.readouterr()
    code, text, _ = scan_main(out, out / "metrics" / "models", capsys, "--json", "--deep")
    found = {f["name"]: f for f in json.loads(text)["findings"]}
    assert found["lo2_load_manifest.json"]["status"] == "ok"
    assert found["detect_manifest.json"]["status"] == "ok", found["detect_manifest.json"]
    (out / "metrics" / "old_model.json").write_text("{}")
    code, text, _ = scan_main(out, out / "metrics" / "models", capsys, "--json")
    found = {f["name"]: f for f in json.loads(text)["findings"]}
    assert code == 1 and found["detect_manifest.json"]["status"] == "inconsistent"
    assert "not part of the output set" in found["detect_manifest.json"]["detail"]
    (out / "metrics" / "old_model.json").unlink()
    assert load_main(["--root", str(lo2_sample), "--output-dir", str(out), "--runs", "1",
                      "--save-parquet", "--overwrite", "-q"]) == 0
    capsys.readouterr()
    code, text, _ = scan_main(out, out / "metrics" / "models", capsys, "--json")
    found = {f["name"]: f for f in json.loads(text)["findings"]}
    assert code == 1 and "computed from another load" in found["detect_manifest.json"]["detail"]
