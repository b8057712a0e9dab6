"""synthesize: textbooks and verified exercises through a teacher, on Ray Data.

plan prompt rows (seeded) -> map_batches(GenerateBatch) on an actor pool (teacher + request cache per
actor) -> map_batches(VerifyBatch) in the sandbox -> MinHash dedup + diversity report -> Parquet:
``synthesize/textbooks``, ``synthesize/exercises`` (train families), ``synthesize/heldout`` (held-out
families), ``synthesize/rejected`` (with ``reason``). The request cache (``synthesize/cache``) is kept
across runs: a re-run, or a run after a kill, re-sends nothing already answered.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from phiray.config import RunConfig
from phiray.rundir import Manifest, RunDir

log = logging.getLogger("phiray")
STAGE = "synthesize"
OUTPUTS = ("textbooks", "exercises", "heldout", "rejected")
TEXTBOOK_COLUMNS = ("id", "kind", "topic", "subtopic", "audience", "style", "seed", "text")
EXERCISE_COLUMNS = ("id", "kind", "topic", "concept", "audience", "style", "seed", "difficulty", "prompt",
                    "solution", "tests", "entry_point", "signature", "docstring", "text", "verified")
REJECTED_COLUMNS = ("key", "kind", "topic", "concept", "audience", "style", "seed", "reason", "raw", "text")


def load_snippets(rd: RunDir, limit: int = 2000) -> tuple[list[str], str]:
    """Seed snippets: filter/documents, else decontaminate/documents, else none (the source is reported)."""
    import ray

    for source in ("filter", "decontaminate"):
        if rd.exists(source, "documents") and rd.listdir(source, "documents"):
            ds = ray.data.read_parquet(rd.path(source, "documents"), filesystem=rd.fs).select_columns(["text"])
            texts = [r["text"] for r in ds.limit(limit).take_all() if r["text"]]
            if texts:
                return texts, f"{source}/documents"
    return [], "none"


def cache_dir(cfg: RunConfig, rd: RunDir) -> str | None:
    if not cfg.teacher.cache or cfg.teacher.kind != "openai":
        return None
    if cfg.synthesize.cache_dir:
        return cfg.synthesize.cache_dir
    if rd.is_local:
        return rd.makedirs(STAGE, "cache")
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "phiray" / "teacher")


def generate(cfg: RunConfig, rd: RunDir, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Generate, parse and verify every planned row on Ray Data; returns the rows, in plan order."""
    import ray

    from phiray.teacher.worker import GenerateBatch, VerifyBatch

    syn, remote = cfg.synthesize, cfg.teacher.kind == "openai"
    batch = max(syn.batch_size, cfg.teacher.concurrency) if remote else syn.batch_size
    # A remote teacher waits on the network: several batches run at once on each actor and share its
    # client's concurrency bound, so the next batch fills the slots that the previous one's slowest answers
    # leave idle. The procedural teacher is CPU work: one batch at a time.
    calls = syn.calls_per_actor if remote else 1
    pool = ray.data.ActorPoolStrategy(size=syn.actors, max_concurrent_calls_per_actor=calls,
                                      enable_true_multi_threading=calls > 1)
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // batch, 64)))
    ds = ds.map_batches(GenerateBatch, batch_size=batch, batch_format="pandas",
                        fn_constructor_kwargs={"teacher_cfg": cfg.teacher.model_dump(mode="json"),
                                               "cache_dir": cache_dir(cfg, rd),
                                               "textbook_min_chars": syn.textbook_min_chars},
                        compute=pool, num_cpus=syn.num_cpus_per_actor)
    if syn.verify:
        # Generated code runs only where sandbox.ray_resources are offered (the hardened evaluator group on
        # KubeRay); fail clearly, before any request is sent, if no node ever offers them.
        placement: dict[str, Any] = {"num_cpus": syn.num_cpus_per_actor}
        if cfg.sandbox.ray_resources:
            from phiray.sandbox.placement import remote_options, wait_placeable

            wait_placeable(cfg.sandbox)
            placement = remote_options(cfg.sandbox)
        ds = ds.map_batches(VerifyBatch, batch_size=max(syn.batch_size, 32), batch_format="pandas",
                            fn_constructor_kwargs={"sandbox_cfg": cfg.sandbox.model_dump(mode="json")},
                            compute=ray.data.ActorPoolStrategy(size=1), **placement)
    out = ds.take_all()
    order = {r["key"]: i for i, r in enumerate(rows)}
    return sorted(out, key=lambda r: order[r["key"]])


