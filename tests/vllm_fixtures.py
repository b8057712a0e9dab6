"""Greedy output of vLLM and of transformers on the same model directory (issue 15's parity check)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROMPTS = ["def add(a, b):\n", "import json\n\nclass ", "    return "]

# vLLM on this 2-core CPU machine: a 1 GiB KV cache, the engine core in this process (no extra
# spawn: faster start, and one process to clean up).
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1"}


def vllm_greedy(dirs: list[str], prompts: list[str] = PROMPTS, max_tokens: int = 16,
                timeout_s: float = 900) -> dict[str, dict[str, list[list[int]]]]:
    """{dir: {"prompt_ids", "out"}} from a real vLLM engine (one start per directory)."""
    script = Path(__file__).with_name("vllm_greedy.py")
    request = json.dumps({"dirs": [os.fspath(d) for d in dirs], "prompts": prompts, "max_tokens": max_tokens})
    proc = subprocess.run([sys.executable, os.fspath(script)], input=request, capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, **VLLM_ENV})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("VLLM_GREEDY ")]
    assert proc.returncode == 0 and lines, f"vLLM failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1].removeprefix("VLLM_GREEDY "))


def transformers_greedy(directory: str, prompt_ids: list[list[int]], max_tokens: int = 16) -> list[list[int]]:
    """``generate`` (greedy, exactly ``max_tokens`` new tokens) of the directory loaded by transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(os.fspath(directory), dtype=torch.float32).eval()
    outs = []
    with torch.no_grad():
        for ids in prompt_ids:
            generated = model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                                       do_sample=False)
            outs.append(generated[0, len(ids):].tolist())
    return outs


def assert_vllm_equals_transformers(dirs: list[str], max_tokens: int = 16) -> None:
    """Same prompt ids (tokenizer from the directory) and the same greedy tokens, for every directory."""
    from transformers import AutoTokenizer

    results = vllm_greedy(dirs, max_tokens=max_tokens)
    for directory in dirs:
        got = results[os.fspath(directory)]
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(directory))
        assert got["prompt_ids"] == [tokenizer(p)["input_ids"] for p in PROMPTS], directory
        assert all(len(o) == max_tokens for o in got["out"])
        assert got["out"] == transformers_greedy(directory, got["prompt_ids"], max_tokens), directory


def tiny_hf_checkpoint(directory: Path, vocab_size: int = 1024, n_ctx: int = 256) -> str:
    """A tiny HF-format phi checkpoint with phi-1's head geometry (the tiny preset's: 2 heads of 64, rotary
    32) and a BPE tokenizer trained on stdlib code, written by phiray's save_model."""
    from phiray.config import load_config
    from phiray.model.io import save_model
    from phiray.model.presets import build_model
    from phiray.model.tokenizer import train_bpe_tokenizer
    from train_fixtures import stdlib_code

    tokenizer = train_bpe_tokenizer(stdlib_code(20), vocab_size=vocab_size, model_max_length=n_ctx)
    tokenizer.save_pretrained(directory / "tokenizer")
    shape = load_config("tiny").model.model_copy(update={"vocab_size": vocab_size, "n_ctx": n_ctx})
    model = build_model(shape, seed=0, eos_token_id=tokenizer.eos_token_id)
    return save_model(model, directory / "model", tokenizer_dir=directory / "tokenizer")
