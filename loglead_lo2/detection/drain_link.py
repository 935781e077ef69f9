"""Tie bundles over Drain template ids to the Drain state their ids came from.

A model over ``e_event_drain_id`` is only valid on rows whose template ids mean what they meant
in training. The loader saves its parser as ``lo2_drain_state.parquet`` and names it (sha256,
lineage) in the ``"drain"`` block of ``lo2_load_info.json``. Every bundle over template ids
gets that state copied beside it and named in its ``.yml`` (``parts.drain``); scoring other
rows with it is allowed only when their load used the same state or one grown from it
(``lo2-load --drain-state <models>/lo2_drain_state.parquet``), checked by
:func:`check_lineage`.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loglead_lo2.artifacts import DRAIN_STATE_FILE, LOAD_INFO_FILE
from loglead_lo2.errors import UserError

log = logging.getLogger(__name__)

DRAIN_ITEM = "e_event_drain_id"
DRAIN_ITEMS = (DRAIN_ITEM, "e_event_templates")
"""Feature columns of Drain template ids: the ordered list and the per-sequence bag."""
NOT_USED = "not used"


def load_drain_block(root: str | Path) -> dict[str, Any] | None:
    """The ``"drain"`` block of ``<root>/lo2_load_info.json`` (``None`` when absent)."""
    from loglead_lo2.detection.labels import read_load_info

    info = read_load_info(Path(root))
    block = (info or {}).get("drain")
    return dict(block) if isinstance(block, Mapping) and block.get("sha256") else None


def uses_drain(vectorizer: Any) -> bool:
    return getattr(vectorizer, "item", None) in DRAIN_ITEMS


def drain_part(vectorizer: Any, block: Mapping[str, Any] | None) -> dict[str, Any] | str:
    """The ``parts.drain`` entry of a bundle's metadata."""
    if not uses_drain(vectorizer):
        return NOT_USED
    if not block:
        return ("not saved: the load wrote no Drain state (re-run lo2-load with this version); "
                "template ids of other loads may mean other templates")
    return {"file": DRAIN_STATE_FILE, "sha256": block["sha256"],
            "templates": block.get("templates"), "messages": block.get("messages"),
            "lineage": list(block.get("lineage") or []),
            "load_with": f"lo2-load ... --drain-state <this folder>/{DRAIN_STATE_FILE}"}


def place_drain_state(bundle: Path, vectorizer: Any, root: str | Path,
                      block: Mapping[str, Any] | None) -> Path | None:
    """Copy the load's state beside ``bundle`` when the bundle scores template ids (checked
    against the load's info first); returns the copy, ``None`` when there is nothing to copy."""
    from loglead_lo2.enhancers.drain_state import read_state
    from loglead_lo2.schema import atomic_path

    if not uses_drain(vectorizer) or not block:
        return None
    source = Path(root) / DRAIN_STATE_FILE
    state = read_state(source)
    if state.info.sha256 != block["sha256"]:
        raise UserError(f"{source}: its Drain state ({state.info.sha256[:12]}) is not the one "
                        f"{LOAD_INFO_FILE} names ({str(block['sha256'])[:12]}); re-run lo2-load.")
    target = bundle.parent / DRAIN_STATE_FILE
    if target.is_file() and target.resolve() == source.resolve():
        return target
    if target.is_file():
        try:
            if read_state(target).info.sha256 == state.info.sha256:
                return target
        except UserError:
            pass  # a broken copy is replaced
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def check_lineage(metadata: Mapping[str, Any] | None, load: Mapping[str, Any] | None,
                  bundle: str | os.PathLike[str], where: str) -> None:
    """Refuse to score rows whose template ids may mean other templates than in training.

    ``metadata``: the bundle's metadata; ``load``: the ``"drain"`` block of the rows' load
    (``None``: unknown). Bundles that do not use template ids always pass.
    """
    from loglead_lo2.enhancers.drain_state import lineage_accepts

    part = ((metadata or {}).get("parts") or {}).get("drain")
    if not isinstance(part, Mapping) or not part.get("sha256"):
        if isinstance(part, str) and part.startswith("not saved"):
            log.warning("%s: %s", bundle, part)
        return
    sha = str(part["sha256"])
    if lineage_accepts(sha, load):
        return
    have = (f"Drain state {str(load.get('sha256'))[:12]}" if load
            else "no recorded Drain state")
    raise UserError(
        f"{bundle}: scores Drain template ids of state {sha[:12]}, but {where} has {have}; "
        f"load the logs with lo2-load --drain-state {Path(bundle).parent / DRAIN_STATE_FILE} "
        "so the ids mean the same templates.")


def state_problem(models_dir: Path, meta: Mapping[str, Any]) -> str | None:
    """Why the Drain state a bundle's ``parts.drain`` names is not beside it (``None``: it is,
    or the bundle does not use template ids); for the artifact scan."""
    from loglead_lo2.enhancers.drain_state import read_state

    parts = meta.get("parts")
    part = parts.get("drain") if isinstance(parts, Mapping) else None
    if not isinstance(part, Mapping) or not part.get("sha256"):
        return None
    path = models_dir / str(part.get("file") or DRAIN_STATE_FILE)
    try:
        have = read_state(path).info.sha256
    except UserError as exc:
        return f"names Drain state {str(part['sha256'])[:12]}, but {exc}"
    if have != part["sha256"]:
        return (f"names Drain state {str(part['sha256'])[:12]}, {path.name} holds {have[:12]}: "
                "the template ids would mean other templates")
    return None


__all__ = ["DRAIN_ITEM", "DRAIN_ITEMS", "check_lineage", "drain_part", "load_drain_block",
           "place_drain_state",
           "state_problem", "uses_drain"]
