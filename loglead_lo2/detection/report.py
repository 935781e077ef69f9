"""Metric files of the detection phase.

Everything lands in the metrics directory (``--metrics-dir``, default ``<root>/metrics``):

==============================  =============================================================
file                            content
==============================  =============================================================
``if_metrics.json`` / ``.csv``  Isolation Forest: hold-out metrics, threshold and its source
``<model>.json``                one per registry model: hold-out metrics, split, timings
``leaderboard.csv`` / ``.md``   all models side by side (hold-out split) with fit/score time
``per_test_case_recall.csv``    recall of every model per test case (``.md`` too), on all the
                                case's sequences and on its target-service sequence
``leakage.json``                ROC-AUC of ``seq_len`` / ``duration_sec`` alone (hold-out)
``ground_truth_<model>.csv``    ground-truth recall per error case (generated data with a
                                manifest only; ``service`` column per service model)
==============================  =============================================================

Every figure names its split: ``holdout`` or ``train (for reference only)``. Every record,
leaderboard row and ``[Metrics]`` line also names the run's settings
(:class:`~loglead_lo2.detection.labels.RunSettings`): label mode, split, windowing and the
per-service setting, plus the ``service`` the model was trained on (``all``, a service, or
``macro`` for the average over the per-service models).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2 import artifacts as A
from loglead_lo2.artifacts import LEADERBOARD_CSV, LEADERBOARD_MD
from loglead_lo2.detection.labels import ALL_SERVICES, MACRO
from loglead_lo2.detection.records import (
    GROUP_FIELDS,
    HOLDOUT,
    HoldoutMetrics,
    LeaderboardRow,
    ModelRecord,
    as_record,
    macro,
)
from loglead_lo2.plain import plain
from loglead_lo2.schema import write_text_atomic

TRAIN_REFERENCE = "train (for reference only)"

METRIC_COLUMNS: tuple[str, ...] = HoldoutMetrics.leaderboard_fields()
"""The :class:`~.records.HoldoutMetrics` fields that are leaderboard columns."""
LEADERBOARD_COLUMNS: tuple[str, ...] = ("rank", *LeaderboardRow.columns())
"""``rank``, then the fields of :class:`~.records.LeaderboardRow`."""
MD_COLUMNS: tuple[str, ...] = (
    "rank", "model", "service", "kind", "roc_auc", "pr_auc", "f1", "precision", "recall",
    "fp_rate_correct", "fp_rate_non_target", "gt_roc_auc", "gt_recall", "gt_recall_1pct_fp",
    "len_sep", "threshold", "fit_seconds", "bounded",
)


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    path = Path(path)
    write_text_atomic(path, json.dumps(plain(data, finite=True), indent=2, sort_keys=False) + "\n")
    return path


def flat_row(record: ModelRecord) -> dict[str, Any]:
    """One leaderboard row (without ``rank``) of a model record
    (:class:`~.records.LeaderboardRow`)."""
    return LeaderboardRow.of(record).to_dict()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else ""
    return str(value)


def markdown_table(df: pl.DataFrame) -> str:
    """A GitHub markdown table of ``df`` (floats to 4 decimals, nulls empty)."""
    head = "| " + " | ".join(df.columns) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join([head, rule, *body]) + "\n"


def macro_record(key: str, records: Sequence[ModelRecord | Mapping[str, Any]]
                 ) -> dict[str, Any]:
    """The JSON content of the ``macro`` row (:func:`~.records.macro`) of ``records``
    (records, or their JSON content)."""
    return macro(key, [as_record(r) for r in records]).to_dict()


def _service_order(service: Any) -> tuple[int, str]:
    return (0 if service in (ALL_SERVICES, MACRO) else 1, str(service))


def leaderboard(records: Iterable[ModelRecord]) -> pl.DataFrame:
    """Models side by side: rows grouped by ``service`` (``all`` / ``macro`` first, then each
    service), best hold-out ROC-AUC first; ``rank`` is the model's rank within its service."""
    rows = sorted((LeaderboardRow.of(r) for r in records),
                  key=lambda r: (_service_order(r.service), r.roc_auc is None,
                                 -(r.roc_auc or 0.0), -(r.pr_auc or 0.0), str(r.model)))
    if not rows:
        return pl.DataFrame(schema={c: pl.String for c in LEADERBOARD_COLUMNS})
    counter: dict[Any, int] = {}
    table = []
    for row in rows:
        counter[row.service] = counter.get(row.service, 0) + 1
        table.append({"rank": counter[row.service], **row.to_dict()})
    return pl.DataFrame(table, infer_schema_length=None).select(LEADERBOARD_COLUMNS)


