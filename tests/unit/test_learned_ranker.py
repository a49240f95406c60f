"""The learned ranker's features, examples, lists, wire format and weight-set reader,
checked by hand on a tiny model (no broker)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from app.records import (
    REJECTED_KEY,
    InvalidInput,
    examples_message,
    parse_examples,
    weights_messages,
)
from learner import checkpoint
from learner.online import OnlineLearner
from ranking import DefaultRanker, LearnedRanker, Model, SimilarityIndex
from ranking.features import FEATURES, Context, KeptCandidates, candidates, with_crosses
from ranking.learned import TASKS, LearnedWeights
from ranking.model import Blend
from ranking.protocol import Interaction
from tables.broadcast import LearnedBroadcast
from tables.state import UserState

RELATED = {"a": {"b": 0.8, "c": 0.4}, "b": {"a": 0.8, "d": 0.5}, "c": {"a": 0.4}, "d": {"b": 0.5}}
SEQUENTIAL = {"a": {"c": 1.0}, "b": {"e": 2.0}}
COUNTS = {"a": 4, "b": 3, "c": 2, "d": 1, "e": 1, "f": 8}
#: Recent popularity per half-life (a day, a week, a month); g is not in the model (ignored).
RECENT = {"e": [0.5, 1.0, 1.0], "c": [2.0, 1.0, 1.0], "f": [1.0, 2.0, 8.0], "g": [9.0, 9.0, 9.0]}
F = {name: j for j, name in enumerate(FEATURES)}


def index() -> SimilarityIndex:
    return SimilarityIndex(related=RELATED, counts=COUNTS, sources={"sequential": SEQUENTIAL},
                           blend=Blend(related=1.0, sequential=0.5, decay=0.5, history=20, w_pop=0.2),
                           keep_sources=True, recent=RECENT, recent_ts=300.0)


def ranker(**kw) -> LearnedRanker:
    return LearnedRanker(recall=DefaultRanker(k=50), k=3, **kw)


def test_features_by_hand():
    recent = [["a", 5.0, 100.0], ["b", 4.0, 200.0]]  # b newest (weight 1), a weight 0.5
    found = candidates(recent, {"a", "b"}, [["d", 0.9], ["x", 0.1]], "view", 300.0, index(),
                       Context(hot_items=("f", "e"), categories={"a": "hats", "b": "hats", "d": "hats", "e": "shoes"},
                               first_seen={"d": 250.0}), recall=DefaultRanker(k=50), n_hot=20)
    X = dict(zip(found.items, found.X, strict=True))
    assert set(found.items) == {"c", "d", "e", "f"}
    # related: c gets 0.5 * 0.4 (from a), d gets 1 * 0.5 (from b): scaled by the larger
    assert X["c"][F["knn_related"]] == pytest.approx(0.2 / 0.5) and X["d"][F["knn_related"]] == 1.0
    # sequential: c 0.5 * 1 (a -> c), e 1 * 2 (b -> e)
    assert X["c"][F["knn_sequential"]] == pytest.approx(0.25) and X["e"][F["knn_sequential"]] == 1.0
    # the newest interaction's own weight (b), clipped to 2 and halved
    assert X["d"][F["last_related"]] == pytest.approx(0.25) and X["e"][F["last_sequential"]] == 1.0
    assert X["c"][F["last_related"]] == 0.0
    # prior lg(1 + count) / lg(1 + 8); hot ranks; support (two sources, two recent items)
    assert X["f"][F["prior"]] == 1.0 and X["d"][F["prior"]] == pytest.approx(math.log(2) / math.log(9))
    assert X["f"][F["trending"]] == 1.0 and X["e"][F["trending"]] == 0.5 and X["c"][F["trending"]] == 0.0
    assert X["c"][F["support"]] == pytest.approx(2 / 6)  # a's related and sequential lists, of 3 sources x 2 items
    # because: d came from b (newest: recency 1, 100 s ago); c from a
    assert X["d"][F["because_recency"]] == 1.0 and X["c"][F["because_recency"]] == 0.5
    assert X["d"][F["because_age"]] == pytest.approx(math.log1p(100.0) / math.log1p(3.2e7))
    assert X["d"][F["category_affinity"]] == 1.0 and X["e"][F["category_affinity"]] == 0.0
    assert X["d"][F["item_age"]] == pytest.approx(math.log1p(50.0) / math.log1p(3.2e7))
    assert X["d"][F["shown"]] == 1.0 and X["c"][F["shown"]] == 0.0
    assert X["c"][F["event_view"]] == 1.0 and X["c"][F["event_rating"]] == 0.0
    assert X["c"][F["activity"]] == pytest.approx(math.log1p(2) / math.log1p(1000))
    # recent popularity lg(1 + value) / lg(1 + the largest count), at the model's time (300)
    assert X["c"][F["recent_1d"]] == pytest.approx(math.log(3) / math.log(9))
    assert X["f"][F["recent_7d"]] == pytest.approx(math.log(3) / math.log(9))
    assert X["f"][F["recent_30d"]] == 1.0
    assert X["d"][F["recent_30d"]] == 0.0
    for name in FEATURES:
        if "*" in name:  # the crosses are products
            u, i = name.split("*")
            assert np.allclose(found.X[:, F[name]], found.X[:, F[u]] * found.X[:, F[i]])


@pytest.mark.parametrize("seed", range(5))
def test_because_and_rated_sums_agree_with_the_default_ranker(seed):
    """The features rebuild the blend from the sources for the candidates only: the
    recent item each listed candidate is there because of is the default ranker's, and
    knn_rated is the blend weighed by the ratings (a loop over the recent items)."""
    rng = np.random.default_rng(seed)
    ids = [f"i{j}" for j in range(30)]

    def lists():
        return {q: {r: float(rng.choice([-0.5, 0.3, 0.7, 1.0])) for r in rng.choice(ids, 6, replace=False) if r != q}
                for q in ids}

    blend = Blend(related=1.0, sequential=0.5, learned=2.0, decay=0.7, history=20, w_pop=0.0)
    idx = SimilarityIndex(related=lists(), counts={q: 1 for q in ids}, blend=blend, keep_sources=True,
                          sources={"sequential": lists(), "learned": lists()})
    recent = [[q, float(rng.choice([-1.0, 2.0, 5.0])), float(t)] for t, q in enumerate(rng.choice(ids, 8, replace=False))]
    recall = DefaultRanker(k=50)
    found = candidates(recent, {e[0] for e in recent}, [], "rating", 10.0, idx, Context(), recall=recall)
    _listed, because, _n = recall.rank(recent, {e[0] for e in recent}, idx)
    assert {q: r for q, r in zip(found.items, found.because, strict=True) if r is not None} == because
    rated = {q: 0.0 for q in found.items}
    for j, (r, w, _t) in enumerate(recent):
        for q, v in idx.blended(r).items():
            if q in rated:
                rated[q] += 0.7 ** (len(recent) - 1 - j) * w / 5.0 * v
    top = max(abs(v) for v in rated.values())
    assert found.X[:, F["knn_rated"]] == pytest.approx([rated[q] / top for q in found.items])


def _weights(favour: str) -> LearnedWeights:
    heads = {t: np.zeros(len(FEATURES)) for t in TASKS}
    return LearnedWeights("v1", FEATURES, heads, {"interaction": {favour: 5.0}})


def test_lists_follow_the_weights_and_cold_start_is_the_recall_order():
    model, state = Model(index()), UserState()
    interaction = Interaction("u", "a", 5.0, 1.0)
    cold = ranker().step(state, interaction, model)
    recall = DefaultRanker(k=3).rank([["a", 5.0, 1.0]], {"a"}, model.index)[0]
    assert [q for q, _ in cold.items] == [q for q, _ in recall]
    warm = ranker().step(state, interaction, Model(model.index, learned=_weights("f")))
    # interaction sigmoid(5) (its bias) + conversion sigmoid(0)
    assert warm.items[0][0] == "f" and warm.items[0][1] == pytest.approx(1 / (1 + math.exp(-5)) + 0.5, abs=1e-6)
    other = LearnedWeights("v2", ("bias",), {t: np.zeros(1) for t in TASKS})  # made for other features
    assert ranker().step(state, interaction, Model(model.index, learned=other)).items == cold.items


def test_rerank_follows_the_weights_over_the_given_items_and_without_them_the_recall_formula():
    model, state = Model(index()), UserState()
    state.apply(0, ranker(), Interaction("u", "a", 5.0, 1.0), model)
    given = ["e", "zz", "a", "d", "f", "c"]  # zz: unknown to the model; a: the user had it
    cold = ranker().rerank(state, given, model)
    assert cold == DefaultRanker(k=50).rerank(state, given, model)  # no weights: the recall formula
    assert cold[-1] == ["zz", None] and sorted(q for q, _ in cold) == sorted(given)
    warm = ranker().rerank(state, given, Model(model.index, learned=_weights("d")))
    assert warm[0][0] == "d" and warm[0][1] == pytest.approx(1 / (1 + math.exp(-5)) + 0.5, abs=1e-6)
    assert warm[-1] == ["zz", None] and "a" in [q for q, s in warm if s is not None]
    stranger = ranker().rerank(UserState(), given, Model(model.index, learned=_weights("c")))
    assert stranger[0][0] == "c" and stranger[-1] == ["zz", None]


def test_examples_label_the_list_the_user_had():
    model, state = Model(index()), UserState()
    r = ranker(negatives=1, skipped_weight=2.0)
    step = state.apply(0, r, Interaction("u", "a", 5.0, 1.0), model)[1]
    shown = [q for q, _ in state.last_list]
    taken = "b" if "b" in step.made.items else step.made.items[0]
    ex = r.examples(state, Interaction("u", taken, 5.0, 2.0, event="cart"), model, made=step.made.kept())
    assert ex.items[0] == taken and ex.labels["interaction"].tolist() == [1.0] + [0.0] * (len(ex.items) - 1)
    assert ex.labels["conversion"][0] == 1.0  # a cart is a conversion
    skipped = [q for q in shown if q != taken]
    assert list(ex.items[1:1 + len(skipped)]) == [q for q in step.made.items if q in skipped]
    assert ex.weights[1:1 + len(skipped)].tolist() == [2.0] * len(skipped)
    never = len(step.made.items) - 1 - len(skipped)
    assert ex.weights[1 + len(skipped):].tolist() == ([float(never)] if never else [])  # one drawn, for all
    again = r.examples(state, Interaction("u", taken, 5.0, 2.0, event="cart"), model, made=step.made.kept())
    assert again.items == ex.items and np.array_equal(again.X, ex.X)  # seeded: the same draw
    assert r.examples(state, Interaction("u", "zzz", 5.0, 2.0), model) is None  # not a candidate
    low = r.examples(state, Interaction("u", taken, 2.0, 2.0), model, made=step.made.kept())
    assert low.labels["conversion"][0] == 0.0  # a rating under the middle of the scale


def test_without_impressions_nothing_was_shown():
    model, state = Model(index()), UserState()
    r = ranker(impressions=False, negatives=50)
    step = state.apply(0, r, Interaction("u", "a", 5.0, 1.0), model)[1]
    ex = r.examples(state, Interaction("u", step.made.items[0], 5.0, 2.0), model, made=step.made.kept())
    assert ex.weights.tolist() == [1.0] * len(ex.items) and ex.X[:, F["shown"]].max() == 0.0


def test_exploration_is_seeded_and_logged():
    model = Model(index())
    r = ranker(explore=1.0)
    one = r.step(UserState(), Interaction("u", "a", 5.0, 1.0), model)
    two = r.step(UserState(), Interaction("u", "a", 5.0, 1.0), model)
    assert one.explored == two.explored and one.items == two.items
    plain = ranker().step(UserState(), Interaction("u", "a", 5.0, 1.0), model)
    outside = one.n_candidates - r.k
    assert one.explored["propensity"] == pytest.approx(1.0 / outside)
    slot = one.explored["position"]
    assert one.items[slot][0] == one.explored["item"] and one.explored["item"] not in [q for q, _ in plain.items]
    assert [e for j, e in enumerate(one.items) if j != slot] == [e for j, e in enumerate(plain.items) if j != slot]


def test_kept_candidates_serve_only_the_state_that_made_them():
    model = Model(index())
    step = ranker().step(UserState(), Interaction("u", "a", 5.0, 1.0), model)
    kept = KeptCandidates(users=1)
    kept.put("u", 7, step.made)
    assert kept.take("u", 8) is None and len(kept) == 0  # another state: recomputed
    kept.put("u", 7, step.made)
    kept.put("v", 1, step.made)  # only one user kept: u goes
    assert kept.take("u", 7) is None and kept.take("v", 1) is not None
    kept.put("u", 7, step.made)
    back = kept.take("u", 7)
    assert back.items == step.made.items
    assert np.allclose(with_crosses(back.X.astype(np.float64)), step.made.X, atol=1e-6)


def test_examples_on_the_wire_and_bad_ones():
    model, state = Model(index()), UserState()
    r = ranker()
    step = state.apply(0, r, Interaction("u", "a", 5.0, 1.0), model)[1]
    ex = r.examples(state, Interaction("u", step.made.items[0], 5.0, 2.0), model, made=step.made)
    back = parse_examples(examples_message(ex)[1])
    assert back.items == ex.items and np.allclose(back.X, ex.X, atol=2e-6) and np.array_equal(back.weights, ex.weights)
    assert back.labels["interaction"].tolist() == ex.labels["interaction"].tolist() and not back.from_list
    clicked = r.examples(state, Interaction("u", step.made.items[0], 1.0, 2.0, event="click", from_list=True), model,
                         made=step.made)
    assert parse_examples(examples_message(clicked)[1]).from_list  # the gate reads it (learner/online.py)
    for raw, reason in ((b"nope", "bad_json"), (b'{"schema": "x"}', "wrong_schema")):
        with pytest.raises(InvalidInput) as err:
            parse_examples(raw)
        assert err.value.reason == reason
    good = examples_message(ex)[1].decode()
    with pytest.raises(InvalidInput) as err:
        parse_examples(good.replace('"weights":[', '"weights":[-1,').encode())
    assert err.value.reason == "bad_examples"


def test_the_reader_serves_a_whole_weight_set_only(monkeypatch):
    from app import records

    monkeypatch.setattr(records, "WEIGHTS_CHUNK_ITEMS", 2)
    biases = {"interaction": {f"i{j}": float(j) for j in range(5)}, "conversion": {"i1": -1.0}}
    first = LearnedWeights("v1", FEATURES, {t: np.full(len(FEATURES), 0.5) for t in TASKS}, biases, {"ndcg": 0.3})
    second = LearnedWeights("v2", FEATURES, {t: np.ones(len(FEATURES)) for t in TASKS}, biases)
    reader = LearnedBroadcast()
    for key, value in reversed(weights_messages(first, 1.0)):  # the manifest first: it waits for its chunks
        reader.apply(key, value)
    assert reader.weights.version == "v1" and reader.weights.item_bias == biases
    assert reader.weights.validation["ndcg"] == 0.3
    messages = weights_messages(second, 2.0)
    reader.apply(*messages[-1])  # v2's manifest, its chunks still v1's
    reader.apply(*messages[0])
    assert reader.weights.version == "v1"
    for key, value in messages[1:-1]:
        reader.apply(key, value)
    assert reader.weights.version == "v2" and np.array_equal(reader.weights.heads["interaction"], np.ones(len(FEATURES)))
    reader.apply(REJECTED_KEY.encode(), b'{"refused": 3, "rejected": [{"reason": "NDCG@10 below"}]}')
    reader.apply(b"__weights__", b"not json")
    assert reader.refused["refused"] == 3 and reader.rejected == 1 and reader.weights.version == "v2"


def test_checkpoint_round_trip(tmp_path):
    learner = OnlineLearner(FEATURES, {"interaction": 1.0, "conversion": 1.0}, every=10)
    model, state = Model(index()), UserState()
    r = ranker()
    step = state.apply(0, r, Interaction("u", "a", 5.0, 1.0), model)[1]
    for n in range(5):  # taken from the bottom of the recall order: the first offer beats it and ships
        learner.learn(r.examples(state, Interaction("u", step.made.items[-1 - n % 3], 5.0, 2.0 + n), model,
                                 made=step.made))
    assert learner.serving is not None
    checkpoint.save(tmp_path / "c.npz", learner, {0: 12, 3: 4})
    again = OnlineLearner(FEATURES, {"interaction": 1.0, "conversion": 1.0}, every=10)
    assert checkpoint.load(tmp_path / "c.npz", again) == {0: 12, 3: 4}
    assert again.examples_learnt == learner.examples_learnt and again.versions == learner.versions
    for task in TASKS:
        assert np.array_equal(again.heads[task].z, learner.heads[task].z)
        assert again.heads[task].item_bias == learner.heads[task].item_bias
    assert again.serving.version == learner.serving.version
    other = OnlineLearner(("bias",), {"interaction": 1.0})
    assert checkpoint.load(tmp_path / "c.npz", other) is None  # made for other features: start afresh


def test_the_catalogue_keeps_categories_and_when_items_were_added():
    from tables.broadcast import Catalogue

    cat = Catalogue()
    cat.apply(b"a", b'{"item": "a", "category": "hats", "added": 1700000000}')
    cat.apply(b"b", b'{"item": "b", "category": "shoes"}')
    cat.apply(b"c", b'{"item": "c", "added": "yesterday"}')  # not a time: no age
    assert cat.category == {"a": "hats", "b": "shoes"} and cat.added == {"a": 1.7e9}
    cat.apply(b"a", None)  # a tombstone forgets both
    assert "a" not in cat.category and "a" not in cat.added


def test_a_few_rows_read_their_item_biases_without_the_table_of_every_item():
    """The learner scores every interaction's few rows with weights it makes anew each time:
    they read the biases' dicts (the table of every item is for a worker's batches), to the same logits."""
    rng = np.random.default_rng(5)
    biases = {"interaction": {f"i{j}": float(rng.normal()) for j in range(50)}, "conversion": {"i3": -1.0}}
    weights = LearnedWeights("v", FEATURES, {t: rng.normal(size=len(FEATURES)) for t in TASKS}, biases)
    X, items = rng.random((4, len(FEATURES))), ("i3", "i7", "nope", "i49")
    few = {t: weights.logits(t, X, items) for t in TASKS}
    assert "biases" not in weights.__dict__  # the cached table was not built
    place, _table = weights.biases
    rows = np.array([place.get(q, -1) for q in items])
    for t in TASKS:
        np.testing.assert_array_equal(few[t], weights.logits(t, X, items, rows))


def test_the_bias_rows_of_item_positions_are_the_rows_of_their_names():
    """A worker's batch finds its candidates' biases by item position; an item the model
    does not know (a cold item the catalogue recalled) is found by its name."""
    rng = np.random.default_rng(9)
    index = SimilarityIndex({f"i{j}": {f"i{(j + 1) % 30}": 0.5} for j in range(30)})
    biases = {"interaction": {f"i{j}": float(rng.normal()) for j in range(0, 30, 2)}, "conversion": {"cold": 1.0}}
    weights = LearnedWeights("v", FEATURES, {t: rng.normal(size=len(FEATURES)) for t in TASKS}, biases)
    items = ["i4", "cold", "i5", "i28", "gone", "i4"]
    at = np.array([index.position.get(q, -1) for q in items], dtype=np.intp)
    place, _table = weights.biases
    expected = [place.get(q, -1) for q in items]
    assert weights.bias_rows(index, at, items).tolist() == expected
    assert weights.bias_rows(index, at, items).tolist() == expected  # again, from the model's table
    known = at >= 0
    assert weights.bias_rows(index, at[known]).tolist() == [e for e, k in zip(expected, known, strict=True) if k]
