"""Column contract and validated, atomic Parquet I/O.

Every table the pipeline exchanges is described here. Loaders write ``m_*`` columns plus the
keys; enhancers add ``e_*`` columns (each token list ``e_x`` has an ``e_x_len`` partner);
``seq_id`` joins events and sequences.

Loader columns (events, one row per log event; a stack trace is part of its event):

==================  ===================  ====================================================
column              dtype                meaning
==================  ===================  ====================================================
``m_message``       str                  raw event text from the level on (level padding
                                         kept: ``INFO  logger method - message``);
                                         continuation lines (stack traces) joined with ``\\n``
``m_timestamp``     datetime[ms]         full timestamp (date from the run folder's epoch)
``m_level``         str                  ``DEBUG``/``INFO``/``WARN``/``ERROR``/``TRACE``/null
``m_thread``        str                  thread name
``m_cid``           str                  22-character correlation id or null
``run``             str                  run folder name
``test_case``       str                  test-case folder name
``service``         str                  one of :data:`loglead_lo2.SERVICES`
``seq_id``          str                  ``run__test_case__service`` (``__wNNNN`` per window)
``line_no``         int64                1-based physical line number of the event's first line
``normal``          bool                 test case is ``correct``
``anomaly``         bool                 ``not normal``
``target_service``  str                  service the test case targets (null for ``correct``)
``window``          int32                window index ``k`` on the case's grid (null without
                                         ``--window``)
``window_start``    datetime[ms]         grid bounds of the window, ``[start, end)``: only
``window_end``      datetime[ms]         with ``--window`` (absent without it); every kept
                                         window is full, ``end - start`` = the window length
==================  ===================  ====================================================

Sequences (one row per ``seq_id``): the keys and labels above (with ``--window``: ``window``,
``window_start``, ``window_end``; see :mod:`loglead_lo2.loader.window`) plus ``seq_len``,
``start_time``, ``end_time``, ``duration`` and ``duration_sec`` and, in the enhanced file,
the ``e_*`` token bags (``e_words`` distinct tokens + ``e_words_counts`` + ``e_words_len``
total, same for ``e_trigrams``) and the ordered ``e_event_drain_id`` list (see
:mod:`loglead_lo2.enhancers.sequences`).
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

KEY_COLUMNS: tuple[str, ...] = ("run", "test_case", "service", "seq_id", "normal", "anomaly")

EVENT_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "m_message": pl.String,
    "m_timestamp": pl.Datetime,
    "run": pl.String,
    "test_case": pl.String,
    "service": pl.String,
    "seq_id": pl.String,
    "line_no": pl.Int64,
    "normal": pl.Boolean,
    "anomaly": pl.Boolean,
}

WINDOW_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "window": pl.Int32,
    "window_start": pl.Datetime("ms"),
    "window_end": pl.Datetime("ms"),
}
"""Columns of windowed events and sequences (loader ``--window``); optional in the contracts:
without ``--window`` ``window`` is null and the bounds are absent."""

SEQUENCE_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "run": pl.String,
    "test_case": pl.String,
    "service": pl.String,
    "seq_id": pl.String,
    "normal": pl.Boolean,
    "anomaly": pl.Boolean,
    "seq_len": pl.Int64,
    "start_time": pl.Datetime,
    "end_time": pl.Datetime,
    "duration_sec": pl.Float64,
}

ENHANCED_SEQUENCE_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    **SEQUENCE_COLUMNS,
    "e_words": pl.List,
    "e_words_counts": pl.List,
    "e_words_len": pl.Int64,
    "e_trigrams": pl.List,
    "e_trigrams_counts": pl.List,
    "e_trigrams_len": pl.Int64,
    "e_event_drain_id": pl.List,
}

METRIC_COLUMNS: dict[str, pl.DataType | type[pl.DataType]] = {
    "run": pl.String,
    "test_case": pl.String,
    "metric": pl.String,
    "labels": pl.String,
    "timestamp": pl.Datetime,
    "value": pl.Float64,
}

SCHEMAS: dict[str, Mapping[str, pl.DataType | type[pl.DataType]]] = {
    "events": EVENT_COLUMNS,
    "sequences": SEQUENCE_COLUMNS,
    "sequences_enhanced": ENHANCED_SEQUENCE_COLUMNS,
    "metrics": METRIC_COLUMNS,
}


BAG_COUNTS_SUFFIX = "_counts"
"""``<list>_counts`` beside a token list column makes it a bag (distinct tokens + counts)."""


def with_bag_counts(columns: Iterable[str], schema: Mapping[str, object]) -> list[str]:
    """``columns`` plus the ``<c>_counts`` partner of each bag column present in ``schema``.

    Readers must fetch the counts with the tokens: a bag read without its counts would
    silently count every distinct token once.
    """
    out = list(dict.fromkeys(columns))
    extra = [f"{c}{BAG_COUNTS_SUFFIX}" for c in out if f"{c}{BAG_COUNTS_SUFFIX}" in schema]
    return out + [c for c in extra if c not in out]


def _dtype_ok(actual: pl.DataType, expected: pl.DataType | type[pl.DataType]) -> bool:
    if isinstance(expected, type):
        return actual.base_type() == expected or isinstance(actual, expected)
    return actual == expected


def validate_schema(
    schema: Mapping[str, pl.DataType],
    required: Mapping[str, pl.DataType | type[pl.DataType]] | Iterable[str],
    where: str,
) -> None:
    """Raise :class:`UserError` naming ``where`` and each missing or mistyped column."""
    if not isinstance(required, Mapping):
        required = {name: None for name in required}  # type: ignore[misc]
    missing = [c for c in required if c not in schema]
    if missing:
        raise UserError(
            f"{where}: missing column(s) {', '.join(missing)} "
            f"(has: {', '.join(schema) or 'none'}). Re-create it with the phase that writes it."
        )
    wrong = [
        f"{c} is {schema[c]}, expected {getattr(t, '__name__', t)}"
        for c, t in required.items()
        if t is not None and not _dtype_ok(schema[c], t)
    ]
    if wrong:
        raise UserError(f"{where}: wrong column type(s): {'; '.join(wrong)}.")


def _check_kind(kind: str | None) -> Mapping[str, pl.DataType | type[pl.DataType]]:
    if kind is None:
        return {}
    if kind not in SCHEMAS:
        raise ValueError(f"unknown table kind {kind!r}; known: {', '.join(SCHEMAS)}")
    return SCHEMAS[kind]


def read_parquet(
    path: str | os.PathLike[str],
    kind: str | None = None,
    columns: list[str] | None = None,
    required: Iterable[str] = (),
) -> pl.DataFrame:
    """Read a Parquet file, checking it exists, is Parquet and has the ``kind`` columns.

    ``columns`` restricts what is read (the contract is still checked on the file's schema).
    """
    path = Path(path)
    schema = read_parquet_schema(path)
    contract = dict(_check_kind(kind))
    contract.update({c: None for c in required if c not in contract})  # type: ignore[misc]
    validate_schema(schema, contract, str(path))
    if columns is not None:
        validate_schema(schema, columns, str(path))
    try:
        return pl.read_parquet(path, columns=columns)
    except Exception as exc:  # noqa: BLE001 - corrupt data pages
        raise UserError(f"{path}: cannot read Parquet data ({exc}). Re-create the file.") from exc


def read_parquet_schema(path: str | os.PathLike[str]) -> dict[str, pl.DataType]:
    """Schema of a Parquet file, or a :class:`UserError` naming the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found. Run the phase that writes it first.")
    if not path.is_file():
        raise UserError(f"{path}: not a file.")
    try:
        return dict(pl.read_parquet_schema(path))
    except Exception as exc:  # noqa: BLE001 - polars raises several types for bad files
        raise UserError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}). "
            "Delete it and re-run the phase that writes it."
        ) from exc


