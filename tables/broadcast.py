"""The compacted topics every worker holds in full: the model, the learned ranker's
weights and the catalogue.

The stream equivalent of the paper's Flink broadcast stream: each worker tails ALL
partitions of a compacted topic from the beginning (no consumer group) and keeps the
last value per key in memory. No Faust here: the worker starts :func:`keep_following`
as a Faust task (``app/worker.py``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import sys

import numpy as np
import orjson
from aiokafka.structs import TopicPartition

from app.records import MODEL_MARKER_KEY, REJECTED_KEY, WEIGHTS_MANIFEST_KEY, features_schema
from broker.clients import KafkaClients
from ranking.batch import prepare
from ranking.content import catalogue_text
from ranking.learned import LearnedWeights
from ranking.model import RECENT_HALF_LIVES, Blend, SimilarityIndex

log = logging.getLogger(__name__)


class SimilarityBroadcast:
    """item -> ``{neighbour: similarity}``, every item, on every worker, one complete
    model version at a time.

    Each worker tails ALL partitions of the compacted ``item-similarity`` topic from the
    beginning (no consumer group). Item messages are *staged* per model version; a version becomes
    the one the realtime agent scores with (:attr:`index`, :attr:`marker`) only once
    its marker has arrived on every partition (the publisher sends it to each
    partition after all the items) and every item the marker counts was staged. The
    switch replaces the whole index at once, so a publish that dies half-way (kill -9
    of the ALS worker) leaves the previous complete version in service, never a mix.
    A tombstone drops an item from what is staged (a later version lacks it anyway).

    Why not a Faust GlobalTable: with faust-streaming 0.15.3 (a) a GlobalTable whose
    changelog is another process's topic hangs the group join (the assignor looks for
    ``<app>-<table>-changelog``), (b) its "active" changelog partitions are read only
    during recovery, so a model published later never arrives, and (c) with
    ``synchronize_all_active_partitions`` it does arrive but the worker's agents stop
    receiving their own input. Each was reproduced on the embedded broker.
    """

    def __init__(self, keep_sources: bool = False) -> None:
        #: Whether the index keeps each source's lists too (the learned ranker reads them apart).
        self.keep_sources = keep_sources
        #: The model in service: top-M lists and symmetric rows (what the agent scores with).
        self.index = SimilarityIndex()
        #: The marker of the model in service.
        self.marker: dict = {}
        #: version -> {item: (neighbours, related, count, sources)}, in the order versions were first seen.
        self._staged: dict[str, dict[str, tuple]] = {}
        self._markers: dict[int, dict] = {}
        self.partitions = 1
        self.messages = 0
        self.rejected = 0
        #: Versions whose markers all landed but whose items did not (e.g. compacted away).
        self.incomplete = 0
        #: Set once everything that was in the topic at start-up has been read; the
        #: realtime agent waits for it so a restarted worker never scores without a model.
        self.caught_up = asyncio.Event()

    @property
    def version(self) -> str:
        """The version of the model in service ("" before the first)."""
        return str(self.marker.get("version", ""))

    def apply(self, key: bytes | None, value: bytes | None, partition: int = 0) -> None:
        """Apply one message of the topic. Never raises: a malformed message is counted
        and skipped, and what is staged or in service stays as it was."""
        self.messages += 1
        try:
            self._apply(key, value, partition)
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            self.rejected += 1
            log.warning("skipping malformed similarity message %r: %r", key[:100] if key else key, exc)

    def _apply(self, key: bytes | None, value: bytes | None, partition: int) -> None:
        item = key.decode("utf-8")
        if value is None:
            for staged in self._staged.values():
                staged.pop(item, None)
            return
        data = json.loads(value)
        if item == MODEL_MARKER_KEY:
            marker = {"version": str(data["version"]), "items": int(data.get("items", 0)),
                      **{k: v for k, v in data.items() if k not in ("version", "items")}}
            self._markers[partition] = marker
            self._maybe_switch(marker)
            return
        sources = data.get("sources") or {}
        self._staged.setdefault(str(data.get("version", "")), {})[item] = (
            _finite(data["neighbours"]), _compact(data.get("related") or {}), int(data.get("count") or 0),
            {str(name): _compact(neigh) for name, neigh in sources.items()}, _recent(data.get("recent")))

    def _maybe_switch(self, marker: dict) -> None:
        version = marker["version"]
        if len(self._markers) < self.partitions or {m["version"] for m in self._markers.values()} != {version}:
            return  # a partition may still hold unread items of this version
        staged = self._staged.get(version, {})
        try:
            blend = Blend.from_dict(marker.get("blend") or {})
        except (ValueError, TypeError) as exc:
            blend = Blend()
            log.warning("model %s carries a malformed blend (%s): ranking it with the default blend", version, exc)
        if len(staged) != marker["items"]:
            self.incomplete += 1
            log.warning("model %s is incomplete (%d of %d items): keeping model %r in service", version,
                        len(staged), marker["items"], self.marker.get("version"))
            return
        sources: dict[str, dict] = {}
        for q, s in staged.items():
            for name, neigh in s[3].items():
                sources.setdefault(name, {})[q] = neigh
        self.index = SimilarityIndex({q: s[0] for q, s in staged.items()}, related={q: s[1] for q, s in staged.items()},
                                     counts={q: s[2] for q, s in staged.items()}, sources=sources, blend=blend,
                                     keep_sources=self.keep_sources,
                                     recent={q: s[4] for q, s in staged.items() if s[4] is not None},
                                     recent_ts=_finite_time(marker.get("recent_ts")))
        prepare(self.index)
        self.marker = marker
        for seen in list(self._staged):  # this version and every one staged before it are done
            del self._staged[seen]
            if seen == version:
                break
        log.info("similarity model %s in service: %d items, blend %s", version, len(self.index), blend.name)

    async def follow(self, conf) -> None:
        """Tail the topic for as long as the worker runs."""
        clients = KafkaClients(conf)
        consumer = await clients.consumer(conf.topics.similarity)
        try:
            partitions = [TopicPartition(conf.topics.similarity, p)
                          for p in sorted(consumer.partitions_for_topic(conf.topics.similarity) or [])]
            self.partitions = max(len(partitions), 1)
            end = await clients.end_offsets(consumer, partitions)
            while True:
                if not self.caught_up.is_set():
                    # Positions, not last offsets seen: compaction and transaction markers
                    # leave gaps at the end of a real Kafka log.
                    positions = {tp: await consumer.position(tp) for tp in partitions}
                    if all(positions[tp] >= end[tp] for tp in partitions):
                        log.info("similarity model loaded: %d items, version %r", len(self.index),
                                 self.marker.get("version"))
                        self.caught_up.set()
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                for tp, records in batches.items():
                    for record in records:
                        self.apply(record.key, record.value, tp.partition)
        finally:
            await consumer.stop()


def _finite(scores: dict) -> dict[str, float]:
    """``{item: score}`` with string ids and float scores, NaN and infinities dropped."""
    pairs = ((str(n), float(s)) for n, s in scores.items())
    return {n: s for n, s in pairs if math.isfinite(s)}


def _finite_time(value) -> float:
    """A marker's time (0.0 when it has none or not a finite number)."""
    try:
        out = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) else 0.0


