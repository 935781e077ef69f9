"""Metric features per sequence: the Prometheus samples of the sequence's service container
and of the host, aggregated over the sequence's time span.

``metric_features(sequences, metrics, features)`` is a pure ``DataFrame -> DataFrame`` step:
it adds, for every :class:`MetricFeature` ``f``, the columns

* ``mx_<f>_n`` (int64): samples of the feature that fall in the span (0 when none);
* a gauge (``kind="gauge"``): ``mx_<f>_mean`` and ``mx_<f>_max`` of the samples;
* a counter (``kind="counter"``): ``mx_<f>_increase`` (the sum of the sample-to-sample
  increases that end in the span: last minus the sample before the first, with counter
  resets handled) and ``mx_<f>_rate`` (that increase per second of the time those increases
  cover, so a CPU-seconds counter gives cores);

and a span without a sample gets null statistics and ``_n = 0``, never a silent zero.

**Which samples.** ``scope="container"``: the series whose cadvisor ``name`` label is
``light-oauth2-oauth2-<service>-1`` for the sequence's service; ``scope="host"``: the
``job="node"`` series. ``labels`` narrows the series further (``{"mode": "!idle"}``: the
label is present and is not ``idle``). Several series of one feature (CPUs, devices,
interfaces) are summed at each timestamp (a range query's series share the step grid).
Samples are joined by run, test case and time: a sequence's span is its window
``[window_start, window_end)`` with ``--window``, else ``[start_time, end_time]`` (first to
last event).

**Counters** are cumulative: each sample's increase is ``value - previous`` within its series;
a value below the previous one is a reset (the container restarted; the counter began again
at 0), whose increase is the value itself. A series' first sample has no increase. The
sampling **step** is read from the data (the median gap between a series' samples) and
reported by :func:`sampling_steps`; a rate divides by the gaps actually covered, so missing
samples and other steps need no setting.

**Length.** ``_increase`` and ``_n`` grow with the span (whole-file sequences differ in length
by recording design): :data:`MODEL_STATS` are the length-free statistics models read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

PREFIX = "mx_"
"""Prefix of every metric feature column."""
CONTAINER_RE = r"^light-oauth2-oauth2-(.+)-1$"
"""cadvisor ``name`` label of a service's container; the group is the service."""
KINDS: dict[str, tuple[str, ...]] = {
    "counter": ("n", "increase", "rate"),
    "gauge": ("n", "mean", "max"),
}
"""Statistics written per feature kind."""
MODEL_STATS: tuple[str, ...] = ("rate", "mean", "max")
"""Statistics the fused models read: none of them grows with the span's length."""
# Float sums and means are taken over rows in a fixed order (a group's rows follow the input
# order, and a parallel join's output order varies): addition in another order changes the
# last bits, and the same inputs must give the same bytes.
SCOPES = ("container", "host")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYS = ["run", "test_case", "service"]


@dataclass(frozen=True)
class MetricFeature:
    """One metric aggregated per sequence (see the module docstring)."""

    name: str
    """Column stem: ``mx_<name>_<stat>``."""
    metric: str
    """Prometheus metric name (``lo2_metrics.parquet`` ``metric``)."""
    kind: str
    """``counter`` (cumulative) or ``gauge``."""
    scope: str
    """``container`` (the sequence's service) or ``host`` (``job="node"``)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Label filters: ``value`` (equal) or ``!value`` (present, not equal)."""
    unit: str = ""
    """Unit of a gauge's value, or of a counter's rate."""
    text: str = ""
    """What it measures, for reports."""

    def __post_init__(self) -> None:
        where = f"metric feature {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise UserError(f"{where}: name must be lower-case letters, digits and _ "
                            "(starting with a letter).")
        if not isinstance(self.metric, str) or not self.metric:
            raise UserError(f"{where}: metric must be a Prometheus metric name.")
        if self.kind not in KINDS:
            raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, not "
                            f"{self.kind!r}.")
        if self.scope not in SCOPES:
            raise UserError(f"{where}: scope must be one of {', '.join(SCOPES)}, not "
                            f"{self.scope!r}.")
        if not isinstance(self.labels, Mapping) or not all(
                isinstance(k, str) and _LABEL.fullmatch(k) and isinstance(v, str)
                for k, v in self.labels.items()):
            raise UserError(f"{where}: labels must map label names to strings.")

    def column(self, stat: str) -> str:
        """The column of one statistic: ``mx_<name>_<stat>``."""
        return f"{PREFIX}{self.name}_{stat}"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.column(s) for s in KINDS[self.kind])

    @property
    def model_columns(self) -> tuple[str, ...]:
        return tuple(self.column(s) for s in KINDS[self.kind] if s in MODEL_STATS)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["labels"] = dict(self.labels)
        return out


