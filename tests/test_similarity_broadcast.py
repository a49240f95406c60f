"""The similarity reader's message handling (no broker): last value wins, tombstones,
markers on every partition, and malformed messages never raise."""
from tables.definitions import SimilarityBroadcast


def reader(partitions=2):
    b = SimilarityBroadcast()
    b.partitions = partitions
    return b


def test_last_value_wins_tombstones_remove_and_lists_are_sorted():
    b = reader()
    b.apply(b"i1", b'{"neighbours": {"a": 0.5, "b": 0.9}}', 0)
    assert list(b.index.neighbours["i1"].items()) == [("b", 0.9), ("a", 0.5)]  # best first
    b.apply(b"i1", b'{"neighbours": {"c": 0.7}}', 0)
    assert b.index.neighbours["i1"] == {"c": 0.7}
    b.apply(b"i1", None, 0)
    assert "i1" not in b.index.neighbours


def test_a_model_lands_when_its_marker_arrived_on_every_partition():
    b = reader(partitions=2)
    b.apply(b"__model__", b'{"version": "v1", "items": 3}', 0)
    assert b.marker == {}  # partition 1 may still hold unread items of v1
    b.apply(b"__model__", b'{"version": "v1", "items": 3}', 1)
    assert b.marker["version"] == "v1"
    b.apply(b"__model__", b'{"version": "v2", "items": 4}', 1)
    assert b.marker["version"] == "v1"  # v2 is not complete yet
    b.apply(b"__model__", b'{"version": "v2", "items": 4}', 0)
    assert b.marker["version"] == "v2"


def test_malformed_messages_are_counted_and_skipped():
    b = reader()
    b.apply(b"i1", b'{"neighbours": {"a": 0.8}}', 0)
    bad = [(None, b"{}"), (b"i1", b"{oops"), (b"i1", b"[1, 2]"), (b"i1", b'{"neighbours": {"a": null}}'),
           (b"i1", b'{"neighbours": {"a": "high"}}'), (b"i1", b'{"neighbours": [["a", 0.9]]}'),
           (b"__model__", b"7"), (b"\xff", b"{}")]
    for key, value in bad:
        b.apply(key, value, 0)
    assert b.rejected == len(bad)
    assert b.index.neighbours == {"i1": {"a": 0.8}} and b.marker == {}  # the previous state stands
    b.apply(b"i2", b'{"neighbours": {"a": NaN, "b": 0.7}}', 0)
    assert b.index.neighbours["i2"] == {"b": 0.7}  # non-finite scores are dropped


def test_published_order_is_the_order_every_reader_uses():
    import json

    import numpy as np

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
