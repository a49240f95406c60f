"""The second local engine: Apache Kafka itself (``broker/apache_kafka.py``).

One single-node KRaft broker for the module (session fixture); the restart test runs its
own on a data dir of its own. Needs ``java`` (17+) and ``mvn`` (the jars are fetched once
into ~/.cache/recsys). Run only these: ``.venv/bin/python -m pytest -m kafka tests/integration/test_kafka_engine.py``.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

if not (shutil.which("java") and shutil.which("mvn")):
    pytest.skip("Apache Kafka engine needs `java` (17+) and `mvn` on PATH", allow_module_level=True)

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from broker.apache_kafka import KafkaBroker, free_port, is_listening, start_kafka

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    log_file = tmp_path_factory.mktemp("kafka") / "kafka.log"
    b = start_kafka(0, log_file=log_file)
    yield b
    b.stop()


def total(offsets: dict) -> int:
    """Sum of committed offsets (None: nothing committed on that partition)."""
    return sum(v or 0 for v in offsets.values())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- async helpers (no pytest-asyncio here) ---------------------------------------------

async def create_topic(bootstrap: str, name: str, partitions: int = 1, configs: dict | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
        assert [err for _, err, *_ in response.topic_errors] == [0], response
    finally:
        await admin.close()


async def partition_ids(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert described["error_code"] == 0 and described["partitions"], described
    return sorted(p["partition"] for p in described["partitions"])


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[tuple[bytes, bytes]]:
    """Everything in ``topic`` right now, from the beginning (no group: nothing committed)."""
    # No group: "earliest" is where it starts (a seek_to_beginning right after assign()
    # can lose the race against the default "latest" reset in aiokafka).
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(bootstrap, topic)]
        end = await consumer.end_offsets(parts)
        consumer.assign(parts)
        out: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} up to {end} within {timeout}s"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [(r.key, r.value) for r in records]
        return out
    finally:
        await consumer.stop()


async def consume_group(bootstrap: str, topic: str, group: str, n: int, timeout: float = 60.0):
    """Read exactly ``n`` records with consumer group ``group`` and commit them."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                max_poll_records=1)
    await consumer.start()
    try:
        got: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            assert time.monotonic() < deadline, f"group {group} read {len(got)} of {n} records in {timeout}s"
            msg = await asyncio.wait_for(consumer.getone(), timeout=max(0.1, deadline - time.monotonic()))
            got.append((msg.key, msg.value))
            await consumer.commit({TopicPartition(msg.topic, msg.partition): msg.offset + 1})
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        return got, committed
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, topic: str, group: str) -> dict[int, int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partition_ids(bootstrap, topic)
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in parts}
    finally:
        await consumer.stop()


async def metadata(bootstrap: str):
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await client.bootstrap()
    try:
        return client.cluster
    finally:
        await client.close()


# --- tests ------------------------------------------------------------------------------

def test_broker_surface(kafka_broker: KafkaBroker):
    assert kafka_broker.bootstrap == f"127.0.0.1:{kafka_broker.port}"
    assert kafka_broker.url == f"kafka://127.0.0.1:{kafka_broker.port}"
    assert kafka_broker.process.poll() is None
    assert (kafka_broker.log_dirs / "meta.properties").is_file()
    props = kafka_broker.properties_file.read_text()
    for line in ("process.roles=broker,controller", "auto.create.topics.enable=false",
                 f"advertised.listeners=PLAINTEXT://127.0.0.1:{kafka_broker.port}"):
        assert line in props.splitlines()
    cluster = asyncio.run(metadata(kafka_broker.bootstrap))
    assert [b.nodeId for b in cluster.brokers()] == [1]
    assert cluster.controller is not None and cluster.controller.nodeId == 1


def test_produce_consume_round_trip(kafka_broker: KafkaBroker):
    topic, group = unique("roundtrip"), unique("g")
    records = [(f"k{i % 5}".encode(), f"v{i}".encode()) for i in range(40)]

    async def scenario():
        await create_topic(kafka_broker.bootstrap, topic, partitions=3)
        await produce(kafka_broker.bootstrap, topic, records)
        got, committed = await consume_group(kafka_broker.bootstrap, topic, group, len(records))
        return got, committed, await committed_offsets(kafka_broker.bootstrap, topic, group)

    got, committed, from_new_client = asyncio.run(scenario())
    assert sorted(got) == sorted(records)
    # Per key, the order of production is kept (one key -> one partition).
    by_key = defaultdict(list)
    for k, v in got:
        by_key[k].append(int(v[1:]))
    assert all(vs == sorted(vs) for vs in by_key.values())
    assert total(committed) == len(records)
    assert total(from_new_client) == len(records)


