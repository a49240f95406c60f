"""The strong baselines of the streaming evaluation (evaluation/baselines.py) on one tiny
data set, each with the list it must give, worked out by hand (iALS: against the normal
equations solved here with numpy).

The data: u0 had a, b, c (in that order), u1 a, b, u2 b, c, u3 d; popularity (for the
padding) b 3, a 2, c 2, d 1. The user asking is new ("me"), so no fit knows them.
"""
from __future__ import annotations

import numpy as np
import pytest

from evaluation import baselines, prequential
from evaluation.baselines import EASE, IALS, VSKNN, RP3beta, SequentialRules
from evaluation.rankers import HotWindow, SharedState, TopCounter
from ranking import History, Interaction

EVENTS = [("u0", "a"), ("u1", "a"), ("u0", "b"), ("u1", "b"), ("u2", "b"), ("u0", "c"), ("u2", "c"), ("u3", "d")]


def model_for(*rankers) -> SharedState:
    n = len(EVENTS)
    stream = prequential.Stream([u for u, _ in EVENTS], [i for _, i in EVENTS], np.ones(n), np.arange(n, dtype=float),
                                (1.0, 5.0))
    shared = SharedState(TopCounter(), HotWindow(3600, 300, 10))
    for _u, item in EVENTS:
        shared.popularity.add(item)
    shared.fit_for(rankers)
    shared.data = prequential.interactions(stream, n)
    shared.fitted = {key: fit(shared.data) for key, fit in shared.fits.items()}
    return shared


def list_after(ranker, items: list[str]) -> list[list]:
    """The list ``ranker`` gives "me" after interacting with ``items`` in this order."""
    model, state = model_for(ranker), History()
    for t, item in enumerate(items):
        step = ranker.step(state, Interaction("me", item, 1.0, float(t)), model)
        state = History(step.recent, step.rated, step.items)
    return [[q, round(s, 6)] for q, s in state.last_list]


def test_sequential_rules():
    # a -> b in u0 and u1 (gap 1: 1 + 1), a -> c in u0 (gap 2: 1/2), b -> c in u0 and u2 (2)
    assert list_after(SequentialRules(k=3, steps=2, last=1), ["a"]) == [["b", 2.0], ["c", 0.5], ["d", 0.0]]
    assert list_after(SequentialRules(k=3, steps=1, last=1), ["a"]) == [["b", 2.0], ["c", 0.0], ["d", 0.0]]
    # the two newest, the newer weighted 1 and the older 0.5 (decay): c = 2 * 1 (from b) + 0.5 * 0.5 (from a)
    assert list_after(SequentialRules(k=2, steps=2, last=2, decay=0.5), ["a", "b"]) == [["c", 2.25], ["d", 0.0]]


def test_ease():
    # G + I on a, b, c = [[3, 2, 1], [2, 4, 2], [1, 2, 3]]: P = adj / 16 = [[8, -4, 0], [-4, 8, -4], [0, -4, 8]] / 16,
    # B[i, j] = -P[i, j] / P[j, j]: B[a, b] = B[b, c] = 0.5, B[a, c] = 0; d shares no user (its own block)
    assert list_after(EASE(k=3, lam=1.0), ["a"]) == [["b", 0.5], ["c", 0.0], ["d", 0.0]]
    assert list_after(EASE(k=2, lam=1.0), ["a", "b"]) == [["c", 0.5], ["d", 0.0]]


def test_rp3beta():
    # from a: P(u0|a) = P(u1|a) = 1/2; P(b|u0) = 1/3, P(b|u1) = 1/2: b = 1/6 + 1/4; c = 1/6 (via u0 only)
    assert list_after(RP3beta(k=3, alpha=1.0, beta=0.0), ["a"]) == [["b", round(5 / 12, 6)], ["c", round(1 / 6, 6)],
                                                                   ["d", 0.0]]
    # beta 1: divided by the users of each: b has 3, c 2
    assert list_after(RP3beta(k=2, alpha=1.0, beta=1.0), ["a"]) == [["b", round(5 / 36, 6)], ["c", round(1 / 12, 6)]]


