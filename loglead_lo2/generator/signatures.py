"""Error signatures: what each error case (and the normal workload's own errors) logs.

Each signature is one template that may span several physical lines (``ERROR`` line, Java
stack trace, then the status line of the same request, re-prefixed with ``@{prefix}``), so the
event stays contiguous in its file and the manifest can give its first line and line count.
The request that carries a signature starts like a normal request of the target service
(:func:`error_flow`), so the event shares its correlation id with ordinary lines.
"""

from __future__ import annotations

import json

from loglead_lo2.cases import TestCase
from loglead_lo2.generator.bodies import (
    CLIENT_FIELDS,
    PASSWORD_FIELDS,
    SERVICE_FIELDS,
    USER_FIELDS,
    replace_field,
    validate_body,
)
from loglead_lo2.generator.templates import (
    _CLI,
    _CODE,
    _RT,
    _SVC,
    _TOK,
    _USR,
    BASIC,
    EXC,
    RT_DEL,
    RT_GET,
    STATUS,
    TOKEN_H,
    VALIDATOR,
    Event,
    _h,
    _norm,
    _path,
    _validate,
    body,
)

INJECTED = "injected"
BACKGROUND = "background"


def status_json(status: int, code: str, message: str, description: str) -> str:
    """The Light-4j ``Status`` JSON as logged by ``setExchangeStatus``."""
    return json.dumps(
        {"statusCode": status, "code": code, "message": message,
         "description": description, "severity": "ERROR"},
        separators=(",", ":"),
    )


def status_line(status: int, code: str, message: str, description: str) -> str:
    return body("ERROR", STATUS, "setExchangeStatus",
                status_json(status, code, message, description))


_HANDLER_CHAIN = [
    "com.networknt.handler.Handler.next(Handler.java:204)",
    "com.networknt.handler.Handler.next(Handler.java:226)",
    "com.networknt.openapi.JwtVerifyHandler.handleRequest(JwtVerifyHandler.java:110)",
    "com.networknt.handler.Handler.next(Handler.java:204)",
    "com.networknt.correlation.CorrelationHandler.handleRequest(CorrelationHandler.java:76)",
    "com.networknt.handler.Handler.next(Handler.java:204)",
    "com.networknt.openapi.OpenApiHandler.handleRequest(OpenApiHandler.java:109)",
    "com.networknt.handler.Handler.next(Handler.java:204)",
    "com.networknt.exception.ExceptionHandler.handleRequest(ExceptionHandler.java:54)",
    "com.networknt.handler.Handler.next(Handler.java:204)",
    "com.networknt.handler.OrchestrationHandler.handleRequest(OrchestrationHandler.java:46)",
    "io.undertow.server.Connectors.executeRootHandler(Connectors.java:376)",
    "io.undertow.server.HttpServerExchange$1.run(HttpServerExchange.java:830)",
    "java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1149)",
    "java.util.concurrent.ThreadPoolExecutor$Worker.run(ThreadPoolExecutor.java:624)",
    "java.lang.Thread.run(Thread.java:748)",
]


def _frames(frames: list[str]) -> str:
    return "\n".join("\tat " + f for f in frames)


def _token_method(case: str) -> str:
    if "pkce" in case.lower() or "verification" in case:
        return "handleAuthorizationCode"
    return "handleClientCredentials"


def api_exception(status: str, case: str, cause: str | None) -> str:
    """``Oauth2TokenPostHandler handleRequest - ApiException`` with its stack trace."""
    method = _token_method(case)
    lines = [
        body("ERROR", TOKEN_H, "handleRequest", "ApiException"),
        f"com.networknt.exception.ApiException: {status}",
        _frames([
            f"com.networknt.oauth.token.handler.Oauth2TokenPostHandler.{method}"
            "(Oauth2TokenPostHandler.java:231)",
            "com.networknt.oauth.token.handler.Oauth2TokenPostHandler.handleRequest"
            "(Oauth2TokenPostHandler.java:113)",
            *_HANDLER_CHAIN,
        ]),
    ]
    if cause:
        lines += [
            f"Caused by: {cause}",
            _frames([
                "com.networknt.oauth.token.handler.Oauth2TokenPostHandler.getBasicAuth"
                "(Oauth2TokenPostHandler.java:412)",
                f"com.networknt.oauth.token.handler.Oauth2TokenPostHandler.{method}"
                "(Oauth2TokenPostHandler.java:219)",
            ]),
            "\t... 12 common frames omitted",
        ]
    return "\n".join(lines)


