"""similarity: phi-1 §5's contamination analysis of the training exercises against HumanEval.

For each HumanEval problem (prompt + canonical solution), the nearest train exercise of
``synthesize/exercises`` by L2 distance of normalised embeddings (``embed``: the run's configured
embedder) and the best AST match rate tau among its ``similarity.top_k`` nearest
(:mod:`phiray.evals.similarity`). Writes ``similarity/pairs.jsonl`` (per problem) and, with
``similarity.prune_tau``, ``similarity/exercises`` (the train exercises less those at or above it) and
``similarity/pruned``; the manifest holds phi-1's table: problems with an exercise at tau >= 0.95 ... 0.8.
"""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq

from phiray.config import RunConfig
from phiray.data import ngrams
from phiray.data.embed import make_embedder
from phiray.evals import similarity
from phiray.rundir import Manifest, RunDir
from phiray.schemas import require

log = logging.getLogger("phiray")
EXERCISES = ("synthesize", "exercises")


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Each HumanEval problem's nearest training exercise (embedding, AST match); prunes with prune_tau."""
    sim = cfg.similarity
    if not rd.exists(*EXERCISES):
        raise FileNotFoundError("similarity: needs synthesize/exercises/ (run synthesize)")
    require(rd, *EXERCISES, columns=["id", "prompt", "solution"])
    source = rd.read_table(*EXERCISES)
    rows = source.to_pylist()
    exercises = [(r["id"], (r["prompt"] or "") + (r["solution"] or "")) for r in rows]
    problems = ngrams.humaneval_tasks()[: sim.limit]
    pairs, counts = similarity.nearest_exercises(
        problems, exercises, make_embedder(cfg.embed), sim.top_k, sim.max_nodes, sim.workers
    )
    table = similarity.tau_table(pairs, sim.thresholds)
    rd.write_text("similarity/pairs.jsonl", "".join(json.dumps(p) + "\n" for p in pairs))
    outputs = ["similarity/pairs.jsonl"]
    pruned: set[str] = set()
    if sim.prune_tau is not None:
        pruned = similarity.to_prune(pairs, sim.prune_tau)
        for name, keep in (("exercises", False), ("pruned", True)):
            part = [r for r in rows if (r["id"] in pruned) == keep]
            rd.remove("similarity", name)
            rd.makedirs("similarity", name)
            schema = source.schema if source.num_columns else None
            pq.write_table(
                pa.Table.from_pylist(part, schema=schema),
                rd.path("similarity", name, "part-0.parquet"),
                filesystem=rd.fs,
            )
            outputs.append(f"similarity/{name}")
    distances = sorted(p["embedding_distance"] for p in pairs)
    log.info("similarity: %s", ", ".join(f"tau>={t['tau']}: {t['problems']}/{t['of']}" for t in table))
    return Manifest(
        stage="similarity",
        rows={"problems": len(pairs), "exercises": len(exercises), "pruned": len(pruned), **counts},
        metrics={
            "tau_table": table,
            "embedder": cfg.embed.kind,
            "top_k": sim.top_k,
            "prune_tau": sim.prune_tau,
            "median_embedding_distance": distances[len(distances) // 2] if distances else None,
            "closest": sorted(pairs, key=lambda p: -(p["best_tau"] or 0))[:5],
        },
        headline={f"tau>={t['tau']}": t["problems"] for t in table},
        outputs=outputs,
    )
