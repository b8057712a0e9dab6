"""vLLM test helpers: a tiny vLLM-servable Phi checkpoint, a bare vLLM OpenAI server on it, and the greedy
parity check (vLLM = transformers) on the model directories phiray writes.

vLLM's CPU attention rejects head_dim 16 (the old tiny geometry); heads of 64 with rotary 32 are phi-1's
own and work. The checkpoint is self-contained (weights + config + tokenizer) and does not depend on what
phiray's training stages write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from serve_fixtures import CORPUS

PROMPTS = ["def add(a, b):\n", "import json\n\nclass ", "    return "]

# vLLM on this 2-core CPU machine: a 1 GiB KV cache, the engine core in this process (no extra
# spawn: faster start, and one process to clean up).
VLLM_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def vllm_greedy(
    dirs: list[str], prompts: list[str] = PROMPTS, max_tokens: int = 16, timeout_s: float = 900
) -> dict[str, dict[str, list[list[int]]]]:
    """{dir: {"prompt_ids", "out"}} from a real vLLM engine (one start per directory)."""
    script = Path(__file__).with_name("vllm_greedy.py")
    request = json.dumps({"dirs": [os.fspath(d) for d in dirs], "prompts": prompts, "max_tokens": max_tokens})
    proc = subprocess.run(
        [sys.executable, os.fspath(script)],
        input=request,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **VLLM_ENV},
    )
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
            generated = model.generate(
                torch.tensor([ids]), max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False
            )
            outs.append(generated[0, len(ids) :].tolist())
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
    from train_fixtures import stdlib_code

    from phiray.config import load_config
    from phiray.model.io import save_model
    from phiray.model.presets import build_model
    from phiray.model.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(stdlib_code(20), vocab_size=vocab_size, model_max_length=n_ctx)
    tokenizer.save_pretrained(directory / "tokenizer")
    shape = load_config("tiny").model.model_copy(update={"vocab_size": vocab_size, "n_ctx": n_ctx})
    model = build_model(shape, seed=0, eos_token_id=tokenizer.eos_token_id)
    return save_model(model, directory / "model", tokenizer_dir=directory / "tokenizer")


# Role-tagged turns, the assistant's turn left open: the tokenizer ships it, so vLLM's chat endpoint and
# transformers' apply_chat_template agree on the prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] in ['system', 'developer'] %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n{% else %}Assistant: {{ m['content'] }}\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def build_vllm_checkpoint(path: Path, context: int = 256, seed: int = 0, chat_template: bool = True) -> Path:
    """2 layers, d 128, 2 heads of 64, rotary 32; random weights, EOS made unlikely so lengths are testable."""
    import torch
    from transformers import PhiConfig, PhiForCausalLM

    from phiray.model.tokenizer import train_bpe_tokenizer

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = train_bpe_tokenizer(CORPUS * 4, vocab_size=400, model_max_length=context)
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    config = PhiConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=context,
        partial_rotary_factor=0.5,
        eos_token_id=eos,
        bos_token_id=eos,
        pad_token_id=eos,
        torch_dtype="float32",
    )
    model = PhiForCausalLM(config)
    with torch.no_grad():
        model.lm_head.bias[eos] = -1e4
    model.save_pretrained(path)
    return path


def vllm_env() -> dict[str, str]:
    """Environment for a vLLM process on this CPU machine (small KV cache, loopback, no hub)."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("VLLM_HOST_IP", "127.0.0.1")
    return env


def start_vllm_server(
    model: Path, port: int, served_name: str, log: Path, max_model_len: int = 256, extra: list[str] | None = None
) -> subprocess.Popen:
    """`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1:port (the dist is `vllm-cpu`, so the
    `vllm serve` script fails on its own version lookup)."""
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        str(max_model_len),
        "--enforce-eager",
        *(extra or []),
    ]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=vllm_env(), start_new_session=True)


def wait_ready(
    url: str,
    proc: subprocess.Popen | None = None,
    timeout_s: float = 900.0,
    log: Path | None = None,
    model: str | None = None,
) -> None:
    """Poll until `url` answers: a one-token completion for `model` when given (an ingress lists its models
    before the engine behind it is up), else GET /v1/models; fail early (with the log's tail) if `proc` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            if model is None:
                ok = httpx.get(f"{url}/v1/models", timeout=5).status_code == 200
            else:
                body = {"model": model, "prompt": "x", "max_tokens": 1}
                ok = httpx.post(f"{url}/v1/completions", json=body, timeout=30).status_code == 200
            if ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


def stop(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM the server's process group (it was started in its own session), SIGKILL if it lingers."""
    import signal

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
