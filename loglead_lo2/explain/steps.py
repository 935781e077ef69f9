"""The three explanations of a run, each on the held-out rows of :class:`ModelView` s:
nearest-normal mapping, SHAP per registry model and false-positive lists.

Every score, threshold and flag they write is the view's (the detection phase's predictions
when reused), never recomputed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2.artifacts import TEMPLATES_FILE
from loglead_lo2.explain.views import ModelView
from loglead_lo2.progress import progress

log = logging.getLogger(__name__)
Say = Callable[[str], None]

HOLDOUT_NOTE = "computed on the HELD-OUT runs only (models never saw them in training)"


def token_column(view: ModelView, columns: list[str]) -> str:
    """The token list the differences and rarest tokens are read from."""
    return "e_words" if "e_words" in columns else (view.vectorizer.item or "e_words")


def nn_step(view: ModelView, hold: pl.DataFrame, train_normal: pl.DataFrame,
            columns: list[str], holdout_runs: list[str], *, top_k: int, root: Path,
            out_dir: Path, say: Say, warnings: list[str], artifacts: list[Path]
            ) -> dict[str, Any]:
    """``nn_mapping.csv`` + ``.md`` for ``view``; returns the summary block."""
    from loglead_lo2.explain.nearest import nn_mapping, template_labels, write_nn_mapping

    t = time.perf_counter()
    info: dict[str, Any] = {"source": view.key, "top_k": top_k,
                            "pool": "normal sequences of the training runs",
                            "pool_rows": train_normal.height,
                            "pool_runs": sorted(train_normal["run"].unique().to_list())}
    if train_normal.height == 0 or hold.height == 0:
        msg = "[NN] skipped: " + ("no normal sequence in the training runs"
                                  if train_normal.height == 0 else "no held-out sequence")
        warnings.append(msg)
        say(msg)
        info["skipped"] = msg
        return info
    tokens = token_column(view, columns)
    labels = template_labels(root / TEMPLATES_FILE)
    table = nn_mapping(hold, view.scores, view.threshold, train_normal, view.vectorizer,
                       top_k=top_k, token_column=tokens, labels=labels, flags=view.flags)
    vec = view.vectorizer
    space = (f"{view.key} features: {vec.item or '(no tokens)'}"
             + (f" + numeric {','.join(vec.numeric)}" if vec.numeric else "")
             + f", {len(vec.feature_names_):,} columns")
    header = [
        f"Source model: **{view.key}** ({view.origin.get('mode', 'reuse')}); the top "
        f"{table.height} held-out sequences by its score (threshold {view.threshold:.6g}: "
        f"{int(table['flagged'].sum())} of them flagged).",
        f"Nearest normal = highest cosine similarity in the {space}, among the "
        f"{train_normal.height} normal sequences of the {len(info['pool_runs'])} TRAINING "
        "run(s).",
        f"Held-out runs ({len(holdout_runs)}): {', '.join(sorted(holdout_runs))}. "
        f"Every row is {HOLDOUT_NOTE}.",
        f"Tokens ({tokens}) and templates: `token (a/b)` = count in the anomaly / in its "
        "neighbour; tokens absent from the neighbour first, then by share difference.",
    ]
    artifacts += write_nn_mapping(table, out_dir, header)
    info.update(rows=table.height, token_column=tokens, feature_space=space,
                labelled_anomalies=int(table["anomaly"].sum()),
                flagged=int(table["flagged"].sum()),
                mean_cosine=round(float(table["cosine_similarity"].mean() or 0.0), 4),  # type: ignore[arg-type]
                templates_file=str(root / TEMPLATES_FILE) if labels is not None else None)
    say(f"[NN] {table.height} top held-out sequences of {view.key} mapped to their nearest "
        f"training normal (mean cosine {info['mean_cosine']:.3f}) in "
        f"{time.perf_counter() - t:.1f}s")
    return info


def shap_step(views: Mapping[str, ModelView], hold: pl.DataFrame, train: pl.DataFrame,
              settings: Any, held_out_runs: int, out_dir: Path, say: Say,
              warnings: list[str], artifacts: list[Path]) -> dict[str, Any]:
    """SHAP files of every registry view (on the loaded or retrained estimator, hold-out
    rows, background from the rows the model was fitted on); returns the summary blocks."""
    from loglead_lo2.explain.shap_report import explain_model, write_shap, write_shap_values

    info: dict[str, Any] = {}
    for key, view in progress(views.items(), total=len(views), desc="SHAP", unit="model"):
        if view.fitted is None:
            info[key] = {"skipped": "the Isolation Forest is explained by the nearest-normal "
                                    "mapping and its false-positive list, not SHAP"}
            continue
        kind = view.fitted.spec.shap
        if kind == "none":
            info[key] = {"skipped": "registry shap kind 'none' (no explainer for this model)"}
            say(f"[SHAP] {key}: skipped (registry shap kind 'none')")
            continue
        say(f"[SHAP] {key}: {kind} explainer on up to {settings.sample} held-out rows ...")
        fit_rows = train.filter(pl.Series(view.fit_rows))
        try:
            outcome = explain_model(view.fitted, hold, fit_rows, settings)
        except (ValueError, TypeError, RuntimeError, MemoryError) as exc:
            log.debug("SHAP failed for %s", key, exc_info=True)
            msg = f"[SHAP] {key}: failed ({type(exc).__name__}: {exc}); no SHAP files"
            warnings.append(msg)
            say(msg)
            info[key] = {"skipped": msg}
            continue
        for line in outcome.warnings:
            say(line)
        warnings.extend(outcome.warnings)
        paths = write_shap(outcome, out_dir, held_out_runs)
        values_path = write_shap_values(outcome, out_dir)
        if values_path is not None:
            paths.append(values_path)
        artifacts += paths
        top = outcome.table.head(5)["feature"].to_list()
        info[key] = {"explainer": kind, "scale": outcome.scale, "rows": outcome.rows,
                     "background_rows": outcome.background_rows,
                     "background": "rows the model was fitted on (split 'train')",
                     "features_total": outcome.features_total,
                     "features_explained": outcome.features_explained,
                     "seconds": round(outcome.seconds, 2), "top_features": top,
                     "files": [p.name for p in paths], "warnings": outcome.warnings}
        say(f"[SHAP] {key}: {outcome.rows} rows x {outcome.features_explained} features in "
            f"{outcome.seconds:.1f}s; top: {', '.join(top[:3]) or '(none)'}")
    return info


def fp_step(views: Mapping[str, ModelView], hold: pl.DataFrame, train_normal: pl.DataFrame,
            columns: list[str], out_dir: Path, say: Say,
            artifacts: list[Path]) -> dict[str, int]:
    """``false_positives_<key>.csv`` per view; returns the counts."""
    from loglead_lo2.explain.false_positives import false_positives, write_false_positives

    counts: dict[str, int] = {}
    for key, view in views.items():
        fps = false_positives(hold, view.scores, view.threshold, train_normal,
                              token_column(view, columns), flags=view.flags)
        counts[key] = fps.height
        artifacts.append(write_false_positives(fps, out_dir, key))
    say("[FP] false-positive lists: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return counts


__all__ = ["HOLDOUT_NOTE", "TEMPLATES_FILE", "fp_step", "nn_step", "shap_step",
           "token_column"]
