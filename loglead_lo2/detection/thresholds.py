"""Deployable thresholds: set on training-run normal rows for a target false-positive rate.

A model's threshold must come from data it may see before deployment, never from hold-out
rows. The rule (``--threshold``):

* ``fp-target`` (default): the lowest threshold that flags at most ``--fp-target`` (default
  1 %) of the *calibration* normal rows. The calibration rows are the normal rows of the
  newest training runs (``--calibration-fraction`` of them, at least one), which the model is
  not fitted on; the model is fitted on the other training runs. With a single training run
  there is nothing to hold back: the model's own training normal rows are used and the record
  says the false-positive rate will be optimistic.
* ``model``: the model's own cut-off (a classifier's 0.5, a margin of 0, a detector's
  fitted threshold, the forest's contamination), fitted on all training runs.

One rule everywhere: ``pred = score >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.detection.split import run_sort_key
from loglead_lo2.errors import UserError

THRESHOLD_RULES: tuple[str, ...] = ("fp-target", "model")
DEFAULT_RULE = "fp-target"
DEFAULT_FP_TARGET = 0.01
DEFAULT_CALIBRATION_FRACTION = 0.2
IN_SAMPLE_NOTE = ("no training run could be held back for calibration: the threshold comes "
                  "from the model's own training normal rows, so the false-positive rate "
                  "will be optimistic")


@dataclass(frozen=True)
class ThresholdSettings:
    """The ``--threshold`` / ``--fp-target`` / ``--calibration-fraction`` flags."""

    rule: str = DEFAULT_RULE
    fp_target: float = DEFAULT_FP_TARGET
    calibration_fraction: float = DEFAULT_CALIBRATION_FRACTION
    percentile: float | None = None
    """For ``rule="percentile"`` (the forest's ``--if-threshold-percentile``): the threshold
    is this percentile of the calibration normal scores."""

    def __post_init__(self) -> None:
        if self.rule == "percentile":
            if self.percentile is None or not 0 < self.percentile <= 100:
                raise UserError(f"threshold percentile must be in (0, 100], "
                                f"got {self.percentile}.")
        elif self.rule not in THRESHOLD_RULES:
            raise UserError(f"--threshold must be one of {', '.join(THRESHOLD_RULES)}, "
                            f"got {self.rule!r}.")
        if not 0 <= self.fp_target < 1:
            raise UserError(f"--fp-target must be in [0, 1), got {self.fp_target}.")
        if not 0 <= self.calibration_fraction < 1:
            raise UserError(f"--calibration-fraction must be in [0, 1), "
                            f"got {self.calibration_fraction}.")

    @property
    def calibrates(self) -> bool:
        """Whether training runs are held back for the threshold."""
        return self.rule in ("fp-target", "percentile") and self.calibration_fraction > 0


@dataclass(frozen=True)
class CalibrationSplit:
    """Training runs split into the runs a model is fitted on and the calibration runs."""

    fit_runs: tuple[str, ...]
    calibration_runs: tuple[str, ...]
    note: str

    def frames(self, train: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``(fit rows, calibration rows)`` of ``train``."""
        cal = pl.col("run").is_in(list(self.calibration_runs))
        return train.filter(~cal), train.filter(cal)


@dataclass(frozen=True)
class Threshold:
    """A threshold, the rule that set it and the rows it came from."""

    value: float
    rule: str
    source: str
    fp_target: float | None = None
    calibration_runs: tuple[str, ...] = ()
    calibration_rows: int = 0
    calibration_fp: float | None = None
    in_sample: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "rule": self.rule, "source": self.source,
                "fp_target": self.fp_target, "split": "train",
                "calibration_runs": list(self.calibration_runs),
                "calibration_rows": self.calibration_rows,
                "calibration_fp_rate": self.calibration_fp, "in_sample": self.in_sample,
                "decision": "score >= threshold", "notes": list(self.notes)}


