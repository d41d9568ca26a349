"""Check the package's shape: layers that point one way, no cycles, no private imports.

    python scripts/check_architecture.py            # prints the problems, exit 1 if any

Rules (docs/architecture.md):
1. No import cycle between the package's modules (package ``__init__`` files included).
2. No import of the package's own modules inside a function (no cycle dodging); only
   optional third-party dependencies may be imported lazily.
3. No module imports another module's private (``_name``) names.
4. Layers point one way: primitives import only primitives; engine parts never import
   the trainer or the command line; nothing imports the command line.
5. No module over ``MAX_LINES`` lines.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "timm_ccrop"
TOP = "timm_ccrop"
MAX_LINES = 500
#: The bottom layer: small, self-contained building blocks.
PRIMITIVES = {"crop", "models", "utils", "version"}
#: The top layers: the trainer (the pretrain command's engine), the studies built on it
#: (timm-ccrop compare) and the command line.
COMMANDS = {"train", "studies", "cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path) -> Iterator[tuple[str, str | None, bool]]:
    """``(module, imported name or None, inside a function)`` for every package import."""
    module = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested |= {id(child) for child in ast.walk(node) if child is not node}
    for node in ast.walk(tree):
        inside = id(node) in nested
        if isinstance(node, ast.ImportFrom):
            base = _resolve(module, node, path.name == "__init__.py")
            if base.split(".")[0] == TOP:
                for alias in node.names:
                    yield base, alias.name, inside
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == TOP:
                    yield alias.name, None, inside


def top_part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def check() -> list[str]:
    """Every violation of the rules above, one line each."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    problems = []
    for module, path in files.items():
        for target, name, inside in imports(path):
            sub = f"{target}.{name}" if name else target
            target = sub if sub in files else target
            if target not in files or target == module:
                continue
            edges[module].add(target)
            if inside:
                problems.append(f"import inside a function: {module} imports {target}")
            if name and name.startswith("_") and not name.startswith("__") and sub not in files:
                problems.append(f"private import: {module} imports {target}.{name}")
            problems += _layer_problems(module, target)
    problems = list(dict.fromkeys(problems))  # one line per module pair
    problems += [f"import cycle among: {', '.join(cycle)}" for cycle in _cycles(edges)]
    for module, path in sorted(files.items()):
        count = len(path.read_text().splitlines())
        if count > MAX_LINES:
            problems.append(f"module {module} has {count} lines (> {MAX_LINES})")
    return problems


def _layer_problems(module: str, target: str) -> list[str]:
    source, destination = top_part(module), top_part(target)
    if source == destination or not source:
        return []
    if destination == "cli":
        return [f"layering: {module} imports the command line ({target})"]
    if source in PRIMITIVES and destination not in PRIMITIVES:
        return [f"layering: primitive {module} imports {target}"]
    if source not in COMMANDS and destination in COMMANDS:
        return [f"layering: engine part {module} imports {target}"]
    return []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One representative cycle per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in edges:
        if node not in index:
            visit(node)
    return found


def main() -> int:
    problems = check()
    for line in problems:
        print(line)
    print(f"{len(problems)} problem(s) in {ROOT}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
