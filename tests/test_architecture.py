"""The import graph of ``skoots_client`` and ``skoots_export`` points down only.

Read from the source with ``ast`` (nothing is imported): every ``import`` counts, at module level
and inside functions alike, since a function-level import is a dependency that only shows up
late. Checked: no cycles; nothing under ``client/blockwise/`` imports ``client/run.py``; the
client takes from the export package only its contract (``skoots_export.contract``), and the
contract takes nothing from the rest of either package; no module is over ~400 lines unless its
docstring says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"skoots_client": ROOT / "client", "skoots_export": ROOT / "export"}
MAX_LINES = 400
# A module over MAX_LINES says why it is not split in a docstring line starting with this.
REASON = "Not split:"


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of both packages."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name a ``from ... import`` names, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _targets(name: str, imported: list[str]) -> set[str]:
    """Our modules that ``from name import a, b`` loads: ``name`` and its ancestor packages, and
    each imported name that is itself a module (``from . import postprocess``)."""
    targets = {name.rsplit(".", i)[0] for i in range(name.count(".") + 1)}
    targets |= {f"{name}.{item}" for item in imported}
    return {t for t in targets if t in MODULES}


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    edges |= _targets(alias.name, [])
            elif isinstance(node, ast.ImportFrom):
                edges |= _targets(_resolve(module, path, node), [a.name for a in node.names])
        own_packages = {module.rsplit(".", i)[0] for i in range(module.count(".") + 1)}
        graph[module] = edges - own_packages - {module}
    return graph


GRAPH = _edges()


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    assert "skoots_client.errors" in GRAPH["skoots_client.cli"]  # module level, relative
    assert "skoots_client.api" in GRAPH["skoots_client.cli"]  # inside segment_command
    assert "skoots_client.run" in GRAPH["skoots_client.api"]  # inside segment
    assert "skoots_client.postprocess" in GRAPH["skoots_client.blockwise.sparse"]  # from .. import postprocess


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_blockwise_does_not_import_the_run_module() -> None:
    offenders = [m for m in GRAPH if m.startswith("skoots_client.blockwise") and "skoots_client.run" in GRAPH[m]]
    assert not offenders


def test_the_client_takes_only_the_contract_from_export() -> None:
    contract = "skoots_export.contract"
    edges = {
        (m, t) for m in GRAPH if m.startswith("skoots_client") for t in GRAPH[m]
        if t.startswith("skoots_export") and t != "skoots_export" and not (t == contract or t.startswith(contract + "."))
    }
    assert not edges


def test_the_contract_stands_on_nothing_of_ours() -> None:
    contract = [m for m in GRAPH if m.startswith("skoots_export.contract")]
    assert contract
    outside = {(m, t) for m in contract for t in GRAPH[m] if not t.startswith("skoots_export.contract")}
    assert not outside


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_long_module_says_why_it_is_not_split(module: str) -> None:
    path = MODULES[module]
    lines = len(path.read_text().splitlines())
    if lines <= MAX_LINES:
        return
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert REASON in docstring, f"{path.relative_to(ROOT)} has {lines} lines: split it, or say '{REASON} ...' in its docstring"


def _private_imports() -> set[tuple[str, str]]:
    """``from <one of our modules> import _name`` in another module: a private name crossing over."""
    found = set()
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                target = _resolve(module, path, node)
                if target.split(".")[0] in PACKAGES and target != module:
                    found |= {(module, f"{target}.{a.name}") for a in node.names if a.name.startswith("_") and not a.name.startswith("__")}
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    assert not _private_imports()


def test_the_command_line_and_the_plugin_stand_on_the_public_api() -> None:
    """The CLI's ``segment`` and the napari widget reach the engines only through
    ``skoots_client.segment``: no second path."""
    engine_side = {"skoots_client.run", "skoots_client.plan", "skoots_client.engines", "skoots_client.in_memory"}
    front = [m for m in GRAPH if m == "skoots_client.cli" or m.startswith("skoots_client.napari_plugin")]
    assert front
    assert not {(m, t) for m in front for t in GRAPH[m] if t in engine_side or t.startswith("skoots_client.blockwise")}


def test_the_engines_sit_below_the_plan_and_the_runner() -> None:
    """The plan and the engines are used only from above: neither engine's machinery imports them."""
    below = [m for m in GRAPH if m.startswith("skoots_client.blockwise") or m == "skoots_client.in_memory"]
    assert not {(m, t) for m in below for t in GRAPH[m] if t in {"skoots_client.plan", "skoots_client.engines", "skoots_client.run"}}


