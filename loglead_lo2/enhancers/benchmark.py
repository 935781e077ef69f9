"""Benchmark the enhancers on synthetic LO2-like events.

``python -m loglead_lo2.enhancers.benchmark --events 1000000`` builds events from a few hundred
message shapes with random ids (polars only, seeded), then times each enhancer and the
aggregation and samples the process RSS (psutil) to report each step's peak.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
import polars as pl

from loglead_lo2.enhancers.drain import DrainParser
from loglead_lo2.enhancers.normalize import normalize
from loglead_lo2.enhancers.sequences import aggregate_sequences
from loglead_lo2.enhancers.tokens import TOKEN_COLUMNS, length, trigrams, words

_BASE_SHAPES: tuple[str, ...] = (
    "DEBUG c.n.openapi.ApiNormalisedPath <init> - normalised = /oauth2/{SVC}",
    "DEBUG c.n.openapi.ApiNormalisedPath <init> - path = /oauth2/{SVC}, base path is set to: null",
    "DEBUG c.n.openapi.ApiNormalisedPath <init> - path =/oauth2/{SVC}",
    "DEBUG com.networknt.security.JwtIssuer getPrivateKey - filename = primary.jks "
    "key = selfsigned",
    "INFO  com.networknt.config.Config getConfigStream - Config loaded from externalized folder "
    "for primary.jks in /config",
    "DEBUG c.n.o.{K}.h.Oauth2{SVC}PostHandler handleAuthorizationCode - code = {ID} "
    "redirectUri = http://localhost:8080/authorization",
    "DEBUG c.n.o.{K}.h.Oauth2{SVC}PostHandler handleRefreshToken - refreshToken = {UUID} "
    "scope = null",
    "DEBUG com.networknt.schema.TypeValidator debug - validate( \"Basic {B64}\", "
    "\"Basic {B64}\", authorization)",
    "DEBUG c.n.oauth.cache.{SVC}MapStore load - Load:{HEX}",
    "DEBUG c.n.oauth.cache.{SVC}MapStore store - Store:{UUID}",
    "DEBUG c.n.oauth.cache.{SVC}MapStore delete - Delete:{HEX}",
    "ERROR c.networknt.handler.LightHttpHandler setExchangeStatus - {\"statusCode\":404,"
    "\"code\":\"ERR1201{K}\",\"message\":\"CLIENT_NOT_FOUND\",\"description\":\"Client {UUID} "
    "is not found.\",\"severity\":\"ERROR\"}",
    "ERROR c.n.o.{K}.h.Oauth2{SVC}PostHandler handleRequest - ApiException\n"
    "com.networknt.exception.ApiException: {\"statusCode\":401,\"code\":\"ERR12007\"}\n"
    "\tat com.networknt.oauth.{SVC}.handler.Oauth2{SVC}PostHandler.handleRequest"
    "(Oauth2{SVC}PostHandler.java:{N})\n\tat io.undertow.server.Connectors.executeRootHandler"
    "(Connectors.java:{N})\n\t... {N} common frames omitted",
)
_SERVICES = ("Client", "Code", "Key", "RefreshToken", "Service", "Token", "User")


def _ids(rng: np.random.Generator, n: int, alphabet: str, length: int) -> pl.Series:
    chars = np.frombuffer(alphabet.encode(), dtype=np.uint8)
    raw = chars[rng.integers(0, len(chars), size=(n, length))]
    return pl.Series([bytes(r).decode() for r in raw])  # pool of ids, not per event


def synthetic_events(n_events: int, seed: int = 0, n_pool: int = 20000) -> pl.DataFrame:
    """Loader-shaped events: 54 test cases x 7 services of one run, ~300 message shapes."""
    rng = np.random.default_rng(seed)
    shapes = [
        s.replace("{SVC}", svc).replace("{K}", str(k))
        for s in _BASE_SHAPES for svc in _SERVICES for k in range(4)
    ]
    hexd = "0123456789abcdef"
    b64u = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    pools = {
        "{ID}": _ids(rng, n_pool, b64u, 22),
        "{UUID}": _ids(rng, n_pool, hexd, 32).str.replace(
            r"^(.{8})(.{4})(.{4})(.{4})(.{12})$", "$1-$2-$3-$4-$5"),
        "{HEX}": _ids(rng, n_pool, hexd, 8),
        "{B64}": _ids(rng, n_pool, b64u[:62] + "+/", 84) + "=",
        "{N}": pl.Series([str(v) for v in range(1, 400)]),
    }
    weights = np.where(np.arange(len(shapes)) % 13 >= 11, 0.05, 1.0)
    shape_idx = rng.choice(len(shapes), size=n_events, p=weights / weights.sum())
    frame = pl.DataFrame({"m_message": pl.Series(shapes).gather(shape_idx)})
    for marker, pool in pools.items():
        frame = frame.with_columns(
            pl.col("m_message").str.replace_all(
                marker, pool.gather(rng.integers(0, len(pool), n_events)), literal=True  # type: ignore[arg-type]
            )
        )
    cases = ["correct", *[f"error_case_{i:02d}" for i in range(53)]]
    weights = np.array([6.0] + [1.0] * 53)
    case_idx = np.sort(rng.choice(len(cases), size=n_events, p=weights / weights.sum()))
    service_idx = rng.integers(0, 7, n_events)
    services = ["client", "code", "key", "refresh-token", "service", "token", "user"]
    run = "LO2_run_1739743201"
    frame = frame.with_columns(
        pl.lit(run).alias("run"),
        pl.Series("test_case", cases).gather(case_idx),
        pl.Series("service", services).gather(service_idx),
    )
    frame = frame.with_columns(
        pl.concat_str(["run", "test_case", "service"], separator="__").alias("seq_id"),
    ).sort("seq_id", maintain_order=True)  # the loader's order: by sequence, then line
    frame = frame.with_columns(
        (pl.int_range(pl.len()).over("seq_id") + 1).cast(pl.Int64).alias("line_no"),
        (pl.lit(datetime(2025, 2, 16, 22, 0)) + pl.duration(
            milliseconds=pl.int_range(pl.len()) * 3)).dt.cast_time_unit("ms").alias("m_timestamp"),
        pl.col("m_message").str.extract(r"^(\w+)", 1).alias("m_level"),
        (pl.col("test_case") == "correct").alias("normal"),
    )
    return frame.with_columns(
        (~pl.col("normal")).alias("anomaly"),
        pl.when(pl.col("normal")).then(None).otherwise(pl.col("service")).alias("target_service"),
    )


class PeakRss:
    """Sample this process's RSS every 5 ms between ``__enter__`` and ``__exit__``
    (``start``: RSS on entry, ``peak``: highest sample); also used by
    ``benchmarks/bench_enhancers.py``."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self.start = self._proc.memory_info().rss
        self.peak = self.start
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _step(name: str, fn: Callable[[], pl.DataFrame], rows: list[tuple[str, float, float, float]]
          ) -> pl.DataFrame:
    with PeakRss() as rss:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
    rows.append((name, seconds, rss.peak / 2**20, (rss.peak - rss.start) / 2**20))
    return out


