"""Shared fixtures: one small generated LO2 sample and its loader output per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE_RUNS = 3
SAMPLE_SCALE = 0.05
SAMPLE_SEED = 42


@pytest.fixture(scope="session")
def lo2_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated LO2 tree (3 runs, scale 0.05, with metrics); read-only for tests."""
    from loglead_lo2.generator import generate

    out = tmp_path_factory.mktemp("lo2_sample") / "tree"
    generate(out, runs=SAMPLE_RUNS, seed=SAMPLE_SEED, scale=SAMPLE_SCALE, with_metrics=True)
    return out


@pytest.fixture(scope="session")
def lo2_result(lo2_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Loader output for :func:`lo2_sample` with every file saved; read-only for tests."""
    from loglead_lo2.loader.cli import main

    out = tmp_path_factory.mktemp("lo2_result")
    code = main([
        "--root", str(lo2_sample), "--output-dir", str(out), "--save-parquet",
        "--save-events", "--save-base-sequences", "--load-metrics", "--quiet",
    ])
    assert code == 0
    return out
