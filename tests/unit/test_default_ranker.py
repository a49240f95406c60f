"""The default ranker (ranking/default.py) by hand and against its formula."""
from __future__ import annotations

import pytest

from ranking import Blend, DefaultRanker, History, Interaction, Model, SimilarityIndex

#: co-occurrence lists: a -> x 0.9, y 0.5; b -> y 0.6, z 0.2
RELATED = {"a": {"x": 0.9, "y": 0.5}, "b": {"y": 0.6, "z": 0.2}}


def _recent(*items):
    return [[item, 4.0, float(t)] for t, item in enumerate(items)]


def _rank(ranker, recent, exclude, index):
    items, because, _n = ranker.rank(recent, exclude, index)
    return items, because


def test_decays_older_items_and_says_why():
    index = SimilarityIndex(related=RELATED)
    # weights: b (newest) 1, a 0.5 -> y 0.25 + 0.6 = 0.85, x 0.45, z 0.2; scaled by 0.85
    items, because = _rank(DefaultRanker(decay=0.5, w_pop=0.0), _recent("a", "b"), {"a", "b"}, index)
    assert [q for q, _ in items] == ["y", "x", "z"]
    assert [s for _, s in items] == pytest.approx([1.0, 0.45 / 0.85, 0.2 / 0.85], abs=1e-6)
    assert because == {"y": "b", "x": "a", "z": "b"}
    # decay 0.1: x 0.09 < z 0.2
    items, _ = _rank(DefaultRanker(decay=0.1, w_pop=0.0), _recent("a", "b"), {"a", "b"}, index)
    assert [q for q, _ in items] == ["y", "z", "x"]


def test_adds_the_popularity_prior_and_its_candidates():
    index = SimilarityIndex(related=RELATED, counts={"x": 8, "p": 8, "a": 1})
    # knn scaled: y 1, x 0.529, z 0.235; prior lg(1+c)/lg(9): x 1, p 1 (a is the user's):
    # x 1.529, p 1.0 = y 1.0 (tie: id order), z 0.235
    items, because, n_candidates = DefaultRanker(decay=0.5, w_pop=1.0).rank(_recent("a", "b"), {"a", "b"}, index)
    assert [q for q, _ in items] == ["x", "p", "y", "z"]
    assert "p" not in because  # it came from the prior only
    assert n_candidates == 4  # x, y, z from the kNN part, p from the prior


def test_a_history_without_neighbours_gets_the_popular_items_even_without_a_prior_weight():
    index = SimilarityIndex(related=RELATED, counts={"x": 8, "p": 5, "q": 2, "c": 9})
    items, because, _n = DefaultRanker(w_pop=0.0).rank(_recent("c"), {"c"}, index)  # c has no neighbours
    assert [q for q, _ in items] == ["x", "p", "q"] and because == {}
    assert DefaultRanker(w_pop=0.0).rank([], set(), index)[0][0][0] == "c"  # nobody's history at all
    items, _because, _n = DefaultRanker(w_pop=0.0).rank(_recent("a"), {"a"}, index)  # a has neighbours: no prior
    assert [q for q, _ in items] == ["x", "y"]


def test_never_lists_what_the_user_had_and_reads_the_factor_lists_without_related():
    index = SimilarityIndex({"a": {"x": 0.9, "b": 0.8}})  # a model published without co-occurrence
    items, because = _rank(DefaultRanker(w_pop=0.0), _recent("a"), {"a", "b"}, index)
    assert items == [["x", 1.0]] and because == {"x": "a"}


def test_a_redelivered_interaction_changes_nothing():
    model, ranker = Model(SimilarityIndex(related=RELATED)), DefaultRanker()
    interaction = Interaction("u", "a", 4.0, 1.0)
    first = ranker.step(History(), interaction, model)
    again = ranker.step(History(first.recent, first.rated, first.items), interaction, model)
    assert (again.recent, again.rated, again.items) == (first.recent, first.rated, first.items)
    assert again.because == {} and again.n_candidates == 0


