"""The model registry: one dict from a key to everything needed to train and score a model.

Each :class:`ModelSpec` names its feature set (token-list column, numeric columns and
:class:`~loglead_lo2.detection.features.ListVectorizer` settings), which rows it trains on
(``all`` training rows, or ``normal`` ones only for unsupervised models), a factory for an
unfitted estimator with its parameters, **one score adapter** (higher = more anomalous for every
model), a default decision threshold on that score and the SHAP explainer kind. The CLI's
choices, ``--list-models``, the tests and the explainability phase all read :data:`REGISTRY`.

Naming follows LogLead's LO2 demo: ``event_<model>_<features>`` models are trained, like there,
on sequence rows using the bag of the sequence's event tokens (``e_words`` / ``e_trigrams`` /
``e_event_drain_id`` templates); ``sequence_*`` models use sequence-level numeric columns or a
length-normalised bag of words. The Isolation Forest (``isolation_forest``) is an ordinary
entry: the forest step of a run configures it from the ``--if-*`` flags
(:func:`loglead_lo2.detection.iforest.forest_spec`) and runs it through the same runner.

``benchmarks/explore_models.py`` compares the models on a windowed generated sample against
the injected error events: ``event_surprisal_words`` (unsupervised) and ``event_lr_words``
(supervised) find them best.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import LinearSVC, OneClassSVM
from sklearn.tree import DecisionTreeClassifier

from loglead_lo2.detection.defaults import DEFAULT_MODELS, IF_KEY, IF_VECTORIZER
from loglead_lo2.detection.detectors import OOVDetector, RarityDetector
from loglead_lo2.detection.features import ListVectorizer
from loglead_lo2.errors import UserError

SEED = 42


# -- estimator factories (module-level so specs stay picklable; heavy imports are lazy) ------
def make_random_forest(**params: Any) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(**params)


def make_isolation_forest(**params: Any) -> Any:
    from sklearn.ensemble import IsolationForest

    return IsolationForest(**params)


def make_xgboost(**params: Any) -> Any:
    """``xgboost.XGBClassifier`` (xgboost is imported only when this model is used)."""
    try:
        from xgboost import XGBClassifier
    except ImportError as exc:  # pragma: no cover - xgboost-cpu is a declared dependency
        raise UserError(
            "event_xgb_words needs xgboost: pip install xgboost-cpu (or pick another model)."
        ) from exc
    return XGBClassifier(**params)


# -- score adapters: higher = more anomalous ---------------------------------------------
def _score_proba(est: Any, X: Any) -> np.ndarray:
    classes = list(est.classes_)
    return est.predict_proba(X)[:, classes.index(1)]


def _score_decision(est: Any, X: Any) -> np.ndarray:
    return est.decision_function(X)


def _score_neg_decision(est: Any, X: Any) -> np.ndarray:
    return -est.decision_function(X)


def _score_neg_score_samples(est: Any, X: Any) -> np.ndarray:
    return -est.score_samples(X)


def _score_min_distance(est: Any, X: Any) -> np.ndarray:
    return est.transform(X).min(axis=1)


SCORE_ADAPTERS: dict[str, Callable[[Any, Any], np.ndarray]] = {
    "proba": _score_proba,  # P(anomaly) of a classifier
    "decision": _score_decision,  # signed margin (LinearSVC) or detector score (Rarity, OOV)
    "neg_decision": _score_neg_decision,  # OneClassSVM: negative margin
    "neg_score_samples": _score_neg_score_samples,  # LOF: negated local density score
    "min_distance": _score_min_distance,  # KMeans: distance to the nearest centroid
}


# -- thresholds on the adapter's scale (functions of the fitted estimator) ---------------------
def _threshold_attr(est: Any) -> float:
    return float(est.threshold_)


def _threshold_neg_offset(est: Any) -> float:
    return float(-est.offset_)


# -- parameter adaptation to the number of training rows -------------------------------------
def _adapt_lof(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    if n_rows <= params.get("n_neighbors", 20):
        params["n_neighbors"] = max(1, n_rows - 1)
    return params


def _adapt_forest(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    """An integer ``max_samples`` above the training rows is clamped to them."""
    value = params.get("max_samples")
    if isinstance(value, int) and not isinstance(value, bool) and value > n_rows:
        params["max_samples"] = max(1, n_rows)
    return params


def _adapt_kmeans(params: dict[str, Any], n_rows: int) -> dict[str, Any]:
    if n_rows < params.get("n_clusters", 8):
        params["n_clusters"] = max(1, n_rows)
    return params


@dataclass(frozen=True)
class ModelSpec:
    """Everything the pipeline needs to know about one model; see the module docstring."""

    key: str
    kind: str  # "supervised" | "unsupervised"
    description: str
    item: str | None
    numeric: tuple[str, ...]
    vectorizer: Mapping[str, Any]
    train_on: str  # "all" | "normal"
    factory: Callable[..., Any]
    params: Mapping[str, Any]
    shap: str  # "linear" | "tree" | "kernel" | "none"
    score: str = "proba"  # key of SCORE_ADAPTERS
    threshold: float | Callable[[Any], float] | None = 0.5
    """Decision threshold on the score scale: a number, a function of the fitted estimator,
    or ``None`` = the 99th percentile of the training normal rows' scores."""
    cutoff: str = ""
    """What the spec's own ``threshold`` means, for reports (empty: "model default (<score>
    scale)")."""
    numeric_len_columns: bool = False  # also use every ``*_len`` column present in the data
    metric_columns: bool = False
    """Also use the metric features present in the data (``mx_*`` rate/mean/max columns of
    ``lo2-load --load-metrics --save-parquet``; :mod:`loglead_lo2.enhancers.metric_features`)."""
    shap_in_detection: bool = False
    """Also write SHAP top features (``<metrics>/shap_<key>_*``) in the detection phase."""
    adapt: Callable[[dict[str, Any], int], dict[str, Any]] | None = field(
        default=None, repr=False
    )
    max_fit_rows: int | None = None
    """Fit on a seeded, run-stratified sample of at most this many training rows (models
    whose fit does not scale to full LO2; :mod:`~loglead_lo2.detection.budget`)."""
    fit_bytes_per_entry: float = 48.0
    """Estimated fit memory per non-zero token entry (feature matrix, its transient copies and
    the estimator's own copy): the memory guard's estimate."""

    @property
    def supervised(self) -> bool:
        return self.kind == "supervised"

    @property
    def features(self) -> str:
        """Short text of the feature set, e.g. ``e_words (bag, min_df=2)``."""
        parts = []
        if self.item:
            opts = ", ".join(f"{k}={v}" for k, v in sorted(self.vectorizer.items()))
            parts.append(f"{self.item} bag" + (f" ({opts})" if opts else ""))
        nums = (list(self.numeric) + (["*_len"] if self.numeric_len_columns else [])
                + (["mx_* metric features"] if self.metric_columns else []))
        if nums:
            parts.append("numeric " + ",".join(nums))
        return " + ".join(parts)

    def make_vectorizer(
        self, numeric: Sequence[str] | None = None, **overrides: Any
    ) -> ListVectorizer:
        """Unfitted vectoriser; ``numeric`` replaces the spec's columns (see
        :func:`available_numeric`), ``overrides`` replace vectoriser settings (guards)."""
        kwargs = {**self.vectorizer, **overrides}
        cols = self.numeric if numeric is None else tuple(numeric)
        return ListVectorizer(self.item, cols, **kwargs)

    def make_estimator(self, **overrides: Any) -> Any:
        """Unfitted estimator from ``factory(**params)`` with ``overrides`` applied."""
        return self.factory(**{**self.params, **overrides})

    def scores(self, estimator: Any, X: Any) -> np.ndarray:
        """THE score adapter: float64 array, higher = more anomalous."""
        out = SCORE_ADAPTERS[self.score](estimator, X)
        return np.asarray(out, dtype=np.float64).ravel()

    def default_threshold(self, estimator: Any) -> float | None:
        """Threshold from the spec (number or function of ``estimator``), else ``None``."""
        if self.threshold is None or isinstance(self.threshold, (int, float)):
            return None if self.threshold is None else float(self.threshold)
        return float(self.threshold(estimator))


