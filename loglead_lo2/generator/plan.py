"""Plan one log file as arrays: which requests, when, on which thread, which lines.

Everything is drawn with numpy from the file's own generator; there is no loop per line or per
request. The result (:class:`FilePlan`) is rendered to text by :mod:`.render`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from loglead_lo2.cases import TestCase
from loglead_lo2.generator import signatures as sig
from loglead_lo2.generator.schedule import CaseSlot
from loglead_lo2.generator.startup import startup_templates
from loglead_lo2.generator.templates import (
    HZ_FLOWS,
    HZ_SHARE,
    PLACEHOLDER,
    SERVICE_FLOWS_BY_NAME,
    Event,
    Registry,
)
from loglead_lo2.generator.values import b64_chars, cid_chars, uuid_chars

RATES: dict[str, float] = {
    "token": 367.0, "code": 300.0, "user": 300.0, "client": 290.0, "service": 280.0,
    "refresh-token": 260.0, "key": 0.0,
}
"""Lines per second at scale 1.0: token ~22k per 60 s ``correct`` case, the others 15-18k,
key silent; about 1.06 million lines per ``light-oauth2-data`` run."""

THREADS: list[str] = (
    ["main"]
    + [f"XNIO-1 task-{k}" for k in range(1, 9)]
    + [f"hz._hzInstance_1_dev.partition-operation.thread-{k}" for k in range(16)]
)
MAIN, XNIO0, HZ0 = 0, 1, 9
_XNIO_P = np.array([0.30, 0.36, 0.02, 0.29, 0.01, 0.01, 0.005, 0.005])
_XNIO_P = _XNIO_P / _XNIO_P.sum()

INJECT_PER_10S = (2, 8)
"""Injected events per 10 s at scale 1.0 (at least one per error case)."""
NPE_RATE = 0.1  # client update NPEs per second at scale 1.0, every case
TOKEN_EXC_RATE = 0.2  # token ApiExceptions per second at scale 1.0, correct only
MAPSTORE_RATE = 0.02  # ClientMapStore delete errors per second and busy service
TRIM_GUARD = 130
"""Events go after the first ~130 lines of a file (as in real runs, where line 100 is reached
within the first second), so trimming a log's first 100 lines never removes them."""


@dataclass
class FlowTable:
    """Padded template-id table of a file's flows: rows are flows, ``lens`` their lengths."""

    table: np.ndarray
    lens: np.ndarray
    normal: np.ndarray  # indices of normal request flows
    normal_p: np.ndarray
    hz: np.ndarray
    hz_p: np.ndarray
    special: dict[str, int]  # "inject", "npe", "token_exc0", "token_exc1", "mapstore"
    needs: frozenset[str]  # placeholders used by the flows' templates


@dataclass
class FilePlan:
    """Lines (``t``, ``req``, ``pos``, ``tid``) and per-request values of one file."""

    t: np.ndarray
    req: np.ndarray
    pos: np.ndarray
    tid: np.ndarray
    requests: dict[str, np.ndarray]  # thread, hz, cid, code, uuid, pkce, client, user, svc

    @property
    def n_requests(self) -> int:
        return len(self.requests["thread"])


REGISTRY = Registry()


def _ids(templates: list[str], event: Event | None = None) -> list[int]:
    out = [REGISTRY.add(t) for t in templates[:-1]]
    return out + [REGISTRY.add(templates[-1], event=event)]


def flow_table(service: str, case: TestCase) -> FlowTable:
    """Flows of ``service`` during ``case`` (the case's signature only in its target)."""
    return _flow_table(service, case if case.target_service == service else None)


