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
    assert interaction_of(Rating(user="u", item="i", rating=3.0, ts=3.0, source="implicit:click",
                                 from_list=True)).from_list is True


def states_made_by_steps() -> list[UserState]:
    """States as the rankers leave them: new, a list with ``because``, a dislike, an
    explored slot, a list whose ``because`` names no recent item."""
    index = SimilarityIndex(related={**RELATED, "x": {"b": 0.3}})
    model = Model(index, version="v1")
    new, one, two = UserState(), UserState(), UserState()
    one.apply(3, DefaultRanker(), interaction_of(Rating(user="u", item="a", rating=5.0, ts=1.5)), model)
    two.apply(4, DefaultRanker(), interaction_of(Rating(user="u", item="a", rating=4.0, ts=1.0)), model)
    two.apply(5, DefaultRanker(), interaction_of(Rating(user="u", item="x", rating=1.0, ts=2.0,
                                                        source="implicit:dislike")), model)
    explored = UserState(recent=[["a", 5.0, 1.0]], rated=["a"], offset=9,
                         recs={"items": [["x", 0.9], ["y", 0.1]], "model_version": "v2", "ts": 1.0,
                               "because": {"x": "a", "y": "gone"}, "event": "view",
                               "explored": {"position": 1, "propensity": 0.01, "item": "y"}})
    odd = UserState(recent=[["a", 5.0, 1.0]], recs={"items": [["x", 0.9]], "model_version": "v2", "ts": 1.0,
                                                    "because": {"q": "a"}, "event": "rating"})
    return [new, one, two, explored, odd]


def test_a_stored_state_loads_as_it_was():
    for state in states_made_by_steps():
        assert UserState.from_bytes(state.to_bytes()) == state


def test_older_schemas_still_load_and_unknown_ones_are_refused():
    import msgpack
    import orjson
    import pytest

    for state in states_made_by_steps():  # schema 2: the JSON object
        assert UserState.from_bytes(orjson.dumps(state.to_value())) == state
    schema_1 = b'{"recent": [["a", 5.0, 1.0]], "rated": ["a"], "recs": {"items": [["x", 0.9]]}}'
    assert UserState.from_bytes(schema_1) == UserState(recent=[["a", 5.0, 1.0]], rated=["a"],
                                                       recs={"items": [["x", 0.9]]}, offset=None)
    assert UserState.from_bytes(b"") == UserState.from_bytes(None) == UserState()
    with pytest.raises(ValueError, match="schema 4"):
        UserState.from_bytes(msgpack.packb([4, [], [], None, None, None, None, None, None, None]))


def test_a_stored_state_is_smaller_than_the_json_object():
    import orjson

    ranker, index = DefaultRanker(), SimilarityIndex(related={f"i{n}": {f"i{m}": 0.5 for m in range(n + 1, n + 30)}
                                                              for n in range(100)})
    state = UserState()
    for t in range(30):
        state.apply(t, ranker, interaction_of(Rating(user="u", item=f"i{t * 3}", rating=4.0, ts=1.7e9 + t)),
                    Model(index, version="als-1733500000"))
    assert len(state.to_bytes()) < 0.8 * len(orjson.dumps(state.to_value()))


def test_forgetting_the_offsets_keeps_the_rest():
    import orjson

    from tables.definitions import forget_offsets

    for state in states_made_by_steps()[1:]:
        for raw in (state.to_bytes(), orjson.dumps(state.to_value())):
            forgot = UserState.from_bytes(forget_offsets(raw))
            assert forgot.offset is None and (forgot.recent, forgot.recs) == (state.recent, state.recs)


def test_because_is_stored_as_places_in_recent_where_it_can():
    """Each listed item's ``because`` is stored as the place of that recent item (the newest,
    if it is there twice; the name, if it is not there); a ``because`` naming an item that is
    not listed keeps the whole dict."""
    import msgpack

    stored = [msgpack.unpackb(state.to_bytes())[4] for state in states_made_by_steps()]
    new, one, two, explored, odd = stored
    assert new is None
    assert explored == [0, "gone"]
    assert odd == {"q": "a"}
    for state, got in ((states_made_by_steps()[1], one), (states_made_by_steps()[2], two)):
        names = [entry[0] for entry in state.recent]
        because = state.recs["because"]
        assert because and got == [None if q not in because else len(names) - 1 - names[::-1].index(because[q])
                                    for q, _s in state.recs["items"]]
    twice = UserState(recent=[["a", 5.0, 1.0], ["b", 4.0, 2.0], ["a", 3.0, 3.0]],
                      recs={"items": [["x", 0.9]], "because": {"x": "a"}, "model_version": "v", "ts": 3.0,
                            "event": "rating"})
    assert msgpack.unpackb(twice.to_bytes())[4] == [2]
    assert UserState.from_bytes(twice.to_bytes()) == twice
