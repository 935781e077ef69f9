"""Metric features per sequence (loglead_lo2.enhancers.metric_features) and the loader's
``mx_*`` columns: join by time on hand-made frames, counters, real LO2 metrics, flags."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.enhancers.metric_features import (
    DEFAULT_FEATURES,
    MetricFeature,
    describe,
    label,
    metric_features,
    model_columns,
    read_features,
    sampling_steps,
)
from loglead_lo2.errors import UserError
from loglead_lo2.loader.metrics import load_metrics

T0 = datetime(2025, 2, 16, 22, 0, 0)
REAL = Path(__file__).parent / "data" / "real_metrics" / "LO2_run_1739743201"
CPU = MetricFeature("cpu", "container_cpu_usage_seconds_total", "counter", "container")
LOAD = MetricFeature("load", "node_load1", "gauge", "host")
BUSY = MetricFeature("busy", "node_cpu_seconds_total", "counter", "host", {"mode": "!idle"})


def _sample(metric: str, second: float, value: float, container: str | None = None,
            job: str = "cadvisor", case: str = "c", **labels: str) -> dict:
    if container is not None:
        labels["name"] = container
    return {"run": "r", "test_case": case, "metric": metric, "job": job, "instance": "x",
            "container": container, "labels": json.dumps({"job": job, **labels},
                                                         sort_keys=True),
            "timestamp": T0 + timedelta(seconds=second), "value": float(value)}


def _metrics(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows).with_columns(pl.col("timestamp").cast(pl.Datetime("ms")))


def _windows(*spans: tuple[str, str, float, float], case: str = "c") -> pl.DataFrame:
    return pl.DataFrame({
        "seq_id": [s[0] for s in spans], "run": ["r"] * len(spans),
        "test_case": [case] * len(spans), "service": [s[1] for s in spans],
        "window_start": [T0 + timedelta(seconds=s[2]) for s in spans],
        "window_end": [T0 + timedelta(seconds=s[3]) for s in spans],
    }).with_columns(pl.col("window_start", "window_end").cast(pl.Datetime("ms")))


TOKEN = "light-oauth2-oauth2-token-1"
# a CPU counter of the token container, +2 per second, reset after t=6 (the container restarted)
CPU_VALUES = [100, 102, 104, 106, 108, 110, 112, 1, 3, 5, 7]


def test_counter_window_boundaries_and_reset() -> None:
    rows = [_sample(CPU.metric, i, v, TOKEN) for i, v in enumerate(CPU_VALUES)]
    rows.append(_sample(CPU.metric, 3, 999, "light-oauth2-oauth2-user-1"))  # other service
    win = _windows(("a", "token", 0, 5), ("b", "token", 5, 10), ("c", "token", 10, 15),
                   ("d", "token", 20, 25))
    out = metric_features(win, _metrics(rows), [CPU]).sort("seq_id")
    by = {r["seq_id"]: r for r in out.iter_rows(named=True)}
    # [0, 5): samples 0..4, the first has no increase: 4 increases of 2 over 4 s
    assert (by["a"]["mx_cpu_n"], by["a"]["mx_cpu_increase"], by["a"]["mx_cpu_rate"]) == (
        4, 8.0, 2.0)
    # [5, 10): 110-108, 112-110, reset to 1 (counts 1), 3-1, 5-3 = 9 over 5 s; t=10 is outside
    assert (by["b"]["mx_cpu_n"], by["b"]["mx_cpu_increase"]) == (5, 9.0)
    assert by["b"]["mx_cpu_rate"] == pytest.approx(1.8)
    assert (by["c"]["mx_cpu_n"], by["c"]["mx_cpu_increase"]) == (1, 2.0)  # t=10 only
    # no sample in the span: null statistics and a zero count, never a silent zero
    assert by["d"]["mx_cpu_n"] == 0
    assert by["d"]["mx_cpu_increase"] is None and by["d"]["mx_cpu_rate"] is None


def test_gauge_host_scope_reaches_every_service_and_missing_samples_stay_null() -> None:
    rows = [_sample(LOAD.metric, i, i, job="node") for i in range(10) if i != 6]
    win = _windows(("t0", "token", 0, 5), ("u0", "user", 0, 5), ("t1", "token", 5, 10),
                   ("t9", "token", 30, 35))
    out = metric_features(win, _metrics(rows), [LOAD])
    assert out["seq_id"].to_list() == ["t0", "u0", "t1", "t9"]  # row order kept
    by = {r["seq_id"]: r for r in out.iter_rows(named=True)}
    assert by["t0"]["mx_load_mean"] == by["u0"]["mx_load_mean"] == 2.0
    assert (by["t1"]["mx_load_n"], by["t1"]["mx_load_max"]) == (4, 9.0)  # t=6 is missing
    assert by["t1"]["mx_load_mean"] == pytest.approx((5 + 7 + 8 + 9) / 4)
    assert by["t9"]["mx_load_n"] == 0 and by["t9"]["mx_load_mean"] is None


def test_series_are_summed_and_labels_filter_them() -> None:
    rows = []
    for i in range(6):
        for cpu in ("0", "1"):
            rows.append(_sample(BUSY.metric, i, 10 * i, job="node", cpu=cpu, mode="user"))
            rows.append(_sample(BUSY.metric, i, 100 * i, job="node", cpu=cpu, mode="idle"))
    out = metric_features(_windows(("w", "code", 0, 6)), _metrics(rows), [BUSY])
    # two CPUs x 10 per second outside idle; idle is left out by {"mode": "!idle"}
    assert out["mx_busy_rate"].item() == pytest.approx(20.0)


def test_sequences_without_windows_use_their_first_to_last_event() -> None:
    rows = [_sample(LOAD.metric, i, i, job="node") for i in range(20)]
    seqs = pl.DataFrame({
        "seq_id": ["s"], "run": ["r"], "test_case": ["c"], "service": ["key"],
        "start_time": [T0 + timedelta(seconds=3)], "end_time": [T0 + timedelta(seconds=7)],
    }).with_columns(pl.col("start_time", "end_time").cast(pl.Datetime("ms")))
    out = metric_features(seqs, _metrics(rows), [LOAD])
    assert (out["mx_load_n"].item(), out["mx_load_mean"].item()) == (5, 5.0)  # 3..7 inclusive


def test_other_cases_and_runs_never_leak_in() -> None:
    rows = [_sample(LOAD.metric, i, 50, job="node", case="other") for i in range(5)]
    rows += [_sample(LOAD.metric, i, 1, job="node") for i in range(5)]
    out = metric_features(_windows(("w", "token", 0, 5)), _metrics(rows), [LOAD])
    assert out["mx_load_max"].item() == 1.0


def test_feature_list_file_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "f.json"
    good.write_text(json.dumps([{"name": "cpu", "metric": CPU.metric, "kind": "counter",
                                 "scope": "container", "unit": "cores"}]))
    assert read_features(good) == (MetricFeature("cpu", CPU.metric, "counter",
                                                 "container", unit="cores"),)
    yml = tmp_path / "f.yml"
    yml.write_text("- {name: load, metric: node_load1, kind: gauge, scope: host}\n")
    assert read_features(yml)[0].scope == "host"
    cases = {
        "[]": "non-empty list",
        '[{"name": "x", "metric": "m", "kind": "summary", "scope": "host"}]': "kind must be",
        '[{"name": "x", "metric": "m", "kind": "gauge", "scope": "pod"}]': "scope must be",
        '[{"name": "X!", "metric": "m", "kind": "gauge", "scope": "host"}]': "name must be",
        '[{"name": "x", "metric": "m", "kind": "gauge"}]': "missing scope",
        '[{"name": "x", "metric": "m", "kind": "gauge", "scope": "host", "extra": 1}]':
            "unknown field",
        "{not json": "not valid JSON",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(UserError, match=message) as info:
            read_features(bad)
        assert str(bad) in str(info.value)
    with pytest.raises(UserError, match="cannot read"):
        read_features(tmp_path / "missing.json")


def test_model_columns_and_readable_names() -> None:
    cols = ["seq_len", "mx_cpu_n", "mx_cpu_increase", "mx_cpu_rate", "mx_memory_mean",
            "mx_memory_max", "e_words"]
    assert model_columns(cols) == ("mx_cpu_rate", "mx_memory_max", "mx_memory_mean")
    assert describe("mx_cpu_rate") == (
        "metric: CPU use of the service's container (cores), rate over the span")
    assert describe("mx_host_load1_mean") == "metric: host load average (1 min), mean over the span"
    assert describe("mx_custom_thing_max") == "metric: custom thing, maximum over the span"
    assert describe("ERR12014") is None
    assert label("mx_cpu_rate") == "cpu rate (metric, cores)"
    assert label("mx_host_load1_mean") == "host_load1 mean (metric)"
    assert label("ERR12014") == "ERR12014"
    assert label("w" * 50, 40) == "w" * 37 + "..." and label("w" * 40, 40) == "w" * 40


# -- real LO2 metrics -----------------------------------------------------------------------
def test_real_lo2_metrics_join_generated_logs(lo2_result: Path) -> None:
    """The real exports of one run, joined to generated sequences placed on the real cases'
    time ranges (as the recording harness would have placed them)."""
    dirs = [("LO2_run_1739743201", p.name, p / "metrics") for p in sorted(REAL.iterdir())
            if p.is_dir()]
    real, skipped = load_metrics(dirs)
    assert not skipped and real.height > 10_000
    assert sampling_steps(real, DEFAULT_FEATURES[:1]) == {"cpu": 1.0}
    cases = [d[1] for d in dirs]
    seqs = pl.read_parquet(lo2_result / "lo2_sequences_enhanced.parquet",
                           columns=["seq_id", "run", "test_case", "service", "start_time",
                                    "end_time"])
    first = seqs["run"].min()
    picked = []
    for case in cases:
        rows = seqs.filter((pl.col("run") == first) & (pl.col("test_case") == case))
        if rows.height == 0:  # a case the generated sample does not hold: use another
            rows = seqs.filter((pl.col("run") == first) & (pl.col("test_case") != "correct")
                               & ~pl.col("test_case").is_in(cases)).filter(
                pl.col("test_case") == pl.col("test_case").min())
        start = real.filter(pl.col("test_case") == case)["timestamp"].min()
        shift = start + timedelta(seconds=2) - rows["start_time"].min()
        picked.append(rows.with_columns(
            run=pl.lit("LO2_run_1739743201"), test_case=pl.lit(case),
            seq_id=pl.col("seq_id") + "__" + case,
            start_time=pl.col("start_time") + shift, end_time=pl.col("end_time") + shift))
    placed = pl.concat(picked)
    features = [f for f in DEFAULT_FEATURES
                if f.metric in set(real["metric"].unique().to_list())]
    assert [f.name for f in features] == ["cpu", "host_load1", "host_mem_available"]
    out = metric_features(placed, real, features)
    assert out.height == placed.height
    # every service container of LO2 is named light-oauth2-oauth2-<service>-1 in the exports
    assert out.filter(pl.col("mx_cpu_n") == 0).height == 0
    assert out["mx_cpu_rate"].min() >= 0 and out["mx_cpu_rate"].max() < 8  # cores of a host
    assert 5 < out["mx_host_load1_mean"].min() <= out["mx_host_load1_max"].max() < 20
    assert out["mx_host_mem_available_mean"].min() > 1e9


# -- the loader --------------------------------------------------------------------------
def test_loader_adds_metric_features_and_records_them(lo2_result: Path) -> None:
    seqs = pl.read_parquet(lo2_result / "lo2_sequences_enhanced.parquet")
    info = json.loads((lo2_result / "lo2_load_info.json").read_text())["metric_features"]
    assert info["source"] == "built-in" and info["columns"]
    assert [c for c in seqs.columns if c.startswith("mx_")] == info["columns"]
    assert info["step_seconds"]["cpu"] == 1.0
    assert info["sequences"] == seqs.height
    assert seqs.filter(pl.col("mx_cpu_n") > 0).height > 0.9 * seqs.height
    assert (seqs["mx_cpu_rate"].drop_nulls() >= 0).all()


def test_loader_metric_features_flag(lo2_sample: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from loglead_lo2.loader.cli import main

    spec = tmp_path / "features.json"
    spec.write_text(json.dumps([
        {"name": "cpu", "metric": CPU.metric, "kind": "counter", "scope": "container"},
        {"name": "nope", "metric": "no_such_metric", "kind": "gauge", "scope": "host"}]))
    out = tmp_path / "out"
    base = ["--root", str(lo2_sample), "--output-dir", str(out), "--save-parquet",
            "--runs", "1", "--quiet"]
    assert main([*base, "--load-metrics", "--metric-features", str(spec)]) == 0
    cols = [c for c in pl.read_parquet_schema(out / "lo2_sequences_enhanced.parquet")
            if c.startswith("mx_")]
    assert cols == ["mx_cpu_n", "mx_cpu_increase", "mx_cpu_rate"]
    info = json.loads((out / "lo2_load_info.json").read_text())["metric_features"]
    assert info["missing_metrics"] == ["nope"] and info["source"] == str(spec)
    capsys.readouterr()
    assert main([*base, "--metric-features", str(spec), "--overwrite"]) == 2
    assert "add --load-metrics" in capsys.readouterr().err
    spec.write_text("[{}]")
    assert main([*base, "--load-metrics", "--metric-features", str(spec), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert str(spec) in err and "Traceback" not in err
    # without --load-metrics no mx_* column is written
    assert main([*base, "--overwrite"]) == 0
    assert not [c for c in pl.read_parquet_schema(out / "lo2_sequences_enhanced.parquet")
                if c.startswith("mx_")]


# -- shortcuts and the model path ---------------------------------------------------------
def test_recording_order_flags_host_metrics_only() -> None:
    from loglead_lo2.detection.leakage import host_columns, leakage_lines, leakage_report

    rows = []
    for run in ("r1", "r2"):
        for i, case in enumerate(("correct", "e1", "e2", "e3")):
            for service in ("code", "token", "user"):
                rows.append({"seq_id": f"{run}{case}{service}", "run": run, "test_case": case,
                             "service": service, "window": 0, "anomaly": case != "correct",
                             "seq_len": 10, "duration_sec": 5.0,
                             # free memory falls case by case; the CPU differs by service
                             "mx_host_mem_available_mean": 3e10 - 1e9 * i + 0.1 * (
                                 service == "user"),
                             "mx_cpu_rate": {"code": 0.2, "token": 0.5, "user": 0.3}[service]})
    hold = pl.DataFrame(rows)
    assert host_columns(hold) == ["mx_host_mem_available_mean"]  # rounding tolerated
    report = leakage_report(hold, windowed=True)
    order = report["recording_order"]
    assert order["separability"] == {"mx_host_mem_available_mean": 1.0}
    assert "recording order" in order["warning"]
    assert any("host metrics alone" in line for line in leakage_lines(report))
    assert leakage_report(hold.drop("mx_host_mem_available_mean"))["recording_order"][
        "warning"] is None


@pytest.fixture(scope="module")
def fused(lo2_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared sample in 5 s windows with metric features, evaluated with fused models."""
    from loglead_lo2.detection.cli import main as detect_main
    from loglead_lo2.loader import LoadOptions, run_loader

    out = tmp_path_factory.mktemp("fused") / "result"
    run_loader(LoadOptions(root=lo2_sample, output_dir=out, window=5.0, save_parquet=True,
                           load_metrics=True))
    assert detect_main(["--root", str(out), "--skip-if", "--label-mode", "test-case",
                        "--models", "event_lr_words_metrics,metrics_iforest"]) == 0
    return out


