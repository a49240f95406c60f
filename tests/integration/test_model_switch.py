"""A model publish that dies half-way (kill -9 of the ALS worker) never reaches the lists:
every list is scored with one complete model version, and names that version."""
from __future__ import annotations

import pytest

from offline_als.publish import publish_similarity, similarity_messages
from tests.brokers import produce, run
from tests.helpers import (
    MODEL,
    assert_same_list,
    lists_for,
    rating_message,
    start_worker_with_model,
)

pytestmark = pytest.mark.broker

#: A second model with other neighbours for every item (so lists tell the models apart).
OTHER = {item: {n: round(s * 0.99, 4) for n, s in reversed(list(dict(neigh).items()))} for item, neigh in
         MODEL.items()}


def scored_with(neighbours, ratings):
    """The list the paper's formula gives on ``neighbours`` (in-process, no hot items)."""
    from ranking import History, Interaction, Model, PaperRanker, SimilarityIndex

    state, ranker = History(), PaperRanker(k=20, m=20, theta=0.6, high_cut=3.0, rated_limit=1000)
    model = Model(SimilarityIndex({i: dict(n) for i, n in neighbours.items()}))
    for item, rating, ts in ratings:
        step = ranker.step(state, Interaction("fred", item, rating, ts), model)
        state = History(step.recent, step.rated, step.items)
    return state.last_list


def test_a_half_published_model_is_never_scored_with(stream_env):
    conf = stream_env.conf
    worker = start_worker_with_model(stream_env, version="v1")
    # What a killed publisher leaves behind: half of v2's items, no marker.
    messages = similarity_messages(OTHER, "v2", 0.0)[:-1]
    run(produce(conf, conf.topics.similarity, messages[: len(messages) // 2]))
    ratings = [("i0", 5, 1.0), ("i6", 2, 2.0), ("i3", 4, 3.0)]
    run(produce(conf, conf.topics.ratings, [rating_message("fred", *r) for r in ratings]))
    lists = lists_for(conf, "fred", len(ratings))
    assert [rec["model_version"] for rec in lists] == ["v1"] * len(ratings)
    for n, rec in enumerate(lists, start=1):
        assert_same_list(rec["items"], scored_with(MODEL, ratings[:n]))
    health = worker.get("/health/")
    assert health["model_version"] == "v1" and health["model_items"] == len(MODEL)

    # The restarted ALS worker publishes a complete v3: lists switch to it, and say so.
    run(publish_similarity(OTHER, "v3", conf=conf))
    worker.wait_ready(model_version="v3")
    more = ratings + [("i10", 5, 4.0)]
    run(produce(conf, conf.topics.ratings, [rating_message("fred", *more[-1])]))
    last = lists_for(conf, "fred", len(more))[-1]
    assert last["model_version"] == "v3"
    # v3 scores the newest rating on top of the state built with v1 (the previous list is kept).
    from ranking import History, Interaction, Model, PaperRanker, SimilarityIndex

    state, ranker = History(), PaperRanker(k=20, m=20, theta=0.6, high_cut=3.0, rated_limit=1000)
    for n, (item, rating, ts) in enumerate(more):
        model = Model(SimilarityIndex({i: dict(nb) for i, nb in (MODEL if n < len(ratings) else OTHER).items()}))
        step = ranker.step(state, Interaction("fred", item, rating, ts), model)
        state = History(step.recent, step.rated, step.items)
    assert_same_list(last["items"], state.last_list)
