"""Batched text generation for phiray/HF causal LMs in process (transformers): the sweep's short trials and
`phiray eval`'s local engine (`phiray serve` and batch generation run on vLLM).

    from phiray.model.generate import Generator, SamplingParams
    gen = Generator.load("runs/tiny/finetune/model")             # device="auto": CUDA if present
    [[c]] = gen.generate(["def add(a, b):\n"], SamplingParams(max_tokens=64, temperature=0.0, stop=["\ndef "]))
    c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason  # finish_reason: "stop" | "length"

    for events in gen.stream(prompts, params):                     # one list of TextDelta per decoding step
        ...

Every prompt gets `params.n` completions (rows of one batch). Each row has its own temperature, top_p,
max_tokens, stop sequences and random generator: a request with `seed=s` draws choice j from a generator
seeded with `s + j`, so its output does not depend on what else shares the batch (up to float rounding of
padded attention). Temperature 0 is greedy. Stop sequences are cut from the text and never streamed: text
that could still be the start of a stop sequence is held back until it cannot.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Iterator, Sequence

__all__ = ["Completion", "Generator", "PromptTooLong", "SamplingParams", "TextDelta"]


class PromptTooLong(ValueError):
    """prompt tokens + max_tokens exceed the model's context window."""


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.n < 1:
            raise ValueError("max_tokens and n must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        self.stop = [s for s in ([self.stop] if isinstance(self.stop, str) else list(self.stop)) if s]


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop sequence) | "length" (max_tokens)


@dataclass
class TextDelta:
    """New text for one choice of one prompt; `finish_reason` is set on the choice's last delta."""

    prompt_index: int
    choice_index: int
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class _Row:
    prompt_index: int
    choice_index: int
    ids: list[int]
    params: SamplingParams
    rng: random.Random
    out_ids: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    finish: str | None = None


