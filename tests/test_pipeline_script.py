"""The README's first command runs tools/run_pipeline.sh: run it end to end on a tiny sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_pipeline_script_end_to_end(tmp_path: Path) -> None:
    sample, result = tmp_path / "sample", tmp_path / "result"
    env = dict(os.environ, PYTHON=sys.executable, LO2_SAMPLE_RUNS="5",
               LO2_SAMPLE_SCALE="0.03", MPLBACKEND="Agg")
    cmd = ["bash", str(ROOT / "tools/run_pipeline.sh"), str(sample), str(result)]
    for attempt in range(2):  # a second run must work too (it replaces its own outputs)
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        assert res.returncode == 0, f"run {attempt}: {res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    for name in ("lo2_sequences_enhanced.parquet", "lo2_events.parquet",
                 "lo2_metrics.parquet", "lo2_if_predictions.parquet",
                 "metrics/leaderboard.md", "explainability/summary.md"):
        assert (result / name).is_file(), name
    info = json.loads((result / "lo2_load_info.json").read_text())
    assert info["manifest"] == str((sample / "lo2_manifest.csv").resolve())
    assert "holdout" in (result / "metrics/leaderboard.md").read_text().lower()
