"""phi-1 §5 similarity cost: the embedding prefilter (AST match rate on each HumanEval problem's top-k
nearest exercises) vs tree edit distance on every (problem, exercise) pair, on the same data in one run.

    .venv/bin/python benchmarks/similarity.py [--problems 20] [--per-family 2] [--top-k 2] [--embed hashing]

Prints both times, the ratio (prefilter / all pairs), and whether the prefilter found the same best tau
(it can miss a structurally close exercise whose embedding is far: the price of the speed-up).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from phiray.config import EmbedConfig  # noqa: E402
from phiray.data import ngrams  # noqa: E402
from phiray.data.embed import make_embedder  # noqa: E402
from phiray.evals.similarity import nearest_exercises  # noqa: E402
from phiray.teacher.concepts import all_concepts, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--per-family", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--embed", default="hashing", help="embed.kind (sentence-transformers: the tiny preset's)")
    args = parser.parse_args()
    problems = ngrams.humaneval_tasks()[: args.problems]
    exercises = []
    for family in sorted(all_concepts()):
        for seed in range(args.per_family):
            ex = generate(family, seed)
            exercises.append((f"{family}-{seed}", ex["prompt"] + ex["solution"]))
    embedder = make_embedder(EmbedConfig(kind=args.embed, max_length=128))
    timings, best = {}, {}
    for name, k in (("prefilter", args.top_k), ("all pairs", len(exercises))):
        t0 = time.perf_counter()
        rows, counts = nearest_exercises(problems, exercises, embedder, top_k=k)
        timings[name] = time.perf_counter() - t0
        best[name] = [r["best_tau"] for r in rows]
        print(f"{name}: {timings[name]:.1f} s, {counts['pairs']} tree edit distances", flush=True)
    same = sum(a == b for a, b in zip(best["prefilter"], best["all pairs"]))
    print(
        f"ratio prefilter / all pairs = {timings['prefilter'] / timings['all pairs']:.3f}; "
        f"same best tau for {same}/{len(problems)} problems"
    )


if __name__ == "__main__":
    main()
