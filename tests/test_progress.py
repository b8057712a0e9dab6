"""Progress lines: the format, the bound on how often they are logged, and counting inside real Ray Data
pipelines (task maps, actor pools) and a real stage run."""

from __future__ import annotations

import json
import logging
import re
import time

import pyarrow as pa

from phiray import progress
from phiray.config import load_config
from phiray.rundir import RunDir
from phiray.stages import ingest

CLOCK = r"(?:\d+h)?(?:\d+m)?\d+s"
LINE = re.compile(
    rf"^progress (?P<what>[\w ]+): (?P<done>[\d,]+)(?:/(?P<total>[\d,]+))? (?P<unit>\w+)"
    rf"(?: \((?P<pct>\d+)%\))?, [\d,.]+/s, {CLOCK} elapsed(?:, ETA {CLOCK})?$"
)
DONE = re.compile(rf"^progress (?P<what>[\w ]+): (?P<done>[\d,]+) (?P<unit>\w+) done in {CLOCK}$")


def _lines(caplog, what: str) -> tuple[list[logging.LogRecord], list[logging.LogRecord]]:
    mine = [r for r in caplog.records if r.name == "phiray" and r.getMessage().startswith(f"progress {what}:")]
    return [r for r in mine if LINE.match(r.getMessage())], [r for r in mine if DONE.match(r.getMessage())]


def _assert_bounded(records: list[logging.LogRecord], interval: float) -> None:
    stamps = [r.created for r in records]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(g >= interval * 0.95 for g in gaps), gaps


def test_line_format_and_durations():
    assert progress.clock(5) == "5s" and progress.clock(185) == "3m05s" and progress.clock(7380) == "2h03m"
    line = progress.progress_line("filter scoring", 1200, 4800, "documents", 60.0)
    assert line == "progress filter scoring: 1,200/4,800 documents (25%), 20.0/s, 1m00s elapsed, ETA 3m00s"
    assert LINE.match(line)
    unknown = progress.progress_line("ingest", 1500, None, "inputs", 10.0)
    assert unknown == "progress ingest: 1,500 inputs, 150/s, 10s elapsed" and LINE.match(unknown)
    assert progress.progress_line("x", 0, 10, "rows", 3.0).endswith("0.0/s, 3s elapsed")  # no rate yet: no ETA


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "2.5")
    assert progress.track("x").interval == 2.5
    monkeypatch.setenv(progress.INTERVAL_ENV, "soon")
    assert progress.track("x").interval == progress.DEFAULT_INTERVAL_S
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    p = progress.track("x")
    assert not p.enabled and p.wrap(len) is len and p.count("dataset") == "dataset"


def test_counts_in_task_maps_and_actor_pools_at_a_bounded_rate(ray_session, caplog):
    import ray.data

    class SlowDouble:  # an actor-pool UDF with constructor arguments (local: pickled by value for the workers)
        def __init__(self, factor: int) -> None:
            self.factor = factor

        def __call__(self, table: pa.Table) -> pa.Table:
            time.sleep(0.05)
            return pa.table({"x": [v * self.factor for v in table.column("x").to_pylist()]})

    def _slow_ids(table: pa.Table) -> pa.Table:
        time.sleep(0.05)
        return table

    caplog.set_level(logging.INFO, logger="phiray")
    interval, n = 0.3, 400
    tasks, pool = progress.track("task map", n, interval=interval), progress.track("pool", n, interval=interval)
    with tasks, pool:
        ds = ray.data.from_items([{"x": i} for i in range(n)], override_num_blocks=20)
        ds = tasks.count(ds.map_batches(_slow_ids, batch_format="pyarrow", batch_size=None))
        out = ds.map_batches(
            pool.wrap(SlowDouble),
            fn_constructor_args=(2,),
            batch_size=10,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=0.5,
        ).materialize()
    assert sorted(r["x"] for r in out.take_all()) == [2 * i for i in range(n)]  # the wrapped class still works
    for what in ("task map", "pool"):
        lines, done = _lines(caplog, what)
        assert lines, [r.getMessage() for r in caplog.records]
        _assert_bounded(lines, interval)
        counts = [int(LINE.match(r.getMessage())["done"].replace(",", "")) for r in lines]
        assert counts == sorted(counts) and counts[-1] <= n
        assert [DONE.match(r.getMessage())["done"] for r in done] == [f"{n:,}"]


def test_a_short_pass_logs_nothing(ray_session, caplog):
    caplog.set_level(logging.INFO, logger="phiray")
    with progress.track("quick", total=3, interval=30) as p:
        p.add(3)
    assert p.done() == 3 and not [r for r in caplog.records if "progress quick" in r.getMessage()]


def test_an_ingest_run_logs_progress_lines_at_the_bound(ray_session, caplog, tmp_path, monkeypatch):
    interval = 0.25
    monkeypatch.setenv(progress.INTERVAL_ENV, str(interval))
    caplog.set_level(logging.INFO, logger="phiray")
    cfg = load_config("tiny", overrides=[f"ingest.sources={json.dumps([{'kind': 'stdlib', 'limit': 400}])}"])
    manifest = ingest.run(cfg, RunDir(tmp_path / "run"))
    lines, done = _lines(caplog, "ingest")
    assert lines, [r.getMessage() for r in caplog.records]
    _assert_bounded(lines, interval)
    for record in lines:
        match = LINE.match(record.getMessage())
        assert match["total"] == "400" and match["unit"] == "inputs" and int(match["done"].replace(",", "")) <= 400
    assert len(done) == 1 and DONE.match(done[0].getMessage())["done"] == "400"
    assert manifest.rows["read"] == 400
    assert done[0].created >= lines[-1].created


REINIT = """
import ray, ray.data
from phiray import progress
from phiray.runtime import prepare_environment
prepare_environment(local=True)
for session in range(2):  # the second cluster's first job has the first one's id
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    with progress.track("pass", 40, interval=0.1) as p:
        ds = p.count(ray.data.from_items([{"x": i} for i in range(40)], override_num_blocks=4).map_batches(lambda b: b))
        assert ds.count() == 40
    print("session", session, ray.get_runtime_context().get_job_id(), flush=True)
    ray.shutdown()
"""


def test_counting_survives_ray_shutdown_and_a_new_init(tmp_path):
    """A driver that shuts Ray down and starts it again (benchmarks/scale.py, one cluster per corpus size)
    counts in the new cluster: no handle of the old cluster's counter actor is reused (it crashed the
    core worker: 'Cannot find an actor handle of id')."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", REINIT], capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line.split()[:2] for line in done.stdout.splitlines() if line.startswith("session")] == [
        ["session", "0"],
        ["session", "1"],
    ]
