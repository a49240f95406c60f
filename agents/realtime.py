"""The realtime agent: every rating re-ranks its user's top-K list (ARCHITECTURE.md).

Thin on purpose: take a batch of ratings, and for each in order read the user's state,
apply the rating through the user's ranker (``ranking/``: the user's A/B arm, or
``RECSYS_RANKER``) and stage the new state and list (for the learned ranker, first the
examples the rating makes of the list the user had: ``ranking/learned.py``); then publish the batch
(``agents/batches.py``). Bad messages become dead letters. Behaviour
events arrive here too, as implicit ratings (``agents/behaviour.py``): one writer of
``user_state``, one order.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from agents.batches import Batch
from agents.lists import interaction_of, recommendation_for
from app.faust_patches import is_current
from app.records import examples_message, parse_rating, to_json_bytes
from broker.partitioning import owner_partition
from ranking.learned import LearnedRanker
from ranking.model import Model

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
        log.info("ratings/s %.1f, lists sent %d, dead letters %d, worker latency %s, model %s",
                 metrics.rates().get("ratings.accepted", 0.0), metrics.counters["lists.sent"],
                 metrics.counters["dead_letters"], metrics.percentiles("ratings"), worker.model.version or "(none yet)")


async def rank_batch(worker: Worker, events) -> None:
    """Rank every rating of a batch in order, then publish the states and lists together
    (``agents/batches.py``: offsets are committed only after that is acknowledged)."""
    batch = Batch(worker, input_partitions=partitions_of(worker, worker.topics.ratings.get_topic_name()))
    model = worker.current_model()  # one for the whole batch
    for event in events:
        if not is_current(worker.app, event.message):  # a rebalance began: it is read again after it
            continue
        try:
            rank_one(worker, event, batch, model)
        except Exception as exc:  # noqa: BLE001  bad input (or a bug): a dead letter, never a stopped agent
            await worker.dead_letters.reject(event, exc)
    try:
        await batch.publish(events)
    except Exception as exc:  # the broker refused for longer than the producer's timeout
        # Its offsets will not be committed, but later batches would now rank on states
        # without it: stop the worker; the restart reads the batch again.
        log.exception("could not publish a batch of %d ratings: stopping the worker", len(events))
        await worker.app.crash(exc)
        return
    worker.metrics.count("ratings.accepted", len(batch.lists))
    worker.metrics.count("lists.sent", len(batch.lists))
    worker.metrics.count("lists.scored_candidates", batch.scored)


def rank_one(worker: Worker, event, batch: Batch, model: Model) -> None:
    """Rank one rating of the batch: stage the user's new state and list (or, for a rating
    on another partition than its user's, stage it to be sent there)."""
    started = time.perf_counter()
    conf, metrics, message = worker.settings, worker.metrics, event.message
    rating = parse_rating(event.value, rating_min=conf.input.rating_min, rating_max=conf.input.rating_max,
                          max_future_s=conf.input.max_future_s)
    key = rating.user.encode()
    owner = owner_partition(key, batch.input_partitions)
    if message.partition != owner:  # another partitioner, or a null/wrong key: not this user's partition
        batch.stage_reroute(event, key, message.value, owner)
        metrics.count("ratings.rerouted")
        return
    worker.watermarks[owner] = max(worker.watermarks.get(owner, rating.ts), rating.ts)
    state = batch.state_of(event, key)
    variant, ranker = worker.ranking.ranker_for(rating.user)
    interaction = interaction_of(rating)
    learned = isinstance(ranker, LearnedRanker)
    if learned and not state.already_applied(message.offset):  # what the list the user had taught
        examples = ranker.examples(state, interaction, model, made=worker.kept.take(key, state.offset))
        if examples is not None:
            batch.stage_examples(event, key, owner, examples_message(examples)[1])
            metrics.count("learner.examples_sent")
    changed, step = state.apply(message.offset, ranker, interaction, model)
    if learned and changed:
        worker.kept.put(key, state.offset, step.made)
    if changed:
        batch.stage_state(event, key, state)
    else:  # an at-least-once redelivery: the stored list goes out again
        metrics.count("ratings.redelivered")
    produced_at = message.timestamp or 0.0
    worker_ms = (time.perf_counter() - started) * 1000.0
    rec = recommendation_for(rating, state, variant, model.version, produced_at, worker_ms)
    batch.stage_list(event, key, owner, to_json_bytes(rec))
    batch.scored += step.n_candidates
    metrics.observe_ms("ratings", worker_ms)
    if produced_at:
        metrics.observe_ms("ratings.end_to_worker", (time.time() - produced_at) * 1000.0)


def partitions_of(worker: Worker, topic: str) -> int:
    """Partition count of an input topic, as the consumer's metadata has it."""
    return worker.app.consumer.topic_partitions(topic) or worker.settings.kafka.partitions