def shown_path(path: Path) -> Path:
    """``path`` as the user knows it: a file staged by an output set
    (``<folder>/.lo2-stage-<phase>-<pid>/<name>``) is shown as ``<folder>/<name>``.
    A load's part folder being written (``lo2_parts/.tmp-part-<run>-<pid>/<name>``) is shown
    as the folder it becomes (``lo2_parts/part-<run>/<name>``)."""
    import re

    parts = path.parts
    for i, part in enumerate(parts):
        if part.startswith(".lo2-stage-"):
            return Path(*parts[:i], *parts[i + 1:])
        if part.startswith(".tmp-part-"):
            return Path(*parts[:i], re.sub(r"-\d+\Z", "", part[len(".tmp-"):]), *parts[i + 1:])
    return path


@contextmanager
def io_errors(path: Path) -> Iterator[None]:
    """Raise I/O failures while writing ``path`` (disk full, permission) as an ``OSError``
    naming it, whether they come from the OS or wrapped by polars (``ComputeError: ... (os
    error 28)``), so the CLIs print one line with the file and the fix."""
    import re

    shown = str(shown_path(Path(path)))
    try:
        yield
    except OSError as exc:
        code = exc.errno or errno.EIO
        raise OSError(code, exc.strerror or os.strerror(code), shown) from exc
    except pl.exceptions.ComputeError as exc:
        found = re.search(r"os error (\d+)", str(exc))
        if not found:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), shown) from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_path(path: Path) -> Path:
    """A temp file beside ``path`` with the permissions a plain ``open()`` would give."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp file beside ``path``; move it onto ``path`` only if the block succeeds.

    The one way this project writes files: readers never see a half-written artifact and an
    interrupted write leaves the previous file in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_overwrite(path: str | os.PathLike[str], overwrite: bool, flag: str) -> None:
    """Refuse to replace an existing ``path`` unless ``overwrite`` (name the ``flag``)."""
    if Path(path).exists() and not overwrite:
        raise UserError(f"{path} exists; pass {flag} to replace it.")


def write_parquet(
    df: pl.DataFrame, path: str | os.PathLike[str], kind: str | None = None
) -> int:
    """Validate ``df`` against ``kind``, write it atomically (zstd, a CRC per data page, so a
    damaged page is found by :func:`verify_pages`) and re-check the row count.

    Returns the number of rows written.
    """
    path = Path(path)
    validate_schema(df.schema, _check_kind(kind), f"table for {path}")
    with io_errors(path), atomic_path(path) as tmp:
        # one chunk: pyarrow's pages (dictionary fallback) follow the chunks, which follow
        # how the frame was built (e.g. the number of parse threads, so the machine's cores)
        df.rechunk().write_parquet(tmp, compression="zstd", statistics=True, use_pyarrow=True,
                         pyarrow_options={"write_page_checksum": True})
        verify_rows(tmp, df.height, display=path)
    return df.height


def verify_pages(path: str | os.PathLike[str]) -> int:
    """Read every page of a Parquet file, checking the CRC each page carries (files of this
    project have them; pages without one are only decoded). Returns the rows; a damaged file
    raises :class:`UserError` naming it."""
    import pyarrow.parquet as pq

    try:
        return int(pq.read_table(path, page_checksum_verification=True).num_rows)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises OSError/ArrowInvalid variants
        raise UserError(f"{path}: damaged ({str(exc).splitlines()[0][:160]}); re-run the "
                        "phase that writes it.") from exc


def verify_rows(path: Path, expected: int, display: Path | None = None) -> None:
    """Re-open a written Parquet file and check it holds ``expected`` rows."""
    import pyarrow.parquet as pq

    got = pq.ParquetFile(path).metadata.num_rows
    if got != expected:
        raise OSError(f"{display or path}: wrote {expected} rows but the file holds {got}")


class ParquetStreamWriter:
    """Append DataFrames to one Parquet file, atomically published on :meth:`close`.

    Used to stream enhancer batches so memory stays bounded. Validates every batch against
    ``kind`` and keeps the first batch's Arrow schema.
    """

    def __init__(self, path: str | os.PathLike[str], kind: str | None = None) -> None:
        self.path = Path(path)
        self.kind = kind
        self.rows = 0
        self._writer = None
        self._schema = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = _tmp_path(self.path)

    def write(self, df: pl.DataFrame) -> None:
        import pyarrow.parquet as pq

        validate_schema(df.schema, _check_kind(self.kind), f"batch for {self.path}")
        table = df.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())  # see write_parquet
        with io_errors(self.path):
            if self._writer is None:
                self._schema = table.schema
                self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd",
                                            write_page_checksum=True)
            elif table.schema != self._schema:
                table = table.cast(self._schema)
            assert self._writer is not None
            self._writer.write_table(table)
        self.rows += df.height

    def close(self) -> int:
        """Finish the file, check its row count and move it into place; returns rows."""
        try:
            if self._writer is None:
                raise ValueError(f"{self.path}: nothing was written")
            with io_errors(self.path):
                self._writer.close()
                verify_rows(self._tmp, self.rows, display=self.path)
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()
        return self.rows

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> ParquetStreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically (temp file + rename)."""
    with io_errors(Path(path)), atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
