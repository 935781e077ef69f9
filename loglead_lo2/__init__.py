"""loglead-lo2: explainable log anomaly detection for the LO2 (Light-OAuth2) dataset."""

from __future__ import annotations

import os as _os

JEMALLOC_CONF = "dirty_decay_ms:30000,muzzy_decay_ms:30000"
"""Appended by polars, when it is first imported, to its allocator's settings
(``_RJEM_MALLOC_CONF``; polars' own: freed pages go back to the system after 0.5-1 s) unless
the variable is set: keep them 30 s. Each run of a load allocates and frees about a gigabyte
of strings, and returning those pages and faulting them back in cost a quarter of the
loader's CPU time in the kernel. Measured on 4 generated full-scale runs: page faults 1.14 M
-> 0.43 M, system time 4.1-6.4 s -> 2.6-4.1 s, wall about -10 % (noisy), peak RSS 1.33 ->
1.63 GB. No effect when polars was imported before this package."""
_os.environ.setdefault("_RJEM_MALLOC_CONF", JEMALLOC_CONF)

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

__all__ = ["JEMALLOC_CONF", "SERVICES", "__version__"]
