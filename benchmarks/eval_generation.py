"""Evaluation samples: vLLM on Ray Data LLM vs transformers in process (phiray.model.generate), same checkpoint,
same tasks, wall time of `phiray.evals.generation.generate` per engine (engine start included, as `evaluate`
pays it) at several sample counts; prints the ratio and where vLLM starts to win (AUTO_VLLM_MIN_SAMPLES).

    .venv/bin/python benchmarks/eval_generation.py [--samples 40,320,1280] [--max-new-tokens 128] [--model DIR]

Without --model it uses a tiny random Phi with heads of 64 (tests/vllm_fixtures.py). Sample counts are tasks x
n: HumanEval-like prompts (the first tasks of HumanEval, cycled) with n = samples / tasks, temperature 0.8.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Checkpoint directory (default: a tiny random Phi).")
    parser.add_argument("--samples", default="40,320,1280", help="Sample counts (tasks x n), comma-separated.")
    parser.add_argument("--tasks", type=int, default=40, help="Tasks per run (n = samples / tasks).")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Completion length cap.")
    args = parser.parse_args()

    from phiray.runtime import prepare_environment

    prepare_environment(local=True)
    import ray

    from phiray.evals.benchmarks import Task, load_benchmark
    from phiray.evals.generation import AUTO_VLLM_MIN_SAMPLES, GenerationSettings, generate

    tmp = Path(tempfile.mkdtemp(prefix="evgb", dir="/tmp"))
    model = args.model
    if model is None:
        from vllm_fixtures import build_vllm_checkpoint

        model = str(build_vllm_checkpoint(tmp / "model", context=512))
    humaneval = sorted(load_benchmark("humaneval"), key=lambda t: len(t.prompt))[: args.tasks]
    tasks = [Task(t.task_id, t.prompt, t.tests, t.entry_point) for t in humaneval]
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp / "ray"), log_to_driver=False)
    load_start = os.getloadavg()
    rows = []
    for samples in [int(x) for x in args.samples.split(",")]:
        gen = GenerationSettings(
            n=max(samples // len(tasks), 1), temperature=0.8, max_new_tokens=args.max_new_tokens, batch_size=16
        )
        times = {}
        for engine in ("transformers", "vllm"):
            start = time.perf_counter()
            out = generate(model, tasks, gen, engine=engine)
            times[engine] = time.perf_counter() - start
            assert len(out) == len(tasks) * gen.n
        rows.append((len(tasks) * gen.n, times["transformers"], times["vllm"]))
        print(
            f"{rows[-1][0]:>6} samples: transformers {times['transformers']:7.1f} s, vLLM {times['vllm']:7.1f} s, "
            f"transformers/vLLM {times['transformers'] / times['vllm']:.2f}x",
            flush=True,
        )
    ray.shutdown()
    load_end = os.getloadavg()
    wins = [n for n, hf, vl in rows if vl < hf]
    print(
        f"\nvLLM wins from {min(wins) if wins else 'none of the measured'} samples "
        f"(phiray.evals.generation.AUTO_VLLM_MIN_SAMPLES = {AUTO_VLLM_MIN_SAMPLES}); "
        f"{args.max_new_tokens} new tokens; load average {load_start[0]:.1f} -> {load_end[0]:.1f}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