def test_a_dislike_leaves_the_list_for_good_and_pushes_its_neighbours_down():
    model = Model(SimilarityIndex(related={"a": {"x": 0.9, "y": 0.5}, "d": {"x": 0.8, "z": 0.3}}))
    ranker = DefaultRanker(w_pop=0.0, decay=1.0)
    before = ranker.step(History(), Interaction("u", "a", 5.0, 1.0), model)
    assert [q for q, _ in before.items] == ["x", "y"]
    after = ranker.step(History(before.recent, before.rated, before.items),
                        Interaction("u", "d", 1.0, 2.0, dislike=True), model)
    # x: 0.9 - 0.8 = 0.1 falls below y 0.5; z only has the dislike's -0.3; d itself never appears
    assert [q for q, _ in after.items] == ["y", "x", "z"] and "d" not in dict(after.items)
    assert after.because == {"y": "a", "x": "a"}  # a dislike is never a reason
    assert after.recent[-1][:2] == ["d", -1.0]


def _reference_rank(recent, exclude, index, ranker, related=None, sources=None):
    """The default ranker's formula transcribed loop by loop (module docstring of
    ranking/default.py), independent of its implementation. ``related`` and ``sources``:
    the model's named lists, blended with ``index.blend``'s weights."""
    blend = index.blend
    history, decay, w_pop = (blend.history if ranker.history is None else ranker.history,
                             blend.decay if ranker.decay is None else ranker.decay,
                             blend.w_pop if ranker.w_pop is None else ranker.w_pop)
    named = {"related": related or {}, **(sources or {})}
    lists = {}
    for name, weight in (("related", blend.related), ("sequential", blend.sequential), ("learned", blend.learned)):
        for a, neigh in named.get(name, {}).items():
            for b, s in neigh.items():
                if weight > 0 and s != 0:
                    lists.setdefault(a, {})[b] = lists.get(a, {}).get(b, 0.0) + weight * s
    lists = lists or index.neighbours
    recent = list(recent)[-history:]
    weights = [decay ** (len(recent) - 1 - j) * (-1.0 if e[1] < 0 else 1.0) for j, e in enumerate(recent)]
    knn = {}
    for (item, *_), w in zip(recent, weights, strict=False):
        for q, s in lists.get(item, {}).items():
            if s != 0.0 and q not in exclude:
                knn[q] = knn.get(q, 0.0) + w * s
    top = max(max(knn.values(), default=0.0), 0.0) or 1.0
    scores = {q: v / top for q, v in knn.items()}
    if not knn and w_pop <= 0:  # no neighbour at all: the popular items
        w_pop = 1.0
    if w_pop > 0 and index.prior:
        popular = [q for q in index.popular if q not in exclude][:ranker.n_pop]
        for q in set(scores) | set(popular):
            scores[q] = scores.get(q, 0.0) + w_pop * index.prior.get(q, 0.0)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:ranker.k]
    because = {}
    for q, _s in ranked:
        contributions = [(w * lists.get(item, {}).get(q, 0.0), -j, item)
                         for j, ((item, *_), w) in enumerate(zip(recent, weights, strict=False))]
        c, _j, item = max(contributions, default=(0.0, 0, None))
        if q in knn and c > 0:
            because[q] = item
    return [[q, round(s, 6)] for q, s in ranked], because


