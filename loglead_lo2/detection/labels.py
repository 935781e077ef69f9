"""Label modes, windowing detection, per-service partitions and the settings every report names.

LO2 labels a sequence (run, test case, service) anomalous whenever its test case is an error
case, but an error case leaves its trace only in the service it targets. Two label modes:

* ``test-case`` (default, the dataset's own labels): ``anomaly = test_case != "correct"``.
* ``target-service``: ``anomaly`` = the test case targets the row's service
  (:func:`loglead_lo2.cases.target_service_map`). The other services' rows of error cases
  carry no trace of the error, so they are **dropped before the split** (from training and
  evaluation); :class:`LabelInfo` counts them. ``correct`` rows stay normal.

Files without a ``target_service`` column (written before the loader had it) get it from the
map, and :class:`LabelInfo` says so. With the loader's ``--window`` a row is one time window of
a sequence; labels and metrics are then per window, in either mode (:func:`detect_windowing`).

:class:`RunSettings` is the block every leaderboard row, metrics JSON and ``[Metrics]`` line
carries: label mode, split, windowing and the per-service setting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.cases import NORMAL_CASE, target_service_map
from loglead_lo2.detection.groundtruth import NO_MANIFEST
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

LABEL_MODES: tuple[str, ...] = ("test-case", "target-service")
DEFAULT_LABEL_MODE = "test-case"
LOAD_INFO_FILE = "lo2_load_info.json"
ALL_SERVICES = "all"
MACRO = "macro"


@dataclass
class LabelInfo:
    """What :func:`apply_label_mode` did: rows kept / dropped and why."""

    mode: str
    rows_in: int
    rows_kept: int
    dropped: int
    dropped_by_service: dict[str, int] = field(default_factory=dict)
    anomalous: int = 0
    normal: int = 0
    derived_target_service: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "rows_in": self.rows_in, "rows_kept": self.rows_kept,
                "dropped_non_target_rows": self.dropped,
                "dropped_by_service": dict(self.dropped_by_service),
                "anomalous": self.anomalous, "normal": self.normal,
                "target_service_derived_from_map": self.derived_target_service,
                "notes": list(self.notes)}


def check_label_mode(mode: str) -> str:
    if mode not in LABEL_MODES:
        raise UserError(f"--label-mode must be one of {', '.join(LABEL_MODES)}, got {mode!r}.")
    return mode


def with_target_service(df: pl.DataFrame) -> tuple[pl.DataFrame, bool]:
    """``df`` with a ``target_service`` column; derived from the map when missing (True)."""
    if "target_service" in df.columns:
        return df, False
    mapping = target_service_map()
    out = df.with_columns(
        target_service=pl.col("test_case").replace_strict(mapping, default=None,
                                                          return_dtype=pl.String))
    return out, True


def apply_label_mode(df: pl.DataFrame, mode: str = DEFAULT_LABEL_MODE
                     ) -> tuple[pl.DataFrame, LabelInfo]:
    """Relabel ``df`` for ``mode`` (see the module docstring); returns the rows kept + counts.

    ``target-service``: keeps ``correct`` rows (normal) and the rows of error cases whose
    service is the case's target (anomalous); every other row is dropped. Error cases missing
    from the map (no known target) are dropped too and named in the notes.
    """
    check_label_mode(mode)
    df, derived = with_target_service(df)
    notes: list[str] = []
    if derived:
        notes.append("[Labels] the input has no target_service column (written by an older "
                     "loader): derived it from loglead_lo2/data/test_cases.csv")
    normal = pl.col("test_case") == NORMAL_CASE
    if mode == "test-case":
        out = df.with_columns(normal=normal, anomaly=~normal)
        info = LabelInfo(mode=mode, rows_in=df.height, rows_kept=out.height, dropped=0,
                         derived_target_service=derived, notes=notes)
    else:
        is_target = (pl.col("service") == pl.col("target_service")).fill_null(False)
        keep = normal | is_target
        dropped = df.filter(~keep)
        by_service = dict(sorted(dropped.group_by("service").len().iter_rows()))
        unknown = sorted(dropped.filter(pl.col("target_service").is_null())["test_case"]
                         .unique().to_list())
        if unknown:
            notes.append(f"[Labels] {len(unknown)} error case(s) without a known target "
                         f"service dropped: {', '.join(unknown[:5])}"
                         + (" ..." if len(unknown) > 5 else ""))
        out = df.filter(keep).with_columns(normal=normal, anomaly=~normal)
        info = LabelInfo(mode=mode, rows_in=df.height, rows_kept=out.height,
                         dropped=dropped.height, dropped_by_service=by_service,
                         derived_target_service=derived, notes=notes)
    info.anomalous = int(out["anomaly"].sum())
    info.normal = out.height - info.anomalous
    return out, info


def label_lines(info: LabelInfo) -> list[str]:
    """Printable ``[Labels]`` lines."""
    lines = list(info.notes)
    if info.mode == "test-case":
        lines.append(f"[Labels] mode test-case: a sequence is anomalous iff its test case is an "
                     f"error case ({info.anomalous:,} anomalous, {info.normal:,} normal)")
    else:
        per = ", ".join(f"{s} {n:,}" for s, n in info.dropped_by_service.items()) or "none"
        lines.append(f"[Labels] mode target-service: anomalous iff the error case targets the "
                     f"row's service; dropped {info.dropped:,} of {info.rows_in:,} rows "
                     f"(other services of error cases: {per}); kept {info.rows_kept:,} "
                     f"({info.anomalous:,} anomalous, {info.normal:,} normal)")
    return lines


# --- windowing ------------------------------------------------------------------------------


def read_load_info(root: Path) -> dict[str, Any] | None:
    """``<root>/lo2_load_info.json`` as a dict, or ``None`` when absent / unreadable."""
    path = Path(root) / LOAD_INFO_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("%s: unreadable, ignored", path)
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class WindowInfo:
    """Whether rows are time windows of sequences, the window size and where that came from."""

    windowed: bool
    seconds: float | None = None
    source: str = "no window column"

    @property
    def label(self) -> str:
        if not self.windowed:
            return "none"
        return f"{self.seconds:g}s" if self.seconds else "yes"

    def as_dict(self) -> dict[str, Any]:
        return {"windowed": self.windowed, "window_seconds": self.seconds,
                "label": self.label, "source": self.source}


def detect_windowing(df: pl.DataFrame, root: Path | None = None,
                     load_info: dict[str, Any] | None = None) -> WindowInfo:
    """Windowing of ``df``: a non-null ``window`` value means windowed rows; the size comes
    from ``lo2_load_info.json`` (``window_seconds``) when available."""
    info = load_info if load_info is not None else (read_load_info(root) if root else None)
    seconds = None
    if info and info.get("window_seconds") is not None:
        seconds = float(info["window_seconds"])
    has_col = "window" in df.columns
    windowed_col = has_col and df.height > 0 and df["window"].null_count() < df.height
    if windowed_col:
        src = "window column" + (f" + {LOAD_INFO_FILE}" if seconds else "")
        return WindowInfo(True, seconds, src)
    if info and info.get("windowed"):
        return WindowInfo(True, seconds, LOAD_INFO_FILE)
    return WindowInfo(False, None, "window column empty" if has_col else "no window column")


def prepare_labels(df: pl.DataFrame, mode: str, root: Path | None,
                   say: Callable[[str], None], what: str = "labels and metrics"
                   ) -> tuple[pl.DataFrame, LabelInfo, WindowInfo]:
    """Apply ``mode`` (before any split) and detect windowing; prints ``[Labels]`` and
    ``[Window]`` lines. ``what`` names what is per window / sequence in the message."""
    df, info = apply_label_mode(df, mode)
    for line in label_lines(info):
        say(line)
    window = detect_windowing(df, root)
    say(f"[Window] {'per-window rows of ' + window.label if window.windowed else 'none'}"
        f" ({window.source}): {what} are per {'window' if window.windowed else 'sequence'}")
    return df, info, window


# --- settings named by every report ---------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """Label mode, split, windowing and per-service setting of one run."""

    label_mode: str = DEFAULT_LABEL_MODE
    split: str = "holdout"
    split_note: str | None = None
    window: WindowInfo = field(default_factory=lambda: WindowInfo(False))
    per_service: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"label_mode": self.label_mode, "split": self.split,
                "split_note": self.split_note, "window": self.window.label,
                "windowing": self.window.as_dict(), "per_service": self.per_service}

    def columns(self) -> dict[str, Any]:
        """The leaderboard columns (``label_mode``, ``split``, ``window``, ``per_service``)."""
        return {"label_mode": self.label_mode, "split": self.split,
                "window": self.window.label, "per_service": self.per_service}

    def tag(self) -> str:
        """Short text for report lines."""
        return (f"labels {self.label_mode}, split {self.split} (whole runs), window "
                f"{self.window.label}, per-service {'yes' if self.per_service else 'no'}")


# --- per-service partitions -----------------------------------------------------------------


@dataclass
class ServicePart:
    """The rows of one service (or of all, ``service == "all"``) on each side of the split."""

    service: str
    rows: pl.DataFrame
    train: pl.DataFrame
    hold: pl.DataFrame
    skip: str | None = None


def _classes(df: pl.DataFrame) -> tuple[int, int]:
    anomalous = int(df["anomaly"].sum()) if df.height else 0
    return df.height - anomalous, anomalous


def service_parts(df: pl.DataFrame, train_runs: list[str], test_runs: list[str],
                  per_service: bool, min_rows: int = 2) -> Iterator[ServicePart]:
    """One :class:`ServicePart` for all rows, or one per service present (sorted) with the
    SAME run partition. A service without normal and anomalous rows on both sides (or with
    fewer than ``min_rows`` rows on a side) gets ``skip`` = the reason."""
    services = (sorted(df["service"].unique().to_list()) if per_service else [ALL_SERVICES])
    for service in services:
        rows = df if service == ALL_SERVICES else df.filter(pl.col("service") == service)
        train = rows.filter(pl.col("run").is_in(train_runs))
        hold = rows.filter(pl.col("run").is_in(test_runs))
        problems = []
        for side, part in (("training", train), ("hold-out", hold)):
            n, a = _classes(part)
            if part.height < min_rows:
                problems.append(f"{part.height} {side} row(s)")
            else:
                if n == 0:
                    problems.append(f"no normal {side} rows")
                if a == 0:
                    problems.append(f"no anomalous {side} rows")
        yield ServicePart(service, rows, train, hold, "; ".join(problems) or None)


# --- ground truth (generated data with a manifest) ------------------------------------------

GT_ABSENT = NO_MANIFEST  # one wording for every report (see groundtruth.py)


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

    def report(self, hold: pl.DataFrame, flagged: Any) -> Any:
        """:func:`~loglead_lo2.detection.groundtruth.ground_truth_recall` of ``flagged``
        (aligned with ``hold``)."""
        from loglead_lo2.detection.groundtruth import ground_truth_recall

        return ground_truth_recall(self.manifest, hold, flagged, skip_lines=self.skip_lines,
                                   head=self.head, files=self.files)

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
                        "lo2_load_info.json", files_path)
    return GroundTruthInput(path, load_manifest(path), skip, head, files, files_path,
                            has_info=info is not None)


def service_bundle(path: Path, service: str) -> Path:
    """``<dir>/<service>/<name>`` for a bundle path ``<dir>/<name>`` (per-service layout)."""
    path = Path(path)
    return path if service == ALL_SERVICES else path.parent / service / path.name


@dataclass
class Evaluations:
    """Held-out predictions of every (model, service), for per-case recall and ground truth."""

    truth: GroundTruthInput | None = None
    say: Callable[[str], None] = lambda _m: None
    preds: dict[str, list[pl.DataFrame]] = field(default_factory=dict)
    gt_tables: dict[str, dict[str, pl.DataFrame]] = field(default_factory=dict)

    def __call__(self, key: str, service: str, hold: pl.DataFrame, scores: np.ndarray,
                 threshold: float, record: dict[str, Any]) -> None:
        pred = (np.asarray(scores) >= threshold).astype(np.int8)
        cols = [c for c in ("test_case", "service", "target_service", "anomaly")
                if c in hold.columns]
        self.preds.setdefault(key, []).append(
            hold.select(cols).with_columns(pred=pl.Series(pred)))
        if self.truth is None:
            record["ground_truth"] = {"overall": None, "note": GT_ABSENT}
            return
        try:
            report = self.truth.report(hold, pred)
        except ValueError as exc:  # e.g. an old file without start_time / end_time
            record["ground_truth"] = {"overall": None, "note": f"no ground truth: {exc}"}
            self.say(f"[GroundTruth] {key}: not computed ({exc})")
            return
        record["ground_truth"] = report.to_dict()
        self.gt_tables.setdefault(key, {})[service] = report.per_case
        self.say(report.summary_line(key if service == ALL_SERVICES else f"{key}@{service}"))

    def recall_tables(self) -> dict[str, tuple[pl.DataFrame, pl.DataFrame]]:
        from loglead_lo2.detection.evaluate import per_test_case_recall

        out = {}
        for key, parts in self.preds.items():
            errors = pl.concat(parts, how="diagonal_relaxed").filter(pl.col("anomaly"))
            target = errors.filter(pl.col("service") == pl.col("target_service"))
            out[key] = (per_test_case_recall(errors, errors["pred"].to_numpy()),
                        per_test_case_recall(target, target["pred"].to_numpy()))
        return out


def report_parts(parts: list[ServicePart], per_service: bool, say: Callable[[str], None],
                 notes: list[str], skipped: dict[str, str]) -> None:
    """Print (and record in ``notes`` / ``skipped``) what each service part will do."""
    if not per_service:
        return
    for p in parts:
        if p.skip:
            msg = f"[Service] {p.service}: skipped ({p.skip})"
            skipped[p.service] = p.skip
            notes.append(msg)
        else:
            msg = (f"[Service] {p.service}: {p.train.height:,} training / {p.hold.height:,} "
                   f"hold-out rows ({int(p.hold['anomaly'].sum())} anomalous); own models")
        say(msg)
    if all(p.skip for p in parts):
        say("[Service] no service has normal and anomalous rows on both sides: nothing to "
            "train per service")



__all__ = [
    "ALL_SERVICES",
    "DEFAULT_LABEL_MODE",
    "Evaluations",
    "GT_ABSENT",
    "GroundTruthInput",
    "LABEL_MODES",
    "LabelInfo",
    "MACRO",
    "RunSettings",
    "ServicePart",
    "WindowInfo",
    "apply_label_mode",
    "check_label_mode",
    "detect_windowing",
    "ground_truth_input",
    "label_lines",
    "prepare_labels",
    "read_load_info",
    "report_parts",
    "service_bundle",
    "service_parts",
    "with_target_service",
]