@cache
def _flow_table(service: str, case: TestCase | None) -> FlowTable:
    rows: list[list[int]] = []
    normal = [(w, _ids(f)) for w, f in SERVICE_FLOWS_BY_NAME[service]]
    hz = [(w, _ids(f)) for w, f in HZ_FLOWS]
    rows += [r for _, r in normal] + [r for _, r in hz]
    special: dict[str, int] = {}
    err = sig.error_flow(case) if case is not None else None
    extras = {"inject": err}
    if service == "client":
        extras["npe"] = sig.CLIENT_UPDATE_NPE
    if service == "token":
        extras.update({f"token_exc{i}": f for i, f in enumerate(sig.TOKEN_API_EXCEPTIONS)})
    extras["mapstore"] = sig.MAPSTORE_DELETE_ERROR
    for key, flow in extras.items():
        if flow is not None:
            special[key] = len(rows)
            rows.append(_ids(flow[0], flow[1]))
    lens = np.array([len(r) for r in rows], dtype=np.int64)
    table = np.zeros((len(rows), int(lens.max())), dtype=np.int32)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    nw = np.array([w for w, _ in normal]) if normal else np.zeros(0)
    hw = np.array([w for w, _ in hz])
    needs = frozenset(
        m.group(1) for tid in np.unique(table) for m in PLACEHOLDER.finditer(REGISTRY.texts[tid])
    )
    return FlowTable(
        table, lens,
        np.arange(len(normal)), nw / nw.sum() if len(nw) else nw,
        np.arange(len(normal), len(normal) + len(hz)), hw / hw.sum(), special, needs,
    )


