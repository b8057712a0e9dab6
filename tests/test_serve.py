"""`phiray serve` end to end: the real `openai` client against the Serve app (Ray Serve LLM, a real vLLM
engine on CPU) and the evaluator, on 127.0.0.1. One app start per module (the engine takes ~60 s)."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest
from serve_fixtures import free_port
from vllm_fixtures import build_vllm_checkpoint

pytest.importorskip("vllm")
MODEL = "tiny-phi"
CONTEXT = 256
KEY_ENV = "PHIRAY_TEST_EVALUATOR_KEY"  # set by conftest, in the Ray session's runtime env
AUTH = {"Authorization": f"Bearer {os.environ[KEY_ENV]}"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_vllm_checkpoint(tmp_path_factory.mktemp("ckpt"), context=CONTEXT)


@pytest.fixture(scope="module")
def server(ray_session, checkpoint):
    """The app on the shared Ray session, on a free loopback port; shut down after the module."""
    from ray import serve

    from phiray.serve.app import build_app

    ckpt = checkpoint
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = build_app(
        {
            "model": str(ckpt),
            "model_name": MODEL,
            "max_batch_size": 8,
            "model_num_cpus": 1,
            "evaluator_num_cpus": 0.25,
            "evaluator_api_key_env": KEY_ENV,  # /v1/evaluate behind a key, as off loopback
        }
    )
    try:
        serve.run(app, name="phiray", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_and_health(server, client):
    [card] = client.models.list().data
    assert card.id == MODEL
    health = httpx.get(f"{server}/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["models"] == {MODEL: "ok"}


def test_completions_usage_default_length_stop_and_logprobs(client):
    r = client.completions.create(model=MODEL, prompt="def add(a, b):\n", max_tokens=12, temperature=0)
    [choice] = r.choices
    assert choice.finish_reason == "length" and r.usage.completion_tokens == 12
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + 12
    default = client.completions.create(model=MODEL, prompt="def add(a, b):\n", temperature=0)
    assert default.usage.completion_tokens == 16  # OpenAI's default max_tokens for completions
    full = choice.text
    stop = full[4:7]
    cut = client.completions.create(model=MODEL, prompt="def add(a, b):\n", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[: full.index(stop)] and cut.choices[0].finish_reason == "stop"
    scored = client.completions.create(model=MODEL, prompt="x = ", max_tokens=4, temperature=0, logprobs=2)
    lp = scored.choices[0].logprobs
    assert len(lp.tokens) == 4 and len(lp.token_logprobs) == 4 and all(v <= 0 for v in lp.token_logprobs)
    assert all(1 <= len(top) <= 3 for top in lp.top_logprobs)  # the 2 best, plus the sampled one if not among them


def test_n_samples_seeded_and_several_prompts(client):
    kwargs = dict(model=MODEL, prompt=["x = ", "def f("], n=3, max_tokens=6, temperature=1.0, seed=3)
    many = client.completions.create(**kwargs)
    assert sorted(c.index for c in many.choices) == list(range(6)) and many.usage.completion_tokens == 36
    again = client.completions.create(**kwargs)
    by_index = lambda r: [c.text for c in sorted(r.choices, key=lambda c: c.index)]  # noqa: E731
    assert by_index(again) == by_index(many)


def test_chat_n_and_streaming_with_usage_in_the_last_chunk(client):
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "add two numbers"}]
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=1.0, n=2, seed=5)
    assert sorted(c.index for c in r.choices) == [0, 1] and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content != r.choices[1].message.content  # two samples, not one twice
    assert r.usage.completion_tokens == 20 and r.usage.prompt_tokens > 0
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=30,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices)
    finish = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 30  # usage rides the last chunk
    assert all(chunk.usage is None for chunk in chunks[:-1])
    longer = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=30, temperature=0)
    assert text == longer.choices[0].message.content and finish == [longer.choices[0].finish_reason]
    assert len(chunks) > 5


def test_completion_stream_is_sse_and_matches_the_plain_answer(server, client):
    body = {"model": MODEL, "prompt": "import math\n", "max_tokens": 60, "temperature": 0, "stream": True}
    times, events = [], []
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=120) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                times.append(time.perf_counter())
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    plain = client.completions.create(model=MODEL, prompt="import math\n", max_tokens=60, temperature=0)
    assert "".join(c["choices"][0]["text"] for c in chunks) == plain.choices[0].text
    assert len(times) > 10


@pytest.mark.parametrize(
    "path,body,status",
    [
        ("/v1/completions", {"model": "nope", "prompt": "x"}, 404),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "temperature": -1}, 400),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 0}, 400),
        ("/v1/completions", {"model": MODEL, "prompt": "x", "n": "many"}, 400),
        ("/v1/completions", {"model": MODEL}, 400),
        ("/v1/completions", {"model": MODEL, "prompt": "word " * 400, "max_tokens": 8}, 400),
        ("/v1/completions", {"model": MODEL, "prompt": "word " * 400, "stream": True}, 400),
        ("/v1/chat/completions", {"model": MODEL, "messages": "hello"}, 400),
        ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "n": 0}, 400),
        ("/v1/evaluate", {"code": "x = 1"}, 400),
        ("/v1/evaluate", {"task_id": "HumanEval/99999", "completion": "pass"}, 404),
    ],
)
def test_bad_requests_get_openai_errors(server, path, body, status):
    r = httpx.post(f"{server}{path}", json=body, headers=AUTH, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"], err


def test_malformed_json_and_openai_client_errors(server, client):
    import openai

    r = httpx.post(f"{server}/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="word " * 400)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=4, temperature=-1
        )


def test_evaluate_code_tests_and_benchmark_tasks(server):
    def evaluate(**body):
        r = httpx.post(f"{server}/v1/evaluate", json=body, headers=AUTH, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    ok = evaluate(code="def add(a, b):\n    return a + b\n", tests="assert add(2, 3) == 5\n", entry_point="add")
    assert ok["passed"] and ok["status"] == "passed"
    bad = evaluate(code="def add(a, b):\n    return a - b\n", tests="assert add(2, 3) == 5\n")
    assert not bad["passed"] and bad["status"] == "failed"
    slow = evaluate(code="while True:\n    pass\n", tests="", timeout_s=1)
    assert not slow["passed"] and slow["status"] == "timeout"
    from phiray.serve.deployments import benchmark_task

    task = benchmark_task("HumanEval/0")
    solution = task.reference[len(task.prompt) :]
    assert evaluate(task_id="HumanEval/0", completion=solution)["passed"]
    assert not evaluate(task_id="HumanEval/0", completion="    return True\n")["passed"]


def test_is_a_teacher_and_an_eval_endpoint(server):
    from phiray.config import TeacherConfig
    from phiray.evals.benchmarks import load_benchmark
    from phiray.evals.generation import GenerationSettings, generate_endpoint
    from phiray.teacher import Request, make_teacher

    for api in ("chat", "completions"):
        cfg = TeacherConfig(
            kind="openai",
            base_url=f"{server}/v1",
            model=MODEL,
            api=api,
            max_tokens=8,
            concurrency=4,
            max_retries=0,
            cache=False,
        )
        answers = make_teacher(cfg).complete(
            [Request(key=str(i), prompt=f"Write a function {i}", seed=i) for i in range(4)]
        )
        assert all(a.ok and a.tokens_out > 0 and a.tokens_in > 0 for a in answers), answers
    tasks = sorted(load_benchmark("humaneval"), key=lambda t: len(t.prompt))[:2]  # fit the tiny context
    settings = GenerationSettings(n=2, temperature=0.8, max_new_tokens=8)
    samples = generate_endpoint(f"{server}/v1", MODEL, tasks, settings)
    assert [s["task_id"] for s in samples] == [t.task_id for t in tasks for _ in range(2)]


def test_evaluate_needs_the_key_over_http(server):
    """The running app's ingress checks the key (not only evaluator_auth's unit tests): every request
    without the right `Authorization: Bearer <key>` is refused before any code runs."""
    body = {"code": "def f():\n    return 1\n", "tests": "assert f() == 1\n"}
    key = os.environ[KEY_ENV]
    refused = [
        {},  # no key
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Bearer {key}x"},
        {"Authorization": key},  # malformed: no scheme
        {"Authorization": f"Basic {key}"},
        {"Authorization": "Bearer"},
    ]
    for headers in refused:
        r = httpx.post(f"{server}/v1/evaluate", json=body, headers=headers, timeout=60)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(f"{server}/v1/evaluate", json=body, headers=AUTH, timeout=60)
    assert r.status_code == 200 and r.json()["passed"], r.text


def test_an_app_off_loopback_without_a_key_is_refused_at_deploy(server, checkpoint):
    """A second app configured for 0.0.0.0 with no key never comes up: its ingress replica refuses to start
    (the proxy this session's Serve started stays on 127.0.0.1, so nothing is exposed meanwhile)."""
    from ray import serve

    from phiray.serve.app import build_app

    app = build_app(
        {
            "model": str(checkpoint),
            "model_name": "open-phi",
            "host": "0.0.0.0",
            "evaluator_api_key_env": "PHIRAY_TEST_NO_SUCH_KEY",
            "model_num_cpus": 1,
            "evaluator_num_cpus": 0.25,
        }
    )
    try:
        with pytest.raises(RuntimeError, match=r"Failed to update the deployments \['openai'\]"):
            serve.run(app, name="open", route_prefix="/open")
        message = serve.status().applications["open"].deployments["openai"].message
        assert "needs an API key" in message, message  # the ingress's own refusal, not another failure
    finally:
        serve.delete("open")
    assert httpx.get(f"{server}/healthz", timeout=30).status_code == 200  # the keyed app is untouched
