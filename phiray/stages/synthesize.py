"""synthesize: textbooks and verified exercises through a teacher, on Ray Data.

plan prompt rows (seeded) -> map_batches(GenerateBatch) on an actor pool (teacher + request cache per
actor) -> map_batches(VerifyBatch) in the sandbox -> ``synthesize/_generated`` (Parquet) -> MinHash + LSH
dedup on Ray Data (phiray.data.lsh) -> each row assigned its output -> Parquet: ``synthesize/textbooks``,
``synthesize/exercises`` (train families), ``synthesize/validation`` (held-out instances of train families:
what sweeps select on), ``synthesize/heldout`` (the test split: held-out families, scored once by
``evaluate``), ``synthesize/rejected`` (with ``reason``). Before that, every kept sample is screened
(:mod:`phiray.teacher.screen`): decontaminated against HumanEval/MBPP, and no test-split solution shares
an n-gram with a textbook, a train or validation exercise, or the corpus. Samples never gather on the driver: only the plan, the
duplicate map and the manifest's counters do (phi-1 scale is ~2M samples). The request cache
(``synthesize/cache``) is kept across runs: a re-run, or a run after a kill, re-sends nothing already
answered.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from phiray import progress
from phiray.config import RunConfig
from phiray.data import docio, ngrams
from phiray.data.lsh import duplicate_map
from phiray.rundir import FsPath, Manifest, RunDir
from phiray.sandbox.placement import remote_options, wait_placeable
from phiray.schemas import SCHEMAS, write_empty
from phiray.teacher import screen
from phiray.teacher.diversity import DiversityTally
from phiray.teacher.plan import plan_rows, request_for
from phiray.teacher.screen import ScreenTally
from phiray.teacher.vllm_teacher import generate as vllm_generate
from phiray.teacher.worker import GenerateBatch, VerifyBatch, parse_answered

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger("phiray")
STAGE = "synthesize"
OUTPUTS = ("textbooks", "exercises", "validation", "heldout", "rejected")
GENERATED = "_generated"  # every answer, parsed and verified: the working set, removed once split
OUTPUT_COLUMNS = {name: tuple(SCHEMAS[(STAGE, name)].names) for name in OUTPUTS}
SPLIT_OUTPUT = {"train": "exercises", "validation": "validation", "heldout": "heldout"}


def load_snippets(rd: RunDir, limit: int = 2000) -> tuple[list[str], str]:
    """Seed snippets: filter/documents, else decontaminate/documents, else none (the source is reported).

    The ``limit`` non-empty texts with the smallest content hash, in that order: the same snippets, in
    the same order, whatever the file layout, block order or node a run reads them on (a ``limit()`` of
    the dataset takes whichever blocks come first, so a rerun would plan different prompts and miss the
    request cache). Two passes, no shuffle: each block sends the driver only its ``limit`` smallest
    hashes, which give the cut; then only the texts at or below the cut come back (the corpus never
    gathers on the driver: at most ``limit`` hashes per block, then ``limit`` snippets)."""
    for source in ("filter", "decontaminate"):
        if rd.exists(source, "documents") and rd.listdir(source, "documents"):
            ds = docio.read_docs(rd, source, "documents").select_columns(["text"])
            by_hash = {"batch_size": None, "batch_format": "pyarrow"}
            keys = ds.map_batches(_smallest_by_hash, fn_args=(limit, False), **by_hash).take_all()
            smallest = sorted(r["snippet_key"] for r in keys)[:limit]
            if smallest:
                rows = ds.map_batches(_smallest_by_hash, fn_args=(limit, True, smallest[-1]), **by_hash).take_all()
                ordered = sorted((r["snippet_key"], r["text"]) for r in rows)[:limit]
                return [text for _, text in ordered], f"{source}/documents"
    return [], "none"


def _smallest_by_hash(block: pa.Table, limit: int, with_text: bool, cut: str | None = None) -> pa.Table:
    """The block's ``limit`` non-empty texts with the smallest blake2b digests (``snippet_key``), those
    at or below ``cut`` when given; the texts too when ``with_text``."""
    import hashlib
    import heapq

    keyed = (
        (hashlib.blake2b(t.encode(), digest_size=16).hexdigest(), t) for t in block.column("text").to_pylist() if t
    )
    kept = heapq.nsmallest(limit, (kt for kt in keyed if cut is None or kt[0] <= cut))
    columns = {"snippet_key": pa.array([k for k, _ in kept], pa.string())}
    if with_text:
        columns["text"] = pa.array([t for _, t in kept], pa.string())
    return pa.table(columns)


def cache_dir(cfg: RunConfig, rd: RunDir) -> str | FsPath | None:
    """Where the generation actors keep their request cache: ``synthesize/cache`` in the run dir, on its
    file system (so every node shares it and a kill loses nothing flushed), unless configured."""
    if not cfg.teacher.cache or cfg.teacher.kind == "procedural":
        return None
    return cfg.synthesize.cache_dir or rd.fs_path(STAGE, "cache")


def generate(cfg: RunConfig, rd: RunDir, rows: list[dict[str, Any]]) -> "ray.data.Dataset":
    """Generate, parse and verify every planned row on Ray Data, streamed to ``synthesize/_generated``
    (Parquet: nothing is collected on the driver); returns that dataset."""
    import ray

    syn = cfg.synthesize
    tracker = progress.track("synthesize generation", len(rows), "prompts")
    if cfg.teacher.kind == "vllm":
        ds = tracker.count(_generate_on_vllm(cfg, rd, rows))
    else:
        remote = cfg.teacher.kind == "openai"
        batch = max(syn.batch_size, cfg.teacher.concurrency) if remote else syn.batch_size
        # A remote teacher waits on the network: several batches run at once on each actor and share its
        # client's concurrency bound, so the next batch fills the slots that the previous one's slowest
        # answers leave idle. The procedural teacher is CPU work: one batch at a time.
        calls = syn.calls_per_actor if remote else 1
        pool = ray.data.ActorPoolStrategy(
            size=syn.actors, max_concurrent_calls_per_actor=calls, enable_true_multi_threading=calls > 1
        )
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // batch, 64)))
        ds = ds.map_batches(
            tracker.wrap(GenerateBatch),
            batch_size=batch,
            batch_format="pandas",
            fn_constructor_kwargs={
                "teacher_cfg": cfg.teacher,
                "cache_dir": cache_dir(cfg, rd),
                "textbook_min_chars": syn.textbook_min_chars,
            },
            compute=pool,
            num_cpus=syn.num_cpus_per_actor,
        )
    if syn.verify:
        # Generated code runs only where sandbox.ray_resources are offered (the hardened evaluator group on
        # KubeRay); fail clearly, before any request is sent, if no node ever offers them.
        placement: dict[str, Any] = {"num_cpus": syn.num_cpus_per_actor}
        if cfg.sandbox.ray_resources:
            wait_placeable(cfg.sandbox)
            placement = remote_options(cfg.sandbox)
        ds = ds.map_batches(
            VerifyBatch,
            batch_size=max(syn.batch_size, 32),
            batch_format="pandas",
            fn_constructor_kwargs={"sandbox_cfg": cfg.sandbox},
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=verify_pool_size(cfg)),
            **placement,
        )
    rd.remove(STAGE, GENERATED)
    rd.makedirs(STAGE, GENERATED)
    with tracker:
        ds.write_parquet(rd.path(STAGE, GENERATED), filesystem=rd.fs)
    return docio.read_docs(rd, STAGE, GENERATED)


def _generate_on_vllm(cfg: RunConfig, rd: RunDir, rows: list[dict[str, Any]]) -> "ray.data.Dataset":
    """Answers from an open-weights model on Ray Data LLM (only cache misses reach the engine), parsed."""
    import ray

    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // cfg.synthesize.batch_size, 64)))
    answered = vllm_generate(cfg.teacher, ds, cache_dir(cfg, rd), request_of=request_for)
    return answered.map_batches(
        parse_answered,
        batch_format="pandas",
        num_cpus=0.25,
        fn_kwargs={"textbook_min_chars": cfg.synthesize.textbook_min_chars},
    )


def verify_pool_size(cfg: RunConfig) -> int:
    """Verification actors the cluster can hold: each runs ``sandbox.workers`` executions at once (about a
    CPU each); with ``sandbox.ray_resources`` the nodes offering them bound it too. The pool starts at
    one actor and Ray Data grows it towards this while batches queue."""
    import ray

    total = ray.cluster_resources()
    sizes = [int(total.get("CPU", 1) // max(1, cfg.sandbox.workers))]
    if cfg.sandbox.ray_resources:
        sizes.append(int(total.get("CPU", 1) // cfg.sandbox.ray_num_cpus))
        sizes += [int(total.get(name, 0) // need) for name, need in cfg.sandbox.ray_resources.items() if need > 0]
    return max(1, min(sizes))


def _eligible(verify: bool, keep_unverified: bool):
    """Rows that reach dedup: parsed ok and (textbooks, or verified exercises unless unverified are kept)."""

    def keep(table: pa.Table) -> pa.Table:
        ok = pc.equal(table["status"], "ok")
        if verify and not keep_unverified:
            ok = pc.and_(ok, pc.or_(pc.equal(table["kind"], "textbook"), pc.equal(table["verified"], True)))
        return table.filter(ok)

    return keep


def duplicates(cfg: RunConfig, generated: "ray.data.Dataset") -> dict[str, str]:
    """{key: key it duplicates} over the eligible samples, textbooks and exercises apart (MinHash + LSH
    on Ray Data, as the dedup stage; the earliest planned key of a cluster is kept)."""
    import ray

    syn = cfg.synthesize
    eligible = generated.map_batches(_eligible(syn.verify, syn.keep_unverified), batch_format="pyarrow")
    partitions = max(1, min(64, int(ray.cluster_resources().get("CPU", 1))))
    return duplicate_map(
        eligible.rename_columns({"key": "id"}),
        syn.dedup_threshold,
        syn.dedup_num_perm,
        syn.dedup_shingle_size,
        seed=cfg.run.seed,
        partitions=partitions,
        group="kind",
        local_max_rows=syn.dedup_local_max_rows,
    )


def assign(batch: pd.DataFrame, dup_of: dict[str, str], verify: bool, keep_unverified: bool) -> pd.DataFrame:
    """Each generated row's ``output`` (textbooks | exercises | validation | heldout | rejected), its ``reason``,
    ``duplicate``, ``eligible`` (it took part in dedup) and ``words`` (for the manifest)."""
    outputs, reasons, dups, eligible = [], [], [], []
    for kind, status, reason, verified, verdict, split, key in zip(
        batch["kind"],
        batch["status"],
        batch["reason"],
        batch["verified"],
        batch["verdict"],
        batch["split"],
        batch["key"],
    ):
        out, dup = ("textbooks" if kind == "textbook" else SPLIT_OUTPUT[split]), False
        eligible.append(status == "ok" and (kind == "textbook" or not verify or keep_unverified or bool(verified)))
        if status != "ok":
            out = "rejected"
        elif kind == "exercise" and verify and not verified:
            reason = f"unverified_{verdict or 'unknown'}"
            out = out if keep_unverified else "rejected"
        if out != "rejected" and key in dup_of:
            out, reason, dup = "rejected", "near_duplicate", True
        outputs.append(out)
        reasons.append(reason)
        dups.append(dup)
    batch = batch.copy()
    batch["output"], batch["reason"], batch["duplicate"], batch["eligible"] = outputs, reasons, dups, eligible
    batch["words"] = [len(str(t).split()) for t in batch["text"]]
    return batch


def screened(cfg: RunConfig, rd: RunDir, assigned: "ray.data.Dataset") -> tuple["ray.data.Dataset", dict[str, Any]]:
    """The assigned rows screened against HumanEval/MBPP and for test-split leaks (phiray.teacher.screen)."""
    n = cfg.decontaminate.ngram
    tasks, per_benchmark = ngrams.benchmark_tasks(cfg.decontaminate.benchmarks, cfg.decontaminate.mbpp_path)
    test = screen.test_index(assigned, n)
    corpus_hits, corpus = screen.corpus_overlaps(rd, test, n)
    out = assigned.map_batches(
        screen.screen,
        batch_format="pandas",
        fn_kwargs={"bench": ngrams.build_index(tasks, n), "test": test, "corpus_hits": corpus_hits, "n": n},
    ).materialize()
    return out, {"benchmark_tasks": per_benchmark, "corpus": corpus}


def write(rd: RunDir, name: str, ds: "ray.data.Dataset | None", columns: tuple[str, ...]) -> None:
    """Parquet via Ray Data; an empty table (with the schema) via pyarrow, which Ray cannot write."""
    rd.makedirs(STAGE, name)
    if ds is not None:
        ds.select_columns(list(columns)).write_parquet(rd.path(STAGE, name), filesystem=rd.fs)
        return
    write_empty(rd, STAGE, name)


class Tally:
    """The manifest's figures, accumulated batch by batch from the assigned rows (streamed, not collected)."""

    SMALL = [
        "kind",
        "output",
        "reason",
        "status",
        "verdict",
        "verified",
        "cached",
        "tokens_in",
        "tokens_out",
        "attempts",
        "topic",
        "audience",
        "style",
        "duplicate",
        "eligible",
        "words",
        "screened_as",
        "contaminated_by",
    ]

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.screen = ScreenTally()
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.verdicts: Counter[str] = Counter()
        self.words: Counter[str] = Counter()
        self.checked = self.passed = self.requests = self.cache_hits = self.retries = 0
        self.tin = self.tout = self.cached_tin = 0
        self.diversity = {"textbook": DiversityTally(), "exercise": DiversityTally()}

    def add(self, b: dict[str, Any]) -> None:
        for i in range(len(b["kind"])):
            kind, out, status = b["kind"][i], b["output"][i], b["status"][i]
            self.requests += 1
            self.counts[out] += 1
            self.words[out] += int(b["words"][i])
            if bool(b["cached"][i]):
                self.cache_hits += 1
                self.cached_tin += int(b["tokens_in"][i])
            else:
                self.tin += int(b["tokens_in"][i])
                self.tout += int(b["tokens_out"][i])
            self.retries += max(0, int(b["attempts"][i]) - 1)
            self.screen.add(b["screened_as"][i], out, b["reason"][i], b["contaminated_by"][i])
            if out == "rejected":
                self.failures[b["reason"][i]] += 1
            if kind == "exercise" and status == "ok" and b["verdict"][i]:
                self.checked += 1
                self.passed += bool(b["verified"][i])
                self.verdicts[b["verdict"][i]] += 1
            if b["eligible"][i]:
                self.diversity[kind].add(b["topic"][i], b["audience"][i], b["style"][i], bool(b["duplicate"][i]))

    def accounting(self) -> dict[str, Any]:
        cfg = self.cfg
        price = cfg.teacher.prices.get(cfg.teacher.model) if cfg.teacher.kind == "openai" else None
        cost = (self.tin * price.input_per_million + self.tout * price.output_per_million) / 1e6 if price else 0.0
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "sent": self.requests - self.cache_hits,  # requests that reached the teacher (engine or API)
            "tokens_in": self.tin,
            "tokens_out": self.tout,
            "cached_tokens_in": self.cached_tin,
            "retries": self.retries,
            "estimated_cost_usd": round(cost, 6),
            "teacher": cfg.teacher.kind,
            "model": cfg.teacher.model,
        }


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Generate, verify, dedup and screen textbooks and exercises; write them split into their outputs."""
    for name in (*OUTPUTS, GENERATED):
        rd.remove(STAGE, name)
    rows, snippets, snippet_source = plan(cfg, rd)
    tally = Tally(cfg)
    screening: dict[str, Any] = {"corpus": {"source": "none", "documents": 0, "matched": 0}}
    kept_texts: dict[str, list[str]] = {"textbook": [], "exercise": []}
    if rows:
        screening, kept_texts = produce(cfg, rd, rows, tally)
    else:
        for name in OUTPUTS:
            write(rd, name, None, OUTPUT_COLUMNS[name])
    seed_snippets = {
        "source": snippet_source,
        "available": len(snippets),
        "prompts_with_snippet": sum(1 for r in rows if r["snippet"]),
    }
    return stage_manifest(rows, tally, synthesis_metrics(cfg, rows, tally, screening, kept_texts, seed_snippets))


def plan(cfg: RunConfig, rd: RunDir) -> tuple[list[dict[str, Any]], list[str], str]:
    """The prompt rows of this run (textbooks and exercises, by split), the seed snippets and where they came from."""
    syn = cfg.synthesize
    snippets, snippet_source = load_snippets(rd) if syn.seed_snippet_chars and syn.n_textbooks else ([], "none")
    rows = plan_rows(
        syn.n_textbooks,
        syn.n_exercises,
        syn.audiences,
        syn.styles,
        cfg.run.seed,
        syn.heldout_fraction,
        snippets,
        syn.seed_snippet_chars,
        syn.validation_fraction,
    )
    log.info("synthesize: %d prompts (%s teacher), seed snippets from %s", len(rows), cfg.teacher.kind, snippet_source)
    return rows, snippets, snippet_source


def produce(
    cfg: RunConfig, rd: RunDir, rows: list[dict[str, Any]], tally: "Tally"
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Generate and verify ``rows``, mark duplicates, assign each answer its output, screen against the benchmarks
    and the corpus, write the outputs; returns the screening report and a sample of kept texts per kind."""
    syn = cfg.synthesize
    t0 = time.perf_counter()
    generated = generate(cfg, rd, rows)
    t1 = time.perf_counter()
    dup_of = duplicates(cfg, generated)
    t2 = time.perf_counter()
    assigned, screening = screened(
        cfg,
        rd,
        generated.map_batches(
            assign,
            batch_format="pandas",
            fn_kwargs={"dup_of": dup_of, "verify": syn.verify, "keep_unverified": syn.keep_unverified},
        ).materialize(),
    )
    for batch in assigned.select_columns(Tally.SMALL).iter_batches(batch_format="numpy", batch_size=4096):
        tally.add(batch)
    t3 = time.perf_counter()
    kept_texts = write_outputs(rd, assigned, tally)
    rd.remove(STAGE, GENERATED)
    log.info(
        "synthesize: generate+verify %.1f s, dedup %.1f s (%d duplicates), split %.1f s, write %.1f s",
        t1 - t0,
        t2 - t1,
        len(dup_of),
        t3 - t2,
        time.perf_counter() - t3,
    )
    return screening, kept_texts


