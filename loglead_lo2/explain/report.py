"""``summary.json`` and ``summary.md`` of the explainability phase.

Both say what was computed, on which runs (training vs held-out), with which thresholds,
how many sequences were flagged and how many of those are false positives, which SHAP
reductions were applied and every warning printed during the run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from loglead_lo2.detection.report import settings_text, write_json
from loglead_lo2.errors import UserError
from loglead_lo2.schema import read_parquet, read_parquet_schema, write_text_atomic

SPLIT_NAME = "holdout"


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build_summary(opts: Any, path: Path, df: pl.DataFrame, split: Any, train: pl.DataFrame,
                  hold: pl.DataFrame, views: Mapping[str, Any], nn: Mapping[str, Any],
                  shap: Mapping[str, Any], fp_counts: Mapping[str, int],
                  leak: Mapping[str, Any], comparison: Mapping[str, Any] | None,
                  warnings: list[str], seconds: float,
                  settings: Mapping[str, Any] | None = None,
                  labels: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``summary.json`` content (see the module docstring)."""
    from loglead_lo2.detection.persistence import git_commit, library_versions, utc_now

    models: dict[str, Any] = {}
    for key, view in views.items():
        flagged = int((view.scores >= view.threshold).sum())
        models[key] = {
            "kind": view.kind,
            "description": view.description,
            "training": view.training,
            "threshold": {"value": view.threshold, "source": view.threshold_source,
                          "rule": "score >= threshold"},
            "holdout": {"split": SPLIT_NAME, "rows": hold.height, "flagged": flagged,
                        "false_positives": fp_counts.get(key), **view.metrics},
            "shap": shap.get(key) if not opts.skip_shap else {"skipped": "--skip-shap"},
            "false_positive_file": f"false_positives_{key}.csv",
        }
    options = {k: v for k, v in asdict(opts).items() if k not in ("if_config", "shap")}
    return _plain({
        "phase": "explainability (phase F)",
        "created_at": utc_now(),
        "evaluated_on": "held-out runs only: every score, explanation and list in this folder "
                        "is computed on runs no model was trained on",
        "settings": dict(settings or {}),
        "labels": dict(labels or {}),
        "input": {"file": path, "sequences": df.height, "runs": df["run"].n_unique()},
        "split": {
            "name": SPLIT_NAME, "note": split.note,
            "train_runs": sorted(split.train_runs), "holdout_runs": sorted(split.test_runs),
            "train_rows": train.height, "holdout_rows": hold.height,
            "holdout_anomalous": int(hold["anomaly"].sum()),
            "holdout_normal": int(hold["normal"].sum()),
        },
        "models": models,
        "nn_mapping": dict(nn),
        "leakage": {k: leak.get(k) for k in ("roc_auc", "separability", "limit", "warning")},
        "detection_predictions": comparison,
        "options": options,
        "if_config": None if opts.skip_if else asdict(opts.if_config),
        "shap_settings": asdict(opts.shap),
        "warnings": list(warnings),
        "seconds": round(seconds, 2),
        "versions": library_versions(),
        "git_commit": git_commit(),
    })


def compare_predictions(path: Path, scores: np.ndarray,
                        hold: pl.DataFrame) -> dict[str, Any] | None:
    """Agreement of this run's IF ``scores`` (aligned with ``hold``) with ``path``
    (``lo2_if_predictions.parquet`` of the detection phase): Spearman correlation on the
    shared held-out sequences; ``None`` when the file does not exist."""
    if not path.is_file():
        return None
    try:
        schema = read_parquet_schema(path)
        cols = [c for c in ("seq_id", "score_if", "split") if c in schema]
        prev = read_parquet(path, columns=cols)
    except UserError as exc:
        return {"file": str(path), "error": str(exc)}
    if "score_if" not in prev.columns:
        return {"file": str(path), "error": "no score_if column"}
    ours = hold.select("seq_id").with_columns(ours=pl.Series(scores, dtype=pl.Float64))
    both = ours.join(prev, on="seq_id", how="inner")
    out: dict[str, Any] = {"file": str(path), "shared_holdout_sequences": both.height,
                           "spearman": None}
    if both.height >= 3:
        r = both.select(pl.corr(pl.col("ours").rank(), pl.col("score_if").rank())).item()
        out["spearman"] = None if r is None or not np.isfinite(r) else round(float(r), 4)
    if "split" in both.columns:
        counts = both.group_by("split").len().sort("split")
        out["their_split_of_our_holdout"] = dict(counts.iter_rows())
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
    return f"{shap['background_rows']} background rows (training)"


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
        "| model | kind | threshold | threshold source | flagged | false positives | "
        "FP rate correct | FP rate non-target | precision | recall | ROC-AUC | SHAP |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, m in s["models"].items():
        h, shap = m["holdout"], m["shap"] or {}
        shap_txt = (f"{shap['explainer']}: {shap['rows']} rows x {shap['features_explained']} "
                    "features" if "explainer" in shap else shap.get("skipped", "n/a"))
        lines.append(
            f"| {key} | {m['kind']} | {_f(m['threshold']['value'], 6)} | "
            f"{m['threshold']['source']} | {h['flagged']} | {h['false_positives']} | "
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
    cmp_ = s.get("detection_predictions")
    if cmp_:
        lines += ["", "## Detection-phase IF predictions", ""]
        lines.append(f"- `{cmp_.get('file')}`: " + (
            cmp_["error"] if "error" in cmp_ else
            f"{cmp_['shared_holdout_sequences']} shared held-out sequences, Spearman "
            f"{_f(cmp_.get('spearman'))} with this run's IF scores; their split labels of "
            f"these sequences: {cmp_.get('their_split_of_our_holdout', 'n/a')}"))
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in s["warnings"]] or ["- none"]
    lines += ["", f"Run time {s['seconds']:.1f}s; git commit {s.get('git_commit') or 'n/a'}.",
              ""]
    return "\n".join(lines)


def write_summary(summary: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """``summary.json`` and ``summary.md`` in ``out_dir``."""
    json_path = write_json(out_dir / "summary.json", summary)
    md_path = out_dir / "summary.md"
    write_text_atomic(md_path, summary_markdown(summary))
    return [json_path, md_path]


__all__ = ["build_summary", "compare_predictions", "summary_markdown", "write_summary"]
