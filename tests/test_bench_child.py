"""``benchmarks/_child.py``: a benchmark step's own peak RSS and CPU time."""

from __future__ import annotations

import sys

from tests.benchmarks_import import load_benchmark


def test_child_reports_its_own_cpu_and_memory() -> None:
    child = load_benchmark("_child")
    busy = ("import json, time\nt = time.process_time()\nblob = bytearray(64 << 20)\n"
            "while time.process_time() - t < 0.3: pass\nprint(json.dumps({'ok': len(blob)}))")
    got = child.measure_child([sys.executable, "-c", busy], "busy child")
    assert got["ok"] == 64 << 20
    assert got["cpu_seconds"] >= 0.3 and 0 <= got["sys_seconds"] <= got["cpu_seconds"]
    assert got["peak_rss_gb"] > 0.06  # the 64 MiB it held
