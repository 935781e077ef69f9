"""The logback layout of LO2 lines: ``%-5level %logger{36} %M - %msg`` after the prefix."""

from __future__ import annotations


def abbreviate(logger: str, width: int = 36) -> str:
    """Logback's ``%logger{36}``: shorten leading package names to one letter until it fits."""
    parts = logger.split(".")
    for i in range(len(parts) - 1):
        if len(".".join(parts)) <= width:
            break
        parts[i] = parts[i][0]
    return ".".join(parts)


def body(level: str, logger: str, method: str, msg: str) -> str:
    """Pattern text after the correlation id: ``%-5level %logger{36} %M - %msg``."""
    return f"{level:<5} {abbreviate(logger)} {method} - {msg}"
