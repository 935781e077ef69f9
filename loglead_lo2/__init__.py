"""loglead-lo2: explainable log anomaly detection for the LO2 (Light-OAuth2) dataset."""

from __future__ import annotations

__version__ = "0.1.0"

SERVICES: tuple[str, ...] = (
    "client",
    "code",
    "key",
    "refresh-token",
    "service",
    "token",
    "user",
)
"""The seven Light-OAuth2 services, in sorted order."""

__all__ = ["SERVICES", "__version__"]