def run_benchmark(
    n_events: int, seed: int = 0, n_pool: int = 20000
) -> list[tuple[str, float, float, float]]:
    """Time every step; returns (step, seconds, peak RSS MiB, peak increase MiB) rows."""
    rows: list[tuple[str, float, float, float]] = []
    events = _step("synthesise", lambda: synthetic_events(n_events, seed, n_pool), rows)
    distinct = events["m_message"].n_unique()
    rows[-1] = (f"synthesise ({distinct / events.height:.0%} distinct)", *rows[-1][1:])
    ev = _step("normalize", lambda: normalize(events), rows)
    drain = DrainParser()
    ev = _step("drain", lambda: drain.parse(ev), rows)
    ev = _step("length", lambda: length(ev), rows)
    _step("aggregate_sequences(tokens=words,trigrams)",
          lambda: aggregate_sequences(ev, tokens=TOKEN_COLUMNS), rows)
    with_words = _step("words (per event)", lambda: words(ev), rows)
    del with_words
    with_grams = _step("trigrams (per event)", lambda: trigrams(ev), rows)
    _step("aggregate_sequences(per-event trigrams)", lambda: aggregate_sequences(with_grams), rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", type=int, default=20000,
                        help="distinct values per id kind (fewer = fewer distinct messages)")
    args = parser.parse_args(argv)
    rows = run_benchmark(args.events, args.seed, args.pool)
    print(f"{'step':45s} {'seconds':>8s} {'peak MiB':>9s} {'+MiB':>7s}")
    for name, seconds, peak, delta in rows:
        print(f"{name:45s} {seconds:8.2f} {peak:9.0f} {delta:7.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
