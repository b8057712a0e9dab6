"""Active annotation: uncertainty x diversity picks, the rounds, and annotate.strategy=active as a stage."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from contract_checks import contract_problems

from phiray.config import ClassifyConfig, load_config
from phiray.data import active
from phiray.data.readers import doc_id, stdlib_root


def test_picks_are_uncertain_and_spread_over_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + rng.normal(0, 0.3, (30, 2)) for c in centres])
    proba = np.full(90, 0.02)
    proba[:20] = 0.5  # the most uncertain are all in cluster 0 ...
    proba[30:35] = 0.35  # ... then a few in cluster 1 and 2
    proba[60:65] = 0.3
    picks = active.pick_uncertain_diverse(x, proba, k=3, seed=0, oversample=10)
    assert len(set(picks.tolist())) == 3
    assert {int(i) // 30 for i in picks} == {0, 1, 2}  # one per cluster, not three of cluster 0
    assert active.pick_uncertain_diverse(x, proba, k=0, seed=0).size == 0
    assert np.allclose(active.uncertainty(np.array([0.0, 0.5, 1.0])), [0.0, 1.0, 0.0])


def test_rounds_spend_the_budget_once_and_skip_unanswered():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    truth = (x[:, 0] + 0.3 * x[:, 1] > 0.8).astype(int) * 5
    asked: list[int] = []

    def label(indices):
        asked.extend(int(i) for i in indices)
        return [None if i % 17 == 0 else int(truth[i]) for i in indices]  # some answers unusable

    seen_rounds = []
    labelled, scores, round_of = active.run_rounds(
        x,
        label,
        seed_size=20,
        rounds=3,
        round_size=10,
        cc=ClassifyConfig(n_estimators=20),
        seed=0,
        on_round=lambda r, picks, s: seen_rounds.append((r, len(picks))),
    )
    assert len(labelled) == len(set(labelled.tolist())) == 50 == len(asked)
    assert seen_rounds == [(0, 20), (1, 10), (2, 10), (3, 10)] and round_of.count(0) == 20
    assert sum(s is None for s in scores) == sum(i % 17 == 0 for i in labelled)
    mixed, _, mixed_rounds = active.run_rounds(
        x,
        lambda idx: [int(truth[i]) for i in idx],
        seed_size=20,
        rounds=2,
        round_size=10,
        cc=ClassifyConfig(n_estimators=20),
        seed=0,
        random_share=0.5,
    )
    assert len(set(mixed.tolist())) == 40 and mixed_rounds.count(2) == 10


def test_coverage_picks_stand_for_unlabelled_regions_first():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = np.concatenate([c + rng.normal(0, 0.3, (25, 2)) for c in centres])
    labelled = centres[:2] + 0.1  # clusters 0 and 1 already have labels
    picks = active.pick_representative(x, labelled, k=4, seed=0)
    assert sorted(int(i) // 25 for i in picks) == [0, 1, 2, 3]  # one per region ...
    assert {int(i) // 25 for i in picks[:2]} == {2, 3}  # ... the unlabelled regions first
    batch = active.pick_batch(x, np.linspace(0, 1, 100), labelled, k=6, seed=0, uncertain_share=0.5)
    assert len(set(batch.tolist())) == 6 and np.isin(np.abs(np.linspace(0, 1, 100) - 0.5).argsort()[:1], batch).all()


def test_rounds_stop_when_the_pool_runs_dry():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(34, 3))
    truth = (x[:, 0] > 0).astype(int) * 5
    seen = []
    labelled, _, round_of = active.run_rounds(
        x,
        lambda idx: [int(truth[i]) for i in idx],
        seed_size=10,
        rounds=6,
        round_size=10,
        cc=ClassifyConfig(n_estimators=10),
        seed=0,
        on_round=lambda r, picks, s: seen.append((r, len(picks))),
    )
    assert sorted(labelled.tolist()) == list(range(34))  # everything once, nothing twice
    assert seen == [(0, 10), (1, 10), (2, 10), (3, 4)] and round_of.count(3) == 4


def test_active_beats_random_on_a_boundary_problem():
    """Labels bought near the boundary teach the forest more than random ones (a smoke check of the claim;
    the measured curve is benchmarks/active_learning.py). Both start from a random seed set, so the check is
    on the rounds' picks alone: the coverage start (the default) is checked by
    test_coverage_cold_start_labels_every_region_before_the_first_forest and measured by the benchmark (on
    this uniform 2-D toy pool it gives 0.972 vs random's 0.978: its k-means seeds buy nothing there)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(1500, 2))
    y = (x[:, 0] ** 2 + x[:, 1] ** 2 < 0.5).astype(int)
    test, pool = np.arange(500), np.arange(500, 1500)
    cc = ClassifyConfig(n_estimators=50)
    aucs = {"active": [], "random": []}
    for seed in range(3):
        labelled, _, _ = active.run_rounds(
            x[pool],
            lambda idx: [int(v) for v in y[pool][idx]],
            seed_size=20,
            rounds=6,
            round_size=10,
            cc=cc.model_copy(update={"positive_min_score": 1}),
            seed=seed,
            cold_start="random",
        )
        randomly = np.random.default_rng(seed).choice(len(pool), size=len(labelled), replace=False)
        for name, idx in (("active", labelled), ("random", randomly)):
            forest = active.fit_forest(x[pool][idx], y[pool][idx], cc, seed)
            aucs[name].append(roc_auc_score(y[test], forest.predict_proba(x[test])[:, 1]))
    assert np.mean(aucs["active"]) > np.mean(aucs["random"])


@pytest.fixture()
def clean_corpus(tmp_path):
    from phiray.rundir import RunDir

    files = [
        "textwrap.py",
        "heapq.py",
        "bisect.py",
        "colorsys.py",
        "fractions.py",
        "graphlib.py",
        "shlex.py",
        "fnmatch.py",
        "sched.py",
        "reprlib.py",
        "queue.py",
        "copy.py",
        "glob.py",
        "getopt.py",
        "cmd.py",
    ]
    files += [f"encodings/cp{n}.py" for n in (437, 850, 852, 855, 857, 860, 861, 862, 863, 865, 866, 869, 1250, 1251)]
    files += [f"encodings/{n}.py" for n in ("big5", "gbk", "euc_jp", "euc_kr", "johab", "hz", "cp932", "cp949")]
    texts = [(stdlib_root() / f).read_text() for f in files]
    rd = RunDir(tmp_path / "run")
    out = rd.makedirs("decontaminate", "documents")
    pq.write_table(
        pa.table(
            {
                "id": [doc_id(t) for t in texts],
                "text": texts,
                "source": ["stdlib"] * len(texts),
                "path": files,
                "n_bytes": [len(t) for t in texts],
            }
        ),
        f"{out}/part-0.parquet",
    )
    return rd


def test_annotate_strategy_active_as_a_stage(ray_session, clean_corpus):
    from phiray.stages import annotate

    cfg = load_config(
        "tiny",
        overrides=[
            "annotate.strategy=active",
            "annotate.sample_size=20",
            "annotate.rounds=2",
            "annotate.round_size=5",
            "embed.kind=hashing",
            "classify.n_estimators=20",
            "filter.actors=1",
        ],
    )
    manifest = annotate.run(cfg, clean_corpus)
    labels = pq.read_table(clean_corpus.path("annotate", "labels")).to_pylist()
    assert len(labels) == 20 == len({r["id"] for r in labels}) == manifest.rows["labelled"]
    assert sorted(r["round"] for r in labels) == [0] * 10 + [1] * 5 + [2] * 5
    assert [r["round"] for r in manifest.metrics["rounds"]] == [0, 1, 2]
    assert manifest.metrics["strategy"] == "active" and manifest.metrics["rounds"][0]["pool"] == 37
    assert not contract_problems(clean_corpus, ["annotate"])
    with pytest.raises(Exception, match="leaves no random seed set"):
        load_config(
            "tiny",
            overrides=[
                "annotate.strategy=active",
                "annotate.sample_size=20",
                "annotate.rounds=4",
                "annotate.round_size=5",
            ],
        )


def test_active_rounds_with_the_llm_annotator_over_http(ray_session, clean_corpus, tmp_path):
    """phi-1's prompt reaches a real OpenAI-wire server each round; malformed answers are counted, not fatal."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_openai import FakeOpenAI

    from phiray.stages import annotate

    prompts: list[str] = []

    def judge(body):
        code = body["messages"][-1]["content"]
        prompts.append(code)
        if "decoding_table" in code or "getcodec" in code:
            return "Score: 1\nReason: a codec table." if "cp8" in code else "no idea"  # some unparseable
        return "**Score:** 4/5\nReason: documented, instructive code."

    with FakeOpenAI(responder=judge) as server:
        cfg = load_config(
            "tiny",
            overrides=[
                "annotate.annotator=llm",
                "classify.model=forest",
                "teacher.kind=openai",
                f"teacher.base_url={server.base_url}",
                "annotate.strategy=active",
                "annotate.sample_size=20",
                "annotate.rounds=2",
                "annotate.round_size=5",
                "embed.kind=hashing",
                "classify.n_estimators=20",
                "filter.actors=1",
                f"annotate.cache_dir={tmp_path / 'cache'}",
            ],
        )
        manifest = annotate.run(cfg, clean_corpus)
    assert len(prompts) == 20 and all(
        "educational value for a student whose goal is to learn basic coding concepts" in p for p in prompts
    )
    labels = pq.read_table(clean_corpus.path("annotate", "labels")).to_pylist()
    unparsed = manifest.rows["unparsed"]
    assert unparsed > 0 and len(labels) + unparsed == 20
    assert {r["score"] for r in labels} <= {1, 4} and all(r["annotator"] == "llm" for r in labels)
    assert sum(r["unparsed"] for r in manifest.metrics["rounds"]) == unparsed
    assert not contract_problems(clean_corpus, ["annotate"])  # the OpenAI annotator's rejected is Parquet


def test_coverage_cold_start_labels_every_region_before_the_first_forest():
    """A random seed set of 8 over 4 regions of unequal size usually misses the small ones; coverage does not."""
    rng = np.random.default_rng(5)
    sizes = [170, 10, 10, 10]
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = np.concatenate([c + rng.normal(0, 0.3, (n, 2)) for c, n in zip(centres, sizes)])
    region = np.repeat(np.arange(4), sizes)
    first = []
    active.run_rounds(
        x,
        lambda idx: [5 * int(region[i] > 0) for i in idx],
        seed_size=8,
        rounds=1,
        round_size=4,
        cc=ClassifyConfig(n_estimators=10),
        seed=0,
        cold_start="coverage",
        on_round=lambda r, picks, s: first.extend(picks.tolist()) if r == 0 else None,
    )
    assert len(first) == len(set(first)) == 8 and set(region[first].tolist()) == {0, 1, 2, 3}
    twins = np.repeat(x[:3], 4, axis=0)  # 3 distinct points: k-means cannot fill 5 groups, random tops it up
    assert len(set(active.seed_set(twins, 5, 0, np.random.default_rng(0), "coverage").tolist())) == 5
    with pytest.raises(ValueError, match="cold_start"):
        active.seed_set(x, 5, 0, np.random.default_rng(0), "nearest")
