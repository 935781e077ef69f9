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
    "token": 380.0, "code": 310.0, "user": 305.0, "client": 290.0, "service": 285.0,
    "refresh-token": 270.0, "key": 0.0,
}
"""Lines per second at full load and scale 1.0 (all of a service's simulated users running):
token ~22k per 60 s ``correct`` case, the others 15-18k, key silent; about 1.06 million lines
per ``light-oauth2-data`` run."""

SPAWN_S: dict[str, tuple[float, ...]] = {
    "client": (0.0,), "user": (0.3,), "service": (0.6,), "refresh-token": (1.5,),
    "token": (1.0, 1.5, 2.0), "code": (1.0, 1.5, 2.0), "key": (0.0,),
}
"""Seconds after a case starts at which each of the service's simulated users starts sending.

Locust starts the single registration users (client, user, service, refresh-token CRUD)
first, then the three OAuth users, and a new locust process records every case with empty
client/user/service sets: the first seconds of every case are registration-heavy and the token
and code services start late. The harness spawns one user per second, but the real data
(~1.1 M lines per run, error cases about as busy per second as ``correct``) shows no ramp of
7 s, so the ramp here is compressed into the first 2 s."""

OWN_ENTITY: dict[str, str] = {"client": "client", "user": "user", "service": "svc"}
"""The entity kind each registration service creates (and its other requests refer to)."""
ENTITY_KINDS: tuple[str, ...] = ("client", "user", "svc")
EARLY_REGISTER_S = 2.0
EARLY_REGISTER_P = 0.6
"""In its first seconds a registration user mostly registers (its other tasks find no entity
and are rescheduled): a request then is a registration with this probability."""
QUOTA_FACTOR = 1.5
QUOTA_PAD = EARLY_REGISTER_S * 2 + 4
"""A case reserves ``QUOTA_FACTOR * expected registrations + QUOTA_PAD`` pool entries per
entity kind (:func:`entity_quota`); :func:`_entity_indices` inverts it."""

THREADS: list[str] = (
    ["main"]
    + [f"XNIO-1 task-{k}" for k in range(1, 9)]
    + [f"hz._hzInstance_1_dev.partition-operation.thread-{k}" for k in range(16)]
)
MAIN, XNIO0, HZ0 = 0, 1, 9
_XNIO_P = np.array([0.30, 0.36, 0.02, 0.29, 0.01, 0.01, 0.005, 0.005])
_XNIO_P = _XNIO_P / _XNIO_P.sum()

INJECT_PER_10S = (2, 8)
"""Injected events per 10 s at scale 1.0 (at least one per error case); they fall anywhere in
the service's traffic, the first second included (error-case files have no start-up block to
protect them: a loader that drops each file's first lines drops them)."""
NPE_RATE = 0.1  # client update NPEs per second at scale 1.0, every case
TOKEN_EXC_RATE = 0.2  # token ApiExceptions per second at scale 1.0, correct only
MAPSTORE_RATE = 0.02  # ClientMapStore delete errors per second and busy service



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
    register: int = -1  # row of the flow that registers the service's own entity

    @property
    def mean_len(self) -> float:
        """Mean lines of a normal request."""
        if not len(self.normal):
            return 1.0
        return float((self.lens[self.normal] * self.normal_p).sum())

    @property
    def register_share(self) -> float:
        """Share of normal requests that are registrations (0 without a register flow)."""
        return float(self.normal_p[self.register]) if self.register >= 0 else 0.0


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
    flows = SERVICE_FLOWS_BY_NAME[service]
    normal = [(f.weight, _ids(f.templates)) for f in flows]
    register = next((i for i, f in enumerate(flows) if f.registers), -1)
    hz = [(f.weight, _ids(f.templates)) for f in HZ_FLOWS]
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
        register,
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


@dataclass(frozen=True)
class EntitySlice:
    """Where a test case's registered entities lie in its run's pools (``offset``, ``size``
    per kind). Each case is recorded by a new locust process, so its requests only use the
    clients, users and services registered during that case."""

    offset: dict[str, int]
    size: dict[str, int]


def active_seconds(service: str, seconds: float) -> float:
    """Full-load seconds of ``service`` in a case of ``seconds`` (users start one by one)."""
    spawns = SPAWN_S[service]
    return sum(max(0.0, seconds - s) for s in spawns) / len(spawns)


def entity_quota(kind: str, seconds: float, scale: float) -> int:
    """Pool entries to reserve for ``kind`` in a case (see :data:`QUOTA_FACTOR`)."""
    owner = next(s for s, k in OWN_ENTITY.items() if k == kind)
    ft = _flow_table(owner, None)
    requests = RATES[owner] * (1 - HZ_SHARE) / ft.mean_len * active_seconds(owner, seconds)
    expected = requests * scale * ft.register_share
    return int(np.ceil(QUOTA_FACTOR * expected + QUOTA_PAD))


def _spawned_starts(rng: np.random.Generator, n: int, t0: int, t1: int,
                    spawns: tuple[float, ...]) -> np.ndarray:
    """Start times of ``n`` requests spread over the users' active windows."""
    begin = np.minimum(t0 + (np.asarray(spawns) * 1000).astype(np.int64), t1 - 31)
    widths = (t1 - 30 - begin).astype(np.float64)
    user = rng.choice(len(spawns), size=n, p=widths / widths.sum())
    return (begin[user] + rng.random(n) * widths[user]).astype(np.int64)


