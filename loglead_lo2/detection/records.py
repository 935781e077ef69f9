"""Typed results of the detection phase: hold-out metrics, model records, leaderboard rows.

* :class:`HoldoutMetrics`: what :func:`~loglead_lo2.detection.evaluate.evaluate_metrics`
  measures on the hold-out rows (the ``metrics`` block of ``<model>.json``);
* :class:`ModelRecord`: the content of ``<model>.json`` / ``if_metrics.json``; additions made
  after a model is evaluated (ground truth, SHAP) are new records
  (:meth:`ModelRecord.with_evaluation`, :meth:`ModelRecord.with_shap`);
* :func:`macro` / :func:`combined`: the ``macro`` row of a model trained per service and its
  ``<model>.json``;
* :class:`LeaderboardRow`: one row of ``leaderboard.csv``; its fields are the columns, each
  naming where its value comes from (a field of the record, of its metrics, or a key of one of
  its blocks).

Every class is a frozen dataclass. ``to_dict()`` gives exactly the JSON the phase has always
written (same keys, same order); :meth:`HoldoutMetrics.from_dict` and
:meth:`ModelRecord.from_dict` read it back. Nested free-form blocks (settings, split,
threshold, timing, ground truth, ...) stay mappings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from loglead_lo2.detection.labels import ALL_SERVICES, MACRO

HOLDOUT = "holdout"
LEADERBOARD = "leaderboard"
"""Field metadata key of :class:`HoldoutMetrics`: the metric is a leaderboard column."""
OPTIONAL = "optional"
"""Field metadata key of :class:`ModelRecord`: the key is left out of the JSON when ``None``."""

GROUP_FIELDS: tuple[str, ...] = ("n_correct", "fp_rate_correct", "n_non_target",
                                 "fp_rate_non_target")
"""Metrics present only when the rows' ``row_group`` was given to the evaluation."""
COUNT_FIELDS: tuple[str, ...] = ("support_pos", "support_neg", "tp", "fp", "tn", "fn")
"""Metrics the ``macro`` row sums over the services instead of averaging them."""


def _board(default: Any = None) -> Any:
    return field(default=default, metadata={LEADERBOARD: True})


def _optional() -> Any:
    return field(default=None, metadata={OPTIONAL: True})


def _check_keys(cls: type, data: Mapping[str, Any]) -> None:
    names = {f.name for f in fields(cls)}
    extra = sorted(set(data) - names)
    if extra:
        raise ValueError(f"{cls.__name__}: unknown key(s) {', '.join(map(str, extra))}")


@dataclass(frozen=True)
class HoldoutMetrics:
    """Classification and ranking metrics of one model on its hold-out rows.

    Undefined values are ``None`` (see :func:`~loglead_lo2.detection.evaluate.evaluate`).
    The four :data:`GROUP_FIELDS` are set (and written) only when the evaluation had the
    rows' ``row_group``. Fields flagged ``leaderboard`` are columns of ``leaderboard.csv``.
    In a ``macro`` record every value is the mean over the services (counts: the sum).
    """

    accuracy: float | None = _board()
    precision: float | None = _board()
    recall: float | None = _board()
    f1: float | None = _board()
    roc_auc: float | None = _board()
    pr_auc: float | None = _board()
    precision_at_k: float | None = _board()
    fp_rate_at_alpha: float | None = _board()
    support_pos: int = _board(0)
    support_neg: int = _board(0)
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    threshold: float | None = None
    k: float | None = None
    k_rows: float | None = _board()
    k_note: str | None = None
    alpha: float | None = None
    n_correct: float | None = None
    fp_rate_correct: float | None = _board()
    n_non_target: float | None = None
    fp_rate_non_target: float | None = _board()

    @property
    def grouped(self) -> bool:
        """Whether the evaluation had the rows' ``row_group`` (the group fields are set)."""
        return self.n_correct is not None or self.n_non_target is not None

    @classmethod
    def leaderboard_fields(cls) -> tuple[str, ...]:
        """The metrics that are leaderboard columns, in field order."""
        return tuple(f.name for f in fields(cls) if f.metadata.get(LEADERBOARD))

    def to_dict(self, *, sort_keys: bool = False) -> dict[str, Any]:
        """The ``metrics`` block of ``<model>.json`` (group keys only when :attr:`grouped`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if self.grouped or f.name not in GROUP_FIELDS}
        return dict(sorted(out.items())) if sort_keys else out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HoldoutMetrics:
        _check_keys(cls, data)
        return cls(**data)

    def with_count_f1(self) -> HoldoutMetrics:
        """F1 from the confusion counts, ``2TP / (2TP + FP + FN)``: defined (0) also when
        nothing is flagged, so a silent service model pulls the macro F1 down instead of
        being left out of it."""
        den = 2 * self.tp + self.fp + self.fn
        return replace(self, f1=2 * self.tp / den) if den > 0 else self


def overall(ground_truth: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The ``overall`` block of a ground-truth report (``{}`` without one)."""
    return (ground_truth or {}).get("overall") or {}


