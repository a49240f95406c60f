"""The realtime agent: every rating re-ranks its user's top-K list (ARCHITECTURE.md).

Thin on purpose: take a batch of ratings, read each in order and queue it for its user's
state and ranker (``ranking/``: the user's A/B arm, or ``RECSYS_RANKER``); the steps of the
whole batch are made together as arrays (``tables.state.BatchSteps``, ``ranking/batch.py``,
``ranking/features.py``; for the learned ranker, with the examples each rating makes of the
list the user had: ``ranking/learned.py``); stage each new state and list; then publish the batch
(``agents/batches.py``). Bad messages become dead letters. Behaviour
events arrive here too, as implicit ratings (``agents/behaviour.py``): one writer of
``user_state``, one order.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.batches import Batch
from agents.lists import interaction_of, recommendation_for
from app.faust_patches import is_current
from app.records import Rating, examples_message, parse_rating, to_json_bytes, wire_lists
from broker.partitioning import owner_partition
from ranking.model import Model
from tables.state import BatchSteps, UserState

if TYPE_CHECKING:
    from app.worker import Worker

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    app, conf = worker.app, worker.settings

    @app.agent(worker.topics.ratings, name="agents.realtime.recommend")
    async def recommend(stream):
        await worker.model.caught_up.wait()  # never score with a half-loaded model after a restart
        async for events in stream.take_events(conf.worker.batch_max, within=conf.worker.batch_wait_ms / 1000.0):
            async with worker.state_lock:  # no user expires while their rating is ranked (agents/expiry.py)
                await rank_batch(worker, events)  # take_events acks the events once this returns

    @app.timer(interval=conf.worker.log_every_s)
    async def log_progress():
        metrics = worker.metrics
        batches = metrics.counters["ratings.batches"]
        log.info("ratings/s %.1f, lists sent %d, dead letters %d, worker latency %s, ratings per batch %.1f, model %s",
                 metrics.rates().get("ratings.accepted", 0.0), metrics.counters["lists.sent"],
                 metrics.counters["dead_letters"], metrics.percentiles("ratings"),
                 metrics.counters["ratings.batched"] / batches if batches else 0.0, worker.model.version or "(none yet)")


async def rank_batch(worker: Worker, events) -> None:
    """Rank every rating of a batch in order, then publish the states and lists together
    (``agents/batches.py``: offsets are committed only after that is acknowledged).

    Two passes: each rating is read in order (:func:`read_one`), the steps of the whole
    batch are made together (``tables.state.BatchSteps``: the same lists as one rating at a
    time), then each rating's state and list are staged in order (:func:`stage_one`)."""
    batch = Batch(worker, input_partitions=partitions_of(worker, worker.topics.ratings.get_topic_name()))
    model = worker.current_model()  # one for the whole batch
    steps = BatchSteps(model, worker.kept)
    started, read = time.perf_counter(), []
    for event in events:
        if not is_current(worker.app, event.message):  # a rebalance began: it is read again after it
            continue
        try:
            pending = read_one(worker, event, batch, steps)
        except Exception as exc:  # noqa: BLE001  bad input (or a bug): a dead letter, never a stopped agent
            await worker.dead_letters.reject(event, exc)
            continue
        if pending is not None:
            read.append(pending)
    steps.flush()
    share_ms = (time.perf_counter() - started) * 1000.0 / max(len(read), 1)  # each rating's share of the batch
    for event, exc in stage_all(worker, read, steps, batch, model, share_ms):
        await worker.dead_letters.reject(event, exc)
    try:
        await batch.publish(events)
    except Exception as exc:  # the broker refused for longer than the producer's timeout
        # Its offsets will not be committed, but later batches would now rank on states
        # without it: stop the worker; the restart reads the batch again.
        log.exception("could not publish a batch of %d ratings: stopping the worker", len(events))
        await worker.app.crash(exc)
        return
    worker.metrics.count("ratings.batches")
    worker.metrics.count("ratings.batched", len(events))
    worker.metrics.count("ratings.accepted", len(batch.lists))
    worker.metrics.count("lists.sent", len(batch.lists))
    worker.metrics.count("lists.scored_candidates", batch.scored)


