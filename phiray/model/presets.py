"""phi model shapes -> ``transformers.PhiConfig`` / ``PhiForCausalLM``.

The architecture section of the run config (:class:`phiray.config.ModelConfig`) is the single source
of truth; :data:`SHAPES` holds the papers' shapes by name (used by presets, benchmarks and tests).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from phiray.config import ModelConfig

# name -> ModelConfig fields (heads of 64, rotary dim 32; context 2048, vocab padded to 51200 as phi-1).
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layer=2, d_model=128, n_head=2, rotary_dim=32, n_ctx=256, vocab_size=4096, resid_pdrop=0.0),
    "phi-1-small": dict(n_layer=20, d_model=1024, n_head=16, rotary_dim=32, n_ctx=2048, vocab_size=51200),
    "phi-1": dict(n_layer=24, d_model=2048, n_head=32, rotary_dim=32, n_ctx=2048, vocab_size=51200),
    "phi-1.5": dict(n_layer=24, d_model=2048, n_head=32, rotary_dim=32, n_ctx=2048, vocab_size=51200),
    "phi-2": dict(n_layer=32, d_model=2560, n_head=32, rotary_dim=32, n_ctx=2048, vocab_size=51200),
}


def shape(name: str) -> ModelConfig:
    """The ModelConfig of a named shape (``tiny``, ``phi-1-small``, ``phi-1``, ``phi-1.5``, ``phi-2``)."""
    if name not in SHAPES:
        raise KeyError(f"unknown model shape {name!r} (known: {', '.join(SHAPES)})")
    return ModelConfig(**SHAPES[name])


def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attn_implementation(requested: str, on_gpu: bool) -> str:
    """``auto``: flash-attention 2 on a GPU when the package is installed, else PyTorch SDPA."""
    if requested != "auto":
        return requested
    return "flash_attention_2" if on_gpu and flash_attn_available() else "sdpa"


def phi_config(mc: ModelConfig, attn_implementation: str = "sdpa", eos_token_id: int | None = None):
    """PhiConfig for a ModelConfig (partial rotary: ``rotary_dim / head_dim`` of each head)."""
    from transformers import PhiConfig

    head_dim = mc.d_model // mc.n_head
    config = PhiConfig(
        vocab_size=mc.vocab_size,
        hidden_size=mc.d_model,
        intermediate_size=mc.d_ff or 4 * mc.d_model,
        num_hidden_layers=mc.n_layer,
        num_attention_heads=mc.n_head,
        resid_pdrop=mc.resid_pdrop,
        embd_pdrop=mc.embd_pdrop,
        attention_dropout=mc.attn_pdrop,
        max_position_embeddings=mc.n_ctx,
        initializer_range=mc.initializer_range,
        layer_norm_eps=mc.layer_norm_eps,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": mc.rotary_dim / head_dim,
        },
        tie_word_embeddings=False,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
    )
    config._attn_implementation = attn_implementation
    return config


def build_model(
    mc: ModelConfig, attn_implementation: str = "sdpa", seed: int | None = None, eos_token_id: int | None = None
):
    """A freshly initialised PhiForCausalLM (seeded: every rank builds the same weights)."""
    import torch
    from transformers import PhiForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    return PhiForCausalLM(phi_config(mc, attn_implementation, eos_token_id))


def model_config_of(hf_config) -> ModelConfig:
    """The ModelConfig of a saved PhiConfig (to grow or finetune a checkpoint)."""
    head_dim = hf_config.hidden_size // hf_config.num_attention_heads
    factor = (getattr(hf_config, "rope_parameters", None) or {}).get("partial_rotary_factor", 0.5)
    return ModelConfig(
        n_layer=hf_config.num_hidden_layers,
        d_model=hf_config.hidden_size,
        n_head=hf_config.num_attention_heads,
        d_ff=hf_config.intermediate_size,
        rotary_dim=max(2, int(round(factor * head_dim))),
        n_ctx=hf_config.max_position_embeddings,
        vocab_size=hf_config.vocab_size,
        resid_pdrop=hf_config.resid_pdrop,
        embd_pdrop=hf_config.embd_pdrop,
        attn_pdrop=hf_config.attention_dropout or 0.0,
        layer_norm_eps=hf_config.layer_norm_eps,
        initializer_range=hf_config.initializer_range,
    )


def count_params(model, non_embedding: bool = False) -> int:
    """Parameters (optionally without the input embedding, which costs no matmul FLOPs)."""
    total = sum(p.numel() for p in model.parameters())
    if non_embedding:
        total -= model.get_input_embeddings().weight.numel()
    return total