@pytest.mark.parametrize("seed", range(60))
def test_rank_matches_the_formula_on_random_models(seed):
    import random

    rng = random.Random(seed)
    items = [f"i{n}" for n in range(rng.randint(3, 40))]
    lists = {a: {b: rng.choice([0.0, round(rng.random(), 2), 0.5]) for b in rng.sample(items, min(len(items), rng.randint(0, 8))) if b != a}
             for a in rng.sample(items, rng.randint(1, len(items)))}
    counts = {q: rng.randint(0, 5) for q in rng.sample(items, rng.randint(0, len(items)))}
    def random_lists():  # learned lists have negative weights too
        return {a: {b: rng.choice([0.0, round(rng.random(), 2), 0.5, -round(rng.random(), 2)])
                    for b in rng.sample(items, min(len(items), rng.randint(0, 8))) if b != a}
                for a in rng.sample(items, rng.randint(1, len(items)))}

    # every fourth: a model without co-occurrence lists; every third: named sources and a blend of them
    sources = {"sequential": random_lists(), "learned": random_lists()} if seed % 3 == 0 else None
    blend = Blend(related=rng.choice([0.0, 0.5, 1.0]), sequential=rng.choice([0.0, 2.0]), learned=rng.choice([0.0, 1.0]),
                  decay=rng.choice([0.4, 0.9]), history=rng.choice([2, 20]), w_pop=rng.choice([0.0, 0.3])) \
        if sources else None
    index = SimilarityIndex(related=lists if seed % 4 else None, counts=counts, sources=sources, blend=blend) \
        if seed % 4 else SimilarityIndex(lists, counts=counts)
    recent = [[q, rng.choice([4.0, 1.0, -1.0]), float(t)] for t, q in enumerate(rng.sample(items, min(len(items), rng.randint(0, 12))))]
    exclude = set(rng.sample(items, min(len(items), rng.randint(0, 6)))) | {e[0] for e in recent}
    own = not sources or seed % 2  # half the blended models are ranked with the blend's own decay, history, prior
    ranker = DefaultRanker(history=rng.choice([3, 20]) if own else None, decay=rng.choice([0.5, 0.8, 1.0]) if own else None,
                           w_pop=rng.choice([0.0, 0.5, 1.0]) if own else None, n_pop=rng.choice([1, 5, 50]),
                           k=rng.choice([3, 20]))
    assert _rank(ranker, recent, exclude, index) == _reference_rank(recent, exclude, index, ranker,
                                                                    lists if seed % 4 else None, sources)


def test_the_settings_give_k_and_the_rated_limit():
    from app.settings import Settings

    assert DefaultRanker.from_settings(Settings().replace(ranking={"k": 7, "rated_items_max": 11})) == DefaultRanker(k=7, rated_limit=11)


@pytest.mark.parametrize("seed", range(8))
def test_rerank_orders_the_given_items_by_the_lists_own_scores(seed):
    """Reranking the items of the user's own list (shuffled, with an item the model does not
    know and items the user had) gives the list back, scores and all; the unknown item comes
    last with no score; an item the user had is scored too."""
    import random

    rng = random.Random(seed)
    ids = [f"i{n}" for n in range(30)]
    related = {a: {b: round(rng.uniform(-0.3, 1.0), 2) or 0.1 for b in rng.sample(ids, 6) if b != a} for a in ids}
    index = SimilarityIndex(related=related, counts={q: rng.randint(1, 9) for q in ids},
                            blend=Blend(related=1.0, decay=0.8, history=20, w_pop=rng.choice([0.0, 0.3])))
    model, ranker, state = Model(index), DefaultRanker(k=10), History()
    for t, item in enumerate(rng.sample(ids, 4)):
        step = ranker.step(state, Interaction("u", item, float(rng.choice([1, 3, 5])), float(t)), model)
        state = History(step.recent, step.rated, step.items)
    listed = [q for q, _s in state.last_list]
    given = rng.sample(listed, len(listed)) + ["unknown", state.rated[0], listed[0]]
    out = ranker.rerank(state, given, model)
    assert [q for q, _s in out].count(listed[0]) == 1 and len(out) == len(listed) + 2  # each once
    assert out[-1] == ["unknown", None] and state.rated[0] in {q for q, s in out if s is not None}
    mine = [[q, s] for q, s in out if q in set(listed)]
    assert mine == [list(e) for e in state.last_list]


def test_rerank_without_a_history_is_the_popularity_order():
    index = SimilarityIndex(related=RELATED, counts={"x": 8, "p": 5, "q": 2})
    out = DefaultRanker(w_pop=0.0).rerank(History(), ["q", "nope", "x", "p"], Model(index))
    assert [q for q, _ in out] == ["x", "p", "q", "nope"] and out[-1][1] is None
