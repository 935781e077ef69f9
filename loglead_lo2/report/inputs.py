"""What the report reads: the artifacts of the loader, detection and explainability phases.

Nothing is recomputed from models: every figure and table comes from files the other phases
wrote. A missing detection run is a :class:`~loglead_lo2.errors.UserError`; every other input
is optional and its absence is recorded in :attr:`ReportInputs.missing` (what, and the
command that produces it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2 import artifacts as A
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

DETECT_CMD = "lo2-detect --root {root}"
EXPLAIN_CMD = "lo2-explain --root {root}"
LOAD_CMD = "lo2-load --root <LO2 tree> --output-dir {root} --save-parquet --save-events"


@dataclass
class ReportInputs:
    root: Path
    metrics: Path
    explain: Path
    load_info: dict[str, Any] | None = None
    run: dict[str, Any] = field(default_factory=dict)
    leaderboard: pl.DataFrame | None = None
    leakage: dict[str, Any] | None = None
    predictions: dict[str, pl.DataFrame] = field(default_factory=dict)
    signatures: pl.DataFrame | None = None
    recall: pl.DataFrame | None = None
    shap_tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    shap_values: dict[str, pl.DataFrame] = field(default_factory=dict)
    shap_source: dict[str, str] = field(default_factory=dict)
    nn: pl.DataFrame | None = None
    nn_info: dict[str, Any] = field(default_factory=dict)
    events: Path | None = None
    missing: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def lack(self, section: str, what: str, command: str) -> None:
        self.missing.setdefault(section, []).append((what, command.format(root=self.root)))


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{path}: unreadable ({type(exc).__name__}); re-run the phase that "
                        "writes it.") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a JSON object; re-run the phase that writes it.")
    return data


def _csv(path: Path) -> pl.DataFrame:
    try:
        return pl.read_csv(path, infer_schema_length=None)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UserError(f"{path}: unreadable CSV ({type(exc).__name__}); re-run the phase "
                        "that writes it.") from exc


def _parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UserError(f"{path}: unreadable Parquet ({type(exc).__name__}); re-run the "
                        "phase that writes it.") from exc


def model_keys(run: dict[str, Any]) -> list[str]:
    """The model keys of a detection run, in its order."""
    keys: list[str] = []
    for item in run.get("models") or []:
        key = item if isinstance(item, str) else (item or {}).get("key") if isinstance(
            item, dict) else None
        if isinstance(key, str) and key not in keys:
            keys.append(key)
    return keys


PREDICTION_COLUMNS = ("split", "label", "score", "threshold", "row_group")


def read_inputs(root: Path, metrics: Path | None = None,
                explain: Path | None = None) -> ReportInputs:
    """Read every artifact the report uses (see the module doc)."""
    root = Path(root)
    metrics = Path(metrics) if metrics is not None else root / A.METRICS_DIR
    explain = Path(explain) if explain is not None else root / A.EXPLAIN_DIR
    run_path = metrics / A.RUN_FILE
    if not run_path.is_file():
        raise UserError(f"no detection run in {metrics} ({A.RUN_FILE} missing); run "
                        f"`lo2-detect --root {root}` first (or pass --metrics-dir).")
    inp = ReportInputs(root=root, metrics=metrics, explain=explain, run=_json(run_path))

    info = root / A.LOAD_INFO_FILE
    if info.is_file():
        inp.load_info = _json(info)
    else:
        inp.lack("data", f"{info} (the loader's summary)", LOAD_CMD)

    board = metrics / A.LEADERBOARD_CSV
    if board.is_file():
        inp.leaderboard = _csv(board)
    else:
        inp.lack("leaderboard", str(board), DETECT_CMD)
    leak = metrics / A.LEAKAGE_FILE
    if leak.is_file():
        inp.leakage = _json(leak)
    else:
        inp.lack("leaderboard", f"{leak} (the length-leakage check)", DETECT_CMD)

    keys = model_keys(inp.run)
    for key in keys:
        path = metrics / A.predictions_file(key)
        if not path.is_file():
            inp.lack("curves", str(path), DETECT_CMD)
            continue
        frame = _parquet(path)
        absent = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
        if absent:
            raise UserError(f"{path}: columns {', '.join(absent)} missing; re-run "
                            f"`lo2-detect --root {root}`.")
        inp.predictions[key] = frame
    if (inp.run.get("options") or {}).get("skip_if"):
        inp.lack("curves", "isolation_forest (the detection run used --skip-if)",
                 DETECT_CMD + " (without --skip-if)")

    sig = metrics / A.SIGNATURES_CSV
    if sig.is_file():
        inp.signatures = _csv(sig)
    else:
        inp.lack("signatures", f"{sig} (needs ground truth: lo2_manifest.csv of a generated "
                 "sample)", DETECT_CMD + " --manifest <tree>/lo2_manifest.csv")
    rec = metrics / A.RECALL_CSV
    if rec.is_file():
        inp.recall = _csv(rec)
    else:
        inp.lack("signatures", str(rec), DETECT_CMD)

    explained = explain.is_dir() and (explain / A.SUMMARY_JSON).is_file()
    if not explained:
        inp.lack("shap", f"{explain} (no explainability run)", EXPLAIN_CMD)
        inp.lack("windows", f"{explain / A.NN_CSV} (no explainability run)", EXPLAIN_CMD)
    for key in keys:
        for folder, source in ((explain, "explainability"), (metrics, "detection")):
            table = folder / A.shap_top_features_file(key)
            if key in inp.shap_tables or not table.is_file():
                continue
            inp.shap_tables[key] = _csv(table)
            inp.shap_source[key] = source
            values = folder / A.shap_values_file(key)
            if values.is_file():
                inp.shap_values[key] = _parquet(values)
    if explained:
        nn_info = _json(explain / A.SUMMARY_JSON).get("nn_mapping")
        inp.nn_info = nn_info if isinstance(nn_info, dict) else {}
    if explained and not inp.shap_values:
        inp.lack("shap", "per-row SHAP values (shap_<model>_values.parquet; written by this "
                 "version's explainability phase)", EXPLAIN_CMD + " --overwrite")
    nn = explain / A.NN_CSV
    if nn.is_file():
        inp.nn = _csv(nn)
    elif explained:
        inp.lack("windows", str(nn), EXPLAIN_CMD)
    events = root / A.EVENTS_FILE
    if events.is_file():
        inp.events = events
    elif inp.nn is not None:
        inp.lack("windows", f"{events} (the log lines; loaded with --save-events)", LOAD_CMD)
    log.debug("report inputs: %d model(s), %d SHAP table(s)", len(keys), len(inp.shap_tables))
    return inp


__all__ = ["ReportInputs", "model_keys", "read_inputs"]
