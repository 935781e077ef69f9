"""Ground-truth recall on generated data: did the model flag where errors were injected?

The sample generator (``lo2-sample``) writes ``lo2_manifest.csv`` beside the logs: one row
per error event it wrote, ``run, test_case, service, line_no, n_lines, timestamp, kind,
mechanism, code`` (``kind`` is ``injected`` for the error case's own events and
``background`` for the ordinary errors every case contains). Only injected events are
ground truth.

The unit of evaluation is a (run, error case, target service): the one log where the case
can leave a trace. An injected event *survives* loading when its first line was not trimmed
(``line_no > init_lines_to_skip`` and, with ``--head``, ``line_no <= skip + head``) and its
(run, test case, service) sequence is among the evaluated rows; it belongs to the sequence
(window) of that (run, test case, service) whose ``[start_time, end_time]`` holds its
timestamp. A unit *has a trace* when at least one of its injected events survives, and is
*detected* when any sequence holding one of those events is flagged at the model's
threshold. Ground-truth recall = detected / units with a trace; units of cases whose
mechanism leaves no trace (or whose traces were all trimmed) are counted and listed but are
not in the denominator. The false-positive rate is the flagged share of the ``correct``
(normal) sequences among the evaluated rows. ``flag_rate_no_trace`` is the flagged share of
the error-case rows that hold no surviving injected event (other services, windows without
the error, cases without a trace): near 0 for a model that finds the error events, near 1
for one that only learnt "this is not a ``correct`` recording".

Everything is polars joins over the manifest and the sequence table; nothing loops over
rows.

The detection phase calls it through
:func:`loglead_lo2.detection.labels.ground_truth_input` (manifest + the loader's trimming)
and stores :meth:`GroundTruthReport.to_dict` under ``"ground_truth"`` in every model record,
which ``benchmarks/eval_matrix.py`` reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.cases import NORMAL_CASE, target_service_map
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

MANIFEST_FILE = "lo2_manifest.csv"
INFO_FILE = "lo2_load_info.json"
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
}
NO_MANIFEST = ("no ground truth (no manifest): the input did not come from lo2-sample or its "
               "lo2_manifest.csv is not beside the logs; only the test-case tables are "
               "reported (pass --manifest PATH for a generated sample)")
NOTE = ("ground-truth recall: share of (run, error case, target service) units with >= 1 "
        "injected event that survived trimming/windowing whose holding sequence is flagged at "
        "the model's threshold; units without a surviving trace are counted but not in the "
        "denominator; fp_rate_normal: flagged share of normal (correct) sequences; "
        "flag_rate_no_trace: flagged share of error-case sequences holding no surviving "
        "injected event")


@dataclass
class GroundTruthReport:
    """Ground-truth recall per error case and overall, for one model at its threshold.

    ``per_case`` columns: ``test_case``, ``target_service``, ``units`` ((run, case) pairs whose
    target-service sequence is among the evaluated rows), ``units_with_trace`` (of those, with
    a surviving injected event), ``detected``, ``recall`` (``detected / units_with_trace``,
    null without a trace), ``injected_events`` (in the manifest for those runs) and
    ``surviving_events`` (placed in an evaluated sequence).
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


def read_load_info(result_root: Path) -> dict[str, Any] | None:
    """The loader's ``lo2_load_info.json`` under ``result_root`` (``None`` if absent)."""
    path = Path(result_root) / INFO_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc}); re-run the loader.") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object; re-run the loader.")
    return data