def npe_trace(handler: str, message: str | None, logger: str = EXC) -> str:
    """Uncaught ``NullPointerException`` logged by the exception handler."""
    head = "java.lang.NullPointerException" + (f": {message}" if message else "")
    frames = [
        "com.hazelcast.util.Preconditions.checkNotNull(Preconditions.java:59)",
        "com.hazelcast.map.impl.proxy.MapProxyImpl.get(MapProxyImpl.java:116)",
        f"{handler}.handleRequest({handler.rsplit('.', 1)[1]}.java:67)",
        *_HANDLER_CHAIN,
    ]
    if message is None:
        frames[:2] = [
            "io.undertow.server.handlers.form.FormEncodedDataDefinition$FormEncodedDataParser"
            ".doParse(FormEncodedDataDefinition.java:130)",
            "io.undertow.server.handlers.form.FormEncodedDataDefinition$FormEncodedDataParser"
            ".parseBlocking(FormEncodedDataDefinition.java:250)",
        ]
    return "\n".join([body("ERROR", logger, "handleRequest", "Exception:"), head,
                      _frames(frames)])


def _case_handler(case: TestCase) -> str:
    name, service = case.name, case.target_service or ""
    verb = name.split("_", 1)[0]
    if service == "client":
        return _h("client", "Oauth2ClientPutHandler" if verb == "update"
                  else "Oauth2ClientPostHandler")
    if service == "service":
        return _h("service", "Oauth2ServicePutHandler" if verb == "update"
                  else "Oauth2ServicePostHandler")
    return "com.networknt.oauth.token.handler.Oauth2TokenPostHandler"


def _prefix(service: str, case: str) -> list[str]:
    """The normal request lines that precede the error in the same request."""
    if service == "token":
        return _path(_TOK) + [BASIC]
    if service == "code":
        if "pkce" in case:
            return _path(_CODE) + [_validate("code", "response_type")]
        return _path(_CODE)
    if service == "refresh-token":
        return _norm(_RT + "/AAAAAA") if "404" in case else _path(_RT)
    return _crud_prefix(service, case)


_BAD_ITEM = {"get_user_404_no_user": "none", "delete_user_404_no_user": "none",
             "get_client_404_no_client": "none", "delete_client_404_no_client": "not_a_client_id",
             "get_service_404_no_service": "none", "delete_service_404_no_service":
             "not_service_id"}
"""Ids the harness asks for in its 'not found' cases."""


def _crud_prefix(service: str, case: str) -> list[str]:
    """Request lines of a client/service/user error case before its error: the path, and the
    JSON body the harness sends (with the value that makes the case fail)."""
    path, fields, param = {
        "client": (_CLI, CLIENT_FIELDS, "clientId"),
        "service": (_SVC, SERVICE_FIELDS, "serviceId"),
        "user": (_USR, USER_FIELDS, "userId"),
    }.get(service, ("/", [], ""))
    if case in _BAD_ITEM:
        return _norm(f"{path}/{_BAD_ITEM[case]}") + [_validate(_BAD_ITEM[case], param)]
    if "_page_" in case:
        return _path(path)
    if case.startswith("update_password"):
        bad_user = "404" in case
        user = "@{uuid}" if bad_user else "@{user_id}"
        pw = PASSWORD_FIELDS
        if "wrong" in case:
            pw = replace_field(pw, "password", "@{uuid}")
        if "not_match" in case:
            pw = replace_field(pw, "newPasswordConfirm", "@{uuid}")
        return _norm(f"/oauth2/password/{user}") + [_validate(user, "userId")] + \
            validate_body(pw)
    stop = None
    for key in ("clientType", "clientProfile", "service_type"):
        if case.endswith(key):
            name = "serviceType" if key == "service_type" else key
            fields, stop = replace_field(fields, name, "none"), name
    edits = {"no_password": ("passwordConfirm", None),
             "password_no_match": ("passwordConfirm", "@{uuid}"),
             "update_user_404_no_user": ("userId", "@{uuid}"),
             "ownerId": ("ownerId", "nouser"), "no_user": ("ownerId", "nouser"),
             "user_id": ("ownerId", "nouser"), "update_service_404_service_id": ("serviceId", ""),
             "update_client_404_clientId": ("clientName", "@{client_name}")}
    for marker, (key, value) in edits.items():
        if marker in case:
            fields = replace_field(fields, key, value)
    return _norm(path) + validate_body(fields, stop_at=stop)


