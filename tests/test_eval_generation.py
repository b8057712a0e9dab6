"""The one generation interface of `evaluate`: which engine `auto` picks, and the in-process path through it.
(vLLM on Ray Data LLM against transformers: tests/test_vllm_generation_slow.py.)"""

from __future__ import annotations

import importlib.util

import pytest
from serve_fixtures import build_tiny_checkpoint

from phiray.evals.benchmarks import Task
from phiray.evals.generation import AUTO_VLLM_MIN_SAMPLES, GenerationSettings, choose_engine, generate, generate_local


def test_auto_keeps_small_evaluations_in_process_and_explicit_choices_win():
    assert choose_engine("auto", AUTO_VLLM_MIN_SAMPLES - 1) == "transformers"
    many = choose_engine("auto", AUTO_VLLM_MIN_SAMPLES)
    assert many == ("vllm" if importlib.util.find_spec("vllm") else "transformers")
    assert choose_engine("vllm", 1) == "vllm" and choose_engine("transformers", 10**6) == "transformers"


def test_generate_in_process_is_generate_local(tmp_path):
    ckpt = str(build_tiny_checkpoint(tmp_path / "ckpt"))
    tasks = [
        Task(task_id=f"t/{i}", prompt=p, tests="", entry_point="f")
        for i, p in enumerate(["def add(a, b):\n", "x = ", "word " * 300])
    ]
    gen = GenerationSettings(n=2, temperature=0.0, max_new_tokens=8)
    samples = generate(ckpt, tasks, gen, engine="auto")  # 6 samples: in process
    assert samples == generate_local(ckpt, tasks, gen)
    assert [s["task_id"] for s in samples] == ["t/0", "t/0", "t/1", "t/1", "t/2", "t/2"]
    assert samples[-1]["completion"] == ""  # longer than the context: counted, empty


def test_settings_reject_an_unknown_engine():
    from pydantic import ValidationError

    from phiray.config import EvaluateConfig

    assert EvaluateConfig().engine == "auto"
    with pytest.raises(ValidationError):
        EvaluateConfig(engine="sglang")
