"""Benchmarks (HumanEval, MBPP, held-out exercises), prompt formats, pass@k and `phiray eval`.

from phiray.evals.benchmarks import load_benchmark
from phiray.evals.scoring import pass_at_k, score_samples
tasks = load_benchmark("humaneval")                    # Task(task_id, prompt, tests, entry_point, reference)
summary, rows = score_samples(tasks, samples, Sandbox(cfg.sandbox), ks=[1, 10])
"""