_LR = {"C": 1.0, "max_iter": 2000, "class_weight": "balanced", "random_state": SEED}
_WORDS = {"min_df": 2, "max_features": 100_000, "sublinear_tf": True}
_UNSUP_WORDS = {
    "min_df": 2,
    "max_features": 20_000,
    "sublinear_tf": True,
    "norm": "l2",
    "oov_feature": True,
}
_EVENT_NOTE = " Event-level as in LogLead's LO2 demo: trained on sequence rows' e_words tokens."
_DRAIN_NOTE = (
    " Uses the bag of Drain template ids (e_event_templates, from e_event_drain_id): its bundle"
    " scores other logs only when they"
    " are loaded with the training load's Drain state (lo2-load --drain-state, saved beside the"
    " bundle); the words model is preferred where figures are close."
)
_METRIC_NOTE = (
    " Needs lo2-load --load-metrics --save-parquet (the mx_* columns); a row without a sample"
    " gets the training mean (docs/metrics.md)."
)
_FOREST = {"n_estimators": 100, "max_samples": "auto", "contamination": "auto",
           "random_state": SEED}
_FOREST_SPEC: dict[str, Any] = {
    "factory": make_isolation_forest, "params": _FOREST, "score": "neg_score_samples",
    "threshold": _threshold_neg_offset, "adapt": _adapt_forest, "fit_bytes_per_entry": 72.0,
    "cutoff": "contamination=auto (the forest's own cut-off on its training scores)",
}
"""What every Isolation Forest spec shares: estimator, score, own cut-off, row adaptation."""
_DT_WORDS = {"max_depth": 20, "min_samples_leaf": 5, "max_leaf_nodes": 512,
             "class_weight": "balanced", "random_state": SEED}
