"""Greedy generation with a real vLLM engine, one engine per model directory, in a fresh process.

Run as ``python vllm_greedy.py`` with a JSON request on stdin: ``{"dirs": [...], "prompts": [...],
"max_tokens": N}``; prints one JSON line: ``{dir: {"prompt_ids": [[...]], "out": [[...]]}}``. A separate
process keeps vLLM's CPU thread binding and its engine away from the test process (and Ray's)."""

from __future__ import annotations

import gc
import json
import os
import sys


def main() -> None:
    from vllm import LLM, SamplingParams

    request = json.load(sys.stdin)
    # Exactly max_tokens new tokens with EOS masked until then, as transformers' min_new_tokens does on the
    # other side (ignore_eos alone lets EOS be generated: a finetuned model, trained on exercises that end
    # with EOS, then differs at its first argmax).
    n = request["max_tokens"]
    params = SamplingParams(temperature=0.0, max_tokens=n, min_tokens=n, ignore_eos=True)
    results = {}
    for directory in request["dirs"]:
        with open(os.path.join(directory, "config.json")) as fh:
            n_ctx = json.load(fh)["max_position_embeddings"]
        llm = LLM(model=directory, dtype="float32", enforce_eager=True, max_model_len=min(256, n_ctx), seed=0)
        outputs = llm.generate(request["prompts"], params, use_tqdm=False)
        results[directory] = {
            "prompt_ids": [list(o.prompt_token_ids) for o in outputs],
            "out": [list(o.outputs[0].token_ids) for o in outputs],
        }
        del llm
        gc.collect()
    print("VLLM_GREEDY " + json.dumps(results), flush=True)


if __name__ == "__main__":  # vLLM may spawn processes: the main-module guard is required
    main()