def write_outputs(rd: RunDir, assigned: "ray.data.Dataset", tally: "Tally") -> dict[str, list[str]]:
    """Write each output's rows of ``assigned``; returns up to 5,000 kept texts per kind (for the diversity report)."""
    from ray.data.expressions import col

    for name in OUTPUTS:
        part = assigned.filter(expr=col("output") == name) if tally.counts[name] else None
        write(rd, name, part, OUTPUT_COLUMNS[name])
    kept_texts = {}
    for kind, outs in (("textbook", ["textbooks"]), ("exercise", ["exercises", "validation", "heldout"])):
        sample = assigned.filter(expr=col("output").is_in(outs)).select_columns(["text"]).limit(5000)
        kept_texts[kind] = [r["text"] for r in sample.take_all()]
    return kept_texts


def synthesis_metrics(
    cfg: RunConfig,
    rows: list[dict[str, Any]],
    tally: "Tally",
    screening: dict[str, Any],
    kept_texts: dict[str, list[str]],
    seed_snippets: dict[str, Any],
) -> dict[str, Any]:
    """The manifest's metrics: accounting, failures, diversity, verification, splits and decontamination."""
    report = {kind: tally.diversity[kind].report(kept_texts[kind]) for kind in ("textbook", "exercise")}
    return {
        **tally.accounting(),
        "failures_by_reason": dict(tally.failures),
        "diversity": report,
        "seed_snippets": seed_snippets,
        "verification": {"checked": tally.checked, "passed": tally.passed, "by_status": dict(tally.verdicts)},
        "heldout_families": sorted({r["concept"] for r in rows if r["split"] == "heldout"}),
        "splits": {
            "train": "synthesize/exercises",
            "validation": "synthesize/validation",
            "test": "synthesize/heldout",
        },
        "decontamination": {**screening, "ngram": cfg.decontaminate.ngram, "sources": tally.screen.report()},
        "tokens_by_output": {k: tally.words[k] for k in OUTPUTS if k != "rejected"},
    }


def stage_manifest(rows: list[dict[str, Any]], tally: "Tally", metrics: dict[str, Any]) -> Manifest:
    counts = {k: tally.counts[k] for k in OUTPUTS}
    return Manifest(
        stage=STAGE,
        rows={"planned": len(rows), **counts},
        metrics=metrics,
        headline={
            "textbooks": counts["textbooks"],
            "exercises": counts["exercises"],
            "validation": counts["validation"],
            "heldout": counts["heldout"],
            "rejected": counts["rejected"],
            "cache_hits": metrics["cache_hits"],
            "cost_usd": metrics["estimated_cost_usd"],
        },
        outputs=[f"{STAGE}/{name}" for name in OUTPUTS],
    )
