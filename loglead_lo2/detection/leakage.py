"""Length leakage per service: how far length alone separates the classes on the hold-out.

LO2 recordings differ by design: `correct` lasts 60 s and error cases 10 s, and every case
starts with a fresh load generator. A model can then score well by measuring length instead
of errors. :func:`leakage_report` takes the single-feature ROC-AUC of ``seq_len``,
``duration_sec`` and the event rate (``seq_len / duration_sec``) *within every service* (the
pooled figure hides services where length separates perfectly) and of the pooled rows. The
separability of a feature is ``max(AUC, 1 - AUC)`` (length separates in either direction).
Any separability above :data:`LEAKAGE_LIMIT` gives a warning with advice that fits the run's
settings (windowing and label mode).

With metric features in the data, :func:`recording_order` does the same for the host-scope
ones (the same for every service of a case): above the limit they tell cases apart by when
they were recorded, a shortcut like length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.metrics_utils import ranking_aucs

LEAKAGE_LIMIT = 0.65
"""Separability above which a length feature alone is reported as leakage."""
FEATURES: tuple[str, ...] = ("seq_len", "duration_sec", "event_rate")
POOLED = "all"


def _features(df: pl.DataFrame) -> pl.DataFrame:
    cols = []
    if "seq_len" in df.columns:
        cols.append(pl.col("seq_len").cast(pl.Float64).fill_null(0.0).alias("seq_len"))
    if "duration_sec" in df.columns:
        cols.append(pl.col("duration_sec").cast(pl.Float64).fill_null(0.0)
                    .alias("duration_sec"))
    if "seq_len" in df.columns and "duration_sec" in df.columns:
        dur = pl.col("duration_sec").cast(pl.Float64).fill_null(0.0)
        cols.append(pl.when(dur > 0).then(pl.col("seq_len") / dur)
                    .otherwise(pl.col("seq_len").cast(pl.Float64)).alias("event_rate"))
    return df.select(cols) if cols else pl.DataFrame()


def _block(df: pl.DataFrame) -> dict[str, Any]:
    y = df["anomaly"].cast(pl.Boolean).to_numpy() if df.height else np.zeros(0, bool)
    feats = _features(df)
    out: dict[str, Any] = {"rows": df.height, "anomalous": int(y.sum())}
    for name in FEATURES:
        auc = ranking_aucs(y, feats[name].to_numpy())[0] if name in feats.columns else None
        out[name] = {"roc_auc": auc, "separability": None if auc is None else max(auc, 1 - auc)}
    seps = [out[f]["separability"] for f in FEATURES if out[f]["separability"] is not None]
    out["max_separability"] = max(seps) if seps else None
    return out


def host_columns(hold: pl.DataFrame) -> list[str]:
    """The metric feature columns (``mx_*`` rate/mean/max) that are the same for every
    service of a case's window: host-scope metrics, found from the data (a custom feature
    list may name them anything)."""
    from loglead_lo2.enhancers.metric_features import model_columns

    cols = list(model_columns(hold.columns))
    keys = [c for c in ("run", "test_case", "window") if c in hold.columns]
    if not cols or "service" not in hold.columns or hold["service"].n_unique() < 2 \
            or len(keys) < 2:
        return []
    # the same up to rounding: the loader's features are exact, but a table made by other
    # code (or an older load) may have summed the samples in another order
    spread = (hold.group_by(keys).agg((pl.col(cols).max() - pl.col(cols).min()).abs())
              .select(pl.col(cols).max()))
    scale = hold.select(pl.col(cols).abs().max())
    return [c for c in cols
            if (spread[c][0] or 0.0) <= 1e-9 * max(float(scale[c][0] or 0.0), 1.0)]


def recording_order(hold: pl.DataFrame) -> dict[str, Any]:
    """How far each host-scope metric feature alone separates the hold-out classes: a host
    metric is the same for the target service and the others of a case, so what it can tell
    is which case (and when in the run) a row comes from, e.g. ``correct``, recorded first,
    by the host's free memory that falls through a run."""
    cols = host_columns(hold) if "anomaly" in hold.columns else []
    y = hold["anomaly"].cast(pl.Boolean).to_numpy() if cols else np.zeros(0, bool)
    seps: dict[str, float] = {}
    for c in cols:
        v = hold[c].cast(pl.Float64)
        auc = ranking_aucs(y, v.fill_null(v.mean() or 0.0).to_numpy())[0]
        if auc is not None:
            seps[c] = max(auc, 1 - auc)
    leaky = {c: v for c, v in sorted(seps.items()) if v > LEAKAGE_LIMIT}
    warning = None
    if leaky:
        where = ", ".join(f"{c} {v:.2f}" for c, v in leaky.items())
        warning = (f"host metrics alone separate normal from anomalous hold-out rows ({where}"
                   "): a host metric is the same for every service of a case, so it says "
                   "which case a row comes from and when in the run it was recorded (correct "
                   "first; the host's free memory falls through a run), not which service "
                   "failed. A model reading the mx_* columns may score recording order: "
                   "compare it with its logs-only variant and read fp_rate_non_target.")
    return {"columns": cols, "separability": seps, "warning": warning}


