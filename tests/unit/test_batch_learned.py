"""The learned ranker over a whole batch (``LearnedRanker.step_many``: the candidates'
features by ``ranking.features.features_many``, one product of scores) gives what one
step at a time gives, on random models, contexts, weights and histories."""
from __future__ import annotations

import random

import numpy as np
import pytest

from ranking import Blend, DefaultRanker, LearnedRanker, Model, SimilarityIndex, kernels
from ranking.content import CatalogueText, ContentIndex
from ranking.features import BASE_FEATURES, FEATURES, Context, candidates, candidates_many, crossed_dot, with_crosses
from ranking.learned import TASKS, LearnedWeights
from ranking.protocol import Interaction
from tables.state import BatchSteps, UserState
from tests.helpers import random_lists

EVENTS = ["rating", "view", "click", "cart", "purchase", "fav"]


def random_model(seed: int) -> tuple[Model, LearnedRanker]:
    """A model with named sources (negative weights in one), a blend, maybe the factor
    lists only; a context with hot items, categories and catalogue times, or none; a
    weight set with item biases, or none (cold start); a learned ranker of random sizes."""
    rng = random.Random(seed)
    items = [f"i{n:02d}" for n in range(rng.randint(3, 60))]

    counts = {q: rng.randint(0, 5) for q in rng.sample(items, rng.randint(0, len(items)))}
    # Recent popularity for some items (ties among them too), or none.
    recent = {q: [float(rng.randint(0, 3)) for _h in range(3)] for q in rng.sample(items, rng.randint(0, len(items)))}
    if seed % 4 == 0:
        index = SimilarityIndex(random_lists(rng, items), counts=counts, keep_sources=True, recent=recent)
    else:
        blend = Blend(related=rng.choice([0.0, 0.5, 1.0]), sequential=rng.choice([0.0, 2.0]),
                      learned=rng.choice([0.0, 1.0]), decay=rng.choice([0.4, 0.9]), history=rng.choice([2, 20]),
                      w_pop=rng.choice([0.0, 0.3]))
        index = SimilarityIndex(related=random_lists(rng, items), counts=counts, blend=blend, keep_sources=True,
                                recent=recent, sources={"sequential": random_lists(rng, items), "learned": random_lists(rng, items, negative=True)})
    context = None
    if seed % 3:
        pool = items + ["hot-unknown"]
        context = Context(hot_items=tuple(rng.sample(pool, rng.randint(0, min(len(pool), 25)))),
                          categories={q: rng.choice("abc") for q in rng.sample(items, rng.randint(0, len(items)))},
                          first_seen={q: float(rng.randint(0, 50)) for q in rng.sample(items, rng.randint(0, len(items)))})
    content = None
    if seed % 5 == 0:
        texts = {q: " ".join(rng.sample(["red", "shoe", "wool", "boot"], rng.randint(0, 2))) for q in items + ["new"]}
        content = ContentIndex(CatalogueText(texts), counts, cold_min=2)
    learned = None
    if seed % 6:
        heads = {t: np.array([rng.gauss(0, 1) for _ in FEATURES]) for t in TASKS}
        bias = {t: {q: rng.gauss(0, 1) for q in rng.sample(items, rng.randint(0, len(items)))} for t in TASKS}
        learned = LearnedWeights("v1", FEATURES, heads, bias)
    ranker = LearnedRanker(recall=DefaultRanker(k=rng.choice([3, 10, 50])), n_hot=rng.choice([0, 5, 20]),
                           k=rng.choice([1, 5, 20]), explore=rng.choice([0.0, 0.5]), impressions=rng.random() < 0.7,
                           objective=(("interaction", 1.0), ("conversion", rng.choice([0.0, 4.0]))))
    model = Model(index, hot_items=tuple(rng.sample(items, min(len(items), 5))), learned=learned, context=context,
                  content=content)
    return model, ranker


def random_users(seed: int, model: Model, ranker: LearnedRanker) -> list[tuple[UserState, Interaction]]:
    """Users with random histories (each made by steps, so each has a list it was shown),
    and each one's next interaction (some replays of the newest one)."""
    rng = random.Random(seed + 1000)
    items = list(model.index.ids) + ["unknown"]
    pairs = []
    for u in range(rng.randint(1, 30)):
        state = UserState()
        for offset in range(rng.randint(0, 8)):
            state.apply(offset, ranker, Interaction(f"u{u}", rng.choice(items), rng.choice([1.0, 4.0, 5.0]),
                                                    float(100 + offset), event=rng.choice(EVENTS),
                                                    dislike=rng.random() < 0.1), model)
        if state.recent and rng.random() < 0.15:
            item, weight, ts = state.recent[-1]
            nxt = Interaction(f"u{u}", item, weight, ts)
        else:
            nxt = Interaction(f"u{u}", rng.choice(items), rng.choice([1.0, 5.0]), 200.0 + u, event=rng.choice(EVENTS),
                              dislike=rng.random() < 0.1)
        pairs.append((state, nxt))
    return pairs


