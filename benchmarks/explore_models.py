#!/usr/bin/env python3
"""Which detectors find the injected errors? Figures against the generator's ground truth.

Data: an LO2 sample made by the package's generator (``--runs`` 8, ``--scale`` 0.1, ``--seed``
42) and loaded in ``--window`` 5 s windows, cached under ``--work``. One row per (run, test
case, service, window).

Labels (per row):

* **target** (what real data allows, used for training): 1 iff the row's error case targets
  the row's service; ``correct`` rows and the other services' rows of an error case are 0.
* **true** (generated data only, used for evaluation): 1 iff the row holds >= 1 injected
  manifest event (``lo2_manifest.csv``, kind ``injected``, placed by (run, test case,
  service) and ``start_time <= timestamp <= end_time`` as in
  :mod:`loglead_lo2.detection.groundtruth`).

Split: the newest ``--holdout`` (2) runs are evaluated, the older ones train. Supervised models
fit the target labels of the training runs; unsupervised ones the target-0 rows only.

Columns: ROC-AUC against true labels on the held-out rows, pooled and per service; ``fpCor`` /
``fpNonT``: flagged share of ``correct`` / non-target rows at the **calibrated threshold**, the
smallest score that flags <= 1 % of the training runs' normal (target 0) rows *out of fold*
(3 folds of whole training runs, each scored by a model fitted on the other runs);
``sig@thr``: error cases (signatures) whose windows with an injected event are found with
recall >= 0.95 at that threshold, of those whose (service, code) never occurs in ``correct``,
and the lowest such recall; ``sig@1%``: the same at the cut flagging <= 1 % of the held-out
true-normal rows (an oracle threshold); ``inCor``: recall of the cases whose code does occur in
``correct`` (e.g. ERR10010 on client). ``--per-service`` adds one model per service (scores
shifted by each service's calibrated threshold so one cut applies). The Isolation Forest rows
use :func:`~loglead_lo2.detection.iforest.train_iforest` with the CLI's settings (100 trees,
its own ``contamination="auto"`` threshold for ``fpCor``/``fpNonT``/``sig@thr``): AUCs and FP
rates are means over ``--if-seeds`` forest seeds (``±`` = their standard deviation), the
signature counts those of seed 0.

    python benchmarks/explore_models.py                       # every candidate
    python benchmarks/explore_models.py --models event_surprisal_words,lr_words_binary \\
        --per-service --signatures event_surprisal_words
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from loglead_lo2.detection.evaluate import fit_model, score_model  # noqa: E402
from loglead_lo2.detection.groundtruth import load_manifest  # noqa: E402
from loglead_lo2.detection.iforest import (  # noqa: E402
    IF_VECTORIZER,
    IFConfig,
    score_iforest,
    train_iforest,
)
from loglead_lo2.detection.registry import REGISTRY, ModelSpec  # noqa: E402

NORMAL_CASE = "correct"
FOLDS = 3
FP = 0.01


# -- data and labels -------------------------------------------------------------------------
def make_sample(work: Path, runs: int, scale: float, seed: int, window: float) -> Path:
    """Generate + load (cached): returns the directory holding ``tree/`` and ``out/``."""
    from loglead_lo2.generator import generate
    from loglead_lo2.loader import LoadOptions, run_loader

    base = work / f"r{runs}_s{scale:g}_seed{seed}_w{window:g}"
    if not (base / "out" / "lo2_sequences_enhanced.parquet").is_file():
        generate(base / "tree", runs=runs, scale=scale, seed=seed, overwrite=True)
        run_loader(LoadOptions(root=base / "tree", output_dir=base / "out", window=window,
                               save_parquet=True, overwrite=True))
    return base


def labelled(base: Path) -> pl.DataFrame:
    """Enhanced windows with ``target``, ``truth`` and ``sig_in_correct``; ``anomaly`` /
    ``normal`` are the target labels (what :func:`fit_model` trains on)."""
    df = pl.read_parquet(base / "out" / "lo2_sequences_enhanced.parquet").with_row_index("row")
    manifest = load_manifest(base / "tree" / "lo2_manifest.csv")
    injected = manifest.filter(pl.col("kind") == "injected")
    placed = (
        injected.select("run", "test_case", "service", "timestamp")
        .join(df.select("row", "run", "test_case", "service", "start_time", "end_time"),
              on=["run", "test_case", "service"])
        .filter(pl.col("timestamp").is_between(pl.col("start_time"), pl.col("end_time")))
        .get_column("row").unique()
    )
    background = (manifest.filter((pl.col("kind") == "background")
                                  & (pl.col("test_case") == NORMAL_CASE))
                  .select("service", "code").drop_nulls().unique())
    in_correct = (injected.select("test_case", "service", "code").unique()
                  .join(background, on=["service", "code"], how="semi")
                  .get_column("test_case").unique())
    target = ((pl.col("test_case") != NORMAL_CASE)
              & (pl.col("target_service") == pl.col("service"))).fill_null(False)
    return df.with_columns(
        target=target,
        truth=pl.col("row").is_in(placed.implode()),
        sig_in_correct=pl.col("test_case").is_in(in_correct.implode()),
    ).with_columns(anomaly=pl.col("target"), normal=~pl.col("target"))


# -- metrics ---------------------------------------------------------------------------------
def auc(y: np.ndarray, s: np.ndarray) -> float | None:
    return float(roc_auc_score(y, s)) if 0 < int(y.sum()) < y.size else None


def fp_cut(normal_scores: np.ndarray, fp: float = FP) -> float:
    """Smallest threshold flagging at most ``fp`` of ``normal_scores`` (``score >= cut``);
    tied scores stay on one side, so a model with many tied normal scores may flag nothing."""
    v = np.sort(np.asarray(normal_scores, dtype=np.float64))[::-1]
    k = int(np.floor(fp * v.size))
    return float(np.nextafter(v[k], np.inf)) if k < v.size else float(v[-1])


def metrics(test: pl.DataFrame, s: np.ndarray, thr: float | None) -> dict[str, Any]:
    y = test["truth"].to_numpy()
    out: dict[str, Any] = {"auc": auc(y, s)}
    for svc in sorted(test["service"].unique().to_list()):
        m = (test["service"] == svc).to_numpy()
        out[f"auc_{svc}"] = auc(y[m], s[m])
    correct = (test["test_case"] == NORMAL_CASE).to_numpy()
    non_target = ~test["target"].to_numpy() & ~correct
    oracle = fp_cut(s[~y])
    out["fp_correct"] = float((s[correct] >= thr).mean()) if thr is not None else None
    out["fp_non_target"] = float((s[non_target] >= thr).mean()) if thr is not None else None
    cut = np.inf if thr is None else thr
    sig = (test.select("test_case", "service", "sig_in_correct")
           .with_columns(truth=pl.Series(y), at_thr=pl.Series(s >= cut),
                         at_oracle=pl.Series(s >= oracle))
           .filter("truth").group_by("test_case", "service", "sig_in_correct")
           .agg(pl.len().alias("windows"), pl.col("at_thr").mean(), pl.col("at_oracle").mean())
           .sort("test_case"))
    clean = sig.filter(~pl.col("sig_in_correct"))
    for col, tag in (("at_thr", "thr"), ("at_oracle", "orc")):
        out[f"sig_ok_{tag}"] = int((clean[col] >= 0.95).sum())
        out[f"sig_min_{tag}"] = float(clean[col].min())
    out["sig_n"] = clean.height
    in_cor = sig.filter("sig_in_correct")
    out["in_correct"] = float(in_cor["at_thr"].mean()) if in_cor.height else None
    out["signatures"] = sig
    return out


# -- models ----------------------------------------------------------------------------------
def _variant(name: str, base: str, **changes: Any) -> ModelSpec:
    return replace(REGISTRY[base], key=name, **changes)


_DT = {"max_depth": 20, "max_leaf_nodes": 512, "class_weight": "balanced", "random_state": 42}
VARIANTS: dict[str, ModelSpec] = {
    "lr_words_binary": _variant("lr_words_binary", "event_lr_words",
                                vectorizer={"min_df": 2, "binary": True}),
    "lr_words_binary_err": _variant("lr_words_binary_err", "event_lr_words",
                                    vectorizer={"min_df": 2, "binary": True},
                                    numeric=("e_error_count",)),
    "lr_templates_tfidf": _variant("lr_templates_tfidf", "event_lr_templates",
                                   vectorizer={"sublinear_tf": True, "norm": "l2"}),
    "dt_templates_binary": _variant("dt_templates_binary", "event_dt_words",
                                    item="e_event_drain_id", vectorizer={"binary": True},
                                    params=_DT),
    "dt_templates_binary_err": _variant("dt_templates_binary_err", "event_dt_words",
                                        item="e_event_drain_id", vectorizer={"binary": True},
                                        numeric=("e_error_count",), params=_DT),
    "dt_words_binary_leaf1": _variant("dt_words_binary_leaf1", "event_dt_words", params=_DT),
    "dt_words_counts": _variant("dt_words_counts", "event_dt_words",
                                vectorizer={"min_df": 2}, params=_DT),
    "xgb_templates": _variant("xgb_templates", "event_xgb_words", item="e_event_drain_id",
                              vectorizer={}),
    "xgb_words_binary": _variant("xgb_words_binary", "event_xgb_words",
                                 vectorizer={"min_df": 2, "binary": True}),
    "oov_templates": _variant("oov_templates", "event_oov_words", item="e_event_drain_id"),
    "rarity_templates": _variant("rarity_templates", "event_rarity_words",
                                 item="e_event_drain_id"),
    "rarity_words_top1": _variant("rarity_words_top1", "event_rarity_words",
                                  params={"top_k": 1, "contamination": 0.01}),
    "rarity_words_top5_tie": _variant("rarity_words_top5_tie", "event_rarity_words",
                                      params={"top_k": 5, "contamination": 0.01,
                                              "tie_weight": 0.01}),
    "surprisal_words_tie0.1": _variant("surprisal_words_tie0.1", "event_surprisal_words",
                                       params={"top_k": 1, "contamination": 0.01,
                                               "tie_weight": 0.1}),
    "surprisal_trigrams": _variant("surprisal_trigrams", "event_surprisal_words",
                                   item="e_trigrams"),
}
CANDIDATES: dict[str, ModelSpec] = {**REGISTRY, **VARIANTS}

IF_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "if_words_counts (old default)": ("e_words", {}),
    "if_words_binary_l2": ("e_words", {"min_df": 2, "binary": True, "norm": "l2"}),
    "if_words_log_l2": ("e_words", {"min_df": 2, "sublinear_tf": True, "norm": "l2"}),
    "if_words_binary_l2_oov": ("e_words", {"min_df": 2, "binary": True, "norm": "l2",
                                           "oov_feature": True}),
    "if_words_binary_idf_l2_oov": ("e_words", {"min_df": 2, "binary": True, "norm": "l2",
                                               "idf": True, "oov_feature": True}),
    "if_words (new default)": ("e_words", dict(IF_VECTORIZER)),
    "if_trigrams (new default)": ("e_trigrams", dict(IF_VECTORIZER)),
    "if_templates (new default)": ("e_event_drain_id", dict(IF_VECTORIZER)),
}


def fit_score(spec: ModelSpec, train: pl.DataFrame, test: pl.DataFrame) -> np.ndarray:
    return score_model(fit_model(spec, train, seed=42), test)


def calibrated_threshold(spec: ModelSpec, train: pl.DataFrame) -> float:
    """<= 1 % FP cut on out-of-fold scores of the training runs' normal rows."""
    runs = sorted(train["run"].unique().to_list())
    parts = []
    for held in (runs[i::FOLDS] for i in range(FOLDS)):
        fit_rows = train.filter(~pl.col("run").is_in(held))
        if spec.supervised and fit_rows["anomaly"].n_unique() < 2:
            continue
        parts.append(fit_score(spec, fit_rows,
                               train.filter(pl.col("run").is_in(held) & pl.col("normal"))))
    return fp_cut(np.concatenate(parts))


