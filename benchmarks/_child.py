"""Run a benchmark step in a fresh child process: its JSON result line and its own peak RSS."""

from __future__ import annotations

import json
import os
import subprocess


def measure_child(cmd: list[str], what: str, env: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` (a Python child that prints one JSON line last; ``env``: variables set for
    it); the parsed line plus ``peak_rss_gb``, the child's ``ru_maxrss`` (so the figure is
    that step's alone)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env=None if env is None else {**os.environ, **env})
    stdout = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{what} failed (status {status})")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_gb"] = usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux
    return result
