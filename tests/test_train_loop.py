import glob

import numpy as np
import pytest
import torch
from contract_checks import contract_problems
from model_dir_checks import assert_self_contained
from tracking_checks import read_scalars
from train_fixtures import small_config, tokenized_run
from transformers import AutoModelForCausalLM

from phiray.model.tokenizer import load_tokenizer
from phiray.train.data import MixtureSampler, TokenSource
from phiray.train.driver import build_spec, resolve_mixture
from phiray.train.loop import train_single_process
from phiray.train.schedule import (
    attention_flops_per_token,
    deepspeed_config,
    grad_accumulation,
    mfu,
    peak_flops,
    warmup_linear_decay,
)


def test_schedule_warms_up_then_decays_linearly():
    f = warmup_linear_decay(warmup_steps=4, max_steps=14, min_lr_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5) and f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)


def test_batch_arithmetic_and_deepspeed_config():
    assert grad_accumulation(16, 4, 2) == 2
    with pytest.raises(ValueError, match="multiple"):
        grad_accumulation(10, 4, 2)
    ds = deepspeed_config(micro_batch=4, grad_accum=2, world_size=2, zero_stage=2, grad_clip=1.0, precision="fp32")
    assert ds["train_batch_size"] == 16 and ds["zero_optimization"]["stage"] == 2 and not ds["bf16"]["enabled"]
    assert (
        deepspeed_config(
            micro_batch=1,
            grad_accum=1,
            world_size=1,
            zero_stage=3,
            grad_clip=0,
            precision="bf16",
            offload_optimizer=True,
        )["zero_optimization"]["offload_optimizer"]["device"]
        == "cpu"
    )


def test_mfu_uses_the_device_peak():
    assert peak_flops(None, "NVIDIA H100 80GB HBM3") == 989e12 and peak_flops(None, None) is None
    assert peak_flops(2e12, "cpu") == 2e12
    assert mfu(1_000_000, 1000.0, 6e12, 1) == pytest.approx(1e-3) and mfu(1, 1.0, None, 1) is None


def test_mfu_counts_attention_flops():
    # phi-1 (24 layers, d 2048) at seq 2048: attention adds 12*24*2048*2048 = 1.21e9 FLOPs per token to 6N.
    assert attention_flops_per_token(24, 2048, 2048) == 12 * 24 * 2048 * 2048
    n, tps, peak = 1_300_000_000, 10_000.0, 989e12
    weights_only = mfu(n, tps, peak, 1)
    with_attention = mfu(n, tps, peak, 1, n_layer=24, d_model=2048, seq_len=2048)
    assert with_attention == pytest.approx((6 * n + 12 * 24 * 2048 * 2048) * tps / peak)
    assert with_attention / weights_only == pytest.approx(1 + 12 * 24 * 2048 * 2048 / (6 * n))


def test_finetune_loss_runs_the_head_on_labelled_positions_only():
    """Loss on the completion only (exercises_sft): the head runs on the labelled positions, with the same
    loss and gradients as the full logits, and leaves no hook behind; fully labelled rows take the plain path."""
    from transformers import PhiConfig, PhiForCausalLM

    from phiray.train.engine import _mean_loss, lm_loss_sum

    torch.manual_seed(0)
    config = PhiConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    model = PhiForCausalLM(config)
    ids = torch.randint(0, 64, (3, 16))
    sft = ids.clone()
    sft[:, :5], sft[1, 9:12], sft[2, 13:] = -100, -100, -100
    calls = []
    head = model.get_output_embeddings()
    head.register_forward_hook(lambda _m, _a, out: calls.append(tuple(out.shape)))
    for labels, head_rows in ((sft, int((sft[:, 1:] != -100).sum())), (ids, None)):
        grads = []
        for loss_of in (
            lambda: _mean_loss(model, ids, labels),
            lambda: torch.div(*lm_loss_sum(model(input_ids=ids).logits, labels)),
        ):
            model.zero_grad()
            loss = loss_of()
            loss.backward()
            grads.append((float(loss), torch.cat([p.grad.flatten() for p in model.parameters()])))
        assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
        assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)
        assert calls[-2] == ((head_rows, 64) if head_rows else (3, 16, 64))
    assert not head._forward_pre_hooks


def test_mixture_sampler_is_deterministic_and_weighted(ray_session, tmp_path_factory):
    rd = tokenized_run(tmp_path_factory.getbasetemp())
    weights, missing = resolve_mixture(rd, {"code": 3.0, "textbooks": 1.0, "nope": 1.0})
    assert weights == {"code": 0.75, "textbooks": 0.25} and missing == ["nope"]
    sources = {n: TokenSource(rd.fs, rd.path(f"tokenize/{n}/train")) for n in weights}
    sampler = MixtureSampler(sources, weights, seed=1, world=2)
    a, _, counts = sampler.batch(step=3, micro=0, rank=1, size=400)
    b, _, _ = sampler.batch(step=3, micro=0, rank=1, size=400)
    assert np.array_equal(a, b) and 250 < counts["code"] < 350
    assert not np.array_equal(a, sampler.batch(step=3, micro=0, rank=0, size=400)[0])