def _f(name: str, metric: str, kind: str, scope: str, unit: str, text: str,
       **labels: str) -> MetricFeature:
    return MetricFeature(name, metric, kind, scope, labels, unit, text)


DEFAULT_FEATURES: tuple[MetricFeature, ...] = (
    _f("cpu", "container_cpu_usage_seconds_total", "counter", "container", "cores",
       "CPU use of the service's container"),
    _f("memory", "container_memory_working_set_bytes", "gauge", "container", "bytes",
       "working-set memory of the service's container"),
    _f("net_rx", "container_network_receive_bytes_total", "counter", "container", "bytes/s",
       "network bytes received by the service's container"),
    _f("net_tx", "container_network_transmit_bytes_total", "counter", "container", "bytes/s",
       "network bytes sent by the service's container"),
    _f("fs_read", "container_fs_reads_bytes_total", "counter", "container", "bytes/s",
       "file-system bytes read by the service's container"),
    _f("fs_write", "container_fs_writes_bytes_total", "counter", "container", "bytes/s",
       "file-system bytes written by the service's container"),
    _f("host_load1", "node_load1", "gauge", "host", "", "host load average (1 min)"),
    _f("host_mem_available", "node_memory_MemAvailable_bytes", "gauge", "host", "bytes",
       "host memory available"),
    _f("host_cpu_busy", "node_cpu_seconds_total", "counter", "host", "cores",
       "host CPU time outside idle", mode="!idle"),
    _f("host_disk_read", "node_disk_read_bytes_total", "counter", "host", "bytes/s",
       "host disk bytes read"),
    _f("host_disk_written", "node_disk_written_bytes_total", "counter", "host", "bytes/s",
       "host disk bytes written"),
)
"""The default list: the service's CPU, memory, network and file-system I/O, and the host's
load, memory, CPU and disk (the LO2 paper's PCA of the metrics points at memory and disk).
Override it with ``lo2-load --metric-features FILE``."""


