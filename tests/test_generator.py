"""The seeded LO2 sample generator: tree, layout, ground truth, determinism, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from loglead_lo2 import SERVICES
from loglead_lo2.cases import test_cases
from loglead_lo2.generator import MANIFEST_NAME, SUMMARY_NAME, generate, log_name
from loglead_lo2.generator.cli import main
from loglead_lo2.generator.metrics import METRIC_NAMES

PATTERN = re.compile(
    r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \[([^\]]+)\]  ([A-Za-z0-9_-]{22})? "
    r"(DEBUG|INFO |WARN |ERROR|TRACE) (\S+) (\S+) - (.*)$"
)
SCALE = 0.03


def _lines(path: Path) -> list[str]:
    text = path.read_text("utf-8")
    assert text == "" or text.endswith("\n")
    return text.split("\n")[:-1] if text else []


def _manifest(root: Path) -> list[dict[str, str]]:
    with open(root / MANIFEST_NAME, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lo2") / "sample"
    summary = generate(root, runs=2, seed=7, scale=SCALE, with_metrics=True)
    assert summary.runs == sorted(summary.runs)
    return root


def _runs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def test_tree_has_54_cases_of_7_logs(sample: Path) -> None:
    runs = _runs(sample)
    assert len(runs) == 2 and all(re.fullmatch(r"light-oauth2-data-\d{10}", r.name) for r in runs)
    assert sorted(p.name for p in sample.iterdir() if p.is_file()) == [MANIFEST_NAME,
                                                                       SUMMARY_NAME]
    for run in runs:
        cases = sorted(p.name for p in run.iterdir())
        assert cases == sorted(test_cases())
        for case in cases:
            logs = sorted(p.name for p in (run / case).glob("*.log"))
            assert logs == sorted(log_name(s) for s in SERVICES)
    meta = json.loads((sample / SUMMARY_NAME).read_text())
    assert meta["params"]["seed"] == 7 and meta["run_names"] == [r.name for r in runs]
    assert meta["counts"]["files"] == 2 * 54 * 7


def test_layout_order_and_time_window(sample: Path) -> None:
    """Every line matches the logback pattern or belongs to a manifest event / start-up."""
    events = {}
    for row in _manifest(sample):
        key = (row["run"], row["test_case"], row["service"])
        start = int(row["line_no"])
        events.setdefault(key, set()).update(range(start, start + int(row["n_lines"])))
    for run in _runs(sample):
        epoch = int(run.name.rsplit("-", 1)[1])
        day = datetime.fromtimestamp(epoch, tz=timezone.utc)
        for path in sorted(run.glob("*/*.log")):
            service = path.name[len("light-oauth2-oauth2-"):-len("-1.log")]
            covered = events.get((run.name, path.parent.name, service), set())
            previous = -1
            for no, line in enumerate(_lines(path), start=1):
                m = PATTERN.match(line)
                if m is None:
                    assert no in covered or path.parent.name == "correct", (path, no, line)
                    continue
                h, mi, s, ms = (int(g) for g in m.groups()[:4])
                t = ((h * 60 + mi) * 60 + s) * 1000 + ms
                assert t >= previous, (path, no)
                previous = t
                stamp = day.replace(hour=h, minute=mi, second=s).timestamp()
                if stamp > epoch + 43200:
                    stamp -= 86400
                assert 0 < epoch - stamp <= 3600, (path, no, line)
                if m.group(7) == "ERROR":
                    assert no in covered, f"unlisted ERROR {path}:{no}"
                thread, cid = m.group(5), m.group(6)
                assert (cid is None) == (not thread.startswith("XNIO")), line


def test_startup_block_only_in_correct_and_short(sample: Path) -> None:
    for run in _runs(sample):
        for path in sorted(run.glob("*/*.log")):
            lines = _lines(path)
            startup = [i for i, ln in enumerate(lines)
                       if "[main]" in ln or "JAVA_TOOL_OPTIONS" in ln or ln.startswith("INFO: ")]
            if path.parent.name != "correct":
                assert startup == [], path
                continue
            assert lines[0].startswith("Picked up JAVA_TOOL_OPTIONS")
            first_request = next(i for i, ln in enumerate(lines + ["[XNIO"]) if "[XNIO" in ln)
            assert 40 <= first_request < 100, (path, first_request)
            assert max(startup) < first_request


def test_volumes_follow_rates(sample: Path) -> None:
    run = _runs(sample)[0]

    def traffic(path: Path) -> int:  # request and Hazelcast lines (no start-up, no traces)
        return sum(1 for ln in _lines(path) if "[XNIO" in ln or "[hz." in ln)

    correct = {s: traffic(run / "correct" / log_name(s)) for s in SERVICES}
    assert max(correct, key=correct.get) == "token"
    assert 0.85 < correct["token"] / (22000 * SCALE) < 1.15
    assert correct["key"] <= 3
    assert len(_lines(run / "correct" / log_name("key"))) < 100  # start-up block + 0-3
    for service in ("client", "code", "refresh-token", "service", "user"):
        assert 12000 * SCALE < correct[service] < 19000 * SCALE, service
    case = run / "get_user_404_no_user"
    token = len(_lines(case / log_name("token")))
    assert 0.6 * 22000 * SCALE / 6 < token < 1.6 * 22000 * SCALE / 6
    assert len(_lines(case / log_name("key"))) <= 3


def test_volume_scales_linearly(tmp_path: Path) -> None:
    small = generate(tmp_path / "a", runs=1, seed=3, scale=0.02)
    large = generate(tmp_path / "b", runs=1, seed=3, scale=0.06)
    assert 2.4 < large.lines / small.lines < 3.3


def test_manifest_rows_point_at_error_events(sample: Path) -> None:
    rows = _manifest(sample)
    assert list(rows[0]) == ["run", "test_case", "service", "line_no", "n_lines", "timestamp",
                             "kind", "mechanism", "code"]
    keys = [(r["run"], r["test_case"], r["service"], int(r["line_no"])) for r in rows]
    assert keys == sorted(keys)
    cache: dict[Path, list[str]] = {}
    for r in rows:
        path = sample / r["run"] / r["test_case"] / log_name(r["service"])
        lines = cache.setdefault(path, _lines(path))
        start, n = int(r["line_no"]), int(r["n_lines"])
        event = lines[start - 1:start - 1 + n]
        first = PATTERN.match(event[0])
        assert first is not None, r
        assert r["timestamp"].endswith(event[0][:12]), (r, event[0])
        if r["mechanism"] not in ("DEBUG", "DEBUG+A"):
            assert first.group(7) == "ERROR", (r, event[0])
        if r["code"]:
            status = [ln for ln in event if "setExchangeStatus" in ln]
            assert len(status) == 1 and f'"code":"{r["code"]}"' in status[0], event
            assert PATTERN.match(status[0]).group(6) == first.group(6)  # same request
        if r["mechanism"] == "B":
            assert "ValidatorHandler handleRequest - There is an Validation Error:" in event[1]
        if r["mechanism"] in ("C", "NPE", "MapStore"):
            assert n > 5 and any(ln.startswith("\tat ") for ln in event)
        if r["mechanism"] == "DEBUG+A":
            assert "refreshToken = AAAAAA" in event[0]
        # the event shares its correlation id and thread with the normal request lines
        if first.group(6):
            same = [ln for ln in lines if first.group(6) in ln]
            assert len(same) > 1 + (n > 1)


def test_injected_only_in_target_service(sample: Path) -> None:
    cases = test_cases()
    rows = _manifest(sample)
    for run in _runs(sample):
        injected = [r for r in rows if r["run"] == run.name and r["kind"] == "injected"]
        per_case: dict[str, set[str]] = {}
        for r in injected:
            per_case.setdefault(r["test_case"], set()).add(r["service"])
            case = cases[r["test_case"]]
            assert r["service"] == case.target_service
            assert r["mechanism"] == case.mechanism and r["code"] == (case.code or "")
        for name, case in cases.items():
            if case.mechanism == "none":
                assert name not in per_case, name
            else:
                assert per_case.get(name) == {case.target_service}, name
            if not case.code:
                continue
            background = {(r["service"], r["code"]) for r in rows
                          if r["run"] == run.name and r["test_case"] == name}
            for service in SERVICES:
                if service == case.target_service or (service, case.code) in background:
                    continue
                text = (run / name / log_name(service)).read_text()
                assert f'"code":"{case.code}"' not in text, (name, service)


def test_background_errors_follow_rates_not_labels(sample: Path) -> None:
    rows = [r for r in _manifest(sample) if r["kind"] == "background"]
    npe = [r for r in rows if r["code"] == "ERR10010"]
    assert npe and {r["service"] for r in npe} == {"client"}
    assert {r["test_case"] for r in npe} - {"correct"}  # error cases have them too
    token = [r for r in rows if r["service"] == "token" and r["mechanism"] == "C"]
    assert {r["test_case"] for r in token} <= {"correct"}


def test_background_rate_per_second_is_the_same_in_every_case(tmp_path: Path) -> None:
    root = tmp_path / "big"
    generate(root, runs=1, seed=11, scale=1.0)
    rows = [r for r in _manifest(root) if r["kind"] == "background" and r["code"] == "ERR10010"]
    in_correct = sum(r["test_case"] == "correct" for r in rows) / 60.0
    in_errors = sum(r["test_case"] != "correct" for r in rows) / (53 * 10.0)
    assert 0.03 < in_correct < 0.3 and 0.05 < in_errors < 0.15  # NPE_RATE = 0.1 / s


def _metrics(case_dir: Path) -> dict[str, list[dict]]:
    return {name: json.loads((case_dir / "metrics" / f"metric_{name}.json").read_text())
            for name in METRIC_NAMES}


def _floats(series: dict) -> list[float]:
    return [float(v) for _, v in series["values"]]


def _by_name(data: list[dict]) -> dict[str, dict]:
    """Series of the named (cadvisor ``name`` label) containers."""
    return {s["metric"]["name"]: s for s in data if "name" in s["metric"]}


def _log_span(run: Path, case: str) -> tuple[float, float]:
    """Epoch seconds of the first and last log line of a case (all services)."""
    epoch = int(run.name.rsplit("-", 1)[1])
    day = datetime.fromtimestamp(epoch, tz=timezone.utc)
    stamps = []
    for service in SERVICES:
        for line in _lines(run / case / log_name(service)):
            m = PATTERN.match(line)
            if m:
                h, mi, sec, ms = (int(g) for g in m.groups()[:4])
                stamp = day.replace(hour=h, minute=mi, second=sec).timestamp() + ms / 1000
                stamps.append(stamp - 86400 if stamp > epoch + 43200 else stamp)
    return min(stamps), max(stamps)


def test_metrics_have_prometheus_shape(sample: Path) -> None:
    folder = _runs(sample)[0] / "correct" / "metrics"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f"metric_{n}.json" for n in METRIC_NAMES] + ["last_fetch_time.txt"])
    grid = None
    for name in METRIC_NAMES:
        text = (folder / f"metric_{name}.json").read_text()
        data = json.loads(text)
        assert text == json.dumps(data, indent=4)  # the real exports' layout
        assert isinstance(data, list) and data
        keys = [list(s["metric"].items()) for s in data]
        assert keys == sorted(keys)  # Prometheus order: sorted label sets
        for series in data:
            labels = series["metric"]
            assert list(labels) == sorted(labels) and labels["__name__"] == name
            assert labels["job"] in ("node", "cadvisor")
            times = [t for t, _ in series["values"]]
            assert all(isinstance(t, int) for t in times)
            assert grid is None or times == grid  # one grid for every file of a case
            grid = times
            assert all(isinstance(v, str) and float(v) >= 0 for _, v in series["values"])
        assert grid is not None and all(b - a == 1 for a, b in zip(grid, grid[1:], strict=False))
        assert 64 <= len(grid) <= 72  # 60 s case + lead and tail (real: 63 samples)
    text = (folder / "last_fetch_time.txt").read_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", text)
    assert grid is not None and datetime.fromisoformat(text).timestamp() == grid[-1]


def test_metrics_label_sets_like_the_real_exports(sample: Path) -> None:
    data = _metrics(_runs(sample)[0] / "access_token_auth_header_error_401")
    services = {f"light-oauth2-oauth2-{s}-1": s for s in SERVICES}
    others = {"jaeger-container", "light-oauth2-mysqldb-1"}
    for name, group in data.items():
        named = _by_name(group)
        if name.startswith("node_"):
            assert not named and all(s["metric"]["instance"] == "node_exporter:9100"
                                     and s["metric"]["group"] == "production" for s in group)
            continue
        assert all(s["metric"]["instance"] == "cadvisor:8080" for s in group)
        if name in ("container_cpu_usage_seconds_total", "container_memory_usage_bytes",
                    "container_memory_working_set_bytes"):
            assert set(named) == set(services) | others
            cgroups = [s["metric"]["id"] for s in group if "name" not in s["metric"]]
            assert "/" in cgroups and len(cgroups) == len(group) - 9 >= 2
        else:
            assert set(named) == set(services) and len(group) == 7
            extra = "interface" if "network" in name else "device"
            assert {s["metric"][extra] for s in group} == ({"eth0"} if extra == "interface"
                                                           else {"/dev/sda"})
        for container, series in named.items():
            labels = series["metric"]
            assert labels["container_label_com_docker_compose_project"] == "light-oauth2"
            assert re.fullmatch(r"/system\.slice/docker-[0-9a-f]{64}\.scope", labels["id"])
            if container in services:
                service = services[container]
                assert labels["container_label_com_docker_compose_service"] == f"oauth2-{service}"
                assert labels["image"] == f"networknt/oauth2-{service}:2.0.28"
        if name == "container_cpu_usage_seconds_total":
            assert {s["metric"]["cpu"] for s in group} == {"total"}
    cpu = {(s["metric"]["cpu"], s["metric"]["mode"]) for s in data["node_cpu_seconds_total"]}
    assert cpu == {(c, m) for c in "0123" for m in ("idle", "iowait", "system", "user")}
    for name in ("node_disk_read_bytes_total", "node_disk_written_bytes_total"):
        assert len({s["metric"]["device"] for s in data[name]}) == 2


def _runs_of_equal(values: list[float]) -> list[int]:
    runs, n = [], 1
    for a, b in zip(values, values[1:], strict=False):
        if a == b:
            n += 1
        else:
            runs.append(n)
            n = 1
    return runs  # the last (cut) run left out


def test_metrics_counters_grow_and_values_are_held_like_scrapes(sample: Path) -> None:
    for case_dir in sorted(p for p in _runs(sample)[1].iterdir() if p.is_dir())[:12]:
        data = _metrics(case_dir)
        for name, group in data.items():
            for series in group:
                values = _floats(series)
                if name.endswith("_total"):
                    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
                if name.startswith("node_") and name.endswith("_total"):
                    assert set(_runs_of_equal(values)[1:]) <= {5}  # 5 s scrapes
        for series in _by_name(data["container_cpu_usage_seconds_total"]).values():
            values = _floats(series)
            assert values[0] > 40  # cumulative since the container started
            assert set(_runs_of_equal(values)) <= {1, 2}  # cadvisor: a new value every 1-2 s


def test_metrics_range_extends_beyond_the_case_logs(sample: Path) -> None:
    run = _runs(sample)[0]
    for case in list(test_cases())[:8]:
        grid = [t for t, _ in _metrics(run / case)["node_load1"][0]["values"]]
        first, last = _log_span(run, case)
        if case == "correct":
            assert len(grid) >= 64  # start-up lines lie before the case's range
        else:
            assert grid[0] <= first - 1 and 10 <= grid[-1] - grid[0] <= 30
        assert grid[-1] >= last + 1


def test_metrics_follow_each_services_traffic(sample: Path) -> None:
    run = _runs(sample)[0]
    rates, traffic = [], []
    for case in list(test_cases())[:12]:
        lines = {s: len(_lines(run / case / log_name(s))) for s in SERVICES}
        data = _metrics(run / case)
        cpu, net = (
            {name[len("light-oauth2-oauth2-"):-2]: _floats(series)
             for name, series in _by_name(data[metric]).items() if "oauth2-oauth2" in name}
            for metric in ("container_cpu_usage_seconds_total",
                           "container_network_transmit_bytes_total"))
        grown = {s: v[-1] - v[0] for s, v in cpu.items()}
        sent = {s: v[-1] - v[0] for s, v in net.items()}
        # token: the most requests per second and the dearest ones; key: no traffic at all
        assert max(grown, key=lambda s: grown[s]) == "token", (case, grown)
        assert min(grown, key=lambda s: grown[s]) == "key" == min(sent, key=lambda s: sent[s])
        if case == "correct":  # long enough for the busiest service to be clear
            assert max(lines, key=lambda s: lines[s]) == "token" == max(sent, key=lambda s: sent[s])
        seconds = len(net["token"]) - 1
        for s in SERVICES:
            if s != "key":
                rates.append(sent[s] / seconds)
                traffic.append(lines[s] / seconds)
    assert np.corrcoef(rates, traffic)[0, 1] > 0.5  # bytes sent per second follow lines


def test_metrics_are_deterministic_and_only_follow_traffic() -> None:
    from loglead_lo2.generator.metrics import case_metrics, dumps, planned_activity
    from loglead_lo2.generator.schedule import CaseSlot

    slot = CaseSlot(3, "correct", 1_721_246_000_500, 1_721_246_010_500)
    again = CaseSlot(3, "correct", 1_721_246_000_500, 1_721_246_010_500)
    a, b = case_metrics(5, 1, slot), case_metrics(5, 1, again)
    assert a == b and a != case_metrics(6, 1, slot)
    for group in a.values():
        assert dumps(group) == json.dumps(group, indent=4)
    # the activity is the plan's traffic of the slot: the case's name plays no part
    other = CaseSlot(4, "token_revoked_401", slot.start_ms, slot.end_ms)
    seconds = np.arange(slot.start_ms // 1000 - 3, slot.end_ms // 1000 + 3)
    for service in SERVICES:
        act = planned_activity(service, slot, seconds)
        assert np.array_equal(act, planned_activity(service, other, seconds))
        assert act[0] == act[-1] == 0.0
    token = planned_activity("token", slot, seconds)
    assert token[4] < token[8] and abs(token[8:12].mean() - 380.0) < 1.0  # users ramp up


def test_loader_parses_the_generated_metrics(sample: Path) -> None:
    from loglead_lo2.loader.metrics import load_metrics

    run = _runs(sample)[0]
    case = run / "correct"
    table, skipped = load_metrics([(run.name, "correct", case / "metrics")])
    assert not skipped
    data = _metrics(case)
    assert table.height == sum(len(s["values"]) for g in data.values() for s in g)
    containers = set(table["container"].drop_nulls())
    assert {f"light-oauth2-oauth2-{s}-1" for s in SERVICES} <= containers
    assert set(table["metric"]) == set(METRIC_NAMES)


def test_same_arguments_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    kwargs = {"runs": 2, "scale": 0.01, "naming": "mixed", "with_metrics": True}
    generate(tmp_path / "a", seed=11, **kwargs)
    generate(tmp_path / "b", seed=11, **kwargs)
    generate(tmp_path / "c", seed=12, **kwargs)
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b
    assert len(a) == 2 * 54 * (7 + len(METRIC_NAMES) + 1) + 2
    assert set(a) != set(c) or a != c


def test_lo2_run_naming_shuffles_and_stays_within_an_hour(tmp_path: Path) -> None:
    summary = generate(tmp_path / "s", runs=2, seed=5, scale=0.005, naming="LO2_run",
                       start_epoch=1739743201)
    assert summary.runs[0] == "LO2_run_1739743201"
    assert all(n.startswith("LO2_run_") for n in summary.runs)
    assert summary.epochs == sorted(set(summary.epochs))
    mixed = generate(tmp_path / "m", runs=3, seed=5, scale=0.005, naming="mixed")
    assert [n.split("1")[0] for n in mixed.runs] == ["light-oauth2-data-", "LO2_run_",
                                                       "light-oauth2-data-"]
    # shuffled recording: error cases are not in sorted order and last 20-180 s
    run = tmp_path / "s" / summary.runs[0]
    starts = {}
    for case in test_cases():
        lines = [ln for ln in _lines(run / case / log_name("token")) if PATTERN.match(ln)]
        starts[case] = lines[0][:12]
    order = sorted(starts, key=starts.get)
    assert order[0] == "correct" and order[1:] != sorted(order[1:])
    epoch = summary.epochs[0]
    day = datetime.fromtimestamp(epoch, tz=timezone.utc)
    for stamp in (min(starts.values()), max(starts.values())):
        h, m, s = (int(x) for x in stamp[:8].split(":"))
        t = day.replace(hour=h, minute=m, second=s).timestamp()
        assert 0 < epoch - t <= 3600


def test_cli_refuses_non_empty_and_overwrites_only_its_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["--out", str(out), "--runs", "1", "--scale", "0.005", "--seed", "1"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "run 1/1" in first and MANIFEST_NAME in first
    (out / "notes.txt").write_text("mine")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and "Traceback" not in err
    assert main([*args[:-1], "2", "--overwrite", "-q"]) == 0
    runs = _runs(out)
    assert len(runs) == 1 and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / SUMMARY_NAME).read_text())["params"]["seed"] == 2


@pytest.mark.parametrize("bad", [["--runs", "0"], ["--scale", "0"], ["--scale", "-1"],
                                 ["--naming", "nope"], ["--runs", "two"]])
def test_cli_bad_values_exit_2(tmp_path: Path, bad: list[str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["--out", str(tmp_path / "x"), *bad])
    except SystemExit as exc:  # argparse rejects unparsable values itself
        code = exc.code
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_help_and_module_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--with-metrics" in capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "loglead_lo2.generator", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "lo2-sample" in proc.stdout


UUID32 = re.compile(
    r'"firstName":"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{8}"')
USER_ID = re.compile(r'"userId":"([0-9a-f]{8})"')


def test_values_have_the_recording_harness_shapes(sample: Path) -> None:
    """Register bodies as ``locust_user.User`` makes them, logged by the schema validator; ids
    reused by later requests of the same case only; MapStore keys of every shape."""
    run = _runs(sample)[0]
    user = (run / "correct" / log_name("user")).read_text("utf-8")
    bodies = [ln for ln in user.split("\n")
              if "PropertiesValidator" in ln and '"userType"' in ln]
    assert bodies and all(ln.count('"userId":"') == 2 for ln in bodies[:20])
    assert UUID32.search(user) and re.search(r'"email":"[0-9a-f-]{36}"', user)
    registered = set(USER_ID.findall(user))
    assert len(registered) > 10  # fresh values per registration (scale 0.03: ~15)
    other = (run / "get_user_404_no_user" / log_name("user")).read_text("utf-8")
    assert not registered & set(USER_ID.findall(other))  # a new locust process per case
    token = (run / "correct" / log_name("token")).read_text("utf-8")
    assert re.search(r"Load:[0-9a-f]{8}\n", token)
    assert re.search(r"Load:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n",
                     token)
    assert re.search(r'validate\( "Basic [A-Za-z0-9+/]{79}="', token)


def test_raw_token_variety_is_of_the_real_order(tmp_path: Path) -> None:
    """The real token log of one ``correct`` case: 22,660 lines, 17,329 distinct tokens."""
    root = tmp_path / "full"
    generate(root, runs=1, seed=2, scale=1.0)
    path = _runs(root)[0] / "correct" / log_name("token")
    text = path.read_text("utf-8")
    lines = text.count("\n")
    distinct = len(set(text.split()))
    assert 18000 < lines < 26000
    assert 0.5 < distinct / 17329 < 2.0, distinct


def test_cases_start_with_registrations_and_errors_can_be_early(sample: Path) -> None:
    """Each case is a new locust process: the registration users start first, so the
    first request lines of the user log belong to a registration, and the token service
    starts later than the client service. Error-case files start mid-traffic: injected
    events may fall in their first lines (the old 100-line trim removed them)."""
    for run in _runs(sample):
        for case in ("correct", "get_user_404_no_user", "access_token_client_secret_wrong_401"):
            lines = _lines(run / case / log_name("user"))
            first = next(ln for ln in lines if "[XNIO" in ln and "Validator" in ln)
            assert '"userId":"' in first and "PropertiesValidator" in first, first
            client = next(ln for ln in _lines(run / case / log_name("client")) if "[XNIO" in ln)
            token = next(ln for ln in _lines(run / case / log_name("token")) if "[XNIO" in ln)
            assert client[:12] < token[:12]
    early = [r for r in _manifest(sample)
             if r["kind"] == "injected" and int(r["line_no"]) <= 100]
    assert early, "no injected event in the first 100 lines of any error-case file"


def test_value_encoders_match_the_standard_library() -> None:
    import base64
    import uuid

    import numpy as np

    from loglead_lo2.generator.values import client_pool, user_pool

    rng = np.random.default_rng(0)
    clients = client_pool(rng, 50)
    for cid, secret, basic in clients.select("client_id", "secret", "basic").iter_rows():
        assert uuid.UUID(cid).version == 4 and len(secret) == 22
        assert basic == "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
    users = user_pool(rng, 50)
    assert users["user_id"].str.len_chars().unique().to_list() == [8]
    assert users["first_name"].str.len_chars().unique().to_list() == [32]
    assert all(uuid.UUID(e).version == 4 for e in users["email"])


def test_host_memory_falls_through_the_run_as_in_the_real_exports(sample: Path) -> None:
    """The host's free memory falls from case to case (``correct`` is recorded first), as in
    tests/data/real_metrics: a host metric carries the recording order."""
    import polars as pl

    from loglead_lo2.loader.metrics import load_metrics

    run = _runs(sample)[0]
    dirs = [(run.name, p.name, p / "metrics") for p in sorted(run.iterdir()) if p.is_dir()]
    table, _ = load_metrics(dirs)
    mem = (table.filter(pl.col("metric") == "node_memory_MemAvailable_bytes")
           .group_by("test_case").agg(pl.col("value").mean(), pl.col("timestamp").min())
           .sort("timestamp"))
    assert mem["test_case"][0] == "correct"
    assert mem["value"][0] == mem["value"].max()
    assert mem["value"][0] - mem["value"][-1] > 1e9  # ~4 MB/s over the run's ~10 minutes
    corr = pl.DataFrame({"t": mem["timestamp"].dt.epoch("s"), "v": mem["value"]}).select(
        pl.corr("t", "v")).item()
    assert corr < -0.95
