"""Prometheus ``query_range`` exports for each test case (``--with-metrics``).

Same shape as the real LO2 exports (``LO2_run_*/<case>/metrics/``): ``metric_<name>.json``
holds a JSON list of ``{"metric": {labels}, "values": [[epoch_seconds, "value"], ...]}``
(``json.dumps(..., indent=4)``, no final newline; labels sorted, series in Prometheus order),
and ``last_fetch_time.txt`` holds the last sample time as ``YYYY-MM-DDTHH:MM:SS+00:00``. All
files of a case share one grid: one sample per second from 2-6 s before the case's slot (its
first request; ``correct``'s start-up lines lie before it) to 2-5 s after its end
(:func:`case_times`; the real ``correct`` export has 63 samples for 60 s). The real exports of
10 s error cases span 53-80 s, mostly after the case (the following cases' traffic); that
padding is not reproduced: it would multiply the metrics of a sample by about four.

What is generated (:data:`METRIC_NAMES`):

- cAdvisor (``job: cadvisor``, ``instance: cadvisor:8080``), values that change every 1-2 s
  and are held otherwise, per container (as cAdvisor's housekeeping does):
  ``container_cpu_usage_seconds_total`` (``cpu: total``), ``container_memory_working_set_bytes``
  and ``container_memory_usage_bytes`` for the 7 service containers (``name:
  light-oauth2-oauth2-<service>-1`` with the docker compose labels of the real files),
  ``jaeger-container``, ``light-oauth2-mysqldb-1`` and the cgroups :data:`CGROUPS` (no
  ``name`` label: select by ``name``); ``container_network_{receive,transmit}_bytes_total``
  (``interface: eth0``) and ``container_fs_{reads,writes}_bytes_total`` (``device:
  /dev/sda``) for the 7 service containers.
- node_exporter (``job: node``, ``instance: node_exporter:9100``, ``group: production``),
  values held for each 5 s scrape: ``node_load1/5/15``, ``node_memory_MemAvailable_bytes``,
  ``node_cpu_seconds_total`` (``cpu`` 0-3 x ``mode`` idle/iowait/system/user) and
  ``node_disk_{read,written}_bytes_total`` (``device`` sda, dm-0).

Values. Counters are cumulative since the container (host) started and never decrease: a
case's offset is an uptime drawn per case (not its position in the run, which would make
``correct``, always recorded first, the case with the smallest counters) times the mean rate.
Per second, a service container's CPU, network and fs-write counters grow by an idle part
plus a cost per log line times the service's **planned activity** (:func:`planned_activity`:
the lines per second the plan's model gives the service at that second, scale 1.0, from
:data:`~loglead_lo2.generator.plan.RATES`, the users' start offsets
:data:`~loglead_lo2.generator.plan.SPAWN_S` and the Hazelcast share; zero outside the
case's slot). It is the plan's expected traffic, not the drawn lines (``write_case_metrics``
does not see the file plans), so the per-file +-8 % and Poisson variation of the logs is not
in the metrics. MySQL, Jaeger, the cgroups and the host CPU and disks follow the total
activity. Nothing depends on whether the case is an error case. Memory gauges drift slowly
with noise; load is a random walk; the host's MemAvailable falls through the whole run
(:data:`MEM_DRIFT`, from the case's time since the run's start) as in the real exports, so a
host metric carries the run's recording order (``correct`` first) as the real ones do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from operator import add
from pathlib import Path
from typing import Any

import numpy as np

from loglead_lo2 import SERVICES
from loglead_lo2.generator.plan import RATES, SPAWN_S
from loglead_lo2.generator.schedule import NS_METRICS, CaseSlot, rng_for
from loglead_lo2.generator.templates import HZ_SHARE

SCRAPE_SECONDS = 5
"""node_exporter values are held for this many one-second steps."""
LEAD_S = (2, 7)
TAIL_S = (2, 6)
"""Seconds (low, high exclusive) the range starts before the slot and ends after it."""

NODE = {"group": "production", "instance": "node_exporter:9100", "job": "node"}
CADVISOR = {"instance": "cadvisor:8080", "job": "cadvisor"}
MEM_DRIFT = 4e6
"""Bytes per second the host's free memory falls through a run: the real exports of
``LO2_run_1739743201`` fall from 35.8 GB (``correct``, recorded first) to 28.4 GB 30 minutes
later. A host metric thus tells when in the run a case was recorded (a shortcut)."""
NODE_GAUGES = ("node_load1", "node_load5", "node_load15", "node_memory_MemAvailable_bytes")
NODE_COUNTERS = ("node_cpu_seconds_total", "node_disk_read_bytes_total",
                 "node_disk_written_bytes_total")
NODE_METRICS = NODE_GAUGES + NODE_COUNTERS
CONTAINER_METRICS = (
    "container_cpu_usage_seconds_total", "container_memory_usage_bytes",
    "container_memory_working_set_bytes", "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total", "container_fs_reads_bytes_total",
    "container_fs_writes_bytes_total",
)
METRIC_NAMES = NODE_METRICS + CONTAINER_METRICS
NODE_CPUS = ("0", "1", "2", "3")
NODE_MODES = ("idle", "iowait", "system", "user")
NODE_DISKS = ("dm-0", "sda")
CGROUPS = ("/", "/system.slice", "/system.slice/docker.service")
"""cadvisor series without a ``name`` label (whole host, system slice, docker daemon)."""

_CPU_SHARE = {"token": 0.55, "code": 0.25, "client": 0.23, "user": 0.22, "service": 0.22,
              "refresh-token": 0.2, "key": 0.1}
"""CPU cores of each service container at full load (real ``correct`` case: token 0.56,
code 0.25, the other busy ones 0.21-0.24, key (no traffic) 0.1)."""
IDLE_CPU = 0.1
"""Cores a service's JVM uses without traffic; the rest of :data:`_CPU_SHARE` is per line."""
FULL_TRAFFIC = float(sum(RATES.values()))
"""Lines per second of all services at full load (scale 1.0)."""
PROJECT_DIR = "/home/lo2/light-oauth2"


