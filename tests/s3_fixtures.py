"""A real S3-compatible HTTP server on 127.0.0.1 (moto's standalone server) for run dirs on ``s3://``.

Credentials and the endpoint reach pyarrow (and every Ray worker that inherits the environment) the
usual way: ``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from serve_fixtures import free_port


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]
    process: subprocess.Popen

    def filesystem(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=self.env["AWS_ACCESS_KEY_ID"],
            secret_key=self.env["AWS_SECRET_ACCESS_KEY"],
            endpoint_override=self.endpoint,
            region=self.env["AWS_REGION"],
            allow_bucket_creation=True,
            allow_bucket_deletion=True,
        )

    def new_bucket(self, prefix: str = "phiray") -> str:
        """A fresh bucket; returns ``s3://name``."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.filesystem().create_dir(name)
        return f"s3://{name}"


def start_s3(log_path: Path, timeout_s: float = 60.0) -> S3Server:
    """Start ``moto.server`` on a free loopback port and wait until it answers."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).read()
            break
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_group(proc)
                raise RuntimeError(f"moto server did not start on {endpoint} (log: {log_path})") from None
            time.sleep(0.3)
    env = {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "phiray-test",
        "AWS_SECRET_ACCESS_KEY": "phiray-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return S3Server(endpoint, env, proc)


def stop_group(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM the process group of `proc` (started with start_new_session), SIGKILL if it lingers."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
