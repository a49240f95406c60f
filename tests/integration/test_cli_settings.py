"""Each broker command honours the settings it uses (a changed setting takes effect)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.brokers import consume, run
from tests.conftest import ROOT

pytestmark = pytest.mark.broker


def recsys(env: dict, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_create_topics_honours_partitions_and_topic_names(stream_env):
    from broker.clients import KafkaClients

    env = dict(stream_env.child_env, RECSYS_PARTITIONS="3", RECSYS_TOPIC_RATINGS=stream_env.conf.topics.ratings + "-x")
    created = recsys(env, "create-topics")
    assert created[env["RECSYS_TOPIC_RATINGS"]] == "created"

    async def partitions() -> int:
        consumer = await KafkaClients(stream_env.conf).consumer()
        try:
            await consumer._client.force_metadata_update()
            return len(consumer.partitions_for_topic(env["RECSYS_TOPIC_RATINGS"]) or ())
        finally:
            await consumer.stop()

    assert run(partitions()) == 3


def test_load_honours_the_topic_and_rating_scale_settings(stream_env, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("u1,i1,4,1\nu2,i2,5,2\n")
    env = dict(stream_env.child_env, RECSYS_TOPIC_RATINGS=stream_env.conf.topics.ratings + "-load")
    counts = recsys(env, "load", str(path), "--format", "csv")
    assert counts["sent"] == 2 and counts["topics"] == {env["RECSYS_TOPIC_RATINGS"]: 2}
    got = run(consume(stream_env.conf, env["RECSYS_TOPIC_RATINGS"], until=lambda m: len(m) >= 2, timeout=30))
    assert sorted(m.key for m in got) == [b"u1", b"u2"]


def test_exactly_once_on_tansu_is_refused_with_one_line(stream_env):
    if stream_env.engine != "tansu":
        pytest.skip("Apache Kafka has transactions: the worker starts (tests/integration/test_kafka_guarantees.py)")
    env = dict(stream_env.child_env, RECSYS_PROCESSING_GUARANTEE="exactly_once")
    out = subprocess.run([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=False, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "exactly_once needs Apache Kafka" in lines[0] and "Traceback" not in out.stderr
