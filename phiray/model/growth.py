"""Growth by weight reuse (phi-1 §'weight reuse'): a small trained Phi model -> a larger Phi shape.

Depth: new layer ``i`` copies old layer ``round_int(i / L_new * L_old)`` (the Gopher/phi-1 map), where
``round_int`` rounds halves *up* (``floor(x + 1/2)``, computed with exact fractions). Python's ``round``
rounds halves to even and would give ``2`` (not ``3``) at ``i = 3`` for 20 -> 24 layers, which
disagrees with the list printed in the paper; half-up reproduces it exactly.

Width and heads: every tensor is tiled (repeated) along each dimension that grows. Heads keep their
size, so ``d_model`` 1024 -> 2048 with heads 16 -> 32 makes heads 16..31 copies of heads 0..15. Along
*input* dimensions the tiled weights are divided by the tiling factor (``scale_inputs``): the grown
residual stream is the old one repeated, so every linear map, LayerNorm, attention head and the lm_head
then compute exactly what the small model computed (width growth alone is function-preserving; the
depth map is not). With a non-integer factor the tiling is cut to size and only approximate.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import torch

from phiray.config import ModelConfig
from phiray.model.presets import build_model, model_config_of


def layer_map(n_new: int, n_old: int) -> list[int]:
    """Old layer index for each new layer: ``floor(i / n_new * n_old + 1/2)``, clamped to the range."""
    if n_new < 1 or n_old < 1:
        raise ValueError("layer counts must be positive")
    return [min(n_old - 1, math.floor(Fraction(i * n_old, n_new) + Fraction(1, 2))) for i in range(n_new)]


def tile(tensor: torch.Tensor, new_shape: tuple[int, ...], scale_dims: tuple[int, ...] = ()) -> torch.Tensor:
    """Repeat ``tensor`` along each dimension up to ``new_shape`` (cut when not a multiple); dimensions
    in ``scale_dims`` are divided by their growth factor new/old."""
    if tensor.dim() != len(new_shape):
        raise ValueError(f"rank mismatch: {tuple(tensor.shape)} -> {new_shape}")
    reps = [-(-new // old) for new, old in zip(new_shape, tensor.shape)]
    out = tensor.repeat(*reps)[tuple(slice(0, n) for n in new_shape)].clone()
    for dim in scale_dims:
        factor = new_shape[dim] / tensor.shape[dim]
        if factor != 1:
            out = out / factor
    return out


def _scale_dims(name: str, tensor: torch.Tensor) -> tuple[int, ...]:
    """Linear weights [out, in] are scaled along ``in``; embeddings, biases and LayerNorms are not."""
    if tensor.dim() == 2 and "embed_tokens" not in name:
        return (1,)
    return ()


_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def grow_state_dict(
    small: dict[str, torch.Tensor], big_shapes: dict[str, torch.Size], n_old: int, n_new: int, scale_inputs: bool = True
) -> dict[str, torch.Tensor]:
    """The grown state dict: every key of ``big_shapes`` filled from ``small`` (layers by :func:`layer_map`)."""
    mapping = layer_map(n_new, n_old)
    out: dict[str, torch.Tensor] = {}
    for name, shape in big_shapes.items():
        match = _LAYER.match(name)
        source = f"model.layers.{mapping[int(match.group(1))]}.{match.group(2)}" if match else name
        if source not in small:
            raise KeyError(f"growth: no source tensor {source!r} for {name!r}")
        src = small[source]
        scale = _scale_dims(name, src) if scale_inputs else ()
        out[name] = tile(src, tuple(shape), scale)
    return out


def check_growable(old: ModelConfig, new: ModelConfig) -> None:
    """Growth keeps the vocabulary and the head size, and never shrinks."""
    if old.vocab_size != new.vocab_size:
        raise ValueError(f"growth keeps the vocabulary: {old.vocab_size} != {new.vocab_size}")
    if old.d_model // old.n_head != new.d_model // new.n_head:
        raise ValueError(
            "growth tiles heads of the same size: d_model/n_head must stay equal "
            f"({old.d_model // old.n_head} vs {new.d_model // new.n_head})"
        )
    if new.n_layer < old.n_layer or new.d_model < old.d_model:
        raise ValueError("growth cannot shrink the model")


def grow_model(small_model, target: ModelConfig, attn_implementation: str = "sdpa", scale_inputs: bool = True):
    """A new PhiForCausalLM of shape ``target`` initialised from ``small_model`` by weight reuse."""
    old = model_config_of(small_model.config)
    check_growable(old, target)
    big = build_model(target, attn_implementation, eos_token_id=small_model.config.eos_token_id)
    big_shapes = {k: v.shape for k, v in big.state_dict().items()}
    small_state = {k: v.detach().float() for k, v in small_model.state_dict().items()}
    grown = grow_state_dict(small_state, big_shapes, old.n_layer, target.n_layer, scale_inputs)
    big.load_state_dict(grown, strict=True)
    return big
