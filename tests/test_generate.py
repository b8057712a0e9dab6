"""phiray.model.generate: batched sampling on a tiny real checkpoint (CPU)."""

from __future__ import annotations

import pytest
from serve_fixtures import build_tiny_checkpoint

from phiray.model.generate import Generator, PromptTooLong, SamplingParams


@pytest.fixture(scope="module")
def gen(tmp_path_factory) -> Generator:
    return Generator.load(str(build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))), device="cpu")


def test_greedy_is_deterministic_and_batch_independent(gen):
    params = SamplingParams(max_tokens=12, temperature=0.0)
    [[alone]] = gen.generate(["def add(a, b):\n"], params)
    together = gen.generate(["x", "def add(a, b):\n", "import math\nclass Point:"], params)
    assert together[1][0].text == alone.text
    assert alone.finish_reason == "length" and alone.completion_tokens == 12
    assert alone.prompt_tokens == len(gen.encode("def add(a, b):\n"))


def test_seed_n_and_per_row_params(gen):
    sp = SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=7, n=3)
    first = gen.generate(["def greet(name):"], sp)[0]
    again = gen.generate(["for i in", "def greet(name):"], [SamplingParams(max_tokens=4), sp])[1]
    assert [c.text for c in first] == [c.text for c in again]  # the seed fixes every choice
    assert len({c.text for c in first}) > 1  # choices differ from each other
    short, long = gen.generate(
        ["a", "a"], [SamplingParams(max_tokens=2, temperature=0), SamplingParams(max_tokens=9, temperature=0)]
    )
    assert short[0].completion_tokens == 2 and long[0].completion_tokens == 9


def test_stop_sequences_cut_text_and_stream_matches(gen):
    [[full]] = gen.generate(["def add(a, b):\n"], SamplingParams(max_tokens=30, temperature=0.0))
    stop = full.text[5:8]
    assert stop and stop not in full.text[:5]
    sp = SamplingParams(max_tokens=30, temperature=0.0, stop=[stop, "never-there"])
    [[cut]] = gen.generate(["def add(a, b):\n"], sp)
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.index(stop)]
    steps = list(gen.stream(["def add(a, b):\n"], sp))
    deltas = [ev for step in steps for ev in step]
    assert "".join(ev.text for ev in deltas) == cut.text
    assert deltas[-1].finish_reason == "stop" and all(ev.finish_reason is None for ev in deltas[:-1])
    assert all(stop not in ev.text for ev in deltas)


def test_prompt_too_long_and_bad_params(gen):
    with pytest.raises(PromptTooLong):
        gen.generate(["word " * 400], SamplingParams(max_tokens=4))
    with pytest.raises(PromptTooLong):
        gen.encode("hello", max_tokens=gen.max_context)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError):
        SamplingParams(n=0)


def test_stream_steps_may_run_on_different_threads(gen):
    """Serve drives a stream one step per worker-thread call; the result must not depend on the thread."""
    from concurrent.futures import ThreadPoolExecutor

    sp = SamplingParams(max_tokens=10, temperature=0.0)
    [[expected]] = gen.generate(["def f(x):"], sp)
    stream = gen.stream(["def f(x):"], sp)
    text = ""
    for k in range(11):
        with ThreadPoolExecutor(1) as pool:  # a fresh thread for every step
            step = pool.submit(next, stream, None).result()
        if step is None:
            break
        text += "".join(ev.text for ev in step)
    assert text == expected.text
