"""Bundle signatures: HMAC-SHA256 with a key the user holds, and safe reads of bundle files.

A bundle pair (the joblib file and its YAML) is signed with
``HMAC-SHA256(key, joblib bytes + canonical YAML content)`` (:func:`signature`), stored in
the YAML as ``bundle.hmac_sha256`` with ``bundle.key_id`` (the first 16 hex digits of the
key's sha256). The key comes from, in this order:

1. ``LO2_BUNDLE_KEY``: the key itself (hex, or any string of at least 16 characters);
2. the file named by ``LO2_BUNDLE_KEY_FILE``;
3. ``~/.config/loglead-lo2/bundle.key``.

A missing key *file* is created (32 random bytes, hex, mode 0600) the first time a bundle is
saved; loading never creates one. A key file is refused when it is not a regular file, is
group/world-writable (or sits in such a folder without the sticky bit), belongs to another
user, or lies inside the folder of the bundle being loaded (whoever writes the bundles could
write the key too).

:func:`read_regular` reads a whole file in one ``open()`` and refuses anything but a regular
file (a FIFO is opened non-blocking and refused, a device such as ``/dev/zero`` too), so the
bytes that are verified are the bytes that are unpickled.

The one escape hatch for bundles the user vouches for is :func:`trusting_unsigned` (the
``--trust-unsigned-bundle`` flag of ``lo2-detect`` / ``lo2-explain``, ``trust_unsigned=True``
in the library): bundles whose signature cannot be verified then load with a warning.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

KEY_ENV = "LO2_BUNDLE_KEY"
KEY_FILE_ENV = "LO2_BUNDLE_KEY_FILE"
TRUST_FLAG = "--trust-unsigned-bundle"
MIN_KEY_BYTES = 16
MAX_KEY_FILE_BYTES = 4096
SIGNATURE_DOMAIN = b"loglead-lo2 bundle signature v1\0"
HEX_RE = re.compile(r"\A(?:[0-9a-fA-F]{2}){16,}\Z")

_TRUST_UNSIGNED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "lo2_trust_unsigned_bundle", default=False)


def default_key_file() -> Path:
    return Path.home() / ".config" / "loglead-lo2" / "bundle.key"


@dataclass(frozen=True)
class BundleKey:
    """A signing key and where it came from (an environment variable or a file)."""

    secret: bytes
    source: str

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()[:16]

    def __repr__(self) -> str:  # never print the secret
        return f"BundleKey(key_id={self.key_id!r}, source={self.source!r})"


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    secret = bytes.fromhex(text) if HEX_RE.match(text) else text.encode("utf-8")
    if len(secret) < MIN_KEY_BYTES:
        raise UserError(f"{where}: a bundle key needs at least {MIN_KEY_BYTES} bytes (hex) or "
                        f"characters; use e.g. python -c 'import secrets; "
                        f"print(secrets.token_hex(32))'.")
    return secret


def key_file_path() -> Path:
    """The key file in use: ``LO2_BUNDLE_KEY_FILE``, else the default."""
    named = os.environ.get(KEY_FILE_ENV)
    if named is not None:
        if not named.strip():
            raise UserError(f"{KEY_FILE_ENV} is set but empty; name the key file or unset it.")
        return Path(named).expanduser()
    return default_key_file()


def _inside(path: Path, folders: Sequence[Path]) -> Path | None:
    real = path.resolve()
    for folder in folders:
        base = Path(folder).resolve()
        if real == base or base in real.parents:
            return Path(folder)
    return None


def _check_key_stat(path: Path, st: os.stat_result) -> None:
    fix = f"chmod 600 {path}, or set {KEY_FILE_ENV} to a key file only you can write"
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path}: the bundle key file is not a regular file; {fix}.")
    if st.st_mode & 0o022:
        raise UserError(f"{path}: the bundle key file is group- or world-writable "
                        f"(mode {stat.S_IMODE(st.st_mode):o}), so others could forge bundle "
                        f"signatures; {fix}.")
    uid = getattr(os, "geteuid", None)
    if uid is not None and st.st_uid not in (uid(), 0):
        raise UserError(f"{path}: the bundle key file belongs to another user (uid "
                        f"{st.st_uid}); {fix}.")
    parent = path.resolve().parent
    pst = parent.stat()
    if pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX:
        raise UserError(f"{path}: the key file's folder {parent} is group- or world-writable, "
                        "so others could replace the key; move the key to a private folder "
                        f"(e.g. {default_key_file().parent}).")


def _create_key_file(path: Path) -> bool:
    """Create ``path`` with 32 random bytes (hex), mode 0600; ``False`` when another process
    created it first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process made
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_key(*, create: bool = False, forbid_inside: Sequence[Path] = ()) -> BundleKey:
    """The bundle key (see the module doc). ``create``: make a missing key file (saving);
    ``forbid_inside``: folders the key file must not lie in (the bundle's folder)."""
    env = os.environ.get(KEY_ENV)
    if env is not None:
        if not env.strip():
            raise UserError(f"{KEY_ENV} is set but empty; set it to the key or unset it.")
        return BundleKey(_decode_key(env, KEY_ENV), KEY_ENV)
    path = key_file_path()
    if not os.path.lexists(path):
        if not create:
            raise UserError(
                f"no bundle key: {path} does not exist, so no bundle signature can be checked "
                f"(the first save creates it; set {KEY_FILE_ENV} or {KEY_ENV} to the key the "
                f"bundle was signed with, or pass {TRUST_FLAG} if you vouch for the bundle).")
        if _create_key_file(path):
            log.warning("[Model] created the bundle signing key %s (mode 0600): bundles saved "
                        "from now on are signed with it; keep it private", path)
    inside = _inside(path, forbid_inside)
    if inside is not None:
        raise UserError(f"{path}: the bundle key file lies inside the bundle folder {inside}, "
                        f"so whoever can write the bundles can write the key; move it out "
                        f"(e.g. to {default_key_file()}) and point {KEY_FILE_ENV} at it.")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the bundle key file "
                        f"({exc.strerror or type(exc).__name__}).") from exc
    try:
        st = os.fstat(fd)
        _check_key_stat(path, st)
        raw = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise UserError(f"{path}: not a bundle key file (over {MAX_KEY_FILE_BYTES} bytes).")
    try:
        return BundleKey(_decode_key(raw.decode("utf-8"), str(path)), str(path))
    except UnicodeDecodeError:  # a binary key file: the bytes are the key
        if len(raw) < MIN_KEY_BYTES:
            raise UserError(f"{path}: a bundle key needs at least {MIN_KEY_BYTES} bytes."
                            ) from None
        return BundleKey(raw, str(path))


