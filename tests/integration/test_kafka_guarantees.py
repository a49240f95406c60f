"""Guarantees that only a real Kafka can show (each skips on Tansu, which keeps nothing
across a restart, never compacts and has no transactions), and the real clients a
frontend would use (kcat, a confluent-kafka consumer group) on every engine.

All assertions are counts; none is on time.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid

import pytest

from harness.failover import Drill, run_drill
from tests.brokers import consume, per_key, produce, roll_and_wait_for_compaction, run
from tests.helpers import (
    MODEL,
    assert_same_list,
    expected_lists,
    lists_for,
    rating_message,
    start_worker_with_model,
)

pytestmark = pytest.mark.broker


def kafka_only(broker) -> None:
    if broker.engine != "kafka":
        pytest.skip("Apache Kafka only (Tansu: memory only, no compaction, no transactions)")


# --------------------------------------------------------------------------- restart
def test_a_broker_restart_under_a_running_worker_loses_no_rating(broker, tmp_path):
    """Kafka keeps its log, offsets and changelogs: the worker reconnects and every rating
    still gets its list. (Tansu loses everything on restart: test_broker_data_loss.py.)"""
    kafka_only(broker)
    drill = Drill("broker-restart", rate=150, seconds=24, kill_at=6, wait_s=150)
    result = run_drill(drill, broker, tmp_path, say=print,
                       RECSYS_SESSION_TIMEOUT_S=10)
    print(result.as_row())
    assert result.sent == int(drill.rate * drill.seconds)
    assert result.missing == [], f"{len(result.missing)} ratings got no list, e.g. {result.missing[:5]}"
    assert result.wrong_final == []


# --------------------------------------------------------------------------- compaction
def test_recommendations_and_item_similarity_are_compacted(broker, stream_env):
    from offline_als.publish import publish_similarity

    kafka_only(broker)
    conf = stream_env.conf
    start_worker_with_model(stream_env, version="v1")
    run(publish_similarity(MODEL, "v2",
                           conf=conf))  # every item a second time
    ratings = [("i0", 5, 1.0), ("i1", 4, 2.0), ("i3", 4, 3.0)]
    users = [f"cmp-{n}" for n in range(5)]
    run(produce(conf, conf.topics.ratings, [rating_message(u, *r) for r in ratings for u in users]))
    for user in users:
        assert len(lists_for(conf, user, len(ratings))) == len(ratings)
    before = per_key(run(consume(conf, conf.topics.recommendations, until=lambda m: False, timeout=3)))
    assert all(before[u.encode()] == len(ratings) for u in users)  # three lists per user before

    lists = roll_and_wait_for_compaction(conf, conf.topics.recommendations, {u.encode() for u in users})
    after = per_key(lists)
    assert {u: after[u.encode()] for u in users} == {u: 1 for u in users}
    last = {m.key.decode(): json.loads(m.value) for m in lists if m.key != b"zz-sentinel"}
    for user in users:  # the value kept is the newest list
        assert_same_list(last[user]["items"], expected_lists(ratings)[-1])

    items = {k.encode() for k in MODEL}
    similarity = per_key(roll_and_wait_for_compaction(conf, conf.topics.similarity, items))
    assert {k: similarity[k] for k in items} == {k: 1 for k in items}


# --------------------------------------------------------------------------- exactly once
@pytest.mark.parametrize("kind", ["restart", "failover"], ids=["one worker restarted", "two workers, one killed"])
def test_exactly_once_gives_one_list_per_rating_across_a_kill_9(broker, tmp_path, kind):
    """The project's own transactions (agents/transactions.py) on Kafka: kill -9 a worker
    under load (and restart it, or let the other take over), a new model published just
    before; a read_committed reader sees exactly one list per rating, and every user's
    last list is the replay's under the model version it names."""
    kafka_only(broker)
    drill = Drill(kind, rate=150, seconds=16, kill_at=6, wait_s=150, broadcast_at=4)
    result = run_drill(drill, broker, tmp_path, say=print, RECSYS_PROCESSING_GUARANTEE="exactly_once",
                       RECSYS_SESSION_TIMEOUT_S=10)
    print(result.as_row())
    assert result.missing == [], f"{len(result.missing)} ratings got no list"
    assert result.duplicates == 0 and result.lists == result.sent
    assert result.wrong_final == []


# --------------------------------------------------------------------------- real clients
def test_a_confluent_kafka_consumer_group_reads_lists_a_confluent_producer_caused(stream_env):
    from confluent_kafka import Consumer, Producer

    conf = stream_env.conf
    start_worker_with_model(stream_env)
    user = f"frontend-{uuid.uuid4().hex[:6]}"
    ratings = [("i0", 5, 1.0), ("i1", 4, 2.0)]
    producer = Producer({"bootstrap.servers": ",".join(conf.kafka.bootstrap_servers), "partitioner": "murmur2_random"})
    for item, rating, ts in ratings:
        producer.produce(conf.topics.ratings, key=user.encode(), value=rating_message(user, item, rating, ts)[1])
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": ",".join(conf.kafka.bootstrap_servers), "group.id": f"shop-{user}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([conf.topics.recommendations])
    mine: list = []
    try:
        deadline = time.monotonic() + 90
        while len(mine) < len(ratings) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error() and message.key() == user.encode():
                mine.append(json.loads(message.value()))
                consumer.commit(message, asynchronous=False)
    finally:
        consumer.close()
    assert [rec["trigger_ts"] for rec in mine] == [ts for *_, ts in ratings]
    for rec, want in zip(mine, expected_lists(ratings), strict=False):
        assert_same_list(rec["items"], want)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (apt-get install kcat)")
def test_kcat_produces_a_rating_and_reads_the_list(broker, stream_env):
    if broker.engine == "tansu":
        pytest.skip("Debian's kcat 1.7 fails on Tansu's malformed ApiVersions v3 answer (EMBEDDED_BROKER.md)")
    conf = stream_env.conf
    start_worker_with_model(stream_env)
    bootstrap = ",".join(conf.kafka.bootstrap_servers)
    user = f"kcat-{uuid.uuid4().hex[:6]}"
    line = f"{user}\t{rating_message(user, 'i0', 5, 1.0)[1].decode()}\n"
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", conf.topics.ratings, "-K", "\t", "-z", "none"],
                   input=line, text=True, check=True, timeout=60)
    assert len(lists_for(conf, user, 1)) == 1
    out = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", conf.topics.recommendations, "-o", "beginning", "-e",
                          "-q", "-f", "%k\t%s\n"], capture_output=True, text=True, check=True, timeout=60).stdout
    mine = [json.loads(row.split("\t", 1)[1]) for row in out.splitlines() if row.startswith(user + "\t")]
    assert len(mine) == 1
    assert_same_list(mine[0]["items"], expected_lists([("i0", 5, 1.0)])[-1])
