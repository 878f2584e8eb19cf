"""The import graph of the package: layers, one-way imports, no circles (docs/architecture.md).

Every module's imports (top level and inside functions) are read with ``ast``; nothing is
imported. Layers, lowest first::

    base < blocks < data < inference < training < eval, export < entry points

An import may go to the same layer or a lower one. Besides: mining and data never import each
other, eval and export never import each other, and no module imports itself through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "facerec"

#: The modules at the package root, and their layer: what every layer imports (base) and the
#: entry points. Nothing else lives at the root (test_the_folders_are_the_layers).
ROOT_MODULES: dict[str, str] = {
    "facerec": "base",
    "facerec.errors": "base",
    "facerec.io": "base",
    "facerec.cli": "entry",
    "facerec.__main__": "entry",
    "facerec.visualize": "entry",
    "facerec.recipes": "entry",
}
#: Every package folder and its one layer: the folder names are the layers.
PACKAGES: dict[str, str] = {
    "facerec.base": "base",
    "facerec.models": "blocks",
    "facerec.heads": "blocks",
    "facerec.losses": "blocks",
    "facerec.mining": "blocks",
    "facerec.metrics": "blocks",
    "facerec.data": "data",
    "facerec.align": "data",
    "facerec.inference": "inference",
    "facerec.training": "training",
    "facerec.eval": "eval",
    "facerec.export": "export",
}
#: (module or package prefix, layer); the longest matching prefix wins.
LAYERS: dict[str, str] = {**ROOT_MODULES, **PACKAGES}
RANK = {"base": 0, "blocks": 1, "data": 2, "inference": 3, "training": 4, "eval": 5, "export": 5}
RANK["entry"] = 6
#: pairs of top-level subpackages that must not import each other (either way)
APART = [("facerec.mining", "facerec.data"), ("facerec.eval", "facerec.export")]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The facerec modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m == "facerec" or m.startswith("facerec.")}


def layer_of(name: str) -> str | None:
    """The layer of the longest LAYERS prefix of ``name`` ("facerec" alone names the package's
    ``__init__`` only, so a new top-level module needs its own entry)."""
    if name == "facerec":
        return LAYERS[name]
    found = [p for p in LAYERS if p != "facerec" and (name == p or name.startswith(p + "."))]
    return LAYERS[max(found, key=len)] if found else None


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {n: imports_of(n, p, known) - {n} for n, p in mods.items()}


def test_every_module_has_a_layer() -> None:
    missing = [n for n in modules() if layer_of(n) is None]
    assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_imports_only_go_down_or_sideways() -> None:
    bad = []
    for name, deps in graph().items():
        mine = layer_of(name)
        for d in sorted(deps):
            theirs = layer_of(d)
            if mine and theirs and RANK[theirs] > RANK[mine]:
                bad.append(f"{name} ({mine}) imports {d} ({theirs})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_separate_packages_do_not_import_each_other() -> None:
    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])

    bad = [
        f"{name} imports {d}"
        for name, deps in graph().items()
        for d in sorted(deps)
        for a, b in APART
        if {top(name), top(d)} == {a, b}
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []
    cycles: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(g.get(n, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join([*stack[stack.index(d) :], d]))
            elif d in g and d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    src = "from .sub import x\nfrom . import other\n\ndef f():\n    from facerec.io import io\n"
    p = tmp_path / "mod.py"
    p.write_text(src)
    known = {"facerec.pkg.sub", "facerec.pkg.other", "facerec.io"}
    got = imports_of("facerec.pkg.mod", p, known)
    assert got == {"facerec.pkg.sub", "facerec.pkg.other", "facerec.io"}
    assert layer_of("facerec.align.cli") == "data"  # a folder is one layer
    assert layer_of("facerec.align.transform") == "data"
    assert layer_of("facerec.brand_new") is None  # a new top-level module must be placed


def test_the_folders_are_the_layers() -> None:
    """Each package folder is one layer (no module of a folder is given another), and the root
    holds only the base modules every layer imports and the entry points: no training code."""
    root = {module_name(p) for p in PACKAGE.glob("*.py")}
    assert root == set(ROOT_MODULES), (
        f"modules at the package root other than {sorted(ROOT_MODULES)}: "
        f"{sorted(root - set(ROOT_MODULES))}; put them in the folder of their layer"
    )
    folders = {
        module_name(p.parent)
        for p in PACKAGE.rglob("__init__.py")
        if p.parent.parent == PACKAGE  # top-level folders; sub-folders share their layer
    }
    assert folders == set(PACKAGES), f"folders without a layer: {sorted(folders - set(PACKAGES))}"
    for name in modules():
        top = ".".join(name.split(".")[:2])
        if name not in ROOT_MODULES:
            assert layer_of(name) == PACKAGES[top], f"{name} is not in its folder's layer"
    assert all(v in ("base", "entry") for v in ROOT_MODULES.values())


#: The most lines the package's .py files may hold together. Issue 23 set the package's size
#: as a budget (18,456 lines when it was filed; `python tools/package_lines.py` counts what is
#: not issue 24's against it); this number only goes down: lower it when the package shrinks,
#: and pay for new code by removing as much elsewhere.
LINE_BUDGET = 20_659


def test_the_package_does_not_grow() -> None:
    lines = sum(len(p.read_bytes().splitlines()) for p in PACKAGE.rglob("*.py"))
    assert lines <= LINE_BUDGET, (
        f"facerec/ holds {lines} lines of Python, over its budget of {LINE_BUDGET}: remove as "
        "much as you add (tests/test_architecture.py LINE_BUDGET)"
    )
