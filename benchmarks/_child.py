"""Run a benchmark step in a fresh child process: its JSON result line and its own peak RSS."""

from __future__ import annotations

import json
import os
import subprocess


def measure_child(cmd: list[str], what: str, env: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` (a Python child that prints one JSON line last; ``env``: variables set for
    it); the parsed line plus ``peak_rss_gb``, the child's ``ru_maxrss`` (so the figure is
    that step's alone), and its ``cpu_seconds`` (user + system) and ``sys_seconds``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env=None if env is None else {**os.environ, **env})
    stdout = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{what} failed (status {status})")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux
    # CPU time varies less than wall time on shared hosts (another guest's load shows as
    # wall time, not as this process's CPU time)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["sys_seconds"] = usage.ru_stime
    return result
