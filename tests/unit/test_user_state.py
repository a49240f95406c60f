"""Applying a ranker's step to a user's state (tables/state.py): once per offset."""
from __future__ import annotations

from agents.lists import interaction_of, recommendation_for
from app.records import Rating, wire_list
from ranking import DefaultRanker, Model, SimilarityIndex
from tables.state import UserState

RELATED = {"a": {"x": 0.9, "y": 0.5}, "b": {"y": 0.6, "z": 0.2}}


def test_apply_updates_the_state_once_per_offset():
    ranker, index = DefaultRanker(), SimilarityIndex(related=RELATED)
    state = UserState()
    changed, step = state.apply(7, ranker, interaction_of(Rating(user="u", item="a", rating=5.0, ts=1.0)),
                                Model(index, version="v1"))
    assert (changed, state.offset) == (True, 7) and step.n_candidates == 2
    assert [q for q, _ in state.last_list] == ["x", "y"] and state.recs["model_version"] == "v1"
    assert state.recs["because"] == {"x": "a", "y": "a"} and state.recs["ts"] == 1.0
    assert (state.recent, state.rated) == (step.recent, step.rated) == ([["a", 5.0, 1.0]], ["a"])
    before = state.to_value()
    # the same offset again (a redelivery), even with a newer model and another rating: nothing changes
    changed, step = state.apply(7, ranker, interaction_of(Rating(user="u", item="b", rating=5.0, ts=2.0)),
                                Model(index, version="v2"))
    assert changed is False and step.n_candidates == 0 and step.items == before["recs"]["items"]
    assert state.to_value() == before
    disliked = Rating(user="u", item="b", rating=1.0, ts=2.0, source="implicit:dislike")
    state.apply(8, ranker, interaction_of(disliked), Model(index, version="v2"))
    assert state.recent[-1][:2] == ["b", -1.0] and "b" not in dict(state.last_list)
    rec = recommendation_for(disliked, state.recs, "default", "v2", produced_at=0.0, worker_ms=1.0)
    assert rec.items == wire_list(state.last_list) and rec.model_version == "v2" and rec.reason == "implicit:dislike"


def test_a_rating_is_an_interaction_and_a_dislike_says_so():
    assert interaction_of(Rating(user="u", item="i", rating=4.0, ts=3.0)).dislike is False
    assert interaction_of(Rating(user="u", item="i", rating=1.0, ts=3.0, source="implicit:dislike")).dislike is True
