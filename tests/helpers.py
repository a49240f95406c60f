"""Helpers shared by test modules (fixtures live in ``conftest.py``, brokers in
``brokers.py``, fuzzed input in ``fuzz.py``)."""
from __future__ import annotations

import collections
import json
import math
import types

import pytest
from faust.types import TP
from faust.types.tuples import Message

from tests.brokers import consume, json_values, run


def last_json(capsys) -> dict:
    """The JSON object a command printed as its last line of stdout."""
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


class FlowControl:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


def consumer_stub(generation: int, flow_active: bool = True):
    """Just what ``Consumer.ack`` touches."""
    app_stub = types.SimpleNamespace(consumer_generation_id=generation, flow_control=FlowControl(flow_active),
                                     topics=types.SimpleNamespace(acks_enabled_for=lambda topic: True))
    return types.SimpleNamespace(app=app_stub, _committed_offset=collections.defaultdict(lambda: None),
                                 _acked_index=collections.defaultdict(set), _acked=collections.defaultdict(list),
                                 _unacked_messages=set(), _n_acked=0, _waiting_for_ack=None)


def message(offset: int, generation: int | None = None, key: bytes = b"k", value: bytes = b"v",
            partition: int = 0) -> Message:
    return Message("ratings", partition, offset, 0.0, 0, None, key, value, None, tp=TP("ratings", partition),
                   generation_id=generation)


# ------------------------------------------------------------------ stream tests
# A hand-made similarity model: 12 items in two loose clusters.
MODEL = {
    "i0": [["i1", 0.95], ["i2", 0.9], ["i3", 0.8], ["i6", 0.62], ["i7", 0.3]],
    "i1": [["i0", 0.95], ["i2", 0.85], ["i4", 0.7], ["i8", 0.61]],
    "i2": [["i0", 0.9], ["i1", 0.85], ["i5", 0.75], ["i9", 0.65]],
    "i3": [["i0", 0.8], ["i4", 0.66], ["i10", 0.7]],
    "i4": [["i1", 0.7], ["i3", 0.66], ["i11", 0.9]],
    "i5": [["i2", 0.75], ["i6", 0.8]],
    "i6": [["i5", 0.8], ["i7", 0.9], ["i0", 0.62]],
    "i7": [["i6", 0.9], ["i8", 0.85]],
    "i8": [["i7", 0.85], ["i9", 0.8], ["i1", 0.61]],
    "i9": [["i8", 0.8], ["i2", 0.65]],
    "i10": [["i3", 0.7], ["i11", 0.95]],
    "i11": [["i10", 0.95], ["i4", 0.9]],
}
K, M, THETA, LO, HI = 20, 20, 0.6, 1.0, 5.0


def expected_lists(ratings):
    """The paper's algorithm on :data:`MODEL`, written out independently of the paper ranker."""
    sims = {a: dict(n) for a, n in MODEL.items()}

    def sim(a, b):
        return sims.get(a, {}).get(b) or sims.get(b, {}).get(a) or 0.0

    recent, rated, previous, out = {}, [], {}, []
    for item, rating, ts in ratings:
        if item in recent and (recent[item][1] > ts or recent[item] == (rating, ts)):
            out.append(out[-1])  # a redelivered (or stale) rating changes nothing
            continue
        if item not in recent or ts >= recent[item][1]:
            recent.pop(item, None)  # re-inserted last: equal timestamps keep arrival order
            recent[item] = (rating, ts)
        if item not in rated:
            rated.append(item)
        newest = sorted(recent.items(), key=lambda kv: kv[1][1])[-K:]
        candidates = [q for q, _ in sorted(sims.get(item, {}).items(), key=lambda kv: (-kv[1], kv[0]))
                      if q not in rated][:M]
        for q in candidates:
            hits = [(sim(q, r), rr) for r, (rr, _) in newest if sim(q, r) > THETA]
            if hits:
                n_in = sum(1 for _, rr in hits if rr >= (LO + HI) / 2)
                n_re = len(hits) - n_in
                previous[q] = (sum(s * rr for s, rr in hits) / len(hits)
                               + math.log10(max(n_in, 1)) - math.log10(max(n_re, 1)))
        for r in rated:
            previous.pop(r, None)
        ranked = sorted(previous.items(), key=lambda kv: (-kv[1], kv[0]))[:K]
        previous = dict(ranked)
        out.append(ranked)
    return out


def rating_message(user, item, rating, ts):
    return user.encode(), json.dumps({"user": user, "item": item, "rating": rating, "ts": ts}).encode()


def start_worker_with_model(deployment, name="w1", version="v-test"):
    """A worker of ``deployment`` (tests: the ``stream_env`` fixture) serving :data:`MODEL`."""
    worker = deployment.start_worker(name)
    deployment.publish_model(MODEL, version)
    return worker


def lists_for(conf, user, n, timeout=60):
    msgs = run(consume(conf, conf.topics.recommendations,
                       until=lambda m: sum(1 for x in m if x.key == user.encode()) >= n, timeout=timeout))
    return [rec for rec in json_values(msgs) if rec["user"] == user]


def assert_same_list(got, want):
    assert [item for item, _ in got] == [item for item, _ in want]
    assert [score for _, score in got] == pytest.approx([score for _, score in want], abs=5e-5)  # 4 decimals on the wire


def random_lists(rng, items: list, negative: bool = False) -> dict:
    """Random neighbour lists over ``items`` for some of them (up to 10 each; weights 0, 0.5,
    random, and with ``negative`` negative ones too), as a model's source has them."""
    return {a: {b: rng.choice([0.0, round(rng.random(), 2), 0.5] + ([-round(rng.random(), 2)] if negative else []))
                for b in rng.sample(items, min(len(items), rng.randint(0, 10))) if b != a}
            for a in rng.sample(items, rng.randint(1, len(items)))}
