import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from phiray.config import ModelConfig
from phiray.model.io import TRAINING_INFO, load_model, save_model
from phiray.model.presets import SHAPES, build_model, count_params, phi_config, resolve_attn_implementation, shape
from phiray.model.tokenizer import WHITESPACE_RUNS, build_tokenizer, codegen_tokenizer, train_bpe_tokenizer

CODE = 'def add(a, b):\n    """Add."""\n        return a  +  b\n\t\tpass\n'


def test_codegen_tokenizer_is_gpt2_plus_whitespace_runs(tmp_path):
    tok = codegen_tokenizer()
    assert len(tok) == 50257 + len(WHITESPACE_RUNS) == 50295 and tok.eos_token_id == 50256
    ids = tok(CODE)["input_ids"]
    assert tok.convert_tokens_to_ids("        ") in ids  # an 8-space run is one token
    assert tok.decode(ids) == CODE
    assert tok("hello world")["input_ids"] == [31373, 995]  # GPT-2's ids
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(CODE)["input_ids"] == ids and again.eos_token == "<|endoftext|>"


def test_bpe_tokenizer_trains_on_texts_and_round_trips():
    tok = train_bpe_tokenizer([CODE] * 50 + ["print('hello world')\n"] * 50, vocab_size=300)
    assert 256 < len(tok) <= 300 and tok.eos_token_id == 0
    assert tok.decode(tok("x = 'é ✓'\n")["input_ids"]) == "x = 'é ✓'\n"  # byte level: nothing unknown
    with pytest.raises(ValueError):
        build_tokenizer("bpe", 300)


def test_presets_have_the_papers_sizes():
    with torch.device("meta"):
        sizes = {name: count_params(build_model(shape(name))) for name in ("phi-1-small", "phi-1", "phi-2")}
    assert 0.3e9 < sizes["phi-1-small"] < 0.45e9
    assert 1.2e9 < sizes["phi-1"] < 1.5e9
    assert 2.5e9 < sizes["phi-2"] < 2.9e9
    cfg = phi_config(shape("phi-1"))
    assert cfg.rope_parameters["partial_rotary_factor"] == 0.5 and cfg.vocab_size == 51200
    assert set(SHAPES) == {"tiny", "phi-1-small", "phi-1", "phi-1.5", "phi-2"}
    assert resolve_attn_implementation("auto", on_gpu=False) == "sdpa"


def test_hf_round_trip_same_logits(tmp_path):
    tok = train_bpe_tokenizer([CODE] * 50, vocab_size=300)
    tok_dir = tmp_path / "tok"
    tok.save_pretrained(tok_dir)
    mc = ModelConfig(n_layer=2, d_model=32, n_head=4, rotary_dim=4, n_ctx=64, vocab_size=320, resid_pdrop=0.0)
    model = build_model(mc, seed=1, eos_token_id=tok.eos_token_id).eval()
    out = save_model(model, tmp_path / "model", tokenizer_dir=tok_dir, info={"steps": 3})
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    plain_tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([plain_tok(CODE)["input_ids"]])
    assert ids.tolist()[0] == tok(CODE)["input_ids"]
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        assert torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-6)
        assert torch.allclose(load_model(out)(input_ids=ids).logits, expected, atol=1e-6)
    assert (tmp_path / "model" / TRAINING_INFO).exists()
    (tmp_path / "no-tokenizer").mkdir()
    with pytest.raises(FileNotFoundError, match="tokenizer"):  # never a model directory without its tokenizer
        save_model(model, tmp_path / "bare", tokenizer_dir=tmp_path / "no-tokenizer")
    assert not (tmp_path / "bare").exists()
