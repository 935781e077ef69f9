"""Output sets: staged writes, one commit, a lock per folder, recovery after a kill."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from loglead_lo2 import outputs as O
from loglead_lo2.errors import UserError
from loglead_lo2.outputs import FolderLock, OutputSet, reading, verify_set

OWNED = ("a.txt", "b.txt", "sub/c.txt")


def _write(out: OutputSet, **files: str) -> None:
    for name, text in files.items():
        out.path(name.replace("__", "/")).write_text(text)


def _contents(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".")
                                       for part in p.relative_to(folder).parts)}


def _set(folder: Path, overwrite: bool = True) -> OutputSet:
    return OutputSet(folder, phase="demo", manifest="manifest.json", owned=OWNED,
                     overwrite=overwrite)


def test_nothing_changes_before_the_commit_and_all_changes_at_it(tmp_path: Path) -> None:
    with _set(tmp_path) as out:
        _write(out, **{"a.txt": "old a", "b.txt": "old b"})
        assert _contents(tmp_path) == {}
        manifest = out.commit()
    assert _contents(tmp_path) == {"a.txt": "old a", "b.txt": "old b",
                                   "manifest.json": (tmp_path / "manifest.json").read_text()}
    assert set(manifest["files"]) == {"a.txt", "b.txt"}
    assert manifest["files"]["a.txt"]["sha256"] == O.sha256_of(tmp_path / "a.txt")
    with pytest.raises(KeyboardInterrupt), _set(tmp_path) as out:
        _write(out, **{"a.txt": "new a", "sub__c.txt": "new c"})
        raise KeyboardInterrupt  # Ctrl-C mid-phase: the old set stays, the stage goes
    assert (tmp_path / "a.txt").read_text() == "old a" and not (tmp_path / "sub").exists()
    assert not list(tmp_path.glob(".lo2-stage-*"))
    with _set(tmp_path) as out:  # the new set lacks b.txt: the old one is removed
        _write(out, **{"a.txt": "new a", "sub__c.txt": "new c"})
        out.commit()
    assert {k: v for k, v in _contents(tmp_path).items() if k != "manifest.json"} == {
        "a.txt": "new a", "sub/c.txt": "new c"}
    assert verify_set(tmp_path, "manifest.json", OWNED, deep=True) is not None


def test_existing_outputs_need_the_overwrite_flag(tmp_path: Path) -> None:
    with _set(tmp_path) as out:
        _write(out, **{"b.txt": "x"})
        out.commit()
    with pytest.raises(UserError, match="pass --overwrite"):
        _set(tmp_path, overwrite=False).__enter__()
    with FolderLock(tmp_path):  # the refused attempt released its lock
        pass


@pytest.mark.parametrize("kill_after", [0, 1, 2, 3])
def test_a_kill_at_any_rename_is_finished_by_the_next_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill_after: int) -> None:
    """kill_after = number of renames done before the kill (3: all files, not the manifest)."""
    with _set(tmp_path) as out:
        _write(out, **{"a.txt": "old a", "b.txt": "old b"})
        out.commit()
    real, calls = os.replace, []

    def dying_replace(src: object, dst: object) -> None:
        if str(dst).endswith((".txt", "manifest.json")):
            if len(calls) == kill_after:
                raise SystemExit("killed")  # the process dies between two renames
            calls.append(dst)
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(O.os, "replace", dying_replace)
    with pytest.raises(SystemExit), _set(tmp_path) as out:
        _write(out, **{"a.txt": "new a", "b.txt": "new b", "sub__c.txt": "new c"})
        out.commit()
    monkeypatch.setattr(O.os, "replace", real)
    assert list(tmp_path.glob(".lo2-commit-*.json"))  # the journal survived the kill
    with pytest.raises(UserError, match="commit was interrupted"):
        verify_set(tmp_path, "manifest.json", ["a.txt"])
    with _set(tmp_path) as out:  # the next writer rolls the commit forward first
        assert any("interrupted commit" in n for n in out.notes)
    assert {k: v for k, v in _contents(tmp_path).items() if k != "manifest.json"} == {
        "a.txt": "new a", "b.txt": "new b", "sub/c.txt": "new c"}
    verify_set(tmp_path, "manifest.json", OWNED, deep=True)


def test_second_writer_and_readers_are_refused_while_a_writer_runs(tmp_path: Path) -> None:
    with _set(tmp_path) as out:
        with pytest.raises(UserError, match=rf"in use by pid {os.getpid()} .*cannot be written"):
            _set(tmp_path).__enter__()
        with pytest.raises(UserError, match="cannot be read"), reading(tmp_path):
            pass
        out.commit()
    with reading(tmp_path), reading(tmp_path):  # readers share
        with pytest.raises(UserError, match="in use by another process"):
            _set(tmp_path).__enter__()
    with _set(tmp_path):
        pass


def test_leftovers_of_killed_runs_are_removed_at_the_next_start(tmp_path: Path) -> None:
    (tmp_path / ".a.txt.x1y2.tmp").write_text("half")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".c.txt.zz.tmp").write_text("half")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / ".d.txt.zz.tmp").write_text("another phase's")
    (tmp_path / ".lo2-stage-demo-99999").mkdir()
    (tmp_path / ".lo2-stage-demo-99999" / "a.txt").write_text("staged, never committed")
    with _set(tmp_path) as out:
        assert len(out.notes) == 2
    assert not (tmp_path / ".a.txt.x1y2.tmp").exists()
    assert not (tmp_path / "sub" / ".c.txt.zz.tmp").exists()
    assert (tmp_path / "other" / ".d.txt.zz.tmp").exists()  # not this phase's folder
    assert not (tmp_path / ".lo2-stage-demo-99999").exists() and not (tmp_path / "a.txt").exists()


def test_verify_set_refuses_strays_and_changed_files(tmp_path: Path) -> None:
    with _set(tmp_path) as out:
        _write(out, **{"a.txt": "aaaa"})
        out.commit()
    (tmp_path / "b.txt").write_text("from another run")
    with pytest.raises(UserError, match="not part of the output set"):
        verify_set(tmp_path, "manifest.json", ["a.txt", "b.txt"])
    (tmp_path / "a.txt").write_text("bbbb")  # same size: only the sha256 tells
    verify_set(tmp_path, "manifest.json", ["a.txt"])
    with pytest.raises(UserError, match="differs from the file recorded"):
        verify_set(tmp_path, "manifest.json", ["a.txt"], deep=True)
    (tmp_path / "a.txt").unlink()
    with pytest.raises(UserError, match="missing"):
        verify_set(tmp_path, "manifest.json", ["a.txt"])
    (tmp_path / "manifest.json").write_text("[" * 100_000)
    with pytest.raises(UserError, match="unreadable"):
        verify_set(tmp_path, "manifest.json", ["a.txt"])
    assert verify_set(tmp_path / "none", "manifest.json", ["a.txt"]) is None


# --- the loader --------------------------------------------------------------------------------


def _load(root: Path, out: Path, *flags: str) -> int:
    from loglead_lo2.loader.cli import main

    return main(["--root", str(root), "--output-dir", str(out), "--runs", "1", "-q", *flags])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")}


def test_interrupted_loader_leaves_the_previous_load(
        lo2_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    out = tmp_path / "out"
    assert _load(lo2_sample, out, "--save-parquet", "--save-events", "--load-metrics") == 0
    before = _snapshot(out)
    manifest = json.loads((out / "lo2_load_manifest.json").read_text())
    assert set(manifest["files"]) == {n for n in before if n != "lo2_load_manifest.json"}

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    from loglead_lo2.loader import runs

    # every run loaded (parts written), the final tables not yet streamed from them
    monkeypatch.setattr(runs, "_account_metrics", interrupted)
    assert _load(lo2_sample, out, "--save-parquet", "--save-events", "--load-metrics",
                 "--window", "5", "--overwrite") == 130
    assert _snapshot(out) == before and not list(out.glob(".lo2-stage-*"))


def test_loader_replaces_the_whole_set_and_needs_overwrite(
        lo2_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert _load(lo2_sample, out, "--save-parquet", "--save-events") == 0
    capsys.readouterr()
    # a metrics-only load would replace lo2_load_info.json of the earlier load: refused
    assert _load(lo2_sample, out, "--load-metrics") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --overwrite" in err[0]
    assert _load(lo2_sample, out, "--save-parquet", "--overwrite") == 0
    assert not (out / "lo2_events.parquet").exists()  # not part of the new set
    info = json.loads((out / "lo2_load_info.json").read_text())
    assert "lo2_events.parquet" not in info["outputs"]
    verify_set(out, "lo2_load_manifest.json", ["lo2_sequences_enhanced.parquet",
                                               "lo2_load_info.json"], deep=True)


def test_second_loader_on_one_folder_gets_one_line(
        lo2_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    with FolderLock(out):
        assert _load(lo2_sample, out, "--save-parquet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"in use by pid {os.getpid()}" in err[0]
    assert not (out / "lo2_sequences_enhanced.parquet").exists()
    assert _load(lo2_sample, out, "--save-parquet") == 0


@pytest.mark.parametrize("polars_style", [False, True])
def test_disk_full_in_any_phase_is_one_line_naming_the_final_file(
        lo2_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], polars_style: bool) -> None:
    """Every writer (streamed loader tables, detection's tables) reports a full disk as one
    line naming the file as the user knows it (not its stage path), exit 1, old set kept."""
    import errno

    import polars as pl
    import pyarrow.parquet as pq

    from loglead_lo2.detection.cli import main as detect_main

    def full_error() -> Exception:
        if polars_style:
            return pl.exceptions.ComputeError("parquet: underlying IO error: No space left on "
                                              "device (os error 28)")
        return OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "out"
    assert _load(lo2_sample, out, "--save-parquet") == 0
    before = _snapshot(out)
    real_write = pq.ParquetWriter.write_table

    def full_stream(self: object, table: object, *a: object, **k: object) -> None:
        raise full_error()

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_stream)
    capsys.readouterr()
    assert _load(lo2_sample, out, "--save-parquet", "--overwrite") == 1
    err = capsys.readouterr().err.strip().splitlines()
    # the first write is the first run's part folder: named as it will be, not its temp name
    part_file = re.escape(str(out / "lo2_parts")) + r"/part-[^/ ]+/sequences_enhanced\.parquet"
    assert len(err) == 1 and re.search(part_file, err[0]), err
    assert ".lo2-stage" not in err[0] and ".tmp-" not in err[0] and "free some space" in err[0]
    assert _snapshot(out) == before
    monkeypatch.setattr(pq.ParquetWriter, "write_table", real_write)
    real_df_write = pl.DataFrame.write_parquet

    def full_df(self: pl.DataFrame, file: object, *a: object, **k: object) -> None:
        if "predictions" in str(file):
            raise full_error()
        real_df_write(self, file, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full_df)
    assert detect_main(["--root", str(out), "--models", "event_lr_words"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "predictions" in err[0] and ".lo2-stage" not in err[0], err
    assert not (out / "metrics").exists() or not list((out / "metrics").glob("*.json"))


def test_parquet_pages_carry_checksums_that_find_flipped_bytes(tmp_path: Path) -> None:
    """64 flipped bytes in the middle of a table changed timestamps unnoticed; every page
    now has a CRC that verify_pages checks (both writers)."""
    import polars as pl

    from loglead_lo2.schema import ParquetStreamWriter, verify_pages, write_parquet

    df = pl.DataFrame({"seq_id": [f"s{i:06d}" for i in range(60_000)],
                       "value": [float(i) for i in range(60_000)]})
    plain, streamed = tmp_path / "plain.parquet", tmp_path / "streamed.parquet"
    write_parquet(df, plain)
    with ParquetStreamWriter(streamed) as writer:
        writer.write(df)
    for path in (plain, streamed):
        assert verify_pages(path) == df.height
        data = bytearray(path.read_bytes())
        mid = len(data) // 2
        data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
        bad = tmp_path / f"bad_{path.name}"
        bad.write_bytes(bytes(data))
        with pytest.raises(UserError, match="damaged"):
            verify_pages(bad)


def test_a_writer_in_another_process_holds_the_folder(
        lo2_sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two processes: the second writer is refused with the first one's pid, and the folder
    is free again once that process is gone (the lock dies with it)."""
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from loglead_lo2.outputs import FolderLock;"
         " lock = FolderLock(Path(sys.argv[1])).acquire(); print('held', flush=True);"
         " time.sleep(60)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert _load(lo2_sample, out, "--save-parquet") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by pid {holder.pid}" in err[0], err
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert _load(lo2_sample, out, "--save-parquet") == 0