def _recent(values) -> tuple[float, ...] | None:
    """An item's recent popularity (one finite value per ``ranking.model.RECENT_HALF_LIVES``), or None
    when the message has none or not that."""
    try:
        out = tuple(float(v) for v in values or ())
    except (TypeError, ValueError):
        return None
    return out if len(out) == len(RECENT_HALF_LIVES) and all(map(math.isfinite, out)) else None


def _compact(scores: dict) -> tuple[tuple[str, ...], np.ndarray]:
    """:func:`_finite` as ``(items, weights)``, each id one shared string: a model's
    named lists are tens of millions of entries on a large catalogue, and as dicts of
    fresh strings they took ten times the memory."""
    pairs = _finite(scores)
    return tuple(sys.intern(n) for n in pairs), np.fromiter(pairs.values(), dtype=np.float64, count=len(pairs))


class Catalogue:
    """item -> category, every item, on every worker, from the compacted ``items`` topic
    that ``recsys generate`` / ``recsys load`` publish (for ``?category=`` on lists), and
    item -> when it was added (an optional ``"added"``, epoch seconds: the learned
    ranker's item age), and item -> its words (name, category, any other text: new items'
    content neighbours, ``ranking/content.py``). A deployment without the topic has none of
    them; the reader waits for it."""

    def __init__(self) -> None:
        self.category: dict[str, str] = {}
        self.added: dict[str, float] = {}
        self.text: dict[str, str] = {}
        #: Messages applied so far (the worker refits the text vectors when it moved).
        self.changes = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        item = key.decode("utf-8", "replace")
        try:
            data = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            return
        category = data.get("category") if isinstance(data, dict) else None
        if isinstance(category, str) and category:
            self.category[item] = category
        else:  # a tombstone, or an item without a category
            self.category.pop(item, None)
        self.changes += 1
        words = catalogue_text(data) if isinstance(data, dict) else ""
        if words.strip():
            self.text[item] = words
        else:
            self.text.pop(item, None)
        added = data.get("added") if isinstance(data, dict) else None
        if isinstance(added, (int, float)) and not isinstance(added, bool) and math.isfinite(added):
            self.added[item] = float(added)
        else:
            self.added.pop(item, None)

    async def follow(self, conf) -> None:
        await follow_topic(conf, conf.topics.items, self.apply, wait_s=10.0)


