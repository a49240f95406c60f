"""The default ranker in the worker: every list (from ratings and from behaviour events)
equals an independent implementation of its formula over the published model, says
``because`` and its variant; with ``RECSYS_AB`` each user gets the arm the page computes."""
from __future__ import annotations

import json
import math
import time
import urllib.error

import pytest

from offline_als.publish import publish_similarity
from ranking.ab import assign_variant
from ranking.content import CatalogueText, ContentIndex
from tests.brokers import produce, run
from tests.helpers import MODEL, lists_for, rating_message

pytestmark = pytest.mark.broker
RANKER = "default"  # conftest.stream_env: the worker runs the default ranker

#: Co-occurrence lists and training counts, as the ALS worker publishes them beside MODEL.
RELATED = {"i0": {"i1": 0.6, "i5": 0.4, "i9": 0.2}, "i1": {"i0": 0.6, "i2": 0.5}, "i2": {"i1": 0.5, "i5": 0.3},
           "i5": {"i0": 0.4, "i2": 0.3, "i8": 0.7}, "i8": {"i5": 0.7, "i9": 0.6}, "i9": {"i8": 0.6, "i0": 0.2}}
COUNTS = {"i0": 9, "i1": 4, "i2": 3, "i5": 2, "i8": 7, "i9": 1, "i11": 12}
HISTORY, DECAY, W_POP, N_POP, K = 20, 0.8, 0.5, 50, 20


def expected_default(interactions, lists=RELATED, history=HISTORY, decay=DECAY, w_pop=W_POP):
    """The default formula (ranking/default.py's docstring), written out on its own.
    ``interactions``: (item, weight, ts) with distinct items, in time order; a weight of
    ``"dislike"`` counts -1; ``lists``: the sources as the blend weighs them."""
    out, had = [], []
    for n, (item, _w, _ts) in enumerate(interactions):
        had.append(item)
        newest = [(i, w) for i, w, _ in interactions[: n + 1]][-history:]
        knn, best = {}, {}
        for j, (r, w) in enumerate(newest):  # oldest first; the newest weighs 1
            weight = decay ** (len(newest) - 1 - j) * (-1 if w == "dislike" else 1)
            for q, s in lists.get(r, {}).items():
                if q in had:
                    continue
                knn[q] = knn.get(q, 0.0) + weight * s
                if weight * s > best.get(q, (0.0, None))[0]:
                    best[q] = (weight * s, r)
        top = max(max(knn.values(), default=0.0), 0.0) or 1.0
        scores = {q: v / top for q, v in knn.items()}
        for q in sorted((q for q in COUNTS if q not in had), key=lambda q: (-COUNTS[q], q))[:N_POP]:
            scores.setdefault(q, 0.0)
        scores = {q: s + w_pop * math.log1p(COUNTS.get(q, 0)) / math.log1p(max(COUNTS.values()))
                  for q, s in scores.items()}
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:K]
        out.append((ranked, {q: best[q][1] for q, _ in ranked if q in best}))
    return out


def start(stream_env, name="w1"):
    worker = stream_env.start_worker(name)
    run(publish_similarity(MODEL, "v-default", conf=stream_env.conf, related=RELATED, counts=COUNTS))
    worker.wait_ready(model_version="v-default")
    return worker


def test_every_list_is_the_default_formula_with_its_reasons(stream_env):
    conf = stream_env.conf
    start(stream_env)
    ratings = [("i0", 5, 1.0), ("i5", 2, 2.0), ("i2", 4, 3.0)]
    views = [("i8", "view", 4.0), ("i1", "purchase", 5.0)]  # behaviour events: lists too
    run(produce(conf, conf.topics.ratings, [rating_message("gina", *r) for r in ratings]))
    lists = lists_for(conf, "gina", len(ratings))
    run(produce(conf, conf.topics.events, [(b"gina", json.dumps({"user": "gina", "item": i, "event": e, "ts": t})
                                           .encode()) for i, e, t in views]))
    lists = lists_for(conf, "gina", len(ratings) + len(views))
    weights = conf.event_weight_map()
    want = expected_default(ratings + [(i, weights[e], t) for i, e, t in views])
    assert [rec["reason"] for rec in lists] == ["rating"] * 3 + ["implicit:view", "implicit:purchase"]
    for rec, (ranked, because) in zip(lists, want, strict=False):
        assert [q for q, _ in rec["items"]] == [q for q, _ in ranked]
        assert [s for _, s in rec["items"]] == pytest.approx([s for _, s in ranked], abs=5e-5)
        assert rec["because"] == because and rec["variant"] == "default" and rec["model_version"] == "v-default"
    assert "i11" in [q for q, _ in lists[0]["items"]] and "i11" not in lists[0]["because"]  # the prior's item


