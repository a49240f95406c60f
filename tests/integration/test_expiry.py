"""Bounded state (``RECSYS_USER_TTL_DAYS``, ``agents/expiry.py``): a user with no interaction
for longer than the TTL before their partition's newest event time leaves: the query API
forgets them, ``recommendations`` gets their tombstone, and a returning user starts afresh."""
from __future__ import annotations

import time

import pytest

from broker.partitioning import owner_partition
from tests.brokers import consume, produce, roll_and_wait_for_compaction, run
from tests.helpers import lists_for, rating_message, start_worker_with_model

pytestmark = pytest.mark.broker
RANKER = "default"
DAY = 86400.0


def test_a_quiet_user_is_removed_and_a_returning_one_starts_afresh(stream_env):
    conf = stream_env.set(RECSYS_USER_TTL_DAYS=1, RECSYS_USER_EXPIRY_EVERY_S=0.5)
    worker = start_worker_with_model(stream_env)
    worker.wait_ready(model_version="v-test")
    names = [f"user{n}" for n in range(50)]
    old, new = [u for u in names if owner_partition(u.encode(), conf.kafka.partitions) == 0][:2]
    t0 = time.time() - 10 * DAY
    run(produce(conf, conf.topics.ratings, [rating_message(old, "i0", 5, t0), rating_message(old, "i1", 4, t0 + 1),
                                            rating_message(new, "i2", 5, t0 + 3 * DAY)]))
    lists_for(conf, new, 1)
    deadline = time.monotonic() + 30
    while worker.get(f"/recommendations/{old}/")["source"] == "realtime":
        assert time.monotonic() < deadline, "the quiet user was never removed"
        time.sleep(0.3)
    assert worker.get(f"/recommendations/{new}/")["source"] == "realtime"  # within a day of the watermark
    tombstones = run(consume(conf, conf.topics.recommendations, timeout=30,
                             until=lambda ms: any(m.key == old.encode() and m.value is None for m in ms)))
    assert [m.value is None for m in tombstones if m.key == old.encode()][-1]  # the list's last word
    assert worker.get("/metrics/json")["counters"]["users.expired"] == 1

    run(produce(conf, conf.topics.ratings, [rating_message(old, "i6", 5, t0 + 3 * DAY + 60)]))
    deadline = time.monotonic() + 30
    while (back := worker.get(f"/recommendations/{old}/"))["source"] != "realtime":
        assert time.monotonic() < deadline, "the returning user got no list"
        time.sleep(0.3)
    assert set(back["because"].values()) == {"i6"}  # nothing of before the removal
    assert {"i0", "i1"} & {q for q, _s in back["items"]}  # i0 and i1 are no longer "had": listable again


def test_after_compaction_an_expired_user_is_only_a_tombstone(broker, stream_env):
    """Apache Kafka compacts: of a removed user, the state changelog and the lists topic
    keep nothing but the tombstone (which itself goes after ``delete.retention.ms``)."""
    if broker.engine != "kafka":
        pytest.skip("Apache Kafka only (Tansu never compacts)")
    conf = stream_env.set(RECSYS_USER_TTL_DAYS=1, RECSYS_USER_EXPIRY_EVERY_S=0.5)
    worker = start_worker_with_model(stream_env)
    t0 = time.time() - 10 * DAY
    run(produce(conf, conf.topics.ratings, [rating_message("gone", "i0", 5, t0), rating_message("gone", "i1", 4, t0 + 1),
                                            rating_message("stays", "i2", 5, t0 + 3 * DAY)]))
    lists_for(conf, "stays", 1)
    deadline = time.monotonic() + 30
    while worker.get("/metrics/json")["counters"].get("users.expired", 0) < 1:
        assert time.monotonic() < deadline, "the quiet user was never removed"
        time.sleep(0.3)
    changelog = f"{conf.worker.app_id}-user_state-changelog"
    for topic in (changelog, conf.topics.recommendations):
        before = [m.value for m in run(consume(conf, topic, until=lambda m: False, timeout=3)) if m.key == b"gone"]
        assert len(before) >= 2 and before[0] is not None and before[-1] is None, topic  # values, then the tombstone
        records = roll_and_wait_for_compaction(conf, topic, {b"gone", b"stays"})
        kept = [m.value for m in records if m.key == b"gone"]
        assert kept == [None], f"{topic}: {kept}"
        assert [m.value is not None for m in records if m.key == b"stays"] == [True]
