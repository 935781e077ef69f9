"""Line templates and request flows of the seven Light-OAuth2 services.

A template is the part of a log line after the correlation id (``LEVEL logger method - msg``)
or, for ``raw`` templates, a whole non-pattern line (JVM and Hazelcast start-up output).
Placeholders are written ``@{name}`` and filled per line from request values (see
:mod:`loglead_lo2.generator.render`). ``@{prefix}`` re-creates the pattern prefix (time, thread,
correlation id) so that one template can hold several physical lines, e.g. an ``ERROR`` line,
its stack trace and the status line that follows it in the same request.

Flows model requests: a fixed sequence of templates on one ``XNIO-1 task-N`` thread with one
correlation id. The token flows follow the real token log of run 1719592986; the other
services' flows are plausible inventions in the same style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from loglead_lo2.generator.bodies import (
    CLIENT_FIELDS,
    PASSWORD_FIELDS,
    SERVICE_FIELDS,
    USER_FIELDS,
    Field,
    replace_field,
    validate_body,
)
from loglead_lo2.generator.layout import body

PLACEHOLDER = re.compile(r"@\{(\w+)\}")
REDIRECT = "http://localhost:8080/authorization"


@dataclass(frozen=True)
class Event:
    """Manifest metadata of a template that is an error event."""

    kind: str  # "injected" or "background"
    mechanism: str
    code: str


@dataclass
class Registry:
    """Distinct templates, numbered in registration order (deterministic)."""

    texts: list[str] = field(default_factory=list)
    raw: list[bool] = field(default_factory=list)
    events: list[Event | None] = field(default_factory=list)
    _ids: dict[tuple[str, bool, Event | None], int] = field(default_factory=dict)

    def add(self, text: str, raw: bool = False, event: Event | None = None) -> int:
        key = (text, raw, event)
        if key not in self._ids:
            self._ids[key] = len(self.texts)
            self.texts.append(text)
            self.raw.append(raw)
            self.events.append(event)
        return self._ids[key]

    def physical_lines(self, tid: int) -> int:
        return self.texts[tid].count("\n") + 1


# --- loggers ---------------------------------------------------------------------------
PATH = "com.networknt.openapi.ApiNormalisedPath"
TYPEV = "com.networknt.schema.TypeValidator"
JWT = "com.networknt.security.JwtIssuer"
CONFIG = "com.networknt.config.Config"
STATUS = "com.networknt.handler.LightHttpHandler"
VALIDATOR = "com.networknt.openapi.ValidatorHandler"
EXC = "com.networknt.exception.ExceptionHandler"
TOKEN_H = "com.networknt.oauth.token.handler.Oauth2TokenPostHandler"
CACHE = "com.networknt.oauth.cache."


def _h(service: str, handler: str) -> str:
    pkg = service.replace("-", "")
    return f"com.networknt.oauth.{pkg}.handler.{handler}"


def _norm(path: str, n: int = 3) -> list[str]:
    return [body("DEBUG", PATH, "<init>", f"normalised = {path}")] * n


def _path(path: str) -> list[str]:
    return [
        body("DEBUG", PATH, "<init>", f"path = {path}, base path is set to: null"),
        body("DEBUG", PATH, "<init>", f"path ={path}"),
        body("DEBUG", PATH, "<init>", f"path = {path}, base path is set to: null"),
    ]


def _validate(value: str, name: str) -> str:
    return body("DEBUG", TYPEV, "debug", f'validate( "{value}", "{value}", {name})')


JWT_KEY = body("DEBUG", JWT, "getPrivateKey", "filename = primary.jks key = selfsigned")
CONFIG_JKS = body(
    "INFO", CONFIG, "getConfigStream",
    "Config loaded from externalized folder for primary.jks in /config",
)
BASIC = _validate("@{basic}", "authorization")


def _mapstore(store: str, method: str, value: str) -> str:
    logger = CACHE + store
    verb = method.capitalize()
    return body("DEBUG", logger, method, f"{verb}:{value}")


class Flow(NamedTuple):
    """A request: its relative weight among the service's requests, its line templates, and
    the entity kind it registers (``user``/``client``/``svc``; ``None`` for the others)."""

    weight: float
    templates: list[str]
    registers: str | None = None


def _flows(rows: list[tuple[float, list[str]]]) -> list[Flow]:
    return [Flow(w, t) for w, t in rows]

_TOK = "/oauth2/token"
TOKEN_FLOWS: list[Flow] = _flows([
    (30.0, _path(_TOK) + [BASIC, JWT_KEY]),
    (19.0, _norm(_TOK) + [body("DEBUG", TOKEN_H, "handleClientCredentials", "scope = null"),
                          CONFIG_JKS]),
    (5.0, _path(_TOK) + [BASIC, CONFIG_JKS]),
    (4.5, _norm(_TOK) + [body("DEBUG", TOKEN_H, "handleAuthorizationCode",
                              f"code = @{{code}} redirectUri = {REDIRECT}"), JWT_KEY]),
    (4.5, _path(_TOK) + [BASIC, body(
        "DEBUG", TOKEN_H, "handleAuthorizationCode",
        f"variable from codeMap cache userId = admin redirectUri = {REDIRECT} scope = null "
        "userType = null roles = admin user remember = null"), CONFIG_JKS]),
    (4.0, _norm(_TOK) + [body("DEBUG", TOKEN_H, "handleClientCredentials", "scope = null"),
                         JWT_KEY]),
    (3.5, _norm(_TOK) + [body("DEBUG", TOKEN_H, "handleRefreshToken",
                              "refreshToken = @{uuid} scope = null"), CONFIG_JKS]),
    (1.5, _norm(_TOK) + [body("DEBUG", TOKEN_H, "handleRefreshToken",
                              "refreshToken = @{uuid} scope = null"), JWT_KEY]),
    (1.0, _path(_TOK) + [BASIC, JWT_KEY, CONFIG_JKS]),
    (1.0, _norm(_TOK) + [body("DEBUG", TOKEN_H, "handleAuthorizationCode",
                              f"code = @{{code}} redirectUri = {REDIRECT}"),
                         body("DEBUG", TOKEN_H, "handleAuthorizationCode",
                              f"variable from codeMap cache userId = admin redirectUri = "
                              f"{REDIRECT} scope = null userType = null roles = admin user "
                              "remember = null"), CONFIG_JKS]),
])

_CODE = "/oauth2/code"
CODE_H = _h("code", "Oauth2CodeGetHandler")
CODE_P = _h("code", "Oauth2CodePostHandler")
_CODE_QUERY = [_validate("code", "response_type"), _validate("@{client_id}", "client_id"),
               _validate(REDIRECT, "redirect_uri")]
CODE_FLOWS: list[Flow] = _flows([
    (20.0, _path(_CODE) + _CODE_QUERY + [
        body("DEBUG", CODE_H, "handleRequest", "client_id = @{client_id} userId = admin"),
        body("DEBUG", CODE_H, "handleRequest", f"code = @{{code}} redirectUri = {REDIRECT}")]),
    (8.0, _path(_CODE) + _CODE_QUERY + [
        _validate("@{pkce}", "code_challenge"), _validate("S256", "code_challenge_method"),
        body("DEBUG", CODE_H, "handleRequest", "client_id = @{client_id} userId = admin"),
        body("DEBUG", CODE_H, "handleRequest",
             "codeChallenge = @{pkce} codeChallengeMethod = S256"),
        body("DEBUG", CODE_H, "handleRequest", f"code = @{{code}} redirectUri = {REDIRECT}")]),
    (6.0, _norm(_CODE) + [
        body("DEBUG", CODE_P, "handleRequest", "client_id = @{client_id} j_username = admin"),
        body("DEBUG", CODE_P, "handleRequest", f"code = @{{code}} redirectUri = {REDIRECT}")]),
])


def _crud(service: str, kind: str, path: str, param: str, value: str, fields: list[Field],
          update_fields: list[Field], handler_msg: str) -> list[Flow]:
    """The six ``correct`` tasks of a registration user of the harness, equal weights:
    register, update, get one, get a page, delete (and, for users, a password change)."""
    name = {"client": "Client", "service": "Service", "user": "User"}[service]
    item = f"{path}/{value}"
    by_id = f"Oauth2{name}{param[0].upper()}{param[1:]}GetHandler"
    return [
        Flow(1.0, _norm(path) + validate_body(fields) + [
            body("DEBUG", _h(service, f"Oauth2{name}PostHandler"), "handleRequest",
                 handler_msg)], registers=kind),
        Flow(1.0, _norm(path) + validate_body(update_fields)),
        Flow(1.0, _norm(item) + [
            _validate(value, param),
            body("DEBUG", _h(service, by_id), "handleRequest", f"{param} = {value}")]),
        Flow(1.0, _path(path) + [_validate("1", "page"),
                                 body("DEBUG", _h(service, f"Oauth2{name}GetHandler"),
                                      "handleRequest", "page = 1 pageSize = 10")]),
        Flow(1.0, _norm(item) + [
            _validate(value, param),
            body("DEBUG", _h(service, by_id.replace("GetHandler", "DeleteHandler")),
                 "handleRequest", f"{param} = {value}")]),
    ]


_CLI = "/oauth2/client"
CLIENT_FLOWS: list[Flow] = _crud(
    "client", "client", _CLI, "clientId", "@{client_id}", CLIENT_FIELDS,
    replace_field(CLIENT_FIELDS, "clientType", "confidential"), "clientId = @{client_id}")

_SVC = "/oauth2/service"
SERVICE_FLOWS: list[Flow] = _crud(
    "service", "svc", _SVC, "serviceId", "@{svc_id}", SERVICE_FIELDS,
    replace_field(SERVICE_FIELDS, "serviceType", "swagger"), "serviceId = @{svc_id}")

_USR = "/oauth2/user"
USER_FLOWS: list[Flow] = _crud(
    "user", "user", _USR, "userId", "@{user_id}", USER_FIELDS, USER_FIELDS,
    "userId = @{user_id} password hashed with PBKDF2WithHmacSHA1") + [
    Flow(1.0, _norm("/oauth2/password/@{user_id}") + [_validate("@{user_id}", "userId")]
         + validate_body(PASSWORD_FIELDS) + [
        body("DEBUG", _h("user", "Oauth2PasswordUserIdPostHandler"), "handleRequest",
             "userId = @{user_id} password matched, updating")]),
]

_RT = "/oauth2/refresh_token"
RT_GET = _h("refresh-token", "Oauth2RefreshTokenRefreshTokenGetHandler")
RT_DEL = _h("refresh-token", "Oauth2RefreshTokenRefreshTokenDeleteHandler")
REFRESH_FLOWS: list[Flow] = _flows([
    (10.0, _path(_RT) + [_validate("1", "page"), _validate("10", "pageSize"),
                         body("DEBUG", _h("refresh-token", "Oauth2RefreshTokenGetHandler"),
                              "handleRequest", "page = 1 pageSize = 10 userId = null")]),
    (8.0, _norm(_RT + "/@{uuid}") + [_validate("@{uuid}", "refreshToken"),
                                     body("DEBUG", RT_GET, "handleRequest",
                                          "refreshToken = @{uuid}")]),
    (4.0, _norm(_RT + "/@{uuid}") + [_validate("@{uuid}", "refreshToken"),
                                     body("DEBUG", RT_DEL, "handleRequest",
                                          "refreshToken = @{uuid}")]),
])

HZ_FLOWS: list[Flow] = _flows([
    (5.0, [_mapstore("UserMapStore", "load", "@{user_id}")]),
    (2.0, [_mapstore("UserMapStore", "store", "@{user_id}")]),
    (0.8, [_mapstore("UserMapStore", "delete", "@{user_id}")]),
    (4.0, [_mapstore("RefreshTokenMapStore", "load", "@{uuid}")]),
    (2.0, [_mapstore("RefreshTokenMapStore", "delete", "@{uuid}")]),
    (2.5, [_mapstore("ClientMapStore", "store", "@{client_id}")]),
    (1.0, [_mapstore("ClientMapStore", "load", "@{client_id}")]),
    (1.0, [_mapstore("ServiceMapStore", "load", "@{svc_id}")]),
    (1.0, [_mapstore("ServiceMapStore", "store", "@{svc_id}")]),
    (0.8, [_mapstore("ServiceMapStore", "delete", "@{svc_id}")]),
])

SERVICE_FLOWS_BY_NAME: dict[str, list[Flow]] = {
    "client": CLIENT_FLOWS,
    "code": CODE_FLOWS,
    "key": [],
    "refresh-token": REFRESH_FLOWS,
    "service": SERVICE_FLOWS,
    "token": TOKEN_FLOWS,
    "user": USER_FLOWS,
}
"""Request flows per service (key gets no traffic)."""

HZ_SHARE = 0.04
"""Share of a busy file's lines that are Hazelcast MapStore lines (no correlation id)."""

ENDPOINTS: dict[str, str] = {
    "client": _CLI, "code": _CODE, "key": "/oauth2/key", "refresh-token": _RT,
    "service": _SVC, "token": _TOK, "user": _USR,
}
