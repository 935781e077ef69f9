"""Label modes, windowing detection, per-service partitions and the settings every report names.

LO2 labels a sequence (run, test case, service) anomalous whenever its test case is an error
case, but an error case leaves its trace only in the service it targets. Every row gets a
``row_group``: ``correct``, ``target`` (the error case's target service) or ``non-target``
(the other services of an error case: normal traffic). Two label modes, both keeping every row:

* ``target-service`` (default): ``anomaly`` iff the row is ``target``
  (:func:`loglead_lo2.cases.target_service_map`). ``correct`` and ``non-target`` rows are
  normal, in training and in evaluation, so a model is charged for flagging the untouched
  services of an error case, and the false-positive rate is reported on both groups.
* ``test-case`` (the dataset's own labels): ``anomaly = test_case != "correct"``. Most
  anomalous rows then hold no trace of any error; a model scores well by telling a
  ``correct`` recording from an error-case recording (length, traffic mix).

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

import polars as pl

from loglead_lo2.artifacts import LOAD_INFO_FILE
from loglead_lo2.cases import NORMAL_CASE, target_service_map
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

LABEL_MODES: tuple[str, ...] = ("test-case", "target-service")
DEFAULT_LABEL_MODE = "target-service"
ALL_SERVICES = "all"
MACRO = "macro"


ROW_GROUP = "row_group"
"""Column naming what a row is, whatever the label mode: ``correct`` (the normal test case),
``target`` (an error case's rows in the service it targets: where its trace can be) or
``non-target`` (the other services' rows of an error case: normal traffic)."""
ROW_GROUPS: tuple[str, ...] = ("correct", "target", "non-target")


@dataclass
class LabelInfo:
    """What :func:`apply_label_mode` did: rows per group and how they are labelled."""

    mode: str
    rows_in: int
    rows_kept: int
    dropped: int = 0
    groups: dict[str, int] = field(default_factory=dict)
    non_target_by_service: dict[str, int] = field(default_factory=dict)
    anomalous: int = 0
    normal: int = 0
    derived_target_service: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "rows_in": self.rows_in, "rows_kept": self.rows_kept,
                "dropped_rows": self.dropped, "row_groups": dict(self.groups),
                "non_target_rows": self.groups.get("non-target", 0),
                "non_target_label": 1 if self.mode == "test-case" else 0,
                "non_target_by_service": dict(self.non_target_by_service),
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


def row_group_expr() -> pl.Expr:
    """``correct`` / ``target`` / ``non-target`` per row (see :data:`ROW_GROUP`); an error
    case without a known target service is ``non-target`` in every service."""
    is_target = (pl.col("service") == pl.col("target_service")).fill_null(False)
    return (pl.when(pl.col("test_case") == NORMAL_CASE).then(pl.lit("correct"))
            .when(is_target).then(pl.lit("target"))
            .otherwise(pl.lit("non-target")).alias(ROW_GROUP))


def apply_label_mode(df: pl.DataFrame, mode: str = DEFAULT_LABEL_MODE
                     ) -> tuple[pl.DataFrame, LabelInfo]:
    """Label ``df`` for ``mode`` (see the module docstring); every row is kept.

    Adds :data:`ROW_GROUP` and sets ``anomaly`` / ``normal`` (``normal == ~anomaly``):
    ``test-case``: anomalous iff the test case is an error case; ``target-service``:
    anomalous iff the row is ``target`` (``correct`` and ``non-target`` rows are normal).
    Error cases missing from the map (no known target) are named in the notes.
    """
    check_label_mode(mode)
    df, derived = with_target_service(df)
    notes: list[str] = []
    if derived:
        notes.append("[Labels] the input has no target_service column (written by an older "
                     "loader): derived it from loglead_lo2/data/test_cases.csv")
    out = df.with_columns(row_group_expr())
    anomaly = (pl.col(ROW_GROUP) != "correct") if mode == "test-case" else (
        pl.col(ROW_GROUP) == "target")
    out = out.with_columns(anomaly=anomaly, normal=~anomaly)
    unknown = sorted(out.filter((pl.col("test_case") != NORMAL_CASE)
                                & pl.col("target_service").is_null())["test_case"]
                     .unique().to_list())
    if unknown:
        notes.append(f"[Labels] {len(unknown)} error case(s) without a known target service "
                     f"(all their rows are non-target): {', '.join(unknown[:5])}"
                     + (" ..." if len(unknown) > 5 else ""))
    groups = dict(out.group_by(ROW_GROUP).len().iter_rows())
    non_target = out.filter(pl.col(ROW_GROUP) == "non-target")
    info = LabelInfo(mode=mode, rows_in=df.height, rows_kept=out.height,
                     groups={g: int(groups.get(g, 0)) for g in ROW_GROUPS},
                     non_target_by_service=dict(sorted(
                         non_target.group_by("service").len().iter_rows())),
                     derived_target_service=derived, notes=notes)
    info.anomalous = int(out["anomaly"].sum())
    info.normal = out.height - info.anomalous
    return out, info


def label_lines(info: LabelInfo) -> list[str]:
    """Printable ``[Labels]`` lines."""
    lines = list(info.notes)
    g = info.groups
    counts = (f"{g.get('correct', 0):,} correct, {g.get('target', 0):,} target, "
              f"{g.get('non-target', 0):,} non-target rows")
    if info.mode == "test-case":
        lines.append(f"[Labels] mode test-case: a row is anomalous iff its test case is an "
                     f"error case ({counts}; {info.anomalous:,} anomalous, {info.normal:,} "
                     "normal). Non-target rows hold no trace of their error case: prefer "
                     "--label-mode target-service to measure error finding")
    else:
        lines.append(f"[Labels] mode target-service: a row is anomalous iff its error case "
                     f"targets the row's service; the other services' rows of error cases "
                     f"are normal and kept ({counts}; {info.anomalous:,} anomalous, "
                     f"{info.normal:,} normal)")
    return lines


# --- windowing ------------------------------------------------------------------------------


def read_load_info(root: Path, *, strict: bool = False) -> dict[str, Any] | None:
    """``<root>/lo2_load_info.json`` as a dict, or ``None`` when absent (or not a regular
    file). An unreadable file is ignored with a warning, or with ``strict`` a
    :class:`UserError` naming it (for readers that cannot go on without it)."""
    path = Path(root) / LOAD_INFO_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
    except (OSError, ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        if strict:
            raise UserError(f"{path}: not readable JSON ({why}); re-run the loader.") from exc
        log.warning("%s: unreadable (%s), ignored", path, why)
        return None
    return data


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
    threshold: str = "fp-target 0.01"
    """The threshold rule in words (``fp-target 0.01`` or ``model``)."""

    def as_dict(self) -> dict[str, Any]:
        return {"label_mode": self.label_mode, "split": self.split,
                "split_note": self.split_note, "window": self.window.label,
                "windowing": self.window.as_dict(), "per_service": self.per_service,
                "threshold": self.threshold}

    def columns(self) -> dict[str, Any]:
        """The leaderboard setting columns."""
        return {"label_mode": self.label_mode, "split": self.split,
                "window": self.window.label, "per_service": self.per_service,
                "threshold": self.threshold}

    def tag(self) -> str:
        """Short text for report lines."""
        return (f"labels {self.label_mode}, split {self.split} (whole runs), window "
                f"{self.window.label}, per-service {'yes' if self.per_service else 'no'}, "
                f"threshold {self.threshold}")


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


def service_bundle(path: Path, service: str) -> Path:
    """``<dir>/<service>/<name>`` for a bundle path ``<dir>/<name>`` (per-service layout)."""
    path = Path(path)
    return path if service == ALL_SERVICES else path.parent / service / path.name


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
    "LABEL_MODES",
    "LabelInfo",
    "MACRO",
    "RunSettings",
    "ServicePart",
    "WindowInfo",
    "apply_label_mode",
    "check_label_mode",
    "detect_windowing",
    "label_lines",
    "prepare_labels",
    "read_load_info",
    "report_parts",
    "service_bundle",
    "service_parts",
    "with_target_service",
]
