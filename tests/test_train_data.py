"""phiray.train.data: the streamed, deterministic training loader (no Ray needed)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from phiray.train.data import MixtureSampler, TokenSource, interleaving, mixture_weights


def _shards(root, name: str, n_rows: int, files: int = 3, group: int = 16, seq: int = 8) -> TokenSource:
    """``n_rows`` packed sequences whose first token is the row's global index (so rows can be told apart)."""
    out = root / name / "train"
    out.mkdir(parents=True)
    per_file = -(-n_rows // files)
    for f in range(files):
        rows = range(f * per_file, min(n_rows, (f + 1) * per_file))
        ids = [[r] + [7] * (seq - 1) for r in rows]
        pq.write_table(
            pa.table({"input_ids": pa.array(ids, pa.list_(pa.int32()))}),
            out / f"part-{f}.parquet",
            row_group_size=group,
        )
    return TokenSource(pafs.LocalFileSystem(), str(out))


def test_an_epoch_visits_every_sequence_once_reading_each_group_once(tmp_path):
    src = _shards(tmp_path, "code", 200)
    sampler = MixtureSampler({"code": src}, {"code": 1.0}, seed=3, micro_batches=2, world=2, read_ahead=False)
    seen = []
    for step in range(10):  # 10 steps x 2 micro x 2 ranks x 5 = 200 = one epoch
        for micro in range(2):
            for rank in range(2):
                ids, labels, counts = sampler.batch(step, micro, rank, 5)
                assert np.array_equal(ids, labels) and counts == {"code": 5}
                seen += ids[:, 0].tolist()
    assert sorted(seen) == list(range(200)) and seen != list(range(200))
    assert src.groups_read <= src.n_groups + 4  # runs of contiguous sequences: no file read per row


def test_resumed_sampler_gives_the_exact_batch_sequence(tmp_path):
    code, books = _shards(tmp_path, "code", 300), _shards(tmp_path, "books", 50)

    def run(steps, read_ahead):
        sampler = MixtureSampler(
            {"code": code, "books": books},
            {"code": 3.0, "books": 1.0},
            seed=11,
            micro_batches=2,
            world=1,
            read_ahead=read_ahead,
        )
        return [sampler.batch(s, m, 0, 8)[0] for s in steps for m in range(2)]

    full = run(range(40), True)  # 40 steps: several epochs of `books`
    resumed = run(range(25, 40), True)  # a fresh process restarting at step 25
    assert all(np.array_equal(a, b) for a, b in zip(full[50:], resumed))
    assert all(np.array_equal(a, b) for a, b in zip(full, run(range(40), False)))
    firsts = np.concatenate(full)[:, 0]
    assert len(firsts) == 640 and not all(np.array_equal(full[0], b) for b in full[1:])


def test_mixture_by_share_and_by_passes(tmp_path):
    code, books = _shards(tmp_path, "code", 300), _shards(tmp_path, "books", 100)
    sources = {"code": code, "books": books}
    assert mixture_weights(sources, {"code": 3.0, "books": 1.0}) == {"code": 0.75, "books": 0.25}
    by_passes = mixture_weights(sources, {"code": 1.0, "books": 2.0}, by="passes")  # 300 vs 200 sequences
    assert by_passes == pytest.approx({"code": 0.6, "books": 0.4})
    sampler = MixtureSampler(sources, {"code": 1.0, "books": 2.0}, seed=0, by="passes", read_ahead=False)
    _, _, counts = sampler.batch(0, 0, 0, 1000)
    assert counts == {"code": 600, "books": 400}
    pattern = interleaving([0.7, 0.2, 0.1])
    assert np.bincount(pattern).tolist() == [700, 200, 100]
    assert np.bincount(pattern[:100]).tolist() == [70, 20, 10]  # spread evenly, not in runs
    with pytest.raises(ValueError):
        sampler.batch(0, 1, 0, 8)  # micro-batch 1 of a 1-micro-batch step
