"""The package's import layering: no import cycles, no private names across modules.

Every ``import`` and ``from ... import`` in ``bayesmix/`` counts, at module level or inside a
function (a function-level import is a dependency all the same; it only runs later). The
check reads the source with :mod:`ast`, so it imports nothing and runs in well under a second.

Imports under ``if TYPE_CHECKING:`` are type-only: they never run, so they cannot make an
import cycle, and they only name the type of an object the caller passes in (backends and
results annotate ``model: GaussianMixture``, the declaration that ``GaussianMixture.fit`` hands
them; the plot functions annotate the analysis objects whose ``.plot()`` calls them). They are
left out of the cycle check but held to the private-name rule like every other import.

Edges: ``import a.b`` and ``from a import b`` (``b`` a submodule) point to ``a.b``; an import of
a package points to its ``__init__``; ``from a.b import name`` points to ``a.b`` only (the
parent packages' ``__init__`` files that Python runs on the way are not counted: that would make
``bayesmix/__init__.py``, which re-exports the public API, a member of every cycle).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "bayesmix"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py" or (
        name not in MODULES and any(m.startswith(name + ".") for m in MODULES)
    )


def _resolve(module: str | None, level: int, importer: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` inside ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the bayesmix module depended on
    name: str | None  # the name taken from it (``from target import name``), if any
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


@dataclass(frozen=True)
class AttributeUse:
    user: str
    module: str  # the bayesmix module the attribute is read from
    attribute: str
    line: int


def _scan(name: str, path: Path) -> tuple[list[Import], list[AttributeUse]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    imports: list[Import] = []
    aliases: dict[str, str] = {}  # local name -> bayesmix module it is bound to
    nodes = list(ast.walk(tree))  # one walk: it is most of the check's time
    type_only = _type_checking_imports(nodes)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    imports.append(
                        Import(name, alias.name, None, node.lineno, id(node) in type_only)
                    )
                    if alias.asname:
                        aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node.module, node.level, name)
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES or _is_package(submodule):
                    imports.append(
                        Import(name, submodule, None, node.lineno, id(node) in type_only)
                    )
                    aliases[alias.asname or alias.name] = submodule
                else:
                    imports.append(
                        Import(name, source, alias.name, node.lineno, id(node) in type_only)
                    )
    uses: list[AttributeUse] = []
    for node in nodes:
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            dotted = _dotted(node.value, aliases)
            if dotted is not None and dotted != name:
                uses.append(AttributeUse(name, dotted, node.attr, node.lineno))
    return imports, uses


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _type_checking_imports(nodes: list[ast.AST]) -> set[int]:
    """``id()`` of the import statements inside ``if TYPE_CHECKING:`` blocks."""
    found: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                for inner in ast.walk(statement):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        found.add(id(inner))
    return found


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """The bayesmix module an expression such as ``fit`` or ``bayesmix.inference.em.fit`` names."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    if node.id in aliases:
        head = aliases[node.id]
    elif node.id == PACKAGE:
        head = PACKAGE
    else:
        return None
    dotted = ".".join([head, *reversed(parts)])
    return dotted if dotted in MODULES or _is_package(dotted) else None


def _scan_all() -> tuple[list[Import], list[AttributeUse]]:
    imports: list[Import] = []
    uses: list[AttributeUse] = []
    for name, path in MODULES.items():
        found, used = _scan(name, path)
        imports += found
        uses += used
    return imports, uses


IMPORTS, ATTRIBUTE_USES = _scan_all()


def _graph() -> dict[str, dict[str, int]]:
    """importer -> {imported module: first line}: bayesmix modules, imports that run (not
    type-only), self-edges dropped."""
    graph: dict[str, dict[str, int]] = {name: {} for name in MODULES}
    for edge in IMPORTS:
        if edge.target != edge.importer and edge.target in MODULES and not edge.type_only:
            graph[edge.importer].setdefault(edge.target, edge.line)
    return graph


