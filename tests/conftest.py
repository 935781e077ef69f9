"""Shared fixtures: one small generated LO2 sample and its loader output per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

LOAD_TABLES = ("lo2_events.parquet", "lo2_sequences.parquet", "lo2_sequences_enhanced.parquet",
               "lo2_drain_templates.parquet", "lo2_drain_state.parquet", "lo2_files.parquet")
"""The loader's tables that must be byte-identical however a load was run (resumed,
appended, on a cluster)."""


def load_digests(out: Path) -> dict[str, str]:
    """sha256 of each of :data:`LOAD_TABLES` in a loader output folder."""
    import hashlib

    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in LOAD_TABLES}


SAMPLE_RUNS = 3
SAMPLE_SCALE = 0.05
SAMPLE_SEED = 42


@pytest.fixture(scope="session", autouse=True)
def bundle_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Bundles are signed with a key in a temp folder, never the real
    ``~/.config/loglead-lo2/bundle.key`` (created by the first save, as for users)."""
    from loglead_lo2.detection.signing import KEY_ENV, KEY_FILE_ENV

    saved = {name: os.environ.pop(name, None) for name in (KEY_ENV, KEY_FILE_ENV)}
    path = tmp_path_factory.mktemp("bundle_key") / "bundle.key"
    os.environ[KEY_FILE_ENV] = str(path)
    try:
        yield path
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