def select(cfg: RunConfig, rows: list[dict[str, Any]]) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """Drop unverified and near-duplicate samples; split exercises into train/heldout; the report."""
    from phiray.teacher.diversity import diversity_report, near_duplicates

    syn, out = cfg.synthesize, {name: [] for name in OUTPUTS}
    report: dict[str, Any] = {}
    for kind in ("textbook", "exercise"):
        ok = [r for r in rows if r["kind"] == kind and r["status"] == "ok"]
        for r in rows:
            if r["kind"] == kind and r["status"] != "ok":
                out["rejected"].append(r)
        if kind == "exercise" and syn.verify:
            for r in ok:
                if not r["verified"]:
                    r["reason"] = f"unverified_{r['verdict'] or 'unknown'}"
            if not syn.keep_unverified:
                out["rejected"] += [r for r in ok if not r["verified"]]
                ok = [r for r in ok if r["verified"]]
        dup_of = near_duplicates([r["text"] for r in ok], syn.dedup_threshold, syn.dedup_num_perm,
                                 syn.dedup_shingle_size, seed=cfg.run.seed)
        report[kind] = diversity_report(ok, dup_of)
        for r, dup in zip(ok, dup_of):
            if dup is not None:
                out["rejected"].append({**r, "reason": "near_duplicate"})
            elif kind == "textbook":
                out["textbooks"].append(r)
            else:
                out["heldout" if r["split"] == "heldout" else "exercises"].append(r)
    return out, report


def write(rd: RunDir, name: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """Parquet via Ray Data; an empty table (with the schema) via pyarrow, which Ray cannot write."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    records = [{c: _plain(r.get(c, "")) for c in columns} for r in rows]
    if records:
        ray.data.from_items(records, override_num_blocks=max(1, len(records) // 2000)).write_parquet(rd.path(STAGE, name), filesystem=rd.fs)
        return
    schema = pa.schema([(c, pa.bool_() if c == "verified" else pa.int64() if c in ("seed", "difficulty")
                         else pa.string()) for c in columns])
    rd.makedirs(STAGE, name)
    pq.write_table(schema.empty_table(), rd.path(STAGE, name, "empty.parquet"), filesystem=rd.fs)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value  # numpy scalars from pandas batches


def accounting(cfg: RunConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    sent = [r for r in rows if not r["cached"]]
    tin, tout = sum(int(r["tokens_in"]) for r in sent), sum(int(r["tokens_out"]) for r in sent)
    price = cfg.teacher.prices.get(cfg.teacher.model) if cfg.teacher.kind == "openai" else None
    cost = (tin * price.input_per_million + tout * price.output_per_million) / 1e6 if price else 0.0
    return {"requests": len(rows), "cache_hits": len(rows) - len(sent), "tokens_in": tin, "tokens_out": tout,
            "cached_tokens_in": sum(int(r["tokens_in"]) for r in rows) - tin,
            "retries": sum(max(0, int(r["attempts"]) - 1) for r in rows),
            "estimated_cost_usd": round(cost, 6), "teacher": cfg.teacher.kind, "model": cfg.teacher.model}


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    from phiray.teacher.plan import plan_rows

    syn = cfg.synthesize
    for name in OUTPUTS:
        rd.remove(STAGE, name)
    snippets, snippet_source = load_snippets(rd) if syn.seed_snippet_chars and syn.n_textbooks else ([], "none")
    rows = plan_rows(syn.n_textbooks, syn.n_exercises, syn.audiences, syn.styles, cfg.run.seed,
                     syn.heldout_fraction, snippets, syn.seed_snippet_chars)
    log.info("synthesize: %d prompts (%s teacher), seed snippets from %s", len(rows), cfg.teacher.kind, snippet_source)
    done = generate(cfg, rd, rows) if rows else []
    out, report = select(cfg, done)
    write(rd, "textbooks", out["textbooks"], TEXTBOOK_COLUMNS)
    write(rd, "exercises", out["exercises"], EXERCISE_COLUMNS)
    write(rd, "heldout", out["heldout"], EXERCISE_COLUMNS)
    write(rd, "rejected", out["rejected"], REJECTED_COLUMNS)
    failures = Counter(r["reason"] for r in out["rejected"])
    ex_ok = [r for r in done if r["kind"] == "exercise" and r["status"] == "ok"]
    metrics = {**accounting(cfg, done), "failures_by_reason": dict(failures), "diversity": report,
               "seed_snippets": {"source": snippet_source, "available": len(snippets),
                                 "prompts_with_snippet": sum(1 for r in rows if r["snippet"])},
               "verification": {"checked": sum(1 for r in ex_ok if r["verdict"]),
                                "passed": sum(1 for r in ex_ok if r["verified"]),
                                "by_status": dict(Counter(r["verdict"] for r in ex_ok if r["verdict"]))},
               "heldout_families": sorted({r["concept"] for r in rows if r["split"] == "heldout"}),
               "tokens_by_output": {k: sum(len(r["text"].split()) for r in v) for k, v in out.items() if k != "rejected"}}
    counts = {k: len(v) for k, v in out.items()}
    return Manifest(stage=STAGE, rows={"planned": len(rows), **counts}, metrics=metrics,
                    headline={"textbooks": counts["textbooks"], "exercises": counts["exercises"],
                              "heldout": counts["heldout"], "rejected": counts["rejected"],
                              "cache_hits": metrics["cache_hits"], "cost_usd": metrics["estimated_cost_usd"]},
                    outputs=[f"{STAGE}/{name}" for name in OUTPUTS])