def test_single_process_loop_learns(ray_session, tmp_path_factory):
    rd = tokenized_run(tmp_path_factory.getbasetemp())
    cfg = small_config(
        "pretrain.max_steps=30",
        "pretrain.eval_every=15",
        "pretrain.log_every=5",
        "pretrain.global_batch_size=8",
        "pretrain.micro_batch_size=8",
    )
    history = train_single_process(build_spec(cfg, rd, "pretrain", output_dir="scratch/model"))
    val = [v["val_loss"] for v in history["val"]]
    assert [v["step"] for v in history["val"]] == [0, 15, 30] and val[-1] < val[0] - 0.5
    assert [r["step"] for r in history["train"]] == [5, 10, 15, 20, 25, 30]
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in history["train"])


def test_ray_train_deepspeed_two_workers_short_fit(ray_session, tmp_path_factory):
    """One real Ray Train fit: 2 workers, DeepSpeed ZeRO-2 on gloo, checkpoints, HF-loadable final model."""
    from phiray.stages import pretrain

    rd = tokenized_run(tmp_path_factory.getbasetemp())
    cfg = small_config(
        "pretrain.max_steps=12",
        "pretrain.eval_every=6",
        "pretrain.log_every=3",
        "pretrain.checkpoint_every=6",
        "train.num_workers=2",
        "train.strategy=deepspeed",
        # Half a CPU each: a fraction of a CPU still held by an earlier module's actor (the session
        # cluster has 2) must not leave the worker group pending for ever.
        "train.cpus_per_worker=0.5",
        "train.peak_flops_per_device=1e12",
    )  # a peak for MFU on CPU (speed-only: outputs unchanged)
    manifest = pretrain.run(cfg, rd)
    assert not contract_problems(rd, ["pretrain"])
    m = manifest.metrics
    assert m["engine_global_steps"] == 12 and m["world_size"] == 2 and m["strategy"] == "deepspeed"
    assert [r["step"] for r in m["curve"]["train"]] == [3, 6, 9, 12] and m["resumes"] == []
    assert [v["step"] for v in m["curve"]["val"]] == [0, 6, 12]
    assert manifest.headline["val_loss_final"] < manifest.headline["val_loss_start"]
    assert m["checkpoint"] and "checkpoint_" in m["checkpoint"]
    model = AutoModelForCausalLM.from_pretrained(rd.path("pretrain/model")).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    assert model(input_ids=ids).logits.shape == (1, 4, 1024)
    card = rd.read_text("pretrain/model/README.md")  # the model card: data, config, lineage
    facts = rd.read_json("pretrain/model/model_card.json")
    assert facts["stage"] == "pretrain" and facts["training"]["steps"] == 12 and facts["config_hash"]
    assert facts["data"]["tokens_total"] == 12 * cfg.pretrain.global_batch_size * 128
    assert abs(sum(facts["data"]["tokens_seen"].values()) - facts["data"]["tokens_total"]) <= len(
        facts["data"]["tokens_seen"]
    )
    assert "## Training data" in card and "## Lineage" in card and facts["config_hash"] in card
    # Every model directory is self-contained: the final one and each checkpoint's hf/.
    tokenizer = load_tokenizer(rd.path("tokenize/tokenizer"))
    checkpoint_hf = sorted(glob.glob(rd.path("pretrain/checkpoints/pretrain-*/checkpoint_*/hf")))
    assert len(checkpoint_hf) == 2  # steps 6 and 12 (num_to_keep=2)
    for directory in [rd.path("pretrain/model")] + checkpoint_hf:
        assert_self_contained(directory, tokenizer)
    # TensorBoard, through Ray Train's callback: every train record and evaluation, at its optimizer step.
    scalars = read_scalars(rd.path("pretrain/tensorboard"))
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/mfu"):
        assert [step for step, _ in scalars[tag]] == [3, 6, 9, 12], tag
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["loss"] for r in m["curve"]["train"]], rel=1e-6)
    assert [v for _, v in scalars["train/mfu"]] == pytest.approx([r["mfu"] for r in m["curve"]["train"]], rel=1e-6)
    sources = [k.split("/", 1)[1] for k in m["curve"]["val"][0] if k.startswith("val_loss/")]
    for tag in ["eval/val_loss"] + [f"eval/val_loss/{s}" for s in sources]:
        assert [step for step, _ in scalars[tag]] == [0, 6, 12], tag
    assert [v for _, v in scalars["eval/val_loss"]] == pytest.approx(
        [v["val_loss"] for v in m["curve"]["val"]], rel=1e-6
    )
