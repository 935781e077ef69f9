"""Tests of loglead_lo2.enhancers on small hand-made events (real LO2 lines inline)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.enhancers import (
    TEMPLATES_FILE,
    DrainParser,
    aggregate_sequences,
    enhance_events,
    enhance_in_batches,
    length,
    normalize,
    trigrams,
    words,
)
from loglead_lo2.enhancers._common import concat_lists, first_seen_codes
from loglead_lo2.errors import UserError
from loglead_lo2.schema import read_parquet

# Real lines of the token service (run light-oauth2-data-1719592986), text after the cid.
AUTH_CODE = (
    "DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleAuthorizationCode - code = "
    "keNUio1dQP-rs6SyE15iUw redirectUri = http://localhost:8080/authorization"
)
REFRESH = (
    "DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleRefreshToken - refreshToken = "
    "96bce40c-3e1e-41df-ac31-34e16e0a46b8 scope = null"
)
REFRESH_2 = (
    "DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleRefreshToken - refreshToken = "
    "c0505771-06f5-4b6f-8e68-a5def85e196c scope = null"
)
USER_LOAD = "DEBUG c.networknt.oauth.cache.UserMapStore load - Load:66c2c2bd"
USER_LOAD_2 = "DEBUG c.networknt.oauth.cache.UserMapStore load - Load:d0d43439"
VALIDATE = (
    'DEBUG com.networknt.schema.TypeValidator debug - validate( "Basic Zjc1MjllN2UtYWNlMC00ZTM2'
    'LWFlZDItNDUzNTk5OGVhZTBmOnlJSHBkWEZOUTAyeE8tV0gzZUN1U3c=", "Basic Zjc1MjllN2UtYWNlMC00ZTM2'
    'LWFlZDItNDUzNTk5OGVhZTBmOnlJSHBkWEZOUTAyeE8tV0gzZUN1U3c=", authorization)'
)
CONFIG = (
    "INFO  com.networknt.config.Config getConfigStream - Config loaded from externalized "
    "folder for primary.jks in /config"
)
NORMALISED = "DEBUG c.n.openapi.ApiNormalisedPath <init> - normalised = /oauth2/token"
API_EXC = "ERROR c.n.o.t.h.Oauth2TokenPostHandler handleRequest - ApiException"
STATUS_404 = (
    'ERROR c.networknt.handler.LightHttpHandler setExchangeStatus - {"statusCode":404,'
    '"code":"ERR12014","message":"CLIENT_NOT_FOUND","description":"Client invalid_client_id is '
    'not found.","severity":"ERROR"}'
)
STATUS_PKCE = (
    'ERROR c.networknt.handler.LightHttpHandler setExchangeStatus - {"statusCode":400,'
    '"code":"ERR12039","message":"CODE_VERIFIER_TOO_LONG","description":"PKCE codeVerifier '
    'length is too long.","severity":"ERROR"}'
)
TRACE = (
    "ERROR c.n.exception.ExceptionHandler handleRequest - Exception:\n"
    "java.lang.NullPointerException: Null key is not allowed!\n"
    "\tat com.hazelcast.util.Preconditions.checkNotNull(Preconditions.java:59)\n"
    "\tat com.networknt.oauth.client.handler.Oauth2ClientPostHandler.handleRequest"
    "(Oauth2ClientPostHandler.java:123)\n"
    "\t... 12 common frames omitted"
)


def norm(message: str) -> str:
    return normalize(pl.DataFrame({"m_message": [message]}))["e_message_normalized"][0]


def make_events(spec: list[tuple[str, str, str, list[str]]]) -> pl.DataFrame:
    """Loader-shaped events from (run, test_case, service, messages); 1 s apart, line 1.."""
    rows = []
    t0 = datetime(2024, 6, 28, 16, 29, 40)
    for run, case, service, messages in spec:
        for i, message in enumerate(messages):
            rows.append({
                "m_message": message,
                "m_timestamp": t0 + timedelta(seconds=i, milliseconds=250 * (i % 2)),
                "m_level": message.split(" ", 1)[0],
                "m_thread": "XNIO-1 task-1",
                "m_cid": None,
                "run": run,
                "test_case": case,
                "service": service,
                "seq_id": f"{run}__{case}__{service}",
                "line_no": i + 1,
                "normal": case == "correct",
                "anomaly": case != "correct",
                "target_service": None if case == "correct" else service,
            })
    return pl.DataFrame(rows, schema_overrides={
        "m_timestamp": pl.Datetime("ms"), "line_no": pl.Int64, "m_cid": pl.String,
        "target_service": pl.String,
    })


CORRECT = [NORMALISED, AUTH_CODE, USER_LOAD, REFRESH, NORMALISED, API_EXC, CONFIG]
ERROR = [NORMALISED, VALIDATE, STATUS_404, USER_LOAD_2, REFRESH_2]


@pytest.fixture()
def events() -> pl.DataFrame:
    return make_events([
        ("run_a", "correct", "token", CORRECT),
        ("run_a", "access_token_client_id_not_found_404", "token", ERROR),
        ("run_b", "correct", "client", [TRACE, CONFIG]),
    ])


# --- normalize -------------------------------------------------------------------------------

def test_normalize_masks_ids_and_keeps_identifiers() -> None:
    assert norm(AUTH_CODE) == (
        "DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleAuthorizationCode - code = <ID> "
        "redirectUri = <URL>"
    )
    assert norm(REFRESH) == (
        "DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleRefreshToken - refreshToken = <UUID> "
        "scope = null"
    )
    assert norm(USER_LOAD) == "DEBUG c.networknt.oauth.cache.UserMapStore load - Load:<HEX>"
    assert norm(VALIDATE) == (
        'DEBUG com.networknt.schema.TypeValidator debug - validate( "Basic <B64>", '
        '"Basic <B64>", authorization)'
    )
    assert norm(CONFIG) == CONFIG.replace("INFO  ", "INFO ")
    assert norm(NORMALISED) == NORMALISED


def test_normalize_keeps_status_codes_and_enums() -> None:
    assert norm(STATUS_404) == STATUS_404  # nothing variable in it: ERR code, 404, enum kept
    assert norm(STATUS_PKCE) == STATUS_PKCE  # a 22-char enum is not an id


def test_normalize_stack_trace() -> None:
    assert norm(TRACE) == (
        "ERROR c.n.exception.ExceptionHandler handleRequest - Exception:\n"
        "java.lang.NullPointerException: Null key is not allowed!\n"
        "\tat com.hazelcast.util.Preconditions.checkNotNull(Preconditions.java:<NUM>)\n"
        "\tat com.networknt.oauth.client.handler.Oauth2ClientPostHandler.handleRequest"
        "(Oauth2ClientPostHandler.java:<NUM>)\n"
        "\t... <NUM> common frames omitted"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("ids kBWDF1y3Q2WaOBLYC9q6qw,sxn9TW9eQq6pn3-ZVwo2iw end", "ids <ID>,<ID> end"),
        ("from 172.18.0.5:5701 at 16:29:40.198", "from <IP>:<NUM> at <TIME>"),
        ("took 1234 ms, 3 retries, status 401", "took <NUM> ms, <NUM> retries, status 401"),
        ("obj Foo@1b6d3586 and 0x1F", "obj Foo@<HEX> and <HEX>"),
        ("mail steve@example.com", "mail <EMAIL>"),
        ("epoch 1719592986000 on 2024-06-28T16:29:40Z", "epoch <NUM> on <TIME>"),
        ("verifier E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM ok", "verifier <ID> ok"),
        ("enum VALIDATOR_REQUEST_PARAMETER_QUERY_MISSING_VALUE", None),
    ],
)
def test_normalize_rules(body: str, expected: str | None) -> None:
    head = "DEBUG c.n.Foo bar - "
    assert norm(head + body) == head + (body if expected is None else expected)


def test_normalize_line_without_header_and_null() -> None:
    out = normalize(pl.DataFrame({"m_message": ["Nov 20, 2024 4:29:31 PM com.hazelcast.X", None]}))
    assert out["e_message_normalized"].to_list() == ["<TIME> <TIME> com.hazelcast.X", ""]


# --- words, trigrams, length -----------------------------------------------------------------

def test_words_exact() -> None:
    df = words(normalize(pl.DataFrame({"m_message": [STATUS_404, NORMALISED, AUTH_CODE]})))
    assert df["e_words"].to_list() == [
        ["ERROR", "c.networknt.handler.LightHttpHandler", "setExchangeStatus", "statusCode",
         "404", "code", "ERR12014", "message", "CLIENT_NOT_FOUND", "description", "Client",
         "invalid_client_id", "is", "not", "found", "severity", "ERROR"],
        ["DEBUG", "c.n.openapi.ApiNormalisedPath", "init", "normalised", "oauth2", "token"],
        ["DEBUG", "c.n.o.t.h.Oauth2TokenPostHandler", "handleAuthorizationCode", "code",
         "<ID>", "redirectUri", "<URL>"],
    ]
    assert df["e_words_len"].to_list() == [17, 6, 7]
    assert df["e_words_len"].dtype == pl.Int64


def test_trigrams_exact() -> None:
    df = pl.DataFrame({"e_message_normalized": ["ab cd", "ab", "", "ab cd", "x\ny"]})
    out = trigrams(df)
    assert out["e_trigrams"].to_list() == [
        ["ab ", "b c", " cd"], [], [], ["ab ", "b c", " cd"], ["x\ny"],
    ]
    assert out["e_trigrams_len"].to_list() == [3, 0, 0, 3, 1]


def test_length_adds_partners() -> None:
    df = pl.DataFrame({"m_message": ["abcd", None], "e_x": [["a", "b"], None]})
    out = length(df)
    assert out["e_chars_len"].to_list() == [4, 0]
    assert out["e_x_len"].to_list() == [2, 0]
    assert out["e_chars_len"].dtype == pl.Int64


# --- drain -----------------------------------------------------------------------------------

def test_drain_templates_exact() -> None:
    df = normalize(pl.DataFrame({"m_message": [REFRESH, REFRESH_2, USER_LOAD, STATUS_404,
                                               STATUS_PKCE, API_EXC, REFRESH]}))
    parser = DrainParser()
    ids = parser.parse(df)["e_event_drain_id"].to_list()
    assert ids[0] == ids[1] == ids[6]
    assert len(set(ids)) == 5
    table = parser.template_table()
    templates = dict(zip(table["e_event_drain_id"], table["template"], strict=True))
    assert templates[ids[0]] == (
        "DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleRefreshToken - refreshToken = <UUID> "
        "scope = null"
    )
    assert templates[ids[2]] == "DEBUG c.networknt.oauth.cache.UserMapStore load - Load:<HEX>"
    assert templates[ids[3]] == STATUS_404
    assert templates[ids[4]] == STATUS_PKCE  # different ERR code, different template
    counts = dict(zip(table["e_event_drain_id"], table["count"], strict=True))
    assert counts[ids[0]] == 3 and sum(counts.values()) == 7
    assert table.columns == ["e_event_drain_id", "template", "count"]


def test_drain_variable_token_becomes_wildcard() -> None:
    df = pl.DataFrame({"e_message_normalized": [
        "INFO a.B m - user alice logged in", "INFO a.B m - user bob logged in",
    ]})
    parser = DrainParser()
    assert parser.parse(df)["e_event_drain_id"].n_unique() == 1
    assert parser.template_table()["template"].to_list() == ["INFO a.B m - user <*> logged in"]


def test_drain_ids_stable_across_calls_and_instances(events: pl.DataFrame) -> None:
    batch1 = normalize(events.filter(pl.col("run") == "run_a"))
    batch2 = normalize(events.filter(pl.col("run") == "run_b"))
    first, second = DrainParser(), DrainParser()
    a1, a2 = first.parse(batch1), first.parse(batch2)
    b1, b2 = second.parse(batch1), second.parse(batch2)
    assert a1["e_event_drain_id"].to_list() == b1["e_event_drain_id"].to_list()
    assert a2["e_event_drain_id"].to_list() == b2["e_event_drain_id"].to_list()
    again = first.parse(batch1)  # same parser, later call: same ids
    assert again["e_event_drain_id"].to_list() == a1["e_event_drain_id"].to_list()
    # CONFIG occurs in both batches and keeps its id
    config_ids = pl.concat([a1, a2]).filter(pl.col("m_message") == CONFIG)["e_event_drain_id"]
    assert config_ids.n_unique() == 1
    assert first.template_table()["count"].sum() == 2 * batch1.height + batch2.height


def test_drain_feeds_each_message_once_in_small_chunks(
    events: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loglead_lo2.enhancers import drain

    batch = normalize(events)
    reference = DrainParser().parse(batch)["e_event_drain_id"]
    monkeypatch.setattr(drain, "FEED_CHUNK", 2)
    parser = DrainParser()
    fed: list[str] = []
    add = parser._miner.add_log_message
    monkeypatch.setattr(parser._miner, "add_log_message", lambda m: fed.append(m) or add(m))
    assert parser.parse(batch)["e_event_drain_id"].equals(reference)
    parser.parse(batch.reverse())
    distinct = batch["e_message_normalized"].unique().sort().to_list()
    assert fed == distinct  # once each, sorted, never again in a later call
    assert parser.n_messages == len(distinct)


def test_drain_save_templates(tmp_path: Path, events: pl.DataFrame) -> None:
    parser = DrainParser()
    parser.parse(normalize(events))
    path = tmp_path / "t.parquet"
    assert parser.save_templates(path) == parser.template_table().height
    assert pl.read_parquet(path).equals(parser.template_table())


# --- contract: idempotence, declarations, missing columns ------------------------------------

def test_each_enhancer_is_idempotent(events: pl.DataFrame) -> None:
    parser = DrainParser()
    steps = [normalize, words, trigrams, parser.parse, length]
    df = events
    for step in steps:
        once = step(df)
        assert step(once).equals(once)
        df = once
    assert enhance_events(df, parser).equals(df)
    assert parser.template_table()["count"].sum() == events.height  # second parse not counted


def test_enhance_events_columns(events: pl.DataFrame) -> None:
    full = enhance_events(events, DrainParser())
    slim = enhance_events(events, DrainParser(), tokens=False)
    added = [c for c in full.columns if c not in events.columns]
    assert added == ["e_message_normalized", "e_words", "e_words_len", "e_trigrams",
                     "e_trigrams_len", "e_event_drain_id", "e_chars_len"]
    assert [c for c in slim.columns if c not in events.columns] == [
        "e_message_normalized", "e_event_drain_id", "e_chars_len"]
    assert full.height == events.height
    assert full["m_message"].equals(events["m_message"])  # row order kept


def test_declarations() -> None:
    assert normalize.REQUIRES == ("m_message",)
    assert normalize.ADDS == ("e_message_normalized",)
    assert words.ADDS == ("e_words", "e_words_len")
    assert trigrams.REQUIRES == ("e_message_normalized",)
    assert DrainParser.ADDS == ("e_event_drain_id",)


@pytest.mark.parametrize(
    ("call", "column"),
    [
        (lambda df: normalize(df), "m_message"),
        (lambda df: words(df), "e_message_normalized"),
        (lambda df: trigrams(df), "e_message_normalized"),
        (lambda df: DrainParser().parse(df), "e_message_normalized"),
        (lambda df: length(df), "m_message"),
        (lambda df: aggregate_sequences(df), "seq_id"),
    ],
)
def test_missing_column_raises_value_error(
    call: Callable[[pl.DataFrame], pl.DataFrame], column: str
) -> None:
    with pytest.raises(ValueError, match=column):
        call(pl.DataFrame({"other": [1]}))


def test_aggregate_tokens_need_normalized_message(events: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="e_message_normalized"):
        aggregate_sequences(events, tokens=["e_words"])
    with pytest.raises(ValueError, match="unknown token kind"):
        aggregate_sequences(normalize(events), tokens=["e_bigrams"])


# --- sequences -------------------------------------------------------------------------------

def test_aggregate_base_sequences(events: pl.DataFrame) -> None:
    seq = aggregate_sequences(events.sample(fraction=1.0, shuffle=True, seed=3))
    assert seq["seq_id"].to_list() == sorted(events["seq_id"].unique().to_list())
    assert seq.columns == ["run", "test_case", "service", "seq_id", "normal", "anomaly",
                           "target_service", "seq_len", "start_time", "end_time", "duration",
                           "duration_sec", "e_error_count"]
    row = seq.filter(pl.col("test_case") == "correct", pl.col("run") == "run_a").row(0, named=True)
    assert row["seq_len"] == 7
    assert row["duration_sec"] == pytest.approx(6.0)  # line 7 at +6 s, line 1 at +0 s
    assert row["duration"] == timedelta(seconds=6)
    assert row["e_error_count"] == 1
    assert row["normal"] is True and row["target_service"] is None
    err = seq.filter(pl.col("anomaly")).row(0, named=True)
    assert err["seq_len"] == 5 and err["target_service"] == "token" and err["e_error_count"] == 1
    assert err["duration_sec"] == pytest.approx(4.0)
    assert seq["seq_len"].dtype == pl.Int64 and seq["duration_sec"].dtype == pl.Float64


def test_aggregate_enhanced_lists_in_line_order(events: pl.DataFrame) -> None:
    enhanced = enhance_events(events, DrainParser())
    shuffled = enhanced.sample(fraction=1.0, shuffle=True, seed=7)
    seq = aggregate_sequences(shuffled)
    assert seq.equals(aggregate_sequences(enhanced))  # input order does not matter
    assert seq.equals(aggregate_sequences(enhanced.sort("seq_id", "line_no")))  # sorted path
    err = seq.filter(pl.col("anomaly")).row(0, named=True)
    err_events = enhanced.filter(pl.col("anomaly")).sort("line_no")
    # e_words / e_trigrams are bags: sorted distinct tokens with their multiplicities
    for col in ("e_words", "e_trigrams"):
        flat = [w for ws in err_events[col].to_list() for w in ws]
        expected = sorted(Counter(flat).items())
        assert list(zip(err[col], err[f"{col}_counts"], strict=True)) == expected
        assert err[f"{col}_len"] == len(flat)
    assert "c.n.openapi.ApiNormalisedPath" in err["e_words"]
    assert err["e_event_drain_id"] == err_events["e_event_drain_id"].to_list()
    assert err["e_chars_len"] == sum(len(m) for m in ERROR)
    for col in ("e_words", "e_trigrams"):
        assert (seq[f"{col}_counts"].list.sum() == seq[f"{col}_len"]).all()
        assert (seq[col].list.len() == seq[f"{col}_counts"].list.len()).all()
        assert seq[f"{col}_len"].dtype == pl.Int64
    assert (seq["e_event_drain_id"].list.len() == seq["e_event_drain_id_len"]).all()


def test_aggregate_tokens_from_distinct_messages_equal_per_event(events: pl.DataFrame) -> None:
    parser = DrainParser()
    full = aggregate_sequences(enhance_events(events, parser))
    slim_events = enhance_events(events, parser, tokens=False).reverse()
    slim = aggregate_sequences(slim_events, tokens=["e_words", "e_trigrams"])
    assert slim.equals(full)


def test_aggregate_bags_in_small_steps_equal_one_step(
    events: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bags are built in steps of whole sequences; messages met in several steps are
    tokenised once up front, the others in their step. Tiny steps must not change a bag."""
    from loglead_lo2.enhancers import sequences

    more = make_events([
        ("run_c", "correct", "user", [USER_LOAD, USER_LOAD_2, "", NORMALISED, "Äb\tcÄ"] * 3),
        ("run_c", "correct", "token", [REFRESH, NORMALISED, "Äb\tcÄ", "x"]),
        ("run_c", "correct", "code", ["", "ab"]),
    ])
    ev = enhance_events(pl.concat([events, more]), DrainParser(), tokens=False)
    one = aggregate_sequences(ev, tokens=["e_words", "e_trigrams"])
    reference = aggregate_sequences(enhance_events(ev, DrainParser()))
    assert one.equals(reference)
    monkeypatch.setattr(sequences, "BAG_CHUNK_ROWS", 40)
    small = aggregate_sequences(ev.sample(fraction=1.0, shuffle=True, seed=1),
                                tokens=["e_words", "e_trigrams"])
    assert small.equals(one)
    assert aggregate_sequences(enhance_events(ev, DrainParser())).equals(one)  # per-event lists
    code = one.filter(pl.col("service") == "code")
    assert code["e_trigrams"].to_list() == [[]] and code["e_trigrams_len"].to_list() == [0]


