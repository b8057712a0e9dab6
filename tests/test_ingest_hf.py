"""ingest `kind: hf` sources, offline: datasets the tests build themselves (the json and parquet builders,
map-style and streaming, and `save_to_disk` directories), read by the real ingest stage on Ray."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

datasets = pytest.importorskip("datasets")

from phiray.config import ConfigError, load_config  # noqa: E402
from phiray.data.readers import doc_id  # noqa: E402
from phiray.rundir import RunDir  # noqa: E402
from phiray.stages import ingest  # noqa: E402

MAX_BYTES = 2000
SNIPPETS = [f'def add_{i}(x):\n    """Return x plus {i}."""\n    return x + {i}\n' for i in range(24)]


def _stack_rows() -> list[dict]:
    """Rows with The Stack's column names: every fourth is Java; then planted bad rows."""
    rows = [
        {
            "content": text,
            "max_stars_repo_path": f"org/repo/src/add_{i}.py",
            "lang": "Java" if i % 4 == 0 else "Python",
            "size": len(text),
        }
        for i, text in enumerate(SNIPPETS)
    ]
    bad = [None, "", "   \n\t", "x = 1\n" * 1000]  # empty, empty, blank, oversized (6000 bytes > MAX_BYTES)
    rows += [
        {"content": text, "max_stars_repo_path": f"org/repo/bad_{i}.py", "lang": "Python", "size": 0}
        for i, text in enumerate(bad)
    ]
    return rows


