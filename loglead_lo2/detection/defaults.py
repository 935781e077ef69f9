"""Light constants of the detection phase, importable without scikit-learn (the CLI's help)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IF_KEY = "isolation_forest"
"""The Isolation Forest's registry key (one name in every phase)."""

DEFAULT_MODELS: tuple[str, ...] = (
    "event_lr_words",
    "event_surprisal_words",
    "sequence_lr_numeric",
    "sequence_shap_lr_words",
)
"""Default ``--models``: the best supervised (``event_lr_words``) and unsupervised
(``event_surprisal_words``) models of ``benchmarks/explore_models.py`` and the two
sequence-level baselines. ``event_surprisal_words`` replaced LogLead's ``event_dt_trigrams``
(still a key: ``--models event_dt_trigrams``), whose 0/1 leaf scores leave no 1 %
false-positive cut on the windowed sample."""

IF_VECTORIZER: Mapping[str, Any] = {
    "min_df": 5,
    "sublinear_tf": True,
    "idf": True,
    "norm": "l2",
    "oov_feature": True,
}
"""Default token representation of the forest: log counts weighted by their inverse document
frequency over the normal training rows, each row scaled to unit length, plus the ``__oov__``
column (tokens in fewer than ``min_df`` training rows or never seen).

A forest only splits on features that vary among its training rows, so a token it never saw
is invisible in a plain bag; the ``__oov__`` column of rare training tokens varies, and idf
weights with unit-length rows let a row's rare tokens shrink all its ordinary ones. On the
windowed generated sample (8 runs, 5 s windows, newest 2 runs held out, labels = windows
holding an injected event; ``benchmarks/explore_models.py``, mean of 5 forest seeds) the
``e_words`` forest's ROC-AUC is 0.92-0.95 with these settings and 0.80-0.84 with raw counts
(the old default, ``{}``). With ``--if-item e_event_drain_id`` every representation tried
stays near 0.6: the error templates are unseen, so only ``__oov__`` carries them."""

__all__ = ["DEFAULT_MODELS", "IF_KEY", "IF_VECTORIZER"]


def is_isolation_forest(model: Any) -> str | None:
    """``model_check`` for :func:`~loglead_lo2.detection.persistence.load_bundle`: why a
    loaded object is not a fitted Isolation Forest (``None`` when it is)."""
    from sklearn.ensemble import IsolationForest

    if not isinstance(model, IsolationForest):
        return f"holds a {type(model).__name__}, not an IsolationForest."
    if not hasattr(model, "estimators_"):
        return "holds an unfitted IsolationForest."
    return None
