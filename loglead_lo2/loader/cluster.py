"""Load the runs on a Dask cluster (``lo2-load --workers N`` / ``--scheduler ADDRESS``).

The per-run work that needs no shared state runs on the workers: parsing, windowing and
normalising a run and parsing its metrics files
(:func:`~loglead_lo2.loader.runs.prepare_run`), then, once its template ids are known,
aggregating it and writing its part folder
(:func:`~loglead_lo2.loader.runs.finish_run`, :func:`~loglead_lo2.loader.runs.write_run`).
The Drain step runs here, on the client, over each run's distinct normalised messages in run
order, exactly as in a single-process load, and each finishing task gets the run's ids and
the Drain state after it. So the parts, and the final tables streamed from them, are byte for
byte those of a single-process load (tested).

Bounded: at most ``2 x workers`` runs are prepared ahead of the Drain step, and at most as
many are being finished, so the workers hold a few runs' events at a time. Tasks have
``retries``; a worker that dies loses its in-memory results, which the scheduler computes
again elsewhere; a part folder is written under a temporary name and renamed, so a task that
dies mid-write leaves no half part. Workers must see ``--root`` and ``--output-dir`` at the
same paths as the client (a shared file system).

Needs the ``dask`` extra: ``pip install 'loglead-lo2[dask]'``.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loglead_lo2.errors import UserError
from loglead_lo2.loader import parts as P
from loglead_lo2.loader.runs import Prepared, finish_run, prepare_run, write_run

if TYPE_CHECKING:
    import polars as pl

    from loglead_lo2.enhancers.drain import DrainSnapshot
    from loglead_lo2.loader.pipeline import LoadOptions
    from loglead_lo2.loader.runs import DrainChain, Finished, Step

log = logging.getLogger(__name__)

RETRIES = 3
CONNECT_TIMEOUT = "20s"
"""How long ``--scheduler`` waits for the scheduler to answer before it gives up."""
AHEAD = 2
"""Runs prepared (or finishing) per worker ahead of the Drain step."""


def _messages(prep: Prepared) -> tuple[pl.Series | None, pl.Series | None]:
    return prep.messages, prep.weights


def _finish(prep: Prepared, cids: pl.Series | None, wanted: set[str],
            counts: dict[int, int] | None, parts_dir: Path, run: str, key: str,
            snapshot: DrainSnapshot | None) -> P.Part:
    return write_run(parts_dir, run, key, finish_run(prep, cids, wanted, counts), snapshot)


def client_for(opts: LoadOptions) -> tuple[Any, Any]:
    """A Dask client (and the local cluster it owns, or ``None``) for the options."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise UserError("--workers/--scheduler need Dask: pip install 'loglead-lo2[dask]' "
                        "(or leave the flags out to load in this process).") from exc
    if opts.scheduler:
        try:
            return Client(opts.scheduler, timeout=CONNECT_TIMEOUT), None
        except OSError as exc:
            raise UserError(f"--scheduler {opts.scheduler}: no Dask scheduler answers there "
                            f"({exc}); start one (dask scheduler) or use --workers N.") from exc
    n = int(opts.workers or 1)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=None, host="127.0.0.1")
    return Client(cluster), cluster


def run_on_cluster(opts: LoadOptions, plan: list[Step], chain: DrainChain, wanted: set[str],
                   parts_dir: Path, finished: Finished) -> None:
    """Load the plan's runs without a part on the cluster, calling ``finished`` in run
    order (see the module doc)."""
    client, cluster = client_for(opts)
    try:
        _pipeline(client, opts, plan, chain, wanted, parts_dir, finished)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _pipeline(client: Any, opts: LoadOptions, plan: list[Step], chain: DrainChain,
              wanted: set[str], parts_dir: Path, finished: Finished) -> None:
    workers = max(1, len(client.scheduler_info().get("workers", {})) or int(opts.workers or 1))
    ahead = AHEAD * workers
    todo = deque(step for step in plan if step.part is None)
    prepared: dict[int, tuple[Any, Any]] = {}
    finishing: deque[tuple[Step, Any]] = deque()
    log.info("loading %d run(s) on %d Dask worker(s)", len(todo), workers)
    token = uuid.uuid4().hex[:8]  # task keys unique to this load on a shared scheduler

    def submit_ahead() -> None:
        while todo and len(prepared) + len(finishing) < 2 * ahead and len(prepared) < ahead:
            step = todo.popleft()
            tag = f"{step.run}-{token}"
            prep = client.submit(prepare_run, opts, step.files, chain.on, step.metrics,
                                 step.features, pure=False,
                                 retries=RETRIES, key=f"lo2-prepare-{tag}")
            msgs = client.submit(_messages, prep, pure=False, retries=RETRIES,
                                 key=f"lo2-messages-{tag}")
            prepared[step.index] = (prep, msgs)

    def drain_oldest() -> None:
        step, future = finishing.popleft()
        finished(step, future.result(), None)
        del future

    for step in plan:
        if step.part is not None:  # reused: the chain moves on; reported in order
            while finishing:
                drain_oldest()
            chain.skip(step.part)
            finished(step, step.part, None)
            continue
        submit_ahead()
        prep, msgs = prepared.pop(step.index)
        cids = counts = snapshot = None
        parser = chain.parser()
        if parser is not None:
            messages, weights = msgs.result()
            cids = parser.assign(messages, weights) if messages is not None else None
            counts, snapshot = parser.counts, parser.snapshot()
        future = client.submit(_finish, prep, cids, wanted, counts, parts_dir, step.run,
                               step.key, snapshot, pure=False, retries=RETRIES,
                               key=f"lo2-finish-{step.run}-{token}")
        del prep, msgs
        finishing.append((step, future))
        while len(finishing) > ahead:
            drain_oldest()
        submit_ahead()
    while finishing:
        drain_oldest()


__all__ = ["client_for", "run_on_cluster"]