def read_features(path: Path) -> tuple[MetricFeature, ...]:
    """The feature list of a JSON or YAML file: a list of objects with the fields of
    :class:`MetricFeature` (``labels``, ``unit`` and ``text`` optional)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read the metric feature list "
                        f"({exc.strerror or exc}).") from exc
    yml = Path(path).suffix.lower() in (".yml", ".yaml")
    try:
        if yml:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise UserError(f"{path}: not valid {'YAML' if yml else 'JSON'} ({exc}); see "
                        "docs/metrics.md for the format.") from exc
    fields = set(MetricFeature.__dataclass_fields__)
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise UserError(f"{path}: expected a non-empty list of metric features (objects with "
                        "name, metric, kind, scope); see docs/metrics.md.")
    out = []
    for i, item in enumerate(data):
        unknown = sorted(set(item) - fields)
        missing = sorted({"name", "metric", "kind", "scope"} - set(item))
        if unknown or missing:
            what = "; ".join(x for x in (f"unknown field(s) {', '.join(unknown)}" * bool(unknown),
                                         f"missing {', '.join(missing)}" * bool(missing)) if x)
            raise UserError(f"{path}: feature {i + 1}: {what}.")
        try:
            out.append(MetricFeature(**item))
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from exc
    names = [f.name for f in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{path}: feature name(s) {', '.join(dupes)} given more than once.")
    return tuple(out)


def present(features: Sequence[MetricFeature], names: Iterable[str]
            ) -> tuple[tuple[MetricFeature, ...], list[str]]:
    """The features whose metric is one of ``names`` (the metrics found), and the names of
    the others."""
    names = set(names)
    return (tuple(f for f in features if f.metric in names),
            [f.name for f in features if f.metric not in names])


def _samples(metrics: pl.LazyFrame, f: MetricFeature) -> pl.LazyFrame:
    """``run, test_case, service, t`` (ms) and ``value`` (gauge) or ``delta``, ``dt``
    (counter) of one feature, its series summed per timestamp."""
    # The container name and the labels (a JSON string) are parsed once per distinct value,
    # not per sample: a series has thousands of samples.
    lf = metrics.filter(pl.col("metric") == f.metric)
    if f.scope == "container":
        services = (lf.select(pl.col("container").unique())
                    .with_columns(service=pl.col("container").str.extract(CONTAINER_RE, 1))
                    .filter(pl.col("service").is_not_null()))
        lf = lf.join(services, on="container", how="inner", maintain_order="left")
    else:
        lf = lf.filter(pl.col("job") == "node").with_columns(service=pl.lit(None, pl.String))
    if f.labels:
        keep = pl.lit(True)
        for label, want in sorted(f.labels.items()):
            value = pl.col("labels").str.json_path_match(f"$.{label}")
            keep = keep & (value != want[1:] if want.startswith("!") else value == want)
        matching = lf.select(pl.col("labels").unique()).filter(keep)
        lf = lf.join(matching, on="labels", how="semi", maintain_order="left")
    series = ["run", "test_case", "labels"]
    # eager and sorted by series and time: the per-timestamp sums add the series in one
    # fixed order (see the note at MODEL_STATS)
    df = (lf.select(*_KEYS, "labels", t=pl.col("timestamp").dt.epoch("ms"), value="value")
          .collect().sort(*series, "t"))
    if f.kind == "gauge":
        return df.group_by(*_KEYS, "t").agg(pl.col("value").sum()).lazy()
    # rows are sorted by series: a series starts where a key differs from the row above
    # (the same as shifting within each series, without hashing the label strings)
    first = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in series])
    prev = pl.when(first).then(None).otherwise(pl.col("value").shift(1))
    # a value below the previous one is a reset: the counter began again at 0
    return (df.with_columns(
                delta=pl.when(prev.is_null()).then(None)
                .when(pl.col("value") >= prev).then(pl.col("value") - prev)
                .otherwise(pl.col("value")),
                dt=pl.when(first).then(None).otherwise(pl.col("t") - pl.col("t").shift(1)))
            .filter(pl.col("delta").is_not_null())
            .group_by(*_KEYS, "t").agg(pl.col("delta").sum(), pl.col("dt").max()).lazy())


def spans(sequences: pl.DataFrame) -> pl.DataFrame:
    """``seq_id, run, test_case, service, start, end`` (ms, ``end`` exclusive) of each
    sequence: its window with ``--window``, else its first to last event."""
    if "window_start" in sequences.columns and "window_end" in sequences.columns:
        start, end = pl.col("window_start"), pl.col("window_end")
        return sequences.select("seq_id", *_KEYS, start=start.dt.epoch("ms"),
                                end=end.dt.epoch("ms"))
    return sequences.select("seq_id", *_KEYS, start=pl.col("start_time").dt.epoch("ms"),
                            end=pl.col("end_time").dt.epoch("ms") + 1)


def _in_spans(samples: pl.LazyFrame, win: pl.DataFrame, host: bool) -> pl.LazyFrame:
    """Each sample with the ``seq_id`` of the span it falls in (samples in none dropped)."""
    if host:  # the host's samples belong to every service's spans of the case
        services = win.lazy().select(*_KEYS).unique()
        samples = samples.drop("service").join(services, on=["run", "test_case"])
    return (samples.sort("t")
            .join_asof(win.lazy().sort("start"), left_on="t", right_on="start", by=_KEYS,
                       strategy="backward", check_sortedness=False)
            .filter(pl.col("seq_id").is_not_null() & (pl.col("t") < pl.col("end"))))


def metric_features(sequences: pl.DataFrame, metrics: pl.DataFrame,
                    features: Sequence[MetricFeature] = DEFAULT_FEATURES) -> pl.DataFrame:
    """``sequences`` with the ``mx_*`` columns of ``features`` added (row order kept).

    ``sequences``: ``seq_id``, ``run``, ``test_case``, ``service`` and ``start_time`` /
    ``end_time`` (or ``window_start`` / ``window_end``); ``metrics``: the loader's
    ``lo2_metrics.parquet`` table (any runs; only those of ``sequences`` are used).
    """
    need = ["seq_id", *_KEYS]
    missing = [c for c in need if c not in sequences.columns]
    if missing:
        raise ValueError(f"metric_features needs column(s) {', '.join(missing)}")
    win = spans(sequences)
    lazy = metrics.lazy().filter(
        pl.col("run").is_in(win.get_column("run").unique().implode()))
    out = sequences
    for f in features:
        hits = _in_spans(_samples(lazy, f), win, f.scope == "host")
        col = f.column
        if f.kind == "gauge":
            aggs = [pl.len().cast(pl.Int64).alias(col("n")),
                    pl.col("value").mean().alias(col("mean")),
                    pl.col("value").max().cast(pl.Float64).alias(col("max"))]
        else:
            aggs = [pl.len().cast(pl.Int64).alias(col("n")),
                    pl.col("delta").sum().cast(pl.Float64).alias(col("increase")),
                    (pl.col("delta").sum() / (pl.col("dt").sum() / 1000))
                    .cast(pl.Float64).alias(col("rate"))]
        # eager: a lazy plan may drop a sort that a group-by follows
        table = hits.collect().sort("seq_id", "t").group_by("seq_id").agg(aggs)
        out = (out.drop([c for c in f.columns if c in out.columns])
               .join(table, on="seq_id", how="left", maintain_order="left")
               .with_columns(pl.col(col("n")).fill_null(0)))
    return out


def sampling_steps(metrics: pl.DataFrame, features: Sequence[MetricFeature]
                   ) -> dict[str, float | None]:
    """Per feature, the median gap in seconds between consecutive samples of a series."""
    out: dict[str, float | None] = {}
    for f in features:
        gaps = (metrics.lazy().filter(pl.col("metric") == f.metric)
                .sort("run", "test_case", "labels", "timestamp")
                .select(gap=pl.col("timestamp").diff().over("run", "test_case", "labels")
                        .dt.total_milliseconds())
                .select(pl.col("gap").median()).collect().item())
        out[f.name] = None if gaps is None else float(gaps) / 1000
    return out


def model_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The metric feature columns among ``columns`` that models read, sorted."""
    stats = tuple(f"_{s}" for s in MODEL_STATS)
    return tuple(sorted(c for c in columns if c.startswith(PREFIX) and c.endswith(stats)))


