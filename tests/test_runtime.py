def test_ray_session_is_local_and_loopback(ray_session):
    ray = ray_session
    assert ray.cluster_resources()["CPU"] == 2
    assert all(node["NodeManagerAddress"] == "127.0.0.1" for node in ray.nodes())

    @ray.remote
    def square(x):
        return x * x

    assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]


def test_init_ray_starts_a_loopback_only_cluster():
    """phiray's own start-up (not the test fixture) keeps every Ray listener on 127.0.0.1."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    tmp_path = tempfile.mkdtemp(prefix="rl", dir="/tmp")  # short: Ray's socket paths are length-limited

    code = (
        "from phiray.runtime import init_ray\n"
        f"init_ray(num_cpus=1, _temp_dir={str(tmp_path)!r})\n"
        "import ray\nprint('NODES', [n['NodeManagerAddress'] for n in ray.nodes()])\n"
        # Ray's repeating warnings are filtered in every worker process (the setup hook ran there).
        "@ray.remote\ndef quiet():\n"
        "    import logging\n    from phiray.runtime import REPEATING_RAY_WARNINGS, OncePerProcess\n"
        "    return all(any(isinstance(f, OncePerProcess) for f in logging.getLogger(n).filters)\n"
        "               for n in REPEATING_RAY_WARNINGS)\n"
        "print('QUIET', ray.get(quiet.remote()))\nray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert "NODES ['127.0.0.1']" in out.stdout, out.stderr[-2000:]
    assert "QUIET True" in out.stdout, out.stderr[-2000:]


def test_repeating_ray_warnings_are_shown_once(caplog):
    import logging

    from phiray.runtime import REPEATING_RAY_WARNINGS, quiet_ray_logs

    name = next(iter(REPEATING_RAY_WARNINGS))
    logger = logging.getLogger(name)
    quiet_ray_logs()
    quiet_ray_logs()  # idempotent: one filter, not two
    with caplog.at_level(logging.WARNING, logger=name):
        for _ in range(5):
            logger.warning(
                "Failed to query Ray Train Controller actor state. State API may be temporarily unavailable."
            )
        logger.warning("Detected that the Ray Train controller actor is dead.")
    messages = [r.getMessage() for r in caplog.records if r.name == name]
    assert len(messages) == 2 and messages[1].startswith("Detected")


def test_train_workers_drop_the_per_report_line_and_torchs_all_gather_warning(caplog):
    """What every fit printed once per report / once per worker (16 + 74 lines in a tiny run's log)."""
    import logging
    import warnings

    from ray.train.v2._internal.execution import context

    from phiray.train.loop import _quiet_worker_logs

    _quiet_worker_logs()
    logger = logging.getLogger(context.__file__)
    with caplog.at_level(logging.INFO):
        logger.info("Reporting training result 3: TrainingReport(...) from rank 0")
        logger.warning("a real warning still shows")
    assert [r.getMessage() for r in caplog.records if r.name == context.__file__] == ["a real warning still shows"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        _quiet_worker_logs()  # after simplefilter: its filter goes in front
        warnings.warn("`torch.distributed.all_gather_into_tensor` is deprecated. Please use ...", FutureWarning)
        warnings.warn("another FutureWarning", FutureWarning)
    assert [str(w.message) for w in caught] == ["another FutureWarning"]
