"""Evaluation against ground truth and per error case, shared by every model of a run.

:class:`GroundTruthInput` is the generator's manifest with the loader's trimming (generated
data only); :class:`Evaluations` collects, for every (model, service) part, the held-out
scores at the model's threshold and:

* ground-truth recall per (run, error case, target service) unit at the threshold and at
  1 % false positives on the hold-out normal rows (a threshold-free "could it find it" figure);
* ROC-AUC / PR-AUC against the *true* row labels (a row holds an injected event or not);
* the per-signature table (error case x target service: injected events, recall at the
  threshold and at 1 % FP), also without a manifest from the target-service rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.artifacts import LOAD_INFO_FILE
from loglead_lo2.detection.groundtruth import NO_MANIFEST
from loglead_lo2.detection.labels import ALL_SERVICES, ROW_GROUP, read_load_info
from loglead_lo2.detection.records import HoldoutEvaluation
from loglead_lo2.detection.thresholds import fp_rate_threshold
from loglead_lo2.metrics_utils import ranking_aucs

log = logging.getLogger(__name__)

GT_ABSENT = NO_MANIFEST  # one wording for every report (see groundtruth.py)
REPORT_FP = 0.01
"""False-positive rate of the report-only cut behind "recall at 1 % FP" (hold-out normals)."""
SIGNATURE_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(), "part": pl.String(), "test_case": pl.String(),
    "target_service": pl.String(), "rows": pl.Int64(), "units_with_trace": pl.Int64(),
    "injected_events": pl.Int64(), "recall_at_threshold": pl.Float64(),
    "recall_at_1pct_fp": pl.Float64(), "basis": pl.String(),
}


@dataclass
class GroundTruthInput:
    """The generator manifest and the loader's trimming, ready to score predictions.

    ``skip_lines``: the loader's ``--init-lines-to-skip`` (``None``: start-up block rule);
    ``files``: its per-file record (``run, test_case, service, trimmed_lines``), which says
    what was trimmed from each file and which files were read; ``files_path``: where it was
    read from; ``has_info``: whether ``lo2_load_info.json`` was found.
    """

    path: Path
    manifest: pl.DataFrame
    skip_lines: int | None = 0
    head: int | None = None
    files: pl.DataFrame | None = None
    files_path: Path | None = None
    has_info: bool = True

    @property
    def trim(self) -> str:
        """How the loader trimmed, in words."""
        if not self.has_info:
            return "no lo2_load_info.json: nothing assumed trimmed"
        if self.skip_lines is None:
            if self.files is None:
                return ("loader trimmed each file's start-up block, but its per-file record "
                        f"{self.files_path or 'lo2_files.parquet'} is missing: no ground "
                        "truth (re-run the loader)")
            lines = int(self.files["trimmed_lines"].sum())
            trimmed = int((self.files["trimmed_lines"] > 0).sum())
            return (f"loader trimmed each file's start-up block ({lines:,} lines in "
                    f"{trimmed:,} files, per-file record {self.files_path})")
        return f"loader skipped {self.skip_lines} line(s)/file"

    @property
    def line(self) -> str:
        injected = int((self.manifest["kind"] == "injected").sum())
        return (f"[GroundTruth] manifest {self.path}: {injected:,} injected events; "
                f"{self.trim}" + (f", head {self.head}" if self.head else "")
                + "; trimmed injected events count as misses; recall per (run, error case, "
                "target service) on the hold-out rows")

    def report(self, hold: pl.DataFrame, flagged: Any, place: Any = None) -> Any:
        """:func:`~loglead_lo2.detection.groundtruth.ground_truth_recall` of ``flagged``
        (aligned with ``hold``); ``place``: ``hold``'s :meth:`placement`, if already made."""
        from loglead_lo2.detection.groundtruth import ground_truth_recall

        return ground_truth_recall(self.manifest, hold, flagged, skip_lines=self.skip_lines,
                                   head=self.head, files=self.files, place=place)

    def placement(self, hold: pl.DataFrame) -> Any:
        """:func:`~loglead_lo2.detection.groundtruth.placement` of the injected events in
        ``hold``'s rows."""
        from loglead_lo2.detection.groundtruth import placement

        return placement(self.manifest, hold, skip_lines=self.skip_lines, head=self.head,
                         files=self.files)

    def describe(self) -> dict[str, Any]:
        return {"manifest": str(self.path), "skip_lines": self.skip_lines, "head": self.head,
                "trim": self.trim,
                "per_file_record": (str(self.files_path) if self.files is not None
                                    else None),
                "injected_events": int((self.manifest["kind"] == "injected").sum())}


