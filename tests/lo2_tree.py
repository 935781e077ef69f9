"""Tiny hand-written LO2 trees for loader tests (exact lines, known answers)."""

from __future__ import annotations

from pathlib import Path

EPOCH = 1719592986  # 2024-06-28 16:43:06 UTC
RUN = f"light-oauth2-data-{EPOCH}"

TOKEN_LINES = [
    "16:29:40.148 [hz._hzInstance_1_dev.partition-operation.thread-8]   DEBUG "
    "c.networknt.oauth.cache.UserMapStore load - Load:66c2c2bd",
    "16:29:40.196 [XNIO-1 task-2]  lqjdlXLvSrqVQqgvkNyY7Q DEBUG c.n.openapi.ApiNormalisedPath "
    "<init> - normalised = /oauth2/token",
    "16:29:42.425 [XNIO-1 task-2]  9lZs5u4cSx6GOlZOowR-bQ ERROR c.n.o.t.h.Oauth2TokenPostHandler "
    "handleRequest - ApiException",
    'com.networknt.exception.ApiException: {"statusCode":401,"code":"ERR12007"}',
    "\tat com.networknt.oauth.token.handler.Oauth2TokenPostHandler.handleRequest"
    "(Oauth2TokenPostHandler.java:120)",
    "Caused by: java.lang.IllegalStateException: boom",
    "\t... 12 common frames omitted",
    "16:29:42.426 [XNIO-1 task-2]  9lZs5u4cSx6GOlZOowR-bQ ERROR "
    "c.networknt.handler.LightHttpHandler "
    'setExchangeStatus - {"statusCode":401,"code":"ERR12007","message":"UNAUTHORIZED_CLIENT"}',
    "16:29:43.001 [XNIO-1 task-1]  sxn9TW9eQq6pn3-ZVwo2iw INFO  com.networknt.config.Config "
    "getConfigStream - Config loaded",
]


def write_file(path: Path, lines: list[str], newline: str = "\n", raw: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_bytes((newline.join(lines) + newline).encode("utf-8"))
    return path


def log_path(root: Path, run: str, case: str, service: str) -> Path:
    return root / run / case / f"light-oauth2-oauth2-{service}-1.log"
