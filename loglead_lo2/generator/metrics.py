"""Prometheus ``query_range`` exports for each test case (``--with-metrics``).

Same shape as the real LO2 exports: ``metrics/metric_<name>.json`` holds a JSON list of
``{"metric": {labels}, "values": [[epoch_seconds, "value"], ...]}`` (indented by 4, no final
newline), one value per second over the case with values that change at each 5 s scrape, and
``last_fetch_time.txt`` holds the last sample time as ``YYYY-MM-DDTHH:MM:SS+00:00``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from loglead_lo2 import SERVICES
from loglead_lo2.generator.schedule import NS_METRICS, CaseSlot, rng_for
from loglead_lo2.schema import write_text_atomic

SCRAPE_SECONDS = 5
NODE = {"group": "production", "instance": "node_exporter:9100", "job": "node"}
NODE_METRICS = ("node_load1", "node_load5", "node_load15", "node_memory_MemAvailable_bytes")
CONTAINER_METRICS = ("container_cpu_usage_seconds_total", "container_memory_usage_bytes")
METRIC_NAMES = NODE_METRICS + CONTAINER_METRICS
_CPU_SHARE = {"token": 0.55, "code": 0.25, "client": 0.23, "user": 0.22, "service": 0.22,
              "refresh-token": 0.2, "key": 0.1}


def _container_labels(name: str, service: str) -> dict[str, str]:
    return {
        "__name__": name,
        "container_label_com_docker_compose_project": "light-oauth2",
        "container_label_com_docker_compose_service": f"oauth2-{service}",
        "cpu": "total",
        "id": f"/system.slice/docker-{hash_str(service):064x}.scope",
        "image": f"networknt/oauth2-{service}:2.0.28",
        "instance": "cadvisor:8080",
        "job": "cadvisor",
        "name": f"light-oauth2-oauth2-{service}-1",
    }


def hash_str(text: str) -> int:
    """Stable (not salted) 256-bit number from ``text`` for fake container ids."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def _held(values: np.ndarray, phase: int) -> np.ndarray:
    """Hold each scraped value for ``SCRAPE_SECONDS`` one-second steps."""
    idx = (np.arange(len(values)) + phase) // SCRAPE_SECONDS
    return values[np.minimum(idx, len(values) - 1)]


def _fmt(values: np.ndarray, decimals: int) -> list[str]:
    return [f"{v:.{decimals}f}".rstrip("0").rstrip(".") if decimals else str(int(v))
            for v in values]


def case_metrics(seed: int, run: int, slot: CaseSlot) -> dict[str, list[dict]]:
    """Series of every metric for one test case (deterministic per seed, run, case)."""
    rng = rng_for(seed, NS_METRICS, run, slot.index)
    start = slot.start_ms // 1000
    times = np.arange(start, slot.end_ms // 1000 + 1, dtype=np.int64)
    n = len(times)
    phase = int(rng.integers(0, SCRAPE_SECONDS))
    load1 = np.clip(10 + np.cumsum(rng.normal(0, 0.4, n)), 0.5, None)
    load5 = np.clip(load1.mean() * 0.85 + np.cumsum(rng.normal(0, 0.08, n)), 0.5, None)
    load15 = np.clip(load5.mean() * 0.8 + np.cumsum(rng.normal(0, 0.02, n)), 0.5, None)
    mem = 3.4e10 - np.cumsum(np.abs(rng.normal(4e6, 2e6, n)))
    series: dict[str, list[dict]] = {}
    for name, vals, dec in (("node_load1", load1, 2), ("node_load5", load5, 2),
                            ("node_load15", load15, 2),
                            ("node_memory_MemAvailable_bytes", mem, 0)):
        held = _held(np.round(vals, dec), phase)
        series[name] = [{"metric": {"__name__": name, **NODE},
                         "values": [[int(t), v] for t, v in zip(times.tolist(),
                                                                _fmt(held, dec), strict=True)]}]
    cpu: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    for service in SERVICES:
        base = 60.0 + 50.0 * rng.random() + 40 * _CPU_SHARE[service] * (run + 1)
        used = base + np.cumsum(rng.gamma(2.0, _CPU_SHARE[service] / 2.0, n))
        mem_c = 2.5e8 + 1e8 * rng.random() + np.cumsum(rng.normal(2e4, 5e4, n))
        for out, name, vals, dec in ((cpu, CONTAINER_METRICS[0], used, 6),
                                     (memory, CONTAINER_METRICS[1], mem_c, 0)):
            held = _held(np.round(vals, dec), phase)
            out.append({"metric": _container_labels(name, service),
                        "values": [[int(t), v] for t, v in zip(times.tolist(),
                                                               _fmt(held, dec), strict=True)]})
    series[CONTAINER_METRICS[0]] = cpu
    series[CONTAINER_METRICS[1]] = memory
    return series


def write_case_metrics(folder: Path, seed: int, run: int, slot: CaseSlot) -> None:
    """Write ``metric_<name>.json`` files and ``last_fetch_time.txt`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    series = case_metrics(seed, run, slot)
    for name, data in series.items():
        write_text_atomic(folder / f"metric_{name}.json", json.dumps(data, indent=4))
    last = series["node_load1"][0]["values"][-1][0]
    stamp = datetime.fromtimestamp(last, tz=timezone.utc).isoformat(timespec="seconds")
    write_text_atomic(folder / "last_fetch_time.txt", stamp)
