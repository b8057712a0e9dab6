"""Code-health rules checked over phiray/ itself (DESIGN.md "Style")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from phiray.stages import STAGES

PACKAGE = Path(__file__).resolve().parent.parent / "phiray"

# A function-local import of phiray's own code needs a reason; these are the reasons.
# Imported module (or package prefix) -> why no importer takes it at module level.
HEAVY = {
    "phiray.model.growth": "imports torch (seconds): only grow and thesis need it, when they train",
    "phiray.stages.grow": "imports torch through phiray.train.grow",
    "phiray.train.grow": "imports torch (seconds): the grow phase, for the grow stage and thesis's seeds",
    "phiray.train.loop": "imports torch; runs in the Ray Train / Tune worker processes",
    "phiray.train.tracking": "imports Ray Train and Tune (seconds) for their callbacks",
    "phiray.train.trainer": "imports Ray Train's TorchTrainer (seconds): only when a trainer is built",
    "phiray.train.rendezvous": "imports Ray Train's torch backend (seconds): only when a trainer is built",
    "phiray.serve": "imports Ray Serve (and vLLM for ingress): `phiray serve` only",
}
# (importing module, imported module) -> why: real import cycles, lazy choices and registration order.
LOCAL: dict[tuple[str, str], str] = {
    ("phiray.cluster.spec", "phiray.cli"): "a cycle: the CLI's parser imports cluster.submit, which imports spec",
    ("phiray.teacher", "phiray.teacher.openai_teacher"): "the backend the config names, and its cycle to the package",
    ("phiray.teacher", "phiray.teacher.vllm_teacher"): "the backend the config names, and its cycle to the package",
    ("phiray.teacher", "phiray.teacher.procedural"): "the backend the config names, and its cycle to the package",
    ("phiray.teacher.worker", "phiray.teacher"): "a cycle: phiray.teacher's backends import this module",
    ("phiray.teacher.concepts", "phiray.teacher.concepts"): "registration under a lock, once (threads race)",
    ("phiray.serve.deployments", "phiray.sandbox"): "only the evaluator replica runs code; the model side must not",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def local_imports() -> list[tuple[str, str, int]]:
    """(importing module, imported phiray module, line) of every import inside a function of phiray/."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                names = []
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                found += [(_module_name(path), n, node.lineno) for n in names if n.split(".")[0] == "phiray"]
    return sorted(set(found))


def _stage_loader(importer: str, module: str) -> bool:
    """The stage table imports each stage's run when it runs it (CLI start-up: see phiray/stages/__init__.py)."""
    return importer == "phiray.stages" and module.startswith("phiray.stages.")


def _heavy(module: str) -> bool:
    return any(module == h or module.startswith(h + ".") for h in HEAVY)


def test_function_local_imports_of_phiray_have_a_reason():
    unexplained = [
        f"{imp}:{line} imports {mod}"
        for imp, mod, line in local_imports()
        if not _heavy(mod) and (imp, mod) not in LOCAL and not _stage_loader(imp, mod)
    ]
    assert not unexplained, "move to module level, or add the reason to HEAVY/LOCAL:\n" + "\n".join(unexplained)


def test_the_allow_list_has_no_stale_entry():
    used = {(imp, mod) for imp, mod, _ in local_imports()}
    assert not set(LOCAL) - used, f"LOCAL entries no longer needed: {set(LOCAL) - used}"
    assert all(any(_heavy(mod) and mod.startswith(h) for _, mod in used) for h in HEAVY)


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_every_stage_run_has_a_docstring(stage):
    """Read from the source (importing every stage would import torch, Ray Train and Tune)."""
    tree = ast.parse((PACKAGE / "stages" / f"{stage}.py").read_text())
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run")
    assert ast.get_docstring(run), f"phiray.stages.{stage}.run has no docstring"


# ----------------------------------------------------------------------------- the import graph

# Cycles still in the code, each with its reason (the test fails on any other, and on a stale entry).
KNOWN_CYCLES: dict[frozenset[str], str] = {
    frozenset(
        {
            "phiray.teacher.concepts",
            "phiray.teacher.concepts.collections_",
            "phiray.teacher.concepts.numbers",
            "phiray.teacher.concepts.strings",
        }
    ): "the catalogue registers its families from __init__, which they import Rng/Spec from (being reworked)",
}
# Libraries: plain code the stages compose. None of them, nor pipeline.py, imports stages/ or cluster/ (the report,
# the CLI and cluster/ sit on top and may read the stage table).
LIBRARIES = ("data", "teacher", "model", "train", "sandbox", "evals", "tune", "serve")


def _resolve(module: str, path: Path, node: ast.ImportFrom, modules: set[str]) -> list[str]:
    base = node.module or ""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
    if base.split(".")[0] != "phiray":
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def _is_stage_loader(module: str, func: ast.AST | None) -> bool:
    """The stage table's loaders (``phiray.stages._run_<name>``) import the one stage run they return, when it runs:
    the table's one arrow down to the stage modules, kept out of the graph (a stage may read the table)."""
    return module == "phiray.stages" and isinstance(func, ast.FunctionDef) and func.name.startswith("_run_")


def import_graph() -> dict[str, set[str]]:
    """module -> the phiray modules it imports, at module level or inside a function (a lazy import is still an
    arrow: it only moves the cycle from import time to call time). ``TYPE_CHECKING`` blocks count too."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text())
        skip = {id(n) for f in ast.walk(tree) if _is_stage_loader(module, f) for n in ast.walk(f) if n is not f}
        out: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                out.update(_resolve(module, path, node, set(paths)))
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.split(".")[0] == "phiray")
        graph[module] = {m for m in out if m in paths and m != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
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
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(frozenset(component))
    return cycles


def test_import_cycles_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [frozenset({"a", "b", "c"})]


def test_phiray_has_no_import_cycle():
    cycles = import_cycles(import_graph())
    unknown = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not unknown, "import cycles (break them, or add the reason to KNOWN_CYCLES):\n" + "\n".join(
        map(str, unknown)
    )
    assert not set(KNOWN_CYCLES) - set(cycles), "KNOWN_CYCLES entries that are no longer cycles"


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_arrows_point_down_into_stages_and_cluster_never_up():
    """data/, pipeline.py and every library never import stages/ or cluster/; a stage imports libraries, not
    another stage (the table in ``phiray.stages`` is not a stage)."""
    wrong = []
    for module, imported in import_graph().items():
        for target in imported:
            up = _layer(target) in ("stages", "cluster") and (
                _layer(module) in LIBRARIES or module == "phiray.pipeline"
            )
            sideways = module.startswith("phiray.stages.") and target.startswith("phiray.stages.")
            if up or sideways:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_function_in_stages_is_over_60_lines():
    """A stage reads as its named steps (DESIGN "Style": functions under ~60 lines)."""
    long = []
    for path in sorted((PACKAGE / "stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, "split into named steps:\n" + "\n".join(long)