class Generator:
    """A causal LM + tokenizer, ready for batched sampling. Thread-safe: one batch runs at a time."""

    def __init__(self, model, tokenizer, device: str = "cpu", model_path: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.model_path = model_path
        self.max_context = int(getattr(model.config, "max_position_embeddings", 2048))
        self.eos_token_id = tokenizer.eos_token_id
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str, device: str = "auto", dtype: str | None = None) -> "Generator":
        """Load `save_pretrained` weights + tokenizer from a local directory (no hub access needed)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = (
            getattr(torch, dtype) if dtype else (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        )
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device).eval().requires_grad_(False)
        return cls(model, tokenizer, device=device, model_path=str(path))

    def encode(self, prompt: str, max_tokens: int = 0) -> list[int]:
        """Token ids of `prompt`; raises PromptTooLong if ids + max_tokens do not fit the context."""
        ids = self.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]  # length checked below
        if not ids:  # an empty prompt starts from EOS, as GPT-style models were trained
            ids = [self.eos_token_id]
        if len(ids) + max_tokens > self.max_context:
            raise PromptTooLong(
                f"This model's maximum context length is {self.max_context} tokens; the prompt has "
                f"{len(ids)} tokens and max_tokens is {max_tokens}."
            )
        return ids

    def generate(
        self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[list[Completion]]:
        """For each prompt, its `n` completions (choice order)."""
        params_list = _per_prompt(prompts, params)
        texts = [[""] * p.n for p in params_list]
        results: list[list[Completion | None]] = [[None] * p.n for p in params_list]
        for events in self.stream(prompts, params_list):
            for ev in events:
                texts[ev.prompt_index][ev.choice_index] += ev.text
                if ev.finish_reason:
                    results[ev.prompt_index][ev.choice_index] = Completion(
                        texts[ev.prompt_index][ev.choice_index],
                        ev.prompt_tokens,
                        ev.completion_tokens,
                        ev.finish_reason,
                    )
        return results  # type: ignore[return-value]

    def stream(
        self, prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]
    ) -> Iterator[list[TextDelta]]:
        """Decode all prompts x n choices as one batch, yielding each step's new text (possibly empty list)."""
        params_list = _per_prompt(prompts, params)
        encoded = [self.encode(p, sp.max_tokens) for p, sp in zip(prompts, params_list)]
        rows = []
        for i, (ids, sp) in enumerate(zip(encoded, params_list)):
            for j in range(sp.n):
                seed = sp.seed + j if sp.seed is not None else random.getrandbits(63)
                rows.append(_Row(i, j, ids, sp, random.Random(seed)))
        with self._lock:
            yield from self._decode(rows)

    def _decode(self, rows: list[_Row]) -> Iterator[list[TextDelta]]:
        import torch

        width = max(len(r.ids) for r in rows)
        pad = self.tokenizer.pad_token_id
        # Left padding: every row's next token is at the last position.
        input_ids = torch.tensor([[pad] * (width - len(r.ids)) + r.ids for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in rows], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        past = None
        for _ in range(max(r.params.max_tokens for r in rows)):
            # Inference mode per step, not around the loop: a stream's steps may run on different threads
            # (Serve drives it from a thread pool) and the mode is thread-local.
            with torch.inference_mode():
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=past,
                    use_cache=True,
                )
                past = out.past_key_values
                next_ids = _sample(out.logits[:, -1, :].float(), rows)
            events = [
                ev
                for row, tok in zip(rows, next_ids)
                if row.finish is None
                for ev in [self._advance(row, tok)]
                if ev is not None
            ]
            yield events
            if all(r.finish for r in rows):
                return
            input_ids = torch.tensor(next_ids, device=self.device).unsqueeze(1)
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            positions = positions[:, -1:] + 1

    def _advance(self, row: _Row, token: int) -> TextDelta | None:
        """Append one token to a row; return the text that is now safe to emit (None if nothing new)."""
        sp = row.params
        if token == self.eos_token_id:
            row.finish = "stop"
        else:
            row.out_ids.append(token)
            row.text = self.tokenizer.decode(row.out_ids, skip_special_tokens=True)
            cut = min((i for i in (row.text.find(s) for s in sp.stop) if i >= 0), default=-1)
            if cut >= 0:
                row.text, row.finish = row.text[:cut], "stop"
            elif len(row.out_ids) >= sp.max_tokens:
                row.finish = "length"
        if row.finish:
            safe = len(row.text)
        else:
            # Hold back a possible stop-sequence prefix and an incomplete UTF-8 character.
            hold = max((len(s) - 1 for s in sp.stop), default=0)
            safe = len(row.text.rstrip("\ufffd")) - hold
        delta = row.text[row.emitted : safe] if safe > row.emitted else ""
        row.emitted = max(row.emitted, safe)
        if not delta and not row.finish:
            return None
        n_tokens = len(row.out_ids) + (1 if token == self.eos_token_id else 0)
        return TextDelta(row.prompt_index, row.choice_index, delta, row.finish, len(row.ids), n_tokens)


def _per_prompt(prompts: Sequence[str], params: SamplingParams | Sequence[SamplingParams]) -> list[SamplingParams]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    if isinstance(params, SamplingParams):
        return [params] * len(prompts)
    if len(params) != len(prompts):
        raise ValueError("one SamplingParams per prompt")
    return list(params)


def _sample(logits, rows: list[_Row]) -> list[int]:
    """Per-row temperature / top-p sampling (temperature 0: argmax), each row with its own generator.

    One uniform draw per row from the row's own `random.Random`, then an inverse-CDF lookup for the whole
    batch at once: per-row torch.multinomial calls cost more than the model's forward pass at batch 32.
    """
    import torch

    temps = torch.tensor([r.params.temperature for r in rows], dtype=logits.dtype, device=logits.device)
    greedy = logits.argmax(-1)
    probs = torch.softmax(logits / temps.clamp(min=1e-5).unsqueeze(1), dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    top_p = torch.tensor([r.params.top_p for r in rows], dtype=logits.dtype, device=logits.device).unsqueeze(1)
    # Drop tokens once the mass before them already reaches top_p (the top token always stays).
    sorted_probs[(sorted_probs.cumsum(-1) - sorted_probs) >= top_p] = 0.0
    cdf = sorted_probs.cumsum(-1)
    draws = torch.tensor([r.rng.random() for r in rows], dtype=cdf.dtype, device=cdf.device).unsqueeze(1)
    picked = torch.searchsorted(cdf, draws * cdf[:, -1:]).clamp(max=cdf.shape[1] - 1)
    sampled = order.gather(1, picked).squeeze(1)
    use_greedy = torch.tensor([r.params.temperature == 0 for r in rows], device=logits.device)
    return torch.where(use_greedy, greedy, sampled).tolist()
