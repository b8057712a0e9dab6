"""A tiny Phi checkpoint (random weights, byte-level BPE trained on a few strings) for generation/serve tests."""

from __future__ import annotations

import socket
from pathlib import Path

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def greet(name):\n    print('hello', name)\n",
    "for i in range(10):\n    total = total + i\n",
    "The quick brown fox jumps over the lazy dog. Python functions return values.",
    "import math\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n",
]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for servers the tests and benchmarks start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_tiny_checkpoint(path: Path, context: int = 256, seed: int = 0) -> Path:
    """Write an AutoModelForCausalLM/AutoTokenizer-loadable tiny Phi model into `path` (~1 s)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PhiConfig, PhiForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>", bos_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    config = PhiConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=context,
        partial_rotary_factor=0.5,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    model = PhiForCausalLM(config)
    with torch.no_grad():  # random weights would often end at once; keep EOS unlikely so lengths are testable
        model.lm_head.bias[tokenizer.eos_token_id] = -1e4
    model.save_pretrained(path)
    return path
