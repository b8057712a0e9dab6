"""Progress a person can read: one line per interval for a long stage, with rows done / total, rate and ETA.

Rows are counted where the work happens, in the Ray tasks and actors of a Dataset pipeline: each batch
sends its row count to one small counter actor (a fire-and-forget call per batch, never per row), and a
thread on the driver reads the count once per interval and logs one line, e.g.::

    progress filter scoring: 12,288/40,960 documents (30%), 204/s, 1m00s elapsed, ETA 2m20s

Nothing about the rows reaches the driver but their number. ``PHIRAY_PROGRESS_S`` sets the interval
(seconds, default 20; 0 turns the lines off). A stage that ends within one interval logs nothing here.

    with progress.track("dedup signatures", total=n_docs, unit="documents") as p:
        signed = p.count(docs.map_batches(sign)).materialize()      # a pass-through counting map
        scored = ds.map_batches(p.wrap(Scorer), compute=...)        # or a counting UDF (actor pools)
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import threading
import time
import uuid
from typing import Any, Callable

log = logging.getLogger("phiray")

INTERVAL_ENV = "PHIRAY_PROGRESS_S"
DEFAULT_INTERVAL_S = 20.0
PREFIX = "progress "


def interval_s() -> float:
    """Seconds between two progress lines: ``PHIRAY_PROGRESS_S``, else ``DEFAULT_INTERVAL_S``."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        log.warning("%s=%r is not a number of seconds; using %s", INTERVAL_ENV, raw, DEFAULT_INTERVAL_S)
        return DEFAULT_INTERVAL_S
    return max(0.0, value)


def clock(seconds: float) -> str:
    """A duration as a person reads it: 42s, 3m05s, 2h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(what: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    """``what: done/total unit (pct), rate/s, elapsed, ETA`` (without total or rate: what is known)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    head = f"{PREFIX}{what}: {done:,}/{total:,} {unit}" if total is not None else f"{PREFIX}{what}: {done:,} {unit}"
    if total:
        head += f" ({min(100.0, 100.0 * done / total):.0f}%)"
    parts = [head, f"{rate:,.1f}/s" if rate < 100 else f"{rate:,.0f}/s", f"{clock(elapsed)} elapsed"]
    if total is not None and rate > 0:
        parts.append(f"ETA {clock(max(0, total - done) / rate)}")
    return ", ".join(parts)


class _Counts:
    """The counter actor: row counts per tracked pass (keys are unique per ``track``)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + int(n)

    def get(self, key: str) -> int:
        return self.counts.get(key, 0)

    def drop(self, key: str) -> int:
        return self.counts.pop(key, 0)


def _counter_actor():
    """This driver's counter actor, one per Ray job (0 CPUs: it never takes a task's core). Found by name
    each time, not cached in the process: after ``ray.shutdown()`` and a new ``ray.init()`` the new cluster's
    first job has the same id, and a cached handle of the old cluster's actor crashes the core worker."""
    import ray

    job = ray.get_runtime_context().get_job_id()
    actor = ray.remote(num_cpus=0, max_restarts=0)(_Counts)
    return actor.options(name=f"phiray-progress-{job}", get_if_exists=True).remote()


class RowCounter:
    """What a task or actor holds to count rows (picklable: the actor handle and this pass's key)."""

    def __init__(self, actor: Any, key: str) -> None:
        self.actor, self.key = actor, key

    def add(self, n: int) -> None:
        if n and self.actor is not None:
            self.actor.add.remote(self.key, int(n))  # fire and forget: the batch never waits on the count


def batch_rows(batch: Any) -> int:
    """Rows of a Ray Data batch (pyarrow Table, pandas DataFrame, or a dict of columns)."""
    if hasattr(batch, "num_rows"):
        return int(batch.num_rows)
    if isinstance(batch, dict):
        return len(next(iter(batch.values()), ()))
    return len(batch)


def _count_rows(table, counter: RowCounter):
    counter.add(table.num_rows)
    return table


def _after(out: Any, counter: RowCounter, n: int) -> Any:
    """Count ``n`` once ``out`` is produced (a generator UDF: once it is exhausted)."""
    if not inspect.isgenerator(out):
        counter.add(n)
        return out

    def _drain():
        yield from out
        counter.add(n)

    return _drain()


