"""The default ranker (tables/ranking.py) by hand, and which ranker a user gets."""
from __future__ import annotations

import pytest

from app.settings import SettingError, Settings
from tables.ranking import RankerParams, Ranking, rank_default, recommend_default
from tables.scoring import SimilarityIndex, recommend_after_rating

#: co-occurrence lists: a -> x 0.9, y 0.5; b -> y 0.6, z 0.2
RELATED = {"a": {"x": 0.9, "y": 0.5}, "b": {"y": 0.6, "z": 0.2}}


def _recent(*items):
    return [[item, 4.0, float(t)] for t, item in enumerate(items)]


def test_decays_older_items_and_says_why():
    index = SimilarityIndex(related=RELATED)
    # weights: b (newest) 1, a 0.5 -> y 0.25 + 0.6 = 0.85, x 0.45, z 0.2; scaled by 0.85
    items, because = rank_default(_recent("a", "b"), {"a", "b"}, index, RankerParams(decay=0.5, w_pop=0.0))
    assert [q for q, _ in items] == ["y", "x", "z"]
    assert [s for _, s in items] == pytest.approx([1.0, 0.45 / 0.85, 0.2 / 0.85], abs=1e-6)
    assert because == {"y": "b", "x": "a", "z": "b"}
    # decay 0.1: x 0.09 < z 0.2
    items, _ = rank_default(_recent("a", "b"), {"a", "b"}, index, RankerParams(decay=0.1, w_pop=0.0))
    assert [q for q, _ in items] == ["y", "z", "x"]


def test_adds_the_popularity_prior_and_its_candidates():
    index = SimilarityIndex(related=RELATED, counts={"x": 8, "p": 8, "a": 1})
    # knn scaled: y 1, x 0.529, z 0.235; prior lg(1+c)/lg(9): x 1, p 1 (a is the user's):
    # x 1.529, p 1.0 = y 1.0 (tie: id order), z 0.235
    items, because = rank_default(_recent("a", "b"), {"a", "b"}, index, RankerParams(decay=0.5, w_pop=1.0))
    assert [q for q, _ in items] == ["x", "p", "y", "z"]
    assert "p" not in because  # it came from the prior only


def test_never_lists_what_the_user_had_and_reads_the_factor_lists_without_related():
    index = SimilarityIndex({"a": {"x": 0.9, "b": 0.8}})  # a model published without co-occurrence
    items, because = rank_default(_recent("a"), {"a", "b"}, index, RankerParams(w_pop=0.0))
    assert items == [["x", 1.0]] and because == {"x": "a"}


def test_a_redelivered_interaction_changes_nothing():
    index = SimilarityIndex(related=RELATED)
    args = {"item": "a", "rating": 4.0, "ts": 1.0, "similarity": index, "params": RankerParams()}
    recent, rated, first, _because, _ = recommend_default(recent=[], rated=[], previous=[], **args)
    again = recommend_default(recent=recent, rated=rated, previous=first, **args)
    assert again[:3] == (recent, rated, first) and again[3] == {}


def test_the_ranking_picks_the_users_variant_and_the_paper_stays_the_paper():
    index = SimilarityIndex({"a": {"x": 0.9, "y": 0.7}}, related={"a": {"z": 0.5}})
    ranking = Ranking.from_settings(Settings().replace(ranking={"ranker": "paper"}))
    kw = {"item": "a", "rating": 5.0, "ts": 1.0, "recent": [], "rated": [], "previous": [], "similarity": index, "hot_items": ["h"]}
    paper = recommend_after_rating(params=ranking.online, **kw)
    assert ranking.variant("anyone") == "paper"
    assert ranking.update("paper", **kw)[:3] == paper[:3]
    assert [q for q, _ in ranking.update("default", **kw)[2]] == ["z"]
    ab = Ranking.from_settings(Settings().replace(ranking={"ab": "default:1,paper:1"}))
    variants = {ab.variant(f"u{n}") for n in range(50)}
    assert variants == {"default", "paper"} and ab.variant("u7") == ab.variant("u7")


