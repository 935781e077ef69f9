"""When each run and test case was recorded: folder names, epochs and case time slots.

Two recording styles, as in the real releases:

- ``light-oauth2-data-<epoch>``: start-up, ``correct`` for 60 s, then the 53 error cases in
  sorted order, 10 s each, with 0.5-2 s gaps.
- ``LO2_run_<epoch>``: ``correct`` still first, the error cases shuffled, 20-180 s each
  (skewed to short ones and capped so that the whole run stays within one hour).

The epoch in the folder name lies just after the run's last line; every line of a run is
within one hour of it. Each run's random choices come from its own seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from loglead_lo2.cases import NORMAL_CASE, error_cases
from loglead_lo2.errors import UserError

NAMINGS = ("light-oauth2-data", "LO2_run", "mixed")
BASE_EPOCH = 1719592986
"""Folder epoch of the real run ``light-oauth2-data-1719592986``."""

CORRECT_SECONDS = 60.0
ERROR_SECONDS = 10.0
MAX_RUN_SECONDS = 3400.0

# SeedSequence namespaces (first key after the seed) so that streams never collide.
NS_SCHEDULE, NS_FILE, NS_POOLS, NS_METRICS, NS_STARTUP = 1, 2, 3, 4, 5


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """Independent generator for ``(seed, *keys)``; order of generation does not matter."""
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


@dataclass(frozen=True)
class CaseSlot:
    """One test case's recording window (epoch milliseconds, end exclusive)."""

    index: int  # position in loglead_lo2.cases.test_cases() (sorted, correct included)
    name: str
    start_ms: int
    end_ms: int

    @property
    def seconds(self) -> float:
        return (self.end_ms - self.start_ms) / 1000.0


@dataclass(frozen=True)
class RunPlan:
    index: int
    name: str
    epoch: int
    shuffled: bool
    startup_ms: int  # when the system start-up output begins (before correct)
    slots: tuple[CaseSlot, ...]  # in recording order, correct first


def run_style(naming: str, index: int) -> tuple[str, bool]:
    """``(folder prefix, shuffled)`` of run ``index`` under ``naming``."""
    if naming not in NAMINGS:
        raise UserError(f"--naming must be one of {', '.join(NAMINGS)} (got {naming!r}).")
    lo2 = naming == "LO2_run" or (naming == "mixed" and index % 2 == 1)
    return ("LO2_run_", True) if lo2 else ("light-oauth2-data-", False)


def _durations(rng: np.random.Generator, n: int, shuffled: bool) -> np.ndarray:
    if not shuffled:
        return np.full(n, ERROR_SECONDS)
    dur = 20.0 + 160.0 * rng.beta(1.2, 3.5, size=n)
    budget = MAX_RUN_SECONDS - CORRECT_SECONDS - 60.0 - 2.0 * n - 20.0 * n
    extra = dur - 20.0
    if extra.sum() > budget:
        dur = 20.0 + extra * (budget / extra.sum())
    return np.round(dur, 3)


def plan_runs(runs: int, seed: int, naming: str = "light-oauth2-data",
              start_epoch: int | None = None) -> list[RunPlan]:
    """Schedules of ``runs`` runs; epochs are distinct and increasing."""
    if runs < 1:
        raise UserError(f"--runs must be at least 1 (got {runs}).")
    from loglead_lo2.cases import test_cases

    index_of = {name: i for i, name in enumerate(test_cases())}
    errors = error_cases()
    base_rng = rng_for(seed, NS_SCHEDULE)
    epoch = int(start_epoch) if start_epoch is not None else BASE_EPOCH + int(
        base_rng.integers(0, 30 * 86400))
    plans: list[RunPlan] = []
    for i in range(runs):
        prefix, shuffled = run_style(naming, i)
        rng = rng_for(seed, NS_SCHEDULE, i + 1)
        order = [errors[j] for j in rng.permutation(len(errors))] if shuffled else errors
        durations = _durations(rng, len(order), shuffled)
        gaps = rng.uniform(0.5, 2.0, size=len(order))
        startup = float(rng.uniform(25.0, 40.0))
        total = startup + CORRECT_SECONDS + float(durations.sum() + gaps.sum())
        margin = float(rng.uniform(5.0, 60.0))
        if i > 0:
            spacing = max(float(rng.uniform(1000.0, 2000.0)), total + margin + 300.0)
            epoch = plans[-1].epoch + int(round(spacing))
        run_start = int(round((epoch - margin - total) * 1000))
        t = run_start + int(round(startup * 1000))
        slots = [CaseSlot(index_of[NORMAL_CASE], NORMAL_CASE, t,
                          t + int(CORRECT_SECONDS * 1000))]
        t = slots[0].end_ms
        for name, dur, gap in zip(order, durations, gaps, strict=True):
            start = t + int(round(gap * 1000))
            slots.append(CaseSlot(index_of[name], name, start, start + int(round(dur * 1000))))
            t = slots[-1].end_ms
        plans.append(RunPlan(i, f"{prefix}{epoch}", epoch, shuffled, run_start, tuple(slots)))
    return plans