def counting(udf: Callable | type, counter: RowCounter) -> Callable | type:
    """``udf`` (a function or a callable class for an actor pool) counting the rows of each batch it
    finishes; a class keeps its name, so Ray Data's operator names do not change."""
    call = udf.__call__ if isinstance(udf, type) else udf
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        raise TypeError(f"progress: {getattr(udf, '__name__', udf)!r} is async; count its output with Progress.count")
    if isinstance(udf, type):
        base = udf

        class Counted(base):  # type: ignore[misc, valid-type]
            def __call__(self, batch, *args, **kwargs):
                return _after(super().__call__(batch, *args, **kwargs), counter, batch_rows(batch))

        Counted.__name__, Counted.__qualname__ = base.__name__, base.__qualname__
        return Counted

    def counted(batch, *args, **kwargs):
        return _after(udf(batch, *args, **kwargs), counter, batch_rows(batch))

    counted.__name__ = getattr(udf, "__name__", type(udf).__name__)
    return counted


class Progress:
    """One tracked pass: a context manager that logs a progress line every ``interval_s`` seconds while open."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        unit: str = "rows",
        interval: float | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.what, self.total, self.unit, self.logger = what, total, unit, logger
        self.interval = interval_s() if interval is None else interval
        self.key = f"{what}:{uuid.uuid4().hex}"
        self.lines = 0
        self._local = 0
        self._actor: Any = None
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- counting -------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def counter(self) -> RowCounter:
        """The picklable counter handed to tasks and actors (starts the counter actor on first use; with
        progress lines off, a counter that counts nothing)."""
        if self._actor is None and self.enabled:
            self._actor = _counter_actor()
        return RowCounter(self._actor, self.key)

    def add(self, n: int) -> None:
        """Count rows done on the driver itself (a driver-side loop)."""
        self._local += int(n)

    def count(self, ds: "Any") -> "Any":
        """``ds`` with a pass-through map counting its rows (fused into the previous task-based map)."""
        if not self.enabled:
            return ds
        return ds.map_batches(
            _count_rows,
            fn_kwargs={"counter": self.counter},
            batch_format="pyarrow",
            zero_copy_batch=True,
            batch_size=None,
        )

    def wrap(self, udf: Callable | type) -> Callable | type:
        """``udf`` counting every batch it finishes (see :func:`counting`)."""
        return counting(udf, self.counter) if self.enabled else udf

    def done(self) -> int:
        """Rows counted so far (driver-side plus what tasks and actors reported)."""
        if self._actor is None:
            return self._local
        import ray

        return self._local + int(ray.get(self._actor.get.remote(self.key), timeout=10))

    # -- logging --------------------------------------------------------------------------------------
    def _log(self, final: bool = False) -> None:
        try:
            done = self.done()
            # A task's last fire-and-forget count can land just after the pass returns: wait a moment for it.
            deadline = time.monotonic() + 2.0
            while final and self.total is not None and done < self.total and time.monotonic() < deadline:
                time.sleep(0.1)
                done = self.done()
        except Exception as err:  # noqa: BLE001 - a lost count must never fail the stage it reports on
            self.logger.debug("progress %s: count unavailable (%s)", self.what, err)
            return
        elapsed = time.monotonic() - self._started
        if final:
            self.logger.info("%s%s: %s %s done in %s", PREFIX, self.what, f"{done:,}", self.unit, clock(elapsed))
        else:
            self.logger.info("%s", progress_line(self.what, done, self.total, self.unit, elapsed))
        self.lines += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._log()

    def __enter__(self) -> "Progress":
        self._started = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name=f"progress-{self.what}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self.lines and exc[0] is None:
            self._log(final=True)
        if self._actor is not None:
            self._actor.drop.remote(self.key)


def upstream_rows(rd: Any, stage: str, key: str) -> int | None:
    """A row count from an upstream stage's manifest (a progress total), None when it has none."""
    manifest = rd.read_manifest(stage)
    value = manifest.rows.get(key) if manifest is not None else None
    return int(value) if value is not None else None


def track(what: str, total: int | None = None, unit: str = "rows", interval: float | None = None) -> Progress:
    """A :class:`Progress` for one long pass of a stage (use it as a context manager)."""
    return Progress(what, total, unit, interval)
