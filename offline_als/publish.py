"""Publishing a model's item neighbours to the compacted ``item-similarity`` topic.

One message per item (key: item id; value: neighbours with scores, model version,
trained-at time), tombstones for items that left the model, then the ``__model__``
marker on every partition, so a reader that has seen it on all partitions knows the
whole model has landed. Every
worker reads this topic in full (``tables.definitions.SimilarityBroadcast``).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from app.records import MODEL_MARKER_KEY
from broker.clients import KafkaClients


def neighbour_lists(indices: np.ndarray, scores: np.ndarray, item_ids: Sequence[str],
                    decimals: int = 4) -> dict[str, dict[str, float]]:
    """``{item: {neighbour: score, ...}}`` (best first) from
    :func:`offline_als.similarity.top_similar` output (rows padded with index -1 where
    an item has fewer neighbours)."""
    result: dict[str, dict[str, float]] = {}
    for row, item in enumerate(item_ids):
        keep = indices[row] >= 0
        pairs = [(item_ids[j], round(float(s), decimals)) for j, s in zip(indices[row][keep], scores[row][keep], strict=False)]
        # Best first, ties (common after rounding) by id: the order every reader uses
        # (tables.definitions.SimilarityBroadcast sorts the same way), so the top-M
        # candidates are the same offline and in the stream.
        result[item] = dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))
    return result


def similarity_messages(neighbours: Mapping[str, list], version: str, trained_at: float,
                        removed: Iterable[str] = (), related: Mapping[str, Mapping] | None = None,
                        counts: Mapping[str, int] | None = None, sources: Mapping[str, Mapping] | None = None,
                        blend: Mapping | None = None, recent: Mapping[str, list] | None = None,
                        recent_ts: float = 0.0) -> list[tuple[bytes, bytes | None]]:
    """The (key, value) messages of one model, marker last (sent once per partition).

    Each item's message holds its factor neighbours (the paper's sim) and, when given,
    its co-occurrence neighbours (``related``), its other named lists (``sources``:
    ``{"sequential": {...}, "learned": {...}}``) and training interactions (``count``):
    what the default ranker reads (``ranking/default.py``); and its recent popularity
    (``recent``: one value per ``ranking.model.RECENT_HALF_LIVES``, the learned ranker's, at the
    event time ``recent_ts``, which the marker carries). The marker carries the
    ``blend`` the default ranker weighs them with, and how it was chosen.
    """
    related, counts, sources, recent = related or {}, counts or {}, sources or {}, recent or {}

    def value(item, neigh) -> bytes:
        data = {"item": item, "neighbours": dict(neigh), "version": version, "trained_at": trained_at}
        if item in related:
            data["related"] = dict(related[item])
        named = {name: dict(lists[item]) for name, lists in sources.items() if lists.get(item)}
        if named:
            data["sources"] = named
        if item in counts:
            data["count"] = int(counts[item])
        if item in recent:
            data["recent"] = list(recent[item])
        return json.dumps(data, separators=(",", ":")).encode()

    messages: list[tuple[bytes, bytes | None]] = [(item.encode(), value(item, neigh))
                                                  for item, neigh in neighbours.items()]
    messages.extend((item.encode(), None) for item in removed if item not in neighbours)
    marker = {"version": version, "items": len(neighbours), "trained_at": trained_at}
    if blend:
        marker["blend"] = dict(blend)
    if recent:
        marker["recent_ts"] = float(recent_ts)
    messages.append((MODEL_MARKER_KEY.encode(), json.dumps(marker).encode()))
    return messages


async def publish_similarity(neighbours: Mapping[str, list], version: str, *, conf,
                             removed: Iterable[str] = (), trained_at: float | None = None,
                             related: Mapping[str, Mapping] | None = None,
                             counts: Mapping[str, int] | None = None, sources: Mapping[str, Mapping] | None = None,
                             blend: Mapping | None = None, recent: Mapping[str, list] | None = None,
                             recent_ts: float = 0.0) -> int:
    """Send one model to ``conf.topics.similarity``; returns the number of messages sent.

    ``neighbours`` is ``{item: {neighbour: score}}`` (lists of pairs are accepted too);
    the rest see :func:`similarity_messages`.
    """
    messages = similarity_messages(neighbours, version, trained_at or time.time(), removed, related, counts,
                                   sources, blend, recent, recent_ts)
    producer = await KafkaClients(conf).producer("bulk", max_batch_size=512 * 1024,
                                                 max_request_size=4 * 1024 * 1024)
    try:
        for key, value in messages[:-1]:
            await producer.send(conf.topics.similarity, key=key, value=value)
        await producer.flush()
        # The marker goes out only once every item message is acknowledged, to EVERY
        # partition: a reader that has the marker of this version on all partitions has
        # read all the items (order holds within a partition, not across them).
        key, value = messages[-1]
        partitions = sorted(await producer.partitions_for(conf.topics.similarity))
        for partition in partitions:
            await producer.send(conf.topics.similarity, key=key, value=value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    return len(messages) - 1 + len(partitions)