def settings_text(settings: Mapping[str, Any] | None) -> str:
    """``label mode ..., split ..., window ..., per-service ...`` for report headers."""
    s = settings or {}
    return (f"label mode `{s.get('label_mode', 'target-service')}`, split "
            f"`{s.get('split', HOLDOUT)}` (whole runs), window `{s.get('window', 'none')}`, "
            f"per-service `{'yes' if s.get('per_service') else 'no'}`, threshold "
            f"`{s.get('threshold', 'fp-target 0.01')}`")


def _leakage_banner(leakage: Mapping[str, Any] | None) -> str:
    if not leakage:
        return ""
    worst = leakage.get("worst") or {}
    sep = worst.get("separability")
    from loglead_lo2.detection.leakage import leakage_warnings

    lines = [f"> **{title}.** {text}" for title, text in leakage_warnings(leakage)]
    if not leakage.get("warning") and sep is not None:
        lines.append(f"> Length check passed: no single length feature (seq_len, "
                     f"duration_sec, event rate) separates the hold-out classes above "
                     f"{leakage.get('limit')} in any service (worst: {worst.get('feature')} "
                     f"in {worst.get('service')}, {sep:.2f}).")
    return ("\n\n".join(lines) + "\n\n") if lines else ""


def write_leaderboard(metrics_dir: str | os.PathLike[str],
                      records: Iterable[ModelRecord], title: str = "",
                      settings: Mapping[str, Any] | None = None,
                      leakage: Mapping[str, Any] | None = None) -> list[Path]:
    """``leaderboard.csv`` and ``leaderboard.md``; returns the paths written.

    ``leakage`` (:func:`~loglead_lo2.detection.leakage.leakage_report`) fills the
    ``len_sep`` column (max single-feature separability of length in the row's service) and
    the banner at the top of the ``.md``."""
    from loglead_lo2.detection.leakage import service_separability

    metrics_dir = Path(metrics_dir)
    rows = list(records)
    if leakage:
        rows = [replace(r, len_sep=service_separability(dict(leakage), str(r.service)))
                for r in rows]
    table = leaderboard(rows)
    csv_path = metrics_dir / LEADERBOARD_CSV
    md_path = metrics_dir / LEADERBOARD_MD
    write_text_atomic(csv_path, table.write_csv())
    if settings is None and rows:
        settings = rows[0].settings
    header = "# LO2 detection leaderboard (hold-out split)\n\n"
    header += _leakage_banner(leakage)
    header += f"Settings: {settings_text(settings)}.\n\n"
    header += ("Ranking: within each `service` block by hold-out `roc_auc`, then `pr_auc`, "
               "then the model name. `fp_rate_correct` / `fp_rate_non_target`: flagged share "
               "of the `correct` rows / of the other services' rows of error cases (neither "
               "holds an injected error; in `test-case` mode the latter are labelled "
               "anomalous). `threshold_rule`: `fp-target F` = set on training-run normal "
               "rows (calibration runs) to flag at most F of them; `model` = the model's own "
               "cut-off. `len_sep`: how far length alone (seq_len, duration_sec, event rate) "
               "separates the classes in the row's service (0.5 = not at all). "
               "`gt_roc_auc`: ROC-AUC against true labels (row holds an injected event); "
               "`gt_recall_1pct_fp`: ground-truth recall at the cut flagging 1 % of hold-out "
               "normal rows. `k_rows` < `k`: precision@k was taken over fewer rows than k "
               "(it is then the anomalous share).\n\n")
    if title:
        header += title.rstrip() + "\n\n"
    header += ("All figures are on held-out runs (no run is on both sides). "
               "`psi` compares train and hold-out score distributions. `service`: `all` = "
               "one model on every service, `<service>` = that service's own model, `macro` "
               "= mean over the service models where a metric is defined (F1 per service = "
               "2TP/(2TP+FP+FN), 0 when nothing is flagged; counts in `macro_defined` of the "
               "model JSON). `gt_recall` / `gt_fp_rate`: ground-truth "
               "recall and normal FP rate (generated data with a manifest only).\n\n")
    shown = table.select([c for c in MD_COLUMNS if c in table.columns])
    header += (f"The table shows {len(MD_COLUMNS)} of the {len(table.columns)} columns of "
               "`leaderboard.csv` (settings are above; supports, confusion-derived accuracy, "
               "precision@k, PSI, timings and row counts are in the CSV).\n\n")
    write_text_atomic(md_path, header + markdown_table(shown))
    return [csv_path, md_path]