def test_aggregate_windows_and_null_lists() -> None:
    df = make_events([("r", "correct", "user", [NORMALISED, CONFIG, NORMALISED])]).with_columns(
        pl.Series("window", [0, 0, 1], dtype=pl.Int32),
        pl.Series("e_words", [["a"], None, ["b", "c"]]),
    ).with_columns(pl.format("{}__w{}", "seq_id", pl.col("window").cast(pl.String).str
                             .zfill(4)).alias("seq_id"))
    seq = aggregate_sequences(df)
    assert seq["window"].to_list() == [0, 1]
    assert seq["e_words"].to_list() == [["a"], ["b", "c"]]
    assert seq["e_words_counts"].to_list() == [[1], [1, 1]]
    assert seq["e_words_len"].to_list() == [1, 2]


def test_map_distinct_in_small_slices(
    events: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loglead_lo2.enhancers import _common

    whole = trigrams(words(normalize(events)))
    monkeypatch.setattr(_common, "DISTINCT_CHUNK", 2)
    sliced = trigrams(words(normalize(events)))
    assert sliced.equals(whole)
    assert normalize(events.head(0)).height == 0


def test_new_columns_follow_the_chunks_of_the_events(events: pl.DataFrame) -> None:
    """Loader events come in chunks; columns added per distinct message are cut the same way
    (a frame of mixed layouts is copied whole by polars at the next expression)."""
    chunked = pl.concat([events.head(5), events.slice(5, 4), events.slice(9)], rechunk=False)
    out = enhance_events(chunked, DrainParser(), tokens=False)
    assert set(out.n_chunks("all")) == {3}
    assert out.equals(enhance_events(events, DrainParser(), tokens=False))
    seq = aggregate_sequences(out, tokens=["e_words", "e_trigrams"])
    assert seq.equals(aggregate_sequences(out.rechunk(), tokens=["e_words", "e_trigrams"]))


def test_concat_lists_with_pick() -> None:
    lists = pl.Series("x", [["a", "b"], [], ["c"], None])
    out = concat_lists(lists, [2, 0, 1, 3, 0, 2], [3, 3], "x")
    assert out.to_list() == [["c", "a", "b"], ["a", "b", "c"]]
    assert concat_lists(lists, None, [2, 1], "x").to_list() == [["a", "b"], ["c"]]


def test_concat_lists_in_small_chunks_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from loglead_lo2.enhancers import _common

    monkeypatch.setattr(_common, "CHUNK_VALUES", 3)
    rng = np.random.default_rng(0)
    lists = pl.Series("x", [[f"{i}.{j}" for j in range(i % 4)] for i in range(9)])
    pick = rng.integers(0, 9, 40)
    sizes = [5, 0, 1, 12, 7, 15]  # items per group
    bounds = np.cumsum([0, *sizes])
    py = lists.to_list()
    expected = [
        [v for k in pick[a:b] for v in py[k]]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    totals = [len(e) for e in expected]
    out = concat_lists(lists, pick, totals, "x")
    assert out.n_chunks() > 1
    assert out.to_list() == expected
    # in-order concatenation of a multi-chunk Series (as map_distinct produces)
    chunked = pl.concat([lists.gather(pick[:17]), lists.gather(pick[17:])], rechunk=False)
    assert chunked.n_chunks() == 2
    assert concat_lists(chunked, None, totals, "x").to_list() == expected


# --- streaming -------------------------------------------------------------------------------

def test_streaming_equals_one_shot(tmp_path: Path, events: pl.DataFrame) -> None:
    batches = [events.filter(pl.col("run") == r) for r in ("run_a", "run_b")]
    seen: list[tuple[int, int, int]] = []
    out = tmp_path / "out" / "seq.parquet"
    summary = enhance_in_batches(
        [batches[0], batches[0].head(0), batches[1]], out, drain=DrainParser(),
        events_out=tmp_path / "out" / "events.parquet",
        progress=lambda *a: seen.append(a),
    )
    one_shot_parser = DrainParser()
    expected = pl.concat(
        [aggregate_sequences(enhance_events(b, one_shot_parser)) for b in batches]
    )
    got = read_parquet(out, kind="sequences_enhanced")
    assert got.equals(expected)
    assert summary.rows == expected.height == 3
    assert summary.batches == 2 and summary.events == events.height
    assert seen == [(1, 12, 2), (2, 14, 3)]
    templates = pl.read_parquet(out.parent / TEMPLATES_FILE)
    assert templates.equals(one_shot_parser.template_table())
    assert summary.templates == templates.height
    ev = read_parquet(tmp_path / "out" / "events.parquet", kind="events")
    assert ev.height == events.height and "e_trigrams" not in ev.columns
    assert ev["e_event_drain_id"].to_list() == pl.concat(
        [enhance_events(b, one_shot_parser) for b in batches])["e_event_drain_id"].to_list()
    assert set(summary.seconds) == {"enhance", "aggregate", "write", "total"}


def test_streaming_without_events_fails_cleanly(tmp_path: Path, events: pl.DataFrame) -> None:
    out = tmp_path / "seq.parquet"
    with pytest.raises(UserError, match="no events"):
        enhance_in_batches([events.head(0)], out, drain=DrainParser())
    assert not out.exists()

    def broken() -> Iterator[pl.DataFrame]:
        yield events
        raise RuntimeError("loader failed")

    with pytest.raises(RuntimeError):
        enhance_in_batches(broken(), out, drain=DrainParser())
    assert list(tmp_path.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("values", [[], ["a"], ["b", "a", None, "b", "", None],
                                    [f"m{(i * 7919) % 97}" * (i % 5) for i in range(2000)]])
def test_first_seen_codes_number_values_in_order_of_first_appearance(
        values: list[str | None]) -> None:
    codes, distinct = first_seen_codes(pl.Series(values, dtype=pl.String))
    order: dict[str, int] = {}
    for v in values:
        order.setdefault(v or "", len(order))  # nulls count as ""
    assert distinct.to_list() == list(order)
    assert codes.dtype == pl.UInt32
    assert codes.to_list() == [order[v or ""] for v in values]
