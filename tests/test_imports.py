"""Module structure: no import cycles, no phase importing a later one, a light CLI help."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "loglead_lo2"
PHASES = {"generator": 0, "loader": 1, "enhancers": 1, "detection": 2, "explain": 3,
          "tools": 4}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (also inside functions), except
    under ``if TYPE_CHECKING:``."""
    mods = _modules()

    def owner(name: str) -> str | None:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in mods else None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text("utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                    and node.module.startswith("loglead_lo2"):
                subs = [f"{node.module}.{a.name}" for a in node.names
                        if f"{node.module}.{a.name}" in mods]
                names = subs if len(subs) == len(node.names) else [node.module, *subs]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("loglead_lo2")]
            for name in names:
                target = owner(name)
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _phase(module: str) -> int | None:
    parts = module.split(".")
    return PHASES.get(parts[1]) if len(parts) > 1 else None


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_phase_imports_a_later_phase() -> None:
    later = sorted((m, t) for m, ts in _graph().items() for t in ts
                   if _phase(m) is not None and _phase(t) is not None
                   and _phase(t) > _phase(m))  # type: ignore[operator]
    assert later == []


def test_detect_help_does_not_import_scikit_learn() -> None:
    code = ("import sys; from loglead_lo2.detection.cli import build_parser; "
            "build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sklearn', 'xgboost', 'shap', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]"


def test_artifact_names_are_defined_once() -> None:
    """Every phase takes its file names from loglead_lo2/artifacts.py: no other module
    defines a constant spelling one."""
    import re

    from loglead_lo2 import artifacts

    names = {v for k, v in vars(artifacts).items() if k.isupper() and isinstance(v, str)}
    pattern = re.compile(r'^\s*[A-Z_]+\s*(?::[^=]+)?=\s*"([^"]+)"', re.MULTILINE)
    redefined = sorted(
        (str(path.relative_to(PACKAGE)), value) for path in PACKAGE.rglob("*.py")
        if path.name != "artifacts.py"
        for value in pattern.findall(path.read_text("utf-8")) if value in names)
    assert redefined == []
    assert artifacts.run_bundle(Path("m"), "k", "token") == Path("m/models/token/k.joblib")


def _allocator_conf(env: dict[str, str]) -> str:
    code = "import loglead_lo2, polars, os; print(os.environ['_RJEM_MALLOC_CONF'])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=env).stdout.strip()


def test_polars_allocator_keeps_freed_pages_unless_told_otherwise() -> None:
    import os

    from loglead_lo2 import JEMALLOC_CONF

    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    # polars puts its own settings first; jemalloc takes the last value of each option
    assert _allocator_conf(env).endswith("," + JEMALLOC_CONF)
    assert _allocator_conf({**env, "_RJEM_MALLOC_CONF": "narenas:2"}).endswith(",narenas:2")