def test_fused_bundles_score_a_fresh_load_and_name_what_is_missing(
        fused: Path, lo2_sample: Path, tmp_path: Path) -> None:
    import shutil

    from loglead_lo2.detection.scoring import score_folder
    from loglead_lo2.loader import LoadOptions, run_loader

    run = json.loads((fused / "metrics/detect_run.json").read_text())["split"][
        "holdout_runs"][-1]
    shutil.copytree(lo2_sample / run, tmp_path / "tree" / run)
    fresh = tmp_path / "fresh"
    run_loader(LoadOptions(root=tmp_path / "tree", output_dir=fresh, window=5.0,
                           save_parquet=True, load_metrics=True))
    for key in ("event_lr_words_metrics", "metrics_iforest"):
        preds = score_folder(fresh, fused / f"metrics/models/{key}.joblib").sort("seq_id")
        seen = pl.read_parquet(fused / f"metrics/{key}_predictions.parquet").filter(
            pl.col("run") == run).sort("seq_id")
        assert preds["seq_id"].to_list() == seen["seq_id"].to_list()
        assert preds["score"].to_list() == pytest.approx(seen["score"].to_list(), rel=1e-9)
    bare = tmp_path / "bare"
    run_loader(LoadOptions(root=tmp_path / "tree", output_dir=bare, window=5.0,
                           save_parquet=True))
    with pytest.raises(UserError, match="--load-metrics --save-parquet"):
        score_folder(bare, fused / "metrics/models/metrics_iforest.joblib")


