"""Imports run one way: each package imports only itself and the layers below it, and no two
modules import each other at import time (a cycle). Read from the source with `ast`, function-level
imports included, so a lazy upward import fails too."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("common", "tasks", "search_spaces", "trainables", "results", "study", "analysis",
          "bench")


def _modules():
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield name.removesuffix(".__init__"), ast.parse(path.read_text())


def _imported(tree: ast.Module, top_level_only: bool):
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_no_package_imports_a_layer_above_it():
    rank = {package: index for index, package in enumerate(LAYERS)}
    upward = [f"{module} imports {target}" for module, tree in _modules()
              for target in _imported(tree, top_level_only=False)
              if target.split(".")[0] in rank
              and rank[target.split(".")[0]] > rank[module.split(".")[0]]]
    assert upward == []


def test_no_import_cycle_between_modules():
    modules = dict(_modules())
    graph = {name: {t for t in _imported(tree, top_level_only=True) if t in modules and t != name}
             for name, tree in modules.items()}
    state: dict[str, int] = {}          # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                return path + [name, target]
            if target not in state and (cycle := visit(target, path + [name])):
                return cycle
        state[name] = 2
        return None

    cycles = [cycle for name in sorted(graph) if name not in state
              for cycle in [visit(name, [])] if cycle]
    assert cycles == []
