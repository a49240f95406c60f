"""Worker processes on this machine: used by the demo, the tests, the benchmarks and
``recsys evaluate --through-stream``.

A worker is ``python -m app.main worker`` in its own process group with its own
environment (broker port, data dir, app id, topic names, web port), so several
isolated deployments can share one embedded broker.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
TOPIC_SETTINGS = ("ratings", "events", "raw_logs", "similarity", "recommendations", "dead_letters")


def isolated_env(broker_port: int, data_dir: Path, *, tag: Optional[str] = None, partitions: int = 2,
                 **extra) -> dict:
    """Environment of a deployment of its own on a shared broker: unique app id and topics."""
    from app.embedded import free_port

    tag = tag or uuid.uuid4().hex[:8]
    env = dict(os.environ)
    env.update({
        "RECSYS_BROKER": "",
        "RECSYS_EMBEDDED_PORT": str(broker_port),
        "RECSYS_DATA_DIR": str(data_dir),
        "RECSYS_APP_ID": f"recsys-{tag}",
        "RECSYS_PARTITIONS": str(partitions),
        "RECSYS_WEB_PORT": str(free_port()),
    })
    for name in TOPIC_SETTINGS:
        env[f"RECSYS_TOPIC_{name.upper()}"] = f"{tag}-{name.replace('_', '-')}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


@dataclass
class WorkerProcess:
    """One ``recsys worker`` process, its web API and its log file."""

    name: str
    env: dict
    log_path: Path
    process: Optional[subprocess.Popen] = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['RECSYS_WEB_PORT']}"

    def start(self) -> "WorkerProcess":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.main", "worker", "-l", "info", "--web-port", self.env["RECSYS_WEB_PORT"]],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def get(self, path: str, timeout: float = 5.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def post(self, path: str, body: bytes):
        req = urllib.request.Request(self.url + path, data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def wait_ready(self, timeout: float = 90.0, model_version: Optional[str] = None) -> dict:
        """Wait until the API answers, ratings partitions are assigned and (if given) the
        model version has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} died:\n{self.log_tail()}")
            try:
                health = self.get("/health/", timeout=2)
                if health.get("ratings_partitions") and health.get("model_loaded") and (
                        model_version is None or health.get("model_version") == model_version):
                    return health
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"worker {self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"
