"""The learned ranker in the worker: before any weight set it lists the recall order;
with a set on ``ranker-model`` every list is that set's order, and every interaction's
examples on ``ranker-examples`` are, byte for byte, the ones the offline replay of the
same user makes (``UserState.apply`` and ``LearnedRanker.examples`` on the same model)."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from app.records import examples_message, weights_messages, wire_list
from offline_als.publish import publish_similarity
from ranking import SimilarityIndex
from ranking.features import FEATURES, KeptCandidates
from ranking.learned import TASKS, LearnedRanker, LearnedWeights
from ranking.model import Model
from ranking.protocol import Interaction
from tables.state import UserState
from tests.brokers import consume, produce, run
from tests.helpers import MODEL, lists_for, rating_message

pytestmark = pytest.mark.broker
RANKER = "learned"  # conftest.stream_env: the worker runs the learned ranker

RELATED = {"i0": {"i1": 0.6, "i5": 0.4, "i9": 0.2}, "i1": {"i0": 0.6, "i2": 0.5}, "i2": {"i1": 0.5, "i5": 0.3},
           "i5": {"i0": 0.4, "i2": 0.3, "i8": 0.7}, "i8": {"i5": 0.7, "i9": 0.6}, "i9": {"i8": 0.6, "i0": 0.2}}
SEQUENTIAL = {"i0": {"i2": 1.0, "i8": 0.5}, "i2": {"i9": 1.0}, "i5": {"i1": 0.8}}
COUNTS = {"i0": 9, "i1": 4, "i2": 3, "i5": 2, "i8": 7, "i9": 1, "i11": 12}


def weight_set(version: str) -> LearnedWeights:
    rng = np.random.default_rng(3)
    return LearnedWeights(version, FEATURES, {t: rng.normal(size=len(FEATURES)) for t in TASKS},
                          {"interaction": {"i9": 2.0, "i11": -1.5}, "conversion": {"i2": 0.5}})


def replay(conf, ratings, weights):
    """The lists and example messages of ``ratings`` (user, item, rating, ts), offline."""
    ranker = LearnedRanker.from_settings(conf)
    index = SimilarityIndex({i: dict(n) for i, n in MODEL.items()}, related=RELATED, counts=COUNTS, sources={"sequential": SEQUENTIAL},
                            keep_sources=True)
    model = Model(index, (), "v-learned", learned=weights)
    state, lists, examples, kept = UserState(), [], [], KeptCandidates()
    for offset, (user, item, rating, ts) in enumerate(ratings):
        interaction = Interaction(user, item, float(rating), float(ts))
        ex = ranker.examples(state, interaction, model, made=kept.take(user, state.offset))
        if ex is not None:
            examples.append(examples_message(ex)[1])
        kept.put(user, offset, state.apply(offset, ranker, interaction, model)[1].made)
        lists.append(wire_list(state.last_list))
    return lists, examples


def test_lists_follow_the_weight_set_and_examples_match_the_replay(stream_env):
    conf = stream_env.conf
    worker = stream_env.start_worker("w1", learner=False)  # the test publishes the weights
    run(publish_similarity(MODEL, "v-learned", conf=conf, related=RELATED, counts=COUNTS,
                           sources={"sequential": SEQUENTIAL}))
    worker.wait_ready(model_version="v-learned")

    cold = [("cora", "i0", 5, 1.0), ("cora", "i5", 4, 2.0)]  # no weight set yet: the recall order
    run(produce(conf, conf.topics.ratings, [rating_message(*r) for r in cold]))
    got = lists_for(conf, "cora", len(cold))
    want, _ = replay(conf, cold, None)
    assert [rec["items"] for rec in got] == want and all(rec["variant"] == "learned" for rec in got)

    weights = weight_set("learned-7")
    run(produce(conf, conf.topics.ranker_model, weights_messages(weights, time.time())))
    deadline = time.monotonic() + 30
    while (worker.health() or {}).get("learned", {}) is None or \
            ((worker.health() or {}).get("learned") or {}).get("version") != "learned-7":
        assert time.monotonic() < deadline, "the worker never served the weight set"
        time.sleep(0.2)

    ratings = [("dana", "i0", 5, 1.0), ("dana", "i5", 2, 2.0), ("dana", "i2", 4, 3.0), ("dana", "i8", 5, 4.0)]
    run(produce(conf, conf.topics.ratings, [rating_message(*r) for r in ratings]))
    got = lists_for(conf, "dana", len(ratings))
    want, examples = replay(conf, ratings, weights)
    assert [rec["items"] for rec in got] == want
    assert want[-1] != replay(conf, ratings, None)[0][-1]  # the weights changed the order

    msgs = run(consume(conf, conf.topics.ranker_examples,
                       until=lambda ms: sum(m.key == b"dana" for m in ms) >= len(examples), timeout=30))
    assert [m.value for m in msgs if m.key == b"dana"] == examples and len(examples) >= 2
    assert worker.get("/metrics/json/")["counters"]["learner.examples_sent"] >= len(examples)

    # A click on the list: the event says so, and so do its implicit rating's examples (the gate reads it).
    clicked = got[-1]["items"][0][0]
    event = {"user": "dana", "item": clicked, "event": "click", "ts": 5.0, "from_list": True}
    run(produce(conf, conf.topics.events, [(b"dana", json.dumps(event).encode())]))
    msgs = run(consume(conf, conf.topics.ranker_examples, timeout=30,
                       until=lambda ms: sum(m.key == b"dana" for m in ms) > len(examples)))
    assert [json.loads(m.value)["from_list"] for m in msgs if m.key == b"dana"] == [False] * len(examples) + [True]
