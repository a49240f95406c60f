"""POST /rerank/ on two workers: a request reaches the worker owning its user with its
body (Faust's own routing drops bodies), and the order is the user's ranker's own: the
items of the user's list come back in the list's order with the list's scores."""
from __future__ import annotations

import json

import pytest

from tests.brokers import produce, run
from tests.helpers import MODEL, lists_for, rating_message

pytestmark = pytest.mark.broker
RANKER = "default"  # conftest.stream_env: the workers run the default ranker


def test_rerank_is_answered_by_the_owner_in_the_order_of_the_users_ranker(stream_env):
    conf = stream_env.conf
    w1 = stream_env.start_worker("w1")
    w2 = stream_env.start_worker("w2", ready=False)
    stream_env.publish_model(MODEL, "v-rerank")
    _, p2 = stream_env.wait_for_split([w1, w2], timeout=90)
    users = [f"user{n}" for n in range(10)]
    run(produce(conf, conf.topics.ratings, [rating_message(u, "i0", 5, 1.0) for u in users]))
    lists = {u: lists_for(conf, u, 1)[-1] for u in users}
    theirs = [u for u in users if lists[u] and _partition(conf, u) in p2]
    assert theirs, "no user on the second worker's partitions"
    for user in theirs:
        listed = lists[user]["items"]
        given = [q for q, _s in reversed(listed)] + ["not-in-the-model", "i0"]  # i0: the user had it
        status, answer = w1.post("/rerank/", json.dumps({"user": user, "items": given}).encode())
        assert status == 200, answer
        assert answer["user"] == user and answer["variant"] == "default" and answer["model_version"] == "v-rerank"
        got = answer["items"]
        assert len(got) == len(given) and got[-1] == ["not-in-the-model", None]
        assert [e for e in got if e[0] in {q for q, _s in listed}] == listed  # the list's order and scores
        assert "i0" in [q for q, s in got if s is not None]
        status, cut = w2.post("/rerank/", json.dumps({"user": user, "items": given, "n": 3}).encode())
        assert status == 200 and cut["items"] == got[:3]
    served = {name: w.get("/metrics/json")["counters"].get("rerank.served", 0) for name, w in (("w1", w1), ("w2", w2))}
    assert served == {"w1": 0, "w2": 2 * len(theirs)}  # every one answered where the user lives
    status, answer = w1.post("/rerank/", json.dumps({"user": "x", "items": ["a"] * 1001}).encode())
    assert (status, answer["error"]) == (400, "too_many_items")
    status, answer = w1.post("/rerank/", b'{"user": "x", "items": "a"}')
    assert (status, answer["error"]) == (400, "bad_rerank")
    status, answer = w1.post("/rerank/", json.dumps({"user": "stranger", "items": ["i9", "i0", "zz"]}).encode())
    assert status == 200 and answer["items"][-1] == ["zz", None]  # a new user: the popularity order


def _partition(conf, user: str) -> int:
    from broker.partitioning import owner_partition

    return owner_partition(user.encode(), conf.kafka.partitions)
