"""The benchmark peers' processor (``benchmarks/peers/common.py``): a batch at once (the
aiokafka peer, as the worker's agent) makes the same lists, states and examples as one
message at a time (the Quix Streams peer), for the default and the learned ranker."""
from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from app.records import Rating, to_message
from app.settings import Settings
from benchmarks.peers.common import RatingProcessor, write_model
from ranking.features import FEATURES
from ranking.learned import TASKS, LearnedWeights
from tables.state import UserState


def model_file(tmp_path, learned: bool):
    rng = random.Random(3)
    items = [f"i{n}" for n in range(30)]
    neighbours = {a: {b: round(rng.random(), 3) for b in rng.sample(items, 6) if b != a} for a in items}
    extras = {"counts": {q: rng.randint(1, 9) for q in items},
              "sources": {"sequential": {a: {b: 1.0 for b in rng.sample(items, 3) if b != a} for a in items}},
              "blend": {"related": 1.0, "sequential": 0.5, "learned": 0.0, "decay": 0.8, "history": 20, "w_pop": 0.1}}
    messages = ()
    if learned:
        from app.records import weights_messages
        heads = {t: np.array([rng.gauss(0, 1) for _ in FEATURES]) for t in TASKS}
        messages = weights_messages(LearnedWeights("w1", FEATURES, heads, {"interaction": {"i3": 2.0}}), 1.0)
    path = tmp_path / "model.json"
    write_model(path, neighbours, extras, "v1", messages)
    return path, items


@pytest.mark.parametrize("ranker", ["default", "learned"])
def test_a_batch_at_once_gives_what_one_message_at_a_time_gives(tmp_path, ranker):
    path, items = model_file(tmp_path, ranker == "learned")
    conf = Settings.from_env({"RECSYS_RANKER": ranker, "RECSYS_AB": ""})
    rng = random.Random(5)
    stream = [to_message(Rating(user=f"u{rng.randint(0, 6)}", item=rng.choice(items), rating=rng.choice([1.0, 5.0]),
                                ts=float(t)))[1] for t in range(200)]
    stream.insert(50, b"not a rating")
    one, stored_one, lists_one, examples_one = RatingProcessor(conf, path), {}, [], []
    for offset, value in enumerate(stream):
        try:
            user = orjson.loads(value)["user"]  # the key a per-message framework keeps the state under
        except orjson.JSONDecodeError:
            user = None
        out = one.process(value, stored_one.get(user), offset)
        if out is None:
            continue
        user, state, list_bytes, examples = out
        if state is not None:
            stored_one[user] = state
        lists_one.append(orjson.loads(list_bytes))
        examples_one.append(examples)
    assert one.invalid == 1
    many, stored_many, lists_many, examples_many = RatingProcessor(conf, path), {}, [], []
    for start in range(0, len(stream), 37):
        chunk = [(value, start + n, 0.0) for n, value in enumerate(stream[start:start + 37])]
        out, states = many.process_many(chunk, lambda key: stored_many.get(key.decode()))
        stored_many.update({key.decode(): state for key, state in states.items()})
        lists_many += [orjson.loads(list_bytes) for _u, list_bytes, _e in out]
        examples_many += [examples for _u, _l, examples in out]
    assert many.invalid == 1
    drop = ("emitted_at", "worker_ms")
    assert [{k: v for k, v in r.items() if k not in drop} for r in lists_many] == \
        [{k: v for k, v in r.items() if k not in drop} for r in lists_one]
    assert {user: UserState.from_bytes(raw).to_value() for user, raw in stored_many.items()} == stored_one
    assert examples_many == examples_one
    assert (ranker == "learned") == any(e is not None for e in examples_one)