def _find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None; iterative DFS with colours."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in sorted(graph):
        if root in state:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def _chain(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    steps = [cycle[0]]
    for a, b in zip(cycle, cycle[1:], strict=False):
        steps.append(f"  -> {b}  (imported in {a} line {graph[a][b]})")
    return "\n".join(steps)


def test_every_module_is_scanned():
    assert f"{PACKAGE}.model" in MODULES
    assert f"{PACKAGE}.inference.em.fit" in MODULES
    assert len(IMPORTS) > 50
    # function-level imports are seen (model.py imports the backends inside fit)
    assert any(
        i.importer == f"{PACKAGE}.model" and i.target == f"{PACKAGE}.inference.em.fit"
        for i in IMPORTS
    )
    assert any(i.type_only for i in IMPORTS)


def test_import_graph_has_no_cycles():
    graph = _graph()
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle (function-level imports count):\n" + _chain(cycle, graph)


def test_no_private_names_imported_across_modules():
    bad = [
        f"{i.importer} line {i.line}: from {i.target} import {i.name}"
        for i in IMPORTS
        if i.name is not None and i.name.startswith("_") and i.target != i.importer
    ]
    assert not bad, "private names imported from another bayesmix module:\n" + "\n".join(bad)


def test_no_private_attributes_read_across_modules():
    bad = [
        f"{u.user} line {u.line}: {u.module}.{u.attribute}"
        for u in ATTRIBUTE_USES
        if not (u.attribute.startswith("__") and u.attribute.endswith("__"))
    ]
    assert not bad, "private attributes of another bayesmix module read:\n" + "\n".join(bad)


def test_cycle_finder_reports_a_readable_chain():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {}}
    cycle = _find_cycle(graph)
    assert cycle == ["a", "b", "c", "a"]
    assert "c line 3" in _chain(cycle, graph)
    assert _find_cycle({"a": {"b": 1}, "b": {}}) is None


# -- covariance structures are defined once ------------------------------------------------

STRUCTURE_NAMES = frozenset({"full", "tied", "diag", "spherical"})
COVARIANCE_MODULE = f"{PACKAGE}.families.gaussian.covariance"
# Comparisons against a structure's name allowed outside covariance.py: module -> (count,
# why). Anything else branches on a Gaussian covariance structure by name; give the
# structure a method or attribute in covariance.py instead.
STRUCTURE_NAME_BRANCHES = {
    # Student-t's own two scale structures ("full", "diag"), not the Gaussian ones: the
    # check of the user's string, and two branches between them (another change's file)
    f"{PACKAGE}.families.student_t": (3, "Student-t's scale structures"),
}


def _names_in(node: ast.expr, constants: dict[str, frozenset[str]]) -> frozenset[str]:
    """The structure names an operand of a comparison spells: a string literal, a tuple,
    list or set of them, or a module-level name bound to one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return frozenset({node.value}) & STRUCTURE_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return frozenset().union(*(_names_in(e, constants) for e in node.elts))
    if isinstance(node, ast.Name):
        return constants.get(node.id, frozenset())
    return frozenset()


def _structure_name_branches(path: Path) -> list[int]:
    """Lines comparing something with a covariance structure's name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    constants = {
        target.id: _names_in(statement.value, {})
        for statement in tree.body
        if isinstance(statement, ast.Assign)
        for target in statement.targets
        if isinstance(target, ast.Name)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(_names_in(operand, constants) for operand in [node.left, *node.comparators])
    ]


def test_covariance_structures_are_not_branched_on_by_name():
    found = {
        name: lines
        for name, path in MODULES.items()
        if name != COVARIANCE_MODULE and (lines := _structure_name_branches(path))
    }
    unexpected = {
        name: lines
        for name, lines in found.items()
        if len(lines) != STRUCTURE_NAME_BRANCHES.get(name, (0, ""))[0]
    }
    assert not unexpected, (
        "comparisons with a covariance structure's name (give the structure a method or "
        f"attribute in {COVARIANCE_MODULE} instead): {unexpected}"
    )


def test_structure_name_check_sees_literals_tuples_and_module_constants(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        'MATRIX = ("full", "tied")\n'
        'a = kind == "tied"\n'
        'b = kind in ("diag", "spherical")\n'
        "c = kind in MATRIX\n"
        'd = mass_matrix == "low_rank"\n'
        "e = structure.shared_across_components\n",
        encoding="utf-8",
    )
    assert _structure_name_branches(source) == [2, 3, 4]
