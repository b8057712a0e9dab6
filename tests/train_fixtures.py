"""A fake run directory holding the upstream outputs tokenize reads (real Parquet in the data contracts'
schemas + manifests), so the model/training stages can be tested while the data stages are elsewhere."""

from __future__ import annotations

import hashlib
import random
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from phiray.rundir import Manifest, RunDir

OPS = [
    ("add", "+", "Return the sum of a and b."),
    ("sub", "-", "Return a minus b."),
    ("mul", "*", "Return the product of a and b."),
    ("max2", None, "Return the larger of a and b."),
]


def _id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stdlib_code(n_files: int, max_bytes: int = 20_000) -> list[str]:
    """Real Python: the first files of a few stdlib packages (deterministic order)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for package in ("json", "email", "http", "logging", "importlib", "unittest"):
        for path in sorted((root / package).glob("*.py")):
            text = path.read_text(errors="replace")
            if 200 < len(text) <= max_bytes:
                texts.append(text)
            if len(texts) >= n_files:
                return texts
    return texts


def textbook(i: int, rng: random.Random) -> str:
    name, op, doc = OPS[i % len(OPS)]
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    body = f"return a {op} b" if op else "return a if a > b else b"
    return (
        f"## Functions, lesson {i}\n\nA function `{name}` takes two numbers. {doc} For example, with a = {a}"
        f" and b = {b}:\n\n```python\ndef {name}(a, b):\n    {body}\n\nprint({name}({a}, {b}))\n```\n"
    )


def exercise(i: int, rng: random.Random) -> dict:
    name, op, doc = OPS[i % len(OPS)]
    fname = f"{name}_{i}"
    prompt = f'def {fname}(a, b):\n    """{doc}"""\n'
    solution = f"    return a {op} b\n" if op else "    return a if a > b else b\n"
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    expected = {"+": a + b, "-": a - b, "*": a * b, None: max(a, b)}[op]
    return {
        "id": _id(prompt),
        "kind": "exercise",
        "topic": "arithmetic",
        "concept": name,
        "audience": "students",
        "style": "concise",
        "seed": i,
        "difficulty": 1,
        "prompt": prompt,
        "solution": solution,
        "tests": f"assert {fname}({a}, {b}) == {expected}",
        "entry_point": fname,
        "signature": f"def {fname}(a, b):",
        "docstring": doc,
        "text": prompt + solution,
        "verified": True,
    }


def _write(rd: RunDir, rel: str, rows: list[dict], shards: int = 2) -> None:
    rd.makedirs(rel)
    for k in range(shards):
        part = rows[k::shards]
        if part:
            with rd.fs.open_output_stream(rd.path(rel, f"part-{k:03d}.parquet")) as out:
                pq.write_table(pa.Table.from_pylist(part), out)


def make_fake_run(
    location, n_code: int = 40, n_textbooks: int = 120, n_exercises: int = 160, with_unfiltered: bool = True
) -> RunDir:
    """Upstream outputs + manifests for tokenize: filter, synthesize (textbooks, exercises), decontaminate."""
    rd = RunDir(location)
    rng = random.Random(0)
    code = [
        {
            "id": _id(t),
            "text": t,
            "source": "stdlib",
            "path": f"f{i}.py",
            "n_bytes": len(t.encode()),
            "score": 0.9,
            "kept": True,
        }
        for i, t in enumerate(stdlib_code(n_code))
    ]
    _write(rd, "filter/documents", code)
    books = [textbook(i, rng) for i in range(n_textbooks)]
    _write(
        rd,
        "synthesize/textbooks",
        [
            {
                "id": _id(t),
                "kind": "textbook",
                "topic": "functions",
                "subtopic": "math",
                "audience": "students",
                "style": "concise",
                "seed": i,
                "text": t,
            }
            for i, t in enumerate(books)
        ],
    )
    _write(rd, "synthesize/exercises", [exercise(i, rng) for i in range(n_exercises)])
    stages = ["filter", "synthesize"]
    if with_unfiltered:
        unfiltered = code + [
            {"id": _id(t), "text": t, "source": "stdlib", "path": "x.py", "n_bytes": len(t)}
            for t in stdlib_code(n_code + 20)[n_code:]
        ]
        _write(
            rd,
            "decontaminate/documents",
            [{k: r[k] for k in ("id", "text", "source", "path", "n_bytes")} for r in unfiltered],
        )
        stages.append("decontaminate")
    for stage in stages:
        rd.finish(Manifest(stage=stage), config_hash="fixture", inputs={}, started_at="", wall_time_s=0.0)
    return rd


_TOKENIZED: dict[str, RunDir] = {}


def tokenized_run(base: Path, *overrides: str) -> RunDir:
    """A fake run with tokenize done (once per test session: tokenization is the slow part)."""
    key = "|".join(overrides)
    if key not in _TOKENIZED:
        from phiray.stages import tokenize

        rd = make_fake_run(base / f"tokenized-{len(_TOKENIZED)}")
        cfg = small_config(*overrides)
        manifest = tokenize.run(cfg, rd)
        rd.finish(manifest, config_hash="fixture", inputs={}, started_at="", wall_time_s=0.0)
        _TOKENIZED[key] = rd
    return _TOKENIZED[key]


def small_config(*overrides: str):
    """The tiny preset shrunk further for tests (seq 128, vocab 1024, short phases)."""
    from phiray.config import load_config

    return load_config(
        "tiny",
        overrides=[
            "tokenizer.vocab_size=1024",
            "tokenize.seq_len=128",
            "tokenize.val_fraction=0.1",
            "tokenize.batch_size=64",
            "model.vocab_size=1024",
            "model.n_ctx=128",
            "grow.target.vocab_size=1024",
            "grow.target.n_ctx=128",
            *overrides,
        ],
    )
