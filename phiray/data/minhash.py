"""MinHash signatures and LSH clustering for near-duplicate detection.

Used by the ``dedup`` stage (bucketing on Ray Data) and by ``synthesize`` (de-duplicating generated
samples in-process). Hashing is ``datasketch``'s; this module adds the shingling, the banding that turns
a signature into LSH bucket keys, and a union-find that turns verified candidate pairs into clusters.

    sigs = [signature(t, num_perm=64, shingle_size=5) for t in texts]
    rep = cluster_indices(sigs, threshold=0.8)      # rep[i] == i for representatives
"""

from __future__ import annotations

import hashlib
import re
import zlib
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

# Words, numbers and single punctuation marks: code's structure survives, whitespace does not.
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Lower-cased word/punctuation tokens (whitespace and layout are ignored)."""
    return _TOKEN.findall(text.lower())


def normalized_hash(text: str) -> str:
    """sha256 of the text with all whitespace runs collapsed: the key for *exact* duplicates."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8", "surrogatepass")).hexdigest()


def shingles(text: str, size: int = 5) -> set[bytes]:
    """The set of ``size``-token shingles (one shingle of everything when the text is shorter)."""
    toks = tokens(text)
    if not toks:
        return set()
    if len(toks) <= size:
        return {" ".join(toks).encode()}
    return {" ".join(toks[i : i + size]).encode() for i in range(len(toks) - size + 1)}


@lru_cache(maxsize=16)
def _template(num_perm: int, seed: int):
    # Building the permutations is the expensive part of a MinHash; copies of a template reuse them.
    from datasketch import MinHash

    # crc32 (C, deterministic across processes) instead of datasketch's default sha1-in-Python: the
    # per-shingle hash dominated the cost 2:1 and needs no cryptographic strength here.
    return MinHash(num_perm=num_perm, seed=seed, hashfunc=zlib.crc32)


def signature(text: str, num_perm: int = 128, shingle_size: int = 5, seed: int = 1) -> np.ndarray:
    """MinHash signature (``num_perm`` uint64 values) of the text's shingle set."""
    mh = _template(num_perm, seed).copy()
    sh = shingles(text, shingle_size)
    if sh:
        mh.update_batch(list(sh))
    return np.asarray(mh.hashvalues, dtype=np.uint64)


def similarity(sig_a: Sequence[int] | np.ndarray, sig_b: Sequence[int] | np.ndarray) -> float:
    """Estimated Jaccard similarity: the fraction of equal signature positions."""
    a, b = np.asarray(sig_a, dtype=np.uint64), np.asarray(sig_b, dtype=np.uint64)
    if a.shape != b.shape:
        raise ValueError(f"signatures differ in length: {a.shape} vs {b.shape}")
    return float(np.mean(a == b))


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising false positives + negatives at ``threshold`` (datasketch's choice)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return int(lsh.b), int(lsh.r)


def band_keys(sig: Sequence[int] | np.ndarray, bands: int, rows: int) -> list[str]:
    """One bucket key per band: ``"<band>:<hash of the band's values>"``. Documents sharing a key are
    LSH candidates."""
    arr = np.ascontiguousarray(np.asarray(sig, dtype=np.uint64))
    out = []
    for band in range(bands):
        chunk = arr[band * rows : (band + 1) * rows].tobytes()
        out.append(f"{band}:{hashlib.blake2b(chunk, digest_size=12).hexdigest()}")
    return out


class UnionFind:
    """Disjoint sets over hashable keys; the representative of a set is its smallest key (deterministic)."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo

    def groups(self) -> dict:
        """key -> representative, for every key ever seen."""
        return {x: self.find(x) for x in list(self.parent)}


def verified_pairs(
    members: Sequence[tuple[object, np.ndarray]], threshold: float, max_pairwise: int = 64
) -> list[tuple[object, object, float]]:
    """Candidate pairs from one LSH bucket whose estimated Jaccard is >= threshold.

    Small buckets compare all pairs; big ones (boilerplate shared by many files) compare every member
    with the bucket's smallest key only, which keeps the cost linear.
    """
    members = sorted(members, key=lambda m: m[0])
    pairs = []
    if len(members) <= max_pairwise:
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                sim = similarity(members[i][1], members[j][1])
                if sim >= threshold:
                    pairs.append((members[i][0], members[j][0], sim))
    else:
        head_key, head_sig = members[0]
        for key, sig in members[1:]:
            sim = similarity(head_sig, sig)
            if sim >= threshold:
                pairs.append((head_key, key, sim))
    return pairs


def cluster_pairs(pairs: Iterable[tuple[object, object, float]]) -> dict:
    """key -> representative (the cluster's smallest key) for every key in a verified pair."""
    uf = UnionFind()
    for a, b, _ in pairs:
        uf.union(a, b)
    return uf.groups()


def cluster_indices(signatures: Sequence[np.ndarray], threshold: float = 0.8) -> list[int]:
    """In-process LSH clustering: ``rep[i]`` is the index of item i's representative (``rep[i] == i`` for
    the ones to keep; the representative is the earliest item of its cluster)."""
    if not signatures:
        return []
    num_perm = len(signatures[0])
    bands, rows = lsh_params(threshold, num_perm)
    buckets: dict[str, list[tuple[int, np.ndarray]]] = {}
    for idx, sig in enumerate(signatures):
        for key in band_keys(sig, bands, rows):
            buckets.setdefault(key, []).append((idx, sig))
    pairs = [p for members in buckets.values() if len(members) > 1 for p in verified_pairs(members, threshold)]
    groups = cluster_pairs(pairs)
    return [groups.get(i, i) for i in range(len(signatures))]


def dedup_texts(
    texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, shingle_size: int = 5, seed: int = 1
) -> list[int]:
    """Indices of the texts to keep (first of each exact/near-duplicate cluster), in order."""
    sigs = [signature(t, num_perm=num_perm, shingle_size=shingle_size, seed=seed) for t in texts]
    exact: dict[str, int] = {}
    reps = cluster_indices(sigs, threshold)
    keep = []
    for i, text in enumerate(texts):
        first = exact.setdefault(normalized_hash(text), i)
        if first == i and reps[i] == i:
            keep.append(i)
    return keep
