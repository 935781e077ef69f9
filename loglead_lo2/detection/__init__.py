"""Detection phase: features, model registry, run-grouped splits, evaluation, Isolation Forest.

Core API (imported lazily so ``lo2-detect --help`` stays fast):

- :class:`~loglead_lo2.detection.features.ListVectorizer`: sparse bag of tokens from a polars
  ``List[str]`` column plus numeric columns;
- :data:`~loglead_lo2.detection.registry.REGISTRY`: every model by key
  (:class:`~loglead_lo2.detection.registry.ModelSpec`), :data:`DEFAULT_MODELS`,
  :func:`resolve_models`;
- :func:`~loglead_lo2.detection.split.run_grouped_split`: whole runs on one side;
- :func:`~loglead_lo2.detection.evaluate.fit_model`, :func:`score_model`, :func:`evaluate`,
  :func:`per_test_case_recall`, :func:`leakage_report` (and ``evaluate.evaluate``).

Every score is "higher = more anomalous"; predictions are ``score >= threshold``.
"""

from __future__ import annotations

from loglead_lo2._lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    "ListVectorizer": "features",
    "OOVDetector": "detectors",
    "RarityDetector": "detectors",
    "DEFAULT_MODELS": "registry",
    "REGISTRY": "registry",
    "ModelSpec": "registry",
    "available_numeric": "registry",
    "resolve_models": "registry",
    "Split": "split",
    "SplitError": "split",
    "normal_holdout_split": "split",
    "run_grouped_split": "split",
    "FittedModel": "evaluate",
    "fit_model": "evaluate",
    "leakage_report": "evaluate",
    "per_test_case_recall": "evaluate",
    "score_model": "evaluate",
    "threshold_scores": "evaluate",
}


__getattr__ = lazy_getattr(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
