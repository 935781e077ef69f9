"""The loader's ``--window``: one grid per (run, test case), full windows only, tail counted."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.enhancers import aggregate_sequences
from loglead_lo2.loader.window import WindowStats, cut_windows, files_with_dropped_lines
from loglead_lo2.schema import WINDOW_COLUMNS, validate_schema

T0 = datetime(2024, 7, 1, 12, 0, 0)
W5 = timedelta(seconds=5)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(milliseconds=round(seconds * 1000))


def _events(rows: list[tuple[str, str, str, float | None, str]]) -> pl.DataFrame:
    """Loader-like events from ``(run, test_case, service, seconds after T0, message)``, one
    file block per (run, test case, service) in the given order, line numbers per file."""
    df = pl.DataFrame(
        {
            "m_message": [r[4] for r in rows],
            "m_timestamp": pl.Series([None if r[3] is None else _at(r[3]) for r in rows],
                                     dtype=pl.Datetime("ms")),
            "run": [r[0] for r in rows],
            "test_case": [r[1] for r in rows],
            "service": [r[2] for r in rows],
        }
    )
    return df.with_columns(
        seq_id=pl.concat_str(["run", "test_case", "service"], separator="__"),
        line_no=pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("run", "test_case",
                                                                     "service"),
        normal=pl.col("test_case") == "correct",
        anomaly=pl.col("test_case") != "correct",
    )


# Case "err" of run r1, two services: the earliest event (b, 100.4 s) anchors the grid; the
# latest (b, 111.0 s) is 10.6 s later, so the case lasts 11 s (rounded up to the second):
# windows [100.4, 105.4) and [105.4, 110.4) are full, the tail [110.4, 115.4) is partial and
# its two events (one a 3-line stack trace) go.
HAND = [
    ("r1", "err", "a", 100.9, "INFO a0"),
    ("r1", "err", "a", 105.3, "INFO a1"),
    ("r1", "err", "a", 105.4, "INFO a2"),
    ("r1", "err", "a", 109.5, "INFO a3"),
    ("r1", "err", "a", 110.6, "ERROR boom\n\tat x.Y.z(Y.java:1)\n\tat x.Y.w(Y.java:2)"),
    ("r1", "err", "b", 100.4, "INFO b0"),
    ("r1", "err", "b", 107.0, "INFO b1"),
    ("r1", "err", "b", 111.0, "INFO b2"),
    # Case "short": 200.5 .. 203.2 s -> 3 s: shorter than one 5 s window.
    ("r1", "short", "a", 200.5, "INFO s0"),
    ("r1", "short", "a", 203.2, "INFO s1"),
    # Same case name in another run: its own grid (anchor 300 s), 10 s, no tail.
    ("r2", "err", "a", 300.0, "INFO c0"),
    ("r2", "err", "a", 309.999, "INFO c1"),
]


def test_hand_made_grid_indices_bounds_and_tail() -> None:
    events = _events(HAND)
    kept, stats = cut_windows(events, 5.0)
    validate_schema(kept.schema, WINDOW_COLUMNS, "windowed events")
    got = kept.select("run", "test_case", "service", "m_message", "window",
                      "window_start", "window_end", "seq_id").rows()
    w0, w1 = (_at(100.4), _at(105.4)), (_at(105.4), _at(110.4))
    expect = [
        ("r1", "err", "a", "INFO a0", 0, *w0, "r1__err__a__w0000"),
        ("r1", "err", "a", "INFO a1", 0, *w0, "r1__err__a__w0000"),
        ("r1", "err", "a", "INFO a2", 1, *w1, "r1__err__a__w0001"),
        ("r1", "err", "a", "INFO a3", 1, *w1, "r1__err__a__w0001"),
        ("r1", "err", "b", "INFO b0", 0, *w0, "r1__err__b__w0000"),
        ("r1", "err", "b", "INFO b1", 1, *w1, "r1__err__b__w0001"),
        ("r2", "err", "a", "INFO c0", 0, _at(300), _at(305), "r2__err__a__w0000"),
        ("r2", "err", "a", "INFO c1", 1, _at(305), _at(310), "r2__err__a__w0001"),
    ]
    assert got == expect
    assert kept.schema["window"] == pl.Int32
    t = stats.totals()
    assert t == {
        "cases": 3, "full_windows": 4, "cases_without_full_window": 1,
        "events_in": 12, "events_kept": 8,
        "dropped_tail_events": 4,  # a@110.6, b@111.0 and both events of "short"
        "dropped_tail_lines": 6,  # the stack trace has 3 lines
        "dropped_tail_windows": 2, "dropped_tail_sequences": 3,
        "events_of_cases_without_full_window": 2, "dropped_untimed_events": 0,
    }
    cases = stats.cases.select("run", "test_case", "length_s", "full_windows").rows()
    assert cases == [("r1", "err", 11, 2), ("r1", "short", 3, 0), ("r2", "err", 10, 2)]
    files = stats.per_file().rows()
    assert files == [("r1", "err", "a", 3), ("r1", "err", "b", 1), ("r1", "short", "a", 2)]


def test_case_length_is_the_span_rounded_up_to_the_second() -> None:
    # A load generator run of 10 s from the first event: 9.9 s of traffic is one 10 s case
    # (two full 5 s windows); an event exactly 10 s after the first opens the tail.
    rows = [("r", "e", "a", 100.2, "m0"), ("r", "e", "a", 106.0, "m1"),
            ("r", "e", "a", 110.1, "m2")]
    kept, stats = cut_windows(_events(rows), 5.0)
    assert kept["window"].to_list() == [0, 1, 1]
    assert stats.totals()["dropped_tail_events"] == 0
    assert kept["window_start"].to_list() == [_at(100.2), _at(105.2), _at(105.2)]
    later = [(*r[:3], 110.2 if r[3] == 110.1 else r[3], r[4]) for r in rows]
    kept, stats = cut_windows(_events(later), 5.0)  # type: ignore[arg-type]
    assert kept["m_message"].to_list() == ["m0", "m1"]
    assert stats.totals()["dropped_tail_events"] == 1


def test_every_kept_window_has_the_same_length() -> None:
    for seconds in (1.0, 2.5, 5.0, 10.0):
        kept, stats = cut_windows(_events(HAND), seconds)
        step = timedelta(milliseconds=round(seconds * 1000))
        assert (kept["window_end"] - kept["window_start"] == step).all()
        assert ((kept["m_timestamp"] >= kept["window_start"])
                & (kept["m_timestamp"] < kept["window_end"])).all()
        t = stats.totals()
        assert t["events_kept"] == kept.height
        assert t["events_kept"] + t["dropped_tail_events"] == t["events_in"]
        seqs = aggregate_sequences(kept)
        validate_schema(seqs.schema, WINDOW_COLUMNS, "windowed sequences")
        assert (seqs["window_end"] - seqs["window_start"] == step).all()
        assert (seqs["end_time"] < seqs["window_end"]).all()


def test_untimed_events_are_dropped_and_counted() -> None:
    rows = [("r", "e", "a", 100.2, "m0"), ("r", "e", "a", 110.3, "m1"),
            ("r", "e", "b", None, "x\ny")]
    kept, stats = cut_windows(_events(rows), 5.0)
    assert kept["m_message"].to_list() == ["m0"]
    t = stats.totals()
    assert (t["dropped_untimed_events"], t["dropped_tail_events"], t["dropped_tail_lines"]) == (
        1, 1, 1)
    files = files_with_dropped_lines(
        pl.DataFrame({"run": ["r", "r"], "test_case": ["e", "e"], "service": ["b", "a"]}), stats)
    assert files["window_dropped_lines"].to_list() == [2, 1]  # untimed lines count too


def test_without_window_nothing_is_cut() -> None:
    events = _events(HAND)
    plain, stats = cut_windows(events, None)
    assert plain.drop("window").equals(events)
    assert plain["window"].null_count() == plain.height
    assert "window_start" not in plain.columns and "window_start" not in aggregate_sequences(
        plain).columns
    assert stats.totals()["events_in"] == 0
    with pytest.raises(ValueError):
        cut_windows(events, -1.0)


def test_stats_add_up_over_batches_and_suggest_a_dividing_window() -> None:
    # 10 s and 60 s cases with one event every 100 ms: 7 s windows drop 3 of 10 s and 4 of
    # 60 s; 5 s windows divide both and drop only the event exactly on each case end.
    def case(run: str, name: str, length: int) -> list[tuple[str, str, str, float, str]]:
        return [(run, name, "a", t / 10, "m") for t in range(length * 10 + 1)]

    total = WindowStats()
    for run in ("r1", "r2"):  # two batches
        _, part = cut_windows(_events(case(run, "correct", 60) + case(run, "e1", 10)), 7.0)
        total.add(part)
    t = total.totals()
    assert t["cases"] == 4 and t["full_windows"] == 2 * (8 + 1)
    assert t["dropped_tail_events"] == 2 * (41 + 31)
    assert total.dropped_fraction() > 0.05
    assert total.suggestion() == (5, pytest.approx(4 / total.totals()["events_in"]))
    line = total.summary_line()
    assert line.startswith("[Window] 7s") and "--window 5" in line and "Over 5%" in line
    info = total.info("lo2_files.parquet")
    assert info["suggested_window"]["seconds"] == 5  # type: ignore[index]
    assert info["case_lengths"]["correct"]["max_full_windows"] == 8  # type: ignore[index]
    assert info["per_test_case"]["correct"] == {"full_windows": 16,  # type: ignore[index]
                                                "dropped_tail_events": 82}
    _, five = cut_windows(_events(case("r", "e1", 10)), 5.0)
    assert "--window" not in five.summary_line() and five.info("f")["suggested_window"] is None


# --- the generated sample -------------------------------------------------------------------


def _load(tree: Path, out: Path, window: float | None) -> dict[str, object]:
    from loglead_lo2.loader import LoadOptions, run_loader

    run_loader(LoadOptions(root=tree, output_dir=out, window=window, save_parquet=True,
                           save_events=True, overwrite=True))
    return json.loads((out / "lo2_load_info.json").read_text())


@pytest.fixture(scope="module", params=[0.05, 0.2], ids=["scale0.05", "scale0.2"])
def sample(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, Path, dict[str, object]]:
    from loglead_lo2.generator import generate

    base = tmp_path_factory.mktemp(f"windows_{request.param}")
    generate(base / "tree", runs=2, scale=request.param, seed=42)
    return base / "tree", base / "w5", _load(base / "tree", base / "w5", 5.0)


def _raw_cells(tree: Path) -> pl.DataFrame:
    """(run, test_case, service, cell) of every raw event on the 5 s grid, computed from the
    parsed events independently of the loader's windowing code."""
    from loglead_lo2.loader.discover import SelectOptions, select
    from loglead_lo2.loader.parse import parse_files

    raw, _ = parse_files(select(tree, SelectOptions()).files)
    ts = pl.col("m_timestamp").dt.epoch("ms")
    anchor = ts.min().over("run", "test_case")
    return raw.select("run", "test_case", "service", cell=(ts - anchor) // 5000)


def test_sample_windows_per_case_and_service(sample: tuple[Path, Path, dict[str, object]]
                                             ) -> None:
    tree, out, info = sample
    seqs = pl.read_parquet(out / "lo2_sequences_enhanced.parquet")
    windows = seqs.group_by("run", "test_case", "service").agg(pl.col("window").unique().sort())
    error = windows.filter(pl.col("test_case") != "correct")
    correct = windows.filter(pl.col("test_case") == "correct")
    assert error.height > 0 and correct.height > 0
    assert error["window"].list.eval(pl.element().is_in([0, 1])).list.all().all()
    assert correct["window"].list.max().max() == 11
    # every service with traffic in both halves of an error case: exactly windows {0, 1};
    # in `correct`: 0..11 for every service with traffic in all twelve windows
    busy = (_raw_cells(tree).group_by("run", "test_case", "service")
            .agg(pl.col("cell").unique().sort()))
    both = busy.filter(pl.col("test_case") != "correct",
                       pl.col("cell").list.set_intersection([0, 1]).list.len() == 2)
    full = busy.filter(pl.col("test_case") == "correct",
                       pl.col("cell").list.set_intersection(list(range(12))).list.len() == 12)
    assert both.height > error.height * 0.8 and full.height > 0
    for table, expect in ((both, [0, 1]), (full, list(range(12)))):
        got = table.select("run", "test_case", "service").join(
            windows, on=["run", "test_case", "service"], how="left")
        assert got["window"].to_list() == [expect] * table.height
    assert (seqs["window_end"] - seqs["window_start"] == W5).all()
    w = info["window"]
    assert isinstance(w, dict)
    cases = w["case_lengths"]
    assert (cases["correct"]["min_full_windows"], cases["correct"]["max_full_windows"]) == (12, 12)
    assert (cases["error_cases"]["min_full_windows"],
            cases["error_cases"]["max_full_windows"]) == (2, 2)
    assert w["full_windows"] == 2 * 12 + 2 * cases["error_cases"]["cases"]
    assert w["cases_without_full_window"] == 0 and w["suggested_window"] is None


def test_sample_counts_match_the_tables(sample: tuple[Path, Path, dict[str, object]]) -> None:
    tree, out, info = sample
    events = pl.read_parquet(out / "lo2_events.parquet")
    files = pl.read_parquet(out / "lo2_files.parquet")
    seqs = pl.read_parquet(out / "lo2_sequences_enhanced.parquet")
    w = info["window"]
    assert isinstance(w, dict)
    raw = _raw_cells(tree).height
    assert info["events"] == w["events_kept"] == events.height == int(seqs["seq_len"].sum())
    assert w["events_in"] == raw and w["events_in"] - w["events_kept"] == (
        w["dropped_tail_events"] + w["dropped_untimed_events"])
    assert w["dropped_fraction"] == pytest.approx(
        (raw - events.height) / raw, abs=1e-6)
    assert files.schema["window_dropped_lines"] == pl.Int64
    assert int(files["window_dropped_lines"].sum()) == w["dropped_tail_lines"]
    assert w["dropped_tail_windows"] <= w["cases"]
    assert info["sequences"] == seqs.height
    per_case = sum(v["dropped_tail_events"] for v in w["per_test_case"].values())
    assert per_case == w["dropped_tail_events"]


def test_sample_deterministic_and_unchanged_without_window(tmp_path: Path) -> None:
    from loglead_lo2.generator import generate

    tree, out = tmp_path / "tree", tmp_path / "w5"
    generate(tree, runs=2, scale=0.05, seed=42)
    _load(tree, out, 5.0)
    _load(tree, tmp_path / "again", 5.0)
    for name in ("lo2_events.parquet", "lo2_sequences_enhanced.parquet", "lo2_files.parquet"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    info = _load(tree, tmp_path / "plain", None)
    assert "window" not in info and info["windowed"] is False
    files = pl.read_parquet(tmp_path / "plain" / "lo2_files.parquet")
    assert (files["window_dropped_lines"] == 0).all()
    events = pl.read_parquet(tmp_path / "plain" / "lo2_events.parquet")
    assert "window_start" not in events.columns and events["window"].null_count() == events.height