@dataclass(frozen=True)
class HoldoutEvaluation:
    """What :class:`~loglead_lo2.detection.evaluations.Evaluations` adds to a record: the
    report-only 1 % FP cut and the ground-truth report."""

    at_1pct_fp: Mapping[str, Any]
    ground_truth: Mapping[str, Any]

    @property
    def overall(self) -> Mapping[str, Any]:
        return overall(self.ground_truth)


@dataclass(frozen=True)
class ModelRecord:
    """One model (one service part, or the ``macro`` row) of a detection run: the content
    of ``<model>.json``. Fields flagged ``optional`` are left out of the JSON when ``None``
    (``features`` ... ``training`` of part records, ``services`` / ``macro_defined`` of the
    macro row, ``per_service`` / ``skipped_services`` of a per-service ``<model>.json``)."""

    model: str
    service: str = ALL_SERVICES
    settings: Mapping[str, Any] = field(default_factory=dict)
    kind: str | None = None
    description: str | None = None
    split: Mapping[str, Any] = field(default_factory=dict)
    metrics_split: str | None = None
    metrics: HoldoutMetrics | None = None
    k: int | None = None
    alpha: float | None = None
    psi_train_vs_holdout: float | None = None
    threshold: Mapping[str, Any] = field(default_factory=dict)
    timing: Mapping[str, Any] = field(default_factory=dict)
    features: Mapping[str, Any] | None = _optional()
    resource: Mapping[str, Any] | None = _optional()
    guards: tuple[str, ...] | None = _optional()
    notes: tuple[str, ...] | None = _optional()
    training: Mapping[str, Any] | None = _optional()
    services: tuple[str, ...] | None = _optional()
    macro_defined: Mapping[str, Any] | None = _optional()
    at_1pct_fp: Mapping[str, Any] | None = _optional()
    ground_truth: Mapping[str, Any] | None = _optional()
    shap: Mapping[str, Any] | None = _optional()
    per_service: Mapping[str, ModelRecord] | None = _optional()
    skipped_services: Mapping[str, str] | None = _optional()
    len_sep: float | None = _optional()
    bounded: str | None = _optional()
    """How the fit stayed bounded at full size, one line (:meth:`~.budget.FitPlan.text`:
    the sample, the vocabulary cap, the memory estimate), or ``skipped: <reason>`` when the
    memory guard did not fit the model (``skipped`` is then the reason)."""
    skipped: str | None = _optional()

    SEQUENCES: ClassVar[tuple[str, ...]] = ("guards", "notes", "services")

    @classmethod
    def holdout(cls, key: str, *, kind: str, description: str,
                metrics: HoldoutMetrics | None, split: Mapping[str, Any],
                threshold: Mapping[str, Any], timing: Mapping[str, Any],
                features: Mapping[str, Any], k: int | None = None, alpha: float | None = None,
                psi: float | None = None, resource: Mapping[str, Any] | None = None,
                guards: Sequence[str] = (), notes: Sequence[str] = (),
                settings: Mapping[str, Any] | None = None, service: str = ALL_SERVICES,
                training: Mapping[str, Any] | None = None,
                bounded: str | None = None) -> ModelRecord:
        """The record of one model part; ``metrics`` are hold-out figures (or ``None``).

        ``settings`` is :meth:`RunSettings.as_dict`; ``service`` the rows the model saw
        (``all`` or one service). Ground truth is added by :meth:`with_evaluation`.
        """
        return cls(
            model=key, service=service, settings=dict(settings or {}), kind=kind,
            description=description, split={"name": HOLDOUT, **dict(split)},
            metrics_split=HOLDOUT if metrics is not None else None, metrics=metrics, k=k,
            alpha=alpha, psi_train_vs_holdout=psi, threshold=dict(threshold),
            timing=dict(timing), features=dict(features), resource=dict(resource or {}),
            guards=tuple(guards), notes=tuple(notes),
            training=dict(training) if training is not None else None, bounded=bounded)

    @classmethod
    def skipped_by_guard(cls, key: str, *, kind: str, description: str, reason: str,
                         split: Mapping[str, Any], settings: Mapping[str, Any] | None = None,
                         service: str = ALL_SERVICES) -> ModelRecord:
        """The record of a model the memory guard did not fit: no metrics, the reason."""
        return cls(model=key, service=service, settings=dict(settings or {}), kind=kind,
                   description=description, split={"name": HOLDOUT, **dict(split)},
                   notes=(f"[Resource] {key}: skipped ({reason})",),
                   bounded=f"skipped: {reason}", skipped=reason)

    @property
    def gt_overall(self) -> Mapping[str, Any]:
        return overall(self.ground_truth)

    def with_evaluation(self, evaluation: HoldoutEvaluation) -> ModelRecord:
        return replace(self, at_1pct_fp=evaluation.at_1pct_fp,
                       ground_truth=evaluation.ground_truth)

    def with_shap(self, shap: Mapping[str, Any]) -> ModelRecord:
        return replace(self, shap=shap)

    def metadata_metrics(self) -> dict[str, Any]:
        """The ``metrics`` block of a bundle's metadata: the split, then the metrics."""
        return {"split": self.metrics_split,
                **(self.metrics.to_dict() if self.metrics is not None else {})}

    def to_dict(self) -> dict[str, Any]:
        """The JSON content of the record (see the class docstring for left-out keys)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get(OPTIONAL):
                continue
            if f.name == "metrics":
                # a macro row over services without hold-out metrics has always written {}
                value = ({} if self.services else None) if value is None else \
                    value.to_dict(sort_keys=self.service == MACRO)
            elif f.name == "per_service" and value is not None:
                value = {s: r.to_dict() for s, r in value.items()}
            elif f.name in self.SEQUENCES and value is not None:
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRecord:
        """A record from its JSON content (:meth:`to_dict`); unknown keys raise ``ValueError``."""
        _check_keys(cls, data)
        values = dict(data)
        metrics = values.get("metrics")
        values["metrics"] = HoldoutMetrics.from_dict(metrics) if metrics else None
        if values.get("per_service") is not None:
            values["per_service"] = {s: cls.from_dict(r) for s, r in values["per_service"].items()}
        for name in cls.SEQUENCES:
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)


def as_record(record: ModelRecord | Mapping[str, Any]) -> ModelRecord:
    return record if isinstance(record, ModelRecord) else ModelRecord.from_dict(record)


def _mean(values: Iterable[Any]) -> float | None:
    nums = [float(v) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return sum(nums) / len(nums) if nums else None


MACRO_NOTE = ("mean over the services where a metric is defined; F1 per service = "
              "2TP/(2TP+FP+FN) (0 when nothing of a service with anomalies is flagged)")
MACRO_GROUND_TRUTH: tuple[str, ...] = ("recall", "fp_rate_normal", "roc_auc_true",
                                       "recall_at_1pct_fp")


def macro(key: str, records: Sequence[ModelRecord]) -> ModelRecord:
    """The ``macro`` row of a model trained per service: the unweighted mean of every metric
    (and of ground-truth recall / FP rate) over its per-service records, summed timings and
    row counts; ``None`` where no service has a value."""
    first = records[0] if records else ModelRecord(model=key)
    per = [r.metrics.with_count_f1() for r in records if r.metrics is not None]
    names = sorted({name for p in per for name in p.to_dict()})
    values: dict[str, Any] = {m: _mean(getattr(p, m) for p in per) for m in names}
    defined = {m: sum(1 for p in per if _mean([getattr(p, m)]) is not None) for m in names}
    for name in COUNT_FIELDS:
        if name in values:
            values[name] = sum(int(getattr(p, name) or 0) for p in per)
    timing = {t: round(sum(float(r.timing.get(t) or 0.0) for r in records), 4)
              for t in ("fit_seconds", "score_seconds")}
    split = dict(first.split)
    for n in ("train_rows", "holdout_rows"):
        split[n] = sum(int(r.split.get(n) or 0) for r in records)
    gts = [r.gt_overall for r in records]
    ground_truth = None
    if any(gts):
        ground_truth = {"overall": {name: _mean(g.get(name) for g in gts)
                                    for name in MACRO_GROUND_TRUTH}}
    return ModelRecord(
        model=key, service=MACRO, settings=dict(first.settings), kind=first.kind,
        description=first.description, split=split,
        metrics_split=f"{HOLDOUT} (macro average over services)",
        metrics=HoldoutMetrics(**values) if per else None, k=first.k, alpha=first.alpha,
        psi_train_vs_holdout=_mean(r.psi_train_vs_holdout for r in records),
        threshold={"value": None, "source": "one threshold per service model"},
        timing=timing, services=tuple(r.service for r in records),
        macro_defined={"services": len(records), "per_metric": defined, "note": MACRO_NOTE},
        ground_truth=ground_truth)


def combined(key: str, records: Sequence[ModelRecord],
             skipped: Mapping[str, str]) -> ModelRecord:
    """The ``<model>.json`` of a per-service model: the macro record at the top level plus
    every service's record under ``per_service`` and the skipped services with reasons."""
    return replace(macro(key, records), per_service={str(r.service): r for r in records},
                   skipped_services=dict(skipped))


