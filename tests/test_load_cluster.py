"""The loader on a Dask cluster (LocalCluster on loopback): the same bytes as one process,
and a worker killed mid-load is survived."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from loglead_lo2.loader.cli import main
from tests.conftest import load_digests

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

FLAGS = ("--save-parquet", "--save-events", "--save-base-sequences", "--quiet")


@pytest.fixture(scope="module")
def single(lo2_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("single") / "out"
    assert main(["--root", str(lo2_sample), "--output-dir", str(out), *FLAGS]) == 0
    return out


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    yield cluster
    cluster.close()


def test_local_workers_give_the_same_bytes(single: Path, lo2_sample: Path,
                                           tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["--root", str(lo2_sample), "--output-dir", str(out), "--workers", "2",
                 *FLAGS]) == 0
    assert load_digests(out) == load_digests(single)


def test_scheduler_address_and_a_killed_worker(single: Path, lo2_sample: Path, tmp_path: Path,
                                               cluster) -> None:  # type: ignore[no-untyped-def]
    client = distributed.Client(cluster)
    pids = client.run(os.getpid)  # worker address -> pid
    killed: list[int] = []

    def kill_a_busy_worker() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                pid = pids[busy[0]]
                os.kill(pid, signal.SIGKILL)  # the nanny starts a new worker process
                killed.append(pid)
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_a_busy_worker)
    watcher.start()
    out = tmp_path / "out"
    try:
        code = main(["--root", str(lo2_sample), "--output-dir", str(out), "--scheduler",
                     cluster.scheduler_address, *FLAGS])
    finally:
        watcher.join()
        client.close()
    assert killed, "no worker was busy: nothing was killed"
    assert code == 0
    assert load_digests(out) == load_digests(single)


def test_metrics_on_the_cluster_give_the_same_bytes(lo2_sample: Path, tmp_path: Path,
                                                    cluster) -> None:  # type: ignore[no-untyped-def]
    """The workers parse each run's metrics too; the metrics table and the mx_* columns are
    those of a load in one process."""
    flags = ("--load-metrics", "--window", "5", *FLAGS)
    here, there = tmp_path / "here", tmp_path / "there"
    assert main(["--root", str(lo2_sample), "--output-dir", str(here), *flags]) == 0
    assert main(["--root", str(lo2_sample), "--output-dir", str(there), "--scheduler",
                 cluster.scheduler_address, *flags]) == 0
    for name in ("lo2_metrics.parquet", "lo2_sequences_enhanced.parquet"):
        assert (here / name).read_bytes() == (there / name).read_bytes(), name


def test_cluster_flag_errors(lo2_sample: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    from loglead_lo2.loader import cluster as C

    monkeypatch.setattr(C, "CONNECT_TIMEOUT", "2s")  # nothing listens there: no need to wait 20 s
    out = str(tmp_path / "x")
    assert main(["--root", str(lo2_sample), "--output-dir", out, "--workers", "0",
                 *FLAGS]) == 2
    assert main(["--root", str(lo2_sample), "--output-dir", out, "--workers", "2",
                 "--scheduler", "tcp://127.0.0.1:1", *FLAGS]) == 2
    assert main(["--root", str(lo2_sample), "--output-dir", out, "--scheduler",
                 "tcp://127.0.0.1:9", *FLAGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "no Dask scheduler answers there" in err[2]
