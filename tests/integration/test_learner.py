"""``recsys learner`` on a real broker: examples in, gated weight sets out on
``ranker-model``, and a kill -9 in the middle that loses nothing and learns nothing
twice (its final state equals one uninterrupted learner's over the same examples)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from app.records import examples_message, parse_examples
from ranking.features import BASE_FEATURES, FEATURES, with_crosses
from ranking.learned import Examples


def _examples(n: int, seed: int = 7) -> list[Examples]:
    """``n`` interactions of one shopper (one partition: one order), 8 candidates each;
    the positive has the higher recall score."""
    rng = np.random.default_rng(seed)
    recall = BASE_FEATURES.index("recall")
    out = []
    for e in range(n):
        base = rng.random((8, len(BASE_FEATURES))) * 0.3
        base[:, 0] = 1.0
        base[0, recall] += 0.6
        labels = {"interaction": np.eye(8)[0], "conversion": np.eye(8)[0] * (e % 3 == 0)}
        items = tuple(f"i{(e + j * 7) % 50}" for j in range(8))
        out.append(Examples("shopper", items[0], float(e), items, with_crosses(base), labels,
                            np.array([1.0, *[2.0] * 7])))
    return out


def _reference(messages, conf):
    """One learner, never interrupted, over the same messages in the same order."""
    from learner.online import OnlineLearner
    from ranking.learned import parse_objective

    learner = OnlineLearner(FEATURES, parse_objective(conf.ranking.objective), every=conf.learner.every_examples,
                            window=conf.learner.window)
    for _key, value in messages:
        learner.learn(parse_examples(value))
    return learner


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


@pytest.mark.broker
def test_learner_survives_kill9_and_publishes_gated_weights(stream_env):
    from broker.topics import create_topics
    from learner import checkpoint
    from learner.online import OnlineLearner
    from learner.worker import checkpoint_path
    from ranking.learned import parse_objective
    from tables.broadcast import LearnedBroadcast
    from tests.brokers import consume, produce, run

    conf = stream_env.set(RECSYS_LEARNER_EVERY_EXAMPLES=4000, RECSYS_LEARNER_EVERY_S=3600, RECSYS_LEARNER_WINDOW=300)
    run(create_topics(conf))
    messages = [examples_message(ex) for ex in _examples(3000)]
    bad = [(b"shopper", b"not json"), (b"shopper", b'{"schema": "other"}')]
    first, second = messages[:1500] + bad, messages[1500:]
    run(produce(conf, conf.topics.ranker_examples, first))
    path = checkpoint_path(conf)

    def learnt() -> int:
        state = OnlineLearner(FEATURES, parse_objective(conf.ranking.objective))
        try:
            offsets = checkpoint.load(path, state)
        except (OSError, ValueError, KeyError):  # being replaced: read again
            return 0
        return sum((offsets or {}).values())

    proc = stream_env.start_learner()
    _wait(lambda: learnt() >= len(first), 60, f"the learner did not learn the first half:\n{proc.log_tail()}")
    # The second half in chunks: the kill lands once the learner checkpointed some of it,
    # before the last chunk is even sent, so it is always in the middle.
    chunks = [second[k:k + 100] for k in range(0, len(second), 100)]
    sent = 0
    for chunk in chunks[:-1]:
        run(produce(conf, conf.topics.ranker_examples, chunk))
        sent += 1
        if learnt() > len(first):
            break
        time.sleep(0.05)
    proc.kill9()
    killed_at = learnt()
    for chunk in chunks[sent:]:
        run(produce(conf, conf.topics.ranker_examples, chunk))
    assert len(first) <= killed_at < len(first) + len(second)

    again = stream_env.start_learner("learner-again", "--until-end")
    _wait(lambda: again.process.poll() is not None, 120, f"the restarted learner did not finish:\n{again.log_tail()}")
    assert again.process.returncode == 0, again.log_tail()

    restored = OnlineLearner(FEATURES, parse_objective(conf.ranking.objective))
    offsets = checkpoint.load(path, restored)
    assert sum(offsets.values()) == len(first) + len(second)
    want = _reference([m for m in messages], conf)
    assert restored.examples_learnt == want.examples_learnt == 8 * 3000  # nothing twice, nothing lost
    for task in want.heads:
        assert np.array_equal(restored.heads[task].z, want.heads[task].z)
        assert np.array_equal(restored.heads[task].n, want.heads[task].n)
        assert restored.heads[task].item_bias == want.heads[task].item_bias

    # Weight sets were offered every 4,000 rows; the ones the gate passed are on ranker-model,
    # the newest the one the learner serves.
    assert restored.serving is not None

    def read(ms) -> LearnedBroadcast:
        reader = LearnedBroadcast()
        for m in ms:
            reader.apply(m.key, m.value)
        return reader

    msgs = run(consume(conf, conf.topics.ranker_model, timeout=30,
                       until=lambda ms: getattr(read(ms).weights, "version", None) == restored.serving.version))
    reader = read(msgs)
    assert reader.weights is not None and reader.weights.fits()
    assert reader.weights.version == restored.serving.version
    for task in want.heads:
        assert np.array_equal(reader.weights.heads[task], restored.serving.heads[task])
    assert reader.weights.heads["interaction"][FEATURES.index("recall")] > 0  # it learnt the signal
    assert reader.weights.validation["ndcg"] >= reader.weights.validation.get("serving_ndcg", 0.0)


@pytest.mark.broker
def test_a_restarted_learner_publishes_the_set_its_checkpoint_serves(stream_env):
    """Killed after the checkpoint that holds a shipped set and before its publish: the
    restart sends it, so ``ranker-model`` never lacks (or misnames) the serving set."""
    from app.records import WEIGHTS_MANIFEST_KEY
    from broker.topics import create_topics
    from learner import checkpoint
    from learner.online import OnlineLearner
    from learner.worker import checkpoint_path
    from ranking.learned import parse_objective
    from tables.broadcast import LearnedBroadcast
    from tests.brokers import consume, run

    conf = stream_env.set(RECSYS_LEARNER_EVERY_EXAMPLES=800, RECSYS_LEARNER_WINDOW=50)
    run(create_topics(conf))
    learner = OnlineLearner(FEATURES, parse_objective(conf.ranking.objective), every=800, window=50)
    shipped = [w for ex in _examples(300) if (w := learner.learn(ex)) is not None]
    assert shipped and learner.serving is not None
    checkpoint.save(checkpoint_path(conf), learner, {})  # as if nothing of the topic was read
    proc = stream_env.start_learner("learner-restarted", "--until-end")
    _wait(lambda: proc.process.poll() is not None, 60, f"the learner did not finish:\n{proc.log_tail()}")
    msgs = run(consume(conf, conf.topics.ranker_model,
                       until=lambda ms: any(m.key == WEIGHTS_MANIFEST_KEY.encode() for m in ms), timeout=30))
    reader = LearnedBroadcast()
    for m in msgs:
        reader.apply(m.key, m.value)
    assert reader.weights is not None and reader.weights.version == learner.serving.version
    for task in learner.serving.heads:
        assert np.array_equal(reader.weights.heads[task], learner.serving.heads[task])
