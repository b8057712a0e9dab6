import math

import pytest
import torch

from phiray.config import ModelConfig
from phiray.model.growth import check_growable, grow_model, grow_state_dict, layer_map, tile
from phiray.model.presets import build_model

PAPER_20_TO_24 = [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 8, 9, 10, 11, 12, 13, 13, 14, 15, 16, 17, 18, 18, 19]


def test_layer_map_20_to_24_is_the_papers_list():
    assert layer_map(24, 20) == PAPER_20_TO_24
    # The formula with halves rounded up; Python's round() (half to even) would differ at i = 3 and 15.
    assert [math.floor(i / 24 * 20 + 0.5) for i in range(24)] == PAPER_20_TO_24
    assert [round(i / 24 * 20) for i in range(24)] != PAPER_20_TO_24


def test_layer_map_edges():
    assert layer_map(5, 5) == [0, 1, 2, 3, 4]
    assert layer_map(3, 2) == [0, 1, 1]
    assert layer_map(4, 1) == [0, 0, 0, 0]
    with pytest.raises(ValueError):
        layer_map(0, 3)


def test_tile_repeats_and_scales_inputs():
    w = torch.arange(6.0).reshape(2, 3)
    grown = tile(w, (4, 6), scale_dims=(1,))
    assert grown.shape == (4, 6)
    assert torch.equal(grown[:2, :3], w / 2) and torch.equal(grown[2:, 3:], w / 2)
    assert torch.equal(tile(torch.tensor([1.0, 2.0]), (5,)), torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0]))


SMALL = ModelConfig(n_layer=2, d_model=32, n_head=2, rotary_dim=8, n_ctx=64, vocab_size=300, resid_pdrop=0.0)


def _big(n_layer: int) -> ModelConfig:
    return ModelConfig(n_layer=n_layer, d_model=64, n_head=4, rotary_dim=8, n_ctx=64, vocab_size=300, resid_pdrop=0.0)


def test_grow_fills_every_tensor_with_the_target_shapes():
    small = build_model(SMALL, seed=0)
    big = grow_model(small, _big(3))
    fresh = build_model(_big(3), seed=0)
    assert {k: v.shape for k, v in big.state_dict().items()} == {k: v.shape for k, v in fresh.state_dict().items()}
    sd_small, sd_big = small.state_dict(), big.state_dict()
    # New layer 2 copies old layer round_int(2/3*2) = 1; heads 2..3 are heads 0..1 (q rows tiled).
    assert torch.equal(
        sd_big["model.layers.2.self_attn.q_proj.bias"][:32], sd_small["model.layers.1.self_attn.q_proj.bias"]
    )
    assert torch.equal(
        sd_big["model.layers.2.self_attn.q_proj.bias"][32:], sd_small["model.layers.1.self_attn.q_proj.bias"]
    )
    for name in (
        "model.embed_tokens.weight",
        "lm_head.bias",
        "model.final_layernorm.weight",
        "model.layers.0.mlp.fc2.bias",
    ):
        assert torch.allclose(sd_big[name][..., : sd_small[name].shape[-1]], sd_small[name]), name
    assert torch.allclose(sd_big["lm_head.weight"][:, :32] * 2, sd_small["lm_head.weight"])


def test_width_growth_alone_preserves_the_function():
    small = build_model(SMALL, seed=0).eval()
    wide = grow_model(small, _big(2)).eval()
    ids = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        assert torch.allclose(small(input_ids=ids).logits, wide(input_ids=ids).logits, atol=1e-4)


def test_growth_refuses_shape_changes_it_cannot_tile():
    with pytest.raises(ValueError, match="vocabulary"):
        check_growable(SMALL, _big(3).model_copy(update={"vocab_size": 512}))
    with pytest.raises(ValueError, match="head"):
        check_growable(SMALL, ModelConfig(n_layer=3, d_model=64, n_head=2, rotary_dim=8, n_ctx=64, vocab_size=300))
    with pytest.raises(KeyError):
        grow_state_dict({}, {"model.layers.0.mlp.fc1.weight": torch.Size([4, 4])}, 1, 1)


def test_tiny_preset_grows_two_to_four_heads_of_64_like_phi1():
    """The tiny preset has phi-1's head geometry (64, rotary 32) and grows by head tiling (2 -> 4 heads)."""
    from phiray.config import load_config

    cfg = load_config("tiny")
    small_cfg, target = cfg.model, cfg.grow.target
    assert (small_cfg.d_model // small_cfg.n_head, small_cfg.rotary_dim) == (64, 32)
    assert (target.d_model // target.n_head, target.rotary_dim) == (64, 32)
    assert (small_cfg.n_head, target.n_head) == (2, 4)
    check_growable(small_cfg, target)
    small = build_model(small_cfg, seed=0).eval()
    wide = grow_model(small, target.model_copy(update={"n_layer": small_cfg.n_layer})).eval()
    q_small = small.state_dict()["model.layers.0.self_attn.q_proj.weight"]  # [2 heads * 64, d 128]
    q_wide = wide.state_dict()["model.layers.0.self_attn.q_proj.weight"]  # [4 heads * 64, d 256]
    assert torch.equal(q_wide[128:], q_wide[:128]) and torch.allclose(q_wide[:128, :128] * 2, q_small)
    ids = torch.randint(0, small_cfg.vocab_size, (2, 32))
    with torch.no_grad():  # width growth alone (heads tiled) computes what the small model computed
        assert torch.allclose(small(input_ids=ids).logits, wide(input_ids=ids).logits, atol=1e-4)
