import logging

import numpy as np
import pyarrow.parquet as pq
from contract_checks import contract_problems
from train_fixtures import make_fake_run, small_config, tokenized_run

from phiray.data.packing import IGNORE, in_validation, pack_examples, pack_stream, sequences_table
from phiray.model.tokenizer import load_tokenizer
from phiray.train.data import TokenSource


def test_pack_stream_puts_eos_between_documents_and_wraps_the_tail():
    seqs, stats = pack_stream([[1, 2, 3], [4, 5]], seq_len=4, eos_id=0)
    assert seqs.tolist() == [[1, 2, 3, 0], [4, 5, 0, 1]]  # the last sequence is completed from the start
    assert stats == {"documents": 2, "tokens": 7, "wrapped": 1} and seqs.dtype == np.int32
    assert pack_stream([], 4, 0)[0].shape == (0, 4)


def test_pack_examples_masks_prompts_and_padding():
    ids, labels, stats = pack_examples([([1, 2], [3]), ([4], [5, 6]), ([7] * 9, [8])], seq_len=6, eos_id=0)
    assert ids.tolist()[0] == [1, 2, 3, 0, 4, 5] or ids.shape[1] == 6
    assert ids.tolist() == [[1, 2, 3, 0, 0, 0], [4, 5, 6, 0, 0, 0], [7, 7, 7, 7, 7, 7]]
    assert labels.tolist()[:2] == [[IGNORE, IGNORE, 3, 0, IGNORE, IGNORE], [IGNORE, 5, 6, 0, IGNORE, IGNORE]]
    assert labels.tolist()[2] == [IGNORE] * 6 and stats["truncated"] == 1 and stats["examples"] == 3
    table = sequences_table(ids, labels)
    assert table.column("input_ids").type.value_type.bit_width == 32 and table.num_rows == 3


def test_validation_split_is_seeded_and_stable():
    ids = [f"doc{i}" for i in range(2000)]
    val = [i for i in ids if in_validation(i, 0.1, seed=1)]
    assert 150 < len(val) < 250 and val == [i for i in ids if in_validation(i, 0.1, seed=1)]
    assert val != [i for i in ids if in_validation(i, 0.1, seed=2)]
    assert not any(in_validation(i, 0.0, 1) for i in ids)


def test_tokenize_stage_packs_every_source(ray_session, tmp_path_factory):
    rd = tokenized_run(tmp_path_factory.getbasetemp())
    manifest = rd.read_manifest("tokenize")
    tok = load_tokenizer(rd.path("tokenize/tokenizer"))
    assert len(tok) == 1024 and manifest.metrics["skipped_sources"] == []
    for name in ("code", "textbooks", "exercises", "exercises_sft", "unfiltered"):
        stats = manifest.metrics["sources"][name]
        assert stats["train"] > 0 and stats["val"] > 0 and stats["train_tokens"] == stats["train"] * 128, name
        source = TokenSource(rd.fs, rd.path(f"tokenize/{name}/train"))
        ids, labels = source.take(np.arange(len(source)))
        assert ids.shape == (len(source), 128) and (ids == tok.eos_token_id).any()
    table = pq.read_table(rd.path("tokenize/code/train"))
    assert str(table.schema.field("input_ids").type) == "list<element: int32>"
    # Finetuning rows: the loss is on completions only (prompts and padding are -100).
    sft = TokenSource(rd.fs, rd.path("tokenize/exercises_sft/train"))
    ids, labels = sft.take(np.arange(len(sft)))
    assert (labels == IGNORE).any() and (labels != IGNORE).any()
    row = ids[0][labels[0] != IGNORE]
    assert "return a" in tok.decode(row) and '"""' not in tok.decode(row)
    assert not contract_problems(rd, ["tokenize"])


def test_tokenize_skips_missing_sources_with_a_warning(ray_session, tmp_path, caplog):
    from phiray.stages import tokenize

    rd = make_fake_run(tmp_path / "run", n_code=6, n_textbooks=10, n_exercises=10, with_unfiltered=False)
    cfg = small_config(
        "tokenizer.kind=codegen",
        "model.vocab_size=51200",
        "tokenize.sources=[code, unfiltered]",
        "tokenize.extra_sources={books: synthesize/textbooks, nowhere: /no/such/dir}",
    )
    with caplog.at_level(logging.WARNING, logger="phiray"):
        manifest = tokenize.run(cfg, rd)
    assert sorted(manifest.metrics["skipped_sources"]) == ["nowhere", "unfiltered"]
    assert set(manifest.metrics["sources"]) == {"code", "books"} and manifest.metrics["tokenizer_size"] == 50295
    assert "unfiltered" in caplog.text


def test_prune_tau_finetunes_on_the_pruned_exercises_and_keeps_the_whole_set(ray_session, tmp_path):
    """phi-1 §5 wired in: with similarity.prune_tau, exercises (and exercises_sft) come from similarity/exercises;
    the whole set is packed as exercises_full(_sft), the thesis's "without pruning" finetune."""
    import pyarrow as pa
    import pytest

    from phiray.stages import STAGE_BY_NAME, tokenize

    rd = make_fake_run(tmp_path / "run", n_code=6, n_textbooks=10, n_exercises=12, with_unfiltered=False)
    cfg = small_config("similarity.prune_tau=0.9", "tokenize.sources=[code, exercises]")
    with pytest.raises(FileNotFoundError, match="run similarity first"):
        tokenize.run(cfg, rd)
    rows = pq.read_table(rd.path("synthesize/exercises")).to_pylist()
    rd.makedirs("similarity", "exercises")
    pq.write_table(pa.Table.from_pylist(rows[:4]), rd.path("similarity/exercises/part-0.parquet"))
    manifest = tokenize.run(cfg, rd)
    sources = manifest.metrics["sources"]
    assert sources["exercises"]["documents"] == 4 and sources["exercises_sft"]["documents"] == 4
    assert sources["exercises_full"]["documents"] == sources["exercises_full_sft"]["documents"] == len(rows) > 4
    assert rd.exists("tokenize/exercises_full_sft/train")
    # the cut is part of tokenize's config hash: changing it re-tokenizes
    other = small_config("similarity.prune_tau=0.8", "tokenize.sources=[code, exercises]")
    assert STAGE_BY_NAME["tokenize"].config_hash(cfg) != STAGE_BY_NAME["tokenize"].config_hash(other)


def test_packed_splits_move_into_place_on_s3(s3_server):
    """tokenize writes each split under a staging folder, then moves it into place: on an object store
    that is a copy (pyarrow's move of an S3 folder fails), and every file arrives whole."""
    import pyarrow as pa

    from phiray.rundir import RunDir
    from phiray.stages.tokenize import move_dir

    rd = RunDir(f"{s3_server.new_bucket()}/run")
    table = sequences_table(np.arange(12, dtype=np.int32).reshape(3, 4))
    for part in range(2):
        rd.fs.create_dir(rd.path("tokenize/code/_by_split/split=train"), recursive=True)
        pq.write_table(table, rd.path(f"tokenize/code/_by_split/split=train/part-{part}.parquet"), filesystem=rd.fs)
    move_dir(rd, "tokenize/code/_by_split/split=train", "tokenize/code/train")
    assert sorted(rd.listdir("tokenize/code/train")) == ["part-0.parquet", "part-1.parquet"]
    assert len(TokenSource(rd.fs, rd.path("tokenize/code/train"))) == 6
    assert pa.concat_tables([table, table]).equals(pq.read_table(rd.path("tokenize/code/train"), filesystem=rd.fs))