def run_spec(spec: ModelSpec, train: pl.DataFrame, test: pl.DataFrame,
             per_service: bool) -> dict[str, Any]:
    if not per_service:
        return metrics(test, fit_score(spec, train, test), calibrated_threshold(spec, train))
    shifted = np.full(test.height, -1e9)  # a service without a model flags nothing
    for svc in sorted(test["service"].unique().to_list()):
        tr = train.filter(pl.col("service") == svc)
        if spec.supervised and tr["anomaly"].n_unique() < 2:
            continue
        m = (test["service"] == svc).to_numpy()
        shifted[m] = (fit_score(spec, tr, test.filter(pl.col("service") == svc))
                      - calibrated_threshold(spec, tr))
    return metrics(test, shifted, 0.0)


def run_iforest(item: str, vectorizer: dict[str, Any], train: pl.DataFrame,
                test: pl.DataFrame, seeds: int) -> dict[str, Any]:
    runs = []
    for seed in range(seeds):
        res = train_iforest(train, IFConfig(item=item, vectorizer=vectorizer, seed=seed))
        runs.append(metrics(test, score_iforest(res.model, res.vectorizer, test), res.threshold))
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float) or (value is None and key.startswith("auc")):
            vals = [r[key] for r in runs if r[key] is not None]
            out[key] = float(np.mean(vals)) if vals else None
    aucs = [r["auc"] for r in runs]
    out["auc_sd"] = float(np.std(aucs))
    return out