def ground_truth_input(root: Path, explicit: Path | None = None) -> GroundTruthInput | None:
    """The manifest named by ``--manifest`` or by ``<root>/lo2_load_info.json`` (``None``
    without one: real data); trimming settings and the per-file trim record
    (``lo2_files.parquet``) from the load info."""
    from loglead_lo2.detection.groundtruth import (
        find_manifest,
        load_manifest,
        load_trim_record,
        trim_record_path,
        trim_settings,
    )

    path = find_manifest(Path(root), explicit)
    if path is None:
        return None
    info = read_load_info(Path(root))
    skip, head = trim_settings(info)
    files_path = trim_record_path(Path(root), info)
    files = None
    if files_path is not None:
        if files_path.is_file():
            files = load_trim_record(files_path)
        else:
            log.warning("%s names the per-file trim record %s, which does not exist",
                        LOAD_INFO_FILE, files_path)
    return GroundTruthInput(path, load_manifest(path), skip, head, files, files_path,
                            has_info=info is not None)


@dataclass
class Evaluations:
    """Held-out predictions of every (model, service) part: per-case recall, ground truth,
    true-label ranking and the per-signature table (see the module docstring)."""

    truth: GroundTruthInput | None = None
    say: Callable[[str], None] = lambda _m: None
    preds: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    gt_tables: dict[str, dict[str, pl.DataFrame]] = field(default_factory=dict)
    signatures: list[pl.DataFrame] = field(default_factory=list)
    _placed: dict[int, tuple[pl.DataFrame, Any]] = field(default_factory=dict, repr=False)

    def _placement(self, rows: pl.DataFrame) -> Any:
        """The truth's placement of ``rows``, made once per frame: every model of a part is
        evaluated on the same hold-out frame (the frame is kept, so its id stays unique)."""
        assert self.truth is not None
        hit = self._placed.get(id(rows))
        if hit is None or hit[0] is not rows:
            hit = (rows, self.truth.placement(rows))
            self._placed[id(rows)] = hit
        return hit[1]

    def row_truth(self, rows: pl.DataFrame) -> np.ndarray | None:
        """True labels of ``rows`` (holds an injected event), ``None`` without a manifest or
        when the rows cannot be placed (e.g. no start/end times)."""
        if self.truth is None:
            return None
        try:
            return self._placement(rows).row_truth()
        except ValueError:
            return None

    def __call__(self, key: str, service: str, hold: pl.DataFrame, scores: np.ndarray,
                 threshold: float) -> HoldoutEvaluation:
        """Collect the part's flags; returns what its record gets: the report-only 1 % FP
        cut and the ground-truth report (``overall`` is ``None`` without one)."""
        s = np.asarray(scores, dtype=np.float64)
        pred = (s >= threshold).astype(np.int8)
        normal = hold["normal"].to_numpy() if "normal" in hold.columns else np.zeros(0, bool)
        cut = fp_rate_threshold(s[normal], REPORT_FP) if normal.any() else None
        pred1 = (s >= cut).astype(np.int8) if cut is not None else np.zeros_like(pred)
        at_1pct_fp = {
            "threshold": cut, "normal_rows": int(normal.sum()),
            "note": "report-only cut flagging <= 1 % of the hold-out normal rows (not "
                    "deployable: it is set on hold-out rows); recall there says whether the "
                    "model ranks the errors above normal traffic"}
        cols = [c for c in ("test_case", "service", "target_service", "anomaly", ROW_GROUP)
                if c in hold.columns]
        self.preds.setdefault(key, []).append(
            hold.select(cols).with_columns(pred=pl.Series(pred), pred1=pl.Series(pred1)))
        part = key if service == ALL_SERVICES else f"{key}@{service}"
        if self.truth is None:
            self.signatures.append(_target_signatures(key, service, hold, pred, pred1))
            return HoldoutEvaluation(at_1pct_fp, {"overall": None, "note": GT_ABSENT})
        try:
            place = self._placement(hold)
            report = self.truth.report(hold, pred, place)
            report1 = self.truth.report(hold, pred1, place)
            y_true = place.row_truth()
        except ValueError as exc:  # e.g. an old file without start_time / end_time
            self.say(f"[GroundTruth] {part}: not computed ({exc})")
            self.signatures.append(_target_signatures(key, service, hold, pred, pred1))
            return HoldoutEvaluation(at_1pct_fp,
                                     {"overall": None, "note": f"no ground truth: {exc}"})
        gt = report.to_dict()
        roc, pr = ranking_aucs(y_true, s)
        gt["overall"].update(
            roc_auc_true=roc, pr_auc_true=pr, true_rows=int(y_true.sum()),
            recall_at_1pct_fp=report1.overall.get("recall"),
            detected_at_1pct_fp=report1.overall.get("detected"))
        self.gt_tables.setdefault(key, {})[service] = report.per_case
        self.signatures.append(_truth_signatures(key, service, report.per_case,
                                                 report1.per_case))
        self.say(report.summary_line(part)
                 + (f"; true-label ROC-AUC {roc:.3f}" if roc is not None else "")
                 + (f"; recall at 1% FP {report1.overall['recall']:.3f}"
                    if report1.overall.get("recall") is not None else ""))
        return HoldoutEvaluation(at_1pct_fp, gt)

    def recall_tables(self) -> dict[str, tuple[pl.DataFrame, pl.DataFrame]]:
        from loglead_lo2.detection.evaluate import per_test_case_recall

        out = {}
        for key, parts in self.preds.items():
            errors = pl.concat(parts, how="diagonal_relaxed").filter(
                pl.col("test_case") != "correct")
            target = errors.filter(pl.col("service") == pl.col("target_service"))
            out[key] = (per_test_case_recall(errors.with_columns(anomaly=pl.lit(True)),
                                             errors["pred"].to_numpy()),
                        per_test_case_recall(target.with_columns(anomaly=pl.lit(True)),
                                             target["pred"].to_numpy()))
        return out

    def signature_table(self) -> pl.DataFrame:
        """Long table: one row per (model, part, error case) with recall at the model's
        threshold and at 1 % FP (see :data:`SIGNATURE_SCHEMA`)."""
        if not self.signatures:
            return pl.DataFrame(schema=SIGNATURE_SCHEMA)
        return (pl.concat(self.signatures, how="vertical_relaxed").cast(pl.Schema(SIGNATURE_SCHEMA))
                .sort("model", "part", "test_case"))


