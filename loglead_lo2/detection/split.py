"""Run-grouped train / hold-out splits (every sequence of a run stays on one side).

A run is one recording of all 54 test cases; its sequences share start-up state and time, so
splitting inside a run leaks. :func:`run_grouped_split` holds out whole runs (by default the
newest ones, by the epoch suffix of the run name) and, when stratified, insists that both
sides have normal and anomalous rows; otherwise it raises :class:`SplitError` explaining why,
so no caller can silently fall back to training-set numbers.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

_EPOCH = re.compile(r"([0-9]+)\Z")  # \Z, not $: "run1\n" has no epoch
_SHUFFLE_TRIES = 200


class SplitError(UserError):
    """No honest split exists for the requested fraction / stratification."""


@dataclass(frozen=True)
class Split:
    """Run names on each side and a one-line human description of how they were chosen."""

    train_runs: list[str]
    test_runs: list[str]
    note: str

    def frames(self, df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``(train rows, hold-out rows)`` of ``df`` by its ``run`` column."""
        return (
            df.filter(pl.col("run").is_in(self.train_runs)),
            df.filter(pl.col("run").is_in(self.test_runs)),
        )


def run_sort_key(run: str) -> tuple[int, str]:
    """Sort key of a run name: its trailing epoch digits, then the name."""
    m = _EPOCH.search(run)
    return (int(m.group(1)) if m else -1, run)


def _ordered_runs(df: pl.DataFrame, order_by: str) -> list[str]:
    if "run" not in df.columns:
        raise SplitError(f"cannot split: no 'run' column (columns: {', '.join(df.columns)}).")
    if order_by == "run":
        return sorted(df.get_column("run").unique().to_list(), key=run_sort_key)
    if order_by not in df.columns:
        raise SplitError(f"cannot order runs by {order_by!r}: no such column.")
    first = df.group_by("run").agg(pl.col(order_by).min().alias("_first")).sort("_first", "run")
    return first.get_column("run").to_list()


def _class_counts(df: pl.DataFrame, runs: list[str]) -> tuple[int, int]:
    part = df.filter(pl.col("run").is_in(runs)).get_column("anomaly")
    n_anom = int(part.sum() or 0)
    return part.len() - n_anom, n_anom


def _n_holdout(n_runs: int, fraction: float, min_groups: int) -> int:
    if not 0 < fraction < 1:
        raise SplitError(f"hold-out fraction must be between 0 and 1 (exclusive), got {fraction}.")
    n = max(math.ceil(fraction * n_runs), int(min_groups), 1)
    if n >= n_runs:
        raise SplitError(
            f"cannot hold out {n} of {n_runs} run(s) and still train on at least one run; "
            "load more runs (--runs) or lower the hold-out fraction / minimum groups."
        )
    return n


def _describe(df: pl.DataFrame, train: list[str], test: list[str], how: str) -> str:
    tn, ta = _class_counts(df, train)
    hn, ha = _class_counts(df, test)
    return (
        f"{how}: {len(test)} hold-out run(s) {', '.join(test)}; train {len(train)} run(s), "
        f"{tn + ta} rows ({tn} normal / {ta} anomalous); hold-out {hn + ha} rows "
        f"({hn} normal / {ha} anomalous)"
    )


def _missing(df: pl.DataFrame, train: list[str], test: list[str]) -> list[str]:
    out = []
    for side, runs in (("train", train), ("hold-out", test)):
        n, a = _class_counts(df, runs)
        if n == 0:
            out.append(f"{side} has no normal rows")
        if a == 0:
            out.append(f"{side} has no anomalous rows")
    return out


def run_grouped_split(
    df: pl.DataFrame,
    fraction: float = 0.2,
    min_groups: int = 1,
    shuffle: bool = False,
    seed: int = 42,
    stratify: bool = True,
    order_by: str = "run",
) -> Split:
    """Hold out ``ceil(fraction * runs)`` whole runs (at least ``min_groups``).

    Not shuffled: the newest runs (by ``order_by``: the run name's epoch suffix, or the
    earliest value of that column per run) are held out. Shuffled: a seeded random choice; when
    stratifying, further seeded draws are tried until both sides have both classes. Raises
    :class:`SplitError` when no such split exists.
    """
    runs = _ordered_runs(df, order_by)
    n_test = _n_holdout(len(runs), fraction, min_groups)
    if shuffle:
        rng = np.random.default_rng(seed)
        for attempt in range(_SHUFFLE_TRIES if stratify else 1):
            pick = set(rng.choice(len(runs), size=n_test, replace=False).tolist())
            test = [r for i, r in enumerate(runs) if i in pick]
            train = [r for i, r in enumerate(runs) if i not in pick]
            if not stratify or not _missing(df, train, test):
                how = f"shuffled run split (seed {seed}, draw {attempt + 1})"
                return Split(train, test, _describe(df, train, test, how))
        problems = _missing(df, train, test)
    else:
        train, test = runs[:-n_test], runs[-n_test:]
        problems = _missing(df, train, test) if stratify else []
        if not problems:
            how = f"newest-run split ({fraction:g} of {len(runs)} runs, min {min_groups})"
            return Split(train, test, _describe(df, train, test, how))
    raise SplitError(
        f"no stratified run split with {n_test} of {len(runs)} run(s) held out "
        f"({'; '.join(problems)}). Every sequence of a run stays on one side, so both sides "
        "need runs with normal ('correct') and error sequences: load more runs, change "
        "--sup-holdout-fraction / --sup-holdout-min-groups or try --sup-holdout-shuffle. "
        "No hold-out metrics are reported rather than training-set numbers."
    )


def normal_holdout_split(df: pl.DataFrame, fraction: float, seed: int = 42) -> Split:
    """Hold out the newest ``ceil(fraction * n)`` of the ``n`` runs with normal rows.

    Used for the Isolation Forest threshold (a percentile of held-out normal scores). When
    fewer than two runs have normal rows nothing can be held out: ``test_runs`` is empty and
    the note says the threshold falls back to training scores. ``seed`` is accepted for
    symmetry with :func:`run_grouped_split`; the choice is deterministic (newest runs).
    """
    if not 0 <= fraction < 1:
        raise SplitError(f"hold-out fraction must be in [0, 1), got {fraction}.")
    normal_runs = sorted(
        df.filter(pl.col("normal")).get_column("run").unique().to_list(), key=run_sort_key
    )
    all_runs = sorted(df.get_column("run").unique().to_list(), key=run_sort_key)
    if fraction == 0 or len(normal_runs) < 2:
        why = "no hold-out requested" if fraction == 0 else (
            f"only {len(normal_runs)} run(s) with normal rows"
        )
        return Split(
            all_runs, [], f"{why}: threshold falls back to training normal scores"
        )
    n = min(max(math.ceil(fraction * len(normal_runs)), 1), len(normal_runs) - 1)
    test = normal_runs[-n:]
    train = [r for r in all_runs if r not in test]
    return Split(
        train,
        test,
        f"newest {n} of {len(normal_runs)} normal run(s) held out for the threshold: "
        f"{', '.join(test)}",
    )


__all__ = ["Split", "SplitError", "normal_holdout_split", "run_grouped_split", "run_sort_key"]