_SURPRISAL = {"top_k": 1, "contamination": 0.01, "tie_weight": 0.01}
_SURPRISAL_TEXT = (
    "Surprisal: the highest -log((df + 1) / (n + 2)) among a row's {what} (df = normal"
    " training rows holding it; never seen: log(n + 2)) plus 0.01 x the row's summed surprisal,"
    " a small continuous term that breaks ties; trained on normal rows."
)

# Sampling caps (rows a model is fitted on at most; see ModelSpec.max_fit_rows): kernel and
# neighbour methods are quadratic in the rows (LOF also scores every row against its training
# rows), the forest of 200 trees and liblinear's SVM take minutes beyond these, and the tree
# over ~500 trigrams a row gigabytes; every other model fits all rows (measured in
# docs/detection.md, "Full size").
_NEIGHBOUR_ROWS = 10_000
_FOREST_ROWS = 100_000
_TRIGRAM_TREE_ROWS = 50_000
_LSVM_ROWS = 100_000

_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        key=IF_KEY,
        kind="unsupervised",
        description="Isolation Forest on idf-weighted, l2-normalised log word counts plus an"
        " out-of-vocabulary column, trained on normal rows; score = -score_samples. The"
        " forest step of every run (configured by the --if-* flags) runs this entry.",
        item="e_words", numeric=(), vectorizer=IF_VECTORIZER, train_on="normal",
        shap="none", **_FOREST_SPEC,
    ),
    ModelSpec(
        key="event_lr_words",
        kind="supervised",
        description="Logistic regression on the bag of words (log counts)." + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer=_WORDS, train_on="all",
        factory=LogisticRegression, params=_LR, shap="linear",
    ),
    ModelSpec(
        key="event_dt_trigrams",
        kind="supervised",
        description="Decision tree on character trigram counts (LogLead's best on LO2)."
        " Event-level: trained on sequence rows' e_trigrams tokens.",
        item="e_trigrams", numeric=(),
        vectorizer={"min_df": 2, "max_features": 50_000}, train_on="all",
        factory=DecisionTreeClassifier,
        params={"max_depth": 20, "min_samples_leaf": 1, "max_leaf_nodes": 512,
                "class_weight": "balanced", "random_state": SEED},
        shap="tree",
        max_fit_rows=_TRIGRAM_TREE_ROWS, fit_bytes_per_entry=72.0,
    ),
    ModelSpec(
        key="event_lsvm_words",
        kind="supervised",
        description="Linear SVM on the bag of words; score = signed margin." + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer=_WORDS, train_on="all",
        factory=LinearSVC,
        params={"C": 1.0, "max_iter": 5000, "class_weight": "balanced", "random_state": SEED},
        shap="linear", score="decision", threshold=0.0,
        max_fit_rows=_LSVM_ROWS, fit_bytes_per_entry=72.0,
    ),
    ModelSpec(
        key="event_rf_words",
        kind="supervised",
        description="Random forest on word counts." + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer={"min_df": 2, "max_features": 100_000},
        train_on="all", factory=make_random_forest,
        params={"n_estimators": 200, "max_depth": 20, "max_features": 0.3,
                "max_leaf_nodes": 512, "class_weight": "balanced", "n_jobs": -1,
                "random_state": SEED},
        shap="tree",
        max_fit_rows=_FOREST_ROWS, fit_bytes_per_entry=72.0,
    ),
    ModelSpec(
        key="event_xgb_words",
        kind="supervised",
        description="Gradient-boosted trees (XGBoost, hist) on word counts." + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer={"min_df": 2, "max_features": 100_000},
        train_on="all", factory=make_xgboost,
        params={"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1,
                "tree_method": "hist", "eval_metric": "logloss", "n_jobs": 2,
                "random_state": SEED},
        shap="tree",
        fit_bytes_per_entry=80.0,
    ),
    ModelSpec(
        key="event_lof_words",
        kind="unsupervised",
        description="Local outlier factor (novelty mode) on l2-normalised log word counts,"
        " trained on normal rows; score = -score_samples." + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer=_UNSUP_WORDS, train_on="normal",
        factory=LocalOutlierFactor, params={"n_neighbors": 20, "novelty": True},
        shap="kernel", score="neg_score_samples", threshold=_threshold_neg_offset,
        adapt=_adapt_lof,
        max_fit_rows=_NEIGHBOUR_ROWS, fit_bytes_per_entry=60.0,
    ),
    ModelSpec(
        key="event_kmeans_words",
        kind="unsupervised",
        description="K-means on l2-normalised log word counts of normal rows; score ="
        " distance to the nearest centroid." + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer=_UNSUP_WORDS, train_on="normal",
        factory=KMeans, params={"n_clusters": 8, "n_init": 10, "random_state": SEED},
        shap="kernel", score="min_distance", threshold=None, adapt=_adapt_kmeans,
        fit_bytes_per_entry=60.0,
    ),
    ModelSpec(
        key="event_oneclass_svm_words",
        kind="unsupervised",
        description="One-class SVM (RBF) on l2-normalised log word counts of normal rows;"
        " score = -decision_function." + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer=_UNSUP_WORDS, train_on="normal",
        factory=OneClassSVM, params={"kernel": "rbf", "gamma": "scale", "nu": 0.1},
        shap="kernel", score="neg_decision", threshold=0.0,
        max_fit_rows=_NEIGHBOUR_ROWS, fit_bytes_per_entry=60.0,
    ),
    ModelSpec(
        key="event_rarity_words",
        kind="unsupervised",
        description="Rarity: mean rarity of a row's 5 rarest words among normal training"
        " rows (unknown words count as never seen)." + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer={"min_df": 1, "oov_feature": True},
        train_on="normal", factory=RarityDetector, params={"top_k": 5, "contamination": 0.01},
        shap="none", score="decision", threshold=_threshold_attr,
    ),
    ModelSpec(
        key="event_oov_words",
        kind="unsupervised",
        description="Out-of-vocabulary: number of words never seen in normal training rows."
        + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer={"min_df": 1, "oov_feature": True},
        train_on="normal", factory=OOVDetector, params={"normalize": False},
        shap="none", score="decision", threshold=0.5,
    ),
    ModelSpec(
        key="event_surprisal_words",
        kind="unsupervised",
        description=_SURPRISAL_TEXT.format(what="words") + " Best unsupervised model on the"
        " windowed generated sample (benchmarks/explore_models.py)." + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer={"min_df": 1, "oov_feature": True},
        train_on="normal", factory=RarityDetector, params=_SURPRISAL,
        shap="none", score="decision", threshold=_threshold_attr,
    ),
    ModelSpec(
        key="event_surprisal_templates",
        kind="unsupervised",
        description=_SURPRISAL_TEXT.format(what="Drain templates") + _DRAIN_NOTE,
        item="e_event_templates", numeric=(), vectorizer={"min_df": 1, "oov_feature": True},
        train_on="normal", factory=RarityDetector, params=_SURPRISAL,
        shap="none", score="decision", threshold=_threshold_attr,
    ),
    ModelSpec(
        key="event_lr_templates",
        kind="supervised",
        description="Logistic regression on the binary bag of Drain templates (which templates"
        " a row holds)." + _DRAIN_NOTE,
        item="e_event_templates", numeric=(), vectorizer={"min_df": 1, "binary": True},
        train_on="all", factory=LogisticRegression, params=_LR, shap="linear",
    ),
    ModelSpec(
        key="event_dt_words",
        kind="supervised",
        description="Decision tree on binary word presence (the LO2 paper's tree, on words);"
        " leaves of >= 5 rows give graded scores, so a 1 % false-positive cut exists."
        + _EVENT_NOTE,
        item="e_words", numeric=(), vectorizer={"min_df": 2, "binary": True}, train_on="all",
        factory=DecisionTreeClassifier,
        params=_DT_WORDS,
        shap="tree",
        fit_bytes_per_entry=72.0,
    ),
    ModelSpec(
        key="metrics_lr",
        kind="supervised",
        description="Logistic regression on the metric features alone (standardised rates,"
        " means and maxima of the service container's and the host's metrics over the"
        " sequence's span): the metrics-only baseline of the logs/metrics ablation." + _METRIC_NOTE,
        item=None, numeric=(), vectorizer={}, train_on="all",
        factory=LogisticRegression, params=_LR, shap="linear", metric_columns=True,
    ),
    ModelSpec(
        key="metrics_dt",
        kind="supervised",
        description="Decision tree on the metric features alone (leaves of >= 5 rows)."
        + _METRIC_NOTE,
        item=None, numeric=(), vectorizer={}, train_on="all",
        factory=DecisionTreeClassifier, params=_DT_WORDS, shap="tree", metric_columns=True,
        fit_bytes_per_entry=72.0,
    ),
    ModelSpec(
        key="metrics_iforest",
        kind="unsupervised",
        description="Isolation Forest on the metric features alone, trained on normal rows;"
        " score = -score_samples." + _METRIC_NOTE,
        item=None, numeric=(), vectorizer={}, train_on="normal",
        shap="kernel", metric_columns=True, **_FOREST_SPEC,
    ),
    ModelSpec(
        key="event_lr_words_metrics",
        kind="supervised",
        description="event_lr_words plus the standardised metric features (logs + metrics)."
        + _METRIC_NOTE,
        item="e_words", numeric=(), vectorizer=_WORDS, train_on="all",
        factory=LogisticRegression, params=_LR, shap="linear", metric_columns=True,
    ),
    ModelSpec(
        key="event_dt_words_metrics",
        kind="supervised",
        description="event_dt_words plus the metric features (logs + metrics)." + _METRIC_NOTE,
        item="e_words", numeric=(), vectorizer={"min_df": 2, "binary": True}, train_on="all",
        factory=DecisionTreeClassifier, params=_DT_WORDS, shap="tree", metric_columns=True,
        fit_bytes_per_entry=72.0,
    ),
    ModelSpec(
        key="isolation_forest_metrics",
        kind="unsupervised",
        description="The Isolation Forest's idf-weighted word bag plus the standardised metric"
        " features (logs + metrics), trained on normal rows; score = -score_samples."
        + _METRIC_NOTE,
        item="e_words", numeric=(), vectorizer=IF_VECTORIZER, train_on="normal",
        shap="kernel", metric_columns=True, **_FOREST_SPEC,
    ),
    ModelSpec(
        key="sequence_lr_numeric",
        kind="supervised",
        description="Logistic regression on standardised sequence numbers: seq_len,"
        " duration_sec and every *_len column present (prone to length leakage).",
        item=None, numeric=("seq_len", "duration_sec"), vectorizer={}, train_on="all",
        factory=LogisticRegression, params=_LR, shap="linear", numeric_len_columns=True,
    ),
    ModelSpec(
        key="sequence_lr_words",
        kind="supervised",
        description="Logistic regression on the sequence's l2-normalised log word counts"
        " (length-independent bag of words).",
        item="e_words", numeric=(), vectorizer={**_WORDS, "norm": "l2"}, train_on="all",
        factory=LogisticRegression, params={**_LR, "C": 10.0}, shap="linear",
    ),
    ModelSpec(
        key="sequence_shap_lr_words",
        kind="supervised",
        description="As sequence_lr_words with the 2,000 most frequent words, sized for"
        " SHAP (linear explainer): its SHAP top features are written by the detection phase"
        " itself (held-out rows) and by the explainability phase.",
        item="e_words", numeric=(), vectorizer={**_WORDS, "norm": "l2", "max_features": 2000},
        train_on="all", factory=LogisticRegression, params={**_LR, "C": 10.0}, shap="linear",
        shap_in_detection=True,
    ),
)

