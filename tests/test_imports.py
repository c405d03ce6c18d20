"""The package's import graph, read with ast (nothing is imported): no circle, no reading of another module's
private names. Imports inside functions count too: a lazy import still ties two modules together."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "medrag"


def modules(package: Path = PACKAGE) -> dict[str, ast.Module]:
    return {
        f"medrag.{p.stem}" if p.stem != "__init__" else "medrag": ast.parse(p.read_text()) for p in package.glob("*.py")
    }


def imports(tree: ast.Module, names: set[str]) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for each import of a module in `names`."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name in names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in names | {"medrag"}:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub, None) if sub in names else (node.module, a.name))
    return out


def graph(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    names = set(trees)
    return {m: {target for target, _ in imports(t, names) if target not in (m, "medrag")} for m, t in trees.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of two or more modules (Tarjan), sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def private_reads(trees: dict[str, ast.Module]) -> list[str]:
    """`from medrag.x import _name` and `medrag.x._name` / `x._name` (x an imported medrag module) in other modules."""
    names, found = set(trees), []
    for m, tree in trees.items():
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in names | {"medrag"}:
                for a in node.names:
                    if f"{node.module}.{a.name}" in names:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                    elif a.name.startswith("_") and not a.name.startswith("__") and node.module != m:
                        found.append(f"{m} imports {node.module}.{a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in names and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            target = aliases.get(node.value.id) if isinstance(node.value, ast.Name) else None
            if target is None and isinstance(node.value, ast.Attribute):
                target = ast.unparse(node.value) if ast.unparse(node.value) in names else None
            if target and target != m:
                found.append(f"{m} reads {target}.{node.attr}")
    return sorted(set(found))


def test_the_import_graph_of_medrag_has_no_circle():
    assert cycles(graph(modules())) == []


def test_no_module_reads_another_modules_private_names():
    assert private_reads(modules()) == []


def test_the_checks_find_a_circle_and_a_private_read(tmp_path):
    (tmp_path / "a.py").write_text("from medrag.b import _helper\n")
    (tmp_path / "b.py").write_text("def f():\n    import medrag.c as c\n    return c._state\n")
    (tmp_path / "c.py").write_text("from medrag import a\n")
    trees = modules(tmp_path)
    assert cycles(graph(trees)) == [["medrag.a", "medrag.b", "medrag.c"]]
    assert private_reads(trees) == ["medrag.a imports medrag.b._helper", "medrag.b reads medrag.c._state"]
