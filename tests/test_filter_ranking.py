"""What the filter ranks first is what a person calls educational; what it ranks last is not.

A small corpus of real standard-library files, each labelled here by what it is (not by the annotator):
textbook-like modules (documented algorithms and idioms, the turtledemo teaching programs), plumbing (build
commands, OS and tool glue, GUI wiring) and files with nothing to teach (codec tables, codec stubs, unit
tests). The real annotate -> classify -> filter stages run on it (offline heuristic labels on a sample,
MiniLM embeddings, random forest, scoring on a Ray Data actor pool); the test reads filter's outputs.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from phiray.config import load_config
from phiray.data.readers import doc_id, stdlib_root
from phiray.rundir import RunDir

TEXTBOOK = [
    "heapq.py",
    "bisect.py",
    "fractions.py",
    "statistics.py",
    "textwrap.py",
    "graphlib.py",
    "difflib.py",
    "colorsys.py",
    "fnmatch.py",
    "shlex.py",
    "copy.py",
    "string.py",
    "sched.py",
    "calendar.py",
    "reprlib.py",
    "functools.py",
    "random.py",
    "turtledemo/minimal_hanoi.py",
    "turtledemo/sorting_animate.py",
    "turtledemo/fractalcurves.py",
    "turtledemo/lindenmayer.py",
    "turtledemo/nim.py",
]
PLUMBING = [
    "ensurepip/__init__.py",
    "xml/sax/__init__.py",
    "_osx_support.py",
    "platform.py",
    "sysconfig.py",
    "py_compile.py",
    "compileall.py",
    "webbrowser.py",
    "multiprocessing/forkserver.py",
    "multiprocessing/popen_spawn_posix.py",
    "asyncio/unix_events.py",
    "zoneinfo/_tzpath.py",
    "venv/__init__.py",
    "distutils/command/build_scripts.py",
    "distutils/command/register.py",
    "distutils/spawn.py",
    "distutils/msvccompiler.py",
    "distutils/ccompiler.py",
]
NOTHING_TO_TEACH = (
    [f"encodings/cp{n}.py" for n in (437, 850, 852, 1250, 1251, 1252)]
    + [f"encodings/{n}.py" for n in ("big5", "gbk", "euc_jp", "euc_kr", "johab", "hz")]
    + [f"idlelib/idle_test/test_{n}.py" for n in ("autoexpand", "delegator", "history", "parenmatch", "format", "grep")]
)


@pytest.fixture(scope="module")
def ranked(ray_session, tmp_path_factory) -> list[tuple[str, float]]:
    """(path, score) of every corpus file, best first, as filter wrote them."""
    from phiray.stages import annotate, classify
    from phiray.stages import filter as filter_stage

    groups = {"textbook": TEXTBOOK, "plumbing": PLUMBING, "nothing": NOTHING_TO_TEACH}
    present = {g: [p for p in paths if (stdlib_root() / p).is_file()] for g, paths in groups.items()}
    if min(len(v) for v in present.values()) < 10:  # another Python version's layout
        pytest.skip(f"too few of the labelled files in {stdlib_root()}: { {g: len(v) for g, v in present.items()} }")
    paths = [p for v in present.values() for p in v]
    texts = [(stdlib_root() / p).read_text() for p in paths]
    rd = RunDir(tmp_path_factory.mktemp("ranking") / "run")
    out = rd.makedirs("decontaminate", "documents")
    pq.write_table(
        pa.table(
            {
                "id": [doc_id(t) for t in texts],
                "text": texts,
                "source": ["stdlib"] * len(texts),
                "path": paths,
                "n_bytes": [len(t) for t in texts],
            }
        ),
        f"{out}/part-0.parquet",
    )
    # The tiny preset's embedder and forest; labels for 3 of 4 files, so part of the ranking is of unseen ones.
    cfg = load_config(
        "tiny",
        overrides=[
            f"annotate.sample_size={3 * len(paths) // 4}",
            "filter.actors=1",
            "filter.validation=false",
            "embed.max_tokens=256",
            "classify.test_fraction=0.25",
        ],
    )
    for stage in (annotate, classify, filter_stage):
        stage.run(cfg, rd)
    rows = pq.read_table(rd.path("filter", "documents"), columns=["path", "score"]).to_pylist()
    rows += pq.read_table(rd.path("filter", "rejected"), columns=["path", "score"]).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(paths)
    return sorted(((r["path"], r["score"]) for r in rows), key=lambda r: (-r[1], r[0]))


def test_top_ranked_files_are_textbook_like(ranked):
    top = [path for path, _ in ranked[:8]]
    assert set(top) <= set(TEXTBOOK), [p for p in top if p not in TEXTBOOK]


def test_bottom_ranked_files_have_nothing_to_teach(ranked):
    bottom = [path for path, _ in ranked[-8:]]
    assert set(bottom) <= set(NOTHING_TO_TEACH) | set(PLUMBING), bottom
    assert not set(bottom) & set(TEXTBOOK)


def test_textbook_files_outrank_plumbing_and_tables(ranked):
    """Rank by rank, not only at the extremes: a textbook file's median rank is well above plumbing's."""
    import statistics

    rank = {path: i for i, (path, _) in enumerate(ranked)}
    median = {
        name: statistics.median(rank[p] for p in group if p in rank)
        for name, group in (("textbook", TEXTBOOK), ("plumbing", PLUMBING), ("nothing", NOTHING_TO_TEACH))
    }
    assert median["textbook"] < median["plumbing"] < median["nothing"], median
