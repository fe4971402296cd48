"""The import graph of ``edge_gateway/``: no cycles, and no layer imports a higher one.

The graph is read with :mod:`ast` (nothing is imported): every ``import`` and ``from … import``,
inside functions too, relative ones resolved; ``from pkg import name`` counts as importing
``pkg.name`` when that is a module.  Only statements under ``if TYPE_CHECKING:`` are left out
(they never run).

Layers, lowest first; a module may import its own layer or a lower one:

0. the core: ``edge_gateway`` itself and its flat modules (reading, errors, units, fhir, config,
   backoff, clock, logfmt, uuids, commands);
1. ``drivers.profiles`` (pure codecs) and ``dsp`` (pure numpy/scipy): each imports only the core
   and its own package;
2. ``store``: imports only the core (no codec, DSP, driver, alert or sync module);
3. ``drivers`` (all but the profiles), ``alerts``, ``sync``: between these three only the
   imports listed in ``LAYER3_ALLOWED``;
4. ``care``; 5. ``runtime``; 6. ``cli`` and ``__main__``.

``cloud`` may import layers 0–4; nothing on the hub imports ``cloud`` except the CLI's own
``cloud`` command group (``cli/cloud.py``), which imports it inside its commands.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "edge_gateway"

CORE = frozenset({"reading", "errors", "units", "fhir", "config", "backoff", "clock", "logfmt",
                  "uuids", "commands"})
#: Top-level package -> layer (``drivers`` is split: its ``profiles`` are layer 1).
LAYERS = {"dsp": 1, "store": 2, "drivers": 3, "alerts": 3, "sync": 3, "care": 4, "runtime": 5,
          "cli": 6, "__main__": 6}
#: Imports between the layer-3 packages: (importing package, imported module).  The sync reads
#: the registry of profiles (which reading kinds exist); nothing else crosses.  Keep it acyclic.
LAYER3_ALLOWED = frozenset({("sync", "edge_gateway.drivers.registry")})
CLOUD_MAY_IMPORT_UP_TO = 4


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every statement, at any depth, except the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.orelse:
                yield stmt
                yield from _statements(stmt)
            continue
        if isinstance(node, ast.stmt):
            yield node
        yield from _statements(node)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``edge_gateway`` modules that module ``name`` (at ``path``) imports."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(module: str) -> tuple[int, str]:
    """(layer, group) of a module; the group is what "its own package" means for layer 1."""
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in CORE):
        return 0, "core"
    top = parts[1]
    if top == "drivers" and len(parts) > 2 and parts[2] == "profiles":
        return 1, "drivers.profiles"
    if top == "cloud":
        return -1, "cloud"
    if top not in LAYERS:
        raise AssertionError(f"{module}: not in any layer; add it to LAYERS or CORE")
    return LAYERS[top], top


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out: list[str] = []
    for src, targets in sorted(graph.items()):
        s_layer, s_group = layer_of(src)
        for dst in sorted(targets):
            d_layer, d_group = layer_of(dst)
            if d_group == "cloud":
                if s_group != "cloud" and src != "edge_gateway.cli.cloud":
                    out.append(f"{src} -> {dst}: nothing on the hub may import cloud")
                continue
            if s_group == "cloud":
                if d_layer > CLOUD_MAY_IMPORT_UP_TO:
                    out.append(f"{src} -> {dst}: cloud may import layers 0-4 only")
                continue
            if d_layer > s_layer:
                out.append(f"{src} -> {dst}: layer {s_layer} ({s_group}) imports layer "
                           f"{d_layer} ({d_group})")
            elif s_layer in (1, 2) and d_layer != 0 and d_group != s_group:
                out.append(f"{src} -> {dst}: {s_group} may import only the core and itself")
            elif s_layer == 3 and d_layer == 3 and d_group != s_group \
                    and (s_group, dst) not in LAYER3_ALLOWED:
                out.append(f"{src} -> {dst}: {s_group} may not import {d_group}"
                           f" (allowed between layer-3 packages: {sorted(LAYER3_ALLOWED)})")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> … -> a) per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_within(graph, set(comp), comp[0]) for comp in components]


def _path_within(graph: dict[str, set[str]], comp: set[str], start: str) -> list[str]:
    """A shortest cycle through ``start`` inside one strongly connected component."""
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is on no cycle")


def test_the_graph_is_read_completely() -> None:
    graph = import_graph()
    assert "edge_gateway.runtime.daemon" in graph
    # Imports inside functions count: the daemon starts the fleets and the sync lazily.
    assert "edge_gateway.sync.service" in graph["edge_gateway.runtime.daemon"]
    assert "edge_gateway.store" in graph["edge_gateway.runtime.daemon"]


def test_there_is_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_layer_imports_a_higher_one() -> None:
    bad = layer_violations(import_graph())
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_the_checks_catch_what_they_are_for() -> None:
    graph = {"edge_gateway.store.db": {"edge_gateway.sync.payload"},
             "edge_gateway.sync.payload": {"edge_gateway.store.db"},
             "edge_gateway.dsp.hrv": {"edge_gateway.drivers.profiles.base"},
             "edge_gateway.alerts.engine": {"edge_gateway.sync.mqtt"},
             "edge_gateway.store.writer": {"edge_gateway.drivers.profiles.base"},
             "edge_gateway.care.report": {"edge_gateway.cloud.store.pg"},
             "edge_gateway.drivers.profiles.base": set(), "edge_gateway.sync.mqtt": set(),
             "edge_gateway.cloud.store.pg": set()}
    assert cycles(graph) == [["edge_gateway.store.db", "edge_gateway.sync.payload",
                              "edge_gateway.store.db"]]
    bad = "\n".join(layer_violations(graph))
    for src in ("store.db -> edge_gateway.sync.payload", "dsp.hrv -> ", "store.writer -> ",
                "alerts.engine -> ", "care.report -> "):
        assert src in bad, bad


def test_imports_inside_functions_count_and_type_checking_ones_do_not(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "from edge_gateway.store import db\n"
        "if TYPE_CHECKING:\n"
        "    from edge_gateway.sync.service import SyncService\n"
        "else:\n"
        "    import edge_gateway.units\n"
        "def f() -> None:\n"
        "    from edge_gateway.runtime.daemon import Daemon\n"
        "    from . import logfmt\n", "utf-8")
    modules = all_modules()
    assert imports_of("edge_gateway.mod", src, modules) == {
        "edge_gateway.store.db", "edge_gateway.units", "edge_gateway.runtime.daemon",
        "edge_gateway.logfmt"}
