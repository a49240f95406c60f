"""New items' content neighbours (ranking/content.py) and the default ranker reading them."""
from __future__ import annotations

import numpy as np
import pytest

from ranking import DefaultRanker, History, Interaction, Model, SimilarityIndex
from ranking.content import CatalogueText, ContentIndex, catalogue_text

TEXTS = {"a": "red wool hat", "b": "blue silk shoe", "c": "green cotton shirt",
         "x": "red wool scarf", "y": "blue silk dress", "z": "garden hose"}
COUNTS = {"a": 40, "b": 30, "c": 20, "x": 0, "y": 2}


def content(cold_min: int = 5) -> ContentIndex:
    return ContentIndex(CatalogueText(TEXTS), COUNTS, cold_min)


def cosine(text: CatalogueText, p: str, q: str) -> float:
    return float(text.vectors[text.row[p]].multiply(text.vectors[text.row[q]]).sum())


def test_an_item_with_fewer_interactions_than_the_minimum_is_cold():
    assert content(5).cold_items == ["x", "y", "z"]
    assert content(3).cold_items == ["x", "y", "z"]
    assert content(2).cold_items == ["x", "z"]
    assert content(0).cold_items == []


def test_an_item_the_catalogue_does_not_hold_yet_is_not_recalled():
    index = ContentIndex(CatalogueText(TEXTS), COUNTS, 5, listed={"a", "b", "c", "x"})
    assert index.cold_items == ["x"]
    assert content(5).recall([("b", 1.0)], exclude=(), n=5) == [("y", 1.0, "b")]
    assert index.recall([("b", 1.0)], exclude=(), n=5) == []  # y reads like b, but is not listed yet


def test_every_item_lists_its_nearest_cold_items_scaled_like_the_models_sources():
    index = content()
    text = index.text
    best = {p: max((cosine(text, p, q) for q in index.cold_items if q != p), default=0.0) for p in TEXTS}
    median = float(np.median([b for b in best.values() if b > 0]))
    for p in TEXTS:
        want = {q: cosine(text, p, q) / median for q in index.cold_items if q != p and cosine(text, p, q) > 0}
        cols, weights = index.lists.get(p, ((), ()))
        assert dict(zip([index.cold_items[c] for c in cols], weights, strict=True)) == pytest.approx(want)
        assert list(weights) == sorted(weights, reverse=True)
        assert p not in want  # never its own neighbour (x, y, z are cold themselves)


def test_the_cold_item_that_reads_like_the_history_is_recalled_with_why():
    index = content()
    [(item, score, why)] = index.recall([("a", 1.0)], exclude=(), n=5)
    assert (item, why) == ("x", "a") and score == pytest.approx(weight(index, "a", "x"))
    assert [q for q, _s, _w in index.recall([("b", 1.0)], exclude=(), n=5)] == ["y"]
    assert index.recall([("a", 1.0)], exclude={"x"}, n=5) == []  # what the user had is never recalled
    assert index.recall([("a", -1.0)], exclude=(), n=5) == []  # a dislike argues against it
    assert index.recall([("unknown", 1.0)], exclude=(), n=5) == []  # no text, nothing to compare


def weight(index: ContentIndex, p: str, q: str) -> float:
    cols, weights = index.lists.get(p, ((), ()))
    return dict(zip([index.cold_items[c] for c in cols], weights, strict=True)).get(q, 0.0)


def test_the_sum_is_decayed_like_the_knn_part_and_because_the_largest_part():
    index = content()
    history = [("b", 0.8), ("a", 1.0)]
    got = {q: (s, why) for q, s, why in index.recall(history, exclude=(), n=5)}
    for q in ("x", "y"):
        assert got[q][0] == pytest.approx(0.8 * weight(index, "b", q) + 1.0 * weight(index, "a", q))
    assert got["x"][1] == "a" and got["y"][1] == "b"
    assert [q for q, _s, _w in index.recall(history, exclude=(), n=1)] == [max(got, key=lambda q: got[q][0])]
    assert index.scores(history, ["y", "a", "x", "z"]) == {
        "y": pytest.approx(got["y"][0]), "x": pytest.approx(got["x"][0]), "z": 0.0}  # "a" is not cold


def test_a_catalogue_without_words_recalls_nothing():
    index = ContentIndex(CatalogueText({"a": "", "b": "  "}), {}, 5)
    assert index.recall([("a", 1.0)], exclude=(), n=5) == []
    assert ContentIndex(CatalogueText({}), {}, 5).recall([("a", 1.0)], exclude=(), n=5) == []


def test_the_words_of_an_items_message_are_its_text_fields_but_the_id():
    assert catalogue_text({"item": "i9", "name": "Wool hat", "category": "hats", "added": 5.0,
                           "description": "warm"}) == "Wool hat hats warm"


def model(with_content: bool) -> Model:
    related = {"a": {"b": 0.9, "c": 0.5}, "b": {"a": 0.9, "c": 0.4}, "c": {"a": 0.5, "b": 0.4}}
    return Model(SimilarityIndex(related=related, counts=COUNTS), content=content() if with_content else None)


def test_the_default_ranker_lists_a_new_item_that_reads_like_what_the_user_viewed():
    ranker = DefaultRanker(k=5)
    step = ranker.step(History(), Interaction("u", "a", 5.0, 100.0), model(with_content=True))
    listed = dict(map(tuple, step.items))
    assert "x" in listed and step.because["x"] == "a"
    index = model(True).index
    assert "x" not in index.prior  # no interactions: its score is its content part alone
    top_knn = 0.9  # a's largest co-occurrence weight, b's (c: 0.5)
    assert listed["x"] == pytest.approx(weight(content(), "a", "x") / top_knn, abs=1e-6)
    without = ranker.step(History(), Interaction("u", "a", 5.0, 100.0), model(with_content=False))
    assert "x" not in dict(map(tuple, without.items))
    assert step.n_candidates == without.n_candidates + 1  # x: y and z read like nothing the user had


def test_rerank_gives_a_new_item_the_score_it_has_in_the_list():
    ranker, m = DefaultRanker(k=5), model(with_content=True)
    step = ranker.step(History(), Interaction("u", "a", 5.0, 100.0), m)
    state = History(step.recent, step.rated, step.items)
    order = ranker.rerank(state, ["z", "x", "b", "nowhere"], m)
    out = dict(map(tuple, order))
    assert out["x"] == dict(map(tuple, step.items))["x"]
    assert out["z"] == 0.0  # in the catalogue, reads like nothing the user had
    assert order[-1] == ["nowhere", None]
