"""Label efficiency of active learning (annotate.strategy=active) vs random sampling.

A pool of real stdlib files (duplicates removed) is labelled by an offline annotator (``--oracle``: each
label is what annotate would write); a fixed seeded 30% is the test set, never offered for labelling.
For each seed, random sampling draws a random seed set and then ``round_size`` more at random per round;
active learning is ``annotate.strategy=active`` with annotate's defaults (a seed set that covers the pool,
``--cold-start``, then uncertainty + coverage rounds); with ``--cold-start random`` both start from the same
random seed set. After every round the forest (classify's settings) is refitted and its test ROC-AUC recorded.

The default is the hard case: MiniLM embeddings (4 windows of 128 tokens, as the tiny preset) of a
600-file pool, so 420 files are offerable and 260 get labelled: the pool nearly runs dry, and what is left
at the end is what uncertainty sampling alone chose not to ask about.

Prints the label-efficiency curve (mean over seeds), the claim's ratio (the labels active learning needs
to reach random sampling's final AUC, over random's final label count; goal <= 0.6) and the same ratio
per seed, each seed against its own random curve's final point and against its best point, with their mean
(a seed that never gets there counts as 1).

    .venv/bin/python benchmarks/active_learning.py [--pool 600] [--seeds 3] [--seed-size 20] \\
        [--rounds 12] [--round-size 20] [--embed minilm|hashing] [--uncertain-share 0.5] \\
        [--cold-start coverage|random] [--cache FILE.npz] [--json out.json] [--run-dir RUN]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pool_documents(n: int) -> list[str]:
    """``n`` distinct stdlib files, spread over the tree by a hash of their path (as ingest does)."""
    from phiray.data import readers

    root, seen, texts = str(readers.stdlib_root()), set(), []

    def spread(path: str) -> str:
        return hashlib.sha1(os.path.relpath(path, root).encode()).hexdigest()

    for path in sorted(readers.list_stdlib(), key=spread):
        row = readers.read_text_file(path, "stdlib", 1, 200_000)
        if row["reason"] or row["id"] in seen:
            continue
        seen.add(row["id"])
        texts.append(row["text"])
        if len(texts) == n:
            break
    return texts


def labels_to_reach(labels: list[int], aucs, target: float) -> int | None:
    """The first label count at which ``aucs`` reaches ``target``."""
    return next((n for n, a in zip(labels, aucs) if a >= target), None)


def per_seed_ratios(labels: list[int], results: dict, max_of: bool) -> list[float | None]:
    """Per seed: labels active needs to reach that seed's random final AUC (``max_of``: its best point)
    over random's final label count (None: never)."""
    ratios = []
    for act, rnd in zip(results["active"], results["random"]):
        target = max(a for _, a in rnd) if max_of else rnd[-1][1]
        n = labels_to_reach(labels, [a for _, a in act], target)
        ratios.append(None if n is None else round(n / labels[-1], 3))
    return ratios


def mean_ratio(ratios: list[float | None]) -> float | None:
    """Mean of the per-seed ratios; a seed that never gets there counts as 1 (all of random's labels) or more."""
    return round(float(np.mean([1.0 if r is None else r for r in ratios])), 3) if ratios else None


def pool_embeddings(texts: list[str], args) -> np.ndarray:
    """The pool's embeddings, from ``--cache`` when it holds these very texts with these settings."""
    from phiray.config import EmbedConfig
    from phiray.data.embed import make_embedder
    from phiray.data.readers import doc_id

    ids = np.asarray([doc_id(t) for t in texts])
    key = np.asarray(f"{args.embed}/{args.max_tokens}")
    if args.cache and Path(args.cache).exists():
        cached = np.load(args.cache)
        if "ids" in cached and str(cached["key"]) == str(key) and np.isin(ids, cached["ids"]).all():
            where = {i: n for n, i in enumerate(cached["ids"].tolist())}
            return cached["x"][[where[i] for i in ids.tolist()]]
    kind = "hashing" if args.embed == "hashing" else "sentence-transformers"
    x = make_embedder(EmbedConfig(kind=kind, max_length=128, max_tokens=args.max_tokens, device="cpu")).embed(texts)
    if args.cache:
        np.savez(args.cache, x=x, ids=ids, key=key)
    return x


