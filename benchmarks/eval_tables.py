"""Tables of ``docs/evaluation.md`` from the outcomes of ``benchmarks/eval_matrix.py``.

Every figure comes from the files the detection phase wrote for one configuration: the
leaderboard, ``leakage.json``, ``signature_recall.csv`` and the hold-out rows of every
``<key>_predictions.parquet`` (with ``true_label``: the row holds an injected event).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl

TARGET_ROC = 0.95
TARGET_UNSUP = 0.90
TARGET_RECALL = 0.95
NEVER = "never in correct"


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_f(v) if not isinstance(v, str) else v for v in r) + " |"
            for r in rows]
    return "\n".join(out) + "\n"


def signature_classes(manifest: Path) -> pl.DataFrame:
    """Per error case: ``class`` = ``never in correct`` (none of its injected error codes is
    among the codes of ``correct``'s background errors), ``code also in correct``, ``no
    error line`` (its injected events carry no code: DEBUG lines only) or ``no trace``."""
    from loglead_lo2.cases import error_cases

    m = pl.read_csv(manifest, infer_schema_length=None).with_columns(
        pl.col("code").fill_null(""))
    normal_codes = (m.filter((pl.col("kind") == "background")
                             & (pl.col("test_case") == "correct") & (pl.col("code") != ""))
                    ["code"].unique().implode())
    inj = (m.filter(pl.col("kind") == "injected").group_by("test_case")
           .agg(codes=pl.col("code").filter(pl.col("code") != "").unique(),
                events=pl.len()))
    cases = pl.DataFrame({"test_case": error_cases()}).join(inj, on="test_case", how="left")
    return cases.with_columns(
        **{"class": pl.when(pl.col("events").is_null()).then(pl.lit("no trace"))
           .when(pl.col("codes").list.len() == 0).then(pl.lit("no error line"))
           .when(pl.col("codes").list.eval(pl.element().is_in(normal_codes.first()))
                 .list.any()).then(pl.lit("code also in correct"))
           .otherwise(pl.lit(NEVER))}).select("test_case", "class")


def per_service_auc(preds: pl.DataFrame) -> pl.DataFrame:
    """True-label ROC-AUC per (model, service) and pooled (``all``) on hold-out rows."""
    from sklearn.metrics import roc_auc_score

    if preds.height == 0 or "true_label" not in preds.columns:
        return pl.DataFrame(schema={"model": pl.String, "service": pl.String,
                                    "auc": pl.Float64})
    rows = []
    for (model,), part in preds.group_by("model", maintain_order=True):
        for service, sub in [("all", part), *[(s, part.filter(pl.col("service") == s))
                                              for s in sorted(part["service"].unique())]]:
            y = sub["true_label"].to_numpy()
            auc = float(roc_auc_score(y, sub["score"].to_numpy())) if 0 < y.sum() < y.size \
                else None
            rows.append({"model": model, "service": service, "auc": auc})
    return pl.DataFrame(rows, schema={"model": pl.String, "service": pl.String,
                                      "auc": pl.Float64})


def _kinds(outcomes: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for o in outcomes:
        if o.get("error"):
            continue
        for model, kind in o["board"].select("model", "kind").unique().iter_rows():
            out[model] = kind
    return out


def _pick(outcomes: list[dict[str, Any]], mode: str, window: float | None
          ) -> list[dict[str, Any]]:
    return [o for o in outcomes if not o.get("error") and o["config"].label_mode == mode
            and o["config"].window == window]


def targets_section(outcomes: list[dict[str, Any]], classes: pl.DataFrame) -> list[str]:
    windows = sorted({o["config"].window for o in outcomes if o["config"].window is not None})
    window = 5.0 if 5.0 in windows else (windows[0] if windows else None)
    cells = _pick(outcomes, "target-service", window)
    if not cells:
        return ["No target-service configuration ran; no targets to report.", ""]
    kinds = _kinds(outcomes)
    aucs = []
    for o in cells:
        t = per_service_auc(o["preds"]).with_columns(
            services=pl.lit(o["config"].services_label))
        aucs.append(t)
    auc = pl.concat(aucs).drop_nulls("auc").with_columns(
        kind=pl.col("model").replace_strict(kinds, default="?"))
    lines = [f"## Targets (target-service labels, {window:g} s windows, hold-out runs, true "
             "labels)", "",
             "True label of a row: it holds at least one injected error event (from the "
             "generator's manifest). Every hold-out row counts: `correct` windows, the other "
             "services' windows of error cases and target windows without the event. "
             "`services`: `all` = one model for every service (its ROC-AUC within each "
             "service is taken on that service's rows), `per service` = each service's own "
             "model.", ""]
    rows = []
    for service in sorted(auc["service"].unique()):
        sub = auc.filter(pl.col("service") == service).sort(
            ["auc", "model", "services"], descending=[True, False, False])
        best = sub.row(0, named=True)
        uns = sub.filter(pl.col("kind") == "unsupervised")
        ub = uns.row(0, named=True) if uns.height else {"model": "n/a", "auc": None,
                                                        "services": ""}
        rows.append([service, f"`{best['model']}` ({best['services']})", best["auc"],
                     "yes" if best["auc"] >= TARGET_ROC else "**no**",
                     f"`{ub['model']}` ({ub['services']})", ub["auc"],
                     "yes" if (ub["auc"] or 0) >= TARGET_UNSUP else "**no**"])
    lines.append(_table(["service", "best model", "ROC-AUC", f">= {TARGET_ROC}",
                         "best unsupervised", "ROC-AUC", f">= {TARGET_UNSUP}"], rows))
    sig = pl.concat([o["signatures"].with_columns(services=pl.lit(o["config"].services_label))
                     for o in cells], how="diagonal_relaxed")
    sig = sig.join(classes, on="test_case", how="left")
    never = sig.filter(pl.col("class") == NEVER)
    n_never = classes.filter(pl.col("class") == NEVER).height
    per_model = (never.group_by("model", "services")
                 .agg(reached=(pl.col("recall_at_1pct_fp") >= TARGET_RECALL).sum(),
                      cases=pl.col("test_case").n_unique(),
                      mean=pl.col("recall_at_1pct_fp").mean())
                 .sort(["reached", "mean", "model", "services"],
                       descending=[True, True, False, False]))
    lines += [f"Signatures that never occur in `correct`: {n_never} of the "
              f"{classes.height} error cases (the others: "
              + ", ".join(f"{n} {c}" for c, n in classes.group_by("class").len()
                          .sort("class").iter_rows() if c != NEVER)
              + "). Recall at 1 % FP = share of the case's hold-out units (run x target "
              "service log) flagged at the cut that flags 1 % of the hold-out normal rows "
              "(per part: pooled, or per service). Models by the number of those "
              f"signatures they find with recall >= {TARGET_RECALL}:", ""]
    rows = [[f"`{r['model']}`", r["services"], f"{r['reached']} / {r['cases']}", r["mean"]]
            for r in per_model.head(8).iter_rows(named=True)]
    lines.append(_table(["model", "services", f"recall >= {TARGET_RECALL}",
                         "mean recall at 1 % FP"], rows))
    if per_model.height:
        top = per_model.row(0, named=True)
        miss = never.filter((pl.col("model") == top["model"])
                            & (pl.col("services") == top["services"])
                            & (pl.col("recall_at_1pct_fp") < TARGET_RECALL))
        if miss.height:
            lines += [f"Missed by `{top['model']}` ({top['services']}): " + ", ".join(
                f"`{r['test_case']}` {r['recall_at_1pct_fp']:.2f}"
                for r in miss.sort("test_case").iter_rows(named=True)) + ".", ""]
    return lines


def leakage_section(outcomes: list[dict[str, Any]]) -> list[str]:
    cells = [o for o in outcomes if not o.get("error") and not o["config"].per_service
             and o["config"].label_mode == "target-service"]
    if not cells:
        return []
    services = sorted({s for o in cells for s in o["leakage"]["per_service"]})
    rows = []
    for o in cells:
        leak = o["leakage"]
        row = [o["config"].window_label, leak["pooled"].get("max_separability")]
        row += [(leak["per_service"].get(s) or {}).get("max_separability") for s in services]
        worst = leak.get("worst") or {}
        row.append(f"{worst.get('feature')} in {worst.get('service')}")
        rows.append(row)
    return ["## Length leakage per service (target-service labels)", "",
            "Largest single-feature separability (max(AUC, 1 - AUC)) of `seq_len`, "
            "`duration_sec` and the event rate on the hold-out rows, pooled and within each "
            "service; 0.5 = length says nothing, 1.0 = length alone separates. The detection "
            "phase warns above 0.65.", "",
            _table(["window", "pooled", *services, "worst"], rows)]


def full_table(outcomes: list[dict[str, Any]]) -> list[str]:
    rows = []
    for o in outcomes:
        cfg = o["config"]
        if o.get("error"):
            rows.append([cfg.label_mode, cfg.window_label, cfg.services_label, o["error"]]
                        + [""] * 8)
            continue
        board = o["board"].filter(pl.col("service").is_in(["all", "macro"]))
        for r in board.sort("model").iter_rows(named=True):
            rows.append([cfg.label_mode, cfg.window_label, cfg.services_label,
                         f"`{r['model']}`", r["roc_auc"], r.get("gt_roc_auc"),
                         r.get("fp_rate_correct"), r.get("fp_rate_non_target"),
                         r.get("gt_recall"), r.get("gt_recall_1pct_fp"), r.get("len_sep"),
                         r.get("fit_seconds")])
    return ["## Every configuration", "",
            "`ROC-AUC`: hold-out, under the configuration's labels; `true ROC-AUC`: against "
            "true labels; `FP correct` / `FP non-target`: flagged share of `correct` rows / "
            "of the other services' rows of error cases at the model's threshold "
            "(`fp-target 0.01` on calibration runs); `GT recall`: share of (run, error case, "
            "target service) units with a trace flagged at the threshold; `at 1 % FP`: the "
            "same at the cut flagging 1 % of hold-out normal rows; `len_sep`: worst length "
            "separability over the services; `fit s`: training time. Per-service rows are "
            "the macro average over the services' models.", "",
            _table(["labels", "window", "services", "model", "ROC-AUC", "true ROC-AUC",
                    "FP correct", "FP non-target", "GT recall", "at 1 % FP", "len_sep",
                    "fit s"], rows)]


ABLATION: tuple[tuple[str, str, str, str], ...] = (
    ("logistic regression", "event_lr_words", "metrics_lr", "event_lr_words_metrics"),
    ("decision tree", "event_dt_words", "metrics_dt", "event_dt_words_metrics"),
    ("isolation forest (unsupervised)", "isolation_forest", "metrics_iforest",
     "isolation_forest_metrics"),
)
"""Model families of the ablation: (name, logs only, metrics only, logs + metrics)."""
ADDS_NOTHING = 0.01
"""A true-ROC-AUC gain below this is "metrics add nothing"."""


def _row(board: pl.DataFrame, model: str) -> dict[str, Any]:
    rows = board.filter((pl.col("model") == model) & (pl.col("service") == "all"))
    return rows.row(0, named=True) if rows.height else {}


def ablation_rows(outcomes: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per (window, family): true ROC-AUC, recall at 1 % FP and label ROC-AUC of
    logs only / metrics only / both, from the target-service, all-services runs."""
    rows = []
    cells = [o for o in outcomes if not o.get("error") and not o["config"].per_service
             and o["config"].label_mode == "target-service"]
    for o in sorted(cells, key=lambda o: (o["config"].window is not None,
                                          o["config"].window or 0)):
        for family, *keys in ABLATION:
            got = [_row(o["board"], k) for k in keys]
            if not any(got):
                continue
            rows.append([o["config"].window_label, family,
                         *(g.get("gt_roc_auc") for g in got),
                         *(g.get("gt_recall_1pct_fp") for g in got),
                         *(g.get("roc_auc") for g in got)])
    return rows


def _verdict(rows: list[list[Any]]) -> list[str]:
    """What the ablation says, per family, in words computed from the figures."""
    out = []
    for family, *_ in ABLATION:
        mine = [r for r in rows if r[1] == family]
        gains = [(r[0], r[4] - r[2]) for r in mine
                 if isinstance(r[2], float) and isinstance(r[4], float)]
        alone = [r[3] for r in mine if isinstance(r[3], float)]
        if not gains:
            continue
        best_window, best = max(gains, key=lambda g: g[1])
        where = "whole sequences" if best_window == "none" else f"{best_window} windows"
        logs = [r[2] for r in mine if isinstance(r[2], float)]
        if best < ADDS_NOTHING and logs and min(logs) >= 0.99:
            what = ("the logs alone are at the ceiling (true ROC-AUC >= 0.99 in every window), "
                    "so the metrics have nothing to add here")
        elif best < ADDS_NOTHING:
            what = (f"the metrics add nothing (largest gain in true ROC-AUC {best:+.3f}, "
                    f"{where})")
        else:
            what = f"the metrics add up to {best:+.3f} true ROC-AUC ({where})"
        if alone:
            span = (f"{min(alone):.3f}" if min(alone) == max(alone)
                    else f"{min(alone):.3f}-{max(alone):.3f}")
            what += (f"; metrics alone reach {span}"
                     + (" (near random: the metrics carry little of the errors)"
                        if max(alone) <= 0.6 else ""))
        out.append(f"- **{family}**: {what}.")
    return out


def metric_shortcut_line(outcomes: list[dict[str, Any]]) -> str | None:
    """The metrics-only models under test-case labels on whole sequences: their label
    ROC-AUC against their true-label ROC-AUC (recording order, not errors)."""
    cells = [o for o in _pick(outcomes, "test-case", None) if not o["config"].per_service]
    if not cells:
        return None
    got = [(k, _row(cells[0]["board"], k)) for k in ("metrics_lr", "metrics_dt")]
    got = [(k, r) for k, r in got if r.get("roc_auc") is not None]
    if not got:
        return None
    parts = "; ".join(f"`{k}` {_f(r['roc_auc'])} against the labels, {_f(r.get('gt_roc_auc'))}"
                      f" against true labels, flagging {_f(r.get('fp_rate_non_target'))} of "
                      "the untouched services' rows" for k, r in got)
    return ("- **The metrics' shortcut.** Under `test-case` labels on whole sequences the "
            f"metrics-only models score {parts}: the host's metrics (free memory falls "
            "through a run, and `correct` is recorded first) tell which case a row comes "
            "from, not whether it holds an error. The leaderboard warns of it (`Recording "
            "order`, from `leakage.json`).")


def ablation_section(outcomes: list[dict[str, Any]]) -> list[str]:
    """Logs only / metrics only / both: same windows, hold-out runs, true labels."""
    rows = ablation_rows(outcomes)
    if not rows:
        return []
    head = ["window", "family", "logs", "metrics", "both", "logs", "metrics", "both",
            "logs", "metrics", "both"]
    return ["## Logs, metrics, both (ablation)", "",
            "Each family once on the logs (its log features), once on the metric features "
            "alone (`mx_*`: the service container's and the host's metrics over the window, "
            "`lo2-load --load-metrics`) and once on both, in the same configuration: "
            "target-service labels, one model for all services, the same windows and "
            "held-out runs. Columns 3-5: ROC-AUC against true labels (the row holds an "
            "injected error event); 6-8: ground-truth recall at the cut flagging 1 % of "
            "hold-out normal rows; 9-11: ROC-AUC under the target-service labels.", "",
            *_verdict(rows), *filter(None, [metric_shortcut_line(outcomes)]), "",
            "The generator's metrics follow the traffic of each service (requests drive CPU, "
            "network and disk) and carry no error signal of their own, as far as the real "
            "exports show; the real LO2 metrics have ~485 series kinds where the generator "
            "makes 14, so treat a gain or a loss here as a property of the generated sample, "
            "to be checked on real runs.", "",
            _table(head, rows)]


def _shortcut_line(outcomes: list[dict[str, Any]]) -> str | None:
    """The test-case / whole-sequence shortcut in numbers: the model with the best label
    ROC-AUC there, with its true-label ROC-AUC and its flags on non-target rows."""
    cells = [o for o in _pick(outcomes, "test-case", None) if not o["config"].per_service]
    if not cells:
        return None
    board = cells[0]["board"].filter(pl.col("service") == "all").drop_nulls("roc_auc")
    if board.height == 0:
        return None
    r = board.sort(["roc_auc", "model"], descending=[True, False]).row(0, named=True)
    return (f"- **The shortcut, measured.** With `test-case` labels on whole sequences the best "
            f"hold-out ROC-AUC is `{r['model']}`'s {_f(r['roc_auc'])}; against true labels "
            f"it is {_f(r.get('gt_roc_auc'))}, and it flags {_f(r.get('fp_rate_non_target'))} "
            "of the other services' rows of error cases, which hold no error: it tells "
            "error-case recordings from `correct`, not errors from traffic.")


READING = [
    "- **Labels.** `target-service` labels keep every row: the other services' rows of an "
    "error case are normal, so a model that flags them pays in `FP non-target`. Training on "
    "them also removes the recording-length shortcut from supervised models.",
    "- **Windows.** Equal windows (only full ones are kept) remove length as a signal; the "
    "leakage table shows what is left per service. 10 s windows leave each error case one "
    "window (its start-of-case traffic) against six for `correct`; 5 s windows give two and "
    "twelve and keep every service under the 0.65 warning line.",
    "- **Targets column vs ROC-AUC column.** Under target-service labels a target window "
    "that holds no injected event still counts as anomalous, so the label ROC-AUC is capped "
    "by that label noise; `true ROC-AUC` and the ground-truth recall are the figures that say "
    "whether the error events are found.",
    "- **How far this holds on real data.** The generated errors bring words (error codes, "
    "status names) that never occur in normal windows, so novelty scores (`event_oov_words`, "
    "`event_surprisal_words`) and word-based classifiers separate them almost perfectly here. "
    "Real LO2 has a larger, noisier vocabulary and error-like lines in `correct`; expect lower "
    "figures there, most for the signatures whose code also occurs in `correct` (listed "
    "above as `code also in correct`).",
]


def document(outcomes: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    sample, loads = facts["sample"], facts["loads"]
    classes = signature_classes(Path(facts["manifest"]))
    load_bits = []
    for name, info in loads.items():
        w = info.get("window_info") or {}
        dropped = w.get("dropped_tail_events") if isinstance(w, dict) else None
        load_bits.append(f"window {name}: {info['sequences']:,} rows"
                         + (f" ({dropped:,} events of partial tail windows dropped)"
                            if dropped else ""))
    first = next((o for o in outcomes if not o.get("error")), None)
    split = (first or {}).get("split") or {}
    lines = [
        "# Evaluation matrix", "",
        "Generated by `python benchmarks/eval_matrix.py` (do not edit by hand; re-run it). "
        "Every registry model and the Isolation Forest, trained on training runs, "
        "thresholded on calibration runs (`--threshold fp-target`, 1 %) and evaluated on "
        "held-out runs (no run on both sides), for each label mode (`target-service`: a row "
        "is anomalous iff its error case targets its service, the other services' rows are "
        "normal; `test-case`: the dataset's labels), window and service setting.", "",
        f"Sample: `generate(runs={sample['runs']}, scale={sample['scale']}, "
        f"seed={sample['seed']})`: {sample['lines']:,} lines, {sample['injected']:,} "
        f"injected error events; loaded with the default start-up trimming: "
        + "; ".join(load_bits) + ". Hold-out runs: "
        + ", ".join(split.get("holdout_runs") or []) + f". Models: `{facts['models']}`.", "",
    ]
    shortcut = _shortcut_line(outcomes)
    lines += ["## Reading the matrix", "", *([shortcut] if shortcut else []), *READING, ""]
    lines += targets_section(outcomes, classes)
    lines += leakage_section(outcomes)
    lines += ablation_section(outcomes)
    lines += full_table(outcomes)
    lines += [f"Run: {facts['seconds']:.0f} s in total on {facts['machine']}.", ""]
    return "\n".join(lines)
