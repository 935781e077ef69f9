"""``summary.json`` and ``summary.md`` of the explainability phase.

Both say where the models come from (reused from a detection run, or retrained and then
compared with that run's predictions), what was computed, on which runs (training vs
held-out), with which thresholds, how many sequences were flagged and how many of those are
false positives, which SHAP reductions were applied and every warning printed during the
run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2 import artifacts as A
from loglead_lo2.detection.report import settings_text, write_json
from loglead_lo2.errors import UserError
from loglead_lo2.plain import plain
from loglead_lo2.schema import read_parquet, read_parquet_schema, write_text_atomic

SPLIT_NAME = "holdout"


def build_summary(opts: Any, path: Path, prep: Any, train: pl.DataFrame,
                  hold: pl.DataFrame, nn: Mapping[str, Any], shap: Mapping[str, Any],
                  fp_counts: Mapping[str, int], leak: Mapping[str, Any],
                  warnings: list[str], seconds: float) -> dict[str, Any]:
    """The ``summary.json`` content (see the module docstring); ``prep`` is the run's
    :class:`~loglead_lo2.explain.pipeline.Prepared`."""
    from loglead_lo2.detection.persistence import git_commit, library_versions, utc_now

    models: dict[str, Any] = {}
    for key, view in prep.views.items():
        models[key] = {
            "kind": view.kind,
            "description": view.description,
            "origin": {k: v for k, v in view.origin.items()},
            "training": view.training,
            "threshold": {"value": view.threshold, "source": view.threshold_source,
                          "rule": view.threshold_rule, "decision": "score >= threshold"},
            "holdout": {"split": SPLIT_NAME, "rows": hold.height,
                        "flagged": int(view.flags.sum()),
                        "false_positives": fp_counts.get(key), **view.metrics},
            "shap": shap.get(key) if not opts.skip_shap else {"skipped": "--skip-shap"},
            "false_positive_file": f"false_positives_{key}.csv",
        }
    options = {k: v for k, v in asdict(opts).items()
               if k not in ("if_config", "shap", "thresholds", "training_flags")}
    sp = prep.split
    return plain({
        "phase": "explainability (phase F)",
        "created_at": utc_now(),
        "evaluated_on": "held-out runs only: every score, explanation and list in this folder "
                        "is computed on runs no model was trained on",
        "models_from": prep.source,
        "settings": dict(prep.settings),
        "labels": dict(prep.labels),
        "input": {"file": path, "sequences": prep.df.height,
                  "runs": prep.df["run"].n_unique()},
        "split": {
            "name": SPLIT_NAME, "note": sp.get("note"),
            "train_runs": sp["train_runs"], "holdout_runs": sp["holdout_runs"],
            "train_rows": train.height, "holdout_rows": hold.height,
            "holdout_anomalous": int(hold["anomaly"].sum()),
            "holdout_normal": int(hold["normal"].sum()),
        },
        "models": models,
        "nn_mapping": dict(nn),
        "leakage": {k: leak.get(k) for k in ("roc_auc", "separability", "limit", "warning")},
        "options": options,
        "training_flags": [f for _a, f, _v in opts.training_flags],
        "if_config": prep.if_config,
        "threshold_settings": asdict(opts.thresholds) if opts.retrain else None,
        "shap_settings": asdict(opts.shap),
        "warnings": list(warnings),
        "seconds": round(seconds, 2),
        "versions": library_versions(),
        "git_commit": git_commit(),
    })


def compare_with_detection(metrics: Path, views: Mapping[str, Any],
                           hold: pl.DataFrame) -> dict[str, Any]:
    """After a retrain: how each model's held-out scores compare with the detection phase's
    ``<metrics>/<key>_predictions.parquet`` (shared rows, largest score difference, Spearman
    correlation, identical flags); a model without such a file is left out."""
    from loglead_lo2.explain.reuse import detection_key

    out: dict[str, Any] = {}
    for key, view in views.items():
        path = metrics / A.predictions_file(detection_key(key))
        if not path.is_file():
            continue
        try:
            schema = read_parquet_schema(path)
            if not {"seq_id", "score", "pred"} <= set(schema):
                out[key] = {"file": str(path), "error": "no seq_id/score/pred columns"}
                continue
            prev = read_parquet(path, columns=["seq_id", "score", "pred"])
        except UserError as exc:
            out[key] = {"file": str(path), "error": str(exc)}
            continue
        ours = hold.select("seq_id").with_columns(
            ours=pl.Series(view.scores, dtype=pl.Float64),
            ours_pred=pl.Series(view.flags.astype(np.int8), dtype=pl.Int8))
        both = ours.join(prev, on="seq_id", how="inner")
        entry: dict[str, Any] = {"file": str(path), "shared_holdout_rows": both.height,
                                 "max_abs_score_difference": None, "spearman": None,
                                 "same_flags": None}
        if both.height:
            diff = (both["ours"] - both["score"]).abs().max()
            entry["max_abs_score_difference"] = float(diff)  # type: ignore[arg-type]
            entry["same_flags"] = bool((both["ours_pred"] == both["pred"].cast(pl.Int8)).all())
        if both.height >= 3:
            r = both.select(pl.corr(pl.col("ours").rank(), pl.col("score").rank())).item()
            entry["spearman"] = None if r is None or not np.isfinite(r) else round(float(r), 6)
        out[key] = entry
    return out


def _dropped_text(labels: Mapping[str, Any]) -> str:
    if labels.get("mode") != "target-service":
        return ""
    return (f" Target-service labels: the {labels.get('non_target_rows', 0):,} rows of error "
            "cases in services they do not target are normal rows.")


def _f(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return str(value)


def _background(shap: Mapping[str, Any]) -> str:
    if shap["explainer"] == "tree":
        return "no background (tree_path_dependent: the trees' own cover statistics)"
    return f"{shap['background_rows']} background rows (the model's training rows)"


def _origin_text(src: Mapping[str, Any]) -> str:
    if src.get("mode") == "reuse":
        ignored = src.get("ignored_flags") or []
        return (f"Models: **reused** from the detection run `{src.get('detect_run')}` (its "
                "bundles, split, scores, thresholds and flags, unchanged)"
                + (f"; ignored training flags: {', '.join(ignored)}" if ignored else "") + ".")
    return ("Models: **retrained** (--retrain) through the detection phase's model path on "
            "the split below.")


def summary_markdown(s: Mapping[str, Any]) -> str:
    """Readable ``summary.md``."""
    sp = s["split"]
    lines = [
        "# LO2 explainability (phase F)",
        "",
        "**Every score, explanation and list here is computed on the HELD-OUT runs only; "
        "no model was trained on them.**",
        "",
        f"Input: `{s['input']['file']}` ({s['input']['sequences']:,} sequences, "
        f"{s['input']['runs']} runs). Created {s['created_at']}.",
        "",
        f"Settings: {settings_text(s.get('settings'))}."
        + _dropped_text(s.get("labels") or {}),
        "",
        _origin_text(s.get("models_from") or {}),
        "",
        "## Split (whole runs)",
        "",
        f"- {sp['note']}",
        f"- training runs ({len(sp['train_runs'])}, {sp['train_rows']:,} sequences): "
        + ", ".join(sp["train_runs"]),
        f"- held-out runs ({len(sp['holdout_runs'])}, {sp['holdout_rows']:,} sequences: "
        f"{sp['holdout_anomalous']} anomalous, {sp['holdout_normal']} normal): "
        + ", ".join(sp["holdout_runs"]),
        "",
        "## Models on the held-out runs",
        "",
        "| model | kind | threshold | threshold rule | threshold source | flagged | "
        "false positives | FP rate correct | FP rate non-target | precision | recall | "
        "ROC-AUC | SHAP |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, m in s["models"].items():
        h, shap = m["holdout"], m["shap"] or {}
        shap_txt = (f"{shap['explainer']}: {shap['rows']} rows x {shap['features_explained']} "
                    "features" if "explainer" in shap else shap.get("skipped", "n/a"))
        lines.append(
            f"| {key} | {m['kind']} | {_f(m['threshold']['value'], 6)} | "
            f"{m['threshold']['rule']} | {m['threshold']['source']} | {h['flagged']} | "
            f"{h['false_positives']} | "
            f"{_f(h.get('fp_rate_correct'))} | {_f(h.get('fp_rate_non_target'))} | "
            f"{_f(h.get('precision'))} | {_f(h.get('recall'))} | {_f(h.get('roc_auc'))} | "
            f"{shap_txt.replace('|', '/')} |"
        )
    nn = s["nn_mapping"]
    lines += ["", "## Nearest-normal mapping", ""]
    if "skipped" in nn:
        lines.append(f"Skipped: {nn['skipped']}")
    else:
        lines += [
            f"- source: **{nn['source']}**, top {nn['rows']} held-out sequences by score "
            f"({nn['labelled_anomalies']} labelled anomalous, {nn['flagged']} flagged)",
            f"- feature space: {nn['feature_space']}; pool: {nn['pool_rows']} normal "
            f"sequences of {len(nn['pool_runs'])} training run(s); mean cosine "
            f"{_f(nn['mean_cosine'], 3)}",
            "- files: `nn_mapping.csv`, `nn_mapping.md`",
        ]
    lines += ["", "## SHAP", ""]
    for key, m in s["models"].items():
        shap = m["shap"] or {}
        if "explainer" in shap:
            lines.append(
                f"- **{key}** ({shap['explainer']}, {shap['scale']}): {shap['rows']} held-out "
                f"rows, {_background(shap)}, "
                f"{shap['features_explained']:,} of {shap['features_total']:,} features; top: "
                f"{', '.join(shap['top_features']) or '(none)'}; files: "
                + ", ".join(f"`{f}`" for f in shap["files"])
            )
        else:
            lines.append(f"- **{key}**: {shap.get('skipped', 'n/a')}")
    lines += ["", "## False positives (held-out normal sequences flagged at the threshold)", ""]
    for key, m in s["models"].items():
        lines.append(f"- {key}: {m['holdout']['false_positives']} in "
                     f"`{m['false_positive_file']}`")
    cmp_ = (s.get("models_from") or {}).get("comparison") or {}
    if cmp_:
        lines += ["", "## Retrained vs detection predictions (held-out rows)", ""]
        for key, c in cmp_.items():
            lines.append(f"- {key}, `{c.get('file')}`: " + (
                c["error"] if "error" in c else
                f"{c['shared_holdout_rows']} shared rows, max |score difference| "
                f"{_f(c.get('max_abs_score_difference'), 3)}, Spearman {_f(c.get('spearman'))}, "
                f"same flags: {c.get('same_flags')}"))
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in s["warnings"]] or ["- none"]
    lines += ["", f"Run time {s['seconds']:.1f}s; git commit {s.get('git_commit') or 'n/a'}.",
              ""]
    return "\n".join(lines)


def write_summary(summary: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """``summary.json`` and ``summary.md`` in ``out_dir``."""
    json_path = write_json(out_dir / A.SUMMARY_JSON, summary)
    md_path = out_dir / A.SUMMARY_MD
    write_text_atomic(md_path, summary_markdown(summary))
    return [json_path, md_path]


__all__ = ["build_summary", "compare_with_detection", "summary_markdown", "write_summary"]