def test_leaderboard_warns_of_recording_order_under_test_case_labels(fused: Path) -> None:
    """Test-case labels make every row of an error case anomalous: the host's falling free
    memory then tells correct (recorded first) from the error cases."""
    board = (fused / "metrics/leaderboard.md").read_text()
    assert "**Recording order.**" in board and "mx_host_mem_available" in board
    leak = json.loads((fused / "metrics/leakage.json").read_text())["recording_order"]
    assert leak["separability"]["mx_host_mem_available_mean"] > 0.9


def test_feature_metrics_only_reads_just_the_listed_files(lo2_sample: Path, lo2_result: Path,
                                                          tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    from loglead_lo2.loader.cli import main

    out = tmp_path / "only"
    assert main(["--root", str(lo2_sample), "--output-dir", str(out), "--save-parquet",
                 "--load-metrics", "--feature-metrics-only", "--quiet"]) == 0
    read = set(pl.read_parquet(out / "lo2_metrics.parquet")["metric"].unique().to_list())
    assert read == {f.metric for f in DEFAULT_FEATURES}  # the generator makes them all
    every = set(pl.read_parquet(lo2_result / "lo2_metrics.parquet")["metric"].unique())
    assert read < every  # e.g. node_load5 and container_memory_usage_bytes are not read
    # the same features as a load that read every file
    cols = [c for c in pl.read_parquet_schema(out / "lo2_sequences_enhanced.parquet")
            if c.startswith("mx_")]
    a = pl.read_parquet(out / "lo2_sequences_enhanced.parquet", columns=["seq_id", *cols])
    b = pl.read_parquet(lo2_result / "lo2_sequences_enhanced.parquet",
                        columns=["seq_id", *cols])
    assert a.sort("seq_id").equals(b.sort("seq_id"))
    capsys.readouterr()
    assert main(["--root", str(lo2_sample), "--output-dir", str(tmp_path / "x"),
                 "--save-parquet", "--feature-metrics-only", "--quiet"]) == 2
    assert "add --load-metrics" in capsys.readouterr().err


def test_same_inputs_give_the_same_features(lo2_result: Path) -> None:
    """Float sums and means add their values in one fixed order: repeated runs (parallel
    joins and group-bys) give identical columns, to the last bit."""
    seqs = pl.read_parquet(lo2_result / "lo2_sequences_enhanced.parquet").select(
        pl.exclude("^mx_.*$"))
    metrics = pl.read_parquet(lo2_result / "lo2_metrics.parquet")
    first = metric_features(seqs, metrics)
    for _ in range(5):
        assert metric_features(seqs, metrics).equals(first)
