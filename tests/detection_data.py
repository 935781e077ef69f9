"""Synthetic LO2-like data for the detection tests (shared by the detection test files).

:func:`make_events` builds a loader-style event table and :func:`make_enhanced_sequences`
the enhanced-sequence table the detection phase reads (the columns of
``lo2_sequences_enhanced.parquet``). Both are seeded and deterministic.

The anomalies are deliberately obvious so AUC floors are meaningful: the target-service
sequence of an error case carries several error events (``ERROR`` lines with the case's
``ERRnnnnn`` code and status name, plus stack-trace words for mechanisms C/NPE), while
``correct`` sequences carry normal traffic with occasional noise (an ``ApiException`` ERROR
line, as in real ``correct`` logs). Error events have more words per event than normal ones,
so numeric-only models also get a signal without relying on length leakage. With
``length_leak=True`` the ``correct`` sequences are ~6x longer and last 60 s, as in the real
recording (the artefact the leakage report must flag).

Set ``non_target=True`` to also emit the other services' sequences of an error case: they look
normal but are labelled anomalous, exactly like the real data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from loglead_lo2.cases import NORMAL_CASE, test_cases

FIRST_EPOCH = 1719592986
"""Epoch suffix of the first synthetic run (``light-oauth2-data-1719592986``)."""

DEFAULT_SERVICES: tuple[str, ...] = ("code", "token", "user")
DEFAULT_ERROR_CASES: tuple[str, ...] = (
    "access_token_client_id_not_found_404",
    "authorization_code_invalid_client_id_404",
    "register_user_400_user_exists",
    "verification_failed_pkce_400",
)

# Normal templates: (drain id, message with one optional ``<*>`` variable slot).
_NORMAL_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("e1", "DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleAuthorizationCode - code = <*>"),
    ("e2", "DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleRequest - client credentials ok"),
    ("e3", "DEBUG c.networknt.oauth.cache.UserMapStore load - Load:<*>"),
    ("e4", "DEBUG c.networknt.oauth.cache.ClientMapStore load - Load:<*>"),
    ("e5", "INFO c.n.o.c.h.Oauth2CodeGetHandler handleRequest - redirect to <*>"),
    ("e6", "DEBUG c.n.o.u.h.Oauth2UserPostHandler handleRequest - user registered <*>"),
    ("e7", "DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleRefreshToken - refreshToken = <*>"),
    ("e8", "INFO c.n.o.s.h.Oauth2ServiceGetHandler handleRequest - page = 1 pageSize = 10"),
    ("e9", "DEBUG c.networknt.handler.LightHttpHandler handleRequest - exchange completed"),
    ("e10", "DEBUG c.n.o.c.h.Oauth2CodePostHandler handleRequest - authenticate user <*>"),
)
# Noise in normal traffic (real ``correct`` logs contain ApiException ERROR lines too).
_NOISE_TEMPLATE = ("e11", "ERROR c.n.o.t.h.Oauth2TokenPostHandler handleRequest - ApiException")
_STACK = (
    "com.networknt.exception.ApiException at com.networknt.oauth.token.handler"
    ".Oauth2TokenPostHandler.handleRequest at io.undertow.server.Connectors.executeRootHandler"
    " at java.lang.Thread.run Caused by com.networknt.status.Status ... 12 common frames omitted"
)


def run_name(i: int) -> str:
    """Name of the ``i``-th synthetic run (epoch suffix grows by one hour per run)."""
    return f"light-oauth2-data-{FIRST_EPOCH + 3600 * i}"


def _error_message(case: str) -> tuple[str, str]:
    tc = test_cases()[case]
    code = tc.code or "ERR10010"
    status = tc.status_name or "RUNTIME_EXCEPTION"
    drain = f"e{20 + int(code[-3:]) % 50}"
    msg = (
        f"ERROR c.networknt.handler.LightHttpHandler setExchangeStatus - statusCode "
        f"{tc.http_status} code {code} message {status} severity ERROR"
    )
    if tc.mechanism in ("C", "NPE"):
        msg = f"{msg}\n{_STACK}"
    return drain, msg


def make_events(
    n_runs: int = 8,
    *,
    services: Sequence[str] = DEFAULT_SERVICES,
    error_cases: Sequence[str] = DEFAULT_ERROR_CASES,
    errors_per_run: int | None = None,
    non_target: bool = False,
    length_leak: bool = False,
    events_per_seq: int = 40,
    error_events: tuple[int, int] = (4, 9),
    noise_rate: float = 0.15,
    seed: int = 0,
) -> pl.DataFrame:
    """Loader-style events (``m_message``, ``m_timestamp``, keys, ``line_no``, labels).

    Every run has a ``correct`` sequence per service; each error case contributes its target
    service's sequence (and, with ``non_target``, the other services' sequences).
    ``errors_per_run`` picks that many error cases per run (seeded) instead of all of them.
    """
    rng = np.random.default_rng(seed)
    seqs: list[tuple[str, str, str, bool]] = []  # run, case, service, carries errors
    for r in range(n_runs):
        cases = list(error_cases)
        if errors_per_run is not None:
            cases = sorted(rng.choice(cases, size=min(errors_per_run, len(cases)), replace=False))
        for service in services:
            seqs.append((run_name(r), NORMAL_CASE, service, False))
        for case in cases:
            target = test_cases()[case].target_service
            for service in services:
                if service == target or non_target:
                    seqs.append((run_name(r), case, service, service == target))
    frames = []
    for i, (run, case, service, carries) in enumerate(seqs):
        normal = case == NORMAL_CASE
        n = int(rng.poisson(events_per_seq * (6 if (normal and length_leak) else 1)))
        n = max(n, 5)
        pick = rng.integers(0, len(_NORMAL_TEMPLATES), size=n)
        drains = [_NORMAL_TEMPLATES[k][0] for k in pick]
        msgs = [_NORMAL_TEMPLATES[k][1] for k in pick]
        if normal and rng.random() < noise_rate:
            drains.append(_NOISE_TEMPLATE[0])
            msgs.append(_NOISE_TEMPLATE[1])
        if carries:
            k = int(rng.integers(error_events[0], error_events[1] + 1))
            drain, msg = _error_message(case)
            pos = sorted(rng.choice(len(msgs) + k, size=k, replace=False))
            for p in pos:
                drains.insert(int(p), drain)
                msgs.insert(int(p), msg)
        ids = rng.integers(0, 30, size=len(msgs))
        msgs = [m.replace("<*>", f"id{v:02d}") for m, v in zip(msgs, ids, strict=True)]
        span = (60.0 if (normal and length_leak) else 10.0) * (0.9 + 0.2 * rng.random())
        offs = np.sort(rng.uniform(0, span, size=len(msgs)))
        offs[0], offs[-1] = 0.0, span
        start = epoch_of(run) + 100 * i
        frames.append(
            pl.DataFrame(
                {
                    "m_message": msgs,
                    "m_offset_ms": (start * 1000 + offs * 1000).astype(np.int64),
                    "e_event_drain_id": drains,
                    "run": run,
                    "test_case": case,
                    "service": service,
                }
            )
        )
    ev = pl.concat(frames)
    labels = {c: t.target_service for c, t in test_cases().items()}
    return ev.with_columns(
        m_timestamp=pl.col("m_offset_ms").cast(pl.Datetime("ms")),
        m_level=pl.col("m_message").str.extract(r"^(\w+)"),
        m_thread=pl.lit("XNIO-1 task-1"),
        m_cid=pl.lit("sxn9TW9eQq6pn3-ZVwo2iw"),
        seq_id=pl.concat_str(["run", "test_case", "service"], separator="__"),
        line_no=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("run", "test_case", "service"),
        normal=pl.col("test_case") == NORMAL_CASE,
        anomaly=pl.col("test_case") != NORMAL_CASE,
        target_service=pl.col("test_case").replace_strict(labels, default=None,
                                                          return_dtype=pl.String),
        window=pl.lit(None, dtype=pl.Int32),
    ).drop("m_offset_ms")


def _char_trigrams(words: Sequence[str]) -> pl.DataFrame:
    """``word -> character trigrams`` for each distinct word (a loop over the vocabulary)."""
    return pl.DataFrame(
        {
            "word": list(words),
            "tri": [[w[i : i + 3] for i in range(max(len(w) - 2, 1))] for w in words],
        },
        schema={"word": pl.String, "tri": pl.List(pl.String)},
    )


def aggregate(events: pl.DataFrame) -> pl.DataFrame:
    """Enhanced sequences from :func:`make_events` output (words split on whitespace)."""
    ev = events.with_columns(
        e_words=pl.col("m_message").str.replace_all(r"\s+", " ").str.strip_chars().str.split(" "),
        e_chars=pl.col("m_message").str.len_chars().cast(pl.Int64),
        err=pl.col("m_level") == "ERROR",
    )
    vocab = ev.select(pl.col("e_words").explode().unique().sort()).to_series().to_list()
    tri = _char_trigrams(vocab)
    words_long = (
        ev.select("seq_id", "line_no", pl.col("e_words").alias("word")).explode("word")
        .with_row_index("pos")
    )
    trigrams = (
        words_long.join(tri, on="word", how="left").sort("pos")
        .group_by("seq_id", maintain_order=True).agg(e_trigrams=pl.col("tri").explode())
    )
    keys = ["run", "test_case", "service", "seq_id", "normal", "anomaly", "target_service",
            "window"]
    seq = (
        ev.sort("seq_id", "line_no")
        .group_by(keys, maintain_order=True)
        .agg(
            seq_len=pl.len().cast(pl.Int64),
            start_time=pl.col("m_timestamp").min(),
            end_time=pl.col("m_timestamp").max(),
            e_words=pl.col("e_words").explode(),
            e_event_drain_id=pl.col("e_event_drain_id"),
            e_chars_len=pl.col("e_chars").sum().cast(pl.Int64),
            e_error_count=pl.col("err").sum().cast(pl.Int64),
        )
        .join(trigrams, on="seq_id", how="left")
        .with_columns(duration=pl.col("end_time") - pl.col("start_time"))
        .with_columns(
            duration_sec=pl.col("duration").dt.total_milliseconds().cast(pl.Float64) / 1000.0,
            e_words_len=pl.col("e_words").list.len().cast(pl.Int64),
            e_trigrams_len=pl.col("e_trigrams").list.len().cast(pl.Int64),
            e_event_drain_id_len=pl.col("e_event_drain_id").list.len().cast(pl.Int64),
        )
    )
    seq = _to_bags(_to_bags(seq, "e_words"), "e_trigrams")
    seq = _to_bags(seq.with_columns(e_event_templates=pl.col("e_event_drain_id")),
                   "e_event_templates")
    order = keys[:4] + ["normal", "anomaly", "target_service", "window", "seq_len",
                        "start_time", "end_time", "duration", "duration_sec", "e_words",
                        "e_words_counts", "e_words_len", "e_trigrams", "e_trigrams_counts",
                        "e_trigrams_len", "e_event_drain_id",
                        "e_event_drain_id_len", "e_event_templates", "e_event_templates_counts",
                        "e_chars_len", "e_error_count"]
    return seq.select(order).sort("run", "test_case", "service")


def _to_bags(seq: pl.DataFrame, col: str) -> pl.DataFrame:
    """Concatenated token lists -> the contract's bags (sorted distinct tokens + counts)."""
    bags = (
        seq.select("seq_id", col).explode(col).drop_nulls(col)
        .group_by("seq_id", col).agg(pl.len().cast(pl.Int64).alias("c"))
        .sort("seq_id", col)
        .group_by("seq_id", maintain_order=True)
        .agg(pl.col(col), pl.col("c").alias(f"{col}_counts"))
    )
    return seq.drop(col).join(bags, on="seq_id", how="left", maintain_order="left").with_columns(
        pl.col(col).fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col(f"{col}_counts").fill_null(pl.lit([], dtype=pl.List(pl.Int64))),
    )