def _expand(ft: FlowTable, flows: np.ndarray, starts: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Requests -> lines: request index, position, template id and time of each line."""
    lens = ft.lens[flows]
    total = int(lens.sum())
    req = np.repeat(np.arange(len(flows)), lens)
    first = np.cumsum(lens) - lens
    pos = np.arange(total) - np.repeat(first, lens)
    tid = ft.table[flows[req], pos]
    dt = rng.exponential(2.2, size=total)
    dt[first[lens > 0]] = 0.0
    cum = np.cumsum(dt)
    cum -= np.repeat(cum[first], lens)
    t = starts[req] + cum.astype(np.int64)
    return req, pos, tid, t


def _event_starts(rng: np.random.Generator, n: int, lo: int, hi: int) -> np.ndarray:
    return np.sort(rng.integers(lo, max(hi, lo + 1), size=n)).astype(np.int64)


WIDTHS = {"cid": 22, "code": 22, "uuid": 36, "pkce": 43}
"""Fixed-width random strings per request, kept as ASCII matrices until rendering."""


def _request_values(rng: np.random.Generator, threads: np.ndarray, hz: np.ndarray,
                    pool_sizes: tuple[int, int, int],
                    needs: frozenset[str]) -> dict[str, np.ndarray]:
    """Per-request values; strings a file's templates never use stay zero bytes."""
    n = len(threads)
    makers = {
        "code": lambda: b64_chars(rng, n, 16),
        "uuid": lambda: uuid_chars(rng, n),
        "pkce": lambda: b64_chars(rng, n, 32),
    }
    out: dict[str, np.ndarray] = {
        "thread": threads.astype(np.int32), "hz": hz.astype(bool), "cid": cid_chars(rng, n)}
    for name, make in makers.items():
        out[name] = make() if name in needs else np.zeros((n, WIDTHS[name]), np.uint8)
    for name, size in zip(("client", "user", "svc"), pool_sizes, strict=True):
        out[name] = rng.integers(0, size, n).astype(np.int32)
    return out


def plan_file(service: str, case: TestCase, slot: CaseSlot, scale: float,
              rng: np.random.Generator, pool_sizes: tuple[int, int, int],
              startup_ms: int | None = None) -> FilePlan:
    """Plan the lines of ``service``'s log during ``slot`` (``startup_ms``: correct only)."""
    ft = flow_table(service, case)
    t0, t1 = slot.start_ms, slot.end_ms
    span = t1 - t0
    seconds = slot.seconds
    target = RATES[service] * seconds * scale * rng.uniform(0.92, 1.08)
    if RATES[service] > 0:
        target = max(target, 8.0)
        mean_len = float((ft.lens[ft.normal] * ft.normal_p).sum())
        n_req = int(round(target * (1 - HZ_SHARE) / mean_len))
        n_hz = int(round(target * HZ_SHARE))
    else:
        n_req, n_hz = 0, int(rng.integers(0, 4))
    flows = np.concatenate([
        rng.choice(ft.normal, size=n_req, p=ft.normal_p) if n_req else np.zeros(0, np.int64),
        rng.choice(ft.hz, size=n_hz, p=ft.hz_p),
    ]).astype(np.int64)
    starts = np.sort(rng.integers(t0, t1 - 30, size=len(flows))).astype(np.int64)
    order = rng.permutation(len(flows))  # normal and hz requests interleaved in time
    flows = flows[order]
    # Events go after the trimmed head and at least one second into the case.
    mean_req = float(ft.lens[flows].mean()) if len(flows) else 1.0
    approx_line = int(np.searchsorted(np.arange(len(flows)) * mean_req, TRIM_GUARD))
    late = t0 + int(0.9 * span)  # small files: as late as possible
    lo = max(t0 + 1000, int(starts[approx_line])) if approx_line < len(starts) else late
    lo = min(lo, late)
    hi = t1 - 200
    busy = RATES[service] > 0
    # Injected events: after the trimmed head (see TRIM_GUARD). Background errors of the normal
    # workload: Poisson counts at the same per-second rate (times ``scale``, like all traffic)
    # in every case, spread uniformly over the whole case, so that they carry no label signal
    # (no "at least one per file" floor, no late placement in short error cases).
    injected: list[tuple[str, int]] = []
    background: list[tuple[str, int]] = []
    if "inject" in ft.special and busy:
        k = rng.integers(INJECT_PER_10S[0], INJECT_PER_10S[1] + 1) * scale * seconds / 10
        injected.append(("inject", max(1, int(round(k)))))
    if "npe" in ft.special:
        background.append(("npe", int(rng.poisson(NPE_RATE * seconds * scale))))
    if case.is_normal and service == "token":
        n_exc = int(rng.poisson(TOKEN_EXC_RATE * seconds * scale))
        split = rng.integers(0, n_exc + 1)
        background += [("token_exc0", int(split)), ("token_exc1", int(n_exc - split))]
    if busy:
        background.append(("mapstore", int(rng.poisson(MAPSTORE_RATE * seconds * scale))))
    for special, (ev_lo, ev_hi) in ((injected, (lo, hi)), (background, (t0, hi))):
        ev_flows = [np.full(n, ft.special[key], dtype=np.int64) for key, n in special if n]
        if ev_flows:
            ev = np.concatenate(ev_flows)
            flows = np.concatenate([flows, ev])
            starts = np.concatenate([starts, _event_starts(rng, len(ev), ev_lo, ev_hi)])
    is_hz = np.isin(flows, ft.hz) | (flows == ft.special.get("mapstore", -1))
    threads = np.where(
        is_hz, HZ0 + rng.integers(0, 16, size=len(flows)),
        XNIO0 + rng.choice(8, size=len(flows), p=_XNIO_P),
    ).astype(np.int32)
    req, pos, tid, t = _expand(ft, flows, starts, rng)
    t = np.minimum(t, t1 - 1)
    if startup_ms is not None:
        t_s, tid_s = _startup(service, startup_ms, t0, rng)
        n_req = len(flows)
        req = np.concatenate([np.full(len(t_s), n_req), req])
        pos = np.concatenate([np.arange(len(t_s)), pos])
        tid = np.concatenate([tid_s, tid])
        t = np.concatenate([t_s, t])
        threads = np.append(threads, MAIN)
        is_hz = np.append(is_hz, True)  # start-up lines carry no correlation id
    requests = _request_values(rng, threads, is_hz, pool_sizes, ft.needs)
    return FilePlan(t.astype(np.int64), req.astype(np.int64), pos.astype(np.int32),
                    tid.astype(np.int32), requests)


def _startup(service: str, begin_ms: int, end_ms: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    templates = startup_templates(service, rng)
    tids = np.array([REGISTRY.add(text, raw=raw) for text, raw in templates], dtype=np.int32)
    # Start-up output is spread over the first ~80% of the start-up phase.
    span = max(1, int(0.8 * (end_ms - begin_ms)))
    t = begin_ms + np.sort(rng.integers(0, span, size=len(tids)))
    return t.astype(np.int64), tids
