"""The realtime agent: every rating re-ranks its user's top-K list (ARCHITECTURE.md).

Thin on purpose: read the user's tables, call the user's ranker (:class:`tables.ranking.Ranking`:
the default ranker, or the paper's :func:`tables.scoring.recommend_after_rating`), write the
tables, send the new list. Bad messages become dead letters. Behaviour events arrive here
too, as implicit ratings (``agents/behaviour.py``): one writer of ``user_state``, one order.
"""
from __future__ import annotations

import logging
import time

from app import metrics

from app.records import Recommendation, parse_rating, to_json_bytes
from app.app import app, settings
from app.topics import ratings_topic, recommendations_topic
from broker.partitioning import owner_partition
from tables.definitions import model_version, similarity, user_state
from tables.ranking import Ranking, wire_list
from tables.state import UserState

from agents.behaviour import hot_items
from agents.dead_letters import process_or_dead_letter

log = logging.getLogger(__name__)
RANKING = Ranking.from_settings(settings)


@app.agent(ratings_topic)
async def recommend(stream):
    await similarity.caught_up.wait()  # never score with a half-loaded model after a restart
    async for event in stream.events():
        await process_or_dead_letter(event, update_and_send)


async def update_and_send(event) -> None:
    started = time.perf_counter()
    message = event.message
    rating = parse_rating(event.value, rating_min=settings.rating_min, rating_max=settings.rating_max,
                          max_future_s=settings.max_future_s)
    key = rating.user.encode()
    owner = owner_partition(key, partitions_of(message.topic))
    if message.partition != owner:  # another partitioner, or a null/wrong key: not this user's partition
        await ratings_topic.send(key=key, value=message.value, partition=owner)
        metrics.count("ratings.rerouted")
        return
    state = UserState.from_value(user_state[key])
    version = model_version()  # one model for the whole update
    variant, changed, n_scored = RANKING.apply(state, rating, message.offset, similarity.index, version, hot_items)
    if changed:
        user_state[key] = state.to_value()
    else:  # an at-least-once redelivery: the stored list goes out again
        metrics.count("ratings.redelivered")
    new_list, because = state.last_list, state.recs.get("because", {})
    version = state.recs.get("model_version", version)
    produced_at = message.timestamp or 0.0
    worker_ms = (time.perf_counter() - started) * 1000.0
    rec = Recommendation(user=rating.user, items=wire_list(new_list), model_version=version, trigger_ts=rating.ts,
                         produced_at=produced_at, emitted_at=time.time(), worker_ms=worker_ms,
                         reason="rating" if rating.source == "explicit" else rating.source,
                         because=because, variant=variant)
    await recommendations_topic.send(key=key, value=to_json_bytes(rec))
    metrics.count("ratings.accepted")
    metrics.count("lists.sent")
    metrics.count("lists.scored_candidates", n_scored)
    metrics.observe_ms("ratings", worker_ms)
    if produced_at:
        metrics.observe_ms("ratings.end_to_worker", (time.time() - produced_at) * 1000.0)


def partitions_of(topic: str) -> int:
    """Partition count of an input topic, as the consumer's metadata has it."""
    return app.consumer.topic_partitions(topic) or settings.partitions


@app.timer(interval=1.0)
async def sample_metrics():
    metrics.tick()


@app.timer(interval=settings.log_every_s)
async def log_progress():
    log.info("ratings/s %.1f, lists sent %d, dead letters %d, worker latency %s, model %s",
             metrics.rates().get("ratings.accepted", 0.0), metrics.counters["lists.sent"],
             metrics.counters["dead_letters"], metrics.percentiles("ratings"), model_version() or "(none yet)")
