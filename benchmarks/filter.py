"""Benchmark of the filter stage's scoring pass (embed + random forest) on real stdlib documents.

Steady-state throughput (documents/s once every worker is loaded and busy) is reported separately from
start-up (actor start + model load, or the loop's model load), each against a baseline measured in the
same run on the same documents with the same embedder and forest:
  (a) Ray Data actor pool on 2 CPUs (2 actors x 1 torch thread) vs the best plain single-process loop
      (torch free to use every core; batch sizes 32 and 64 tried, the best kept);   goal >= 1.0
  (b) 2 single-threaded actors vs 1 single-threaded actor;                          goal >= 1.8
The pool is fed many blocks (one per batch), as the stage's byte-sized read blocks do on a real corpus.
Each Ray batch records when and in which actor it finished; the steady window runs from the moment the
last actor delivered its first batch to the moment the first actor delivered its last one.

    .venv/bin/python benchmarks/filter.py [--docs 3000] [--max-length 128] [--chunk-chars 3000]
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


def documents(n: int, chunk_chars: int) -> list[dict]:
    """``n`` documents: consecutive ``chunk_chars`` pieces of the standard library's files, in path order."""
    from phiray.data import readers

    rows = []
    for path in sorted(readers.list_stdlib()):
        row = readers.read_text_file(path, "stdlib", 1, 2_000_000)
        for start in range(0, len(row["text"]), chunk_chars):
            rows.append({"id": f"{path}:{start}", "text": row["text"][start : start + chunk_chars]})
            if len(rows) == n:
                return rows
    return rows


def train_forest(rows: list[dict], embed_cfg) -> bytes:
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    from phiray.data.annotators import heuristic_score
    from phiray.data.embed import make_embedder

    sample = rows[:: max(1, len(rows) // 150)][:150]
    y = [int(heuristic_score(r["text"])[0] >= 4) for r in sample]
    x = make_embedder(embed_cfg).embed([r["text"] for r in sample])
    forest = RandomForestClassifier(n_estimators=100, random_state=0, class_weight="balanced").fit(x, y)
    buf = io.BytesIO()
    joblib.dump(forest, buf)
    return buf.getvalue()


def plain_loop(rows, embed_cfg, model_bytes, batch_size: int) -> dict:
    """Start-up = building the scorer; steady = every batch after the first (warm-up) one."""
    from phiray.data.scorers import QualityScorer

    t0 = time.perf_counter()
    scorer = QualityScorer(
        embed_cfg.model_copy(update={"torch_threads": None, "batch_size": batch_size}),
        model_bytes,
    )
    texts = [r["text"] for r in rows]
    startup = time.perf_counter() - t0
    scorer.scores(texts[:batch_size])
    t1 = time.perf_counter()
    for start in range(batch_size, len(texts), batch_size):
        scorer.scores(texts[start : start + batch_size])
    steady = (len(texts) - batch_size) / (time.perf_counter() - t1)
    return {"startup_s": startup, "docs_per_s": steady, "batch_size": batch_size}


class _TimedScorer:
    """The stage's scorer, plus when (wall clock) and in which process each batch finished."""

    def __init__(self, *args):
        from phiray.data.scorers import QualityScorer

        self.inner = QualityScorer(*args)

    def __call__(self, table):
        import pyarrow as pa

        out = self.inner(table)
        n = out.num_rows
        out = out.append_column("pid", pa.array([os.getpid()] * n, pa.int64()))
        return out.append_column("done_at", pa.array([time.time()] * n, pa.float64()))


def ray_pool(rows, embed_cfg, model_bytes, actors: int, batch_size: int) -> dict:
    import pyarrow as pa
    import ray
    import ray.data

    from phiray.config import load_config
    from phiray.stages.filter import score_dataset

    cfg = load_config(
        "tiny",
        overrides=[f"filter.actors={actors}", f"filter.batch_size={batch_size}", "filter.num_cpus_per_actor=0.5"],
    )
    cfg.embed = embed_cfg.model_copy(update={"torch_threads": 1})
    ds = ray.data.from_items(rows, override_num_blocks=max(8, len(rows) // batch_size))
    t0 = time.time()
    refs = score_dataset(ds, cfg, model_bytes, scorer=_TimedScorer).select_columns(["pid", "done_at"]).to_arrow_refs()
    table = pa.concat_tables(ray.get(refs))
    assert table.num_rows == len(rows)
    return _steady(table.to_pydict(), t0, actors)


def _steady(cols: dict, t0: float, actors: int) -> dict:
    batches: dict[tuple[int, float], int] = {}
    for pid, done in zip(cols["pid"], cols["done_at"]):
        batches[(pid, done)] = batches.get((pid, done), 0) + 1
    by_actor: dict[int, list[float]] = {}
    for pid, done in batches:
        by_actor.setdefault(pid, []).append(done)
    if len(by_actor) < actors:
        raise RuntimeError(f"only {len(by_actor)} of {actors} actors scored a batch: feed more blocks")
    start = max(min(ts) for ts in by_actor.values())
    end = min(max(ts) for ts in by_actor.values())
    docs = sum(n for (pid, done), n in batches.items() if start < done <= end)
    return {
        "startup_s": start - t0,
        "docs_per_s": docs / max(end - start, 1e-9),
        "window_s": end - start,
        "total_s": max(cols["done_at"]) - t0,
        "window_docs": docs,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--chunk-chars", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=32, help="documents per Ray batch")
    args = ap.parse_args()
    import ray

    from phiray.config import EmbedConfig

    embed_cfg = EmbedConfig(kind="sentence-transformers", max_length=args.max_length, batch_size=32)
    rows = documents(args.docs, args.chunk_chars)
    model_bytes = train_forest(rows, embed_cfg)
    print(f"load average {os.getloadavg()}; {len(rows)} documents of <= {args.chunk_chars} chars", flush=True)
    loops = [plain_loop(rows, embed_cfg, model_bytes, bs) for bs in (32, 64)]
    best = max(loops, key=lambda r: r["docs_per_s"])
    threads = __import__("torch").get_num_threads()
    for r in loops:
        print(
            f"plain loop (torch threads={threads}, batch {r['batch_size']}): start-up {r['startup_s']:.1f} s, "
            f"steady {r['docs_per_s']:.1f} docs/s",
            flush=True,
        )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        one = ray_pool(rows, embed_cfg, model_bytes, 1, args.batch_size)
        two = ray_pool(rows, embed_cfg, model_bytes, 2, args.batch_size)
    finally:
        ray.shutdown()
    for name, r in (("1 actor x 1 thread", one), ("2 actors x 1 thread", two)):
        print(
            f"ray data, {name}: start-up {r['startup_s']:.1f} s, steady {r['docs_per_s']:.1f} docs/s "
            f"({r['window_docs']} docs in a {r['window_s']:.1f} s window; {r['total_s']:.1f} s in all)"
        )
    print(
        f"(a) ray 2 CPUs vs best plain loop, steady state: {two['docs_per_s'] / best['docs_per_s']:.2f}x  (goal >= 1.0)"
    )
    print(f"(b) 2 actors vs 1 actor, steady state: {two['docs_per_s'] / one['docs_per_s']:.2f}x  (goal >= 1.8)")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
