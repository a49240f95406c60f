"""The model's named sources (offline_als/sources.py), the blend of them the default
ranker reads (ranking/model.py) and its choice by validation (offline_als/selection.py),
on data small enough to check by hand."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from offline_als.selection import Selection, lists_read, replay, select_blend
from offline_als.sources import fit_sources, sequences_by_time
from ranking import Blend, DefaultRanker, SimilarityIndex


def times(rows: list[list[str]], items: list[str]) -> sp.csr_matrix:
    """Users (one row each, items in time order) as the users x items matrix of times."""
    index = {q: j for j, q in enumerate(items)}
    r, c, t = [], [], []
    for u, row in enumerate(rows):
        for position, q in enumerate(row):
            r.append(u)
            c.append(index[q])
            t.append(float(position))
    return sp.csr_matrix((t, (r, c)), shape=(len(rows), len(items)))


def test_sequences_follow_the_times_not_the_columns():
    T = sp.csr_matrix(np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]]))
    T.data[T.data == 0] = 0  # the zero of row 1 is no interaction
    assert [s.tolist() for s in sequences_by_time(T)] == [[1, 2, 0], [2, 1]]


def test_the_sequential_source_has_a_direction_the_related_one_has_not():
    items = ["a", "b", "c", "d"]
    T = times([["a", "b"], ["a", "b"], ["c", "d"], ["a", "c"]], items)
    sources = fit_sources(T, items)
    # b follows a twice (gap 1), c follows a once: a's sequential list is b then c; b has none
    assert list(sources["sequential"]["a"]) == ["b", "c"] and "b" not in sources["sequential"]
    assert "a" in sources["related"]["b"] and "b" in sources["related"]["a"]  # co-occurrence both ways
    for name in ("related", "sequential", "learned"):
        best = [max(neigh.values()) for neigh in sources[name].values() if max(neigh.values()) > 0]
        assert np.median(best) == pytest.approx(1.0), name  # one scale: the median best weight is 1
    for name in ("related", "sequential"):  # only EASE's learned weights can be negative
        assert all(w > 0 for neigh in sources[name].values() for w in neigh.values())


def test_the_learned_lists_are_eases_largest_and_most_negative_weights():
    from offline_als.item_item import ease
    from offline_als.sources import SourceParams

    rng = np.random.default_rng(4)
    X = (rng.random((40, 12)) < 0.4).astype(float)
    items = [f"i{j}" for j in range(12)]
    learned = fit_sources(sp.csr_matrix(X), items, SourceParams(m=3, ease_lambda=2.0))["learned"]
    B = ease(sp.csr_matrix(X), 2.0)
    scale = np.median([B[j].max() for j in range(12)])
    for j, q in enumerate(items):
        order = np.argsort(-B[j])
        positive, negative = [c for c in order if B[j, c] > 0][:3], [c for c in order if B[j, c] < 0][-3:]
        assert list(learned[q]) == [items[c] for c in positive + negative]  # best first, the most negative last
        assert learned[q][items[order[-1]]] == pytest.approx(B[j, order[-1]] / scale, abs=1e-6)
        assert min(learned[q].values()) < 0


def test_the_index_adds_the_weighted_sources_in_either_form_of_list():
    related, sequential = {"a": {"b": 1.0, "c": 0.5}}, {"a": {"d": 1.0, "c": 0.25}}
    only = SimilarityIndex(related=related, sources={"sequential": sequential, "learned": {}})
    assert only.blended("a") == {"b": 1.0, "c": 0.5} and only.source_names == ("related", "sequential")
    # b 1, c 0.5 + 2 x 0.25, d 2 x 1, best first (ties by id)
    blend = Blend(related=1.0, sequential=2.0)
    for form in (lambda lists: lists, lambda lists: {q: (tuple(n), list(n.values())) for q, n in lists.items()}):
        got = SimilarityIndex(related=form(related), sources={"sequential": form(sequential)}, blend=blend)
        assert list(got.blended("a").items()) == [("d", 2.0), ("b", 1.0), ("c", 1.0)]


def test_a_blend_comes_back_from_its_published_form_and_refuses_nonsense():
    blend = Blend(related=0.5, sequential=2.0, learned=1.0, decay=0.6, history=10, w_pop=0.0)
    assert Blend.from_dict({**Selection(blend).as_dict(), "added_later": [1]}) == blend
    assert Blend.from_dict({}) == Blend()
    for bad in ({"decay": "0.6"}, {"w_pop": float("nan")}, {"history": True}):
        with pytest.raises(ValueError):
            Blend.from_dict(bad)


def test_replay_scores_each_event_with_the_list_before_it():
    # a's only neighbour is b, b's is c: the user who had a is listed b (a hit at rank 1),
    # then, having had a and b, c first (a hit: NDCG 1 both times)
    index = SimilarityIndex(related={"a": {"b": 1.0}, "b": {"c": 1.0}}, blend=Blend(w_pop=0.0))
    histories = {0: ([["a", 1.0, 0.0]], {"a"})}
    assert replay(index, histories, [(0, "b", 1.0), (0, "c", 2.0)]) == (1.0, 1.0)
    # a user without history only learns; a miss counts 0
    assert replay(index, histories, [(1, "b", 1.0), (0, "d", 1.0)]) == (0.0, 0.0)


def test_the_selection_finds_the_direction_of_a_shop_where_it_matters():
    """Every user walks the same chain of items forwards, from a random start: the next
    item is the one after the last, which the symmetric co-occurrence lists cannot tell
    from the one before. The selection must weigh the sequential source and validate
    better than co-occurrence alone."""
    rng = np.random.default_rng(7)
    items = [f"i{j:02d}" for j in range(40)]
    rows = []
    for _u in range(600):
        start = int(rng.integers(0, 30))
        rows.append(items[start:start + int(rng.integers(3, 10))])
    T = times(rows, items)
    T.data += rng.random(T.nnz) * 0.1 + np.repeat(np.arange(len(rows)), np.diff(T.indptr)) * 10  # users in turn
    chosen = select_blend(T, items)
    assert chosen.blend.sequential > 0 and chosen.events == pytest.approx(0.1 * T.nnz, abs=1)
    related_only = chosen.scores[Blend().name]
    assert chosen.ndcg_at_10 > related_only[1] and chosen.runner_up["name"] != chosen.blend.name


def test_too_few_events_keep_the_default_blend():
    items = ["a", "b", "c"]
    chosen = select_blend(times([["a", "b"], ["b", "c"]], items), items)
    assert chosen.blend == Blend() and chosen.hr_at_10 is None and "too few" in chosen.note


def test_a_deadline_stops_the_search_and_says_so():
    rng = np.random.default_rng(3)
    items = [f"i{j}" for j in range(30)]
    rows = [list(rng.choice(items, size=6, replace=False)) for _u in range(300)]
    T = times(rows, items)
    everything = select_blend(T, items)
    hurried = select_blend(T, items, deadline=0.0)  # long past: only the default blend is scored
    assert everything.tried > 10 and not everything.note
    assert hurried.tried == 1 and hurried.blend == Blend() and "time budget" in hurried.note


def test_the_ease_penalty_is_chosen_among_the_grid_and_used_for_the_final_lists():
    from offline_als.selection import LAMBDAS

    rng = np.random.default_rng(5)
    items = [f"i{j}" for j in range(30)]
    rows = [list(rng.choice(items[: 10 + u % 20], size=5, replace=False)) for u in range(300)]
    chosen = select_blend(times(rows, items), items)
    assert chosen.params.ease_lambda in LAMBDAS and chosen.as_dict()["ease_lambda"] == chosen.params.ease_lambda
    alone = chosen.scores[Blend(related=0.0, learned=1.0).name]  # the learned lists alone, at the chosen penalty
    assert 0.0 <= alone[1] <= alone[0] <= 1.0


def test_the_published_model_carries_the_sources_and_a_blend_chosen_within_the_budget():
    from app.settings import Settings
    from offline_als.model import times_csr, train_and_similar

    rng = np.random.default_rng(11)
    users, items = rng.integers(0, 300, 3000), rng.integers(0, 40, 3000)
    conf = Settings().replace(als={"rank": 4, "iters": 2, "similar": 5, "related": 10})
    R = sp.csr_matrix((np.ones(3000, dtype=np.float32), (users, items)), shape=(300, 40))
    R.data[:] = 4.0
    ids = np.array([f"i{j}" for j in range(40)])
    kwargs = {"conf": conf, "times": times_csr(users, items, R.shape)}
    unhurried = train_and_similar(R, np.arange(300).astype(str), ids, **kwargs)
    hurried = train_and_similar(R, np.arange(300).astype(str), ids, budget_s=0.0, **kwargs)
    assert unhurried.selection.tried > 10 and "time budget" in hurried.selection.note
    assert hurried.selection.blend == Blend() and hurried.version.endswith("+" + Blend().tag)
    published = unhurried.publication()
    assert set(published["sources"]) == {"sequential", "learned"} and published["blend"]["name"]
    assert max(len(n) for n in published["sources"]["learned"].values()) <= 10
    assert unhurried.index().blend == unhurried.selection.blend


def test_an_item_only_one_user_had_gets_no_learned_list():
    items = ["a", "b", "c", "solo"]
    sources = fit_sources(times([["a", "b"], ["a", "b", "c"], ["b", "c"], ["c", "solo"]], items), items)
    assert "solo" not in sources["learned"] and all("solo" not in n for n in sources["learned"].values())
    assert "a" in sources["learned"]


def test_the_finer_weights_halve_and_double_each_source_and_try_the_unused_one():
    from offline_als.selection import _finer

    assert _finer(Blend(related=0.0, sequential=1.0, learned=2.0)) == [
        (0.5, 1.0, 2.0), (0.0, 0.5, 2.0), (0.0, 2.0, 2.0), (0.0, 1.0, 1.0), (0.0, 1.0, 4.0)]


def test_equal_times_give_the_sequential_source_no_direction():
    items = ["a", "b"]
    T = times([["a", "b"]] * 40, items)
    T.data[:] = 7.0  # every user had both in the same second: which came first is unknown
    sequential = fit_sources(T, items)["sequential"]
    # ordered by column, every user would have "had a, then b": a direction the data has not
    assert set(sequential) == {"a", "b"} and sequential["a"]["b"] == pytest.approx(sequential["b"]["a"], rel=0.5)


def test_a_reblended_index_is_the_index_built_with_that_blend():
    related, sequential = {"a": {"b": 1.0, "c": 0.5}}, {"a": {"d": 1.0, "c": 0.25}, "d": {"a": 2.0}}
    base = SimilarityIndex({"a": {"e": 0.9}}, related=related, sources={"sequential": sequential}, keep_sources=True)
    for blend in (Blend(related=1.0, sequential=2.0), Blend(related=0.0, sequential=1.0), Blend(related=0.0)):
        fresh = SimilarityIndex({"a": {"e": 0.9}}, related=related, sources={"sequential": sequential}, blend=blend)
        again = base.reblended(blend)
        assert {q: again.blended(q) for q in ("a", "d")} == {q: fresh.blended(q) for q in ("a", "d")}
        assert again.blend == blend
    assert base.reblended(Blend(related=0.0)).blended("a") == {"e": 0.9}  # no source used: the factor neighbours
    with pytest.raises(ValueError):
        SimilarityIndex(related=related).reblended(Blend())


def test_a_model_whose_sources_are_all_empty_is_ranked_by_its_factor_neighbours():
    # what a worker stages from a model published without co-occurrence lists
    for empty in ({}, ((), np.array([]))):
        index = SimilarityIndex({"a": {"b": 0.9}}, related={"a": empty, "b": empty}, sources={"learned": {"a": empty}})
        assert index.blended("a") == {"b": 0.9} and index.source_names == ("related",)


def test_a_replay_reads_only_the_lists_of_its_users_recent_items_and_of_its_events():
    from offline_als.selection import _histories

    rng = np.random.default_rng(11)
    items = [f"i{j:03d}" for j in range(150)]
    rows = [list(rng.choice(items, size=int(rng.integers(2, 30)), replace=False)) for _u in range(80)]
    T = times(rows, items)
    sources = fit_sources(T, items)
    histories = _histories(T, items)
    # 40 events of 10 users, 3 of them new (no history: their first event only learns)
    events = [(int(u), str(rng.choice(items)), 100.0 + j) for j, u in enumerate(rng.integers(77, 87, size=40))]
    base = SimilarityIndex(related=sources.pop("related"), sources=sources, keep_sources=True)
    read = lists_read(histories, events)
    assert len(read) < len(base.lists)  # some lists are not read: the restriction is tested
    for blend in (Blend(), Blend(related=0.5, sequential=1.0, learned=2.0, decay=0.4, history=5)):
        ranker = DefaultRanker(k=10, history=blend.history, decay=blend.decay)
        assert replay(base.reblended(blend, only=read), histories, events, ranker) == \
            replay(base.reblended(blend), histories, events, ranker)
        assert set(base.reblended(blend, only=read).lists) <= read


def test_the_penalty_search_steps_down_and_up_only_when_down_lost():
    from offline_als.selection import LAMBDAS, next_penalty

    start, down, up = LAMBDAS  # 1000, 250, 4000
    assert next_penalty({start: (0.1, 0.05)}, start) == down
    assert next_penalty({start: (0.1, 0.05), down: (0.1, 0.06)}, start) is None  # down won: up is not fitted
    assert next_penalty({start: (0.1, 0.05), down: (0.1, 0.04)}, start) == up  # down lost
    assert next_penalty({start: (0.1, 0.05), down: (0.1, 0.05)}, start) is None  # a tie goes to the smaller penalty
    assert next_penalty({start: (0.1, 0.05), down: (0.1, 0.04), up: (0.1, 0.07)}, start) is None


def test_recent_popularity_weighs_each_users_latest_time_by_its_age():
    from offline_als.model import recent_popularity
    from ranking.model import RECENT_HALF_LIVES

    day = 86_400.0
    # Users x items (a, b, c), each pair's latest time: a by two users, at the newest time
    # and 30 days before it less a second; b by one user at the newest time; c by nobody.
    T = sp.csr_matrix(([30 * day, 30 * day, 1.0], ([0, 0, 1], [0, 1, 0])), shape=(2, 3))
    got, at = recent_popularity(T, ["a", "b", "c"])
    assert at == 30 * day
    assert set(got) == {"a", "b"}
    age = 30 * day - 1.0
    assert got["a"] == pytest.approx([1.0 + 2 ** (-age / h) for h in RECENT_HALF_LIVES.values()], rel=1e-3)
    assert got["b"] == [1.0, 1.0, 1.0]
    assert got["a"][0] < got["a"][1] < got["a"][2]  # a month-old interaction counts most over a month
    index = SimilarityIndex(counts={"a": 2, "b": 1, "c": 1}, recent=got, recent_ts=at)
    b = np.array([index.position["b"]])
    # on the prior's scale (over lg(1 + the count 2)); a week later, decayed by a week
    assert index.recent_popularity(b, at)[0].tolist() == pytest.approx([np.log(2) / np.log(3)] * 3)
    week = [np.log1p(2 ** (-7 * day / h)) / np.log(3) for h in RECENT_HALF_LIVES.values()]
    assert index.recent_popularity(b, np.array([at + 7 * day]))[0].tolist() == pytest.approx(week)
    assert index.recent_popularity(b, at - day)[0].tolist() == pytest.approx([np.log(2) / np.log(3)] * 3)  # never grows
