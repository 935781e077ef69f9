"""Render planned files to log text with polars string expressions, plus manifest rows.

One batch = the seven files of one test case. Lines are grouped by template (a loop over the
distinct templates, not over lines), each group is formatted with ``concat_str``, then the
batch is sorted by (file, time, request, position) and joined with ``"\\n"`` per file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from loglead_lo2.generator.plan import ENTITY_KINDS, REGISTRY, THREADS, FilePlan
from loglead_lo2.generator.templates import PLACEHOLDER, REDIRECT
from loglead_lo2.generator.values import to_series

_THREAD_NAMES = pl.Series("thread_name", THREADS, dtype=pl.String)


@dataclass
class Pools:
    """A run's registered clients, users and services, one table per entity kind (columns are
    placeholder names, see :mod:`loglead_lo2.generator.values`); each request holds a row
    index per kind (request columns ``client``, ``user``, ``svc``)."""

    client: pl.DataFrame
    user: pl.DataFrame
    svc: pl.DataFrame

    def column_of(self, name: str) -> tuple[str, pl.Series] | None:
        """``(request column, values)`` of placeholder ``name``, if an entity field."""
        for kind in ENTITY_KINDS:
            table: pl.DataFrame = getattr(self, kind)
            if name in table.columns:
                return kind, table.get_column(name)
        return None


@dataclass
class RenderedBatch:
    texts: list[str]  # one per planned file, "" when empty, else ending with "\n"
    lines: list[int]  # physical lines per file
    events: pl.DataFrame  # file, line_no, n_lines, t, kind, mechanism, code


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(parts, how="vertical") if parts else pl.DataFrame()


def _lines_frame(plans: list[FilePlan]) -> pl.DataFrame:
    frames, offset = [], 0
    for i, p in enumerate(plans):
        frames.append(pl.DataFrame({
            "file": pl.Series(np.full(len(p.t), i, dtype=np.int32)),
            "t": pl.Series(p.t), "req": pl.Series(p.req + offset),
            "pos": pl.Series(p.pos), "tid": pl.Series(p.tid),
        }))
        offset += p.n_requests
    return _concat(frames)


def _requests_frame(plans: list[FilePlan]) -> pl.DataFrame:
    """All requests of a batch; ASCII matrices become strings in one conversion each."""
    cols = {k: np.concatenate([p.requests[k] for p in plans]) for k in plans[0].requests}
    frame = pl.DataFrame({
        name: to_series(arr, name) if arr.ndim == 2 else pl.Series(name, arr)
        for name, arr in cols.items()
    })
    return frame.with_columns(
        pl.when(pl.col("hz")).then(pl.lit("")).otherwise(pl.col("cid")).alias("cid"))


def _value_expr(name: str, pools: Pools) -> pl.Expr:
    field = pools.column_of(name)
    if field is not None:
        key, series = field
        return pl.lit(series).gather(pl.col(key))
    if name == "jul":
        return pl.from_epoch("t", time_unit="ms").dt.strftime("%b %-d, %Y %-I:%M:%S %p")
    if name == "redirect":
        return pl.lit(REDIRECT)
    return pl.col(name)


def _template_expr(text: str, raw: bool, pools: Pools) -> pl.Expr:
    pieces: list[pl.Expr] = [] if raw else [pl.col("prefix")]
    last = 0
    for m in PLACEHOLDER.finditer(text):
        if m.start() > last:
            pieces.append(pl.lit(text[last:m.start()]))
        pieces.append(_value_expr(m.group(1), pools))
        last = m.end()
    if last < len(text):
        pieces.append(pl.lit(text[last:]))
    return pl.concat_str(pieces) if len(pieces) > 1 else pieces[0].cast(pl.String)


def render_batch(plans: list[FilePlan], pools: Pools) -> RenderedBatch:
    """Text of each planned file and the batch's error events with their line numbers."""
    lines = _lines_frame(plans)
    requests = _requests_frame(plans)
    n_files = len(plans)
    if lines.height == 0:
        return RenderedBatch([""] * n_files, [0] * n_files, _empty_events())
    req = lines["req"]
    cols = ["cid", "code", "uuid", "pkce", "client", "user", "svc"]
    frame = lines.with_columns(
        [requests[c].gather(req) for c in cols]
        + [_THREAD_NAMES.gather(requests["thread"].gather(req)).alias("thread_name")]
    ).with_columns(
        pl.concat_str([
            pl.from_epoch("t", time_unit="ms").dt.strftime("%H:%M:%S%.3f"),
            pl.lit(" ["), pl.col("thread_name"), pl.lit("]  "), pl.col("cid"), pl.lit(" "),
        ]).alias("prefix")
    )
    parts = []
    for (tid,), part in sorted(frame.partition_by("tid", as_dict=True).items()):
        expr = _template_expr(REGISTRY.texts[tid], REGISTRY.raw[tid], pools)
        # @{prefix} inside a multi-line template re-uses the line prefix.
        parts.append(part.select("file", "t", "req", "pos", "tid", expr.alias("line")))
    out = pl.concat(parts).sort(["file", "t", "req", "pos"])
    phys = np.array([REGISTRY.physical_lines(i) for i in range(len(REGISTRY.texts))])
    out = out.with_columns(
        pl.Series("n_lines", phys[out["tid"].to_numpy()], dtype=pl.Int64)
    ).with_columns(
        (pl.col("n_lines").cum_sum().over("file") - pl.col("n_lines") + 1).alias("line_no")
    )
    joined = out.group_by("file").agg(
        pl.col("line").str.join("\n"), pl.col("n_lines").sum().alias("count")
    )
    texts, counts = [""] * n_files, [0] * n_files
    for f, text, count in joined.iter_rows():  # one row per file
        texts[f] = text + "\n"
        counts[f] = int(count)
    return RenderedBatch(texts, counts, _events(out))


def _event_table() -> pl.DataFrame:
    rows = [(i, e.kind, e.mechanism, e.code) for i, e in enumerate(REGISTRY.events) if e]
    return pl.DataFrame(rows, schema={"tid": pl.Int32, "kind": pl.String,
                                      "mechanism": pl.String, "code": pl.String},
                        orient="row")


def _empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema={"file": pl.Int32, "line_no": pl.Int64, "n_lines": pl.Int64,
                                "t": pl.Int64, "kind": pl.String, "mechanism": pl.String,
                                "code": pl.String})


def _events(out: pl.DataFrame) -> pl.DataFrame:
    table = _event_table()
    if table.height == 0:
        return _empty_events()
    return out.join(table, on="tid", how="inner").select(
        "file", "line_no", "n_lines", "t", "kind", "mechanism", "code"
    ).sort(["file", "line_no"])
