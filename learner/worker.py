"""``recsys learner``: learns the learned ranker's weights from ``ranker-examples`` and
publishes the sets its gate passes to the compacted ``ranker-model`` topic.

One process for the whole deployment (it assigns itself every partition; the examples
of every worker reach it). Each interaction's examples are scored by the model being
learnt and by the serving set, then learnt (``learner/online.py``); every
``RECSYS_LEARNER_EVERY_EXAMPLES`` example rows or ``RECSYS_LEARNER_EVERY_S`` seconds
the weights learnt so far are offered to the gate, and a set that passes is published
whole (``app.records.weights_messages``) and serves from then on. Examples that do not
parse are counted by reason and skipped (the workers made them: a wrong schema is a
release mismatch, not a shopper's input). The checkpoint (``learner/checkpoint.py``,
``<data_dir>/learner/checkpoint.npz``) is written after every batch read, with the
offsets it covers, and before the sets the batch shipped are published: a restart, even
after kill -9, reads on from there and publishes its serving set again, so a version name
on ``ranker-model`` is always one the learner has (the gate's window is not kept: a
learner restarted between a checkpoint and a publish would otherwise decide that offer
anew and could name another set the same).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import time
from pathlib import Path

from app.records import REJECTED_KEY, InvalidInput, parse_examples, weights_messages
from app.settings import Settings, load_settings
from broker.clients import KafkaClients
from broker.service import run_service
from ranking.features import FEATURES
from ranking.learned import LearnedWeights, parse_objective

from . import checkpoint
from .online import OnlineLearner

log = logging.getLogger(__name__)

#: Records fetched per poll.
MAX_RECORDS = 2000


def checkpoint_path(conf: Settings) -> Path:
    return Path(conf.data_dir) / "learner" / "checkpoint.npz"


class Learner:
    """The learner process's state: the online learner, its offsets and counters."""

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self.learner = OnlineLearner(FEATURES, parse_objective(conf.ranking.objective),
                                     every=conf.learner.every_examples, window=conf.learner.window)
        self.path = checkpoint_path(conf)
        self.offsets: dict[int, int] = checkpoint.load(self.path, self.learner) or {}
        self.invalid: collections.Counter = collections.Counter()
        self.consumed = 0
        self.published: list[str] = []
        self._last_offer = time.monotonic()
        self.clients = KafkaClients(conf)

    def learn_batch(self, records) -> list[LearnedWeights]:
        """Learn ``(partition, offset, value)`` records in order; returns the sets shipped."""
        shipped = []
        for partition, offset, value in records:
            self.consumed += 1
            self.offsets[partition] = offset + 1
            try:
                ex = parse_examples(value)
            except InvalidInput as exc:
                self.invalid[exc.reason] += 1
                continue
            weights = self.learner.learn(ex)
            if weights is not None:
                shipped.append(weights)
        if time.monotonic() - self._last_offer >= self.conf.learner.every_s and self.learner.rows_since_offer:
            self._last_offer = time.monotonic()
            self.learner.rows_since_offer = 0
            weights = self.learner.offer()
            if weights is not None:
                shipped.append(weights)
        return shipped

    def stats(self) -> dict:
        learner = self.learner
        return {"consumed": self.consumed, "examples_learnt": learner.examples_learnt, "versions": learner.versions,
                "serving": learner.serving.version if learner.serving else None,
                "serving_validation": learner.serving.validation if learner.serving else None,
                "refused": learner.refused, "rejected": list(learner.rejected), "invalid": dict(self.invalid), "offsets": dict(self.offsets)}

    async def run(self, stop: asyncio.Event, *, until_end: bool = False) -> dict:
        """Learn until ``stop`` is set (``until_end``: until the examples available at start are learnt)."""
        from aiokafka.structs import TopicPartition

        topic = self.conf.topics.ranker_examples
        consumer = await self.clients.consumer(group_id=self.conf.learner.group, max_poll_records=MAX_RECORDS)
        producer = await self.clients.producer("bulk")
        try:
            partitions = await _partitions(consumer, topic)
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in self.offsets:
                    consumer.seek(tp, self.offsets[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            end = await self.clients.end_offsets(consumer, tps) if until_end else None
            log.info("learner reading %s from %s; serving %s", topic, self.offsets or "the beginning",
                     self.learner.serving.version if self.learner.serving else "nothing yet")
            if self.learner.serving is not None:  # killed between a checkpoint and its publish: send it again
                await self.publish(producer, self.learner.serving)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
                records = [(tp.partition, r.offset, r.value) for tp, rs in batch.items() for r in rs]
                refused = self.learner.refused
                shipped = self.learn_batch(records)
                if records:  # before publishing: a version name is never published, then learnt anew
                    checkpoint.save(self.path, self.learner, self.offsets)
                for weights in shipped:
                    await self.publish(producer, weights)
                if self.learner.refused != refused:  # the dashboard shows what the gate refused
                    await producer.send(self.conf.topics.ranker_model, key=REJECTED_KEY.encode(),
                                        value=json.dumps({"refused": self.learner.refused,
                                                          "rejected": list(self.learner.rejected)}).encode())
                if records:
                    await _commit(consumer, topic, self.offsets)
                if end is not None and all(self.offsets.get(tp.partition, 0) >= o for tp, o in end.items()):
                    break
        finally:
            await consumer.stop()
            await producer.stop()
        return self.stats()

    async def publish(self, producer, weights: LearnedWeights) -> None:
        for key, value in weights_messages(weights, time.time()):
            await producer.send(self.conf.topics.ranker_model, key=key, value=value)
        await producer.flush()
        self.published.append(weights.version)
        log.info("published %s: %s", weights.version, weights.validation)


async def _partitions(consumer, topic: str) -> list[int]:
    for _ in range(50):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
    raise RuntimeError(f"topic {topic!r} does not exist (run `recsys create-topics`)")


async def _commit(consumer, topic: str, offsets: dict[int, int]) -> None:
    from aiokafka.structs import TopicPartition

    try:  # the checkpoint has the offsets; the group's copy shows the lag
        await consumer.commit({TopicPartition(topic, p): o for p, o in offsets.items()})
    except Exception as exc:  # noqa: BLE001
        log.warning("could not commit the learner's offsets: %s", exc)


def main(argv: list[str] | None = None, conf: Settings | None = None) -> int:
    """``recsys learner [--until-end]``."""
    parser = argparse.ArgumentParser(
        prog="recsys learner",
        description="Learn the learned ranker's weights from ranker-examples; publish what the gate passes to "
                    "ranker-model every RECSYS_LEARNER_EVERY_S seconds or RECSYS_LEARNER_EVERY_EXAMPLES rows.")
    parser.add_argument("--until-end", action="store_true", help="learn the examples there are now, then exit")
    parser.add_argument("-l", "--loglevel", default="info", help="logging level (default: info)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    conf = conf or load_settings()
    stats = run_service(conf, lambda stop: Learner(conf).run(stop, until_end=args.until_end))
    if stats is None:
        return 2
    print(json.dumps(stats, sort_keys=True, default=str), flush=True)
    return 0
