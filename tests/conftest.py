"""Shared fixtures: the embedded broker (one per session) and worker processes.

Integration tests talk to a real Kafka-compatible broker (Tansu, started here on a
free loopback port), real RocksDB tables and real topics. Every test gets its own
topic names, consumer group and data directory so tests never see each other's data.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    from app.embedded import start_broker

    log_file = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = start_broker(0, log_file=str(log_file))
    yield b
    b.stop()


@pytest.fixture
def stream_env(broker, tmp_path):
    """Environment (and Settings) of an isolated deployment on the session broker."""
    from app.embedded import free_port
    from app.settings import Settings

    tag = uuid.uuid4().hex[:8]
    env = {
        "RECSYS_BROKER": "",
        "RECSYS_EMBEDDED_PORT": str(broker.port),
        "RECSYS_DATA_DIR": str(tmp_path / "data"),
        "RECSYS_APP_ID": f"recsys-{tag}",
        "RECSYS_PARTITIONS": "2",
        "RECSYS_WEB_PORT": str(free_port()),
        "RECSYS_LOG_EVERY_S": "2",
    }
    for name in ("ratings", "events", "raw_logs", "similarity", "recommendations", "dead_letters"):
        env[f"RECSYS_TOPIC_{name.upper()}"] = f"{tag}-{name.replace('_', '-')}"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    conf = Settings()
    yield StreamEnv(env=dict(os.environ), conf=conf, tmp=tmp_path)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@dataclasses.dataclass
class StreamEnv:
    env: dict
    conf: object
    tmp: Path

    def worker(self, name: str = "w1", **overrides) -> "WorkerProcess":
        from app.embedded import free_port

        env = dict(self.env, **{k: str(v) for k, v in overrides.items()})
        if name != "w1":  # a second worker on the same machine needs its own port and state dir
            env.setdefault("RECSYS_WEB_PORT", str(free_port()))
            env["RECSYS_WEB_PORT"] = overrides.get("RECSYS_WEB_PORT", str(free_port()))
            env["RECSYS_DATA_DIR"] = str(self.tmp / f"data-{name}")
        return WorkerProcess(name=name, env=env, log_path=self.tmp / f"{name}.log").start()


@dataclasses.dataclass
class WorkerProcess:
    name: str
    env: dict
    log_path: Path
    process: subprocess.Popen | None = None

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

    def wait_ready(self, timeout: float = 90.0, partitions: bool = True) -> dict:
        """Wait until the web server answers and (optionally) ratings partitions are assigned."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), f"worker {self.name} died:\n{self.log_tail()}"
            try:
                health = self.get("/health/", timeout=2)
                if not partitions or health.get("ratings_partitions"):
                    return health
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker {self.name} not ready in {timeout}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


@pytest.fixture
def workers():
    """Collects started workers and stops them after the test."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


# ------------------------------------------------------------------ kafka helpers
def run(coro):
    return asyncio.run(coro)


async def produce(conf, topic: str, messages) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=conf.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(conf, topic: str, *, until, timeout: float = 60.0) -> list:
    """Read ``topic`` from the beginning until ``until(messages)`` is true (or time out)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=conf.bootstrap_servers, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100)
    await consumer.start()
    messages: list = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(messages):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                messages.extend(records)
    finally:
        await consumer.stop()
    return messages


def json_values(messages) -> list:
    return [json.loads(m.value) for m in messages if m.value is not None]
