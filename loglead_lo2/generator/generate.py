"""Write a seeded, LO2-shaped tree: runs x 54 test cases x 7 service logs, plus ground truth.

``generate()`` is the library entry point behind ``lo2-sample``. Every file's content comes
from a generator seeded by ``(seed, run, test case, service)``, so the same arguments give a
byte-identical tree whatever the generation order.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from loglead_lo2 import SERVICES, __version__
from loglead_lo2.artifacts import MANIFEST_FILE, SAMPLE_FILE
from loglead_lo2.cases import test_cases
from loglead_lo2.errors import UserError
from loglead_lo2.generator.plan import (
    ENTITY_KINDS,
    EntitySlice,
    FilePlan,
    entity_quota,
    plan_file,
)
from loglead_lo2.generator.render import Pools, render_batch
from loglead_lo2.generator.schedule import (
    NAMINGS,
    NS_FILE,
    NS_POOLS,
    CaseSlot,
    RunPlan,
    plan_runs,
    rng_for,
)
from loglead_lo2.generator.values import client_pool, service_pool, user_pool
from loglead_lo2.progress import progress as progress_bar
from loglead_lo2.schema import write_text_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = MANIFEST_FILE
SUMMARY_NAME = SAMPLE_FILE
KNOWN_FILES = (MANIFEST_NAME, SUMMARY_NAME)
MANIFEST_COLUMNS = ("run", "test_case", "service", "line_no", "n_lines", "timestamp", "kind",
                    "mechanism", "code")
BATCH_LINES = 150_000


def log_name(service: str) -> str:
    """File name of a service's log in a test-case folder."""
    return f"light-oauth2-oauth2-{service}-1.log"


@dataclass
class GenerationSummary:
    """What :func:`generate` wrote."""

    out: Path
    runs: list[str]
    files: int
    lines: int
    injected: int
    background: int = 0
    seconds: float = 0.0
    epochs: list[int] = field(default_factory=list)

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


def _pools(seed: int, plan: RunPlan, scale: float) -> tuple[Pools, dict[int, EntitySlice]]:
    """The run's entity pools and each case's slice of them (cases never share entities)."""
    slices: dict[int, EntitySlice] = {}
    total = dict.fromkeys(ENTITY_KINDS, 0)
    for slot in plan.slots:
        size = {k: entity_quota(k, slot.seconds, scale) for k in ENTITY_KINDS}
        slices[slot.index] = EntitySlice(dict(total), size)
        for k in ENTITY_KINDS:
            total[k] += size[k]
    rng = rng_for(seed, NS_POOLS, plan.index)
    pools = Pools(client_pool(rng, total["client"]), user_pool(rng, total["user"]),
                  service_pool(rng, total["svc"]))
    return pools, slices


