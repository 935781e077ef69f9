"""SHAP explanations of fitted models: see :mod:`loglead_lo2.detection.shap`.

The detection phase writes SHAP top features for its ``shap_in_detection`` models, so the
code lives with the detection phase (no phase imports a later one); this module keeps the
explainability phase's import path.
"""

from __future__ import annotations

from loglead_lo2.detection.shap import (
    EXPLAINERS,
    SHAP_COLUMNS,
    ShapOutcome,
    ShapSettings,
    explain_model,
    plot_summary,
    write_shap,
    write_shap_values,
)

__all__ = ["EXPLAINERS", "SHAP_COLUMNS", "ShapOutcome", "ShapSettings", "explain_model",
           "plot_summary", "write_shap",
           "write_shap_values"]