def _entity_indices(rng: np.random.Generator, service: str, ft: FlowTable,
                    flows: np.ndarray, starts: np.ndarray, t0: int, t1: int,
                    entities: EntitySlice) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run-pool index of the client, user and service each request refers to, and which
    normal requests to drop (they need an entity of the service's own kind before any was
    registered: locust reschedules them, they never reach the server).

    A registration takes the next entry of the case's slice; another request of the owning
    service picks one of the entities registered before it; any other service's request picks
    among the entries registered by then (the slice fills up in time).
    """
    n = len(flows)
    u = rng.random((n, len(ENTITY_KINDS)))
    frac = np.clip((starts - t0) / max(1, t1 - t0), 0.0, 1.0)
    out: dict[str, np.ndarray] = {}
    drop = np.zeros(n, dtype=bool)
    for j, kind in enumerate(ENTITY_KINDS):
        off, size = entities.offset[kind], entities.size[kind]
        if OWN_ENTITY.get(service) == kind and ft.register >= 0:
            reg = flows == ft.register
            reg_starts = starts[reg]
            order = np.argsort(reg_starts, kind="stable")
            ordinal = np.empty(len(order), dtype=np.int64)
            ordinal[order] = np.arange(len(order))
            before = np.searchsorted(reg_starts[order], starts, side="left")
            pick = np.floor(u[:, j] * before).astype(np.int64)
            pick[reg] = ordinal
            drop = ~reg & (before == 0) & np.isin(flows, ft.normal)
        else:
            expected = max(1.0, (size - QUOTA_PAD) / QUOTA_FACTOR)
            m = np.clip(np.ceil(expected * frac), 1, size)
            pick = np.floor(u[:, j] * m).astype(np.int64)
        out[kind] = (off + pick % max(1, size)).astype(np.int32)
    return out, drop


def _request_values(rng: np.random.Generator, threads: np.ndarray, hz: np.ndarray,
                    entity: dict[str, np.ndarray],
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
    out.update(entity)
    return out


def plan_file(service: str, case: TestCase, slot: CaseSlot, scale: float,
              rng: np.random.Generator, entities: EntitySlice,
              startup_ms: int | None = None) -> FilePlan:
    """Plan the lines of ``service``'s log during ``slot`` (``startup_ms``: correct only)."""
    ft = flow_table(service, case)
    t0, t1 = slot.start_ms, slot.end_ms
    seconds = slot.seconds
    busy = RATES[service] > 0
    spawns = SPAWN_S[service]
    first_ms = min(t0 + int(spawns[0] * 1000), t1 - 1000)  # the service's first request
    if busy:
        target = RATES[service] * active_seconds(service, seconds) * scale
        target = max(target * rng.uniform(0.92, 1.08), 8.0)
        n_req = int(round(target * (1 - HZ_SHARE) / ft.mean_len))
        n_hz = int(round(RATES[service] * seconds * scale * HZ_SHARE))
    else:
        n_req, n_hz = 0, int(rng.integers(0, 4))
    normal = rng.choice(ft.normal, size=n_req, p=ft.normal_p) if n_req else np.zeros(0, np.int64)
    normal_starts = _spawned_starts(rng, n_req, t0, t1, spawns)
    if ft.register >= 0 and n_req:
        early = normal_starts < first_ms + int(EARLY_REGISTER_S * 1000)
        normal = np.where(early & (rng.random(n_req) < EARLY_REGISTER_P), ft.register, normal)
        normal[np.argmin(normal_starts)] = ft.register  # the first task to succeed
    flows = np.concatenate([normal, rng.choice(ft.hz, size=n_hz, p=ft.hz_p)]).astype(np.int64)
    starts = np.concatenate([normal_starts, rng.integers(t0, t1 - 30, size=n_hz)])
    hi = t1 - 200
    lo = min(first_ms + 200, hi - 1)
    # Injected events anywhere in the service's traffic (see INJECT_PER_10S). Background errors
    # of the normal workload: Poisson counts at the same per-second rate (times ``scale``, like
    # all traffic) in every case, spread uniformly over the whole case, so that they carry no
    # label signal.
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
    for special, (ev_lo, ev_hi) in ((injected, (lo, hi)), (background, (lo, hi))):
        ev_flows = [np.full(n, ft.special[key], dtype=np.int64) for key, n in special if n]
        if ev_flows:
            ev = np.concatenate(ev_flows)
            flows = np.concatenate([flows, ev])
            starts = np.concatenate([starts, _event_starts(rng, len(ev), ev_lo, ev_hi)])
    entity, drop = _entity_indices(rng, service, ft, flows, starts.astype(np.int64), t0, t1,
                                   entities)
    if drop.any():
        keep = ~drop
        flows, starts = flows[keep], starts[keep]
        entity = {k: v[keep] for k, v in entity.items()}
    order = np.argsort(starts, kind="stable")  # requests in time order
    flows, starts = flows[order], starts[order].astype(np.int64)
    entity = {k: v[order] for k, v in entity.items()}
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
        entity = {k: np.append(v, entities.offset[k]) for k, v in entity.items()}
    requests = _request_values(rng, threads, is_hz, entity, ft.needs)
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
