"""The report's sections as plain data for the page template (no HTML here: the template
escapes every value)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.detection.leakage import leakage_warnings
from loglead_lo2.report import figures
from loglead_lo2.report.inputs import ReportInputs, model_keys

HOLDOUT = "holdout"
RANKING_RULE = ("within each service block: hold-out ROC-AUC (higher first), then PR-AUC, then "
                "the model name")
BOARD_COLUMNS = ("rank", "model", "service", "kind", "roc_auc", "pr_auc", "precision",
                 "recall", "f1", "fp_rate_correct", "fp_rate_non_target", "gt_roc_auc",
                 "gt_recall", "len_sep", "threshold")
ERROR_RE = re.compile(r"ERR\d{5}|\"statusCode\"\s*:\s*[45]\d\d|\bHTTP[/ ]\S*\s*[45]\d\d\b"
                      r"|\bstatus(?:\s*code)?\s*[=:]?\s*[45]\d\d\b|\bERROR\b|Exception",
                      re.IGNORECASE)
ITEM_RE = re.compile(r'(\S+) \((\d+)/(\d+)\)(?: "(.*?)")?(?:; |$)')
TOP_WINDOWS = 10
WINDOW_FIELDS = ("rank", "seq_id", "run", "test_case", "service", "target_service", "anomaly",
                 "score", "neighbour_seq_id", "cosine_similarity",
                 "n_tokens_absent_in_neighbour")
LINES_PER_WINDOW = 12


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def data_section(inp: ReportInputs) -> dict[str, Any]:
    info = inp.load_info
    if info is None:  # no lo2_load_info.json: the section says so, nothing else
        return {"facts": [], "trims": [], "problems": [], "runs": [],
                "missing": inp.missing.get("data", [])}
    options = info.get("options") or {}
    runs = info.get("runs_loaded") or []
    window = info.get("window") or {}
    trim = info.get("trim") or {}
    facts = [
        ("runs loaded", f"{len(runs)} of {fmt(info.get('runs_available'))} available"),
        ("test cases (run x case)", fmt(window.get("cases")) if window else "-"),
        ("services", ", ".join(map(str, options.get("services") or [])) or "-"),
        ("log lines (events)", fmt(info.get("events"))),
        ("sequences / windows", fmt(info.get("sequences"))),
        ("anomalous sequences (test-case labels)", fmt(info.get("anomalous_sequences"))),
        ("windowing", f"{fmt(info.get('window_seconds'))} s windows" if info.get("windowed")
         else "whole sequences"),
    ]
    trims = []
    if trim:
        trims.append(("trim rule", f"{trim.get('description') or trim.get('rule')}"))
        trims.append(("trimmed", f"{fmt(trim.get('trimmed_lines'))} line(s) in "
                                 f"{fmt(trim.get('trimmed_files'))} file(s)"))
        for part in ("correct", "error_cases"):
            block = trim.get(part) or {}
            if block:
                trims.append((f"trimmed in {part}", f"{fmt(block.get('lines'))} line(s), "
                                                   f"{fmt(block.get('files'))} file(s)"))
    if window:
        trims.append(("window rule", str(window.get("rule", "-"))))
        trims.append(("full windows", fmt(window.get("full_windows"))))
        trims.append(("dropped partial tail", f"{fmt(window.get('dropped_tail_events'))} "
                      f"event(s), {fmt(window.get('dropped_tail_windows'))} window(s)"))
        trims.append(("cases without a full window",
                      fmt(window.get("cases_without_full_window"))))
    problems = []
    for name, block in sorted((info.get("input_problems") or {}).items()):
        if not isinstance(block, dict):
            continue
        items = [str(i) for i in (block.get("items") or [])]
        problems.append({"name": name, "count": fmt(block.get("count", len(items))),
                         "description": str(block.get("description", "")),
                         "examples": items[:10], "more": max(len(items) - 10, 0)})
    return {"facts": facts, "trims": trims, "problems": problems, "runs": [str(r) for r in runs],
            "missing": inp.missing.get("data", [])}


def settings_section(inp: ReportInputs) -> dict[str, Any]:
    s = inp.run.get("settings") or {}
    labels = inp.run.get("labels") or {}
    rows = [("label mode", s.get("label_mode", "-")), ("split", s.get("split", "-")),
            ("split detail", s.get("split_note", "-")), ("window", s.get("window", "-")),
            ("per-service models", fmt(bool(s.get("per_service")))),
            ("threshold rule", s.get("threshold", "-")),
            ("row groups", ", ".join(f"{k}: {fmt(v)}" for k, v in
                                     sorted((labels.get("row_groups") or {}).items())) or "-"),
            ("models", ", ".join(model_keys(inp.run)) or "-"),
            ("detection run folder", _relative(inp.metrics, inp.root))]
    return {"rows": [(k, fmt(v)) for k, v in rows]}


def _relative(path: Path, root: Path) -> str:
    """``path`` as found through symlinks (a versioned run folder), relative to ``root``."""
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    try:
        return str(real.relative_to(base))
    except ValueError:
        return str(path)


def leaderboard_section(inp: ReportInputs) -> dict[str, Any]:
    board = inp.leaderboard
    leak = inp.leakage or {}
    worst = leak.get("worst") or {}
    warnings = leakage_warnings(leak)
    texts = [f"{title}: {text}" for title, text in warnings]
    if not leak:
        texts.append("No leakage check found (metrics/leakage.json).")
    elif not leak.get("warning"):
        sep = worst.get("separability")
        feats = ", ".join(leak.get("features") or [])
        texts.append(
            f"Length check passed: no single length feature ({feats}) "
            f"separates the hold-out classes above {leak.get('limit')} in any service (worst: "
            f"{worst.get('feature')} in {worst.get('service')}, {fmt(sep, 2)}).")
    banner = {"level": "ok" if leak and not warnings else "warn", "text": " ".join(texts)}
    cols: list[str] = []
    rows: list[list[str]] = []
    if board is not None:
        cols = [c for c in BOARD_COLUMNS if c in board.columns]
        rows = [[fmt(r[c]) for c in cols] for r in board.select(cols).iter_rows(named=True)]
    return {"rule": RANKING_RULE, "banner": banner, "columns": cols, "rows": rows,
            "missing": inp.missing.get("leaderboard", [])}


def _holdout(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("split") == HOLDOUT).filter(pl.col("score").is_not_null())


def curves_section(inp: ReportInputs) -> dict[str, Any]:
    models = []
    hists = []
    counts = {}
    for key, frame in inp.predictions.items():
        hold = _holdout(frame).sort("seq_id")
        counts[key] = hold.height
        if hold.height == 0:
            continue
        y = hold["label"].cast(pl.Int64).to_numpy()
        s = hold["score"].cast(pl.Float64).to_numpy()
        ok = np.isfinite(s)
        if len(set(y[ok].tolist())) == 2:
            models.append((key, y[ok], s[ok]))
        hists.append({"key": key, "src": figures.histogram(key, hold)})
    curve = figures.curves(models) if models else None
    notes = [f"{k}: one class only in the hold-out rows, no curve" for k in inp.predictions
             if k not in {m[0] for m in models} and counts.get(k)]
    rows = sorted(set(counts.values()))
    return {"curves": curve, "histograms": hists, "notes": notes,
            "rows": ", ".join(fmt(r) for r in rows) or "0",
            "missing": inp.missing.get("curves", [])}


def signatures_section(inp: ReportInputs) -> dict[str, Any]:
    out: dict[str, Any] = {"missing": inp.missing.get("signatures", []), "heat": None,
                           "recall_cols": [], "recall_rows": [], "basis": ""}
    sig = inp.signatures
    if sig is not None and sig.height and {"model", "test_case",
                                           "recall_at_threshold"} <= set(sig.columns):
        models = sorted(set(sig["model"].cast(pl.String).to_list()))
        part = sig.with_columns(pl.col("test_case").cast(pl.String))
        if "target_service" in part.columns:
            part = part.with_columns((pl.col("test_case") + " (" + pl.col("target_service")
                                      .cast(pl.String).fill_null("?") + ")").alias("test_case"))
        cases = sorted(set(part["test_case"].to_list()))
        matrix = np.full((len(cases), len(models)), np.nan)
        index = {c: i for i, c in enumerate(cases)}
        mindex = {m: j for j, m in enumerate(models)}
        for r in part.iter_rows(named=True):
            v = r["recall_at_threshold"]
            if v is not None:
                matrix[index[r["test_case"]], mindex[str(r["model"])]] = float(v)
        out["heat"] = figures.heatmap(matrix, cases, models,
                                      "recall of injected signatures at the threshold")
        if "basis" in sig.columns:
            out["basis"] = "; ".join(sorted({str(b) for b in sig["basis"].to_list()}))
    rec = inp.recall
    if rec is not None and rec.height:
        keys = [c for c in rec.columns if c.endswith("@target")]
        cols = [c for c in ("test_case", "target_service", "n") if c in rec.columns] + keys
        names = {"n": "hold-out rows (all services)"}
        out["recall_cols"] = [names.get(c, c.removesuffix("@target")) for c in cols]
        out["recall_rows"] = [[(fmt(r[c]), _shade(r[c]) if c in keys else "")
                               for c in cols] for r in rec.select(cols).iter_rows(named=True)]
    return out


def _shade(value: Any) -> str:
    """A CSS background for a 0..1 recall (red 0 -> green 1)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return ""
    v = min(max(float(value), 0.0), 1.0)
    return f"background:hsl({int(120 * v)},60%,80%)"


