"""Ground-truth recall on generated data: did the model flag where errors were injected?

The sample generator (``lo2-sample``) writes ``lo2_manifest.csv`` beside the logs: one row
per error event it wrote, ``run, test_case, service, line_no, n_lines, timestamp, kind,
mechanism, code`` (``kind`` is ``injected`` for the error case's own events and
``background`` for the ordinary errors every case contains). Only injected events are
ground truth.

The unit of evaluation is a (run, error case, target service): the one log where the case
can leave a trace. Units are the (run, error case) pairs of the evaluated runs whose target
service is evaluated and whose target log was loaded: its sequence is among the evaluated
rows, or the loader's per-file record (``lo2_files.parquet``) lists the file (so a log the
loader trimmed whole is still a unit). Every injected event of the raw file counts: a unit
*has a trace* when the manifest holds at least one injected event for it, whether or not the
loader trimmed it. An injected event is *trimmed* when its first line lies in the prefix the
loader removed from its file (``line_no <= trimmed_lines`` of the per-file record, or
``<= init_lines_to_skip`` for a load without one); a trimmed event is in no sequence, so it is
a miss. ``--head`` keeps its meaning: a quick look at the first lines only, so events past
``trimmed_lines + head`` are outside the loaded part and not counted at all. Every other event
is *placed* in the sequence (window) of its (run, test case, service) whose
``[start_time, end_time]`` holds its timestamp. A unit is *detected* when any sequence holding
one of its placed events is flagged at the model's threshold. Ground-truth recall = detected /
units with a trace; units of cases whose mechanism leaves no trace are counted and listed but
are not in the denominator. The false-positive rate is the flagged share of the ``correct``
(normal) sequences among the evaluated rows. ``flag_rate_no_trace`` is the flagged share of
the error-case rows that hold no placed injected event (other services, windows without the
error, cases without a trace): near 0 for a model that finds the error events, near 1 for one
that only learnt "this is not a ``correct`` recording".

Everything is polars joins over the manifest and the sequence table; nothing loops over
rows.

The detection phase calls it through
:func:`loglead_lo2.detection.labels.ground_truth_input` (manifest + the loader's trimming:
options and per-file record named by ``lo2_load_info.json``)
and stores :meth:`GroundTruthReport.to_dict` under ``"ground_truth"`` in every model record,
which ``benchmarks/eval_matrix.py`` reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.artifacts import FILES_FILE, LOAD_INFO_FILE, MANIFEST_FILE
from loglead_lo2.cases import NORMAL_CASE, target_service_map
from loglead_lo2.detection.labels import read_load_info
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

INFO_FILE = LOAD_INFO_FILE
OLD_DEFAULT_SKIP = 100
"""What loaders before the start-up block rule trimmed when their info names no option."""
FILE_KEYS = ("run", "test_case", "service")
INJECTED = "injected"
KINDS = ("injected", "background")
MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "run": pl.String(),
    "test_case": pl.String(),
    "service": pl.String(),
    "line_no": pl.Int64(),
    "n_lines": pl.Int64(),
    "timestamp": pl.String(),
    "kind": pl.String(),
    "mechanism": pl.String(),
    "code": pl.String(),
}
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.3f"
SEQUENCE_COLUMNS = ("run", "test_case", "service", "start_time", "end_time")
PER_CASE_SCHEMA: dict[str, pl.DataType] = {
    "test_case": pl.String(),
    "target_service": pl.String(),
    "units": pl.Int64(),
    "units_with_trace": pl.Int64(),
    "detected": pl.Int64(),
    "recall": pl.Float64(),
    "injected_events": pl.Int64(),
    "surviving_events": pl.Int64(),
    "trimmed_events": pl.Int64(),
}
NO_MANIFEST = ("no ground truth (no manifest): the input did not come from lo2-sample or its "
               "lo2_manifest.csv is not beside the logs; only the test-case tables are "
               "reported (pass --manifest PATH for a generated sample)")
NOTE = ("ground-truth recall: share of (run, error case, target service) units with >= 1 "
        "injected event in the raw log whose holding sequence is flagged at the model's "
        "threshold; injected events the loader trimmed count, as misses; units of cases "
        "that leave no trace are counted but not in the denominator; fp_rate_normal: flagged "
        "share of normal (correct) sequences; flag_rate_no_trace: flagged share of "
        "error-case sequences holding no injected event")


@dataclass
class GroundTruthReport:
    """Ground-truth recall per error case and overall, for one model at its threshold.

    ``per_case`` columns: ``test_case``, ``target_service``, ``units`` ((run, case) pairs whose
    target-service log was loaded, see the module docstring), ``units_with_trace`` (of those,
    with an injected event in the manifest, trimmed or not), ``detected``, ``recall``
    (``detected / units_with_trace``, null without a trace), ``injected_events`` (in the
    manifest for those units, within ``--head``), ``surviving_events`` (placed in an evaluated
    sequence) and ``trimmed_events`` (removed by the loader's trimming: misses).
    """

    per_case: pl.DataFrame
    overall: dict[str, Any] = field(default_factory=dict)
    note: str = NOTE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"overall": {...}, "per_case": [{...}, ...], "note": ...}``."""
        return {"overall": dict(self.overall), "per_case": self.per_case.to_dicts(),
                "note": self.note}

    def summary_line(self, name: str) -> str:
        """One printable line, e.g. for ``[GroundTruth] <model>: ...``."""
        o = self.overall
        recall = "n/a" if o.get("recall") is None else f"{o['recall']:.4f}"
        fp = "n/a" if o.get("fp_rate_normal") is None else f"{o['fp_rate_normal']:.4f}"
        return (f"[GroundTruth] {name}: recall {recall} ({o.get('detected', 0)}/"
                f"{o.get('with_trace', 0)} units with a trace, {o.get('units', 0)} units), "
                f"fp_rate_normal {fp} ({o.get('n_normal', 0)} normal sequences)")


# --- locating and reading the manifest -----------------------------------------------------


def trim_settings(info: dict[str, Any] | None) -> tuple[int | None, int | None]:
    """``(init_lines_to_skip, head)`` the loader used.

    ``init_lines_to_skip`` is ``None`` for the start-up block rule (what was trimmed is in the
    per-file record, :func:`load_trim_record`), ``N`` for the first-N-lines rule, 100 for an
    info without the option (loaders before the start-up block rule trimmed 100 lines by
    default) and 0 without any load info (nothing known to be trimmed).
    """
    if info is None:
        return 0, None
    options = info.get("options") or {}
    skip = options.get("init_lines_to_skip", OLD_DEFAULT_SKIP)
    head = options.get("head")
    return (None if skip is None else int(skip)), (None if head in (None, 0) else int(head))


def trim_record_path(result_root: Path, info: dict[str, Any] | None) -> Path | None:
    """Where the loader's per-file record is (``None`` when the info names none)."""
    name = ((info or {}).get("trim") or {}).get("per_file")
    return Path(result_root) / str(name) if name else None


def load_trim_record(path: Path) -> pl.DataFrame:
    """``run, test_case, service, trimmed_lines`` of every file the loader read.

    Raises :class:`UserError` naming the file when it cannot be read or lacks a column.
    """
    path = Path(path)
    columns = [*FILE_KEYS, "trimmed_lines"]
    try:
        df = pl.read_parquet(path, columns=columns)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UserError(f"{path}: not a readable per-file trim record "
                        f"({str(exc).splitlines()[0]}); re-run the loader.") from exc
    return df.with_columns(pl.col("trimmed_lines").cast(pl.Int64))


def find_manifest(result_root: Path, explicit: Path | None = None) -> Path | None:
    """The generator manifest for the loader output in ``result_root``, or ``None``.

    ``explicit`` (``--manifest``) wins and must exist (:class:`UserError` otherwise). Else the
    ``"manifest"`` entry of ``<result_root>/lo2_load_info.json`` is used when that file still
    exists, then ``lo2_manifest.csv`` in the info's ``"root"`` (the LO2 tree).
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise UserError(f"--manifest {path}: no such file (expected the {MANIFEST_FILE} "
                            "that lo2-sample wrote beside the logs).")
        return path
    info = read_load_info(Path(result_root), strict=True)
    if info is None:
        return None
    candidates = []
    if info.get("manifest"):
        candidates.append(Path(str(info["manifest"])))
    if info.get("root"):
        candidates.append(Path(str(info["root"])) / MANIFEST_FILE)
    for path in candidates:
        if path.is_file():
            return path
    if candidates and info.get("manifest"):
        log.warning("%s names manifest %s, which no longer exists", INFO_FILE, candidates[0])
    return None


def no_ground_truth_message() -> str:
    """What reports say when there is no manifest (real LO2 data)."""
    return NO_MANIFEST


def load_manifest(path: Path) -> pl.DataFrame:
    """Read and validate ``lo2_manifest.csv``; ``timestamp`` becomes ``Datetime("ms")``.

    Raises :class:`UserError` naming the file when it is unreadable, lacks a column, has a
    non-integer or non-positive ``line_no``, an unparsable timestamp or an unknown ``kind``.
    """
    path = Path(path)
    try:
        head = pl.read_csv(path, n_rows=0, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UserError(f"{path}: not a readable manifest CSV ({exc}).") from exc
    missing = [c for c in MANIFEST_SCHEMA if c not in head.columns]
    if missing:
        raise UserError(f"{path}: manifest lacks column(s) {', '.join(missing)} (expected "
                        f"{','.join(MANIFEST_SCHEMA)}, as written by lo2-sample).")
    try:
        df = pl.read_csv(path, schema_overrides=MANIFEST_SCHEMA, columns=list(MANIFEST_SCHEMA))
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UserError(f"{path}: malformed manifest ({str(exc).splitlines()[0]}).") from exc
    df = df.select(list(MANIFEST_SCHEMA))
    parsed = df["timestamp"].str.strptime(pl.Datetime("ms"), TIMESTAMP_FORMAT, strict=False)
    bad_ts = df.filter(parsed.is_null())
    if bad_ts.height:
        raise UserError(f"{path}: {bad_ts.height} row(s) with a bad timestamp (first: "
                        f"{bad_ts['timestamp'][0]!r}; expected YYYY-MM-DDTHH:MM:SS.mmm).")
    bad = df.filter(
        pl.any_horizontal(pl.col("run", "test_case", "service", "kind").is_null())
        | pl.col("line_no").is_null() | (pl.col("line_no") < 1)
        | ~pl.col("kind").is_in(KINDS)
    )
    if bad.height:
        raise UserError(f"{path}: {bad.height} malformed row(s) (first: "
                        f"{bad.row(0, named=True)}); need run/test_case/service, line_no >= 1 "
                        f"and kind in {'/'.join(KINDS)}.")
    return df.with_columns(timestamp=parsed)


# --- the recall -----------------------------------------------------------------------------


def _naive_ms(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        expr = expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return expr.cast(pl.Datetime("ms"))


def _targets() -> pl.DataFrame:
    services = target_service_map()
    return pl.DataFrame({"test_case": sorted(services),
                         "target_service": [services[c] for c in sorted(services)]})


def ground_truth_recall(manifest: pl.DataFrame, sequences: pl.DataFrame, flagged: np.ndarray,
                        *, skip_lines: int | None = 0, head: int | None = None,
                        files: pl.DataFrame | None = None,
                        place: Placement | None = None) -> GroundTruthReport:
    """Ground-truth recall and normal FP rate of ``flagged`` over ``sequences``.

    ``manifest``: :func:`load_manifest` output. ``sequences``: the evaluated (held-out) rows
    with ``run, test_case, service, start_time, end_time`` (one row per sequence or window).
    ``flagged``: one bool per row of ``sequences`` at the chosen threshold. ``files``: the
    loader's per-file record (``run, test_case, service, trimmed_lines``); without it every
    file is taken to have lost its first ``skip_lines`` lines (the loader's
    ``--init-lines-to-skip``; ``None``, the start-up block rule, needs ``files``). ``head``:
    the loader's ``--head``. ``place``: :func:`placement` of these arguments, when the caller
    already has it (several models scored on the same rows).
    """
    flags = np.asarray(flagged).astype(bool).reshape(-1)
    if flags.shape[0] != sequences.height:
        raise ValueError(f"flagged has {flags.shape[0]} values for {sequences.height} sequences")
    if place is None:
        place = placement(manifest, sequences, skip_lines=skip_lines, head=head, files=files)
    seqs = place.rows.with_columns(flagged=pl.Series(flags, dtype=pl.Boolean))
    units, injected, beyond_head = place.units, place.injected, place.beyond_head
    placed = place.placed.join(seqs.select("row", "flagged"), on="row")
    unplaced = place.unplaced
    if unplaced.height:
        log.warning("%d untrimmed injected event(s) fall in no evaluated window of their "
                    "sequence (first: %s)", unplaced.height, unplaced.row(0, named=True))
    per_unit = (placed.group_by("run", "test_case")
                .agg(pl.col("event").n_unique().alias("surviving"),
                     pl.col("flagged").any().alias("hit")))
    counts = (injected.group_by("run", "test_case")
              .agg(pl.len().alias("injected"), pl.col("trimmed").sum().alias("trimmed")))
    unit_table = (units.join(per_unit, on=["run", "test_case"], how="left")
                  .join(counts, on=["run", "test_case"], how="left")
                  .with_columns(pl.col("surviving", "injected", "trimmed").fill_null(0),
                                pl.col("hit").fill_null(False)))
    per_case = (unit_table.group_by("test_case", "target_service")
                .agg(pl.len().cast(pl.Int64).alias("units"),
                     (pl.col("injected") > 0).sum().cast(pl.Int64).alias("units_with_trace"),
                     ((pl.col("injected") > 0) & pl.col("hit")).sum().cast(pl.Int64)
                     .alias("detected"),
                     pl.col("injected").sum().cast(pl.Int64).alias("injected_events"),
                     pl.col("surviving").sum().cast(pl.Int64).alias("surviving_events"),
                     pl.col("trimmed").sum().cast(pl.Int64).alias("trimmed_events"))
                .with_columns(recall=pl.when(pl.col("units_with_trace") > 0)
                              .then(pl.col("detected") / pl.col("units_with_trace")))
                .select(list(PER_CASE_SCHEMA)).cast(pl.Schema(PER_CASE_SCHEMA)).sort("test_case"))
    normal = seqs.filter(pl.col("test_case") == NORMAL_CASE)
    # Error-case rows holding no placed injected event: a model that finds the errors
    # leaves them alone; one that learnt "not correct" (length, start-up) flags them too.
    no_trace = (seqs.filter(pl.col("test_case") != NORMAL_CASE)
                .join(placed.select("row").unique(), on="row", how="anti"))
    with_trace = int(per_case["units_with_trace"].sum())
    detected = int(per_case["detected"].sum())
    case_recalls = per_case["recall"].drop_nulls()
    overall: dict[str, Any] = {
        "units": int(per_case["units"].sum()),
        "with_trace": with_trace,
        "detected": detected,
        "recall": detected / with_trace if with_trace else None,
        "macro_recall": float(case_recalls.mean()) if case_recalls.len() else None,  # type: ignore[arg-type]
        "cases": per_case.height,
        "fp_rate_normal": float(normal["flagged"].mean()) if normal.height else None,  # type: ignore[arg-type]
        "n_normal": normal.height,
        "flagged_normal": int(normal["flagged"].sum()),
        "flag_rate_no_trace": float(no_trace["flagged"].mean()) if no_trace.height else None,  # type: ignore[arg-type]
        "n_no_trace": no_trace.height,
        "flagged_no_trace": int(no_trace["flagged"].sum()),
        "injected_events": int(per_case["injected_events"].sum()),
        "surviving_events": int(per_case["surviving_events"].sum()),
        "trimmed_events": int(per_case["trimmed_events"].sum()),
        "unplaced_events": unplaced.height,
        "beyond_head_events": beyond_head,
        "cases_without_trace": per_case.filter(pl.col("units_with_trace") == 0)["test_case"]
        .to_list(),
        "trim": ("start-up block" if skip_lines is None
                 else f"first {skip_lines} lines" if skip_lines else "none"),
        "per_file_record": files is not None,
        "skip_lines": skip_lines,
        "head": head,
    }
    return GroundTruthReport(per_case=per_case, overall=overall)


@dataclass
class Placement:
    """Injected events of the evaluated units and the rows that hold them.

    ``rows``: the evaluated rows (``run, test_case, service, start_time, end_time, row``);
    ``units``: the (run, error case, target service) units; ``injected``: their injected
    events within ``--head`` (``trimmed`` flag, ``event`` id); ``placed``: ``event, row`` of
    every untrimmed event and the row whose time span holds it; ``unplaced``: untrimmed events
    no evaluated row holds (e.g. in a partial window the loader dropped): misses.
    """

    rows: pl.DataFrame
    units: pl.DataFrame
    injected: pl.DataFrame
    placed: pl.DataFrame
    unplaced: pl.DataFrame
    beyond_head: int

    def row_truth(self) -> np.ndarray:
        """``True`` for every evaluated row that holds at least one placed injected event."""
        hit = self.rows.select(pl.col("row").is_in(self.placed["row"].implode()))
        return hit.to_series().to_numpy()


def placement(manifest: pl.DataFrame, sequences: pl.DataFrame, *, skip_lines: int | None = 0,
              head: int | None = None, files: pl.DataFrame | None = None) -> Placement:
    """Place the manifest's injected events in the rows of ``sequences`` (see the module
    docstring); arguments as for :func:`ground_truth_recall`."""
    missing = [c for c in SEQUENCE_COLUMNS if c not in sequences.columns]
    if missing:
        raise ValueError(f"sequences lack column(s) {', '.join(missing)}")
    if files is None and skip_lines is None:
        raise ValueError(f"the loader trimmed each file's start-up block but its per-file "
                         f"record ({FILES_FILE}) is missing; re-run the loader")
    seqs = sequences.select(
        "run", "test_case", "service",
        _naive_ms(pl.col("start_time"), sequences.schema["start_time"]).alias("start_time"),
        _naive_ms(pl.col("end_time"), sequences.schema["end_time"]).alias("end_time"),
    ).with_columns(row=pl.int_range(pl.len(), dtype=pl.Int64))
    units = _units(seqs, files)
    injected = _injected(manifest, units, files, skip_lines or 0, head)
    beyond_head = int((~injected["in_head"]).sum())
    injected = injected.filter("in_head")
    kept = injected.filter(~pl.col("trimmed"))
    placed = (kept.join(seqs, on=["run", "test_case", "service"])
              .filter((pl.col("timestamp") >= pl.col("start_time"))
                      & (pl.col("timestamp") <= pl.col("end_time")))
              .select("event", "row", "run", "test_case"))
    unplaced = kept.join(placed.select("event"), on="event", how="anti")
    return Placement(seqs, units, injected, placed, unplaced, beyond_head)


def _units(seqs: pl.DataFrame, files: pl.DataFrame | None) -> pl.DataFrame:
    """(run, error case, target service) whose target log is evaluated or was loaded."""
    targets = _targets()
    units = (seqs.join(targets, on="test_case")
             .filter(pl.col("service") == pl.col("target_service"))
             .select("run", "test_case", "target_service"))
    if files is not None:
        # Logs the loader read but that left no evaluated row (e.g. trimmed whole), in the
        # evaluated runs and services only (a hold-out split, a per-service model).
        loaded = (files.select(FILE_KEYS).join(targets, on="test_case")
                  .filter(pl.col("service") == pl.col("target_service"),
                          pl.col("run").is_in(seqs["run"].unique().implode()),
                          pl.col("service").is_in(seqs["service"].unique().implode()))
                  .select("run", "test_case", "target_service"))
        units = pl.concat([units, loaded], how="vertical")
    return units.unique().sort("run", "test_case")


def _injected(manifest: pl.DataFrame, units: pl.DataFrame, files: pl.DataFrame | None,
              skip: int, head: int | None) -> pl.DataFrame:
    """The units' injected events with ``trimmed`` and ``in_head`` flags and an ``event`` id."""
    events = (manifest.lazy().filter(pl.col("kind") == INJECTED)
              .join(units.lazy(), left_on=list(FILE_KEYS),
                    right_on=["run", "test_case", "target_service"], how="semi"))
    if files is not None:
        events = (events.join(files.lazy().select(*FILE_KEYS, "trimmed_lines"), on=FILE_KEYS,
                              how="left", maintain_order="left")
                  .with_columns(pl.col("trimmed_lines").fill_null(skip)))
    else:
        events = events.with_columns(trimmed_lines=pl.lit(skip, dtype=pl.Int64))
    in_head = (pl.col("line_no") <= pl.col("trimmed_lines") + head if head is not None
               and head > 0 else pl.lit(True))
    return (events.select(*FILE_KEYS, "line_no", pl.col("timestamp").cast(pl.Datetime("ms")),
                          (pl.col("line_no") <= pl.col("trimmed_lines")).alias("trimmed"),
                          in_head.alias("in_head"))
            .with_columns(event=pl.int_range(pl.len(), dtype=pl.Int64))
            .collect())


def empty_report(note: str = NO_MANIFEST) -> GroundTruthReport:
    """A report with no units, carrying ``note`` (e.g. the no-manifest message)."""
    return GroundTruthReport(per_case=pl.DataFrame(schema=PER_CASE_SCHEMA), overall={},
                             note=note)
