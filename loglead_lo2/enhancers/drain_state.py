"""Save and restore a :class:`~loglead_lo2.enhancers.drain.DrainParser` exactly.

Why: a model over ``e_event_drain_id`` only scores new data correctly when the new data's
template ids mean what they meant in training. A parser restored from a saved state gives every
message it has seen the id it had, and gives new templates new ids
(``lo2-load --drain-state FILE``).

The file (``lo2_drain_state.parquet``) is one Parquet table of every distinct normalised
message the parser has seen with its cluster id (``message``, ``cid``; sorted by id, then
message), and, in the table's key-value metadata under :data:`META_KEY`, a JSON header with
drain3's own state: the :class:`~loglead_lo2.enhancers.drain.DrainConfig`, every cluster
(id, size, template tokens, in drain3's order), drain3's prefix tree and cluster counter. This
is what drain3's ``TemplateMiner.save_state`` snapshots, written as plain JSON instead of
jsonpickle, because restoring a jsonpickle snapshot instantiates whatever classes the file
names (a planted state would run code); a test checks that the restored miner's own jsonpickle
snapshot equals the original's, byte for byte.

Each state is named by :func:`fingerprint` (sha256 over the config, clusters, tree, counter and
the sorted message table; independent of Parquet encoding and library versions) and carries
its ``lineage``: the fingerprints of the states it grew from, oldest first. Template ids of an
ancestor keep their meaning in every descendant, so a bundle trained on state ``S`` can score
any load whose state is ``S`` or descends from it (:func:`lineage_accepts`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from loglead_lo2.errors import UserError

FORMAT = "loglead-lo2 drain state"
VERSION = 1
META_KEY = b"loglead_lo2.drain_state"
_HASH_CHUNK = 20_000


@dataclass(frozen=True)
class DrainStateInfo:
    """What names a saved state: its fingerprint, size and ancestry."""

    sha256: str
    templates: int
    messages: int
    lineage: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "templates": self.templates,
                "messages": self.messages, "lineage": list(self.lineage)}


def _tree_json(node: Any) -> dict[str, Any]:
    return {"ids": list(node.cluster_ids),
            "children": {key: _tree_json(child) for key, child in node.key_to_child_node.items()}}


def header_of(drain: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """drain3's state (clusters, prefix tree, counter) and the parser's config as JSON data."""
    if not isinstance(drain.id_to_cluster, dict):
        raise ValueError("saving a Drain state needs the unbounded cluster table "
                         "(DrainConfig.max_clusters=None)")
    return {
        "format": FORMAT, "version": VERSION, "config": dict(config),
        "clusters_counter": int(drain.clusters_counter),
        "clusters": [[int(c.cluster_id), int(c.size), list(c.log_template_tokens)]
                     for c in drain.id_to_cluster.values()],
        "tree": _tree_json(drain.root_node),
    }


def _sorted_messages(messages: pl.DataFrame) -> pl.DataFrame:
    return messages.select(pl.col("message").cast(pl.String), pl.col("cid").cast(pl.Int64)) \
        .sort("cid", "message")


def fingerprint(header: Mapping[str, Any], messages: pl.DataFrame) -> str:
    """sha256 of a state's content: the header (without lineage and sha256) and the sorted
    ``(message, cid)`` table, both as canonical JSON."""
    core = {k: v for k, v in header.items() if k not in ("lineage", "sha256", "templates",
                                                        "messages")}
    digest = hashlib.sha256(json.dumps(core, sort_keys=True, separators=(",", ":"))
                            .encode("utf-8"))
    table = _sorted_messages(messages)
    for start in range(0, table.height, _HASH_CHUNK):  # bounded Python copies
        chunk = table.slice(start, _HASH_CHUNK)
        pairs = list(zip(chunk["message"].to_list(), chunk["cid"].to_list(), strict=True))
        digest.update(json.dumps(pairs, separators=(",", ":")).encode("utf-8"))
    return digest.hexdigest()


def write_state(path: str | os.PathLike[str], header: Mapping[str, Any],
                messages: pl.DataFrame, lineage: Sequence[str] = ()) -> DrainStateInfo:
    """Write a state atomically; returns its :class:`DrainStateInfo`."""
    import pyarrow.parquet as pq

    from loglead_lo2.schema import atomic_path

    table = _sorted_messages(messages)
    sha = fingerprint(header, table)
    ancestors = tuple(s for s in lineage if s != sha)  # a state that learnt nothing new
    info = DrainStateInfo(sha, len(header["clusters"]), table.height, ancestors)
    full = {**header, **info.as_dict()}
    arrow = table.to_arrow()
    arrow = arrow.replace_schema_metadata({META_KEY: json.dumps(full, separators=(",", ":"))})
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp, compression="zstd")
    return info


@dataclass(frozen=True)
class DrainState:
    """A state read back by :func:`read_state` (checked, not yet applied to a parser)."""

    header: Mapping[str, Any]
    messages: pl.DataFrame
    info: DrainStateInfo
    path: Path


def _bad(path: Path, why: str) -> UserError:
    return UserError(f"{path}: not a usable Drain state ({why}); pass a lo2_drain_state.parquet "
                     "written by lo2-load, or leave --drain-state out to start a new one.")


def read_state(path: str | os.PathLike[str]) -> DrainState:
    """Read and check a state file: format, version, types, ids and its fingerprint."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found or not a regular file; pass the "
                        "lo2_drain_state.parquet of an earlier load.")
    try:
        arrow = pq.read_table(path)
        raw = (arrow.schema.metadata or {}).get(META_KEY)
        header = json.loads(raw) if raw is not None else None
    except RecursionError as exc:
        raise _bad(path, "its header is nested too deeply") from exc
    except Exception as exc:  # noqa: BLE001 - pyarrow/json raise many types for bad files
        raise _bad(path, f"{type(exc).__name__}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad(path, "no loglead-lo2 header")
    if header.get("version") != VERSION:
        raise _bad(path, f"format version {header.get('version')!r}, this version reads "
                         f"{VERSION}")
    try:
        messages = _sorted_messages(pl.from_arrow(arrow))  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001
        raise _bad(path, f"message table: {type(exc).__name__}") from exc
    _check_header(path, header, messages)
    sha = fingerprint(header, messages)
    if sha != header.get("sha256"):
        raise _bad(path, "its content does not match the sha256 it records")
    lineage = header.get("lineage") or []
    if not (isinstance(lineage, list) and all(isinstance(s, str) for s in lineage)):
        raise _bad(path, "lineage is not a list of hashes")
    info = DrainStateInfo(sha, len(header["clusters"]), messages.height, tuple(lineage))
    return DrainState(header, messages, info, path)


def _check_header(path: Path, header: Mapping[str, Any], messages: pl.DataFrame) -> None:
    clusters = header.get("clusters")
    ok = isinstance(clusters, list) and all(
        isinstance(c, list) and len(c) == 3 and isinstance(c[0], int) and isinstance(c[1], int)
        and isinstance(c[2], list) and all(isinstance(t, str) for t in c[2]) for c in clusters)
    if not ok or not isinstance(header.get("clusters_counter"), int) \
            or not isinstance(header.get("config"), dict):
        raise _bad(path, "malformed clusters, counter or config")
    ids = {c[0] for c in clusters}  # type: ignore[union-attr]
    if len(ids) != len(clusters) or any(i < 1 or i > header["clusters_counter"] for i in ids):  # type: ignore[arg-type]
        raise _bad(path, "cluster ids are duplicated or beyond the counter")
    depth = int(header["config"].get("depth", 0) or 0)
    for node, level in _walk(header.get("tree"), path):
        if level > depth:
            raise _bad(path, "prefix tree deeper than the configured depth")
        if not set(node["ids"]) <= ids:
            raise _bad(path, "prefix tree names unknown clusters")
    if messages["message"].n_unique() != messages.height or messages["message"].null_count():
        raise _bad(path, "duplicate or missing messages")
    if messages.height and not set(messages["cid"].unique().to_list()) <= ids:
        raise _bad(path, "messages map to unknown clusters")


def _walk(tree: Any, path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """Every node of a JSON prefix tree with its level (iterative: no recursion limit)."""
    stack = [(tree, 0)]
    while stack:
        node, level = stack.pop()
        if not (isinstance(node, dict) and isinstance(node.get("ids"), list)
                and all(isinstance(i, int) for i in node["ids"])
                and isinstance(node.get("children"), dict)):
            raise _bad(path, "malformed prefix tree")
        yield node, level
        stack.extend((child, level + 1) for child in node["children"].values())


def restore_drain(drain: Any, header: Mapping[str, Any]) -> None:
    """Put a checked header's clusters, tree and counter into a fresh drain3 ``Drain``."""
    from drain3.drain import LogCluster, Node

    drain.id_to_cluster = {}
    for cid, size, tokens in header["clusters"]:
        cluster = LogCluster(tokens, cid)
        cluster.size = size
        drain.id_to_cluster[cid] = cluster
    drain.clusters_counter = header["clusters_counter"]

    def build(data: Mapping[str, Any]) -> Any:
        node = Node()
        node.cluster_ids = list(data["ids"])
        node.key_to_child_node = {k: build(v) for k, v in data["children"].items()}
        return node

    drain.root_node = build(header["tree"])  # depth checked by read_state


def lineage_accepts(bundle_sha: str, load: Mapping[str, Any] | None) -> bool:
    """Whether a load's Drain state (the ``drain`` block of ``lo2_load_info.json``) is the
    bundle's state or descends from it, so its template ids mean what they meant in training."""
    if not load:
        return False
    return bundle_sha == load.get("sha256") or bundle_sha in (load.get("lineage") or [])


def config_dict(config: Any) -> dict[str, Any]:
    data = asdict(config)
    data["extra_delimiters"] = list(data["extra_delimiters"])
    return data


__all__ = ["DrainState", "DrainStateInfo", "FORMAT", "META_KEY", "VERSION", "config_dict",
           "fingerprint", "header_of", "lineage_accepts", "read_state", "restore_drain",
           "write_state"]
