"""The normaliser on real-shaped LO2 lines, and on the realistic generated sample.

The lines follow the services' logback layout with the values the recording harness makes
(``M3SOulu/light-oauth2`` ``locust/locustfiles``): 8-hex ids, ``uuid4()[:32]`` names, full UUIDs,
22-character base64url codes and correlation ids, PKCE challenges, ``Basic`` credentials, inside
JSON bodies of the schema validator, after MapStore's ``Load:``, in paths. Expected outputs
are exact.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from loglead_lo2.enhancers.normalize import normalize_expr
from loglead_lo2.enhancers.tokens import WORD_PATTERN
from loglead_lo2.generator import generate
from loglead_lo2.loader import SelectOptions, parse_files, select

BODY = ('{"userId":"4a542887","userType":"admin","firstName":"1c9a93c6-75c9-48a6-b099-8850d779",'
        '"lastName":"aa16db02-fb52-474b-bd4c-efa3cddb","email":"055ba398-db75-4cb0-9377-61a98e6e'
        '76f7","password":"edf7ed35-16c3-4b10-b5b2-9f9ebbba1437","passwordConfirm":"edf7ed35-16c3'
        '-4b10-b5b2-9f9ebbba1437"}')
MASKED = ('{"userId":"<HEX>","userType":"admin","firstName":"<UUID>","lastName":"<UUID>",'
          '"email":"<UUID>","password":"<UUID>","passwordConfirm":"<UUID>"}')

CASES: list[tuple[str, str]] = [
    ('DEBUG c.n.schema.PropertiesValidator debug - validate( ' + BODY + ', ' + BODY + ', $)',
     'DEBUG c.n.schema.PropertiesValidator debug - validate( ' + MASKED + ', ' + MASKED + ', $)'),
    ('DEBUG com.networknt.schema.TypeValidator debug - validate( "4a542887", ' + BODY + ', $.userId)',
     'DEBUG com.networknt.schema.TypeValidator debug - validate( "<HEX>", ' + MASKED + ', $.userId)'),
    ('DEBUG c.networknt.oauth.cache.UserMapStore load - Load:66c2c2bd',
     'DEBUG c.networknt.oauth.cache.UserMapStore load - Load:<HEX>'),
    ('DEBUG c.networknt.oauth.cache.UserMapStore store - Store:0f3e9a21',
     'DEBUG c.networknt.oauth.cache.UserMapStore store - Store:<HEX>'),
    ('DEBUG c.n.oauth.cache.RefreshTokenMapStore delete - Delete:aa22f24b-51c1-442c-b1ea-00337461b58b',
     'DEBUG c.n.oauth.cache.RefreshTokenMapStore delete - Delete:<UUID>'),
    ('DEBUG c.n.oauth.cache.ClientMapStore load - Load:none',
     'DEBUG c.n.oauth.cache.ClientMapStore load - Load:none'),
    ('DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleAuthorizationCode - code = keNUio1dQP-rs6SyE15iUw redirectUri = http://localhost:8080/authorization',
     'DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleAuthorizationCode - code = <ID> redirectUri = <URL>'),
    ('DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleRefreshToken - refreshToken = 96bce40c-3e1e-41df-ac31-34e16e0a46b8 scope = null',
     'DEBUG c.n.o.t.h.Oauth2TokenPostHandler handleRefreshToken - refreshToken = <UUID> scope = null'),
    ('DEBUG com.networknt.schema.TypeValidator debug - validate( "Basic Zjc1MjllN2UtYWNlMC00ZTM2LWFlZDItNDUzNTk5OGVhZTBmOnlJSHBkWEZOUTAyeE8tV0gzZUN1U3c=", "Basic Zjc1MjllN2UtYWNlMC00ZTM2LWFlZDItNDUzNTk5OGVhZTBmOnlJSHBkWEZOUTAyeE8tV0gzZUN1U3c=", authorization)',
     'DEBUG com.networknt.schema.TypeValidator debug - validate( "Basic <B64>", "Basic <B64>", authorization)'),
    ('DEBUG com.networknt.schema.TypeValidator debug - validate( "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge)',
     'DEBUG com.networknt.schema.TypeValidator debug - validate( "<ID>", "<ID>", code_challenge)'),
    ('DEBUG c.n.openapi.ApiNormalisedPath <init> - normalised = /oauth2/client/36a28d11-c841-408d-b59c-bf8c462c24fb',
     'DEBUG c.n.openapi.ApiNormalisedPath <init> - normalised = /oauth2/client/<UUID>'),
    ('DEBUG c.n.openapi.ApiNormalisedPath <init> - normalised = /oauth2/user/4a542887',
     'DEBUG c.n.openapi.ApiNormalisedPath <init> - normalised = /oauth2/user/<HEX>'),
    ('ERROR c.networknt.handler.LightHttpHandler setExchangeStatus - {"statusCode":404,"code":"ERR12029","message":"REFRESH_TOKEN_NOT_FOUND","description":"Refresh token 96bce40c-3e1e-41df-ac31-34e16e0a46b8 is not found.","severity":"ERROR"}',
     'ERROR c.networknt.handler.LightHttpHandler setExchangeStatus - {"statusCode":404,"code":"ERR12029","message":"REFRESH_TOKEN_NOT_FOUND","description":"Refresh token <UUID> is not found.","severity":"ERROR"}'),
    ('ERROR c.networknt.handler.LightHttpHandler setExchangeStatus - {"statusCode":404,"code":"ERR12014","message":"CLIENT_NOT_FOUND","description":"Client invalid_client_id is not found.","severity":"ERROR"}',
     'ERROR c.networknt.handler.LightHttpHandler setExchangeStatus - {"statusCode":404,"code":"ERR12014","message":"CLIENT_NOT_FOUND","description":"Client invalid_client_id is not found.","severity":"ERROR"}'),
    ('ERROR c.n.o.t.h.Oauth2TokenPostHandler handleRequest - ApiException\ncom.networknt.exception.ApiException: {"statusCode":400,"code":"ERR12008","message":"INVALID_AUTHORIZATION_CODE","description":"Invalid authorization code keNUio1dQP-rs6SyE15iUw.","severity":"ERROR"}\n\tat com.networknt.oauth.token.handler.Oauth2TokenPostHandler.handleAuthorizationCode(Oauth2TokenPostHandler.java:231)\n\tat java.lang.Thread.run(Thread.java:748)\nCaused by: java.lang.IllegalArgumentException: Illegal base64 character 20\n\t... 12 common frames omitted',
     'ERROR c.n.o.t.h.Oauth2TokenPostHandler handleRequest - ApiException\ncom.networknt.exception.ApiException: {"statusCode":400,"code":"ERR12008","message":"INVALID_AUTHORIZATION_CODE","description":"Invalid authorization code <ID>.","severity":"ERROR"}\n\tat com.networknt.oauth.token.handler.Oauth2TokenPostHandler.handleAuthorizationCode(Oauth2TokenPostHandler.java:<NUM>)\n\tat java.lang.Thread.run(Thread.java:<NUM>)\nCaused by: java.lang.IllegalArgumentException: Illegal base64 character <NUM>\n\t... <NUM> common frames omitted'),
    ('ERROR c.n.exception.ExceptionHandler handleRequest - Exception:\njava.lang.NullPointerException: Null key is not allowed!\n\tat com.hazelcast.util.Preconditions.checkNotNull(Preconditions.java:59)',
     'ERROR c.n.exception.ExceptionHandler handleRequest - Exception:\njava.lang.NullPointerException: Null key is not allowed!\n\tat com.hazelcast.util.Preconditions.checkNotNull(Preconditions.java:<NUM>)'),
    ('DEBUG io.undertow.request.security sendChallenge - Sending authentication challenge for exchange HttpServerExchange{ GET /oauth2/code}',
     'DEBUG io.undertow.request.security sendChallenge - Sending authentication challenge for exchange HttpServerExchange{ GET /oauth2/code}'),
    ('DEBUG c.n.o.u.h.Oauth2UserPostHandler handleRequest - userId = 4a542887 password hashed with PBKDF2WithHmacSHA1',
     'DEBUG c.n.o.u.h.Oauth2UserPostHandler handleRequest - userId = <HEX> password hashed with PBKDF2WithHmacSHA1'),
    ('DEBUG c.n.o.c.h.Oauth2ClientPostHandler handleRequest - owner = someone@example.com token = eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl id pieces 4e3a 014c and 0x1F at 10.0.0.5 took 1234 ms',
     'DEBUG c.n.o.c.h.Oauth2ClientPostHandler handleRequest - owner = <EMAIL> token = <JWT> id pieces <HEX> <HEX> and <HEX> at <IP> took <NUM> ms'),
    ('INFO  com.networknt.server.Server start - Http Server started on ip:0.0.0.0 Port:6882',
     'INFO com.networknt.server.Server start - Http Server started on ip:<IP> Port:<NUM>'),
    ('DEBUG com.networknt.schema.TypeValidator debug - validate( "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", code_challenge)',
     'DEBUG com.networknt.schema.TypeValidator debug - validate( "<HEX>", "<HEX>", code_challenge)'),
]


@pytest.mark.parametrize(("line", "expected"), CASES)
def test_exact_normalised_output(line: str, expected: str) -> None:
    out = pl.DataFrame({"m_message": [line]}).select(normalize_expr()).item()
    assert out == expected


HEX_PIECE = re.compile(r"^[0-9a-f]*(?:[0-9][a-f]|[a-f][0-9])[0-9a-f]*$")


def id_like(word: str) -> bool:
    """A word that looks like a piece of an id: a hex word mixing digits and letters, or a
    long base64-looking run with digits, lower- and upper-case letters (``PBKDF2WithHmacSHA1``
    has only two digits)."""
    if HEX_PIECE.match(word):
        return True
    return (len(word) >= 16 and sum(c.isdigit() for c in word) >= 3
            and any(c.islower() for c in word) and any(c.isupper() for c in word))


def _word_counts(root: Path, runs: int) -> pl.DataFrame:
    sel = select(root, SelectOptions(runs=runs))
    events, _ = parse_files(sel.files)
    distinct = events.group_by("service", "m_message").len()
    return (
        distinct.with_columns(normalize_expr().str.extract_all(WORD_PATTERN).alias("w"))
        .explode("w")
        .group_by("service", "w")
        .agg(pl.col("len").sum())
    )


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("realistic") / "lo2"
    generate(root, runs=3, seed=5, scale=0.05)
    return root


def test_no_id_fragment_among_frequent_words(realistic: Path) -> None:
    counts = _word_counts(realistic, 3)
    for service in counts["service"].unique().sort().to_list():
        top = (counts.filter(pl.col("service") == service)
               .sort(["len", "w"], descending=[True, False]).head(50)["w"].to_list())
        leaked = [w for w in top if id_like(w)]
        assert leaked == [], (service, leaked)
    # and none anywhere in the vocabulary
    assert [w for w in counts["w"].unique().to_list() if id_like(w)] == []


def test_vocabulary_does_not_grow_with_runs(realistic: Path) -> None:
    """Raw lines are almost all distinct (random ids); normalised words are not."""
    one = set(_word_counts(realistic, 1)["w"].to_list())
    three = set(_word_counts(realistic, 3)["w"].to_list())
    assert 150 < len(one) < 600
    assert len(three - one) <= 10, sorted(three - one)


def test_id_like_flags_the_fragments_the_old_normaliser_leaked() -> None:
    assert all(id_like(w) for w in ("48d0", "014c", "4e3a", "keNUio1dQP4rs6SyE15iUw"))
    assert not any(id_like(w) for w in ("oauth2", "PBKDF2WithHmacSHA1", "ERR12014", "S256",
                                        "c.n.o.t.h.Oauth2TokenPostHandler", "<UUID>"))
