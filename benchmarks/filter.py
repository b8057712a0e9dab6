"""Benchmark of the filter stage's scoring pass (embed + random forest) on real stdlib documents.

Prints two ratios, each against a baseline measured in the same run, on the same documents with the
same embedder and forest:
  (a) Ray Data actor pool on 2 CPUs (2 actors x 1 torch thread) vs the best plain single-process loop
      (torch free to use both cores, batch sizes tried: 16, 32, 64; the best is kept);  goal >= 1.0
  (b) 2 single-threaded actors vs 1 single-threaded actor;                            goal >= 1.8
Both sides include loading the embedder (an actor loads it once; so does the loop).

    .venv/bin/python benchmarks/filter.py [--docs 400] [--max-length 128] [--repeats 1]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phiray.runtime import prepare_environment  # noqa: E402

prepare_environment(local=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def documents(n: int) -> list[dict]:
    from phiray.data import readers

    rows = []
    for path in sorted(readers.list_stdlib()):
        row = readers.read_text_file(path, "stdlib", 1, 200_000)
        if not row["reason"]:
            rows.append(row)
        if len(rows) == n:
            break
    return rows


def train_forest(rows: list[dict], embed_cfg) -> bytes:
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    from phiray.data.annotators import heuristic_score
    from phiray.data.embed import make_embedder

    sample = rows[:150]
    y = [int(heuristic_score(r["text"])[0] >= 4) for r in sample]
    x = make_embedder(embed_cfg).embed([r["text"] for r in sample])
    forest = RandomForestClassifier(n_estimators=100, random_state=0, class_weight="balanced").fit(x, y)
    buf = io.BytesIO()
    joblib.dump(forest, buf)
    return buf.getvalue()


def plain_loop(rows, embed_cfg, model_bytes, batch_size: int) -> float:
    from phiray.data.scorers import QualityScorer

    t0 = time.perf_counter()
    scorer = QualityScorer(embed_cfg.model_copy(update={"torch_threads": None, "batch_size": batch_size})
                           .model_dump(mode="json"), model_bytes)
    texts = [r["text"] for r in rows]
    for start in range(0, len(texts), batch_size):
        scorer.scores(texts[start:start + batch_size])
    return time.perf_counter() - t0


def ray_pool(rows, embed_cfg, model_bytes, actors: int, batch_size: int) -> float:
    import ray.data

    from phiray.config import load_config
    from phiray.stages.filter import score_dataset

    cfg = load_config("tiny", overrides=[f"filter.actors={actors}", f"filter.batch_size={batch_size}",
                                         "filter.num_cpus_per_actor=0.5"])
    cfg.embed = embed_cfg.model_copy(update={"torch_threads": 1})
    ds = ray.data.from_items(rows, override_num_blocks=max(8, len(rows) // batch_size))
    t0 = time.perf_counter()
    n = score_dataset(ds, cfg, model_bytes).materialize().count()
    assert n == len(rows)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    import ray

    from phiray.config import EmbedConfig

    embed_cfg = EmbedConfig(kind="sentence-transformers", max_length=args.max_length, batch_size=32)
    rows = documents(args.docs)
    model_bytes = train_forest(rows, embed_cfg)
    best_loop = min((plain_loop(rows, embed_cfg, model_bytes, bs), bs) for bs in (16, 32, 64) for _ in range(args.repeats))
    print(f"plain loop (torch threads={__import__('torch').get_num_threads()}): best {best_loop[0]:.2f}s at batch {best_loop[1]}")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        one = min(ray_pool(rows, embed_cfg, model_bytes, 1, 32) for _ in range(args.repeats))
        two = min(ray_pool(rows, embed_cfg, model_bytes, 2, 32) for _ in range(args.repeats))
    finally:
        ray.shutdown()
    print(f"ray data, 1 actor x 1 thread: {one:.2f}s ; 2 actors x 1 thread: {two:.2f}s  ({len(rows)} docs)")
    print(f"(a) ray 2 CPUs vs best plain loop: {best_loop[0] / two:.2f}x  (goal >= 1.0)")
    print(f"(b) 2 actors vs 1 actor: {one / two:.2f}x  (goal >= 1.8)")


if __name__ == "__main__":
    main()
