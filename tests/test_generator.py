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


def test_metrics_have_prometheus_shape(sample: Path) -> None:
    folder = _runs(sample)[0] / "correct" / "metrics"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f"metric_{n}.json" for n in METRIC_NAMES] + ["last_fetch_time.txt"])
    last = None
    for name in METRIC_NAMES:
        data = json.loads((folder / f"metric_{name}.json").read_text())
        assert isinstance(data, list) and data
        for series in data:
            assert series["metric"]["__name__"] == name
            assert series["metric"]["job"] in ("node", "cadvisor")
            times = [t for t, _ in series["values"]]
            assert all(isinstance(t, int) for t in times)
            assert all(b - a == 1 for a, b in zip(times, times[1:], strict=False))
            assert 55 <= len(times) <= 63
            float(series["values"][0][1])
            assert all(isinstance(v, str) for _, v in series["values"])
            last = times[-1]
        if name.startswith("container_"):
            assert len(data) == 7
    text = (folder / "last_fetch_time.txt").read_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", text)
    assert datetime.fromisoformat(text).timestamp() == last


def test_same_arguments_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    kwargs = {"runs": 2, "scale": 0.01, "naming": "mixed", "with_metrics": True}
    generate(tmp_path / "a", seed=11, **kwargs)
    generate(tmp_path / "b", seed=11, **kwargs)
    generate(tmp_path / "c", seed=12, **kwargs)
    a, b, c = (_digests(tmp_path / x) for x in "abc")
    assert a == b
    assert len(a) == 2 * 54 * (7 + 7) + 2
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