def make_enhanced_sequences(n_runs: int = 8, metrics: bool = False,
                            **kwargs: object) -> pl.DataFrame:
    """Synthetic ``lo2_sequences_enhanced`` table; keyword arguments as :func:`make_events`.
    ``metrics``: also the loader's metric feature columns (:func:`add_metric_columns`)."""
    seq = aggregate(make_events(n_runs, **kwargs))  # type: ignore[arg-type]
    return add_metric_columns(seq) if metrics else seq


def add_metric_columns(seq: pl.DataFrame, seed: int = 3) -> pl.DataFrame:
    """The ``mx_*`` columns of ``lo2-load --load-metrics`` for the CPU counter and the host
    load gauge: the CPU rate is higher in sequences with error events (a signal for the
    metrics-only models to find), the load is noise, and one row in 20 has no sample (null
    statistics, ``_n`` = 0)."""
    rng = np.random.default_rng(seed)
    n = seq.height
    errors = (seq.get_column("e_error_count") > 0).to_numpy()
    empty = rng.random(n) < 0.05
    rate = rng.normal(0.4, 0.08, n) + 0.5 * errors
    load = rng.normal(10.0, 0.5, n)
    samples = np.where(empty, 0, 5)

    def stat(values: np.ndarray) -> pl.Series:
        return pl.Series(np.where(empty, np.nan, values)).fill_nan(None)

    return seq.with_columns(
        mx_cpu_n=pl.Series(samples, dtype=pl.Int64),
        mx_cpu_increase=stat(rate * 5), mx_cpu_rate=stat(rate),
        mx_host_load1_n=pl.Series(samples, dtype=pl.Int64),
        mx_host_load1_mean=stat(load), mx_host_load1_max=stat(load + rng.random(n)),
    )


def epoch_of(run: str) -> int:
    """Epoch suffix of a synthetic run name."""
    return int(run.rsplit("-", 1)[1])