def calibration_split(train: pl.DataFrame, settings: ThresholdSettings) -> CalibrationSplit:
    """Hold back the newest ``calibration_fraction`` of the training runs that have normal
    rows (at least one, leaving at least one run to fit on); none for the ``model`` rule."""
    runs = sorted(train["run"].unique().to_list(), key=run_sort_key)
    if not settings.calibrates:
        return CalibrationSplit(tuple(runs), (), "no calibration runs (rule "
                                f"{settings.rule}, fraction {settings.calibration_fraction:g})")
    normal_runs = sorted(train.filter(pl.col("normal"))["run"].unique().to_list(),
                         key=run_sort_key)
    if len(runs) < 2 or not normal_runs:
        return CalibrationSplit(tuple(runs), (), IN_SAMPLE_NOTE)
    n = max(1, math.ceil(settings.calibration_fraction * len(runs)))
    cal = [r for r in normal_runs[-n:]]
    fit = [r for r in runs if r not in cal]
    if not fit or not train.filter(pl.col("run").is_in(fit))["normal"].any():
        return CalibrationSplit(tuple(runs), (), IN_SAMPLE_NOTE)
    return CalibrationSplit(tuple(fit), tuple(cal),
                            f"newest {len(cal)} of {len(runs)} training run(s) held back for "
                            f"the threshold: {', '.join(cal)}")


def fp_target_threshold(normal_scores: np.ndarray, fp_target: float) -> float:
    """The lowest threshold flagging at most ``fp_target`` of ``normal_scores``.

    With ``n`` scores, at most ``floor(fp_target * n)`` may be flagged; the threshold sits
    just above the highest score that must stay unflagged (ties are never split, so fewer may
    be flagged). Raises :class:`ValueError` on empty or non-finite input.
    """
    s = np.sort(np.asarray(normal_scores, dtype=np.float64).ravel())[::-1]
    if s.size == 0:
        raise ValueError("no normal calibration scores")
    if not np.all(np.isfinite(s)):
        raise ValueError("non-finite calibration scores")
    allowed = int(math.floor(fp_target * s.size + 1e-9))
    if allowed >= s.size:
        return float(s[-1])
    return float(np.nextafter(s[allowed], np.inf))


def flagged_share(scores: np.ndarray, threshold: float) -> float | None:
    s = np.asarray(scores, dtype=np.float64)
    return float((s >= threshold).mean()) if s.size else None


def from_calibration(normal_scores: np.ndarray, settings: ThresholdSettings,
                     split: CalibrationSplit, *, in_sample: bool) -> Threshold:
    """The ``fp-target`` (or ``percentile``) threshold from calibration (or in-sample)
    normal scores."""
    n = int(np.asarray(normal_scores).size)
    where = (f"{n:,} normal rows of {len(split.calibration_runs)} calibration run(s)"
             if not in_sample else f"{n:,} training normal rows (in-sample)")
    if settings.rule == "percentile" and settings.percentile is not None:
        if n == 0:
            raise ValueError("no normal calibration scores")
        value = float(np.percentile(np.asarray(normal_scores, dtype=np.float64),
                                    settings.percentile))
        return Threshold(value=value, rule="percentile",
                         source=f"p{settings.percentile:g} of {where}",
                         calibration_runs=split.calibration_runs, calibration_rows=n,
                         calibration_fp=flagged_share(normal_scores, value),
                         in_sample=in_sample, notes=(IN_SAMPLE_NOTE,) if in_sample else ())
    value = fp_target_threshold(normal_scores, settings.fp_target)
    notes = [IN_SAMPLE_NOTE] if in_sample else []
    if 0 < n and n * settings.fp_target < 1:
        notes.append(f"only {n} calibration normal row(s): the smallest false-positive rate "
                     f"they resolve is 1/{n} = {1 / n:.3f} > {settings.fp_target:g}, so the "
                     "threshold lies above all of them; load more runs for a meaningful cut")
    return Threshold(value=value, rule="fp-target",
                     source=f"fp-target {settings.fp_target:g} on {where}",
                     fp_target=settings.fp_target, calibration_runs=split.calibration_runs,
                     calibration_rows=n, calibration_fp=flagged_share(normal_scores, value),
                     in_sample=in_sample, notes=tuple(notes))


def model_cutoff(value: float, source: str) -> Threshold:
    """The model's own cut-off (``--threshold model``)."""
    return Threshold(value=float(value), rule="model", source=source)


def fp_rate_threshold(normal_scores: np.ndarray, fp: float) -> float | None:
    """Like :func:`fp_target_threshold`, ``None`` on empty input (for report-only cuts such
    as recall at 1 % FP on hold-out normal rows)."""
    s = np.asarray(normal_scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    return fp_target_threshold(s, fp) if s.size else None


__all__ = [
    "DEFAULT_FP_TARGET",
    "THRESHOLD_RULES",
    "CalibrationSplit",
    "Threshold",
    "ThresholdSettings",
    "calibration_split",
    "flagged_share",
    "fp_rate_threshold",
    "fp_target_threshold",
    "from_calibration",
    "model_cutoff",
]
