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
    "phiray.stages.grow": "imports torch through phiray.model.growth",
    "phiray.train.loop": "imports torch; runs in the Ray Train / Tune worker processes",
    "phiray.train.tracking": "imports Ray Train and Tune (seconds) for their callbacks",
    "phiray.serve": "imports Ray Serve (and vLLM for ingress): `phiray serve` only",
}
# (importing module, imported module) -> why: real import cycles, lazy choices and registration order.
LOCAL: dict[tuple[str, str], str] = {
    ("phiray.cluster.spec", "phiray.cli"): "a cycle: the CLI's parser imports cluster.submit, which imports spec",
    ("phiray.report.render", "phiray.report.sections"): "a cycle: the sections are built from report's Section and plots",
    ("phiray.report.render", "phiray.report.tracking"): "a cycle: report_tracking builds a report Section",
    ("phiray.evals.benchmarks", "phiray.evals.evalplus"): "a cycle: evalplus builds on benchmarks' Task",
    ("phiray.teacher", "phiray.teacher.openai_teacher"): "the backend the config names, and its cycle to the package",
    ("phiray.teacher", "phiray.teacher.vllm_teacher"): "the backend the config names, and its cycle to the package",
    ("phiray.teacher", "phiray.teacher.procedural"): "the backend the config names, and its cycle to the package",
    ("phiray.teacher.worker", "phiray.teacher"): "a cycle: phiray.teacher's backends import this module",
    ("phiray.teacher.vllm_teacher", "phiray.teacher.worker"): "a cycle: worker reads ANSWER_COLUMNS from here",
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


def _heavy(module: str) -> bool:
    return any(module == h or module.startswith(h + ".") for h in HEAVY)


def test_function_local_imports_of_phiray_have_a_reason():
    unexplained = [
        f"{imp}:{line} imports {mod}"
        for imp, mod, line in local_imports()
        if not _heavy(mod) and (imp, mod) not in LOCAL
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
