"""Saving and loading final models so that plain ``AutoModelForCausalLM``/``AutoTokenizer`` load them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

TRAINING_INFO = "phiray_training.json"


def save_model(
    model,
    out_dir: str | os.PathLike[str],
    tokenizer_dir: str | os.PathLike[str],
    info: dict[str, Any] | None = None,
    state_dict: dict | None = None,
) -> str:
    """HF ``save_pretrained`` (safetensors, fp32 master weights) + the tokenizer files + training info.

    Every model directory phiray writes goes through here, so each is self-contained: transformers'
    ``Auto*`` classes and vLLM load it as it is. Without the tokenizer files ``AutoTokenizer`` on the
    directory silently builds an empty tokenizer from the config (it encodes code to ``[]``), hence
    ``tokenizer_dir`` is required. ``state_dict``: full weights when the module's own are sharded (ZeRO-3)."""
    out = Path(out_dir)
    tokenizer_files = [item for item in Path(tokenizer_dir).iterdir() if item.is_file()]
    if not any(item.name == "tokenizer_config.json" for item in tokenizer_files):
        raise FileNotFoundError(
            f"no tokenizer_config.json in {tokenizer_dir} (expected a tokenizer's save_pretrained directory)"
        )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, state_dict=state_dict, safe_serialization=True)
    for item in tokenizer_files:
        shutil.copy2(item, out / item.name)
    if info is not None:
        (out / TRAINING_INFO).write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
    return str(out)


def load_model(path: str | os.PathLike[str], attn_implementation: str = "sdpa", dtype=None):
    """The saved PhiForCausalLM, exactly as ``AutoModelForCausalLM.from_pretrained`` returns it."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        os.fspath(path), attn_implementation=attn_implementation, dtype=dtype or torch.float32
    )
