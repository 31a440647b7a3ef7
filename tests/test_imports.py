"""The package's layering, read from its source: imports run downward, there is no import circle, and the
only imports inside functions are the two kinds kept for start-up time."""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "kdrepro"

# lowest first; a module may import its own layer's modules and the layers below
LAYERS = [
    ("kdrepro", "kdrepro.io", "kdrepro.paths", "kdrepro.kernels", "kdrepro.provenance", "kdrepro.typecheck", "kdrepro.catalog",
     "kdrepro.errors", "kdrepro.pool"),
    ("kdrepro.models", "kdrepro.data"),
    ("kdrepro.losses",),
    # what to run, checked against the registries below: a run spec, and a setting (its cross-field checks
    # read the datasets' sizes and the model families, and its external teachers' files)
    ("kdrepro.graph", "kdrepro.config", "kdrepro.catalog_build", "kdrepro.search_space", "kdrepro.teachers"),
    ("kdrepro.engine", "kdrepro.search", "kdrepro.cluster", "kdrepro.bench"),
    ("kdrepro.experiments", "kdrepro.summary"),
    ("kdrepro.report",),
    ("kdrepro.papers",),
    ("kdrepro.assemble",),
    ("kdrepro.cli",),
    ("kdrepro.pool_server",),  # the warm trainer runs the command line in its children
]
# Modules that import parts of the package inside functions, on purpose: each CLI command loads only what it
# uses; FitNets' Table 5 builds and times networks when it renders, and the registry checks an external
# teacher's file by building its network, which listing runs, rendering any other target or building the
# registry of a setting without external teachers must not pay for (torch).
LAZY = {"kdrepro.cli", "kdrepro.papers.fitnets", "kdrepro.papers.fitnets_runs", "kdrepro.experiments"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, list[tuple[str, bool]]]:
    """module -> [(imported kdrepro module, inside a function)]"""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        nested = {id(node) for func in ast.walk(tree) if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for node in ast.walk(func)}
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kdrepro"):
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("kdrepro")]
            else:
                continue
            modules = {n for n in names if (PACKAGE.parent / n.replace(".", "/")).with_suffix(".py").exists()
                       or (PACKAGE.parent / n.replace(".", "/") / "__init__.py").exists()}
            found += [(m, id(node) in nested) for m in modules]
        out[module_name(path)] = found
    return out


def layer(module: str) -> int:
    best = max((prefix for group in LAYERS for prefix in group if module == prefix or module.startswith(prefix + ".")), key=len)
    return next(i for i, group in enumerate(LAYERS) if best in group)


def test_every_module_has_a_layer_and_imports_only_downward():
    upward = [f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
              for m, found in imports().items() for t, _ in found if layer(t) > layer(m)]
    assert not upward, "\n".join(upward)


def test_there_is_no_import_circle():
    graph = {m: {t for t, _ in found if t != m} for m, found in imports().items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == 2:
            return
        assert state.get(module) != 1, "import circle: " + " -> ".join(path[path.index(module):] + [module])
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            visit(target, path + [module])
        state[module] = 2

    for module in sorted(graph):
        visit(module, [])


def test_imports_inside_functions_are_only_the_start_up_ones():
    lazy = {m for m, found in imports().items() for _, nested in found if nested}
    assert lazy <= LAZY, f"imports inside functions in {sorted(lazy - LAZY)}"
