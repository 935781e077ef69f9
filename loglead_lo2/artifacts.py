"""The name of every artifact every phase writes or reads, in one place.

Phases and tools import these names instead of spelling the files themselves, so a file is
named once. Layout (``<root>`` = the loader's ``--output-dir``, ``<metrics>`` = detection's
``--metrics-dir``, default ``<root>/metrics``):

* generator, beside the LO2 tree's runs: :data:`MANIFEST_FILE`, :data:`SAMPLE_FILE`;
* loader, in ``<root>``: :data:`EVENTS_FILE`, :data:`SEQUENCES_FILE`, :data:`ENHANCED_FILE`,
  :data:`METRICS_FILE`, :data:`TEMPLATES_FILE`, :data:`DRAIN_STATE_FILE`,
  :data:`FILES_FILE`, :data:`LOAD_INFO_FILE`, :data:`LOAD_MANIFEST_FILE` (the set's manifest);
* detection, in ``<root>``: :data:`IF_PREDICTIONS_FILE`; in ``<metrics>``:
  :data:`RUN_FILE`, :data:`LEADERBOARD_CSV` / :data:`LEADERBOARD_MD`, :data:`LEAKAGE_FILE`,
  :data:`IF_METRICS_JSON` / :data:`IF_METRICS_CSV`, ``<key>.json`` (:func:`model_record`),
  ``<key>_predictions.parquet`` (:func:`predictions_file`), the run's bundles under
  :data:`RUN_BUNDLES_DIR` (:func:`run_bundle`), :data:`RECALL_CSV` / :data:`RECALL_MD`,
  :data:`SIGNATURES_CSV` / :data:`SIGNATURES_MD`, ``ground_truth_<key>.csv``
  (:func:`ground_truth_file`), with ``--cv`` :data:`CV_FOLDS_CSV`, :data:`CV_CSV`,
  :data:`CV_MD`; ``--save-model``'s default :data:`IF_BUNDLE` with :data:`IF_METADATA`;
* explainability, in ``<root>/explainability``: :data:`SUMMARY_JSON`, :data:`SUMMARY_MD`,
  :data:`NN_CSV`, :data:`NN_MD`, ``false_positives_<key>.csv``, ``shap_<key>_*``
  (:func:`shap_values_file`: per-row values);
* report, in ``<root>/report``: :data:`REPORT_HTML`, :data:`REPORT_MANIFEST_FILE`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

MANIFEST_FILE = "lo2_manifest.csv"
SAMPLE_FILE = "lo2_sample.json"

EVENTS_FILE = "lo2_events.parquet"
SEQUENCES_FILE = "lo2_sequences.parquet"
ENHANCED_FILE = "lo2_sequences_enhanced.parquet"
METRICS_FILE = "lo2_metrics.parquet"
TEMPLATES_FILE = "lo2_drain_templates.parquet"
DRAIN_STATE_FILE = "lo2_drain_state.parquet"
FILES_FILE = "lo2_files.parquet"
LOAD_INFO_FILE = "lo2_load_info.json"
LOAD_MANIFEST_FILE = "lo2_load_manifest.json"
LOADER_FILES = (EVENTS_FILE, SEQUENCES_FILE, ENHANCED_FILE, METRICS_FILE, TEMPLATES_FILE,
                DRAIN_STATE_FILE, FILES_FILE, LOAD_INFO_FILE)
"""Every file of a load's output set (the manifest lists those it wrote)."""

IF_PREDICTIONS_FILE = "lo2_if_predictions.parquet"
METRICS_DIR = "metrics"
RUN_FILE = "detect_run.json"
LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_MD = "leaderboard.md"
LEAKAGE_FILE = "leakage.json"
IF_METRICS_JSON = "if_metrics.json"
IF_METRICS_CSV = "if_metrics.csv"
RECALL_CSV = "per_test_case_recall.csv"
RECALL_MD = "per_test_case_recall.md"
SIGNATURES_CSV = "signature_recall.csv"
SIGNATURES_MD = "signature_recall.md"
CV_FOLDS_CSV = "cv_folds.csv"
CV_CSV = "cv_leaderboard.csv"
CV_MD = "cv_leaderboard.md"
RUN_BUNDLES_DIR = "models"
IF_BUNDLE = "lo2_if.joblib"
IF_METADATA = "model.yml"
DETECT_MANIFEST_FILE = "detect_manifest.json"
"""The output-set manifest of a detection run in ``<metrics>`` (:mod:`loglead_lo2.outputs`)."""
DETECT_FIXED_FILES = (RUN_FILE, LEADERBOARD_CSV, LEADERBOARD_MD, LEAKAGE_FILE, IF_METRICS_JSON,
                      IF_METRICS_CSV, RECALL_CSV, RECALL_MD, SIGNATURES_CSV, SIGNATURES_MD,
                      CV_FOLDS_CSV, CV_CSV, CV_MD)

EXPLAIN_DIR = "explainability"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
NN_CSV = "nn_mapping.csv"
NN_MD = "nn_mapping.md"
EXPLAIN_MANIFEST_FILE = "explain_manifest.json"

REPORT_DIR = "report"
REPORT_HTML = "report.html"
REPORT_MANIFEST_FILE = "report_manifest.json"
"""The report phase's output set in ``<root>/report`` (``lo2-report``)."""


def model_record(key: str) -> str:
    """``<key>.json``: a model's hold-out record in ``<metrics>``."""
    return f"{key}.json"


def predictions_file(key: str) -> str:
    """``<key>_predictions.parquet``: every row's score, threshold and flag."""
    return f"{key}_predictions.parquet"


def ground_truth_file(key: str) -> str:
    return f"ground_truth_{key}.csv"


def false_positives_file(key: str) -> str:
    return f"false_positives_{key}.csv"


def shap_top_features_file(key: str) -> str:
    return f"shap_{key}_top_features.csv"


def shap_values_file(key: str) -> str:
    """``shap_<key>_values.parquet``: per-row SHAP values of the top features (explain)."""
    return f"shap_{key}_values.parquet"


def detection_files(keys: Iterable[str], services: Iterable[str]) -> list[str]:
    """Every file name (relative to ``<metrics>``) a detection run may write for the model
    ``keys`` and ``services``, except the ``shap_<key>_*`` figures: the names its output set
    owns, so a new run replaces the old run's files and leaves other files alone."""
    names = list(DETECT_FIXED_FILES)
    folders = [RUN_BUNDLES_DIR, *(f"{RUN_BUNDLES_DIR}/{s}" for s in services if s != "all")]
    for folder in folders:
        names.append(f"{folder}/{DRAIN_STATE_FILE}")
    for key in keys:
        names += [model_record(key), predictions_file(key), ground_truth_file(key)]
        for folder in folders:
            names += [f"{folder}/{key}.joblib", f"{folder}/{key}.yml"]
    return names


def run_bundle(metrics_dir: Path, key: str, service: str = "all") -> Path:
    """``<metrics>/models[/<service>]/<key>.joblib``: a run's bundle of one model part."""
    base = Path(metrics_dir) / RUN_BUNDLES_DIR
    return (base if service == "all" else base / service) / f"{key}.joblib"
