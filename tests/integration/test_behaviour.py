"""Behaviour side: pure logic, then the agent on the embedded broker."""
from __future__ import annotations

import json
import time

import pytest

from tables.behaviour import implicit_rating, top_items, user_segment
from tests.brokers import consume, json_values, produce, run


def test_segments_follow_the_thresholds():
    kw = {"high_value_purchases": 2, "active_events": 5}
    assert user_segment({"purchase": 2, "view": 1}, **kw) == "high-value"
    assert user_segment({"view": 4, "click": 1}, **kw) == "active"
    assert user_segment({"view": 4}, **kw) == "normal"
    assert user_segment({}, **kw) == "normal"


def test_only_strong_events_become_ratings():
    mapping = {"purchase": 5.0, "cart": 4.0}
    assert implicit_rating("purchase", mapping) == 5.0
    assert implicit_rating("view", mapping) is None


def test_top_items_by_count_ties_by_id():
    assert top_items([("b", 3), ("a", 3), ("c", 5), ("d", 0)], 3) == ["c", "a", "b"]


def event(user, item, kind, ts=1.0):
    return user.encode(), json.dumps({"user": user, "item": item, "event": kind, "ts": ts}).encode()


@pytest.mark.broker
def test_behaviour_counts_hot_items_segments_and_every_event_makes_a_list(stream_env):
    # Windows as long as 31 years: the counts are asked for the window of "now", which a
    # window boundary between the events and the question (every 10 minutes with the
    # default tumbling window) would leave empty.
    conf = stream_env.set(RECSYS_TUMBLING_S=1e9, RECSYS_HOPPING_SIZE_S=1e9, RECSYS_HOPPING_STEP_S=1e9)
    worker = stream_env.start_worker()
    events = ([event("dora", "i1", "view")] * 3 + [event("dora", "i1", "cart"), event("dora", "i1", "purchase"),
              event("dora", "i2", "purchase")] + [event(f"u{n}", "i7", "view") for n in range(10)])
    run(produce(conf, conf.topics.events, events))

    # Every event (RECSYS_EVENT_WEIGHTS: views too) became an implicit rating and triggered
    # the same real-time update; the repeated views (same item, weight and time) re-emit.
    lists = json_values(run(consume(conf, conf.topics.recommendations,
                                    until=lambda m: sum(x.key == b"dora" for x in m) >= 6
                                    and sum(x.key.startswith(b"u") for x in m if x.key) >= 10)))
    assert sorted(rec["reason"] for rec in lists if rec["user"] == "dora") == [
        "implicit:cart", "implicit:purchase", "implicit:purchase", "implicit:view", "implicit:view", "implicit:view"]
    assert sum(rec["user"].startswith("u") for rec in lists) == 10  # one view each

    deadline = time.monotonic() + 30
    while True:  # the hot list is refreshed by a 5-second timer
        hot = worker.get("/items/hot/")["items"]
        if hot[:3] == ["i7", "i1", "i2"]:
            break
        assert time.monotonic() < deadline, hot
        time.sleep(0.5)

    behaviour = worker.get("/users/dora/behaviour/")
    assert behaviour["last_10m"] == {"view": 3, "cart": 1, "purchase": 2}
    assert behaviour["last_1h"] == {"view": 3, "cart": 1, "purchase": 2}
    assert behaviour["segment"] == "high-value"  # 2 purchases in the hour (default threshold 2)
    assert worker.get("/users/u3/behaviour/")["segment"] == "normal"

    # A user without ratings gets the hot items; dora's own list never holds what she bought.
    assert worker.get("/recommendations/nobody/")["items"][:1] == [["i7", None]]
    status, body = worker.post("/collect/", b'{"user": "dora", "item": "i9", "rating": 5, "ts": 9}')
    assert status == 202
    lists = json_values(run(consume(conf, conf.topics.recommendations,
                                    until=lambda m: sum(x.key == b"dora" for x in m) >= 7)))
    last = [rec for rec in lists if rec["user"] == "dora"][-1]
    assert last["reason"] == "rating"
    assert {"i1", "i2", "i9"}.isdisjoint(item for item, _ in last["items"])
    assert [item for item, score in last["items"]][:1] == ["i7"]  # fallback: hot, unrated
    status, body = worker.post("/collect/", b'{"user": "dora", "item": "i9", "event": "teleport", "ts": 9}')
    assert (status, body["error"]) == (400, "unknown_event")


def test_the_hot_list_sums_the_windows_panes_reading_a_closed_one_once():
    from tables.behaviour import HotPanes, pane_count

    assert pane_count(3600, 300) == 12 and pane_count(100, 300) == 1
    panes = {0.0: {"a": 5}, 300.0: {"b": 2, "a": 1}, 600.0: {"c": 4}, 900.0: {"b": 3}}  # pane start -> counts
    reads = []

    def read(start):
        reads.append(start)
        return panes.get(start, {}).items()

    hot = HotPanes(step_s=300, panes=3, n_hot=2)
    assert hot.refresh(700.0, read) == ["a", "c"]  # panes 100..700: a 6, c 4, b 2
    assert sorted(reads) == [0.0, 300.0, 600.0]
    reads.clear()
    panes[600.0]["b"] = 9  # the current pane moves; closed ones are not read again
    assert hot.refresh(800.0, read) == ["b", "a"] and reads == [600.0]
    reads.clear()
    assert hot.refresh(950.0, read) == ["b", "c"]  # pane 0 left the window: b 2+9+3, c 4, a 1
    assert sorted(reads) == [600.0, 900.0]  # 600 closed now (read once more), 900 current
