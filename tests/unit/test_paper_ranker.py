"""The paper's formula and merge (ranking/paper.py), the similarity index and the history
every ranker keeps, checked on hand-computed cases (no broker)."""
import math

import pytest

from ranking import History, Interaction, Model, PaperRanker, SimilarityIndex
from ranking.history import add_rated_item, add_recent_rating
from ranking.paper import (
    base_score,
    candidate_items,
    fill_with_fallback,
    high_rating_cut,
    merge_lists,
    score_candidates,
)

NEIGHBOURS = {
    "p": {"a": 0.9, "b": 0.8, "c": 0.7, "r1": 0.65, "d": 0.5},
    "a": {"p": 0.9, "r1": 0.7, "r2": 0.95},
    "b": {"r2": 0.61},
    "c": {"r1": 0.55},
}
INDEX = SimilarityIndex(NEIGHBOURS)


def pairwise_similarity(neighbours):
    """sim(a, b) pair by pair from the published lists: the score in a's list or in b's
    (the larger if both list the pair), else 0; sim(a, a) = 1."""
    def sim(a, b):
        if a == b:
            return 1.0
        listed = [neighbours[x][y] for x, y in ((a, b), (b, a)) if y in neighbours.get(x, {})]
        return max(listed, default=0.0)
    return sim


SIM = pairwise_similarity(NEIGHBOURS)


def test_high_cut_is_scale_relative():
    assert high_rating_cut(2, 10) == 6  # Rent the Runway: 6, 8, 10 are high
    assert high_rating_cut(1, 5) == 3


def test_similarity_looks_in_both_lists_and_defaults_to_zero():
    for sim in (SIM, INDEX.similarity):
        assert sim("a", "r2") == 0.95
        assert sim("r2", "a") == 0.95  # r2 has no list; found in a's
        assert sim("p", "a") == 0.9 and sim("a", "p") == 0.9
        assert sim("c", "r2") == 0.0
        assert sim("x", "x") == 1.0
    lopsided = SimilarityIndex({"a": {"b": 0.61}, "b": {"a": 0.63}})  # rounding differences
    assert lopsided.similarity("a", "b") == lopsided.similarity("b", "a") == 0.63


def test_index_keeps_lists_best_first_and_rows_symmetric():
    assert list(INDEX.neighbours["p"]) == ["a", "b", "c", "r1", "d"]
    assert INDEX.rows["r2"] == {"r2": 1.0, "a": 0.95, "b": 0.61}  # r2 has no list of its own
    assert len(INDEX) == 4 and "r2" not in INDEX.neighbours


def test_index_rows_match_the_pairwise_definition_on_random_lists():
    import random

    rng = random.Random(3)
    items = [f"i{n}" for n in range(40)]
    lists = {item: {o: round(rng.random(), 3) for o in rng.sample(items, 6)} for item in rng.sample(items, 30)}
    index = SimilarityIndex(lists)  # some lists name their own item: it is never a pair
    sim = pairwise_similarity(lists)
    for a in items:
        for b in items:
            assert index.similarity(a, b) == sim(a, b)
    # a row exists only for an item in a listed pair, and holds exactly those pairs and itself
    listed = {pair for a, neigh in lists.items() for b in neigh if a != b for pair in ((a, b), (b, a))}
    assert {(a, b) for a, row in index.rows.items() for b in row if b != a} == listed
    assert all(row[item] == 1.0 for item, row in index.rows.items())


def test_candidates_are_top_m_neighbours_not_rated():
    assert candidate_items(NEIGHBOURS["p"], rated=["p", "b"], m=3) == ["a", "c", "r1"]
    assert candidate_items(None, rated=[], m=3) == []


def test_score_by_hand():
    # recent: r1 rated 8 (high on 2..10), r2 rated 4 (low), p rated 10 (high)
    recent = [["r1", 8.0, 1.0], ["r2", 4.0, 2.0], ["p", 10.0, 3.0]]
    scores = score_candidates(["a", "b", "c"], recent, INDEX, theta=0.6, high_cut=6.0)
    # a: sims r1 .7 (8), r2 .95 (4), p .9 (10): all > .6, incount 2, recount 1
    expected_a = (0.7 * 8 + 0.95 * 4 + 0.9 * 10) / 3 + math.log10(2) - math.log10(1)
    # b: r2 .61 (4, low), p .8 (10, high): incount 1, recount 1
    expected_b = (0.61 * 4 + 0.8 * 10) / 2
    # c: r1 .55 is below theta; p .7 (10): n_sim 1
    expected_c = 0.7 * 10
    assert scores == pytest.approx({"a": expected_a, "b": expected_b, "c": expected_c})


