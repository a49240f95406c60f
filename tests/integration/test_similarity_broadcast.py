"""The similarity reader's message handling (no broker): last value wins, tombstones,
markers on every partition, and malformed messages never raise."""
import json

import numpy as np

from tables.broadcast import SimilarityBroadcast


def reader(partitions=2):
    b = SimilarityBroadcast()
    b.partitions = partitions
    return b


def item(name, neighbours, version="v1"):
    return name.encode(), json.dumps({"item": name, "neighbours": neighbours, "version": version}).encode()


def marker(version, items):
    return b"__model__", json.dumps({"version": version, "items": items}).encode()


def test_last_value_wins_tombstones_remove_and_lists_are_sorted():
    b = reader(partitions=1)
    b.apply(*item("i1", {"a": 0.5, "b": 0.9}), 0)
    b.apply(*item("i2", {"a": 0.1}), 0)
    b.apply(*item("i1", {"c": 0.7}), 0)  # the last value of a key wins
    b.apply(b"i2", None, 0)  # a tombstone drops what was staged
    b.apply(*marker("v1", 1), 0)
    assert b.marker["version"] == "v1" and b.index.neighbours == {"i1": {"c": 0.7}}
    b.apply(*item("i1", {"a": 0.5, "b": 0.9}, "v2"), 0)
    b.apply(*marker("v2", 1), 0)
    assert list(b.index.neighbours["i1"].items()) == [("b", 0.9), ("a", 0.5)]  # best first


def test_a_model_lands_when_its_marker_arrived_on_every_partition():
    b = reader(partitions=2)
    for name in ("x", "y", "z"):
        b.apply(*item(name, {"x": 0.9}), 0)
    b.apply(*marker("v1", 3), 0)
    assert b.marker == {}  # partition 1 may still hold unread items of v1
    b.apply(*marker("v1", 3), 1)
    assert b.marker["version"] == "v1"
    for name in ("x", "y", "z", "w"):
        b.apply(*item(name, {"x": 0.5}, "v2"), 1)
    b.apply(*marker("v2", 4), 1)
    assert b.marker["version"] == "v1"  # v2 is not complete yet
    b.apply(*marker("v2", 4), 0)
    assert b.marker["version"] == "v2" and len(b.index) == 4


def test_a_publish_that_died_half_way_never_reaches_the_index():
    """kill -9 of the ALS worker while it publishes: half of v2's items, no marker. The
    worker keeps scoring with all of v1 (old items were overwritten one by one before)."""
    b = reader(partitions=1)
    v1 = {f"i{n}": {"i0": 0.9} for n in range(10)}
    for name, neigh in v1.items():
        b.apply(*item(name, neigh, "v1"), 0)
    b.apply(*marker("v1", 10), 0)
    for n in range(5):  # the crashed publish of v2
        b.apply(*item(f"i{n}", {"i9": 0.1}, "v2"), 0)
    assert b.marker["version"] == "v1" and b.index.neighbours == v1
    b.apply(*marker("v2", 10), 0)  # a marker whose items are not all there (compacted away, say)
    assert b.marker["version"] == "v1" and b.index.neighbours == v1 and b.incomplete == 1
    for n in range(10):  # the restarted ALS worker publishes a complete v3
        b.apply(*item(f"i{n}", {"i5": 0.3}, "v3"), 0)
    b.apply(*marker("v3", 10), 0)
    assert b.marker["version"] == "v3" and all(n == {"i5": 0.3} for n in b.index.neighbours.values())


def test_malformed_messages_are_counted_and_skipped():
    b = reader(partitions=1)
    b.apply(*item("i1", {"a": 0.8}), 0)
    b.apply(*marker("v1", 1), 0)
    bad = [(None, b"{}"), (b"i1", b"{oops"), (b"i1", b"[1, 2]"), (b"i1", b'{"neighbours": {"a": null}}'),
           (b"i1", b'{"neighbours": {"a": "high"}}'), (b"i1", b'{"neighbours": [["a", 0.9]]}'),
           (b"__model__", b"7"), (b"\xff", b"{}")]
    for key, value in bad:
        b.apply(key, value, 0)
    assert b.rejected == len(bad)
    assert b.index.neighbours == {"i1": {"a": 0.8}} and b.marker["version"] == "v1"  # the model stands
    b.apply(b"i2", b'{"version": "v2", "neighbours": {"a": NaN, "b": 0.7}}', 0)
    b.apply(*marker("v2", 1), 0)
    assert b.index.neighbours["i2"] == {"b": 0.7}  # non-finite scores are dropped


def test_published_order_is_the_order_every_reader_uses():
    import json

    from offline_als.publish import neighbour_lists, similarity_messages

    ids = ["i0", "b", "a", "c"]
    # Scores that tie once rounded to 4 decimals, listed in index order (b before a).
    indices = np.array([[1, 2, 3], [0, 2, -1], [0, 1, -1], [0, 1, 2]])
    scores = np.array([[0.90001, 0.90004, 0.5], [0.7, 0.6, np.nan], [0.7, 0.6, np.nan], [0.3, 0.2, 0.1]])
    lists = neighbour_lists(indices, scores, ids)
    assert list(lists["i0"]) == ["a", "b", "c"]  # tie at 0.9 broken by id
    b = reader(partitions=1)
    for key, value in similarity_messages(lists, "v", 0.0):
        b.apply(key, value, 0)
    assert {item: list(n) for item, n in b.index.neighbours.items()} == {item: list(n) for item, n in lists.items()}
    assert json.loads(similarity_messages(lists, "v", 0.0)[-1][1])["items"] == 4


def test_a_model_lands_with_its_named_sources_and_its_blend():
    from offline_als.publish import similarity_messages
    from ranking import Blend

    blend = {"related": 0.0, "sequential": 1.0, "learned": 2.0, "decay": 0.6, "history": 10, "w_pop": 0.2,
             "name": "whatever the publisher calls it", "runner_up": {"hr_at_10": 0.1}}
    messages = similarity_messages({"a": {"b": 0.9}, "b": {"a": 0.9}}, "v", 0.0, related={"a": {"b": 0.5}},
                                   sources={"sequential": {"a": {"b": 1.0, "c": 0.5}}, "learned": {"a": {"c": 2.0}}},
                                   blend=blend, recent={"a": [1.0, 2.0, 3.0], "b": [0.5, "x", 1.0]},
                                   recent_ts=1234.5, counts={"a": 3, "b": 2})
    b = reader(partitions=1)
    for key, value in messages:
        b.apply(key, value, 0)
    assert b.index.source_names == ("related", "learned", "sequential")
    assert b.index.blend == Blend(related=0.0, sequential=1.0, learned=2.0, decay=0.6, history=10, w_pop=0.2)
    # what the default ranker walks: 1 x sequential + 2 x learned, best first
    assert list(b.index.blended("a").items()) == [("c", 4.5), ("b", 1.0)]
    # the recent popularity the learned ranker reads; b's is malformed: none
    assert b.index.recent_at[b.index.position["a"]].tolist() == [1.0, 2.0, 3.0] and b.index.recent_ts == 1234.5
    assert b.index.recent_at[b.index.position["b"]].tolist() == [0.0, 0.0, 0.0]


def test_a_malformed_blend_serves_the_model_with_the_default_blend():
    from ranking import Blend

    b = reader(partitions=1)
    b.apply(*item("a", {"b": 0.9}), 0)
    b.apply(b"__model__", json.dumps({"version": "v1", "items": 1, "blend": {"decay": "fast"}}).encode(), 0)
    assert b.marker["version"] == "v1" and b.index.blend == Blend()