def test_the_published_blend_weighs_the_named_sources(stream_env):
    """A model with a sequential source and a blend chosen for it: the worker ranks with
    the blend's weights, decay, history and prior, and says which blend serves."""
    conf = stream_env.conf
    sequential = {"i0": {"i2": 1.0, "i8": 0.5}, "i2": {"i9": 1.0}, "i5": {"i1": 0.8}}
    blend = {"related": 0.5, "sequential": 2.0, "learned": 0.0, "decay": 0.6, "history": 2, "w_pop": 0.2,
             "hr_at_10": 0.25, "ndcg_at_10": 0.125, "validation_events": 400}
    worker = stream_env.start_worker("w1")
    run(publish_similarity(MODEL, "v-blend", conf=conf, related=RELATED, counts=COUNTS,
                           sources={"sequential": sequential}, blend=blend))
    worker.wait_ready(model_version="v-blend")
    ratings = [("i0", 5, 1.0), ("i5", 4, 2.0), ("i2", 4, 3.0)]
    run(produce(conf, conf.topics.ratings, [rating_message("hal", *r) for r in ratings]))
    lists = lists_for(conf, "hal", len(ratings))
    blended = {}  # 0.5 x related + 2 x sequential
    for item in set(RELATED) | set(sequential):
        total = {}
        for weight, source in ((0.5, RELATED), (2.0, sequential)):
            for q, s in source.get(item, {}).items():
                total[q] = total.get(q, 0.0) + weight * s
        blended[item] = total
    want = expected_default(ratings, lists=blended, history=2, decay=0.6, w_pop=0.2)
    for rec, (ranked, because) in zip(lists, want, strict=True):
        assert [q for q, _ in rec["items"]] == [q for q, _ in ranked]
        assert [s for _, s in rec["items"]] == pytest.approx([s for _, s in ranked], abs=5e-5)
        assert rec["because"] == because
    health = worker.health()
    assert health["model_blend"]["name"] == "related=0.5 sequential=2 learned=0 decay=0.6 history=2 w_pop=0.2"
    assert health["model_blend"]["ndcg_at_10"] == 0.125 and health["model_blend"]["validation_events"] == 400


def test_ab_arms_put_each_user_on_the_variant_the_page_computes(stream_env):
    stream_env.set(RECSYS_AB="default:1,paper:1")
    conf = stream_env.conf
    start(stream_env)
    users = [f"ab{n}" for n in range(8)]
    run(produce(conf, conf.topics.ratings, [rating_message(u, "i0", 5, 1.0) for u in users]))
    arms = [("default", 1), ("paper", 1)]
    for user in users:
        [rec] = lists_for(conf, user, 1)
        assert rec["variant"] == assign_variant(user, arms)
        if rec["variant"] == "paper":  # the paper's list: MODEL's neighbours above theta, no reasons
            assert rec["because"] == {} and [q for q, _ in rec["items"]][:2] == ["i1", "i2"]
        else:
            assert rec["because"]["i1"] == "i0"
    assert {lists_for(conf, u, 1)[0]["variant"] for u in users} == {"default", "paper"}


def test_not_interested_removes_the_item_for_good_and_pushes_its_neighbours_down(stream_env):
    conf = stream_env.conf
    worker = start(stream_env)
    run(produce(conf, conf.topics.ratings, [rating_message("hal", "i0", 5, 1.0)]))
    [first] = lists_for(conf, "hal", 1)
    assert "i5" in [q for q, _ in first["items"]]
    status, _ = worker.post("/collect/", b'{"user": "hal", "item": "i5", "event": "dislike", "ts": 2}')
    assert status == 202
    lists_for(conf, "hal", 2)  # the dislike travels events -> behaviour agent -> ratings: wait for it
    run(produce(conf, conf.topics.ratings, [rating_message("hal", "i8", 4, 3.0)]))
    lists = lists_for(conf, "hal", 3)
    want = expected_default([("i0", 5, 1.0), ("i5", "dislike", 2.0), ("i8", 4, 3.0)])
    assert [rec["reason"] for rec in lists] == ["rating", "implicit:dislike", "rating"]
    for rec, (ranked, because) in zip(lists[1:], want[1:], strict=False):
        assert "i5" not in [q for q, _ in rec["items"]]
        assert [q for q, _ in rec["items"]] == [q for q, _ in ranked] and rec["because"] == because
    # i2 and i8 are linked to hal's items only through the dislike: below every prior-only item
    assert set([q for q, _ in lists[1]["items"]][-2:]) == {"i2", "i8"}