def shap_section(inp: ReportInputs) -> dict[str, Any]:
    models = []
    for key, table in inp.shap_tables.items():
        if "feature" not in table.columns or "mean_abs_shap" not in table.columns:
            continue
        values = inp.shap_values.get(key)
        order = [str(f) for f in table["feature"].to_list()]
        models.append({
            "key": key, "source": inp.shap_source.get(key, ""),
            "bars": figures.shap_bars(key, table) if table.height else None,
            "swarm": (figures.beeswarm(key, values, order) if values is not None
                      and values.height else None),
            "rows": (values["seq_id"].n_unique() if values is not None and values.height
                     else None)})
    return {"models": models, "missing": inp.missing.get("shap", [])}


def _items(text: Any) -> list[dict[str, Any]]:
    """``name (a/b) "text"; ...`` of nn_mapping's token/template columns."""
    out = []
    for m in ITEM_RE.finditer(str(text or "")):
        name, a, b, body = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        shown = body if body is not None else name
        out.append({"name": name, "here": a, "there": b, "text": shown,
                    "error": bool(ERROR_RE.search(shown) or ERROR_RE.search(name)),
                    "absent": b == 0})
    out.sort(key=lambda d: (not d["error"], not d["absent"]))
    return out


def _lines(inp: ReportInputs, ids: list[str]) -> dict[str, pl.DataFrame]:
    if inp.events is None or not ids:
        return {}
    cols = ["seq_id", "line_no", "m_message", "e_event_drain_id"]
    lazy = pl.scan_parquet(inp.events)
    have = set(lazy.collect_schema().names())
    frame = (lazy.filter(pl.col("seq_id").is_in(ids)).select([c for c in cols if c in have])
             .collect())
    if "line_no" in frame.columns:
        frame = frame.sort(["seq_id", "line_no"])
    return {str(k[0]): g for k, g in frame.group_by(["seq_id"], maintain_order=True)}