def test_candidate_without_similar_recent_item_gets_no_score():
    scores = score_candidates(["d"], [["r2", 4.0, 1.0]], INDEX, theta=0.6, high_cut=6.0)
    assert scores == {}


def test_recount_lowers_the_score():
    recent_low = [["r1", 2.0, 1.0], ["r2", 2.0, 2.0], ["p", 2.0, 3.0]]
    scores = score_candidates(["a"], recent_low, INDEX, theta=0.6, high_cut=6.0)
    assert scores["a"] == pytest.approx((0.7 * 2 + 0.95 * 2 + 0.9 * 2) / 3 - math.log10(3))


def test_recent_ratings_one_entry_per_item_newest_wins_and_bounded():
    recent = add_recent_rating([], "a", 4, 10.0, k=3)
    recent = add_recent_rating(recent, "b", 5, 11.0, k=3)
    assert add_recent_rating(recent, "a", 1, 9.0, k=3) == recent  # stale event changes nothing
    assert add_recent_rating(recent, "b", 5, 11.0, k=3) == recent  # redelivery changes nothing
    recent = add_recent_rating(recent, "a", 2, 12.0, k=3)
    assert recent == [["b", 5.0, 11.0], ["a", 2.0, 12.0]]
    recent = add_recent_rating(recent, "c", 3, 13.0, k=3)
    recent = add_recent_rating(recent, "d", 3, 14.0, k=3)
    assert [e[0] for e in recent] == ["a", "c", "d"]


def test_rated_items_bounded_most_recent_last():
    rated = []
    for item in ["a", "b", "a", "c"]:
        rated = add_rated_item(rated, item, limit=2)
    assert rated == ["a", "c"]


def test_merge_takes_new_priority_drops_rated_and_keeps_k_best():
    previous = [["x", 9.0], ["y", 5.0], ["z", 1.0], ["hot", None]]
    merged = merge_lists(previous, {"y": 7.0, "w": 6.0}, k=3, exclude=["x"])
    assert merged == [["y", 7.0], ["w", 6.0], ["z", 1.0]]


def test_fallback_fills_short_lists_with_unrated_hot_items():
    filled = fill_with_fallback([["a", 3.0]], ["a", "h1", "rated", "h2", "h3"], k=3, exclude=["rated"])
    assert filled == [["a", 3.0], ["h1", None], ["h2", None]]


def test_base_score_is_the_weighted_average_part():
    recent = [["r1", 8.0, 1.0], ["p", 10.0, 2.0]]
    assert base_score("a", recent, SIM, 0.6) == pytest.approx((0.7 * 8 + 0.9 * 10) / 2)
    assert base_score("d", [["r2", 4.0, 1.0]], SIM, 0.6) is None


def _step(*, item, rating, ts, recent, rated, previous, hot_items=(), similarity=INDEX, **params):
    """One step of the paper ranker as ``(recent, rated, list, n_candidates)``."""
    step = PaperRanker(**params).step(History(recent, rated, previous), Interaction("u", item, rating, ts),
                                      Model(similarity, hot_items))
    return step.recent, step.rated, step.items, step.n_candidates


def test_whole_update_never_recommends_rated_items():
    recent, rated, new_list, n = _step(
        item="p", rating=10.0, ts=3.0, recent=[["r1", 8.0, 1.0]], rated=["r1", "a"], previous=[["a", 9.0]],
        hot_items=["p", "h"], k=4, m=5, theta=0.6, high_cut=6.0, rated_limit=10)
    assert rated == ["r1", "a", "p"]
    assert [e[0] for e in recent] == ["r1", "p"]
    items = [e[0] for e in new_list]
    assert not set(items) & set(rated)
    # candidates b, c, d (a, r1 rated); d is only 0.5-similar to p, so unscored.
    # b: only p (0.8, rated 10) counts -> 8.0; c: r1 at 0.55 is below theta, p 0.7 -> 7.0
    assert new_list == [["b", 8.0], ["c", 7.0], ["h", None]]  # "a" was rated: dropped from the old list
    assert n == 2


