"""The realtime agent: every rating re-ranks its user's top-K list (ARCHITECTURE.md).

Thin on purpose: take a batch of ratings, and for each in order read the user's state,
call the user's ranker (:class:`tables.ranking.Ranking`: the default ranker, or the paper's
:func:`tables.scoring.recommend_after_rating`) and stage the new state and list; then
publish the batch (``agents/batches.py``). Bad messages become dead letters. Behaviour
events arrive here too, as implicit ratings (``agents/behaviour.py``): one writer of
``user_state``, one order.
"""
from __future__ import annotations

import logging
import time

from agents.batches import Batch
from agents.behaviour import hot_items
from agents.dead_letters import dead_letter_error
from agents.lists import interaction_of, recommendation_for
from app import metrics
from app.app import app, settings
from app.faust_patches.at_least_once import is_current
from app.records import parse_rating, to_json_bytes
from app.topics import ratings_topic
from broker.partitioning import owner_partition
from ranking.ab import Assignment
from ranking.model import Model
from tables.definitions import model_version, similarity

log = logging.getLogger(__name__)
RANKING = Assignment.from_settings(settings)


@app.agent(ratings_topic)
async def recommend(stream):
    await similarity.caught_up.wait()  # never score with a half-loaded model after a restart
    async for events in stream.take_events(settings.worker.batch_max, within=settings.worker.batch_wait_ms / 1000.0):
        await rank_batch(events)  # take_events acks the events once this returns


async def rank_batch(events) -> None:
    """Rank every rating of a batch in order, then publish the states and lists together
    (``agents/batches.py``: offsets are committed only after that is acknowledged)."""
    batch = Batch(input_partitions=partitions_of(ratings_topic.get_topic_name()))
    version = model_version()  # one model for the whole batch
    for event in events:
        if not is_current(app, event.message):  # a rebalance began: it is read again after it
            continue
        try:
            rank_one(event, batch, version)
        except Exception as exc:  # noqa: BLE001  bad input (or a bug): a dead letter, never a stopped agent
            await dead_letter_error(event, exc)
    try:
        await batch.publish(events)
    except Exception as exc:  # the broker refused for longer than the producer's timeout
        # Its offsets will not be committed, but later batches would now rank on states
        # without it: stop the worker; the restart reads the batch again.
        log.exception("could not publish a batch of %d ratings: stopping the worker", len(events))
        await app.crash(exc)
        return
    metrics.count("ratings.accepted", len(batch.lists))
    metrics.count("lists.sent", len(batch.lists))
    metrics.count("lists.scored_candidates", batch.scored)


def rank_one(event, batch: Batch, version: str) -> None:
    """Rank one rating of the batch: stage the user's new state and list (or, for a rating
    on another partition than its user's, stage it to be sent there)."""
    started = time.perf_counter()
    message = event.message
    rating = parse_rating(event.value, rating_min=settings.input.rating_min, rating_max=settings.input.rating_max,
                          max_future_s=settings.input.max_future_s)
    key = rating.user.encode()
    owner = owner_partition(key, batch.input_partitions)
    if message.partition != owner:  # another partitioner, or a null/wrong key: not this user's partition
        batch.stage_reroute(key, message.value, owner)
        metrics.count("ratings.rerouted")
        return
    state = batch.state_of(event, key)
    variant, ranker = RANKING.ranker_for(rating.user)
    changed, step = state.apply(message.offset, ranker, interaction_of(rating),
                                Model(similarity.index, hot_items, version))
    if changed:
        batch.stage_state(event, key, state)
    else:  # an at-least-once redelivery: the stored list goes out again
        metrics.count("ratings.redelivered")
    produced_at = message.timestamp or 0.0
    worker_ms = (time.perf_counter() - started) * 1000.0
    rec = recommendation_for(rating, state, variant, version, produced_at, worker_ms)
    batch.stage_list(event, key, owner, to_json_bytes(rec))
    batch.scored += step.n_candidates
    metrics.observe_ms("ratings", worker_ms)
    if produced_at:
        metrics.observe_ms("ratings.end_to_worker", (time.time() - produced_at) * 1000.0)


def partitions_of(topic: str) -> int:
    """Partition count of an input topic, as the consumer's metadata has it."""
    return app.consumer.topic_partitions(topic) or settings.kafka.partitions


@app.timer(interval=1.0)
async def sample_metrics():
    metrics.tick()


@app.timer(interval=settings.worker.log_every_s)
async def log_progress():
    log.info("ratings/s %.1f, lists sent %d, dead letters %d, worker latency %s, model %s",
             metrics.rates().get("ratings.accepted", 0.0), metrics.counters["lists.sent"],
             metrics.counters["dead_letters"], metrics.percentiles("ratings"), model_version() or "(none yet)")
