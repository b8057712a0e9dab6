"""The data stages at scale: a synthetic corpus of N files made from real code, through phiray's
ingest -> dedup -> decontaminate -> annotate (heuristic) -> classify -> filter, and the same corpus
through datatrove's MinHash pipeline (its own virtualenv; same shingles, permutations, bands x rows).

The corpus: windows of standard-library modules with every identifier renamed per document (so two
documents are as different as two projects), plus planted near-duplicates (a fork's edits: a comment,
spacing, an appended helper), whitespace-only exact copies and a few planted HumanEval solutions.
Per stage it prints documents/s, the driver's RSS (at the start and its peak) and the peak RSS and PSS
of all Ray workers together (sampled every 0.2 s), and the object-store spill; for dedup, the recall of
the planted duplicates (phiray and datatrove) and what each removed that was not planted. Classify and
filter embed with MiniLM below 100k documents and with feature hashing from 100k (``--filter-embed``:
MiniLM embeds ~10 documents/s per core, hours at 100k on 2 cores); ``--until dedup`` stops early.

    python benchmarks/scale.py --docs 10000 [--docs 100000] [--million] [--filter-embed hashing] \
        [--until decontaminate] [--keep DIR] [--datatrove-python /tmp/dt-venv/bin/python]
    # datatrove: python3 -m venv /tmp/dt-venv && /tmp/dt-venv/bin/pip install datatrove regex tokenizers xxhash orjson
    # (datatrove 0.10.1 imports regex, tokenizers, xxhash and orjson in these stages without depending on them)
"""

from __future__ import annotations

import argparse
import json
import keyword
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phiray.runtime import prepare_environment  # noqa: E402

prepare_environment(local=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
STAGE_NAMES = ["ingest", "dedup", "decontaminate", "annotate", "classify", "filter"]
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_KEEP = set(keyword.kwlist) | set(dir(__builtins__)) | {"self", "cls"}


def _renamed(text: str, rng: random.Random) -> str:
    suffix = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(4))
    return _IDENT.sub(lambda m: m.group(0) if m.group(0) in _KEEP else f"{m.group(0)}_{suffix}", text)