# -- output ----------------------------------------------------------------------------------
def _f(v: float | None, width: int = 6) -> str:
    return f"{v:{width}.3f}" if v is not None else " " * (width - 3) + "n/a"


def row_text(name: str, kind: str, mode: str, r: dict[str, Any], services: list[str],
             secs: float) -> str:
    per = " ".join(_f(r.get(f"auc_{s}")) for s in services)
    sd = f"±{r['auc_sd']:.2f}" if "auc_sd" in r else "     "
    return (f"{name:<31} {kind:<2} {mode:<4} {_f(r['auc'])}{sd} {per} {_f(r['fp_correct'])}"
            f" {_f(r['fp_non_target'])}  {r['sig_ok_thr']:>2}/{r['sig_n']:<2} "
            f"{r['sig_min_thr']:.2f}  {r['sig_ok_orc']:>2}/{r['sig_n']:<2} "
            f"{r['sig_min_orc']:.2f} {_f(r['in_correct'], 5)} {secs:5.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/lo2_explore"))
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--holdout", type=int, default=2, help="newest runs held out (default 2)")
    ap.add_argument("--models", default="", help="comma list of candidates (default: all); "
                    "'none' = Isolation Forest rows only")
    ap.add_argument("--per-service", action="store_true", help="also one model per service")
    ap.add_argument("--skip-if", action="store_true", help="no Isolation Forest rows")
    ap.add_argument("--if-seeds", type=int, default=5)
    ap.add_argument("--signatures", default="", metavar="MODEL",
                    help="print the per-signature recall table of these candidates")
    args = ap.parse_args()

    df = labelled(make_sample(args.work, args.runs, args.scale, args.seed, args.window))
    runs = sorted(df["run"].unique().to_list())
    hold = runs[-args.holdout:]
    train = df.filter(~pl.col("run").is_in(hold))
    test = df.filter(pl.col("run").is_in(hold))
    services = sorted(test["service"].unique().to_list())
    print(f"{df.height} windows, {len(runs)} runs; train {train.height} rows "
          f"({len(runs) - len(hold)} runs), held out {test.height} rows ({len(hold)} newest "
          f"runs): {int(test['truth'].sum())} with an injected event, "
          f"{int(test['target'].sum())} target rows")
    y = test["truth"].to_numpy()
    for col in ("seq_len", "duration_sec", "e_error_count"):
        s = test[col].cast(pl.Float64).to_numpy()
        per = " ".join(f"{svc}={_f(auc(y[m], s[m]), 5)}" for svc in services
                       for m in [(test["service"] == svc).to_numpy()])
        print(f"single-feature ROC-AUC {col:<13} pooled {_f(auc(y, s), 5)}  {per}")
    print(f"\n{'model':<31} {'':<2} {'mode':<4} {'AUC':>6}      "
          + " ".join(f"{s[:6]:>6}" for s in services)
          + "  fpCor fpNonT sig@thr  min sig@1%   min inCor  secs")
    names = ([] if args.models == "none" else
             [n.strip() for n in args.models.split(",") if n.strip()] or list(CANDIDATES))
    show = {n.strip() for n in args.signatures.split(",") if n.strip()}
    for name in names:
        spec = CANDIDATES[name]
        for per in ([False, True] if args.per_service else [False]):
            started = time.perf_counter()
            r = run_spec(spec, train, test, per)
            print(row_text(name, "S" if spec.supervised else "U", "svc" if per else "pool", r,
                           services, time.perf_counter() - started), flush=True)
            if name in show:
                print(r["signatures"].sort("at_thr"))
    if not args.skip_if:
        for name, (item, vec) in IF_VARIANTS.items():
            started = time.perf_counter()
            r = run_iforest(item, vec, train, test, args.if_seeds)
            print(row_text(name, "U", "pool", r, services, time.perf_counter() - started),
                  flush=True)


if __name__ == "__main__":
    main()