def trim_settings(info: dict[str, Any] | None) -> tuple[int, int | None]:
    """``(init_lines_to_skip, head)`` the loader used (defaults ``(100, None)``)."""
    options = (info or {}).get("options") or {}
    skip = options.get("init_lines_to_skip", 100)
    head = options.get("head")
    return (100 if skip is None else int(skip)), (None if head in (None, 0) else int(head))


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
    info = read_load_info(Path(result_root))
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
                        *, skip_lines: int = 100, head: int | None = None
                        ) -> GroundTruthReport:
    """Ground-truth recall and normal FP rate of ``flagged`` over ``sequences``.

    ``manifest``: :func:`load_manifest` output. ``sequences``: the evaluated (held-out) rows
    with ``run, test_case, service, start_time, end_time`` (one row per sequence or window).
    ``flagged``: one bool per row of ``sequences`` at the chosen threshold. ``skip_lines`` /
    ``head``: the loader's ``--init-lines-to-skip`` / ``--head``.
    """
    missing = [c for c in SEQUENCE_COLUMNS if c not in sequences.columns]
    if missing:
        raise ValueError(f"sequences lack column(s) {', '.join(missing)}")
    flags = np.asarray(flagged).astype(bool).reshape(-1)
    if flags.shape[0] != sequences.height:
        raise ValueError(f"flagged has {flags.shape[0]} values for {sequences.height} sequences")
    seqs = sequences.select(
        "run", "test_case", "service",
        _naive_ms(pl.col("start_time"), sequences.schema["start_time"]).alias("start_time"),
        _naive_ms(pl.col("end_time"), sequences.schema["end_time"]).alias("end_time"),
    ).with_columns(flagged=pl.Series(flags, dtype=pl.Boolean),
                   row=pl.int_range(pl.len(), dtype=pl.Int64))
    targets = _targets()
    # Units: (run, error case) whose target-service sequence is among the evaluated rows.
    units = (seqs.join(targets, on="test_case")
             .filter(pl.col("service") == pl.col("target_service"))
             .select("run", "test_case", "target_service").unique())
    keep = pl.col("line_no") > skip_lines
    if head is not None and head > 0:
        keep = keep & (pl.col("line_no") <= skip_lines + head)
    injected = (manifest.lazy().filter(pl.col("kind") == INJECTED)
                .join(units.lazy(), left_on=["run", "test_case", "service"],
                      right_on=["run", "test_case", "target_service"], how="semi")
                .select("run", "test_case", "service", "line_no",
                        pl.col("timestamp").cast(pl.Datetime("ms")), keep.alias("kept"))
                .with_columns(event=pl.int_range(pl.len(), dtype=pl.Int64))
                .collect())
    placed = (injected.filter("kept")
              .join(seqs, on=["run", "test_case", "service"])
              .filter((pl.col("timestamp") >= pl.col("start_time"))
                      & (pl.col("timestamp") <= pl.col("end_time"))))
    unplaced = injected.filter("kept").join(placed.select("event"), on="event", how="anti")
    if unplaced.height:
        log.warning("%d untrimmed injected event(s) fall in no evaluated window of their "
                    "sequence (first: %s)", unplaced.height, unplaced.row(0, named=True))
    per_unit = (placed.group_by("run", "test_case")
                .agg(pl.col("event").n_unique().alias("surviving"),
                     pl.col("flagged").any().alias("hit")))
    counts = injected.group_by("run", "test_case").agg(pl.len().alias("injected"))
    unit_table = (units.join(per_unit, on=["run", "test_case"], how="left")
                  .join(counts, on=["run", "test_case"], how="left")
                  .with_columns(pl.col("surviving", "injected").fill_null(0),
                                pl.col("hit").fill_null(False)))
    per_case = (unit_table.group_by("test_case", "target_service")
                .agg(pl.len().cast(pl.Int64).alias("units"),
                     (pl.col("surviving") > 0).sum().cast(pl.Int64).alias("units_with_trace"),
                     ((pl.col("surviving") > 0) & pl.col("hit")).sum().cast(pl.Int64)
                     .alias("detected"),
                     pl.col("injected").sum().cast(pl.Int64).alias("injected_events"),
                     pl.col("surviving").sum().cast(pl.Int64).alias("surviving_events"))
                .with_columns(recall=pl.when(pl.col("units_with_trace") > 0)
                              .then(pl.col("detected") / pl.col("units_with_trace")))
                .select(list(PER_CASE_SCHEMA)).cast(PER_CASE_SCHEMA).sort("test_case"))
    normal = seqs.filter(pl.col("test_case") == NORMAL_CASE)
    # Error-case rows holding no surviving injected event: a model that finds the errors
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
        "macro_recall": float(case_recalls.mean()) if case_recalls.len() else None,
        "cases": per_case.height,
        "fp_rate_normal": float(normal["flagged"].mean()) if normal.height else None,
        "n_normal": normal.height,
        "flagged_normal": int(normal["flagged"].sum()),
        "flag_rate_no_trace": float(no_trace["flagged"].mean()) if no_trace.height else None,
        "n_no_trace": no_trace.height,
        "flagged_no_trace": int(no_trace["flagged"].sum()),
        "injected_events": int(per_case["injected_events"].sum()),
        "surviving_events": int(per_case["surviving_events"].sum()),
        "trimmed_events": int((~injected["kept"]).sum()),
        "unplaced_events": unplaced.height,
        "cases_without_trace": per_case.filter(pl.col("units_with_trace") == 0)["test_case"]
        .to_list(),
        "skip_lines": skip_lines,
        "head": head,
    }
    return GroundTruthReport(per_case=per_case, overall=overall)


def empty_report(note: str = NO_MANIFEST) -> GroundTruthReport:
    """A report with no units, carrying ``note`` (e.g. the no-manifest message)."""
    return GroundTruthReport(per_case=pl.DataFrame(schema=PER_CASE_SCHEMA), overall={},
                             note=note)
