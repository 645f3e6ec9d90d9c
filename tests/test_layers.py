"""The modules of tinyengine import one another one way (issue 11).

Every import statement of every module is read with ``ast``: at module level and inside
functions (lazy imports), relative and absolute.  ``from pkg import name`` counts as an
import of the module ``pkg.name`` where that is a module, else of ``pkg``.  A package's
own ``__init__`` running before its submodules is not counted (Python does it for any
import of a submodule; it is no dependency of the importer).
"""
from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import tinyengine

PKG = Path(tinyengine.__file__).resolve().parent
API_DOC = PKG.parent / "docs" / "API.md"


def _module_name(path: Path) -> str:
    parts = ("tinyengine",) + path.relative_to(PKG).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _imports(name: str, source: str | None = None) -> list:
    """(line, imported module, imported name or None) of every tinyengine import in a module
    (its file, or ``source`` read as that module)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source or path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tinyengine":
                    found.append((node.lineno, alias.name, None))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "tinyengine":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub, None) if sub in MODULES else
                             (node.lineno, base, alias.name))
    return found


def _target(module: str) -> str:
    """The tinyengine module an imported dotted path names (its longest known prefix)."""
    while module not in MODULES:
        module = module.rpartition(".")[0]
    return module


def import_graph() -> dict:
    return {m: sorted({_target(t) for _, t, _ in _imports(m)} - {m}) for m in MODULES}


def find_cycle(graph: dict) -> list | None:
    """One import circle (the modules in order, the first repeated at the end), or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in graph.get(m, []):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                cycle = visit(n)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def layer_table() -> list:
    """[(layer, [module patterns])], lowest first, from tinyengine/__init__.py's docstring."""
    doc = tinyengine.__doc__
    table = doc[doc.index("Layers, lowest first."):]
    rows = re.findall(r"^ {4}(\S+(?: \S+)?) {2,}(.+)$", table, flags=re.M)
    return [(layer, [p.strip() for p in patterns.split(",")]) for layer, patterns in rows]


def layer_of(module: str, table: list) -> int | None:
    short = "tinyengine" if module == "tinyengine" else module[len("tinyengine."):]
    for k, (_, patterns) in enumerate(table):
        if any(fnmatch.fnmatchcase(short, p) for p in patterns):
            return k
    return None


# -- the checks on a tiny made-up import graph: they can fail ---------------------------------
def test_find_cycle_finds_a_lazy_circle_and_passes_a_tree():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


def test_imports_are_read_inside_functions_and_resolved_relative():
    src = ("import numpy\nfrom . import __version__\n"
           "def f():\n    from . import emit\n    from .. import quant\n"
           "    from ..patching import _LITERAL\n    import tinyengine.ir\n")
    got = [(t, n) for _, t, n in _imports("tinyengine.codegen.model", src)]
    assert got == [("tinyengine.codegen", "__version__"), ("tinyengine.codegen.emit", None),
                   ("tinyengine.quant", None), ("tinyengine.patching", "_LITERAL"),
                   ("tinyengine.ir", None)]


# -- tinyengine ------------------------------------------------------------------------------
def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_module_imports_another_modules_private_names():
    bad = []
    for m in MODULES:
        for line, target, name in _imports(m):
            parts = target.split(".") + ([name] if name else [])
            if any(_private(p) for p in parts):
                bad.append(f"{MODULES[m].relative_to(PKG.parent)}:{line} imports "
                           f"{target}{'.' + name if name else ''}")
    assert not bad, "\n".join(bad)


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_layers():
    table = layer_table()
    assert len(table) >= 8, table
    graph = import_graph()
    missing = [m for m in MODULES if layer_of(m, table) is None]
    assert not missing, f"modules missing from the layer table in tinyengine/__init__.py: {missing}"
    upward = [f"{m} ({table[layer_of(m, table)][0]}) imports {t} ({table[layer_of(t, table)][0]})"
              for m, targets in graph.items() for t in targets
              if layer_of(t, table) > layer_of(m, table)]
    assert not upward, "\n".join(upward)


def api_misuse(path: Path, package: str = "") -> tuple:
    """(names the file binds to the tinyengine package, its uses of tinyengine beyond the
    public API): imports of submodules or of names not in tinyengine.__all__, and attributes
    of the package not in it.  ``package``: the file's own package, for relative imports."""
    api = set(tinyengine.__all__)
    tree = ast.parse(path.read_text(), str(path))
    aliases, bad = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "tinyengine":
                    aliases.add(a.asname or a.name)
                elif a.name.startswith("tinyengine."):
                    bad.append(f"{path.name}:{node.lineno} imports {a.name}")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            if base.split(".")[0] != "tinyengine":
                continue
            for a in node.names:
                if base != "tinyengine" or a.name not in api:
                    bad.append(f"{path.name}:{node.lineno} imports {base}.{a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and node.attr not in api:
            bad.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}, not in the API")
    return aliases, bad


def test_api_misuse_is_found(tmp_path):
    src = ("import tinyengine as te\nfrom tinyengine import compile_model\n"
           "from tinyengine.codegen import generate\nfrom tinyengine import runner\n"
           "x = te.plan_memory, te.planner\n")
    f = tmp_path / "user.py"
    f.write_text(src)
    aliases, bad = api_misuse(f)
    assert aliases == {"te"}
    assert [b.split(" ", 1)[1] for b in bad] == [
        "imports tinyengine.codegen.generate", "imports tinyengine.runner",
        "uses te.planner, not in the API"]


def test_cli_uses_only_the_public_api():
    aliases, bad = api_misuse(MODULES["tinyengine.cli"], "tinyengine")
    assert aliases, "cli.py does not import the package API"
    assert not bad, "\n".join(bad)


def test_packages_built_on_tinyengine_use_only_the_public_api():
    """tinytrain and tinynas import tinyengine's public API and nothing else."""
    files = [f for pkg in ("tinytrain", "tinynas") for f in sorted((PKG.parent / pkg).rglob("*.py"))]
    bad = [b for f in files for b in api_misuse(f)[1]]
    assert not bad, "\n".join(bad)


def test_every_public_name_exists_and_is_documented():
    doc = API_DOC.read_text()
    assert all(hasattr(tinyengine, name) for name in tinyengine.__all__)
    missing = [n for n in tinyengine.__all__ if not re.search(rf"\b{re.escape(n)}\b", doc)]
    assert not missing, f"public names not in docs/API.md: {missing}"