def test_compacted_topic_is_compacted(kafka_broker: KafkaBroker):
    topic = unique("compacted")
    keys = [f"key{i}".encode() for i in range(10)]
    versions = 5
    records = [(k, f"{k.decode()}-v{n}".encode()) for n in range(versions) for k in keys]
    configs = {"cleanup.policy": "compact", "segment.ms": "500", "min.cleanable.dirty.ratio": "0.01",
               "min.compaction.lag.ms": "0", "delete.retention.ms": "1000"}

    async def scenario():
        await create_topic(kafka_broker.bootstrap, topic, partitions=1, configs=configs)
        await produce(kafka_broker.bootstrap, topic, records)
        before = await read_all(kafka_broker.bootstrap, topic)
        # The cleaner never touches the active segment: keep appending a marker record
        # (after segment.ms, so every append rolls a segment) until the reader sees one
        # value per key. Bounded: 90 rounds of about a second.
        for _ in range(90):
            await asyncio.sleep(1.0)
            await produce(kafka_broker.bootstrap, topic, [(b"roll", b"x")])
            after = await read_all(kafka_broker.bootstrap, topic)
            counts = Counter(k for k, _ in after if k != b"roll")
            if counts and all(counts[k] == 1 for k in keys):
                return before, after
        return before, after

    before, after = asyncio.run(scenario())
    assert Counter(k for k, _ in before) == {k: versions for k in keys}
    counts = Counter(k for k, _ in after if k != b"roll")
    assert counts == {k: 1 for k in keys}, f"not compacted: {counts}"
    latest = {k: v for k, v in after if k != b"roll"}
    assert latest == {k: f"{k.decode()}-v{versions - 1}".encode() for k in keys}


def test_restart_keeps_messages_and_committed_offsets(tmp_path):
    data_dir = tmp_path / "kafka-data"
    topic, group = unique("durable"), unique("g")
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    b = start_kafka(0, data_dir=data_dir, log_file=tmp_path / "kafka.log")
    try:
        port = b.port

        async def before_restart():
            await create_topic(b.bootstrap, topic, partitions=2)
            await produce(b.bootstrap, topic, records)
            return await consume_group(b.bootstrap, topic, group, 10)

        first, committed = asyncio.run(before_restart())
        assert len(first) == 10 and total(committed) == 10

        b.restart()  # graceful stop + start on the same data dir and port
        assert b.port == port and b.process.poll() is None

        async def after_restart():
            everything = await read_all(b.bootstrap, topic)
            offsets = await committed_offsets(b.bootstrap, topic, group)
            rest, _ = await consume_group(b.bootstrap, topic, group, 10)
            return everything, offsets, rest

        everything, offsets, rest = asyncio.run(after_restart())
        assert sorted(everything) == sorted(records)
        assert total(offsets) == 10
        assert sorted(first + rest) == sorted(records)  # resumed exactly where the group stopped

        b.kill9()  # a crash: the next start recovers the logs
        b.stop()
        assert data_dir.is_dir(), "a given data dir must survive stop()"
        b = start_kafka(0, data_dir=data_dir, log_file=tmp_path / "kafka.log")
        assert b.port == port  # port=0 on a reused data dir: the previous port again
        everything = asyncio.run(read_all(b.bootstrap, topic))
        assert sorted(everything) == sorted(records)
        assert total(asyncio.run(committed_offsets(b.bootstrap, topic, group))) == 20
    finally:
        b.stop()


def recsys_cmd(*args: str) -> list[str]:
    """``recsys ARGS`` from the checkout (``-m``: the work tree is on sys.path, whatever the
    installed package list says)."""
    return [sys.executable, "-m", "cli.main", *args]


def test_cli_broker_engine_kafka(tmp_path):
    port = free_port()
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(recsys_cmd("broker", "--engine", "kafka", "--port", str(port)),
                                cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while "listening on" not in out_path.read_text():
            assert proc.poll() is None, f"exited {proc.returncode}: {err_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"not ready in 180s: {err_path.read_text()[-2000:]}"
            time.sleep(0.25)
        ready = [line for line in out_path.read_text().splitlines() if "listening on" in line]
        assert len(ready) == 1 and ready[0].endswith(f"listening on 127.0.0.1:{port}"), ready
        log_file = Path(re.search(r"; log (\S+)\)", ready[0]).group(1))
        data_dir = log_file.with_suffix("")  # no --data-dir: a temporary one, <dir>.log beside it
        assert (data_dir / "kraft" / "meta.properties").is_file() and log_file.is_file()
        cluster = asyncio.run(metadata(f"127.0.0.1:{port}"))
        assert [b.port for b in cluster.brokers()] == [port]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, err_path.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while is_listening(port) and time.monotonic() < deadline:  # the JVM is gone with it
        time.sleep(0.2)
    assert not is_listening(port)
    assert not data_dir.exists() and not log_file.exists(), "the temporary data dir and log outlive the broker"


def test_cli_broker_without_java_exits_2_with_one_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(empty)
    done = subprocess.run(recsys_cmd("broker", "--engine", "kafka", "--port", str(free_port())),
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "java" in lines[0].lower(), done.stderr
    assert "Traceback" not in done.stderr
