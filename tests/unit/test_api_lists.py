"""Lists on the wire (app/records.py) and the query API's filters (api/lists.py)."""
from __future__ import annotations

import pytest

from api.lists import filter_list, filtered_entry, list_filters
from app.records import wire_list


def test_wire_lists_round_scores_and_filters_cut_and_exclude():
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


def test_because_only_for_the_items_answered():
    entry = {"items": [["a", 0.9], ["b", 0.8], ["c", 0.7]], "because": {"a": "x", "b": "y", "c": "z"},
             "model_version": "m1"}
    out = filtered_entry(entry, n=2, exclude={"a"})
    assert out["items"] == [["b", 0.8], ["c", 0.7]] and out["because"] == {"b": "y", "c": "z"}
    assert filtered_entry(entry, n=1)["because"] == {"a": "x"} and out["model_version"] == "m1"
    assert filtered_entry({"items": [["a", 1.0]]})["because"] == {}
    stored = {**entry, "ts": 5.0, "event": "view", "explored": {"item": "b", "position": 1, "propensity": 0.1}}
    assert set(filtered_entry(stored)) == {"items", "because", "model_version", "ts", "explored"}  # the README's shape


def test_metrics_content_negotiation():
    from app.metrics import prefers_json

    assert prefers_json("application/json") and prefers_json("application/json, text/plain;q=0.5")
    assert not prefers_json("") and not prefers_json("*/*") and not prefers_json("text/plain")
    assert not prefers_json("application/json;q=0.4, text/plain") and not prefers_json("application/openmetrics-text")
    from app.metrics import wants_json

    assert wants_json("/metrics/json/", "") and wants_json("/metrics/json", "text/plain")
    assert wants_json("/metrics", "application/json") and not wants_json("/metrics/", "*/*")