class LearnedBroadcast:
    """The learned ranker's serving weight set, from the compacted ``ranker-model`` topic
    (``app.records.weights_messages``): a version serves once its manifest and every
    chunk of item biases it counts have arrived with its version (chunks travel on other
    partitions, so in any order), and then wholly; until then the previous one serves.
    A set for other features (another release) is never served."""

    def __init__(self) -> None:
        #: The weight set in service (None: cold start, the learned ranker lists the recall order).
        self.weights: LearnedWeights | None = None
        self._manifest: dict | None = None
        self._chunks: dict[str, dict] = {}
        self.rejected = 0
        #: The learner's newest refused offers (the gate's numbers and why) and how many in all.
        self.refused: dict = {"refused": 0, "rejected": []}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Apply one message. Never raises: a malformed one is counted and skipped."""
        try:
            name = key.decode() if key is not None else ""
            data = orjson.loads(value) if value is not None else None
            if not isinstance(data, dict):
                return
            if name == WEIGHTS_MANIFEST_KEY:
                self._manifest = data
            elif name == REJECTED_KEY:
                self.refused = data
            elif name.startswith("bias/"):
                self._chunks[name] = data
            self._serve_if_complete()
        except (ValueError, TypeError, AttributeError, KeyError, UnicodeDecodeError) as exc:
            self.rejected += 1
            log.warning("skipping malformed ranker-model message %r: %r", key[:100] if key else key, exc)

    def _serve_if_complete(self) -> None:
        m = self._manifest
        if m is None or (self.weights is not None and self.weights.version == m["version"]):
            return
        if m.get("schema") != features_schema():
            return
        biases = {}
        for task, count in m["chunks"].items():
            parts = [self._chunks.get(f"bias/{task}/{n}") for n in range(int(count))]
            if any(p is None or p.get("version") != m["version"] for p in parts):
                return
            biases[task] = {str(q): float(b) for p in parts for q, b in p["items"].items()}
        heads = {task: np.asarray(w, dtype=np.float64) for task, w in m["heads"].items()}
        self.weights = LearnedWeights(str(m["version"]), tuple(m["features"]), heads, biases,
                                      dict(m.get("validation") or {}, published_at=m.get("published_at")))

    async def follow(self, conf) -> None:
        await follow_topic(conf, conf.topics.ranker_model, self.apply, wait_s=5.0)


async def follow_topic(conf, topic: str, apply, wait_s: float) -> None:
    """Call ``apply(key, value)`` on every message of a compacted ``topic``, from the
    beginning, for ever; until the topic exists, look again every ``wait_s`` seconds
    (subscribing would auto-create it)."""
    consumer = await KafkaClients(conf).consumer()
    try:
        while topic not in await consumer.topics():
            await asyncio.sleep(wait_s)
        consumer.subscribe([topic])
        while True:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for record in records:
                    apply(record.key, record.value)
    finally:
        await consumer.stop()


async def keep_following(name: str, follow, conf) -> None:
    """Run ``follow(conf)`` for the worker's lifetime: a lost connection must not stop
    the updates, so a failed reader starts again (from the beginning) after 5 s."""
    while True:
        try:
            await follow(conf)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s reader failed; re-reading the topic in 5 s", name)
            await asyncio.sleep(5.0)