@pytest.mark.parametrize("seed", range(120))
def test_step_many_gives_each_user_the_step_one_at_a_time_gives(seed):
    model, ranker = random_model(seed)
    pairs = random_users(seed, model, ranker)
    expected = [ranker.step(state, interaction, model) for state, interaction in pairs]
    got = ranker.step_many(pairs, model)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert (a.recent, a.rated, a.n_candidates, a.explored, a.because) == (
            b.recent, b.rated, b.n_candidates, b.explored, b.because)
        assert [q for q, _s in a.items] == [q for q, _s in b.items]  # same items, same order
        assert [s for _q, s in a.items] == pytest.approx([s for _q, s in b.items], abs=1e-6)
        if b.made is not None:
            assert a.made.items == b.made.items and a.made.because == b.made.because
            np.testing.assert_allclose(with_crosses(a.made.X), b.made.X, rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_candidates_many_gives_the_features_candidates_gives(seed):
    """Histories with dislikes, unknown items and ratings of every size."""
    model, ranker = random_model(seed)
    rng = random.Random(seed)
    items = list(model.index.ids) + ["unknown"]
    context = model.context or Context(hot_items=model.hot_items)
    wanted = []
    for _ in range(rng.randint(0, 20)):
        recent = [[q, rng.choice([5.0, 1.0, -1.0, 0.5]), float(t)]
                  for t, q in enumerate(rng.sample(items, min(len(items), rng.randint(0, 12))))]
        shown = [[q, 0.5] for q in rng.sample(items, min(len(items), rng.randint(0, 6)))]
        wanted.append((recent, {e[0] for e in recent}, shown, rng.choice(EVENTS), 60.0))
    X, got, at = candidates_many(wanted, model.index, context, recall=ranker.recall, n_hot=ranker.n_hot)
    assert X.shape == (sum(len(f.items) for f in got), len(BASE_FEATURES))
    assert at.tolist() == [model.index.position.get(q, -1) for f in got for q in f.items]
    for w, found in zip(wanted, got, strict=True):
        one = candidates(*w, model.index, context, recall=ranker.recall, n_hot=ranker.n_hot)
        assert (found.items, found.because) == (one.items, one.because)
        np.testing.assert_allclose(with_crosses(found.X), one.X, rtol=0, atol=1e-12)


def assert_same_step(a, b) -> None:
    """Same history, items in the same order, scores within rounding, same because."""
    assert (a.recent, a.rated, a.n_candidates, a.explored, a.because) == (
        b.recent, b.rated, b.n_candidates, b.explored, b.because)
    assert [q for q, _s in a.items] == [q for q, _s in b.items]
    assert [s for _q, s in a.items] == pytest.approx([s for _q, s in b.items], abs=1e-6)


@pytest.mark.parametrize("seed", range(30))
def test_batch_steps_give_the_lists_and_examples_of_one_rating_at_a_time(seed):
    """The agent's two ways: each rating's examples (from the candidates kept for its
    user) then its step, one after the other; or all queued in ``BatchSteps`` and made in
    rounds. Users come back within the batch; some ratings are redeliveries or replays."""
    from ranking.features import KeptCandidates

    model, ranker = random_model(seed)
    rng = random.Random(seed + 7)
    items = list(model.index.ids) + ["unknown"]
    users = [f"u{n}" for n in range(rng.randint(1, 6))]
    stream, offsets = [], dict.fromkeys(users, 0)
    for t in range(rng.randint(1, 50)):
        u = rng.choice(users)
        if stream and stream[-1][0] == u and rng.random() < 0.2:  # the same interaction again: a replay
            last = stream[-1]
            offsets[u] += 1
            stream.append((u, offsets[u], last[2]))
            continue
        offsets[u] += 1
        offset = offsets[u] if rng.random() < 0.9 else rng.randint(0, offsets[u])  # some are redeliveries
        stream.append((u, offset, Interaction(u, rng.choice(items), rng.choice([1.0, 5.0]), float(t + 1),
                                              event=rng.choice(EVENTS), dislike=rng.random() < 0.1)))
    one, kept_one, expected, taught = {u: UserState() for u in users}, KeptCandidates(), [], []
    for u, offset, interaction in stream:
        state, key = one[u], u.encode()
        redelivered = state.already_applied(offset)
        taught.append(None if redelivered else
                      ranker.examples(state, interaction, model, made=kept_one.take(key, state.offset)))
        changed, step = state.apply(offset, ranker, interaction, model)
        if changed:
            kept_one.put(key, offset, step.made)
        expected.append((changed, step))
    together = {u: UserState() for u in users}
    steps = BatchSteps(model, KeptCandidates())
    for u, offset, interaction in stream:
        steps.apply(together[u], offset, ranker, interaction, u.encode())
    steps.flush()
    for (changed, step), got in zip(expected, steps.results, strict=True):
        assert got[0] == changed
        assert_same_step(got[1], step)
    assert [u.recent for u in together.values()] == [u.recent for u in one.values()]
    assert [u.offset for u in together.values()] == [u.offset for u in one.values()]
    for a, b in zip(steps.examples, taught, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert (a.items, a.labels["conversion"].tolist()) == (b.items, b.labels["conversion"].tolist())
            np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-6)
            np.testing.assert_allclose(a.weights, b.weights)


def test_the_crossed_dot_product_is_the_product_with_the_crosses():
    rng = np.random.default_rng(3)
    base, w = rng.normal(size=(50, len(BASE_FEATURES))), rng.normal(size=len(FEATURES))
    np.testing.assert_allclose(crossed_dot(base, w), with_crosses(base) @ w, rtol=1e-12, atol=1e-12)


def test_the_compiled_loops_are_ready_for_the_types_a_batch_passes():
    """``kernels.warm_up`` (run when a model comes into service) compiles each loop for the
    very types a batch of either shipped ranker passes it: the first batch then compiles
    nothing more (a second signature would mean a first batch that waits seconds)."""
    kernels.warm_up()
    loops = (kernels.best_of_rows, kernels.main_contributors, kernels.source_sums)
    warmed = [list(loop.signatures) for loop in loops]
    for seed in range(1, 6):
        model, ranker = random_model(seed)
        pairs = random_users(seed, model, ranker)
        ranker.step_many(pairs, model)
        DefaultRanker(k=5).step_many(pairs, model)
    assert [list(loop.signatures) for loop in loops] == warmed
