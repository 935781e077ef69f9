"""The report's figures: matplotlib (Agg canvas, no pyplot state) rendered to SVG data URIs.

Every figure is deterministic for the same inputs: ``svg.hashsalt`` fixes the element ids and
the SVG metadata carries no date or creator, so two reports of the same artifacts are
byte-identical.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import polars as pl

RC: dict[str, Any] = {"svg.hashsalt": "loglead-lo2-report", "svg.fonttype": "none",
                      "font.size": 8, "axes.titlesize": 9, "path.simplify": True}
GROUP_COLORS = {"correct": "#2e86c1", "non-target": "#7f8c8d", "target": "#c0392b"}


def _render(width: float, height: float, draw: Callable[[Any], None]) -> str:
    """Draw on a new figure and return it as a ``data:image/svg+xml;base64,`` URI."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(cast(Any, RC)):
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def curves(models: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> str:
    """ROC and precision-recall curves, one line per model (labels, scores)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    def draw(fig: Any) -> None:
        roc, pr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for key, y, s in models:
            fpr, tpr, _ = roc_curve(y, s)
            prec, rec, _ = precision_recall_curve(y, s)
            roc.plot(fpr, tpr, lw=1.2, label=key)
            pr.plot(rec, prec, lw=1.2, label=key)
        roc.plot([0, 1], [0, 1], ls=":", c="#999999", lw=0.8)
        roc.set(xlabel="false-positive rate", ylabel="true-positive rate",
                title="ROC (hold-out rows)", xlim=(0, 1), ylim=(0, 1.02))
        pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (hold-out rows)",
               xlim=(0, 1), ylim=(0, 1.02))
        roc.legend(loc="lower right", fontsize=7)
        pr.legend(loc="lower left", fontsize=7)

    return _render(10, 4.2, draw)


def histogram(key: str, hold: pl.DataFrame) -> str:
    """Score histograms of the hold-out rows by row group, with the threshold(s) drawn."""
    scores = hold["score"].cast(pl.Float64).to_numpy()
    finite = scores[np.isfinite(scores)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    thresholds = sorted({float(t) for t in hold["threshold"].drop_nulls().to_list()
                         if np.isfinite(t)})

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        for group, color in GROUP_COLORS.items():
            part = hold.filter(pl.col("row_group") == group)["score"].cast(pl.Float64)
            values = part.to_numpy()
            values = values[np.isfinite(values)]
            if values.size:
                ax.hist(values, bins=bins, color=color, alpha=0.55,
                        label=f"{group} ({values.size})")
        for i, t in enumerate(thresholds[:8]):
            ax.axvline(t, color="black", ls="--", lw=1,
                       label="threshold" if i == 0 else None)
        ax.set_yscale("log")
        ax.set(xlabel="anomaly score", ylabel="rows (log)", title=f"{key}: hold-out scores")
        ax.legend(fontsize=7)

    return _render(5, 3, draw)


def heatmap(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> str:
    """A 0..1 heat map with every cell's value written in it (NaN: grey, '-')."""
    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        masked = np.ma.masked_invalid(matrix)
        import matplotlib

        cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
        ax.imshow(masked, aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks(range(len(cols)), labels=list(cols), rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=6.5)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                v = matrix[i, j]
                ax.text(j, i, "-" if not np.isfinite(v) else f"{v:.2f}", ha="center",
                        va="center", fontsize=6)
        ax.set_title(title)

    return _render(min(3 + 1.3 * len(cols), 14), 1.6 + 0.2 * max(len(rows), 1), draw)


def shap_bars(key: str, table: pl.DataFrame, top: int = 20) -> str:
    """Mean |SHAP| bars (red: a higher value raises the score, blue: lowers it)."""
    head = table.head(top)

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        names = [_short(str(n)) for n in head["feature"].to_list()]
        directions = (head["direction"].to_list() if "direction" in head.columns
                      else ["none"] * head.height)
        colors = ["#c0392b" if d == "raises score" else "#2e86c1" if d == "lowers score"
                  else "#7f8c8d" for d in directions]
        ypos = np.arange(head.height)[::-1]
        ax.barh(ypos, head["mean_abs_shap"].cast(pl.Float64).to_numpy(), color=colors)
        ax.set_yticks(ypos, labels=names, fontsize=7)
        ax.set(xlabel="mean |SHAP|",
               title=f"{key}: mean |SHAP|\nred: a higher value raises the score, blue: lowers")

    return _render(5, 1.2 + 0.22 * max(head.height, 1), draw)


def beeswarm(key: str, values: pl.DataFrame, order: Sequence[str], top: int = 15) -> str:
    """SHAP summary plot: one row of points per feature (x: SHAP value, colour: the
    feature's value, scaled per feature), features in ``order`` (most important on top)."""
    features = [f for f in order if f in set(values["feature"].to_list())][:top]
    rng = np.random.default_rng(0)

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        points = None
        for i, name in enumerate(features):
            part = values.filter(pl.col("feature") == name).sort("seq_id")
            shap = part["shap"].to_numpy()
            raw = part["value"].to_numpy()
            span = float(np.nanmax(raw) - np.nanmin(raw)) if raw.size else 0.0
            colour = (raw - np.nanmin(raw)) / span if span > 0 else np.full(raw.size, 0.5)
            y = len(features) - 1 - i + rng.uniform(-0.3, 0.3, size=shap.size)
            points = ax.scatter(shap, y, c=colour, cmap="coolwarm", vmin=0, vmax=1, s=7,
                                linewidths=0)
        ax.axvline(0, color="#999999", lw=0.8)
        ax.set_yticks(range(len(features))[::-1], labels=[_short(f) for f in features],
                      fontsize=7)
        ax.set(xlabel="SHAP value (impact on the anomaly score)",
               title=f"{key}: SHAP summary (hold-out rows)")
        if points is not None:
            bar = fig.colorbar(points, ax=ax, ticks=[0, 1], pad=0.01)
            bar.ax.set_yticklabels(["low", "high"])
            bar.set_label("feature value", fontsize=7)

    return _render(6, 1.2 + 0.26 * max(len(features), 1), draw)


def _short(name: str, limit: int = 40) -> str:
    """A feature's plot label (metric features readable), cut to ``limit`` characters."""
    from loglead_lo2.enhancers.metric_features import label

    return label(name, limit)


__all__ = ["beeswarm", "curves", "heatmap", "histogram", "shap_bars"]