def signature(case: TestCase) -> str | None:
    """Signature template of an error case (``None`` when it leaves no trace)."""
    mech = case.mechanism
    if mech == "none" or case.target_service is None:
        return None
    status = status_json(case.http_status, case.code or "", case.status_name or "",
                         case.description)
    a_line = status_line(case.http_status, case.code or "", case.status_name or "",
                         case.description)
    if mech == "A":
        return a_line
    if mech == "B":
        return a_line + "\n@{prefix}" + body(
            "ERROR", VALIDATOR, "handleRequest", "There is an Validation Error:")
    if mech == "C":
        cause = ("java.lang.IllegalArgumentException: Illegal base64 character 20"
                 if "header" in case.name or "form" in case.name
                 else f"com.networknt.exception.ApiException: {status}")
        return api_exception(status, case.name, cause) + "\n@{prefix}" + a_line
    if mech == "NPE":
        message = None if case.target_service == "token" else "Null key is not allowed!"
        logger = TOKEN_H if case.target_service == "token" else EXC
        return npe_trace(_case_handler(case), message, logger) + "\n@{prefix}" + a_line
    if mech == "DEBUG+A":
        handler = RT_DEL if case.name.startswith("delete") else RT_GET
        return body("DEBUG", handler, "handleRequest", "refreshToken = AAAAAA") + \
            "\n@{prefix}" + a_line
    if mech == "DEBUG":
        sec = "io.undertow.request.security"
        return "\n".join([
            body("DEBUG", sec, "authenticate", "Authentication outcome was NOT_AUTHENTICATED "
                 "with method io.undertow.security.impl.BasicAuthenticationMechanism for "
                 "/oauth2/code"),
            "@{prefix}" + body("DEBUG", sec, "sendChallenge",
                               "Sending authentication challenge for exchange "
                               "HttpServerExchange{ GET /oauth2/code}"),
        ])
    raise ValueError(f"unknown mechanism {mech!r} for {case.name}")


def error_flow(case: TestCase) -> tuple[list[str], Event] | None:
    """Templates of an injected request (normal start + signature) and its manifest entry."""
    sig = signature(case)
    if sig is None or case.target_service is None:
        return None
    return _prefix(case.target_service, case.name) + [sig], Event(
        INJECTED, case.mechanism, case.code or "")


# --- errors of the normal workload (present in correct and error cases alike) ----------
CLIENT_UPDATE_NPE = (
    _norm(_CLI) + [_validate("confidential", "clientType"),
                   npe_trace(_h("client", "Oauth2ClientPutHandler"), "Null key is not allowed!")
                   + "\n@{prefix}" + status_line(500, "ERR10010", "RUNTIME_EXCEPTION",
                                                 "Unexpected runtime exception")],
    Event(BACKGROUND, "NPE", "ERR10010"),
)
"""The normal client update fails with an NPE + ERR10010 now and then, in every case."""

TOKEN_API_EXCEPTIONS = [
    (_norm(_TOK) + [body("DEBUG", TOKEN_H, "handleRefreshToken",
                         "refreshToken = @{uuid} scope = null"),
                    api_exception(status_json(404, "ERR12029", "REFRESH_TOKEN_NOT_FOUND",
                                              "Refresh token @{uuid} is not found."),
                                  "refresh", None)
                    + "\n@{prefix}" + status_line(404, "ERR12029", "REFRESH_TOKEN_NOT_FOUND",
                                                  "Refresh token @{uuid} is not found.")],
     Event(BACKGROUND, "C", "ERR12029")),
    (_path(_TOK) + [BASIC,
                    api_exception(status_json(400, "ERR12008", "INVALID_AUTHORIZATION_CODE",
                                              "Invalid authorization code @{code}."),
                                  "code", None)
                    + "\n@{prefix}" + status_line(400, "ERR12008",
                                                  "INVALID_AUTHORIZATION_CODE",
                                                  "Invalid authorization code @{code}.")],
     Event(BACKGROUND, "C", "ERR12008")),
]
"""Occasional token ``ApiException`` of the normal workload in ``correct``."""

MAPSTORE_DELETE_ERROR = (
    ["\n".join([
        body("ERROR", "com.networknt.oauth.cache.ClientMapStore", "delete", "Exception:"),
        "java.sql.SQLIntegrityConstraintViolationException: Cannot delete or update a parent "
        "row: a foreign key constraint fails (`oauth2`.`client_service`, CONSTRAINT "
        "`client_service_ibfk_1` FOREIGN KEY (`client_id`) REFERENCES `client` (`client_id`))",
        _frames([
            "com.mysql.jdbc.SQLError.createSQLException(SQLError.java:963)",
            "com.mysql.jdbc.MysqlIO.checkErrorPacket(MysqlIO.java:3966)",
            "com.mysql.jdbc.PreparedStatement.executeUpdate(PreparedStatement.java:2079)",
            "com.zaxxer.hikari.pool.HikariProxyPreparedStatement.executeUpdate"
            "(HikariProxyPreparedStatement.java)",
            "com.networknt.oauth.cache.ClientMapStore.delete(ClientMapStore.java:62)",
            "com.hazelcast.map.impl.mapstore.writethrough.WriteThroughStore.remove"
            "(WriteThroughStore.java:58)",
            "com.hazelcast.spi.impl.operationexecutor.impl.PartitionOperationThread.run"
            "(PartitionOperationThread.java:45)",
        ]),
    ])],
    Event(BACKGROUND, "MapStore", ""),
)
"""Hazelcast write-through delete failing on a foreign key (partition thread, no cId)."""
