"""A user's state stays whole whatever partitioner the producer used (real clients)."""
from __future__ import annotations

import itertools
import json

import pytest

from broker.partitioning import owner_partition
from tests.brokers import produce, run
from tests.helpers import assert_same_list, expected_lists, lists_for, start_worker_with_model

pytestmark = pytest.mark.broker


def users_librdkafka_misroutes(conf, n: int) -> list[str]:
    """Users whose murmur2 partition (ours) differs from librdkafka's default (CRC32)."""
    import zlib

    out = []
    for k in range(1000):
        user = f"kc-user-{k}"
        if (zlib.crc32(user.encode()) & 0xFFFFFFFF) % conf.kafka.partitions != owner_partition(user.encode(), conf.kafka.partitions):
            out.append(user)
        if len(out) == n:
            return out
    raise AssertionError("no misrouted user found")


def test_ratings_from_a_librdkafka_producer_reach_the_users_partition(stream_env):
    from confluent_kafka import Producer

    conf = stream_env.conf
    worker = start_worker_with_model(stream_env)
    users = users_librdkafka_misroutes(conf, 3)
    ratings = [("i0", 5, 1.0), ("i1", 4, 2.0), ("i6", 2, 3.0)]
    producer = Producer({"bootstrap.servers": ",".join(conf.kafka.bootstrap_servers)})  # default partitioner
    for item, rating, ts in ratings:
        for user in users:
            producer.produce(conf.topics.ratings, key=user.encode(),
                             value=json.dumps({"user": user, "item": item, "rating": rating, "ts": ts}).encode())
        producer.flush(10)
    want = expected_lists(ratings)
    for user in users:
        got = lists_for(conf, user, len(ratings))
        assert len(got) == len(ratings)
        for rec, expected in zip(got, want, strict=False):  # each list saw every earlier rating of the user
            assert_same_list(rec["items"], expected)
    assert worker.get("/metrics/json/")["counters"]["ratings.rerouted"] == len(users) * len(ratings)


@pytest.mark.parametrize("key", [None, b"somebody-else"], ids=["null-key", "wrong-key"])
def test_a_null_or_wrong_key_does_not_split_the_users_state(stream_env, key):
    conf = stream_env.conf
    start_worker_with_model(stream_env)
    ratings = [("i0", 5, 1.0), ("i1", 4, 2.0), ("i3", 4, 3.0), ("i6", 2, 4.0)]
    user = "dora"
    # The body names the user; the key is missing or someone else's, so the messages land
    # on arbitrary partitions (or the other user's).
    run(produce(conf, conf.topics.ratings,
                [(key, json.dumps({"user": user, "item": i, "rating": r, "ts": ts}).encode()) for i, r, ts in ratings]))
    got = lists_for(conf, user, len(ratings))
    assert sorted(rec["trigger_ts"] for rec in got) == [ts for _, _, ts in ratings]
    # Unkeyed messages spread over partitions, so they may be applied in any order; but
    # all of them to ONE state: the last list is that of some order of all four ratings.
    final = [item for item, _ in got[-1]["items"]]
    possible = [[item for item, _ in expected_lists(list(order))[-1]] for order in itertools.permutations(ratings)]
    assert final in possible