def test_merge_decay_fades_the_previous_list_and_defaults_to_the_paper():
    previous = [["x", 9.0], ["y", 5.0], ["z", 1.0], ["hot", None]]
    new = {"y": 7.0, "w": 6.0}
    # decay 1.0 is the paper: identical to the default.
    assert merge_lists(previous, new, k=4, decay=1.0) == merge_lists(previous, new, k=4)
    # decay 0.5: x (9 -> 4.5) falls below the new candidates; y takes its new score.
    assert merge_lists(previous, new, k=4, decay=0.5) == [["y", 7.0], ["w", 6.0], ["x", 4.5], ["z", 0.5]]
    # decay 0: old items only fill the slots the new candidates leave.
    assert merge_lists(previous, new, k=3, decay=0.0) == [["y", 7.0], ["w", 6.0], ["x", 0.0]]


def test_whole_update_passes_decay_through():
    kw = {"item": "p", "rating": 10.0, "ts": 3.0, "recent": [["r1", 8.0, 1.0]], "rated": ["r1"], "previous": [["zz", 9.0]],
          "hot_items": ["h"], "k": 4, "m": 5, "theta": 0.6, "high_cut": 6.0, "rated_limit": 10}
    paper = _step(**kw)
    assert _step(**kw, decay=1.0) == paper
    assert [e[0] for e in paper[2]] == ["zz", "b", "a", "c"]  # the paper keeps the old 9.0 on top
    faded = _step(**kw, decay=0.5)[2]
    assert [e[0] for e in faded] == ["b", "a", "c", "zz"] and faded[-1][1] == pytest.approx(4.5)


def test_fast_scoring_equals_the_pairwise_definition_on_random_models():
    import random

    rng = random.Random(7)
    items = [f"i{n}" for n in range(120)]
    model = {it: dict(sorted(((o, round(rng.random(), 4)) for o in rng.sample(items, 25) if o != it),
                             key=lambda kv: -kv[1])) for it in items}
    sim = pairwise_similarity(model)
    for _ in range(200):
        recent = [[it, rng.choice([2.0, 4.0, 6.0, 8.0, 10.0]), n] for n, it in enumerate(rng.sample(items, 8))]
        candidates = rng.sample(items, 10)
        want = {}
        for q in candidates:  # the formula, pair by pair
            hits = [(sim(q, it), r) for it, r, _ in recent if sim(q, it) > 0.6]
            if hits:
                n_in = sum(r >= 6.0 for _, r in hits)
                want[q] = (sum(s * r for s, r in hits) / len(hits) + math.log10(max(n_in, 1))
                           - math.log10(max(len(hits) - n_in, 1)))
        assert score_candidates(candidates, recent, SimilarityIndex(model), theta=0.6, high_cut=6.0) == pytest.approx(want)


def test_a_redelivered_or_stale_rating_changes_nothing():
    kw = {"k": 4, "m": 5, "theta": 0.6, "high_cut": 6.0, "rated_limit": 10, "decay": 0.5}
    recent, rated, first, n = _step(item="p", rating=10.0, ts=3.0, recent=[["r1", 8.0, 1.0]], rated=["r1"],
                                    previous=[["x", 9.0]], **kw)
    assert n > 0
    for replay in ({"rating": 10.0, "ts": 3.0}, {"rating": 2.0, "ts": 2.0}):  # redelivery, stale
        again = _step(item="p", recent=recent, rated=rated, previous=first, **replay, **kw)
        assert again == (recent, rated, first, 0)
    # Same time but another rating is a correction, not a replay: it is applied.
    corrected = _step(item="p", rating=2.0, ts=3.0, recent=recent, rated=rated, previous=first, **kw)
    assert corrected[0][-1] == ["p", 2.0, 3.0] and corrected[3] > 0


def test_a_rating_that_ties_on_time_is_the_most_recent_and_not_evicted():
    """Same-second ratings keep arrival order: the one that just arrived stays in the window
    (ordering ties by item id let "a" evict itself here)."""
    recent = [["x", 1.0, 5.0], ["y", 1.0, 5.0]]
    assert add_recent_rating(recent, "a", 4, 5.0, k=2) == [["y", 1.0, 5.0], ["a", 4.0, 5.0]]


def test_the_paper_ranker_comes_from_the_settings():
    from app.settings import Settings

    conf = Settings.from_env({"RECSYS_K": "7", "RECSYS_M": "9", "RECSYS_THETA": "0.5", "RECSYS_RATING_MIN": "2",
                              "RECSYS_RATING_MAX": "10", "RECSYS_RATED_ITEMS_MAX": "11", "RECSYS_DECAY": "0.25"})
    assert PaperRanker.from_settings(conf) == PaperRanker(k=7, m=9, theta=0.5, high_cut=6.0, rated_limit=11,
                                                          decay=0.25)