REGISTRY: dict[str, ModelSpec] = {spec.key: spec for spec in _SPECS}
"""Every model by key, the Isolation Forest (:data:`IF_KEY`) included."""

def resolve_models(text: str) -> list[str]:
    """Comma list of keys (``all`` = every key) -> keys, in order, without duplicates.

    Unknown keys raise :class:`UserError` naming them and the valid keys.
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError(f"--models is empty; valid keys: {', '.join(REGISTRY)}")
    if "all" in names:
        names = [n for n in names if n != "all"] + list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise UserError(
            f"unknown model key(s): {', '.join(unknown)}. Valid keys: {', '.join(REGISTRY)}"
            " (or 'all'). See --list-models."
        )
    return list(dict.fromkeys(names))


_LEN = re.compile(r"^e_\w+_len$")


def available_numeric(spec: ModelSpec, columns: Iterable[str]) -> tuple[str, ...]:
    """Numeric columns ``spec`` will use on data with ``columns``.

    The spec's own columns always (a missing one is reported by the vectoriser); with
    ``numeric_len_columns`` also every ``e_*_len`` column present, sorted.
    """
    cols = list(columns)
    out = list(spec.numeric)
    if spec.numeric_len_columns:
        out += sorted(c for c in cols if _LEN.match(c) and c not in out)
    if spec.metric_columns:
        from loglead_lo2.enhancers.metric_features import model_columns

        found = [c for c in model_columns(cols) if c not in out]
        if not found:
            raise UserError(
                f"{spec.key} reads the metric features (mx_* columns), and the enhanced "
                "sequences have none: re-run the loader with --load-metrics --save-parquet "
                "on a tree with metrics/ folders (lo2-sample --with-metrics), or pick "
                "another model.")
        out += found
    return tuple(out)


def describe_models() -> list[dict[str, str]]:
    """One dict per registry model: key, type, training rows, features, shap, description."""
    return [
        {
            "key": s.key,
            "type": s.kind,
            "trains_on": "normal rows only" if s.train_on == "normal" else "all training rows",
            "features": s.features,
            "shap": s.shap,
            "description": s.description,
        }
        for s in REGISTRY.values()
    ]


def format_model_list() -> str:
    """Text for ``--list-models``: one block per model, defaults marked with ``*``."""
    lines = []
    for d in describe_models():
        mark = "*" if d["key"] in DEFAULT_MODELS else " "
        lines.append(f"{mark} {d['key']:<26} {d['type']:<12} trains on {d['trains_on']}")
        lines.append(f"    features: {d['features']}")
        cap = REGISTRY[d["key"]].max_fit_rows
        if cap is not None:
            lines.append(f"    fitted on a seeded, run-stratified sample of at most {cap:,} "
                         "training rows")
        lines.append(f"    {d['description']}")
    lines.append("* = default --models. Scores: higher = more anomalous for every model.")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_MODELS",
    "REGISTRY",
    "SCORE_ADAPTERS",
    "ModelSpec",
    "available_numeric",
    "describe_models",
    "format_model_list",
    "resolve_models",
]