def write_if_metrics(metrics_dir: str | os.PathLike[str], record: ModelRecord,
                     rows: Sequence[ModelRecord] | None = None) -> list[Path]:
    """``if_metrics.json`` (full record) and ``if_metrics.csv`` (one flat row per record in
    ``rows``, default the record itself)."""
    metrics_dir = Path(metrics_dir)
    json_path = write_json(metrics_dir / A.IF_METRICS_JSON, record.to_dict())
    csv_path = metrics_dir / A.IF_METRICS_CSV
    flat = [{**flat_row(r), "threshold_source": r.threshold.get("source"),
             "percentile": r.threshold.get("percentile")} for r in rows or [record]]
    write_text_atomic(csv_path, pl.DataFrame(flat, infer_schema_length=None).write_csv())
    return [json_path, csv_path]


def write_ground_truth(metrics_dir: str | os.PathLike[str], key: str,
                       tables: Mapping[str, pl.DataFrame]) -> Path:
    """``ground_truth_<key>.csv``: the per-case ground-truth tables, one ``service`` block per
    model (``all`` or each service's model), ``service`` as the first column."""
    parts = [t.select(pl.lit(s).alias("service"), pl.all()) for s, t in sorted(tables.items())]
    table = pl.concat(parts, how="vertical_relaxed") if parts else pl.DataFrame()
    path = Path(metrics_dir) / A.ground_truth_file(key)
    write_text_atomic(path, table.write_csv())
    return path


def recall_table(tables: Mapping[str, pl.DataFrame],
                 target: Mapping[str, pl.DataFrame] | None = None) -> pl.DataFrame:
    """Join per-model recall tables (``test_case, n, detected, recall``) into one wide table.

    Columns: ``test_case``, ``target_service``, ``n``, then ``<model>`` (recall on all the
    case's sequences) and, when ``target`` is given, ``<model>@target`` (recall on the
    target-service sequence only, where the case leaves its trace).
    """
    from loglead_lo2.cases import target_service_map

    out: pl.DataFrame | None = None
    for key in sorted(tables):
        t = tables[key].select("test_case", "n", pl.col("recall").alias(key))
        out = t if out is None else out.join(t.drop("n"), on="test_case", how="full",
                                             coalesce=True)
        if target and key in target:
            tt = target[key].select("test_case", pl.col("recall").alias(f"{key}@target"))
            out = out.join(tt, on="test_case", how="left")
    if out is None:
        return pl.DataFrame(schema={"test_case": pl.String, "target_service": pl.String,
                                    "n": pl.Int64})
    services = target_service_map()
    cases = pl.DataFrame({"test_case": sorted(services)})
    out = cases.join(out, on="test_case", how="full", coalesce=True)
    out = out.with_columns(
        target_service=pl.col("test_case").replace_strict(services, default=None,
                                                          return_dtype=pl.String)
    )
    first = ["test_case", "target_service", "n"]
    return out.select(first + [c for c in out.columns if c not in first]).sort("test_case")


