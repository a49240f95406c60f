"""Broker helpers of the tests, in one module: which engines to test, starting one, and
small produce/consume helpers every broker test uses.

``RECSYS_TEST_ENGINE``: ``tansu``, ``kafka`` or ``both``. Unset: ``both`` when ``java``
and ``mvn`` are on PATH (Apache Kafka needs them), else ``tansu`` with a loud warning.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import shutil
import time
import warnings

from broker.local import ENGINES, start_engine  # noqa: F401  (the fixtures use it)


def engines_to_test() -> list[str]:
    wanted = os.environ.get("RECSYS_TEST_ENGINE", "").strip().lower()
    if wanted in ENGINES:
        return [wanted]
    if wanted not in ("", "both"):
        raise ValueError(f"RECSYS_TEST_ENGINE={wanted!r}: use tansu, kafka or both")
    if shutil.which("java") and shutil.which("mvn"):
        return list(ENGINES)
    if wanted == "both":
        raise RuntimeError("RECSYS_TEST_ENGINE=both needs java and mvn on PATH (Apache Kafka)")
    warnings.warn("java or mvn missing: the broker tests run on Tansu ONLY, not on Apache Kafka", stacklevel=1)
    return ["tansu"]


def run(coro):
    return asyncio.run(coro)


async def produce(conf, topic: str, messages) -> None:
    from broker.clients import KafkaClients

    producer = await KafkaClients(conf).producer("bulk", linger_ms=5)
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(conf, topic: str, *, until, timeout: float = 60.0) -> list:
    """Read ``topic`` from the beginning until ``until(messages)`` is true (or time out)."""
    from broker.clients import KafkaClients

    consumer = await KafkaClients(conf).consumer(topic)
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


def engine_summary(passed_nodeids) -> str:
    """The line ``make test`` ends near: how many broker tests passed on each engine, and
    loudly when none ran on Apache Kafka ("" when no broker test ran)."""
    nodeids = list(passed_nodeids)
    counts = {engine: sum(1 for nodeid in nodeids if re.search(rf"[\[-]{engine}[\]-]", nodeid)) for engine in ENGINES}
    if not any(counts.values()):
        return ""
    line = "broker tests passed: " + ", ".join(f"{n} on {engine}" for engine, n in counts.items())
    return line + ("   <<< NONE on Apache Kafka >>>" if not counts.get("kafka") else "")


def per_key(messages) -> collections.Counter:
    return collections.Counter(m.key for m in messages)


def roll_and_wait_for_compaction(conf, topic: str, keys: set, timeout: float = 90.0) -> list:
    """Kafka compacts closed segments only: wait past ``log.roll.ms`` (2 s in the tests'
    broker, tests/conftest.py), write a sentinel to each partition so the segment holding
    ``keys`` closes, then read from the beginning until every key in ``keys`` has one
    value (or ``timeout``)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from broker.clients import KafkaClients

    async def compact_at_once() -> None:  # the session broker keeps young messages: not here
        admin = await KafkaClients(conf).admin()
        try:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {
                "cleanup.policy": "compact", "min.compaction.lag.ms": "0"})])
        finally:
            await admin.close()

    run(compact_at_once())
    time.sleep(3)

    async def sentinels() -> None:
        producer = await KafkaClients(conf).producer("durable")
        try:
            for partition in range(conf.kafka.partitions):
                await producer.send_and_wait(topic, key=b"zz-sentinel", value=b'{"sentinel": true}',
                                             partition=partition)
        finally:
            await producer.stop()

    run(sentinels())
    deadline = time.monotonic() + timeout
    while True:
        messages = run(consume(conf, topic, until=lambda m: False, timeout=3))
        counts = per_key(messages)
        if all(counts[k] == 1 for k in keys) or time.monotonic() > deadline:
            return messages
        time.sleep(2)