EXPECTED_SKIPS = {"empty": 3, "oversized": 1}
PYTHON = [t for i, t in enumerate(SNIPPETS) if i % 4]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    rows = _stack_rows()
    (root / "code.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "pq").mkdir()
    half = len(rows) // 2
    for i, part in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.Table.from_pylist(part), root / "pq" / f"part-{i}.parquet")
    saved = datasets.Dataset.from_list(rows)
    saved.save_to_disk(str(root / "saved"), num_shards=2)
    datasets.DatasetDict({"train": saved, "test": saved.select(range(3))}).save_to_disk(str(root / "saved_dict"))
    saved.filter(lambda row: False).save_to_disk(str(root / "empty"))  # a real split with no rows
    (root / "empty.jsonl").write_text("")
    return {
        "root": root,
        "jsonl": root / "code.jsonl",
        "pq": root / "pq",
        "saved": root / "saved",
        "saved_dict": root / "saved_dict",
        "empty": root / "empty",
        "empty_jsonl": root / "empty.jsonl",
    }


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    """The json/parquet builders prepare Arrow files in the datasets cache: a private one per test."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _ingest(tmp_path: Path, sources: list[dict], name: str = "run") -> tuple[object, RunDir]:
    cfg = load_config("tiny", overrides=[f"ingest.sources={json.dumps(sources)}", f"ingest.max_bytes={MAX_BYTES}"])
    rd = RunDir(tmp_path / name)
    return ingest.run(cfg, rd), rd


def _docs(rd: RunDir, name: str = "documents") -> list[dict]:
    files = sorted(Path(rd.path("ingest", name)).glob("*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def _by_id(rows: list[dict]) -> dict[str, str]:
    return {r["id"]: r["text"] for r in rows}


@pytest.mark.parametrize("streaming", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_json_builder_reads_what_the_jsonl_source_reads(ray_session, corpus, tmp_path, streaming):
    local, local_rd = _ingest(
        tmp_path, [{"kind": "jsonl", "path": str(corpus["jsonl"]), "text_column": "content"}], "local"
    )
    hf, rd = _ingest(
        tmp_path,
        [
            {
                "kind": "hf",
                "dataset": "json",
                "data_files": str(corpus["jsonl"]),
                "streaming": streaming,
                "text_column": "content",
                "name": "stack",
            }
        ],
    )
    docs = _docs(rd)
    assert _by_id(docs) == _by_id(_docs(local_rd)) == {doc_id(t): t for t in SNIPPETS}
    assert {r["source"] for r in docs} == {"stack"}
    assert all(r["n_bytes"] == len(r["text"].encode()) for r in docs)
    assert hf.metrics["skipped_by_reason"] == local.metrics["skipped_by_reason"] == EXPECTED_SKIPS
    assert hf.rows["documents"] == len(SNIPPETS) and hf.rows["read"] == len(_stack_rows())
    assert Counter(r["reason"] for r in _docs(rd, "skipped")) == EXPECTED_SKIPS
    meta = hf.metrics["hf"][0]
    assert (meta["dataset"], meta["split"], meta["streaming"]) == ("json", "train", streaming)
    assert meta["rows"] == (None if streaming else len(_stack_rows()))


@pytest.mark.parametrize("streaming", [pytest.param(False, marks=pytest.mark.slow), True])
def test_parquet_builder_reads_what_the_parquet_source_reads(ray_session, corpus, tmp_path, streaming):
    _, local_rd = _ingest(tmp_path, [{"kind": "parquet", "path": str(corpus["pq"]), "text_column": "content"}], "local")
    manifest, rd = _ingest(
        tmp_path,
        [
            {
                "kind": "hf",
                "name": "parquet",
                "data_files": str(corpus["pq"] / "*.parquet"),
                "streaming": streaming,
                "text_column": "content",
            }
        ],
    )
    docs = _docs(rd)
    assert _by_id(docs) == _by_id(_docs(local_rd)) == {doc_id(t): t for t in SNIPPETS}
    assert {r["source"] for r in docs} == {"parquet"}
    # Without a path column a row's path is its position: global (map-style) or shard:row (two files = 2 shards).
    paths = {r["path"] for r in docs}
    assert all(p.startswith("parquet#") for p in paths) and len(paths) == len(docs)
    if streaming:
        assert {p.split("#")[1].split(":")[0] for p in paths} == {"0", "1"}
    assert manifest.metrics["skipped_by_reason"] == EXPECTED_SKIPS


@pytest.mark.parametrize(
    "which,streaming", [("saved", False), pytest.param("saved", True, marks=pytest.mark.slow), ("saved_dict", False)]
)
def test_save_to_disk_directory_with_the_stacks_columns(ray_session, corpus, tmp_path, which, streaming):
    manifest, rd = _ingest(
        tmp_path,
        [
            {
                "kind": "hf",
                "dataset": str(corpus[which]),
                "name": "the-stack",
                "split": "train",
                "streaming": streaming,
                "text_column": "content",
                "path_column": "max_stars_repo_path",
                "language_column": "lang",
                "languages": ["python"],
            }
        ],
    )
    docs = _docs(rd)
    assert _by_id(docs) == {doc_id(t): t for t in PYTHON}
    assert sorted(r["path"] for r in docs) == sorted(f"org/repo/src/add_{i}.py" for i in range(len(SNIPPETS)) if i % 4)
    assert manifest.metrics["skipped_by_reason"] == {**EXPECTED_SKIPS, "language": len(SNIPPETS) - len(PYTHON)}
    skipped = _docs(rd, "skipped")
    assert {r["path"] for r in skipped if r["reason"] == "language"} == {
        f"org/repo/src/add_{i}.py" for i in range(0, len(SNIPPETS), 4)
    }


@pytest.mark.parametrize("streaming", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_limit_and_a_file_source_beside_an_hf_source(ray_session, corpus, tmp_path, streaming):
    (tmp_path / "src").mkdir()
    for i in range(3):
        (tmp_path / "src" / f"m{i}.py").write_text(f"VALUE_{i} = {i}\n")
    manifest, rd = _ingest(
        tmp_path,
        [
            {
                "kind": "hf",
                "dataset": str(corpus["saved"]),
                "text_column": "content",
                "limit": 5,
                "streaming": streaming,
            },
            {"kind": "files", "path": str(tmp_path / "src"), "name": "local"},
        ],
    )
    docs = _docs(rd)
    assert Counter(r["source"] for r in docs) == {str(corpus["saved"]): 5, "local": 3}
    assert {r["text"] for r in docs if r["source"] != "local"} == set(SNIPPETS[:5])  # the first rows, in order
    if not streaming:
        assert manifest.metrics["hf"][0]["rows"] == 5


def test_a_corrupt_file_in_a_streaming_split_is_a_counted_skip(ray_session, tmp_path):
    good, bad = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    good.write_text("".join(json.dumps({"content": t}) + "\n" for t in SNIPPETS[:6]))
    bad.write_text(json.dumps({"content": "x = 1\n"}) + "\n{not json\n")
    manifest, rd = _ingest(
        tmp_path,
        [
            {
                "kind": "hf",
                "dataset": "json",
                "data_files": [str(good), str(bad)],
                "streaming": True,
                "text_column": "content",
                "name": "two",
            }
        ],
    )
    assert set(SNIPPETS[:6]) <= {r["text"] for r in _docs(rd)}
    assert manifest.metrics["skipped_by_reason"] == {"corrupt": 1}
    assert [r["path"].split(":")[0] for r in _docs(rd, "skipped")] == ["two#1"]


@pytest.mark.parametrize(
    "source,message",
    [
        (
            {"text_column": "text"},
            r"ingest\.sources\[1\] \(kind=hf, dataset '.*saved'\): no column text "
            r"\(columns: content, max_stars_repo_path, lang, size\)",
        ),
        ({"text_column": "content", "streaming": True, "path_column": "path"}, r"ingest\.sources\[1\].*no column path"),
        ({"dataset": "EMPTY", "text_column": "content"}, r"ingest\.sources\[1\].*split 'train' is empty"),
        (
            {"dataset": "DICT", "split": "validation"},
            r"ingest\.sources\[1\].*no split 'validation'.*\['test', 'train'\]",
        ),
        (
            {"dataset": "nosuch-org/no-such-dataset"},
            r"ingest\.sources\[1\] \(kind=hf, dataset 'nosuch-org/no-such-dataset'"
            r", split 'train'\) cannot be opened",
        ),
        ({"dataset": "json", "data_files": "/nonexistent/*.jsonl"}, r"ingest\.sources\[1\].*cannot be opened"),
        (
            {"dataset": "json", "data_files": "EMPTY_JSONL"},
            r"ingest\.sources\[1\].*cannot be opened: .*no rows or files",
        ),
    ],
)
def test_a_bad_source_fails_before_anything_is_read(ray_session, corpus, tmp_path, monkeypatch, source, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    src = {"kind": "hf", "dataset": str(corpus["saved"]), **source}
    named = {
        "EMPTY": str(corpus["empty"]),
        "DICT": str(corpus["saved_dict"]),
        "EMPTY_JSONL": str(corpus["empty_jsonl"]),
    }
    src["dataset"] = named.get(src["dataset"], src["dataset"])
    src["data_files"] = named.get(src.get("data_files"), src.get("data_files"))
    with pytest.raises(ValueError, match=message):
        _ingest(tmp_path, [{"kind": "stdlib", "limit": 3}, src])
    assert not (tmp_path / "run" / "ingest" / "documents").exists()


def test_hf_source_config_is_checked_before_any_work():
    with pytest.raises(ConfigError, match="needs `dataset`"):
        load_config("tiny", overrides=['ingest.sources=[{"kind": "hf"}]'])
    with pytest.raises(ConfigError, match="`languages` needs `language_column`"):
        load_config("tiny", overrides=['ingest.sources=[{"kind": "hf", "name": "x", "languages": ["python"]}]'])
    legacy = load_config(
        "tiny",
        overrides=[
            'ingest.sources=[{"kind": "hf", "hf_name": "bigcode/the-stack-smol", '
            '"hf_split": "train", "data_dir": "data/python"}]'
        ],
    )
    src = legacy.ingest.sources[0]
    assert (src.dataset, src.split, src.data_dir) == ("bigcode/the-stack-smol", "train", "data/python")
