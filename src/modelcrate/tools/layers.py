"""Check that imports between modelcrate's packages point one way (DESIGN.md).

Every import counts, the ones inside functions too: a function-local import hides a dependency,
it does not remove it. Run `python -m modelcrate.tools.layers`; exit 1 lists one violation a line.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT_PACKAGE = "modelcrate"
SOURCE_ROOT = Path(__file__).resolve().parents[1]

# The runtime runs inside every image: it may import only itself, never the control plane.
RUNTIME = frozenset({"serving", "predictors", "training", "errors"})
# The registry is a leaf store: running validation, reading projects and building images call it, not it them.
REGISTRY_MUST_NOT_IMPORT = frozenset(
    {"transform", "containers", "scaffold", "pipeline", "cards", "validation", "registration", "cli", "web"}
)


@dataclass(frozen=True)
class Import:
    importer: str  # top-level package of the importing module
    imported: str  # top-level package imported
    location: str  # path:line of the import statement


def _module_name(path: Path, source_root: Path) -> str:
    parts = list(path.relative_to(source_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([ROOT_PACKAGE, *parts])


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from modelcrate import cli` names a package in the alias, not in the module.
            if base == ROOT_PACKAGE:
                for alias in node.names:
                    yield f"{base}.{alias.name}", node.lineno
            else:
                yield base, node.lineno


def _top_package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != ROOT_PACKAGE or len(parts) < 2:
        return None
    return parts[1]


def collect_imports(source_root: Path = SOURCE_ROOT) -> list[Import]:
    """Every import from one modelcrate package into another."""
    imports = []
    for path in sorted(source_root.rglob("*.py")):
        module = _module_name(path, source_root)
        importer = _top_package(module)
        if importer is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for imported_module, line in _imported_modules(tree, module, path.name == "__init__.py"):
            imported = _top_package(imported_module)
            if imported is not None and imported != importer:
                location = f"{path.relative_to(source_root.parent)}:{line}"
                imports.append(Import(importer, imported, location))
    return imports


def _forbidden(edge: Import) -> bool:
    if edge.importer in RUNTIME:
        return edge.imported not in RUNTIME
    return edge.importer == "registry" and edge.imported in REGISTRY_MUST_NOT_IMPORT


def rule_violations(imports: Iterable[Import]) -> list[str]:
    return [f"{edge.location}: {edge.importer} must not import {edge.imported}" for edge in imports if _forbidden(edge)]


def find_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """Each cycle between packages as a path, e.g. [a, b, a]: the shortest one through every edge in a cycle."""
    graph: dict[str, set[str]] = {}
    for edge in imports:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    cycles = set()
    for importer in graph:
        for imported in graph[importer]:
            way_back = _shortest_path(imported, importer, graph)
            if way_back is not None:
                cycle = [importer, *way_back]
                # Rotate to start at the smallest name, so one cycle found from two edges counts once.
                start = cycle.index(min(cycle[:-1]))
                cycles.add(tuple(cycle[start:-1] + cycle[:start] + [cycle[start]]))
    return sorted(list(cycle) for cycle in cycles)


def _shortest_path(source: str, target: str, graph: Mapping[str, set[str]]) -> list[str] | None:
    paths = {source: [source]}
    frontier = [source]
    while frontier and target not in paths:
        next_frontier = []
        for node in frontier:
            for successor in sorted(graph[node]):
                if successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    next_frontier.append(successor)
        frontier = next_frontier
    return paths.get(target)


def cycle_violations(imports: list[Import]) -> list[str]:
    lines = []
    for cycle in find_cycles(imports):
        steps = []
        for importer, imported in itertools.pairwise(cycle):
            example = next(e.location for e in imports if e.importer == importer and e.imported == imported)
            steps.append(f"{importer} -> {imported} ({example})")
        lines.append("import cycle: " + ", ".join(steps))
    return lines


def check(source_root: Path = SOURCE_ROOT) -> list[str]:
    imports = collect_imports(source_root)
    return rule_violations(imports) + cycle_violations(imports)


def main() -> int:
    violations = check()
    for violation in violations:
        print(violation)
    if violations:
        return 1
    packages = {edge.importer for edge in collect_imports()}
    print(f"layers ok: {len(packages)} packages, no forbidden imports, no import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
