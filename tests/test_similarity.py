"""phi-1 §5 similarity: AST match rate tau (zss tree edit distance), nearest exercises by normalised
embedding distance, the tau table and pruning, and the `similarity` stage on a run dir."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
from contract_checks import contract_problems

from phiray.config import EmbedConfig, load_config
from phiray.data import ngrams
from phiray.data.embed import make_embedder
from phiray.evals.similarity import match_rate, nearest_exercises, syntax_tree, tau_table, to_prune
from phiray.rundir import RunDir
from phiray.schemas import SYNTHESIZE_EXERCISES
from phiray.teacher.concepts import generate

ORIGINAL = "def total(items):\n    s = 0\n    for x in items:\n        s += x\n    return s\n"
RENAMED = "def add_all(values):\n    acc = 0\n    for v in values:\n        acc += v\n    return acc\n"
DIFFERENT = "def pick(d, k):\n    try:\n        return d[k]\n    except KeyError:\n        return None\n"


def _renamed_copy(task_id: str) -> str:
    """A HumanEval problem's prompt + canonical solution with its identifiers renamed: a copy by AST."""
    import ast

    tree = ast.parse(dict(ngrams.humaneval_tasks())[task_id])
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            node.id = f"v_{node.id}"
        elif isinstance(node, ast.arg):
            node.arg = f"a_{node.arg}"
        elif isinstance(node, ast.FunctionDef):
            node.name = f"f_{node.name}"
    return ast.unparse(tree)


def test_match_rate_sees_through_renaming_and_separates_different_programs():
    a, b, c = syntax_tree(ORIGINAL), syntax_tree(RENAMED), syntax_tree(DIFFERENT)
    assert match_rate(a, a) == 1.0 and match_rate(a, b) == 1.0
    assert 0.0 <= match_rate(a, c) < 0.6
    assert syntax_tree("def broken(:\n") is None


def test_nearest_exercises_finds_a_planted_copy_and_prunes_it():
    problems = [(tid, text) for tid, text in ngrams.humaneval_tasks()[:6]]
    exercises = [
        (f"ex{i}", generate(name, i)["prompt"] + generate(name, i)["solution"])
        for i, name in enumerate(["sum_evens", "acronym", "count_vowels", "gcd", "fizzbuzz"])
    ]
    exercises.append(("copy-of-2", _renamed_copy("HumanEval/2")))
    rows, counts = nearest_exercises(problems, exercises, make_embedder(EmbedConfig(kind="hashing")), top_k=6)
    by_problem = {r["problem"]: r for r in rows}
    planted = by_problem["HumanEval/2"]
    assert planted["nearest_by_tau"] == "copy-of-2" and planted["best_tau"] == 1.0
    assert all(0 <= r["embedding_distance"] <= 2 for r in rows) and counts["pairs"] > 6
    table = tau_table(rows)
    assert [t["tau"] for t in table] == [0.95, 0.9, 0.85, 0.8] and table[0]["problems"] >= 1 and table[0]["of"] == 6
    assert all(a["problems"] <= b["problems"] for a, b in zip(table, table[1:]))  # lower tau: at least as many
    assert "copy-of-2" in to_prune(rows, 0.95)
    assert all(any(r["taus"].get(e, 0) >= 0.9 for r in rows) for e in to_prune(rows, 0.9))
    # the tree edit distances on a pool of processes: the same rows and counts
    pooled = nearest_exercises(problems, exercises, make_embedder(EmbedConfig(kind="hashing")), top_k=6, workers=2)
    assert pooled == (rows, counts)


def test_similarity_stage_writes_pairs_table_and_pruned_exercises(tmp_path):
    from phiray.stages.similarity import run

    rd = RunDir(tmp_path / "run")
    rows = []
    for i, name in enumerate(["sum_evens", "acronym", "running_total"]):
        ex = generate(name, i)
        rows.append({"id": f"ex{i}", "prompt": ex["prompt"], "solution": ex["solution"]})
    rows.append({"id": "copy", "prompt": "", "solution": _renamed_copy("HumanEval/0")})
    rd.makedirs("synthesize", "exercises")
    # in synthesize's schema (the columns similarity does not read left empty), so its outputs can be checked
    full = [{c: None for c in SYNTHESIZE_EXERCISES.names} | r for r in rows]
    table = pa.Table.from_pylist(full, schema=SYNTHESIZE_EXERCISES)
    pq.write_table(table, rd.path("synthesize", "exercises", "part-0.parquet"))
    cfg = load_config(
        "tiny",
        overrides=["embed.kind=hashing", "similarity.limit=4", "similarity.top_k=4", "similarity.prune_tau=0.95"],
    )
    manifest = run(cfg, rd)
    assert manifest.rows["problems"] == 4 and manifest.rows["exercises"] == 4 and manifest.rows["pruned"] >= 1
    assert manifest.metrics["tau_table"][0]["of"] == 4 and manifest.metrics["tau_table"][0]["problems"] >= 1
    assert manifest.headline["tau>=0.95"] >= 1
    pairs = [json.loads(line) for line in rd.read_text("similarity/pairs.jsonl").splitlines()]
    assert [p["problem"] for p in pairs] == [f"HumanEval/{i}" for i in range(4)]
    kept = pq.read_table(rd.path("similarity", "exercises")).column("id").to_pylist()
    pruned = pq.read_table(rd.path("similarity", "pruned")).column("id").to_pylist()
    assert "copy" in pruned and "copy" not in kept and len(kept) + len(pruned) == 4
    assert not contract_problems(rd, ["similarity"])


def test_structural_candidates_catch_a_copy_the_embedding_ranks_low():
    """Decoys that repeat the problem's wording but not its code are nearer by embedding; the renamed,
    docstring-free copy is still compared (node-type histogram candidates) and found at tau >= 0.8."""
    import ast

    task_id, text = ngrams.humaneval_tasks()[2]
    tree = ast.parse(_renamed_copy(task_id))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node):
            node.body = node.body[1:]
    copy = ast.unparse(tree)
    prompt = text.split('"""')[0] + '"""' + text.split('"""')[1] + '"""\n'
    decoys = [(f"decoy{i}", prompt + f"    return {i}\n") for i in range(4)]
    rows, _ = nearest_exercises(
        [(task_id, text)], [*decoys, ("copy", copy)], make_embedder(EmbedConfig(kind="hashing")), top_k=1
    )
    assert rows[0]["nearest_by_embedding"].startswith("decoy")
    assert rows[0]["nearest_by_tau"] == "copy" and rows[0]["best_tau"] >= 0.8
