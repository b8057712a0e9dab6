"""The Serve app, end to end: the real `openai` client against a real local Serve app and a tiny checkpoint."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from serve_fixtures import build_tiny_checkpoint, free_port

MODEL = "tiny-phi"


@pytest.fixture(scope="module")
def server(ray_session, tmp_path_factory):
    """The app on the shared Ray session, on a free loopback port; shut down after the module."""
    from ray import serve

    from phiray.serve.app import build_app

    ckpt = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = build_app({"model": str(ckpt), "model_name": MODEL, "max_batch_size": 8, "batch_wait_timeout_s": 0.01,
                     "model_num_cpus": 0.5, "evaluator_num_cpus": 0.25, "default_max_tokens": 8})
    serve.run(app, name="phiray", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def client(server):
    import openai

    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    health = httpx.get(f"{server}/healthz", timeout=30).json()
    assert health["status"] == "ok" and health["context"] == 256


def test_completions_usage_n_seed_and_stop(client):
    r = client.completions.create(model=MODEL, prompt="def add(a, b):\n", max_tokens=12, temperature=0)
    [choice] = r.choices
    assert choice.finish_reason == "length" and r.usage.completion_tokens == 12
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + 12
    full = choice.text
    stop = full[4:7]
    cut = client.completions.create(model=MODEL, prompt="def add(a, b):\n", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[:full.index(stop)] and cut.choices[0].finish_reason == "stop"
    many = client.completions.create(model=MODEL, prompt=["x = ", "def f("], n=3, max_tokens=6, temperature=1.0, seed=3)
    assert [c.index for c in many.choices] == list(range(6)) and many.usage.completion_tokens == 36
    again = client.completions.create(model=MODEL, prompt=["x = ", "def f("], n=3, max_tokens=6, temperature=1.0, seed=3)
    assert [c.text for c in again.choices] == [c.text for c in many.choices]
    assert len({c.text for c in many.choices[:3]}) > 1


def test_chat_and_streaming(client):
    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "add two numbers"}]
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0, n=2)
    assert len(r.choices) == 2 and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == r.choices[1].message.content  # greedy: same answer
    assert r.usage.completion_tokens <= 20 and r.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    arrivals, text, finish, usage = [], "", None, None
    for chunk in stream:
        arrivals.append(time.perf_counter())
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    longer = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0)
    assert text == longer.choices[0].message.content and finish == longer.choices[0].finish_reason
    assert usage.completion_tokens == longer.usage.completion_tokens
    assert len(arrivals) > 5 and arrivals[-1] - arrivals[0] > 0  # many chunks, spread over the generation


def test_completion_stream_chunks_arrive_before_the_end(server):
    body = {"model": MODEL, "prompt": "import math\n", "max_tokens": 120, "temperature": 0, "stream": True}
    times, events = [], []
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=60) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                times.append(time.perf_counter())
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert times[len(times) // 2] < times[-1] - 0.05  # the first half arrived well before the end


def test_streaming_n_prompts_and_stop_match_the_plain_answer(client):
    kwargs = dict(model=MODEL, prompt=["def add(a, b):\n", "for i in"], n=2, max_tokens=15, temperature=0.9, seed=11)
    plain = client.completions.create(**kwargs)
    texts, finishes = {}, {}
    for chunk in client.completions.create(stream=True, **kwargs):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            finishes[c.index] = c.finish_reason or finishes.get(c.index)
    assert texts == {c.index: c.text for c in plain.choices}
    assert finishes == {c.index: c.finish_reason for c in plain.choices}
    stop = plain.choices[0].text[3:5]
    cut = client.completions.create(model=MODEL, prompt="def add(a, b):\n", max_tokens=15, temperature=0.9,
                                    seed=11, stop=stop, stream=True)
    streamed = "".join(c.choices[0].text for c in cut if c.choices)
    assert streamed == plain.choices[0].text[:plain.choices[0].text.index(stop)]


@pytest.mark.parametrize("path,body,status,param", [
    ("/v1/completions", {"model": "nope", "prompt": "x"}, 404, "model"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "temperature": 5}, 400, "temperature"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "logprobs": 2}, 400, "logprobs"),
    ("/v1/completions", {"model": MODEL}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "word " * 300, "max_tokens": 8}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "word " * 300, "stream": True}, 400, "prompt"),
    ("/v1/chat/completions", {"model": MODEL, "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}, 400, None),
    ("/v1/evaluate", {"code": "x = 1"}, 400, None),
    ("/v1/evaluate", {"task_id": "HumanEval/99999", "completion": "pass"}, 404, "task_id"),
])
def test_bad_requests_get_openai_errors(server, path, body, status, param):
    r = httpx.post(f"{server}{path}", json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param:
        assert err["param"].startswith(param)


def test_malformed_json_and_openai_client_errors(server, client):
    import openai

    r = httpx.post(f"{server}/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x")
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="word " * 300)
    assert info.value.code == "context_length_exceeded"


def test_evaluate_code_tests_and_benchmark_tasks(server):
    def evaluate(**body):
        r = httpx.post(f"{server}/v1/evaluate", json=body, timeout=60)
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
    solution = task.reference[len(task.prompt):]
    assert evaluate(task_id="HumanEval/0", completion=solution)["passed"]
    assert not evaluate(task_id="HumanEval/0", completion="    return True\n")["passed"]


def test_is_a_teacher_and_an_eval_endpoint(server):
    from phiray.config import TeacherConfig
    from phiray.teacher import Request
    from phiray.teacher.openai_teacher import OpenAITeacher

    for api in ("chat", "completions"):
        cfg = TeacherConfig(kind="openai", base_url=f"{server}/v1", model=MODEL, api=api, max_tokens=8,
                            concurrency=4, max_retries=0, cache=False)
        answers = OpenAITeacher(cfg).complete([Request(key=str(i), prompt=f"Write a function {i}", seed=i)
                                               for i in range(4)])
        assert all(a.ok and a.tokens_out > 0 and a.tokens_in > 0 for a in answers), answers
    generation = pytest.importorskip("phiray.evals.generation")
    from phiray.evals.benchmarks import load_benchmark

    tasks = sorted(load_benchmark("humaneval"), key=lambda t: len(t.prompt))[:2]  # fit the tiny context
    settings = generation.GenerationSettings(n=2, temperature=0.8, max_new_tokens=8)
    samples = generation.generate_endpoint(f"{server}/v1", MODEL, tasks, settings)
    assert [s["task_id"] for s in samples] == [t.task_id for t in tasks for _ in range(2)]
