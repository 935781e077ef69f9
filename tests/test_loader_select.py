"""Discovery and selection: naming schemes, stray entries, seeded choices, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2 import SERVICES
from loglead_lo2.cases import error_cases
from loglead_lo2.errors import UserError
from loglead_lo2.loader.discover import SelectOptions, select
from loglead_lo2.loader.metrics import load_metrics
from tests.lo2_tree import TOKEN_LINES, log_path, write_file

CASES = ["correct", *error_cases()[:6]]


def _tree(root: Path, runs: list[str], cases: list[str] = CASES) -> Path:
    for run in runs:
        for case in cases:
            for service in SERVICES:
                write_file(log_path(root, run, case, service), TOKEN_LINES[:2])
    return root


RUNS = ["light-oauth2-data-1719592986", "LO2_run_1739743201", "light-oauth2-data-1719599000"]


def test_both_namings_sorted_by_epoch_and_strays_reported(tmp_path: Path) -> None:
    _tree(tmp_path, RUNS)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "lo2_manifest.csv").write_text("x")  # generator file: known, not stray
    (tmp_path / RUNS[0] / "README").write_text("x")
    (tmp_path / RUNS[0] / ".extracted").write_text("")  # extraction marker: not stray
    (tmp_path / RUNS[0] / "correct" / "foo.log").write_text("x")
    (tmp_path / RUNS[0] / "not_a_case").mkdir()
    sel = select(tmp_path, SelectOptions())
    assert [r.name for r in sel.runs] == [RUNS[0], RUNS[2], RUNS[1]]
    reasons = {Path(p).name: why for p, why in sel.skipped}
    assert set(reasons) == {"notes.txt", "README", "foo.log", "not_a_case"}
    assert len(sel.files) == 3 * len(CASES) * len(SERVICES)


def test_runs_and_errors_per_run_are_seeded(tmp_path: Path) -> None:
    _tree(tmp_path, RUNS)
    opts = SelectOptions(runs=2, errors_per_run=2, seed=7)
    a, b = select(tmp_path, opts), select(tmp_path, opts)
    assert a.cases_by_run() == b.cases_by_run()
    assert len(a.runs) == 2
    for cases in a.cases_by_run().values():
        assert cases[0] == "correct" and len(cases) == 3
    other = [select(tmp_path, SelectOptions(runs=2, errors_per_run=2, seed=s)).cases_by_run()
             for s in range(8)]
    assert any(o != a.cases_by_run() for o in other)
    everything = select(tmp_path, SelectOptions(errors_per_run=0))
    assert all(len(c) == len(CASES) for c in everything.cases_by_run().values())


def test_no_duplicates_never_repeats_an_error_case(tmp_path: Path) -> None:
    _tree(tmp_path, RUNS)
    sel = select(tmp_path, SelectOptions(errors_per_run=2, allow_duplicates=False, seed=3))
    drawn = [c for cases in sel.cases_by_run().values() for c in cases if c != "correct"]
    assert len(drawn) == len(set(drawn)) == 6


def test_single_error_type_and_services(tmp_path: Path) -> None:
    _tree(tmp_path, RUNS[:1])
    sel = select(tmp_path, SelectOptions(single_error_type=CASES[2], services=("token",)))
    assert {f.test_case for f in sel.files} == {"correct", CASES[2]}
    assert {f.service for f in sel.files} == {"token"}
    rnd = select(tmp_path, SelectOptions(single_error_type="random", seed=1))
    assert len({f.test_case for f in rnd.files}) == 2
    with pytest.raises(UserError, match="Did you mean"):
        select(tmp_path, SelectOptions(single_error_type="get_token_40"))


def test_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        select(tmp_path / "missing", SelectOptions())
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        select(tmp_path / "file", SelectOptions())
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no LO2 runs"):
        select(tmp_path / "empty", SelectOptions())
    (tmp_path / "empty" / RUNS[0]).mkdir()
    with pytest.raises(UserError, match="no log files"):
        select(tmp_path / "empty", SelectOptions())


def test_metrics_tidy_table_and_malformed_file_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    series = [
        {"metric": {"__name__": "node_load1", "job": "node", "instance": "n:9100"},
         "values": [[1739743444, "11.13"], [1739743449, "10.5"]]},
        {"metric": {"__name__": "container_cpu_usage_seconds_total", "job": "cadvisor",
                    "instance": "c:8080", "name": "light-oauth2-oauth2-token-1"},
         "values": [[1739743444, "3"]]},
    ]
    (folder / "metric_node_load1.json").write_text(json.dumps(series))
    (folder / "metric_broken.json").write_text("[{not json")
    table, skipped = load_metrics([("LO2_run_1739743201", "correct", folder)])
    assert table.height == 3
    assert [Path(p).name for p, _ in skipped] == ["metric_broken.json"]
    row = table.filter(pl.col("metric") == "node_load1").row(0, named=True)
    assert row["value"] == pytest.approx(11.13)
    assert row["job"] == "node" and row["container"] is None
    assert str(row["timestamp"]) == "2025-02-16 22:04:04"
    cpu = table.filter(pl.col("job") == "cadvisor").row(0, named=True)
    assert cpu["container"] == "light-oauth2-oauth2-token-1"
    assert json.loads(cpu["labels"])["name"] == "light-oauth2-oauth2-token-1"


def test_real_metrics_sample_parses_when_present() -> None:
    root = Path(__file__).resolve().parents[2] / "shared/lo2-reference/metrics_sample"
    run = root / "LO2_run_1739743201"
    if not run.is_dir():
        pytest.skip("shared/lo2-reference not present")
    dirs = [(run.name, d.name, d / "metrics") for d in sorted(run.iterdir())]
    table, skipped = load_metrics(dirs)
    assert not skipped and table.height > 1000
    assert set(table["metric"].unique()) >= {"node_load1", "container_cpu_usage_seconds_total"}
