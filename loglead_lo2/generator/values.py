"""Vectorised random values for generated log lines (correlation ids, UUIDs, hex ids).

Every function draws from a caller-supplied :class:`numpy.random.Generator` and returns a
polars String Series built from a fixed-width byte array, so no Python loop runs per value.
"""

from __future__ import annotations

import numpy as np
import polars as pl

_B64URL = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8
)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _to_series(chars: np.ndarray, name: str) -> pl.Series:
    """``(n, w)`` uint8 ASCII matrix -> String Series of ``n`` strings of width ``w``."""
    n, width = chars.shape
    if n == 0:
        return pl.Series(name, [], dtype=pl.String)
    fixed = np.ascontiguousarray(chars).view(f"S{width}").ravel()
    return pl.Series(name, fixed).cast(pl.String)


def _uuid4_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw


def _sextets(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Base64 digit values (0-63) of each row of ``raw`` (``(n, k)`` uint8), zero-padded to a
    multiple of 3 bytes, and the number of padding bytes."""
    n, k = raw.shape
    pad = (-k) % 3
    padded = np.concatenate([raw, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    a, b, c = (padded.reshape(n, (k + pad) // 3, 3)[:, :, i].astype(np.uint16) for i in range(3))
    sextets = np.stack(
        [a >> 2, ((a & 3) << 4) | (b >> 4), ((b & 15) << 2) | (c >> 6), c & 63], axis=2
    ).reshape(n, 4 * ((k + pad) // 3))
    return sextets, pad


def _b64url_chars(raw: np.ndarray) -> np.ndarray:
    """Unpadded base64url characters of each row of ``raw`` (``(n, k)`` uint8)."""
    sextets, _ = _sextets(raw)
    width = (4 * raw.shape[1] + 2) // 3
    return _B64URL[sextets[:, :width]]


def to_series(chars: np.ndarray, name: str) -> pl.Series:
    """Public alias of the ``(n, w)`` ASCII matrix -> String Series conversion."""
    return _to_series(chars, name)


def cid_chars(rng: np.random.Generator, n: int) -> np.ndarray:
    """Correlation ids as an ``(n, 22)`` ASCII matrix (see :func:`correlation_ids`)."""
    return _b64url_chars(_uuid4_bytes(rng, n))


def b64_chars(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """Base64url tokens of ``nbytes`` random bytes as an ASCII matrix."""
    return _b64url_chars(rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8))


def correlation_ids(rng: np.random.Generator, n: int, name: str = "cid") -> pl.Series:
    """Light-4j correlation ids: a random UUID as 22 unpadded base64url characters."""
    return _to_series(cid_chars(rng, n), name)


def b64_tokens(rng: np.random.Generator, n: int, nbytes: int, name: str) -> pl.Series:
    """Random base64url tokens of ``nbytes`` random bytes (PKCE challenges, verifiers)."""
    return _to_series(b64_chars(rng, n, nbytes), name)


def uuids(rng: np.random.Generator, n: int, name: str = "uuid") -> pl.Series:
    """Random version-4 UUIDs in the canonical 36-character form."""
    return _to_series(uuid_chars(rng, n), name)


def uuid_chars(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random version-4 UUIDs as an ``(n, 36)`` ASCII matrix."""
    raw = _uuid4_bytes(rng, n)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    parts = [digits[:, 0:8], dash, digits[:, 8:12], dash, digits[:, 12:16], dash,
             digits[:, 16:20], dash, digits[:, 20:32]]
    return np.concatenate(parts, axis=1)


def uuid_prefix_chars(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """``str(uuid4())[:width]`` as an ``(n, width)`` ASCII matrix.

    The recording harness makes ``userId``/``serviceId`` with ``[:8]`` (8 hex digits) and
    names with ``[:32]`` (a UUID cut inside its last group: ``8-4-4-4-8``).
    """
    return np.ascontiguousarray(uuid_chars(rng, n)[:, :width])


_B64STD = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8
)


def b64std_padded_chars(raw: np.ndarray) -> np.ndarray:
    """Standard, ``=``-padded base64 of each row of ``raw`` (``(n, k)`` uint8), as HTTP
    ``Basic`` credentials are encoded."""
    sextets, pad = _sextets(raw)
    out = _B64STD[sextets]
    if pad:
        out[:, -pad:] = ord("=")
    return out


def basic_chars(ids: np.ndarray, secrets: np.ndarray) -> np.ndarray:
    """``Basic base64(id:secret)`` for each row of two ASCII matrices."""
    n = len(ids)
    colon = np.full((n, 1), ord(":"), dtype=np.uint8)
    creds = b64std_padded_chars(np.concatenate([ids, colon, secrets], axis=1))
    head = np.tile(np.frombuffer(b"Basic ", dtype=np.uint8), (n, 1))
    return np.concatenate([head, creds], axis=1)


def client_pool(rng: np.random.Generator, n: int) -> pl.DataFrame:
    """Registered clients: server-made id (UUID) and secret (22 base64url characters), the
    ``Basic`` header built from them, and the harness's ``clientName`` (``uuid4()[:32]``) and
    ``clientDesc`` (a full UUID)."""
    ids, secrets = uuid_chars(rng, n), cid_chars(rng, n)
    return pl.DataFrame([
        _to_series(ids, "client_id"), _to_series(secrets, "secret"),
        _to_series(basic_chars(ids, secrets), "basic"),
        _to_series(uuid_prefix_chars(rng, n, 32), "client_name"),
        _to_series(uuid_chars(rng, n), "client_desc"),
    ])


def user_pool(rng: np.random.Generator, n: int) -> pl.DataFrame:
    """Registered users as the harness makes them (``locust_user.User``): ``userId``
    ``uuid4()[:8]``, ``firstName``/``lastName`` ``uuid4()[:32]``, ``email`` and ``password``
    full UUIDs, plus the ``newPassword`` of a password change (a full UUID)."""
    return pl.DataFrame([
        _to_series(uuid_prefix_chars(rng, n, 8), "user_id"),
        _to_series(uuid_prefix_chars(rng, n, 32), "first_name"),
        _to_series(uuid_prefix_chars(rng, n, 32), "last_name"),
        _to_series(uuid_chars(rng, n), "email"),
        _to_series(uuid_chars(rng, n), "password"),
        _to_series(uuid_chars(rng, n), "new_password"),
    ])


def service_pool(rng: np.random.Generator, n: int) -> pl.DataFrame:
    """Registered services (``locust_service.Service``): ``serviceId`` ``uuid4()[:8]``,
    ``serviceName`` ``uuid4()[:32]``, ``serviceDesc`` a full UUID."""
    return pl.DataFrame([
        _to_series(uuid_prefix_chars(rng, n, 8), "svc_id"),
        _to_series(uuid_prefix_chars(rng, n, 32), "svc_name"),
        _to_series(uuid_chars(rng, n), "svc_desc"),
    ])