@pytest.mark.parametrize("env, message", [
    ({"RECSYS_RANKER": "papr"}, "RECSYS_RANKER='papr': use one of default, paper"),
    ({"RECSYS_AB": "default:50,foo:50"}, "RECSYS_AB: variant 'foo' is not a ranker (default, paper)"),
    ({"RECSYS_EVENT_WEIGHTS": "view:1,clik:2"}, "RECSYS_EVENT_WEIGHTS: 'clik:2' is not event:weight"),
    ({"RECSYS_EVENT_WEIGHTS": "purchase:9"}, "the weight must be on the rating scale [1, 5]"),
])
def test_bad_ranker_settings_are_one_clear_error(env, message):
    with pytest.raises(SettingError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_the_old_implicit_ratings_name_still_works():
    assert Settings.from_env({"RECSYS_IMPLICIT_RATINGS": "purchase:5, cart:4"}).event_weight_map() == {
        "purchase": 5.0, "cart": 4.0}


def test_wire_lists_round_scores_and_filters_cut_and_exclude():
    from tables.ranking import filter_list, list_filters, wire_list

    items = [["a", 1.234567], ["b", None], ["c", 0.5], ["d", 0.25]]
    assert wire_list(items) == [["a", 1.2346], ["b", None], ["c", 0.5], ["d", 0.25]]
    n, exclude = list_filters({"n": "2", "exclude": "a, c"})
    assert (n, exclude) == (2, {"a", "c"})
    assert filter_list(items, n, exclude) == [["b", None], ["d", 0.25]]
    assert filter_list(items, keep=lambda q: q in {"c", "d"}) == [["c", 0.5], ["d", 0.25]]
    assert list_filters({}) == (None, set())
    for bad in ("0", "-1", "x", "2.5"):
        with pytest.raises(ValueError, match="whole number"):
            list_filters({"n": bad})


def test_a_dislike_leaves_the_list_for_good_and_pushes_its_neighbours_down():
    index = SimilarityIndex(related={"a": {"x": 0.9, "y": 0.5}, "d": {"x": 0.8, "z": 0.3}})
    p = RankerParams(w_pop=0.0, decay=1.0)
    recent, rated, before, _, _ = recommend_default(item="a", rating=5.0, ts=1.0, recent=[], rated=[], previous=[],
                                                    similarity=index, params=p)
    assert [q for q, _ in before] == ["x", "y"]
    recent, rated, after, because, _ = recommend_default(item="d", rating=1.0, ts=2.0, recent=recent, rated=rated,
                                                         previous=before, similarity=index, params=p, dislike=True)
    # x: 0.9 - 0.8 = 0.1 falls below y 0.5; z only has the dislike's -0.3; d itself never appears
    assert [q for q, _ in after] == ["y", "x", "z"] and "d" not in dict(after)
    assert because == {"y": "a", "x": "a"}  # a dislike is never a reason


def _reference_rank(recent, exclude, index, params):
    """The default ranker's formula transcribed loop by loop (module docstring of
    tables/ranking.py), independent of its numpy implementation."""
    recent = list(recent)[-params.history:]
    lists = index.related or index.neighbours
    weights = [params.decay ** (len(recent) - 1 - j) * (-1.0 if e[1] < 0 else 1.0) for j, e in enumerate(recent)]
    knn = {}
    for (item, *_), w in zip(recent, weights, strict=False):
        for q, s in lists.get(item, {}).items():
            if s > 0.0 and q not in exclude:
                knn[q] = knn.get(q, 0.0) + w * s
    top = max(max(knn.values(), default=0.0), 0.0) or 1.0
    scores = {q: v / top for q, v in knn.items()}
    if params.w_pop > 0 and index.prior:
        popular = [q for q in index.popular if q not in exclude][:params.n_pop]
        for q in set(scores) | set(popular):
            scores[q] = scores.get(q, 0.0) + params.w_pop * index.prior.get(q, 0.0)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:params.k]
    because = {}
    for q, _s in ranked:
        contributions = [(w * lists.get(item, {}).get(q, 0.0), -j, item)
                         for j, ((item, *_), w) in enumerate(zip(recent, weights, strict=False))]
        c, _j, item = max(contributions, default=(0.0, 0, None))
        if q in knn and c > 0:
            because[q] = item
    return [[q, round(s, 6)] for q, s in ranked], because


@pytest.mark.parametrize("seed", range(40))
def test_rank_default_matches_the_formula_on_random_models(seed):
    import random

    rng = random.Random(seed)
    items = [f"i{n}" for n in range(rng.randint(3, 40))]
    lists = {a: {b: rng.choice([0.0, round(rng.random(), 2), 0.5]) for b in rng.sample(items, min(len(items), rng.randint(0, 8))) if b != a}
             for a in rng.sample(items, rng.randint(1, len(items)))}
    counts = {q: rng.randint(0, 5) for q in rng.sample(items, rng.randint(0, len(items)))}
    index = SimilarityIndex(related=lists if seed % 4 else None, counts=counts) if seed % 4 else \
        SimilarityIndex(lists, counts=counts)  # every fourth: a model without co-occurrence lists
    recent = [[q, rng.choice([4.0, 1.0, -1.0]), float(t)] for t, q in enumerate(rng.sample(items, min(len(items), rng.randint(0, 12))))]
    exclude = set(rng.sample(items, min(len(items), rng.randint(0, 6)))) | {e[0] for e in recent}
    params = RankerParams(history=rng.choice([3, 20]), decay=rng.choice([0.5, 0.8, 1.0]),
                          w_pop=rng.choice([0.0, 0.5, 1.0]), n_pop=rng.choice([1, 5, 50]), k=rng.choice([3, 20]))
    assert rank_default(recent, exclude, index, params) == _reference_rank(recent, exclude, index, params)


def test_ranking_apply_updates_the_state_once_per_offset():
    from app.records import Rating
    from tables.state import UserState

    ranking = Ranking.from_settings(Settings().replace(ranking={"ranker": "default", "ab": ""}))
    index = SimilarityIndex(related=RELATED)
    state = UserState()
    variant, changed, _ = ranking.apply(state, Rating(user="u", item="a", rating=5.0, ts=1.0), 7, index, "v1")
    assert (variant, changed, state.offset) == ("default", True, 7)
    assert [q for q, _ in state.last_list] == ["x", "y"] and state.recs["model_version"] == "v1"
    before = state.to_value()
    # the same offset again (a redelivery), even with a newer model: nothing changes
    assert ranking.apply(state, Rating(user="u", item="b", rating=5.0, ts=2.0), 7, index, "v2")[1] is False
    assert state.to_value() == before
    ranking.apply(state, Rating(user="u", item="b", rating=1.0, ts=2.0, source="implicit:dislike"), 8, index, "v2")
    assert state.recent[-1][:2] == ["b", -1.0] and "b" not in dict(state.last_list)
