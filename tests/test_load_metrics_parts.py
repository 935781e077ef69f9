"""``--load-metrics`` run by run: each part keeps its run's metrics, ``lo2_metrics.parquet`` and
the ``mx_*`` columns are streamed from the parts, a resumed load gives the same bytes, and a
changed metrics file loads its run (and the runs after it) again."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.enhancers.metric_features import DEFAULT_FEATURES, metric_features
from loglead_lo2.loader import runs as R
from loglead_lo2.loader.cli import main
from loglead_lo2.loader.metrics import load_metrics

FLAGS = ("--save-parquet", "--load-metrics", "--window", "5", "--quiet")
FILES = ("lo2_metrics.parquet", "lo2_sequences_enhanced.parquet", "lo2_load_info.json")


def _load(tree: Path, out: Path, *flags: str) -> int:
    return main(["--root", str(tree), "--output-dir", str(out), *FLAGS, *flags])


def _digests(out: Path) -> dict[str, str]:
    return {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in FILES[:2]}


def _info(out: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((out / "lo2_load_info.json").read_text())


@pytest.fixture(scope="module")
def whole(lo2_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("metrics_whole") / "out"
    assert _load(lo2_sample, out) == 0
    return out


def test_each_part_keeps_its_runs_metrics(whole: Path, lo2_sample: Path) -> None:
    runs = sorted(p.name for p in lo2_sample.iterdir() if p.is_dir())
    union = []
    for run in runs:
        part = whole / "lo2_parts" / f"part-{run}"
        record = json.loads((part / "part.json").read_text())
        table = pl.read_parquet(part / "metrics.parquet")
        assert table.height and set(table["run"].unique()) == {run}
        assert record["metrics"]["rows"] == table.height
        assert "container_cpu_usage_seconds_total" in record["metrics"]["names"]
        assert record["metrics"]["steps"]["cpu"] > 0
        union.append(table)
    final = pl.read_parquet(whole / "lo2_metrics.parquet")
    assert final.equals(pl.concat(union))  # the union of the parts, in run order
    assert _info(whole)["metric_features"]["sequences"] == pl.scan_parquet(
        whole / "lo2_sequences_enhanced.parquet").select(pl.len()).collect().item()


def test_run_by_run_features_equal_a_join_over_all_metrics(whole: Path,
                                                           lo2_sample: Path) -> None:
    seqs = pl.read_parquet(whole / "lo2_sequences_enhanced.parquet")
    dirs = sorted((c.parent.name, c.name, c / "metrics")
                  for c in lo2_sample.glob("*/*") if (c / "metrics").is_dir())
    everything, skipped = load_metrics(dirs)
    assert not skipped
    base = seqs.select([c for c in seqs.columns if not c.startswith("mx_")])
    expected = metric_features(base, everything, DEFAULT_FEATURES)
    mx = [c for c in seqs.columns if c.startswith("mx_")]
    assert mx and seqs.select(mx).equals(expected.select(mx))


def test_an_interrupted_metrics_load_resumes_to_the_same_bytes(
        whole: Path, lo2_sample: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    real = R.compute_run
    calls = []

    def dies_on_the_second_run(*a: object, **k: object) -> R.RunResult:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(R, "compute_run", dies_on_the_second_run)
    assert _load(lo2_sample, out) == 130
    assert not (out / "lo2_metrics.parquet").exists()
    monkeypatch.setattr(R, "compute_run", real)
    assert _load(lo2_sample, out) == 0
    assert _info(out)["parts"]["reused"] == 1
    assert _digests(out) == _digests(whole)


def test_a_changed_metrics_file_loads_its_run_again(whole: Path, lo2_sample: Path,
                                                    tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(lo2_sample, tree)
    out = tmp_path / "out"
    assert _load(tree, out) == 0
    runs = sorted(p.name for p in tree.iterdir() if p.is_dir())
    target = sorted((tree / runs[1]).glob("*/metrics/metric_container_cpu_usage_seconds_total"
                                          ".json"))[0]
    series = json.loads(target.read_text())
    for s in series:  # every sample of the case's cpu counter one core-second higher
        s["values"] = [[t, str(float(v) + 1.0)] for t, v in s["values"]]
    target.write_text(json.dumps(series))
    assert _load(tree, out, "--append") == 0
    parts = _info(out)["parts"]
    assert parts["reused"] == 1 and parts["loaded"] == 2  # the changed run and the one after
    changed = pl.read_parquet(out / "lo2_metrics.parquet").filter(
        pl.col("run") == runs[1], pl.col("metric") == "container_cpu_usage_seconds_total",
        pl.col("test_case") == target.parent.parent.name)
    before = pl.read_parquet(whole / "lo2_metrics.parquet").filter(
        pl.col("run") == runs[1], pl.col("metric") == "container_cpu_usage_seconds_total",
        pl.col("test_case") == target.parent.parent.name)
    assert (changed["value"] - before["value"]).round(6).unique().to_list() == [1.0]


def test_metrics_without_the_enhanced_table(lo2_sample: Path, whole: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["--root", str(lo2_sample), "--output-dir", str(out), "--load-metrics",
                 "--quiet"]) == 0
    assert pl.read_parquet(out / "lo2_metrics.parquet").equals(
        pl.read_parquet(whole / "lo2_metrics.parquet"))
    assert "metric_features" not in _info(out)


@pytest.mark.parametrize("only", [False, True])
def test_reading_far_more_metrics_than_the_features_need_is_warned_about(
        only: bool, lo2_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from loglead_lo2.loader import metric_join

    monkeypatch.setattr(metric_join, "METRICS_WARN_BYTES", 1)  # as if a real export
    flags = ["--feature-metrics-only"] if only else []
    with caplog.at_level("WARNING", logger="loglead_lo2.loader.metric_join"):
        assert main(["--root", str(lo2_sample), "--output-dir", str(tmp_path / "out"),
                     "--runs", "2", "--errors-per-run", "1", "--single-service", "token",
                     "--load-metrics", "--quiet", *flags]) == 0
    warned = [r.getMessage() for r in caplog.records if "--feature-metrics-only" in
              r.getMessage()]
    assert bool(warned) is not only
    if warned:
        assert "in the first run" in warned[0] and " for 2 runs" in warned[0]
        assert f"need {len({f.metric for f in DEFAULT_FEATURES})} metrics" in warned[0]
