"""What every model directory phiray writes must satisfy: it loads in transformers as it is, tokenizer
included (issue 15: a checkpoint's ``hf/`` once had no tokenizer, and ``AutoTokenizer`` then silently
encoded code to ``[]``)."""

from __future__ import annotations

import os

PROBE = "def add(a, b):\n    return a + b\n"


def assert_self_contained(directory: str | os.PathLike[str], tokenizer) -> None:
    """``directory`` holds weights + config + a tokenizer that encodes like phiray's ``tokenizer``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = set(os.listdir(directory))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names, names
    loaded = AutoTokenizer.from_pretrained(os.fspath(directory))
    ids = loaded(PROBE)["input_ids"]
    assert ids and ids == tokenizer(PROBE)["input_ids"]
    assert loaded.eos_token_id == tokenizer.eos_token_id and loaded.decode(ids) == PROBE
    model = AutoModelForCausalLM.from_pretrained(os.fspath(directory)).eval()
    assert model.config.eos_token_id == tokenizer.eos_token_id
    with torch.no_grad():
        assert model(input_ids=torch.tensor([ids])).logits.shape[:2] == (1, len(ids))
