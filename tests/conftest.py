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
import time
from pathlib import Path

import pytest

from app.local import WorkerProcess

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
    from app.local import isolated_env
    from app.settings import Settings

    env = isolated_env(broker.port, tmp_path / "data", RECSYS_LOG_EVERY_S=2)
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    conf = Settings()
    yield StreamEnv(env=env, conf=conf, tmp=tmp_path)
    os.environ.clear()
    os.environ.update(old)


@dataclasses.dataclass
class StreamEnv:
    env: dict
    conf: object
    tmp: Path

    def worker(self, name: str = "w1") -> WorkerProcess:
        from app.embedded import free_port

        env = dict(self.env)
        if name != "w1":  # a second worker on the same machine needs its own port and state dir
            env["RECSYS_WEB_PORT"] = str(free_port())
            env["RECSYS_DATA_DIR"] = str(self.tmp / f"data-{name}")
        return WorkerProcess(name=name, env=env, log_path=self.tmp / f"{name}.log").start()

    def ready_worker(self, started: list, name: str = "w1") -> WorkerProcess:
        """Start a worker, register it for teardown in ``started`` and wait until it is ready."""
        worker = self.worker(name)
        started.append(worker)
        worker.wait_ready()
        return worker


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
