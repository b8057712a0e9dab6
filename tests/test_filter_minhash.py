"""MinHash/LSH on real standard-library files and edited copies of them."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np

from phiray.data import minhash

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _edited(text: str) -> str:
    """A near-copy: a renamed identifier, a changed docstring line, an extra function, re-indented tail."""
    lines = text.splitlines()
    lines[len(lines) // 3] = lines[len(lines) // 3] + "  # reviewed"
    return "\n".join(lines).replace("import ", "import  ", 1) + "\n\ndef _extra(x):\n    return x + 1\n"


def test_edited_copy_is_similar_and_other_module_is_not():
    encoder = (STDLIB / "json" / "encoder.py").read_text()
    decoder = (STDLIB / "json" / "decoder.py").read_text()
    sig = minhash.signature(encoder, num_perm=128)
    assert sig.dtype == np.uint64 and sig.shape == (128,)
    assert minhash.similarity(sig, minhash.signature(_edited(encoder), num_perm=128)) > 0.85
    assert minhash.similarity(sig, minhash.signature(decoder, num_perm=128)) < 0.3


def test_signature_is_deterministic_and_whitespace_blind():
    text = (STDLIB / "textwrap.py").read_text()
    relaid = text.replace("\n", "\n\n").replace("    ", "\t")
    assert np.array_equal(minhash.signature(text, 64), minhash.signature(relaid, 64))
    assert minhash.normalized_hash(text) == minhash.normalized_hash(text.replace(" ", "  "))
    assert len(minhash.signature("", 64)) == 64  # empty text: a valid (all-max) signature, no crash


def test_cluster_and_dedup_texts_keep_first_of_each_cluster():
    names = ["textwrap.py", "shlex.py", "fnmatch.py", "colorsys.py"]
    originals = [(STDLIB / n).read_text() for n in names]
    texts = originals + [_edited(originals[0]), originals[1], _edited(originals[2])]
    keep = minhash.dedup_texts(texts, threshold=0.8, num_perm=64)
    assert keep == [0, 1, 2, 3]
    reps = minhash.cluster_indices([minhash.signature(t, 64) for t in texts], threshold=0.8)
    assert reps[4] == 0 and reps[6] == 2 and reps[3] == 3


def test_band_keys_split_signature():
    bands, rows = minhash.lsh_params(0.8, 64)
    assert bands * rows <= 64
    keys = minhash.band_keys(minhash.signature("a b c d e f", 64), bands, rows)
    assert len(keys) == bands and len(set(keys)) == bands