@dataclass(slots=True)
class Read:
    """A rating read and queued in the first pass of a batch."""

    event: object
    rating: Rating
    key: bytes
    owner: int
    state: UserState
    variant: str
    #: Its place in ``BatchSteps.results``.
    step: int


def read_one(worker: Worker, event, batch: Batch, steps: BatchSteps) -> Read | None:
    """Parse one rating and queue it in ``steps`` for its user's state; None for a rating
    on another partition than its user's (staged to be sent there)."""
    conf, message = worker.settings, event.message
    rating = parse_rating(event.value, rating_min=conf.input.rating_min, rating_max=conf.input.rating_max,
                          max_future_s=conf.input.max_future_s)
    key = rating.user.encode()
    owner = owner_partition(key, batch.input_partitions)
    if message.partition != owner:  # another partitioner, or a null/wrong key: not this user's partition
        batch.stage_reroute(event, key, message.value, owner)
        worker.metrics.count("ratings.rerouted")
        return None
    worker.watermarks[owner] = max(worker.watermarks.get(owner, rating.ts), rating.ts)
    state = batch.state_of(event, key)
    variant, ranker = worker.ranking.ranker_for(rating.user)
    i = steps.apply(state, message.offset, ranker, interaction_of(rating), key)
    return Read(event, rating, key, owner, state, variant, i)


def stage_all(worker: Worker, read: list[Read], steps: BatchSteps, batch: Batch, model: Model, worker_ms: float
              ) -> list[tuple[object, Exception]]:
    """Stage what every rating read made (:func:`stage_one`; their lists rounded for the
    wire together); returns ``(event, error)`` of each whose step failed."""
    ranked = [pending for pending in read if not isinstance(steps.results[pending.step], Exception)]
    lists = wire_lists([steps.recs[pending.step].get("items", []) for pending in ranked])
    for pending, items in zip(ranked, lists, strict=True):
        stage_one(worker, pending, steps, batch, model, worker_ms, items)
    return [(pending.event, steps.results[pending.step]) for pending in read
            if isinstance(steps.results[pending.step], Exception)]


def stage_one(worker: Worker, read: Read, steps: BatchSteps, batch: Batch, model: Model, worker_ms: float,
              items: list) -> None:
    """Stage the user's new state (unless the rating was a redelivery), the list it made
    (``items``: the user's ``recs`` right after the rating, as on the wire) and, for the
    learned ranker, the examples it made of the list the user had (``ranking/learned.py``)."""
    changed, step = steps.results[read.step]
    metrics = worker.metrics
    examples = steps.examples[read.step]
    if examples is not None:
        batch.stage_examples(read.event, read.key, read.owner, examples_message(examples)[1])
        metrics.count("learner.examples_sent")
    if changed:
        batch.stage_state(read.event, read.key, read.state)
    else:  # an at-least-once redelivery: the stored list goes out again
        metrics.count("ratings.redelivered")
    produced_at = read.event.message.timestamp or 0.0
    rec = recommendation_for(read.rating, steps.recs[read.step], read.variant, model.version, produced_at, worker_ms,
                             items)
    batch.stage_list(read.event, read.key, read.owner, to_json_bytes(rec))
    batch.scored += step.n_candidates
    metrics.observe_ms("ratings", worker_ms)
    if produced_at:
        metrics.observe_ms("ratings.end_to_worker", (time.time() - produced_at) * 1000.0)


def partitions_of(worker: Worker, topic: str) -> int:
    """Partition count of an input topic, as the consumer's metadata has it."""
    return worker.app.consumer.topic_partitions(topic) or worker.settings.kafka.partitions