def test_vsknn():
    # session a (older: 1/2), b (newer: 1): u0 and u1 share both (1.5), u2 only b (1); with 2
    # neighbours u0 and u1 vote 1.5 each for their items: c only from u0
    assert list_after(VSKNN(k=2, session=2, neighbours=2), ["a", "b"]) == [["c", 1.5], ["d", 0.0]]
    # with 3 neighbours u2 (similarity 1) votes for c too
    assert list_after(VSKNN(k=2, session=2, neighbours=3), ["a", "b"]) == [["c", 2.5], ["d", 0.0]]


@pytest.mark.parametrize("decay", [None, 0.5])
def test_ials_scores_with_the_user_vector_of_the_current_history(decay):
    ranker = IALS(k=2, factors=3, reg=0.5, alpha=4.0, decay=decay, iterations=5)
    model = model_for(ranker)
    als = model.fitted[ranker.fit_key()]
    Y = np.asarray(als.item_factors, dtype=np.float64)
    # history a (older), b (newer): confidence alpha * weight; the implicit ALS normal equations
    weights = {"a": 1.0 if decay is None else decay, "b": 1.0}
    A, rhs = Y.T @ Y + 0.5 * np.eye(3), np.zeros(3)
    for item, w in weights.items():
        y, c = Y[model.data.item_index[item]], 4.0 * w
        A += (c - 1.0) * np.outer(y, y)
        rhs += c * y
    scores = {q: Y[model.data.item_index[q]] @ np.linalg.solve(A, rhs) for q in ("c", "d")}
    assert scores["c"] > 0  # c shares users with a and b, d none: a positive score, listed first
    got = list_after(ranker, ["a", "b"])
    assert [q for q, _s in got] == sorted(scores, key=lambda q: -scores[q])
    assert got[0][1] == pytest.approx(scores["c"], rel=1e-3)


@pytest.mark.parametrize("ranker", [EASE(k=3, lam=1.0), IALS(k=3, factors=3, reg=0.5, alpha=4.0, iterations=5)],
                         ids=["ease", "ials"])
def test_a_kept_history_sum_gives_the_lists_of_a_fresh_one(ranker, monkeypatch):
    """Heavy users' sums are kept between steps (baselines.history_sum): every list along
    a history that grows, repeats an item and is replayed equals the one summed afresh."""
    items = ["a", "b", "a", "c", "d", "d", "b"]
    lists = {}
    for kept_from in (1, 10**9):  # kept for every user / for none
        monkeypatch.setattr(baselines, "SUM_KEPT_FROM", kept_from)
        model, state, lists[kept_from] = model_for(ranker), History(), []
        for t, item in enumerate(items):
            step = ranker.step(state, Interaction("me", item, 1.0, float(t)), model)
            state = History(step.recent, step.rated, step.items)
            lists[kept_from].append([[q, round(s, 9)] for q, s in step.items])
        assert model.sums if kept_from == 1 else not model.sums
    assert lists[1] == lists[10**9]


@pytest.mark.parametrize("seed", range(20))
def test_top_scored_is_the_full_sort_without_the_excluded(seed):
    rng = np.random.default_rng(seed)
    model = model_for()
    n = len(model.data.item_ids)
    scores = rng.choice([0.0, 0.5, 1.0, 2.0], size=n) if seed % 2 else rng.random(n)  # ties on every other seed
    exclude = set(rng.choice(model.data.item_ids, size=int(rng.integers(0, n)), replace=False).tolist())
    k = int(rng.integers(1, n + 1))
    want = sorted(((-s, j) for j, s in enumerate(scores) if s > 0 and model.data.item_ids[j] not in exclude))[:k]
    got = baselines.top_scored(np.arange(n), scores, model.data, exclude, k, model)
    assert got[: len(want)] == [[model.data.item_ids[j], -s] for s, j in want]