_STAT_TEXT = {"rate": "rate over the span", "mean": "mean over the span",
              "max": "maximum over the span", "increase": "increase over the span",
              "n": "samples in the span"}


def describe(column: str, features: Sequence[MetricFeature] = DEFAULT_FEATURES) -> str | None:
    """Readable name of a metric feature column (``None`` for any other column), e.g.
    ``mx_cpu_rate`` -> ``metric: CPU use of the service's container (cores), rate over the
    span``."""
    if not column.startswith(PREFIX):
        return None
    stem, _, stat = column[len(PREFIX):].rpartition("_")
    if stat not in _STAT_TEXT or not stem:
        return None
    known = {f.name: f for f in features}
    f = known.get(stem)
    what = (f"{f.text or f.metric} ({f.unit})" if f is not None and f.unit
            else f.text or f.metric if f is not None else stem.replace("_", " "))
    return f"metric: {what}, {_STAT_TEXT[stat]}"


def missing_hint(columns: Sequence[str]) -> str:
    """The fix to append to a "missing column(s)" error when metric features are missing."""
    if any(c.startswith(PREFIX) for c in columns):
        return (" The mx_* metric features come from lo2-load --load-metrics --save-parquet "
                "on a tree with metrics/ folders.")
    return ""


def label(column: str, limit: int | None = None,
          features: Sequence[MetricFeature] = DEFAULT_FEATURES) -> str:
    """Short plot label of a feature: ``mx_cpu_rate`` -> ``cpu rate (metric, cores)``; any
    other name (a token) as it is; cut to ``limit`` characters (ending in ``...``)."""
    text = column
    if describe(column, features) is not None:
        stem, _, stat = column[len(PREFIX):].rpartition("_")
        unit = next((f.unit for f in features if f.name == stem), "")
        shown = unit if unit and stat in MODEL_STATS else ""
        text = f"{stem} {stat} (metric{', ' + shown if shown else ''})"
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["DEFAULT_FEATURES", "MODEL_STATS", "PREFIX", "MetricFeature", "describe", "label",
           "metric_features", "missing_hint", "model_columns", "present", "read_features",
           "sampling_steps", "spans"]