def windows_section(inp: ReportInputs) -> dict[str, Any]:
    out: dict[str, Any] = {"windows": [], "missing": inp.missing.get("windows", [])}
    nn = inp.nn
    if nn is None or not nn.height:
        return out
    top = nn.sort("rank").head(TOP_WINDOWS) if "rank" in nn.columns else nn.head(TOP_WINDOWS)
    if "flagged" in top.columns:
        flagged = top.filter(pl.col("flagged").cast(pl.String).str.to_lowercase() == "true")
        top = flagged if flagged.height else top
    ids = [str(x) for x in top["seq_id"].to_list()]
    ids += [str(x) for x in top["neighbour_seq_id"].drop_nulls().to_list()] if (
        "neighbour_seq_id" in top.columns) else []
    lines = _lines(inp, ids)
    out["source"] = str(inp.nn_info.get("source") or "")
    out["space"] = str(inp.nn_info.get("feature_space") or "")
    if "anomaly" in top.columns:
        labelled = top["anomaly"].cast(pl.String).str.to_lowercase() == "true"
        out["labelled"] = f"{int(labelled.sum())} of {top.height}"
    for r in top.iter_rows(named=True):
        win: dict[str, Any] = {k: fmt(r.get(k)) for k in WINDOW_FIELDS}
        win["tokens"] = _items(r.get("top_tokens"))
        win["templates"] = _items(r.get("top_templates"))
        own = lines.get(str(r.get("seq_id")))
        there = lines.get(str(r.get("neighbour_seq_id")))
        win["lines"], win["lines_note"] = _window_lines(own, there)
        out["windows"].append(win)
    out["events"] = inp.events is not None
    return out


def _window_lines(own: pl.DataFrame | None, there: pl.DataFrame | None,
                  ) -> tuple[list[dict[str, Any]], str]:
    if own is None or "m_message" not in own.columns:
        return [], "the window's log lines are not in lo2_events.parquet"
    known = (set(there["e_event_drain_id"].cast(pl.String).to_list())
             if there is not None and "e_event_drain_id" in there.columns else None)
    rows = []
    for r in own.iter_rows(named=True):
        msg = str(r["m_message"] or "")
        template = r.get("e_event_drain_id")
        absent = known is not None and str(template) not in known
        err = bool(ERROR_RE.search(msg))
        if err or absent:
            rows.append({"line": fmt(r.get("line_no")), "text": msg[:400], "error": err,
                         "absent": absent, "template": fmt(template)})
    rows.sort(key=lambda d: (not d["error"], not d["absent"]))
    note = (f"{len(rows)} of {own.height} line(s) carry an error code / ERROR / exception or "
            "a template the nearest normal window lacks" + (
                "" if known is not None else " (nearest normal window's lines not found)"))
    return rows[:LINES_PER_WINDOW], note


__all__ = ["curves_section", "data_section", "fmt", "leaderboard_section", "settings_section",
           "shap_section", "signatures_section", "windows_section"]