def write_recall_table(metrics_dir: str | os.PathLike[str], table: pl.DataFrame) -> list[Path]:
    metrics_dir = Path(metrics_dir)
    csv_path = metrics_dir / A.RECALL_CSV
    md_path = metrics_dir / A.RECALL_MD
    write_text_atomic(csv_path, table.write_csv())
    write_text_atomic(
        md_path,
        "# Recall per error test case (hold-out runs)\n\n"
        "`<model>`: share of the case's hold-out sequences flagged; `<model>@target`: the "
        "same on the target-service sequence only (other services of an error case look "
        "normal). Empty: the case has no sequence in the hold-out runs.\n\n"
        + markdown_table(table),
    )
    return [csv_path, md_path]


def metric_line(name: str, metrics: HoldoutMetrics | None,
                settings: Mapping[str, Any] | None = None, service: str | None = None) -> str:
    """One printed ``[Metrics]`` line naming the split, label mode, windowing, per-service
    setting and (when given) the service of the model."""
    s = settings or {}
    tag = (f"{HOLDOUT}) [labels {s.get('label_mode', 'target-service')}, window "
           f"{s.get('window', 'none')}, per-service {'yes' if s.get('per_service') else 'no'}"
           + (f", service {service}" if service else "") + "]")
    if metrics is None:
        return f"[Metrics] {name} ({tag}: no hold-out metrics"
    keys = ("roc_auc", "pr_auc", "f1", "precision", "recall", "fp_rate_correct",
            "fp_rate_non_target", "precision_at_k", "fp_rate_at_alpha")
    parts = [f"{k} {_fmt(getattr(metrics, k)) or 'n/a'}" for k in keys
             if metrics.grouped or k not in GROUP_FIELDS]
    if metrics.k_note:
        parts.append(f"note: {metrics.k_note}")
    return f"[Metrics] {name} ({tag}: " + ", ".join(parts)


def write_signature_table(metrics_dir: str | os.PathLike[str], table: pl.DataFrame,
                          settings: Mapping[str, Any] | None = None) -> list[Path]:
    """``signature_recall.csv`` (long: model, part, error case, recall at the threshold and
    at 1 % FP) and ``signature_recall.md`` (one row per error case, one column pair per
    model part)."""
    metrics_dir = Path(metrics_dir)
    csv_path = metrics_dir / A.SIGNATURES_CSV
    md_path = metrics_dir / A.SIGNATURES_MD
    write_text_atomic(csv_path, table.write_csv())
    basis = ", ".join(sorted(set(table["basis"].to_list()))) if table.height else "none"
    wide = pl.DataFrame()
    if table.height:
        cell = table.with_columns(
            name=pl.when(pl.col("part") == ALL_SERVICES).then(pl.col("model"))
            .otherwise(pl.col("model") + "@" + pl.col("part")),
            cell=pl.format("{} / {}",
                           pl.col("recall_at_threshold").round(2).cast(pl.String)
                           .fill_null("-"),
                           pl.col("recall_at_1pct_fp").round(2).cast(pl.String)
                           .fill_null("-")))
        events = (table.group_by("test_case", "target_service")
                  .agg(pl.col("injected_events").max(), pl.col("rows").max()))
        wide = events.join(cell.pivot("name", index="test_case", values="cell",
                                      aggregate_function="first"),
                           on="test_case", how="left").sort("test_case")
    write_text_atomic(md_path,
                      "# Recall per error case (signature), hold-out runs\n\n"
                      f"Settings: {settings_text(settings)}.\n\n"
                      f"Basis: {basis}. Each cell: recall at the model's threshold / recall "
                      "at the cut flagging 1 % of the hold-out normal rows (report-only, "
                      "threshold-free ranking quality). `injected_events`: injected error "
                      "events in the hold-out runs' target-service logs; `rows`: units "
                      "(ground truth) or target-service rows. A model part named "
                      "`<model>@<service>` is that service's own model.\n\n"
                      + (markdown_table(wide) if wide.height else "(no error case evaluated)\n"))
    return [csv_path, md_path]