def test_one_result_type() -> None:
    """Both engines return :class:`RunStats`; the engine-specific result types are gone."""
    classes = {n.name for path in MODULES.values() for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)}
    assert "RunStats" in classes and not classes & {"SegmentResult", "BlockwiseResult"}


MAX_PARAMETERS = 12
# The front door takes every option as a keyword of its own: the CLI's command and the API's call.
MANY_PARAMETERS_ALLOWED = {"skoots_client.cli", "skoots_client.api"}


def _parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Every parameter a caller can pass (``self`` and ``cls`` not counted)."""
    a = node.args
    names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
    own = 1 if names and names[0].arg in ("self", "cls") else 0
    return len(names) - own + (a.vararg is not None) + (a.kwarg is not None)


def _long_signatures() -> set[tuple[str, str]]:
    found = set()
    for module, path in MODULES.items():
        if not module.startswith("skoots_client") or module in MANY_PARAMETERS_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _parameter_count(node) > MAX_PARAMETERS:
                found.add((module, node.name))
    return found


def test_the_parameter_counter_counts_what_a_caller_passes() -> None:
    counted = ast.parse("def f(self, a, /, b, *c, d, e=1, **f): ...").body[0]
    assert isinstance(counted, ast.FunctionDef) and _parameter_count(counted) == 6


def test_no_function_outside_the_front_door_takes_more_than_a_dozen_parameters() -> None:
    """A function past ~12 parameters is taking a run apart: pass the plan, the job or a spec instead."""
    assert not _long_signatures(), sorted(_long_signatures())


def test_no_module_above_the_engines_imports_from_them() -> None:
    """The plan hands over data only: the plan and the specs take nothing from the in-memory
    engine or the blockwise package; what they share with the engines (the skip rule, the memory
    estimate, opening endpoints) sits below them. Only the runner picks an engine."""
    engines = {"skoots_client.in_memory", "skoots_client.engines"}
    above = ["skoots_client.plan", "skoots_client.specs", "skoots_client.skip", "skoots_client.memory", "skoots_client.endpoints"]
    assert all(m in GRAPH for m in above)
    assert not {(m, t) for m in above for t in GRAPH[m] if t in engines or t.startswith("skoots_client.blockwise")}


def test_the_engines_sit_below_the_plan_module_but_above_the_specs() -> None:
    """The blockwise job is built from the plan's data (client/specs.py), never from prepare's module."""
    assert "skoots_client.specs" in GRAPH["skoots_client.blockwise.job"]
    assert "skoots_client.plan" not in GRAPH["skoots_client.blockwise.job"]


def _all_of(tree: ast.Module) -> list[str] | None:
    """The names a module's literal ``__all__`` lists, or None when it has none."""
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "__all__" and isinstance(node, (ast.Assign, ast.AnnAssign)):
            assert isinstance(node.value, (ast.List, ast.Tuple)), "__all__ must be a literal list"
            return [ast.literal_eval(e) for e in node.value.elts]
    return None


def _defined(tree: ast.Module) -> set[str]:
    """Top-level names a module defines itself: functions, classes, assignments (not imports)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            names.add(node.target.id)
    return names


def _bound(tree: ast.Module) -> set[str]:
    """Top-level names a module binds: its own definitions and what it imports."""
    imported = {(a.asname or a.name).split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                for a in node.names}
    return _defined(tree) | imported


TREES = {module: ast.parse(path.read_text()) for module, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_says_what_it_offers(module: str) -> None:
    """``__all__`` is each module's public surface: every public definition listed, every listed name bound."""
    tree = TREES[module]
    listed = _all_of(tree)
    assert listed is not None, f"{MODULES[module].relative_to(ROOT)} has no __all__"
    assert not set(listed) - _bound(tree), f"__all__ lists names {module} does not bind"
    assert not {n for n in _defined(tree) if not n.startswith("_")} - set(listed), f"public names of {module} missing from __all__ (or make them _private)"


def test_modules_import_only_what_another_module_offers() -> None:
    """``from skoots_client.x import y`` takes ``y`` from ``x.__all__`` (or a submodule): not a name
    ``x`` merely imported, nor one it keeps to itself."""
    outside = set()
    for module, path in MODULES.items():
        for node in ast.walk(TREES[module]):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                target = _resolve(module, path, node)
                if target in TREES and target != module:
                    offered = set(_all_of(TREES[target]) or ())
                    outside |= {(module, f"{target}.{a.name}") for a in node.names
                                if a.name not in offered and f"{target}.{a.name}" not in MODULES}
    assert not outside, sorted(outside)
