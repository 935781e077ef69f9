"""Drain state: saved, checked and restored exactly; loads started from it keep template ids."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.enhancers.drain import DrainParser
from loglead_lo2.enhancers.drain_state import META_KEY, lineage_accepts, read_state
from loglead_lo2.errors import UserError

A = [f"INFO c.n.o.T{i % 3} handle - token <UUID> issued for client {i % 5} scope read"
     for i in range(40)]
B = [f"ERROR c.n.o.U{i % 2} fail - user {i % 7} not found status {400 + i % 3}"
     for i in range(30)]


def _frame(messages: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"e_message_normalized": messages})


def _ids(parser: DrainParser, messages: list[str]) -> list[str]:
    return parser.parse(_frame(messages))["e_event_drain_id"].to_list()


def test_restored_parser_equals_the_original(tmp_path: Path) -> None:
    import jsonpickle

    first = DrainParser()
    before = _ids(first, A)
    info = first.save_state(tmp_path / "s.parquet")
    assert info.templates == len(first.template_table()) and info.messages == len(set(A))
    again = DrainParser.from_state(tmp_path / "s.parquet")
    # drain3's own snapshot (jsonpickle of its Drain object) is the same, byte for byte
    assert jsonpickle.dumps(again._miner.drain, keys=True) == \
        jsonpickle.dumps(first._miner.drain, keys=True)
    assert _ids(again, A) == before
    # learning goes on identically: new messages get the same new ids in both
    assert _ids(again, B) == _ids(first, B)
    assert again.lineage == (info.sha256,) and again.start_state == info


def test_fingerprint_names_content_and_lineage_grows(tmp_path: Path) -> None:
    p1 = DrainParser()
    _ids(p1, A)
    s1 = p1.save_state(tmp_path / "1.parquet")
    assert p1.save_state(tmp_path / "1b.parquet").sha256 == s1.sha256  # same content
    p2 = DrainParser.from_state(tmp_path / "1.parquet")
    assert p2.save_state(tmp_path / "same.parquet").lineage == ()  # learnt nothing new
    _ids(p2, B)
    s2 = p2.save_state(tmp_path / "2.parquet")
    assert s2.sha256 != s1.sha256 and s2.lineage == (s1.sha256,)
    s3 = DrainParser.from_state(tmp_path / "2.parquet").save_state(tmp_path / "3.parquet")
    assert s3.sha256 == s2.sha256
    p3 = DrainParser.from_state(tmp_path / "2.parquet")
    _ids(p3, ["WARN x y - something entirely new here"])
    s4 = p3.save_state(tmp_path / "4.parquet")
    assert s4.lineage == (s1.sha256, s2.sha256)
    assert lineage_accepts(s1.sha256, s4.as_dict())
    assert lineage_accepts(s4.sha256, s4.as_dict())
    assert not lineage_accepts(s4.sha256, s1.as_dict())
    assert not lineage_accepts(s1.sha256, None)


def _rewrite(path: Path, out: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    header = json.loads(table.schema.metadata[META_KEY])
    edit(header)
    pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(header)}), out)
    return out


@pytest.mark.parametrize("edit, why", [
    (lambda h: h["clusters"][0].__setitem__(2, ["changed"]), "does not match the sha256"),
    (lambda h: h.__setitem__("version", 99), "format version 99"),
    (lambda h: h.__setitem__("format", "x"), "no loglead-lo2 header"),
    (lambda h: h["tree"]["ids"].append(999), "unknown clusters"),
    (lambda h: h.__setitem__("tree", [1]), "malformed prefix tree"),
    (lambda h: h.__setitem__("clusters", "x"), "malformed clusters"),
])
def test_bad_states_are_refused(tmp_path: Path, edit, why: str) -> None:  # type: ignore[no-untyped-def]
    parser = DrainParser()
    _ids(parser, A)
    good = tmp_path / "good.parquet"
    parser.save_state(good)
    with pytest.raises(UserError, match=why):
        read_state(_rewrite(good, tmp_path / "bad.parquet", edit))


def test_unreadable_states_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="not a usable Drain state"):
        DrainParser.from_state(tmp_path / "junk.parquet")
    with pytest.raises(UserError, match="not a regular file"):
        DrainParser.from_state(tmp_path / "missing.parquet")
    pl.DataFrame({"message": ["a"], "cid": [1]}).write_parquet(tmp_path / "plain.parquet")
    with pytest.raises(UserError, match="no loglead-lo2 header"):
        read_state(tmp_path / "plain.parquet")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.parquet")  # never opened: it would block
        with pytest.raises(UserError, match="not a regular file"):
            read_state(tmp_path / "fifo.parquet")


def test_deeply_nested_header_is_an_error_not_a_crash(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    deep = '{"format": "loglead-lo2 drain state", "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    table = pa.table({"message": ["a"], "cid": [1]}).replace_schema_metadata({META_KEY: deep})
    pq.write_table(table, tmp_path / "deep.parquet")
    with pytest.raises(UserError, match="not a usable Drain state"):
        read_state(tmp_path / "deep.parquet")


def test_loader_cli_drain_state(lo2_sample: Path, lo2_result: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from loglead_lo2.loader.cli import main

    state = lo2_result / "lo2_drain_state.parquet"
    info = json.loads((lo2_result / "lo2_load_info.json").read_text())["drain"]
    assert read_state(state).info.sha256 == info["sha256"] and info["started_from"] is None
    out = tmp_path / "again"
    assert main(["--root", str(lo2_sample), "--output-dir", str(out), "--save-parquet",
                 "--drain-state", str(state), "-q"]) == 0
    again = json.loads((out / "lo2_load_info.json").read_text())["drain"]
    # the same logs from the saved state: nothing new, every id the same
    assert again["sha256"] == info["sha256"] and again["started_from"]["sha256"] == info["sha256"]
    cols = ["seq_id", "e_event_drain_id"]
    old = pl.read_parquet(lo2_result / "lo2_sequences_enhanced.parquet", columns=cols)
    new = pl.read_parquet(out / "lo2_sequences_enhanced.parquet", columns=cols)
    assert old.sort("seq_id").equals(new.sort("seq_id"))
    capsys.readouterr()
    assert main(["--root", str(lo2_sample), "--output-dir", str(tmp_path / "x"),
                 "--drain-state", str(state)]) == 2
    assert "--save-parquet" in capsys.readouterr().err
    assert main(["--root", str(lo2_sample), "--output-dir", str(tmp_path / "y"),
                 "--save-parquet", "--drain-state",
                 str(lo2_result / "lo2_drain_templates.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a usable Drain state" in err[0]