def _prepare_out(out: Path, overwrite: bool, plans: list[RunPlan]) -> None:
    """Refuse a non-empty ``out`` unless ``overwrite``; then remove only what we generate."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory; choose another --out.")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out} is not empty; pass --overwrite to replace the sample in it.")
        names = {p.name for p in plans}
        previous = out / SUMMARY_NAME
        if previous.is_file():
            try:
                names.update(json.loads(previous.read_text("utf-8")).get("run_names", []))
            except (OSError, ValueError):
                log.warning("%s: unreadable, only replacing this sample's runs", previous)
        for name in sorted(names):
            target = out / name
            if "/" not in name and target.is_dir():
                shutil.rmtree(target)
        for name in KNOWN_FILES:
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _write_run(out: Path, plan: RunPlan, seed: int, scale: float, with_metrics: bool,
               writer: ThreadPoolExecutor) -> tuple[int, int, pl.DataFrame]:
    """Write one run; returns (files, physical lines, manifest rows).

    Test cases are planned and rendered in batches of about ``BATCH_LINES`` lines (fewer,
    larger polars operations); files are written by a background thread meanwhile.
    """
    cases = test_cases()
    pools, slices = _pools(seed, plan, scale)
    run_dir = out / plan.name
    files = lines = 0
    manifests: list[pl.DataFrame] = []
    pending: list[tuple[CaseSlot, list[FilePlan]]] = []
    planned = 0

    def flush() -> None:
        nonlocal files, lines, planned
        flat = [p for _, ps in pending for p in ps]
        batch = render_batch(flat, pools)
        for k, (slot, _) in enumerate(pending):
            case_dir = run_dir / slot.name
            case_dir.mkdir(parents=True, exist_ok=True)
            for s, service in enumerate(SERVICES):
                text = batch.texts[k * len(SERVICES) + s]
                writer.submit((case_dir / log_name(service)).write_bytes, text.encode("utf-8"))
        files += len(flat)
        lines += sum(batch.lines)
        if batch.events.height:
            manifests.append(batch.events.with_columns(
                pl.lit(pl.Series([slot.name for slot, _ in pending])).gather(
                    pl.col("file") // len(SERVICES)).alias("test_case"),
                pl.lit(pl.Series(SERVICES)).gather(pl.col("file") % len(SERVICES)).alias(
                    "service"),
            ).with_columns(pl.lit(plan.name).alias("run")))
        pending.clear()
        planned = 0

    for slot in plan.slots:
        case = cases[slot.name]
        startup = plan.startup_ms if case.is_normal else None
        plans = [
            plan_file(service, case, slot, scale,
                      rng_for(seed, NS_FILE, plan.index, slot.index, s), slices[slot.index],
                      startup)
            for s, service in enumerate(SERVICES)
        ]
        pending.append((slot, plans))
        planned += sum(len(p.t) for p in plans)
        if planned >= BATCH_LINES:
            flush()
        if with_metrics:
            from loglead_lo2.generator.metrics import write_case_metrics

            write_case_metrics(run_dir / slot.name / "metrics", seed, plan.index, slot,
                               plan.startup_ms)
    if pending:
        flush()
    rows = pl.concat(manifests) if manifests else _empty_manifest()
    return files, lines, rows


def _empty_manifest() -> pl.DataFrame:
    return pl.DataFrame(schema={"file": pl.Int32, "line_no": pl.Int64, "n_lines": pl.Int64,
                                "t": pl.Int64, "kind": pl.String, "mechanism": pl.String,
                                "code": pl.String, "run": pl.String, "test_case": pl.String,
                                "service": pl.String})


def _manifest_csv(rows: pl.DataFrame) -> str:
    table = rows.with_columns(
        pl.from_epoch("t", time_unit="ms").dt.strftime("%Y-%m-%dT%H:%M:%S%.3f").alias(
            "timestamp")
    ).select(MANIFEST_COLUMNS).sort(["run", "test_case", "service", "line_no"])
    return table.write_csv(line_terminator="\n")


def generate(out: Path, runs: int = 6, seed: int = 42, scale: float = 0.05,
             with_metrics: bool = False, naming: str = "light-oauth2-data",
             overwrite: bool = False, start_epoch: int | None = None,
             progress: Callable[[str], None] | None = None) -> GenerationSummary:
    """Generate an LO2-shaped sample under ``out``; see the module docstring.

    Raises :class:`UserError` for bad arguments or a non-empty ``out`` without ``overwrite``.
    """
    started = time.perf_counter()
    out = Path(out)
    if isinstance(runs, bool) or int(runs) != runs or runs < 1:
        raise UserError(f"--runs must be a whole number of at least 1 (got {runs}).")
    if not scale > 0 or scale > 100:
        raise UserError(f"--scale must be > 0 and at most 100 (got {scale}).")
    if naming not in NAMINGS:
        raise UserError(f"--naming must be one of {', '.join(NAMINGS)} (got {naming!r}).")
    plans = plan_runs(int(runs), int(seed), naming, start_epoch)
    _prepare_out(out, overwrite, plans)
    files = lines = 0
    manifests = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lo2-writer") as writer:
        for plan in progress_bar(plans, desc="sample", unit="run"):
            t_run = time.perf_counter()
            f, n, rows = _write_run(out, plan, int(seed), float(scale), with_metrics, writer)
            files, lines = files + f, lines + n
            manifests.append(rows)
            msg = (f"run {plan.index + 1}/{len(plans)} {plan.name}: {n:,} lines, "
                   f"{rows.height} error events ({time.perf_counter() - t_run:.1f} s)")
            log.info(msg)
            if progress is not None:
                progress(msg)
    manifest = pl.concat(manifests)
    write_text_atomic(out / MANIFEST_NAME, _manifest_csv(manifest))
    kinds = manifest["kind"].value_counts()
    count = dict(zip(kinds["kind"].to_list(), kinds["count"].to_list(), strict=True))
    summary = GenerationSummary(
        out=out, runs=[p.name for p in plans], files=files, lines=lines,
        injected=int(count.get("injected", 0)), background=int(count.get("background", 0)),
        seconds=round(time.perf_counter() - started, 3), epochs=[p.epoch for p in plans],
    )
    meta = {
        "generator": "loglead_lo2.generator", "version": __version__,
        "params": {"runs": int(runs), "seed": int(seed), "scale": float(scale),
                   "with_metrics": bool(with_metrics), "naming": naming,
                   "start_epoch": start_epoch},
        "run_names": summary.runs, "epochs": summary.epochs,
        "counts": {k: v for k, v in asdict(summary).items()
                   if k in ("files", "lines", "injected", "background")},
        "manifest": MANIFEST_NAME,
    }
    write_text_atomic(out / SUMMARY_NAME, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return summary
