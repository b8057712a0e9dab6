"""The rehearsal of a KubeRay deployment (`make test-cluster`): every test here is marked `cluster`,
which the default tier deselects."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def rehearsal(s3_server, tmp_path_factory):
    from harness import start_cluster, stop_cluster

    cluster = None
    for attempt in (1, 2):  # a loaded 2-core machine can lose a head component mid-start (its `ray start` exits)
        try:
            cluster = start_cluster(s3_server, tmp_path_factory.mktemp(f"rehearsal-logs-{attempt}-"))
            break
        except RuntimeError as err:
            if attempt == 2:
                raise
            print(f"\nrehearsal cluster start {attempt} failed, starting afresh: {str(err)[:300]}")
    yield cluster
    stop_cluster(cluster)


@pytest.fixture(scope="session")
def teacher():
    """The rehearsal's LLM (annotate's judge, synthesize's teacher) on 127.0.0.1, logging every request."""
    import teacher_server

    server = teacher_server.start(latency_s=0.2)
    yield server
    server.server.stop()
