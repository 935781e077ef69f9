"""Explainability phase (F): why a sequence scores as anomalous, on held-out runs only.

By default the models explained are the detection phase's own (its bundles, split, scores,
thresholds and flags in ``<metrics>``); ``--retrain`` fits them again through detection's
model path.

- :func:`~loglead_lo2.explain.pipeline.run_explain` with
  :class:`~loglead_lo2.explain.pipeline.ExplainOptions`: the whole phase (what
  ``lo2-explain`` / ``demo/lo2_e2e/lo2_phase_f_explainability.py`` run);
- :mod:`~loglead_lo2.explain.reuse`: reading and checking the detection run's files;
  :mod:`~loglead_lo2.explain.retrain`: ``--retrain`` through
  :func:`loglead_lo2.detection.runner.run_model`;
- :func:`~loglead_lo2.explain.nearest.nn_mapping`: top anomalies next to their nearest normal
  training sequence, with the tokens and templates that differ;
- :func:`~loglead_lo2.explain.shap_report.explain_model`: SHAP values of a fitted registry
  model, explainer chosen by the registry's ``shap`` kind;
- :func:`~loglead_lo2.explain.false_positives.false_positives`: held-out normal sequences
  flagged at a model's threshold, with their rarest tokens.

Submodules are imported lazily so ``--help`` stays fast.
"""

from __future__ import annotations

from loglead_lo2._lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    "ExplainOptions": "pipeline",
    "ExplainResult": "pipeline",
    "run_explain": "pipeline",
    "ModelSource": "views",
    "ModelView": "views",
    "build_view": "views",
    "read_detect_run": "reuse",
    "load_saved": "reuse",
    "nn_mapping": "nearest",
    "nearest_rows": "nearest",
    "token_differences": "nearest",
    "ShapSettings": "shap_report",
    "ShapOutcome": "shap_report",
    "explain_model": "shap_report",
    "EXPLAINERS": "shap_report",
    "false_positives": "false_positives",
    "rarest_tokens": "false_positives",
}


__getattr__ = lazy_getattr(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