# --- the signature ------------------------------------------------------------------------------


def unsigned_content(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` without ``bundle.hmac_sha256`` (the part the signature covers)."""
    body = dict(metadata)
    bundle = body.get("bundle")
    if isinstance(bundle, Mapping):
        body["bundle"] = {k: v for k, v in bundle.items() if k != "hmac_sha256"}
    return body


def canonical(metadata: Mapping[str, Any]) -> bytes:
    """The signed form of the metadata: sorted-key compact JSON of its parsed YAML."""
    try:
        text = json.dumps(unsigned_content(metadata), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        raise UserError(f"model metadata cannot be canonicalised ({type(exc).__name__}).") from exc
    return text.encode("ascii")


def signature(key: BundleKey, data: bytes, metadata: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over the joblib bytes and the canonical metadata (hex)."""
    mac = hmac.new(key.secret, digestmod=hashlib.sha256)
    mac.update(SIGNATURE_DOMAIN)
    mac.update(len(data).to_bytes(8, "big"))
    mac.update(data)
    mac.update(canonical(metadata))
    return mac.hexdigest()


def signature_matches(key: BundleKey, data: bytes, metadata: Mapping[str, Any],
                      recorded: str) -> bool:
    return hmac.compare_digest(signature(key, data, metadata), str(recorded))


# --- the escape hatch ---------------------------------------------------------------------------


@contextlib.contextmanager
def trusting_unsigned(on: bool = True) -> Iterator[None]:
    """Within the block, bundles whose signature cannot be verified load with a warning
    (``--trust-unsigned-bundle``)."""
    token = _TRUST_UNSIGNED.set(bool(on))
    try:
        yield
    finally:
        _TRUST_UNSIGNED.reset(token)


def trust_unsigned_active() -> bool:
    return _TRUST_UNSIGNED.get()


# --- safe reads ---------------------------------------------------------------------------------


def read_regular(path: str | os.PathLike[str], what: str, *,
                 limit: int | None = None) -> bytes:
    """All bytes of ``path`` from one ``open()``; a one-line UserError for anything but a
    regular file (a FIFO is never waited on, a device never read) or a file over ``limit``."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise UserError(f"{path}: {what} not found.") from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} "
                        f"({exc.strerror or type(exc).__name__}).") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{path}: the {what} is not a regular file ({_kind(st.st_mode)}); "
                            "only regular files are read.")
        if limit is not None and st.st_size > limit:
            raise UserError(f"{path}: the {what} is {st.st_size:,} bytes, over the "
                            f"{limit:,} a {what} can have.")
        chunks: list[bytes] = []
        while True:
            block = os.read(fd, 1 << 22)
            if not block:
                break
            chunks.append(block)
            if limit is not None and sum(map(len, chunks)) > limit:
                raise UserError(f"{path}: the {what} grew over {limit:,} bytes while read.")
        return b"".join(chunks)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} "
                        f"({exc.strerror or type(exc).__name__}).") from exc
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


__all__ = ["BundleKey", "KEY_ENV", "KEY_FILE_ENV", "TRUST_FLAG", "canonical", "key_file_path",
           "load_key", "read_regular", "signature", "signature_matches", "trust_unsigned_active",
           "trusting_unsigned", "unsigned_content"]