def _fork(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(max(1, len(lines) // 80)):
        lines.insert(rng.randrange(len(lines) + 1), "# local change: keep in sync with upstream")
    return (
        "\n".join(lines).replace("    return ", "    return  ", 2) + "\n\ndef _local_helper(value):\n    return value\n"
    )


def build_corpus(root: Path, n: int, seed: int = 0) -> dict:
    """Write ``n`` files under ``root/code``; returns the planted truth (paths)."""
    from phiray.data import readers
    from phiray.data.ngrams import humaneval_tasks

    rng = random.Random(seed)
    bases = [
        t
        for t in (Path(p).read_text(errors="replace") for p in sorted(readers.list_stdlib())[:3000])
        if t.count("\n") >= 80
    ]
    out = root / "code"
    out.mkdir(parents=True)
    truth: dict = {"near": [], "exact": [], "planted": [], "source_of": {}}
    tasks = humaneval_tasks()
    written: list[str] = []
    for i in range(n):
        path = out / f"d{i // 1000:04d}" / f"m{i:07d}.py"
        path.parent.mkdir(exist_ok=True)
        r, source = rng.random(), None
        if i < 5:
            task = tasks[i * 31 % len(tasks)]
            text, kind = '"""Helpers."""\n\n' + task[1] + "\n", "planted"
        elif written and r < 0.08:
            source = rng.choice(written)
            text, kind = _fork(Path(source).read_text(), rng), "near"
        elif written and r < 0.10:
            source = rng.choice(written)
            text, kind = Path(source).read_text().replace("\n", "  \n"), "exact"
        else:
            lines = rng.choice(bases).splitlines()
            start = rng.randrange(max(1, len(lines) - 60))
            text, kind = _renamed("\n".join(lines[start : start + rng.randint(60, 400)]) + "\n", rng), None
        path.write_text(text)
        if source:
            truth["source_of"][str(path)] = source
        if kind:
            truth[kind].append(str(path))
        elif len(written) < 20_000:
            written.append(str(path))
    return truth


class PeakMemory:
    """Peak RSS of this process and peak RSS and PSS of all Ray worker processes together, sampled on a
    thread. PSS (proportional set size) splits pages shared between processes (the object store's mapped
    memory, imported libraries) among them, so summed over workers it does not count a page twice."""

    def __init__(self, interval: float = 0.2, children: bool = False):
        import psutil

        self.psutil, self.interval, self.me, self.children = psutil, interval, psutil.Process(), children
        self.driver = self.workers = self.workers_pss = self.workers_uss = 0
        self.driver_start = self.me.memory_info().rss  # the driver's RSS never shrinks much: growth is the news
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers_memory(self) -> tuple[int, int, int]:
        """(RSS, PSS, USS) summed over descendants of this process: Ray started here runs its workers under
        this driver (other Ray instances on the machine are not counted); ``children``: every descendant."""
        rss = pss = uss = 0
        for p in self.me.children(recursive=True):
            try:
                cmd = " ".join(p.cmdline())
            except Exception:  # ended meanwhile
                continue
            if self.children or "ray::" in cmd or "default_worker.py" in cmd:
                r, s, u = _rss_pss(p)
                rss, pss, uss = rss + r, pss + s, uss + u
        return rss, pss, uss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.driver = max(self.driver, self.me.memory_info().rss)
            rss, pss, uss = self._workers_memory()
            self.workers, self.workers_pss = max(self.workers, rss), max(self.workers_pss, pss)
            self.workers_uss = max(self.workers_uss, uss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _rss_pss(process) -> tuple[int, int, int]:
    """(RSS, PSS, USS): USS is the process's private memory, i.e. without the object store's shared pages
    and shared libraries, which PSS shares out among the processes mapping them."""
    try:
        info = process.memory_full_info()
        return info.rss, getattr(info, "pss", info.rss), getattr(info, "uss", info.rss)
    except Exception:  # the process ended between listing and reading
        return 0, 0, 0


def _spilled_mib() -> float:
    """Object-store spill so far (MiB), from Ray's memory summary of this driver's cluster."""
    import ray
    from ray._private.internal_api import memory_summary

    summary = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    found = re.search(r"Spilled (\d+) MiB", summary)
    return float(found.group(1)) if found else 0.0


def filter_embedder(choice: str, n: int) -> str:
    """The embedder of classify and filter (they must share one): ``auto`` is MiniLM below 100k documents
    and feature hashing from 100k (MiniLM embeds ~10 documents/s per core: hours at 100k on 2 cores)."""
    if choice != "auto":
        return choice
    return "hashing" if n >= 100_000 else "sentence-transformers"


def run_phiray(
    root: Path,
    n: int,
    cpus: int,
    embedder: str = "sentence-transformers",
    stages: list[str] = STAGE_NAMES,
    object_store_mb: int | None = None,
) -> tuple[list[dict], object]:
    import ray

    from phiray.config import load_config
    from phiray.pipeline import run_pipeline
    from phiray.rundir import RunDir
    from phiray.stages import STAGES

    source = [{"kind": "files", "path": str(root / "code"), "name": "code"}]
    cfg = load_config(
        "tiny",
        overrides=[
            f"ingest.sources={json.dumps(source)}",
            "ingest.max_documents=null",
            "ingest.max_bytes=1000000",
            "annotate.sample_size=400",
            f"embed.kind={embedder}",
            f"run.stages=[{','.join(stages)}]",
        ],
    )
    rd = RunDir(root / "run")
    for attempt in range(3):  # Ray gives a raylet 30 s to register: not always enough on a loaded machine
        try:
            store = {"object_store_memory": object_store_mb << 20} if object_store_mb else {}
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, **store)
            break
        except Exception:
            if attempt == 2:
                raise
            ray.shutdown()
    rows = []
    try:
        for name in stages:
            t0 = time.perf_counter()
            with PeakMemory() as mem:
                state = run_pipeline(STAGES, cfg, rd, only=[name])[0]
            seconds = time.perf_counter() - t0
            manifest = state.manifest
            n_in = (
                manifest.rows.get("in")
                or manifest.rows.get("read")
                or manifest.rows.get("corpus")
                or manifest.rows.get("labelled")
                or n
            )
            rows.append(
                {
                    "stage": name,
                    "seconds": round(seconds, 1),
                    "docs_per_s": round(n_in / seconds, 1),
                    "driver_start_mb": round(mem.driver_start / 2**20),
                    "driver_peak_mb": round(mem.driver / 2**20),
                    "workers_peak_rss_mb": round(mem.workers / 2**20),
                    "workers_peak_pss_mb": round(mem.workers_pss / 2**20),
                    "workers_peak_uss_mb": round(mem.workers_uss / 2**20),
                    "spilled_mib": _spilled_mib(),
                    "rows": manifest.rows,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        ray.shutdown()
    return rows, rd


def print_table(rows: list[dict]) -> None:
    """The per-stage figures as a Markdown table (for benchmarks/RESULTS.md)."""
    print(
        "| stage | s | docs/s | driver MB (start -> peak) | Ray workers peak MB (RSS / PSS / USS) | spilled MiB (total) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['seconds']} | {r['docs_per_s']} | {r['driver_start_mb']} -> {r['driver_peak_mb']} | "
            f"{r['workers_peak_rss_mb']} / {r['workers_peak_pss_mb']} / {r['workers_peak_uss_mb']} | "
            f"{r['spilled_mib']:.0f} |"
        )


def phiray_removed(rd) -> set[str]:
    import pyarrow.parquet as pq

    return set(pq.read_table(rd.path("dedup", "rejected"), columns=["path"]).column("path").to_pylist())


DATATROVE_SCRIPT = r"""
import json, re, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.text import TextNormConfig
from datatrove.utils.word_tokenizers import WordTokenizer


# phiray's shingle tokens (words and single punctuation marks, lower-cased by the norm config): the same
# shingles on both sides (datatrove's own whitespace tokenizer needs spaCy, and strips punctuation).
class CodeTokenizer(WordTokenizer):

    def word_tokenize(self, text):
        return re.findall(r"\w+|[^\w\s]", text)

    def sent_tokenize(self, text):
        return [text]

    def span_tokenize(self, text):
        return [(0, len(text))]



def main():
    src, work, n_grams, buckets, rows, workers = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
    norm = TextNormConfig(remove_punctuation=False, norm_unicode_diacritics=False, norm_numbers=False)
    # sha1, not datatrove's default xxhash: its xxhash64 passes str to an xxhash that takes only bytes (3.x).
    config = MinhashConfig(hash_config=HashConfig(precision=64, hash_fc="sha1"), num_buckets=buckets, hashes_per_bucket=rows,
                           n_grams=n_grams, norm_config=norm)
    tasks = max(workers, 4)
    t0 = time.time()
    LocalPipelineExecutor(pipeline=[JsonlReader(src), MinhashDedupSignature(output_folder=f"{work}/sigs", config=config,
                                                                             language=CodeTokenizer())],
                          tasks=tasks, workers=workers, logging_dir=f"{work}/logs/1").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets",
                                                        config=config)],
                          tasks=buckets, workers=workers, logging_dir=f"{work}/logs/2").run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove",
                                                        config=config)],
                          tasks=1, logging_dir=f"{work}/logs/3").run()
    LocalPipelineExecutor(pipeline=[JsonlReader(src), MinhashDedupFilter(input_folder=f"{work}/remove",
                          exclusion_writer=JsonlWriter(f"{work}/removed"))], tasks=tasks, workers=workers,
                          logging_dir=f"{work}/logs/4").run()
    print(json.dumps({"seconds": time.time() - t0}))


# datatrove's worker pool starts processes that import this file: without the guard each would run it again.
if __name__ == "__main__":
    main()
"""


def run_datatrove(python: str, root: Path, cfg_dedup, workers: int) -> dict:
    """datatrove's four MinHash stages on the same files (as JSONL shards), in its own interpreter."""
    import gzip

    from phiray.data import minhash

    src, work = root / "jsonl", root / "dt"
    shutil.rmtree(work, ignore_errors=True)  # a rerun on a kept corpus starts datatrove afresh
    src.mkdir(exist_ok=True)
    files = sorted((root / "code").rglob("*.py"))
    for s in range(8):
        with open(src / f"part-{s}.jsonl", "w") as fh:
            for p in files[s::8]:
                fh.write(json.dumps({"id": str(p), "text": p.read_text()}) + "\n")
    bands, rows = minhash.lsh_params(cfg_dedup.threshold, cfg_dedup.num_perm)
    script = root / "dt.py"
    script.write_text(DATATROVE_SCRIPT)
    with PeakMemory(children=True) as mem:
        out = subprocess.run(
            [
                python,
                str(script),
                str(src),
                str(work),
                str(cfg_dedup.shingle_size),
                str(bands),
                str(rows),
                str(workers),
            ],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},  # its own venv, not phiray's path
        )
    if out.returncode:
        raise RuntimeError(f"datatrove failed:\n{out.stderr[-3000:]}")
    removed = set()
    for f in (work / "removed").rglob("*"):
        if f.is_file():
            opener = gzip.open if f.name.endswith(".gz") else open
            with opener(f, "rt") as fh:
                removed |= {json.loads(line)["id"] for line in fh if line.strip()}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "seconds": round(result["seconds"], 1),
        "removed": removed,
        "bands": bands,
        "rows": rows,
        "children_peak_mb": round(mem.workers / 2**20),
        "children_peak_pss_mb": round(mem.workers_pss / 2**20),
    }


def agreement(removed: set[str], truth: dict) -> dict:
    """How a dedup's removals match the planted duplicates. A planted group is a source file and its
    copies: keeping any one of them is right, so ``recall`` is the removals inside groups (at most
    size - 1 per group) over the sum of (size - 1); ``copy_recall`` counts only the copies themselves
    (it penalises keeping a copy instead of its source); ``unplanted_removed``: removals outside every
    group (false positives, or duplicates the corpus has by chance)."""
    groups: dict[str, set[str]] = {}
    for copy, source in truth["source_of"].items():
        groups.setdefault(source, {source}).add(copy)
    expected = sum(len(g) - 1 for g in groups.values())
    found = sum(min(len(removed & g), len(g) - 1) for g in groups.values())
    planted = set(truth["near"]) | set(truth["exact"])
    in_groups = set().union(*groups.values()) if groups else set()
    return {
        "recall": round(found / max(1, expected), 4),
        "copy_recall": round(len(removed & planted) / max(1, len(planted)), 4),
        "removed": len(removed),
        "unplanted_removed": len(removed - in_groups),
    }


def compare_dedup(rows: list[dict], rd, truth: dict, base: Path, n: int, args, dedup_cfg) -> None:
    """Planted-duplicate recall of phiray's dedup and, with ``--datatrove-python``, of datatrove's."""
    ours = agreement(phiray_removed(rd), truth)
    dedup = next(r for r in rows if r["stage"] == "dedup")
    print(f"phiray dedup: {dedup['seconds']} s, {dedup['docs_per_s']} docs/s, {ours}", flush=True)
    if args.datatrove_python and Path(args.datatrove_python).exists():
        dt = run_datatrove(args.datatrove_python, base, dedup_cfg, args.cpus)
        theirs = agreement(dt["removed"], truth)
        print(
            f"datatrove minhash ({dt['bands']} buckets x {dt['rows']} hashes, {dedup_cfg.shingle_size}-grams): "
            f"{dt['seconds']} s, {round(n / dt['seconds'], 1)} docs/s, {theirs}; "
            f"its processes' peak {dt['children_peak_mb']} MB RSS, {dt['children_peak_pss_mb']} MB PSS",
            flush=True,
        )
        print(f"dedup speed phiray / datatrove: {dt['seconds'] / dedup['seconds']:.2f}x", flush=True)
    else:
        print("datatrove comparison skipped: pass --datatrove-python (a venv with `pip install datatrove`)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, action="append", help="corpus sizes (repeatable; default 10000)")
    ap.add_argument("--million", action="store_true", help="also run 1,000,000 documents")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument(
        "--object-store-mb",
        type=int,
        default=None,
        help="Ray's object store size (default: Ray's, 30%% of RAM); a smaller one spills to disk, reported per stage",
    )
    ap.add_argument("--datatrove-python", default=None, help="python of a virtualenv with datatrove installed")
    ap.add_argument(
        "--filter-embed",
        choices=["auto", "sentence-transformers", "hashing"],
        default="auto",
        help="embedder of classify + filter (auto: MiniLM below 100k documents, feature hashing from 100k)",
    )
    ap.add_argument(
        "--until",
        choices=STAGE_NAMES,
        default=STAGE_NAMES[-1],
        help="last stage to run (the stages before it run too; default: all through filter)",
    )
    ap.add_argument(
        "--keep",
        default=None,
        help="directory to keep the corpora and runs in (default: a temp dir); a corpus found there is reused",
    )
    args = ap.parse_args()
    sizes = (args.docs or [10_000]) + ([1_000_000] if args.million else [])
    from phiray.config import load_config

    dedup_cfg = load_config("tiny").dedup
    for n in sizes:
        base = Path(args.keep or tempfile.mkdtemp(prefix="phiray-scale-")) / f"n{n}"
        print(f"== {n} documents; load average {os.getloadavg()}", flush=True)
        t0 = time.perf_counter()
        if (base / "truth.json").exists():  # a corpus kept by an earlier --keep run: reused, its run redone
            truth = json.loads((base / "truth.json").read_text())
            shutil.rmtree(base / "run", ignore_errors=True)
        else:
            truth = build_corpus(base, n)
            (base / "truth.json").write_text(json.dumps(truth))  # written last: the corpus is complete
        print(
            f"corpus written in {time.perf_counter() - t0:.0f} s: planted {len(truth['near'])} near, "
            f"{len(truth['exact'])} exact, {len(truth['planted'])} benchmark solutions",
            flush=True,
        )
        embedder = filter_embedder(args.filter_embed, n)
        print(f"classify/filter embedder: embed.kind={embedder}", flush=True)
        stages = STAGE_NAMES[: STAGE_NAMES.index(args.until) + 1]
        rows, rd = run_phiray(base, n, args.cpus, embedder, stages, args.object_store_mb)
        print_table(rows)
        if "dedup" in stages:
            compare_dedup(rows, rd, truth, base, n, args, dedup_cfg)
        print(f"load average {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