RECORD, METRICS, SETTINGS, SPLIT, GROUND_TRUTH, THRESHOLD, TIMING = (
    "record", "metrics", "settings", "split", "ground_truth", "threshold", "timing")
SOURCES: tuple[str, ...] = (RECORD, METRICS, SETTINGS, SPLIT, GROUND_TRUTH, THRESHOLD, TIMING)


def _column(source: str, key: str | None = None, missing: Any = None) -> Any:
    """A leaderboard column: the field ``key`` (default: the column's name) of the record or
    of its metrics, or the key of one of its blocks (``missing`` when absent)."""
    return field(default=None, metadata={"source": source, "key": key, "missing": missing})


@dataclass(frozen=True)
class LeaderboardRow:
    """One row of ``leaderboard.csv`` (without its ``rank``): the fields are the columns."""

    model: str | None = _column(RECORD)
    service: str | None = _column(RECORD)
    kind: str | None = _column(RECORD)
    label_mode: str | None = _column(SETTINGS)
    split: str | None = _column(SPLIT, "name", missing=HOLDOUT)
    window: str | None = _column(SETTINGS)
    per_service: bool | None = _column(SETTINGS)
    threshold_rule: str | None = _column(SETTINGS, "threshold")
    accuracy: float | None = _column(METRICS)
    precision: float | None = _column(METRICS)
    recall: float | None = _column(METRICS)
    f1: float | None = _column(METRICS)
    roc_auc: float | None = _column(METRICS)
    pr_auc: float | None = _column(METRICS)
    precision_at_k: float | None = _column(METRICS)
    fp_rate_at_alpha: float | None = _column(METRICS)
    support_pos: int | None = _column(METRICS)
    support_neg: int | None = _column(METRICS)
    fp_rate_correct: float | None = _column(METRICS)
    fp_rate_non_target: float | None = _column(METRICS)
    gt_roc_auc: float | None = _column(GROUND_TRUTH, "roc_auc_true")
    gt_recall: float | None = _column(GROUND_TRUTH, "recall")
    gt_recall_1pct_fp: float | None = _column(GROUND_TRUTH, "recall_at_1pct_fp")
    gt_fp_rate: float | None = _column(GROUND_TRUTH, "fp_rate_normal")
    len_sep: float | None = _column(RECORD)
    k: int | None = _column(RECORD)
    k_rows: float | None = _column(METRICS)
    alpha: float | None = _column(RECORD)
    psi: float | None = _column(RECORD, "psi_train_vs_holdout")
    threshold: float | None = _column(THRESHOLD, "value")
    fit_seconds: float | None = _column(TIMING)
    score_seconds: float | None = _column(TIMING)
    train_rows: int | None = _column(SPLIT)
    holdout_rows: int | None = _column(SPLIT)
    bounded: str | None = _column(RECORD)

    @classmethod
    def columns(cls, source: str | None = None) -> tuple[str, ...]:
        """The columns in order (only those taken from ``source`` when given)."""
        return tuple(f.name for f in fields(cls)
                     if source is None or f.metadata["source"] == source)

    @classmethod
    def of(cls, record: ModelRecord) -> LeaderboardRow:
        blocks: dict[str, Mapping[str, Any]] = {
            SETTINGS: record.settings, SPLIT: record.split, GROUND_TRUTH: record.gt_overall,
            THRESHOLD: record.threshold, TIMING: record.timing}
        values: dict[str, Any] = {}
        for f in fields(cls):
            source, key = f.metadata["source"], f.metadata["key"] or f.name
            if source == RECORD:
                values[f.name] = getattr(record, key)
            elif source == METRICS:
                values[f.name] = getattr(record.metrics, key) if record.metrics else None
            else:
                values[f.name] = blocks[source].get(key, f.metadata["missing"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


__all__ = [
    "COUNT_FIELDS",
    "GROUP_FIELDS",
    "HOLDOUT",
    "SOURCES",
    "HoldoutEvaluation",
    "HoldoutMetrics",
    "LeaderboardRow",
    "ModelRecord",
    "as_record",
    "combined",
    "macro",
    "overall",
]