def pool_embeddings_of(texts: list[str], args) -> np.ndarray:
    """Embeddings with the pool's settings, never cached (the labelled files)."""
    from phiray.config import EmbedConfig
    from phiray.data.embed import make_embedder

    kind = "hashing" if args.embed == "hashing" else "sentence-transformers"
    return make_embedder(EmbedConfig(kind=kind, max_length=128, max_tokens=args.max_tokens, device="cpu")).embed(texts)


def curve(x, y_oracle, train_idx, test_idx, args, cc, seed: int, active: bool, honest=None) -> list[tuple[int, float]]:
    """(labels, test AUC) after the seed set and after each round; with ``honest`` = (x, y) of the labelled
    set's dev split, the AUC is against those human labels instead of the oracle's on ``test_idx``."""
    from sklearn.metrics import roc_auc_score

    from phiray.data import active as al

    points = []
    x_train, scores_train = x[train_idx], y_oracle[train_idx]

    def record(labelled: list[int]) -> None:
        y = scores_train[labelled]
        if len(set(y.tolist())) < 2:
            points.append((len(labelled), 0.5))
            return
        forest = al.fit_forest(x_train[labelled], y, cc, seed)
        x_eval, y_eval = honest if honest is not None else (x[test_idx], y_oracle[test_idx])
        proba = forest.predict_proba(x_eval)[:, 1]
        points.append((len(labelled), float(roc_auc_score(y_eval, proba))))

    if active:
        so_far: list[int] = []

        def on_round(_r, picks, _scores):
            so_far.extend(int(i) for i in picks)
            record(list(so_far))

        al.run_rounds(
            x_train,
            lambda idx: [int(v) for v in scores_train[idx]],
            seed_size=args.seed_size,
            rounds=args.rounds,
            round_size=args.round_size,
            cc=cc.model_copy(update={"positive_min_score": 1}),
            seed=seed,
            random_share=args.random_share,
            uncertain_share=args.uncertain_share,
            cold_start=args.cold_start,
            on_round=on_round,
        )
    else:
        # the seed set active draws with --cold-start random (run_rounds draws it first from default_rng(seed))
        first = list(np.random.default_rng(seed).choice(len(train_idx), size=args.seed_size, replace=False))
        taken = set(first)
        rest = [i for i in np.random.default_rng(seed + 1).permutation(len(train_idx)) if i not in taken]
        order = first
        for r in range(args.rounds + 1):
            record(order + rest[: r * args.round_size])
    return points


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=600)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-size", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--round-size", type=int, default=20)
    ap.add_argument("--embed", choices=["hashing", "minilm"], default="minilm")
    ap.add_argument("--positive-min-score", type=int, default=3)
    ap.add_argument("--random-share", type=float, default=None, help="share of each active round drawn at random")
    ap.add_argument(
        "--uncertain-share",
        type=float,
        default=None,
        help="share of the rest of each active round picked by uncertainty (the rest: coverage)",
    )
    ap.add_argument(
        "--cold-start",
        choices=["random", "coverage"],
        default=None,
        help="active's seed set (default: annotate.cold_start's default); random's is always random",
    )
    ap.add_argument(
        "--eval",
        choices=["oracle", "labelled-dev", "labelled-test"],
        default="oracle",
        help="score each round's forest on the oracle's labels of a held-out 30%% of the pool, or on the human "
        "grades of one split of phiray/data/labels/code_labels.json (its files leave the pool): dev with the "
        "heuristic oracle; test with the learned one, which was fitted on dev (the honest protocol)",
    )
    ap.add_argument(
        "--oracle",
        choices=["heuristic", "learned"],
        default="heuristic",
        help="the annotator whose labels each strategy asks for (learned: the tiny preset's)",
    )
    ap.add_argument("--max-tokens", type=int, default=512, help="embed.max_tokens (windows of 128 tokens)")
    ap.add_argument("--json", default=None, help="write the curve to this file")
    ap.add_argument(
        "--cache",
        default=None,
        help="npz file keeping the pool's embeddings between runs (the labels are always the current annotator's)",
    )
    ap.add_argument(
        "--run-dir", default=None, help="also write RUN/benchmarks/active_learning.json (the report shows it)"
    )
    args = ap.parse_args()
    from phiray.config import AnnotateConfig, ClassifyConfig
    from phiray.data.annotators import heuristic_batch
    from phiray.data.learned import learned_batch

    if args.eval == "labelled-dev" and args.oracle == "learned":
        ap.error("--oracle learned was fitted on the dev split: score it on --eval labelled-test")

    for name in ("random_share", "uncertain_share", "cold_start"):  # unset: what annotate.strategy=active does
        if getattr(args, name) is None:
            setattr(args, name, AnnotateConfig.model_fields[name].default)

    t0 = time.time()
    texts = pool_documents(args.pool)
    honest = None
    if args.eval != "oracle":
        from phiray.data import code_labels

        labelled, _ = code_labels.load(args.eval.removeprefix("labelled-"))
        labelled_texts = {r["text"] for r in labelled}
        texts = [t for t in texts if t not in labelled_texts]
        honest = (pool_embeddings_of([r["text"] for r in labelled], args), np.asarray([r["high"] for r in labelled]))
    grade = learned_batch if args.oracle == "learned" else heuristic_batch
    y = np.asarray([int(g >= args.positive_min_score) for g, _ in grade(texts)], np.int64)
    x = pool_embeddings(texts, args)
    print(f"pool {len(y)} files, {y.mean():.0%} positive, embedded ({args.embed}) in {time.time() - t0:.0f} s")
    cc = ClassifyConfig(n_estimators=100)  # y is already 0/1: active rounds use positive_min_score=1
    results = {"random": [], "active": []}
    for seed in range(args.seeds):
        perm = np.random.default_rng(1000 + seed).permutation(len(y))
        test_idx, train_idx = perm[: int(0.3 * len(y))], perm[int(0.3 * len(y)) :]
        for name in results:
            results[name].append(
                curve(x, y, train_idx, test_idx, args, cc, seed, active=name == "active", honest=honest)
            )
    labels = [n for n, _ in results["random"][0]]
    mean = {k: np.mean([[a for _, a in c] for c in v], axis=0) for k, v in results.items()}
    print(f"{'labels':>7} {'random AUC':>11} {'active AUC':>11}")
    for i, n in enumerate(labels):
        print(f"{n:>7} {mean['random'][i]:>11.4f} {mean['active'][i]:>11.4f}")
    target = mean["random"][-1]
    reached = labels_to_reach(labels, mean["active"], target)
    ratio = None if reached is None else reached / labels[-1]
    final, best = per_seed_ratios(labels, results, max_of=False), per_seed_ratios(labels, results, max_of=True)
    print(
        f"random's final AUC {target:.4f} at {labels[-1]} labels; active reaches it at "
        f"{reached if reached is not None else 'never'} labels: ratio {ratio if ratio is None else round(ratio, 3)} "
        f"(goal <= 0.6); {args.seeds} seeds, {time.time() - t0:.0f} s\n"
        f"per seed, vs that seed's random final: {final} (mean {mean_ratio(final)}, "
        f"{sum(r is not None and r <= 0.6 for r in final)}/{args.seeds} <= 0.6)\n"
        f"per seed, vs that seed's random best point: {best} (mean {mean_ratio(best)})"
    )
    result = {
        "labels": labels,
        "random": mean["random"].tolist(),
        "active": mean["active"].tolist(),
        "ratio": ratio,
        "per_seed_ratio": final,
        "per_seed_ratio_vs_random_best": best,
        "args": vars(args),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.run_dir:
        from phiray.rundir import RunDir

        RunDir(args.run_dir).write_json("benchmarks/active_learning.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