def advice(windowed: bool, label_mode: str) -> str:
    """What to change, given the settings in use."""
    if not windowed:
        return ("re-load with the loader's --window 5 (equal 5 s windows: a 10 s error case "
                "gives two, correct twelve) so rows have the same length")
    if label_mode == "test-case":
        return ("use --label-mode target-service: in test-case mode every row of an error "
                "case is anomalous, so traffic mix and length of whole error-case recordings "
                "are rewarded")
    return ("the rows are equal windows with target-service labels, so what remains is in "
            "the traffic itself (e.g. the error task's extra requests); compare with a "
            "model without length features and read the per-service figures")


def leakage_report(hold: pl.DataFrame, *, windowed: bool | None = None,
                   label_mode: str = "target-service") -> dict[str, Any]:
    """Single-feature separability of length features per service and pooled (hold-out).

    Returns ``limit``, ``features``, ``pooled`` and ``per_service`` blocks (``rows``,
    ``anomalous``, per feature ``roc_auc`` / ``separability``, ``max_separability``),
    ``worst`` (service, feature, separability), ``leaky_services`` and ``warning`` (text
    with advice, or ``None``). ``roc_auc`` / ``separability`` at the top level keep the
    pooled ``seq_len`` / ``duration_sec`` figures for older readers.
    """
    if windowed is None:
        windowed = "window" in hold.columns and hold["window"].null_count() < hold.height
    pooled = _block(hold) if "anomaly" in hold.columns else _block(hold.clear())
    per_service: dict[str, Any] = {}
    if "service" in hold.columns and "anomaly" in hold.columns:
        for service in sorted(hold["service"].unique().to_list()):
            per_service[service] = _block(hold.filter(pl.col("service") == service))
    worst: dict[str, Any] = {"service": None, "feature": None, "separability": None}
    leaky: dict[str, list[str]] = {}
    for service, block in [(POOLED, pooled), *per_service.items()]:
        for name in FEATURES:
            sep = block[name]["separability"]
            if sep is None:
                continue
            if worst["separability"] is None or sep > worst["separability"]:
                worst = {"service": service, "feature": name, "separability": sep}
            if sep > LEAKAGE_LIMIT:
                leaky.setdefault(service, []).append(name)
    warning = None
    if leaky:
        blocks = {POOLED: pooled, **per_service}
        where = "; ".join(
            f"{s}: " + ", ".join(f"{f} {blocks[s][f]['separability']:.2f}" for f in fs)
            for s, fs in leaky.items())
        warning = (f"length alone separates normal from anomalous hold-out rows (separability "
                   f"> {LEAKAGE_LIMIT} in {where}): a high score may measure length, not "
                   f"errors. Advice: {advice(windowed, label_mode)}.")
    return {
        "recording_order": recording_order(hold),
        "limit": LEAKAGE_LIMIT, "features": list(FEATURES), "windowed": windowed,
        "label_mode": label_mode, "pooled": pooled, "per_service": per_service,
        "worst": worst, "leaky_services": leaky, "warning": warning, "rows": hold.height,
        "roc_auc": {f: pooled[f]["roc_auc"] for f in ("seq_len", "duration_sec")},
        "separability": {f: pooled[f]["separability"] for f in ("seq_len", "duration_sec")},
    }


def service_separability(report: dict[str, Any], service: str) -> float | None:
    """Max separability of the length features for ``service`` (``all`` / ``macro``: the max
    over the pooled rows and every service)."""
    if service in (POOLED, "macro"):
        values = [report["pooled"].get("max_separability")] + [
            b.get("max_separability") for b in report["per_service"].values()]
        values = [v for v in values if v is not None]
        return max(values) if values else None
    block = report["per_service"].get(service)
    return None if block is None else block.get("max_separability")


def leakage_warnings(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(title, text)`` of every shortcut warning of a :func:`leakage_report` (or its
    ``leakage.json``), in one order for every reader: length, then recording order."""
    order = report.get("recording_order") or {}
    found = [("Length leakage", report.get("warning")),
             ("Recording order", order.get("warning"))]
    return [(title, str(text)) for title, text in found if text]


def leakage_lines(report: dict[str, Any]) -> list[str]:
    """Printable ``[Leakage]`` lines: pooled and per-service maxima, then the warning."""
    def fmt(block: dict[str, Any]) -> str:
        parts = [f"{f} {block[f]['separability']:.2f}" for f in FEATURES
                 if block[f]["separability"] is not None]
        return ", ".join(parts) or "n/a"

    lines = [f"[Leakage] hold-out separability of length alone (max(AUC, 1-AUC); limit "
             f"{report['limit']}): pooled {fmt(report['pooled'])}"]
    if report["per_service"]:
        lines.append("[Leakage] per service: " + "; ".join(
            f"{s} {b['max_separability']:.2f}" if b.get("max_separability") is not None
            else f"{s} n/a" for s, b in report["per_service"].items()))
    lines += [f"[Leakage] WARNING: {text}" for _, text in leakage_warnings(report)]
    return lines


__all__ = ["FEATURES", "LEAKAGE_LIMIT", "advice", "host_columns", "leakage_lines",
           "leakage_report", "leakage_warnings", "recording_order", "service_separability"]