@dataclass(frozen=True)
class Container:
    """A docker compose container as cAdvisor labels it."""

    name: str
    compose: str
    image: str
    depends_on: str | None
    service: str | None  # the LO2 service it runs (None: jaeger, mysqldb)


CONTAINERS: tuple[Container, ...] = tuple(
    Container(f"light-oauth2-oauth2-{s}-1", f"oauth2-{s}", f"networknt/oauth2-{s}:2.0.28",
              ("jaeger:service_started:false," if s == "code" else "")
              + "mysqldb:service_started:false", s)
    for s in SERVICES
) + (
    Container("jaeger-container", "jaeger", "jaegertracing/all-in-one:latest", None, None),
    Container("light-oauth2-mysqldb-1", "mysqldb", "mysql:5.7.16", None, None),
)
N_SERVICES = len(SERVICES)


def hash_str(text: str) -> int:
    """Stable (not salted) 256-bit number from ``text`` for fake ids and hashes."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def _container_labels(c: Container, seed: int, run: int) -> dict[str, str]:
    """cAdvisor labels of ``c`` (no ``__name__``); the id is new for every run."""
    compose = "container_label_com_docker_compose_"
    labels = {
        compose + "config_hash": f"{hash_str('config:' + c.compose):064x}",
        compose + "container_number": "1",
        compose + "image": f"sha256:{hash_str('image:' + c.image):064x}",
        compose + "oneoff": "False",
        compose + "project": "light-oauth2",
        compose + "project_config_files": f"{PROJECT_DIR}/docker-compose-oauth2-mysql.yml",
        compose + "project_working_dir": PROJECT_DIR,
        compose + "service": c.compose,
        compose + "version": "2.32.4",
        "id": f"/system.slice/docker-{hash_str(f'{seed}:{run}:{c.name}'):064x}.scope",
        "image": c.image,
        "name": c.name,
        **CADVISOR,
    }
    if c.depends_on:
        labels[compose + "depends_on"] = c.depends_on
    return labels


def case_times(seed: int, run: int, slot: CaseSlot) -> np.ndarray:
    """Sample times (epoch seconds, step 1) of a case: from ``LEAD_S`` seconds before the
    slot's start to ``TAIL_S`` seconds after its end, drawn per (seed, run, case)."""
    rng = rng_for(seed, NS_METRICS, run, slot.index, 0)
    lead, tail = int(rng.integers(*LEAD_S)), int(rng.integers(*TAIL_S))
    first = slot.start_ms // 1000 - lead
    last = -(-slot.end_ms // 1000) + tail
    return np.arange(first, last + 1, dtype=np.int64)


def _overlap(lo: np.ndarray, a: float, b: float) -> np.ndarray:
    """Part of each second ``[lo, lo + 1)`` inside ``[a, b)``."""
    return np.clip(np.minimum(lo + 1.0, b) - np.maximum(lo, a), 0.0, 1.0)


def planned_activity(service: str, slot: CaseSlot, seconds: np.ndarray) -> np.ndarray:
    """Expected log lines of ``service`` in each second ``[s, s + 1)`` of ``seconds`` at
    scale 1.0, from the plan's model (see :func:`~loglead_lo2.generator.plan.plan_file`):
    each simulated user sends its share of ``RATES[service]`` from its start offset
    (``SPAWN_S``) to the end of the slot; Hazelcast lines cover the whole slot."""
    rate = RATES[service]
    if rate <= 0:
        return np.zeros(len(seconds))
    lo = seconds.astype(np.float64)
    a, b = slot.start_ms / 1000.0, slot.end_ms / 1000.0
    spawns = SPAWN_S[service]
    users = sum(_overlap(lo, a + s, b) for s in spawns) / len(spawns)
    return rate * ((1.0 - HZ_SHARE) * users + HZ_SHARE * _overlap(lo, a, b))


def _noise(rng: np.random.Generator, shape: tuple[int, ...], shape_k: float = 16.0
           ) -> np.ndarray:
    """Multiplicative noise with mean 1 (gamma, coefficient of variation ``1/sqrt(k)``)."""
    return rng.gamma(shape_k, 1.0 / shape_k, size=shape)


def _cadvisor_index(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """``(k, n)`` index of the sample whose value each sample shows: every series gets a new
    value after 1 or 2 s (its own pattern) and holds it otherwise."""
    gaps = rng.integers(1, 3, size=(k, n))
    pos = np.cumsum(gaps, axis=1) - rng.integers(1, 3, size=(k, 1))
    change = np.zeros((k, n + 2), dtype=bool)
    np.put_along_axis(change, np.clip(pos, 0, n + 1), True, axis=1)
    change[:, 0] = True
    idx = np.where(change[:, :n], np.arange(n), 0)
    return np.maximum.accumulate(idx, axis=1)


def _node_index(phase: int, n: int) -> np.ndarray:
    """Index of the last 5 s scrape at each sample (the first sample is a scrape too)."""
    idx = np.where((np.arange(n) + phase) % SCRAPE_SECONDS == 0, np.arange(n), 0)
    return np.maximum.accumulate(idx)


def _held(values: np.ndarray, phase: int) -> np.ndarray:
    """Hold each scraped value for ``SCRAPE_SECONDS`` one-second steps."""
    idx = (np.arange(len(values)) + phase) // SCRAPE_SECONDS
    return values[np.minimum(idx, len(values) - 1)]


def _fmt_rows(values: np.ndarray, decimals: int) -> list[list[str]]:
    """Prometheus-style value strings (shortest, no exponent, no trailing zeros) of each row;
    each run of equal values is formatted once (most values are held)."""
    k, n = values.shape
    flat = np.round(values, decimals).ravel() if decimals else np.floor(values).ravel()
    new = np.ones(flat.size, dtype=bool)
    new[1:] = flat[1:] != flat[:-1]
    if decimals:
        strs = [f"{v:.{decimals}f}".rstrip("0").rstrip(".") for v in flat[new].tolist()]
    else:
        strs = [str(v) for v in flat[new].astype(np.int64).tolist()]
    table = np.array(strs, dtype=object)[np.cumsum(new) - 1].reshape(k, n)
    return [list(row) for row in table.tolist()]


Labels = tuple[tuple[str, str], ...]
Series = tuple[Labels, list[str]]
"""A series as generated: sorted labels (``__name__`` included) and value strings; the times
are the case's grid."""
Block = tuple[np.ndarray, int]
"""A metric's values, one row per series in :func:`_row_labels` order, and their decimals."""


def _row_labels(name: str, seed: int, run: int) -> list[dict[str, str]]:
    """Labels (no ``__name__``) of the rows of ``name`` as :func:`_case_series` makes them."""
    if name in NODE_GAUGES:
        return [NODE]
    if name == "node_cpu_seconds_total":
        return [{"cpu": c, "mode": m, **NODE} for c in NODE_CPUS for m in NODE_MODES]
    if name.startswith("node_disk_"):
        return [{"device": d, **NODE} for d in NODE_DISKS]
    cadvisor = [_container_labels(c, seed, run) for c in CONTAINERS]
    if name == "container_cpu_usage_seconds_total":
        return [{"cpu": "total", **lab} for lab in cadvisor] + [
            {"cpu": "total", "id": g, **CADVISOR} for g in CGROUPS]
    if name.startswith("container_memory_"):
        return cadvisor + [{"id": g, **CADVISOR} for g in CGROUPS]
    extra = {"interface": "eth0"} if "_network_" in name else {"device": "/dev/sda"}
    return [{**extra, **lab} for lab in cadvisor[:N_SERVICES]]


@lru_cache(maxsize=1024)
def _label_sets(name: str, seed: int, run: int) -> tuple[tuple[Labels, ...], tuple[int, ...]]:
    """Sorted label sets of ``name``'s series in Prometheus order (sorted by label set, as a
    query returns them) and the row of each."""
    sets = [tuple(sorted({"__name__": name, **lab}.items()))
            for lab in _row_labels(name, seed, run)]
    order = sorted(range(len(sets)), key=sets.__getitem__)
    return tuple(sets[i] for i in order), tuple(order)


def _node_blocks(rng: np.random.Generator, n: int, total: np.ndarray,
                 elapsed: np.ndarray) -> dict[str, Block]:
    """``elapsed``: seconds since the run's start of each sample (the host's free memory
    falls through a run, as in the real exports)."""
    phase = int(rng.integers(0, SCRAPE_SECONDS))
    load1 = np.clip(10 + np.cumsum(rng.normal(0, 0.4, n)), 0.5, None)
    load5 = np.clip(load1.mean() * 0.85 + np.cumsum(rng.normal(0, 0.08, n)), 0.5, None)
    load15 = np.clip(load5.mean() * 0.8 + np.cumsum(rng.normal(0, 0.02, n)), 0.5, None)
    mem = 3.6e10 - MEM_DRIFT * elapsed + np.cumsum(rng.normal(0, 2e6, n))
    out: dict[str, Block] = {}
    for name, vals, dec in (("node_load1", load1, 2), ("node_load5", load5, 2),
                            ("node_load15", load15, 2),
                            ("node_memory_MemAvailable_bytes", mem, 0)):
        out[name] = (_held(np.round(vals, dec), phase)[None, :], dec)
    idx = _node_index(phase, n)
    busy = np.clip(total / FULL_TRAFFIC, 0.0, 1.5)
    uptime = rng.uniform(1.5e5, 2.5e5)  # host seconds since boot
    g = _noise(rng, (len(NODE_CPUS), 3, n))
    user = (0.35 + 0.3 * busy) * g[:, 0]
    system = (0.1 + 0.06 * busy) * g[:, 1]
    iowait = 0.01 * g[:, 2]
    idle = np.clip(1.0 - user - system - iowait, 0.01, None)
    rates = np.stack([idle, iowait, system, user], axis=1)  # NODE_MODES order
    share = np.array([0.55, 0.01, 0.1, 0.34])[None, :] * rng.uniform(0.95, 1.05, (4, 4))
    cum = uptime * share[:, :, None] + np.cumsum(rates, axis=2)
    out["node_cpu_seconds_total"] = (cum.reshape(-1, n)[:, idx], 2)
    for name, base, per_busy in (("node_disk_read_bytes_total", 1.5e4, 4e4),
                                 ("node_disk_written_bytes_total", 2e5, 2.5e6)):
        k = len(NODE_DISKS)
        rate = (base + per_busy * busy) * _noise(rng, (k, n), 4.0)
        start = uptime * (base + 0.8 * per_busy) * rng.uniform(0.9, 1.1, (k, 1))
        cum = start + np.cumsum(rate, axis=1)
        out[name] = (np.floor(cum[:, idx] / 512) * 512, 0)
    return out


def _container_blocks(rng: np.random.Generator, n: int, act: dict[str, np.ndarray],
                      total: np.ndarray) -> dict[str, Block]:
    k_c = len(CONTAINERS)
    k = k_c + len(CGROUPS)
    uptime = rng.uniform(300.0, 3300.0)  # seconds since the run's containers started
    host_up = rng.uniform(1.5e5, 2.5e5)
    idx = _cadvisor_index(rng, k, n)
    activity = np.stack([act[s] for s in SERVICES] + [total, total])
    full = np.array([RATES[s] for s in SERVICES] + [FULL_TRAFFIC, FULL_TRAFFIC])
    idle = np.array([IDLE_CPU] * N_SERVICES + [0.015, 0.04])
    idle[:N_SERVICES] *= rng.uniform(0.85, 1.15, N_SERVICES)
    per = np.array([(_CPU_SHARE[s] - IDLE_CPU) / RATES[s] if RATES[s] else 0.0
                    for s in SERVICES] + [1e-5, 1.6e-4])  # jaeger, mysqldb
    g = _noise(rng, (2, k_c, n))
    cpu_rate = np.empty((k, n))
    cpu_rate[:k_c] = idle[:, None] * g[0] + per[:, None] * activity * g[1]
    cpu0 = np.empty(k)
    cpu0[:k_c] = rng.uniform(40.0, 70.0, k_c) + uptime * (idle + per * 0.9 * full)
    docker = (2.5 + 2e-3 * total) * _noise(rng, (n,))
    system = cpu_rate[:k_c].sum(axis=0) + docker + 1.0 * _noise(rng, (n,))
    cpu_rate[k_c:] = np.stack([system + 0.6 * _noise(rng, (n,)), system, docker])
    cpu0[k_c:] = host_up * np.array([9.5, 8.5, 0.25])
    cpu = np.take_along_axis(cpu0[:, None] + np.cumsum(cpu_rate, axis=1), idx, axis=1)

    # Memory gauges: a slow random walk around a base, plus noise; usage adds page cache.
    lo = np.array([2.7e8] * N_SERVICES + [1.5e8, 2.0e8, 1.1e10, 9e9, 1.5e8])
    hi = np.array([3.8e8] * N_SERVICES + [2.5e8, 2.3e8, 1.3e10, 1e10, 3e8])
    base = rng.uniform(lo, hi)[:, None]
    drift = 1.0 + np.cumsum(rng.normal(2e-5, 3e-4, (k, n)), axis=1)
    ws = np.take_along_axis(base * (drift + rng.normal(0.0, 2e-3, (k, n))), idx, axis=1)
    cache = base * rng.uniform(0.05, 0.15, (k, 1)) * (
        1.0 + np.cumsum(np.abs(rng.normal(0.0, 2e-4, (k, n))), axis=1))
    usage = ws + np.take_along_axis(cache, idx, axis=1)
    out: dict[str, Block] = {
        "container_cpu_usage_seconds_total": (cpu, 6),
        "container_memory_usage_bytes": (np.floor(usage / 4096) * 4096, 0),
        "container_memory_working_set_bytes": (np.floor(ws / 4096) * 4096, 0),
    }

    # Network and fs counters of the service containers: idle bytes/s + bytes per line.
    per_line = {"container_network_receive_bytes_total": (2500.0, 420.0, 1),
                "container_network_transmit_bytes_total": (2000.0, 680.0, 1),
                "container_fs_reads_bytes_total": (0.0, 1.5, 4096),
                "container_fs_writes_bytes_total": (150.0, 170.0, 4096)}
    services = activity[:N_SERVICES]
    rates = full[:N_SERVICES]
    for name, (idle_b, line_b, block) in per_line.items():
        g = _noise(rng, (2, N_SERVICES, n), 9.0)
        rate = idle_b * g[0] + line_b * services * g[1]
        start = uptime * (idle_b + 0.9 * line_b * rates) + rng.uniform(1e6, 3e7, N_SERVICES)
        cum = np.take_along_axis(start[:, None] + np.cumsum(rate, axis=1), idx[:N_SERVICES],
                                 axis=1)
        out[name] = (np.floor(cum / block) * block, 0)
    return out


def _case_series(seed: int, run: int, slot: CaseSlot, run_start_ms: int | None = None
                 ) -> tuple[list[int], dict[str, list[Series]]]:
    times = case_times(seed, run, slot)
    n = len(times)
    act = {s: planned_activity(s, slot, times - 1) for s in SERVICES}  # second before t
    total = np.sum(list(act.values()), axis=0)
    start = times[0] if run_start_ms is None else run_start_ms / 1000.0
    blocks = _node_blocks(rng_for(seed, NS_METRICS, run, slot.index, 1), n, total,
                          np.maximum(times - start, 0.0))
    blocks.update(_container_blocks(rng_for(seed, NS_METRICS, run, slot.index, 2), n, act,
                                    total))
    out: dict[str, list[Series]] = {}
    for name in METRIC_NAMES:
        values, decimals = blocks[name]
        sets, order = _label_sets(name, seed, run)
        out[name] = list(zip(sets, _fmt_rows(values[list(order)], decimals), strict=True))
    return times.tolist(), out


def case_metrics(seed: int, run: int, slot: CaseSlot, run_start_ms: int | None = None
                 ) -> dict[str, list[dict[str, Any]]]:
    """Series of every metric for one test case (deterministic per seed, run, case), as the
    JSON lists written to ``metric_<name>.json``; ``run_start_ms``: when the run began (the
    host's memory drift; ``None``: at the case's first sample)."""
    times, series = _case_series(seed, run, slot, run_start_ms)
    return {name: [{"metric": dict(labels), "values": [[t, v] for t, v in zip(times, vs,
                                                                         strict=True)]}
                   for labels, vs in group] for name, group in series.items()}


_P1, _P2, _P3, _P4 = " " * 4, " " * 8, " " * 12, " " * 16
_SEP = f'"\n{_P3}],\n'


@lru_cache(maxsize=4096)
def _labels_text(items: Labels) -> str:
    return ",\n".join(f"{_P3}{json.dumps(k)}: {json.dumps(v)}" for k, v in items)


def _render(series: list[tuple[Labels, Sequence[int], Sequence[str]]]) -> str:
    """``json.dumps(indent=4)`` of query_range series given as (labels, times, values)."""
    prefix: dict[int, str] = {}
    parts = []
    for labels, ts, vs in series:
        for t in ts:
            if t not in prefix:
                prefix[t] = f'{_P3}[\n{_P4}{t},\n{_P4}"'
        values = _SEP.join(map(add, map(prefix.__getitem__, ts), vs))
        parts.append(f'{_P1}{{\n{_P2}"metric": {{\n{_labels_text(labels)}\n{_P2}}},\n'
                     f'{_P2}"values": [\n{values}"\n{_P3}]\n{_P2}]\n{_P1}}}')
    return "[\n" + ",\n".join(parts) + "\n]"


def dumps(data: list[dict[str, Any]]) -> str:
    """``json.dumps(data, indent=4)`` of a list of series, without the slow pure-Python
    encoder that ``indent`` selects (value strings must be plain numbers: no escaping)."""
    if not data or any(not s["metric"] or not s["values"] for s in data):
        return json.dumps(data, indent=4)
    rows: list[tuple[Labels, Sequence[int], Sequence[str]]] = []
    for s in data:
        ts, vs = zip(*s["values"], strict=True)
        rows.append((tuple(s["metric"].items()), ts, vs))
    return _render(rows)


def write_case_metrics(folder: Path, seed: int, run: int, slot: CaseSlot,
                       run_start_ms: int | None = None) -> None:
    """Write ``metric_<name>.json`` files and ``last_fetch_time.txt`` into ``folder``.

    Plain writes, like the case's log files: ``generate`` writes into run folders it has just
    emptied, and a temp file and rename per file would double the cost of the 15 files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    times, series = _case_series(seed, run, slot, run_start_ms)
    for name, group in series.items():
        text = _render([(labels, times, vs) for labels, vs in group])
        (folder / f"metric_{name}.json").write_text(text, encoding="utf-8")
    stamp = datetime.fromtimestamp(times[-1], tz=timezone.utc).isoformat(timespec="seconds")
    (folder / "last_fetch_time.txt").write_text(stamp, encoding="utf-8")
