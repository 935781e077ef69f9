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
==============================  =============================================================

Every figure names its split: ``holdout`` or ``train (for reference only)``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2.schema import write_text_atomic

HOLDOUT = "holdout"
TRAIN_REFERENCE = "train (for reference only)"

METRIC_COLUMNS: tuple[str, ...] = (
    "accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "precision_at_k",
    "fp_rate_at_alpha", "support_pos", "support_neg",
)
LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "rank", "model", "kind", "split", *METRIC_COLUMNS, "k", "alpha", "psi", "threshold",
    "fit_seconds", "score_seconds", "train_rows", "holdout_rows",
)


def _clean(value: Any) -> Any:
    """JSON-safe builtins; NaN/inf become ``null``."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    path = Path(path)
    write_text_atomic(path, json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")
    return path


def flat_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One leaderboard row from a model record (see :func:`model_record`)."""
    metrics = record.get("metrics") or {}
    timing = record.get("timing") or {}
    split = record.get("split") or {}
    row: dict[str, Any] = {
        "model": record["model"],
        "kind": record.get("kind"),
        "split": split.get("name", HOLDOUT),
    }
    for name in METRIC_COLUMNS:
        row[name] = metrics.get(name)
    row["k"] = record.get("k")
    row["alpha"] = record.get("alpha")
    row["psi"] = record.get("psi_train_vs_holdout")
    row["threshold"] = (record.get("threshold") or {}).get("value")
    row["fit_seconds"] = timing.get("fit_seconds")
    row["score_seconds"] = timing.get("score_seconds")
    row["train_rows"] = split.get("train_rows")
    row["holdout_rows"] = split.get("holdout_rows")
    return row


def model_record(
    key: str,
    *,
    kind: str,
    description: str,
    metrics: Mapping[str, Any] | None,
    split: Mapping[str, Any],
    threshold: Mapping[str, Any],
    timing: Mapping[str, Any],
    features: Mapping[str, Any],
    k: int | None = None,
    alpha: float | None = None,
    psi: float | None = None,
    resource: Mapping[str, Any] | None = None,
    guards: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The content of ``<model>.json``; ``metrics`` are hold-out figures (or ``None``)."""
    return {
        "model": key,
        "kind": kind,
        "description": description,
        "split": {"name": HOLDOUT, **dict(split)},
        "metrics_split": HOLDOUT if metrics is not None else None,
        "metrics": dict(metrics) if metrics is not None else None,
        "k": k,
        "alpha": alpha,
        "psi_train_vs_holdout": psi,
        "threshold": dict(threshold),
        "timing": dict(timing),
        "features": dict(features),
        "resource": dict(resource or {}),
        "guards": list(guards),
        "notes": list(notes),
    }


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


def leaderboard(records: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Models side by side, best hold-out ROC-AUC first (models without one last)."""
    rows = [flat_row(r) for r in records]
    if not rows:
        return pl.DataFrame(schema={c: pl.String for c in LEADERBOARD_COLUMNS})
    rows.sort(key=lambda r: (r["roc_auc"] is None, -(r["roc_auc"] or 0.0),
                             -(r["pr_auc"] or 0.0), r["model"]))
    for i, row in enumerate(rows, start=1):
        row["rank"] = i
    return pl.DataFrame(rows, infer_schema_length=None).select(LEADERBOARD_COLUMNS)


def write_leaderboard(metrics_dir: str | os.PathLike[str],
                      records: Iterable[Mapping[str, Any]], title: str = "") -> list[Path]:
    """``leaderboard.csv`` and ``leaderboard.md``; returns the paths written."""
    metrics_dir = Path(metrics_dir)
    table = leaderboard(records)
    csv_path = metrics_dir / "leaderboard.csv"
    md_path = metrics_dir / "leaderboard.md"
    write_text_atomic(csv_path, table.write_csv())
    header = "# LO2 detection leaderboard (hold-out split)\n\n"
    if title:
        header += title.rstrip() + "\n\n"
    header += ("All figures are on held-out runs (no run is on both sides). "
               "`psi` compares train and hold-out score distributions.\n\n")
    write_text_atomic(md_path, header + markdown_table(table))
    return [csv_path, md_path]


def write_if_metrics(metrics_dir: str | os.PathLike[str],
                     record: Mapping[str, Any]) -> list[Path]:
    """``if_metrics.json`` (full record) and ``if_metrics.csv`` (one flat row)."""
    metrics_dir = Path(metrics_dir)
    json_path = write_json(metrics_dir / "if_metrics.json", record)
    csv_path = metrics_dir / "if_metrics.csv"
    row = {k: v for k, v in flat_row(record).items()}
    row["threshold_source"] = (record.get("threshold") or {}).get("source")
    row["percentile"] = (record.get("threshold") or {}).get("percentile")
    write_text_atomic(csv_path, pl.DataFrame([row], infer_schema_length=None).write_csv())
    return [json_path, csv_path]


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
    csv_path = metrics_dir / "per_test_case_recall.csv"
    md_path = metrics_dir / "per_test_case_recall.md"
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


def leakage_lines(report: Mapping[str, Any]) -> list[str]:
    """Printable lines of a leakage report (``seq_len``/``duration_sec`` ROC-AUC)."""
    aucs = report.get("roc_auc") or {k: v for k, v in report.items() if k in
                                     ("seq_len", "duration_sec")}
    parts = [f"{name} {_fmt(value) or 'n/a'}" for name, value in aucs.items()]
    lines = [f"[Leakage] hold-out ROC-AUC of length alone: {', '.join(parts) or 'n/a'}"]
    warning = report.get("warning")
    if warning:
        lines.append(f"[Leakage] WARNING: {warning}")
    return lines


def metric_line(name: str, metrics: Mapping[str, Any] | None) -> str:
    """One printed ``[Metrics]`` line naming the split."""
    if not metrics:
        return f"[Metrics] {name}: no hold-out metrics"
    keys = ("roc_auc", "pr_auc", "f1", "precision", "recall", "precision_at_k",
            "fp_rate_at_alpha")
    parts = [f"{k} {_fmt(metrics.get(k)) or 'n/a'}" for k in keys]
    return f"[Metrics] {name} ({HOLDOUT}): " + ", ".join(parts)