def test_list_filters_both_slashes_and_health(stream_env):
    conf = stream_env.conf
    worker = start(stream_env)
    cats = {"i1": "shoes", "i5": "hats", "i9": "shoes", "i11": "hats"}
    run(produce(conf, conf.topics.items, [(i.encode(), json.dumps({"item": i, "name": i.upper(), "category": c})
                                          .encode()) for i, c in cats.items()]))
    status, body = worker.post("/collect", b'{"user": "ivy", "item": "i0", "rating": 5}')  # no slash, no ts
    assert (status, body["accepted"]) == (202, True)
    [rec] = lists_for(conf, "ivy", 1)
    assert rec["trigger_ts"] > 1e9  # the worker stamped the receive time
    full = worker.get("/recommendations/ivy/")["items"]
    assert all(s is None or round(s, 4) == s for _, s in full)  # 4 decimals on the wire
    assert worker.get("/recommendations/ivy?n=2")["items"] == full[:2]
    assert worker.get("/recommendations/ivy/?exclude=" + full[0][0])["items"] == full[1:]
    deadline = time.monotonic() + 30
    while True:  # the worker's catalogue reader tails the items topic
        shoes = worker.get("/recommendations/ivy/?category=shoes")["items"]
        if shoes:
            break
        assert time.monotonic() < deadline, "no category arrived"
        time.sleep(0.5)
    assert shoes == [e for e in full if cats.get(e[0]) == "shoes"] and len(shoes) == 2
    with pytest.raises(urllib.error.HTTPError) as bad:
        worker.get("/recommendations/ivy/?n=x")
    assert bad.value.code == 400
    assert worker.get("/health")["ready"] is True and worker.get("/health/live")["status"] == "alive"


def test_without_behaviour_events_the_fallback_is_the_models_popular_items(stream_env):
    """Ratings only (no event in the hot-items window): an unknown user and /items/hot/
    get the model's most counted items, never an empty list."""
    worker = start(stream_env)
    popular = sorted(COUNTS, key=lambda q: (-COUNTS[q], q))
    hot = worker.get("/items/hot/")
    assert (hot["items"][:3], hot["source"]) == (popular[:3], "popular")
    answer = worker.get("/recommendations/stranger/")
    assert answer["source"] == "popular" and [q for q, _ in answer["items"]] == popular


def test_a_new_item_reaches_a_shopper_who_viewed_one_that_reads_like_it(stream_env):
    """An item on ``items`` with no interactions (and one with fewer than
    RECSYS_COLD_ITEM_MIN) is listed, with its content score and ``because``, for a shopper
    whose recent item's words it shares; one whose items read otherwise does not get it."""
    conf = stream_env.conf
    worker = start(stream_env)
    words = {"i0": ("Red wool hat", "hats"), "i8": ("Hose", "garden"), "i9": ("Shovel", "garden"),
             "n1": ("Red wool scarf", "hats")}
    run(produce(conf, conf.topics.items, [(q.encode(), json.dumps({"item": q, "name": n, "category": c}).encode())
                                          for q, (n, c) in words.items()]))
    deadline = time.monotonic() + 30
    while worker.get("/health/")["cold_items"] < 2:  # n1 (never had) and i9 (1 < 5 interactions)
        assert time.monotonic() < deadline, "the catalogue's words never reached the worker"
        time.sleep(0.3)
    texts = {q: f"{n} {c}" for q, (n, c) in words.items()}
    expected = ContentIndex(CatalogueText(texts), COUNTS, 5).recall([("i0", 1.0)], exclude={"i0"}, n=K)
    assert [q for q, _s, _w in expected] == ["n1"]
    run(produce(conf, conf.topics.ratings, [rating_message("nia", "i0", 5, 1.0), rating_message("otto", "i8", 5, 1.0)]))
    [nia] = lists_for(conf, "nia", 1)
    [otto] = lists_for(conf, "otto", 1)
    listed = dict(map(tuple, nia["items"]))
    top_knn = max(RELATED["i0"].values())  # the content part is on the kNN part's scale
    assert listed["n1"] == pytest.approx(expected[0][1] / top_knn, abs=5e-5) and nia["because"]["n1"] == "i0"
    assert "n1" not in dict(map(tuple, otto["items"])) and otto["because"].get("i9") == "i8"  # a garden tool
