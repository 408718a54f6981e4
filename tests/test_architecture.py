"""The package's shape: one-way flow between stage folders, no import cycle, privates stay private.

Read from the source with ``ast`` (nothing is imported), so a violation names its file and line.
Imports under ``if TYPE_CHECKING:`` are annotations only and do not count as edges.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "evalkit"

# Stages in data-flow order: a module may import from its own stage or an earlier one, never a later one.
# ``run`` composes every stage before it (it writes the report at the end of a run); ``cli`` sits on top.
STAGES = (
    ("evalkit", "errors", "types", "package_data"),
    ("scoring", "failures"),
    ("config",),
    ("tasks",),
    ("prompt",),
    ("models",),
    ("attention",),
    ("store",),
    ("report.data",),
    ("report.analysis",),
    ("report.charts",),
    ("report.document",),
    ("report",),
    ("export",),
    ("run",),
    ("search",),
    ("cli", "__main__"),
)
# Modules that import lazily on purpose: the entry points keep ``import evalkit`` and ``--help`` fast.
LAZY_ENTRY_POINTS = frozenset({"evalkit", "evalkit.cli"})
# Libraries that may be imported inside a function: heavy or optional ones.
HEAVY_LIBRARIES = frozenset({
    "torch", "transformers", "accelerate", "pandas", "numpy", "matplotlib", "seaborn", "datasets", "scipy",
    "statsmodels", "pyarrow", "gguf", "safetensors", "huggingface_hub", "importlib", "statistics", "bm25s",
    "inspect_ai",
})


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the package (or a third-party module)."""

    module: str  # the importing module
    target: str  # the module imported from (resolved, dotted)
    names: tuple[str, ...]  # names taken from it ("" for ``import x``)
    line: int
    in_function: bool


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for child in ast.walk(node)}
    return skipped


def _function_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside |= {id(child) for child in ast.walk(node) if child is not node}
    return inside


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def package_imports() -> list[Import]:
    """Every runtime import statement of every module of the package."""
    found = []
    for module, path in module_names().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped, inside = _type_checking_nodes(tree), _function_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, path.name == "__init__.py", node)
                found.append(Import(module, target, tuple(a.name for a in node.names), node.lineno, id(node) in inside))
            elif isinstance(node, ast.Import):
                found += [Import(module, a.name, ("",), node.lineno, id(node) in inside) for a in node.names]
    return found


def internal_edges(imports: list[Import]) -> dict[str, set[str]]:
    """module -> the package modules it imports (``from pkg import submodule`` counts as the submodule)."""
    modules = module_names()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        for name in imp.names:
            full = f"{imp.target}.{name}" if name else imp.target
            if full in modules:
                edges[imp.module].add(full)
            if imp.target in modules and (full not in modules or name):
                # ``from pkg import x`` runs pkg/__init__.py first, even when x is a submodule
                edges[imp.module].add(imp.target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def stage_of(module: str) -> int:
    """Index in STAGES of the most specific stage holding ``module``."""
    rest = module.removeprefix("evalkit.") if module != "evalkit" else "evalkit"
    best, best_len = None, -1
    for i, names in enumerate(STAGES):
        for name in names:
            if (rest == name or rest.startswith(name + ".")) and len(name) > best_len:
                best, best_len = i, len(name)
    assert best is not None, f"{module} belongs to no stage of STAGES: add it there"
    return best


def test_importing_a_submodule_from_its_package_counts_as_importing_the_package():
    imports = [Import("evalkit.models.hf", "evalkit.models", ("builtin",), 1, False)]
    assert internal_edges(imports)["evalkit.models.hf"] == {"evalkit.models", "evalkit.models.builtin"}


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(internal_edges(package_imports())) == []


def test_no_private_name_is_imported_across_modules():
    modules = module_names()
    offenders = [
        f"{imp.module}:{imp.line} imports {name} from {imp.target}"
        for imp in package_imports() if imp.target in modules
        for name in imp.names if name.startswith("_") and not name.startswith("__")
    ]
    assert offenders == []


def test_imports_follow_the_data_flow():
    """No stage imports a later one (e.g. store reading through report, config importing prompt)."""
    edges = internal_edges(package_imports())
    backwards = [f"{a} -> {b}" for a, targets in sorted(edges.items()) for b in sorted(targets)
                 if stage_of(b) > stage_of(a)]
    assert backwards == []


def test_imports_inside_functions_are_only_for_heavy_libraries():
    offenders = [
        f"{imp.module}:{imp.line} imports {imp.target} inside a function"
        for imp in package_imports()
        if imp.in_function and imp.module not in LAZY_ENTRY_POINTS
        and imp.target.split(".")[0] not in HEAVY_LIBRARIES
    ]
    assert offenders == []


@pytest.mark.parametrize("module", sorted(module_names()))
def test_every_module_imports(module):
    import importlib

    if module.endswith("__main__"):
        pytest.skip("runs the CLI on import")
    importlib.import_module(module)
