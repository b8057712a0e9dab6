"""Finetuning step: the output head on the labelled positions only vs the full logits.

phiray's finetune loss is on the completion only (``exercises_sft``: labels -100 on the prompt and the
padding), so ``phiray.train.engine._mean_loss`` runs the vocabulary-sized head on the labelled positions
alone. This times a forward + backward of a micro-batch both ways, interleaved (A B A B ...) on the same
model and batch, and checks the losses agree. The batch is built like ``exercises_sft``: whole examples
packed greedily, prompts and padding unlabelled, with ``--labelled`` of the positions labelled (the tiny
run's share is 0.31).

    python benchmarks/sft_head.py                              # tiny's widths: d128 x 2 and d256 x 3
    python benchmarks/sft_head.py --shapes 2048x24 --seq-len 2048 --micro-batch 4 --labelled 0.4  # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def _batch(micro: int, seq_len: int, vocab: int, labelled: float, seed: int):
    """Packed examples: each a prompt (unlabelled) then a completion (labelled), the row's tail padding."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (micro, seq_len), generator=gen)
    labels = torch.full_like(ids, -100)
    for row in range(micro):
        pos = 0
        while pos < int(seq_len * 0.9):
            length = int(torch.randint(40, 120, (1,), generator=gen))
            done = min(seq_len, pos + length)
            start = pos + int((1 - labelled / 0.9) * (done - pos))  # completion share of the used positions
            labels[row, start:done] = ids[row, start:done]
            pos = done
    return ids, labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="128x2,256x3", help="d_model x n_layer, comma-separated")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--labelled", type=float, default=0.31)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    from transformers import PhiConfig, PhiForCausalLM

    from phiray.train.engine import _mean_loss, lm_loss_sum

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ids, labels = (t.to(device) for t in _batch(args.micro_batch, args.seq_len, args.vocab, args.labelled, 0))
    share = float((labels[:, 1:] != -100).float().mean())
    for shape in args.shapes.split(","):
        d, n_layer = (int(x) for x in shape.split("x"))
        cfg = PhiConfig(
            vocab_size=args.vocab,
            hidden_size=d,
            intermediate_size=4 * d,
            num_hidden_layers=n_layer,
            num_attention_heads=max(1, d // 64),
            partial_rotary_factor=32 / 64,
            max_position_embeddings=args.seq_len,
        )
        model = PhiForCausalLM(cfg).to(device)

        def full():
            total, count = lm_loss_sum(model(input_ids=ids).logits, labels)
            return total / count

        ways = {"full": full, "labelled_only": lambda: _mean_loss(model, ids, labels)}
        times, losses = {k: [] for k in ways}, {}
        for rep in range(args.repeats + 1):
            for name, way in ways.items():
                model.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                loss = way()
                loss.backward()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if rep:  # the first round warms up
                    times[name].append(time.perf_counter() - t0)
                losses[name] = float(loss)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(
            json.dumps(
                {
                    "shape": f"d{d} x {n_layer}",
                    "device": device.type,
                    "threads": args.threads,
                    "labelled_share": round(share, 3),
                    "s_per_micro_step": {k: round(v, 4) for k, v in med.items()},
                    "speedup": round(med["full"] / med["labelled_only"], 2),
                    "loss_full": round(losses["full"], 5),
                    "loss_labelled_only": round(losses["labelled_only"], 5),
                    "load_avg": os.getloadavg()[0],
                }
            )
        )


if __name__ == "__main__":
    main()