def _truth_signatures(key: str, service: str, per_case: pl.DataFrame,
                      per_case_1: pl.DataFrame) -> pl.DataFrame:
    at1 = per_case_1.select("test_case", pl.col("recall").alias("recall_at_1pct_fp"))
    return per_case.join(at1, on="test_case", how="left").select(
        pl.lit(key).alias("model"), pl.lit(service).alias("part"), "test_case",
        "target_service", pl.col("units").alias("rows"), "units_with_trace",
        "injected_events", pl.col("recall").alias("recall_at_threshold"),
        "recall_at_1pct_fp", pl.lit("ground truth (units with an injected event)")
        .alias("basis"))


def _target_signatures(key: str, service: str, hold: pl.DataFrame, pred: np.ndarray,
                       pred1: np.ndarray) -> pl.DataFrame:
    rows = hold.select("test_case", "service", "target_service").with_columns(
        pred=pl.Series(pred), pred1=pl.Series(pred1))
    target = rows.filter(pl.col("service") == pl.col("target_service"))
    return target.group_by("test_case", "target_service").agg(
        pl.len().cast(pl.Int64).alias("rows"),
        pl.col("pred").mean().alias("recall_at_threshold"),
        pl.col("pred1").mean().alias("recall_at_1pct_fp"),
    ).select(pl.lit(key).alias("model"), pl.lit(service).alias("part"), "test_case",
             "target_service", "rows", pl.lit(None, pl.Int64).alias("units_with_trace"),
             pl.lit(None, pl.Int64).alias("injected_events"), "recall_at_threshold",
             "recall_at_1pct_fp", pl.lit("target-service rows (no manifest)").alias("basis"))


__all__ = ["GT_ABSENT", "REPORT_FP", "Evaluations", "GroundTruthInput", "ground_truth_input"]
