"""The realtime agent: every rating re-ranks its user's top-K list (ARCHITECTURE.md).

Thin on purpose: read the user's tables, call :func:`tables.scoring.recommend_after_rating`,
write the tables, send the new list. Bad messages become dead letters.
"""
from __future__ import annotations

import logging
import time

from app import metrics
from app.app import app
from app.records import Recommendation, parse_rating, to_json_bytes
from app.settings import settings
from app.topics import ratings_topic, recommendations_topic
from tables.definitions import model_version, similarity, user_state
from tables.scoring import high_rating_cut, recommend_after_rating

from agents.behaviour import hot_items
from agents.dead_letters import process_or_dead_letter

log = logging.getLogger(__name__)
HIGH_CUT = high_rating_cut(settings.rating_min, settings.rating_max)


@app.agent(ratings_topic)
async def recommend(stream):
    await similarity.caught_up.wait()  # never score with a half-loaded model after a restart
    async for event in stream.events():
        await process_or_dead_letter(event, update_and_send)


async def update_and_send(event) -> None:
    started = time.perf_counter()
    rating = parse_rating(event.value, rating_min=settings.rating_min, rating_max=settings.rating_max)
    user, key = rating.user, rating.user.encode()
    state = user_state[key]
    recent, rated, new_list, n_scored = recommend_after_rating(
        item=rating.item, rating=rating.rating, ts=rating.ts, recent=state.get("recent", []),
        rated=state.get("rated", []), previous=state.get("recs", {}).get("items", []),
        similarity=similarity.index,
        hot_items=hot_items, k=settings.k, m=settings.m, theta=settings.theta, high_cut=HIGH_CUT,
        rated_limit=settings.rated_items_max, decay=settings.decay,
    )
    version = model_version()
    user_state[key] = {"recent": recent, "rated": rated,
                       "recs": {"items": new_list, "model_version": version, "ts": rating.ts}}
    produced_at = event.message.timestamp or 0.0
    worker_ms = (time.perf_counter() - started) * 1000.0
    rec = Recommendation(user=user, items=new_list, model_version=version, trigger_ts=rating.ts,
                         produced_at=produced_at, emitted_at=time.time(), worker_ms=worker_ms,
                         reason="rating" if rating.source == "explicit" else rating.source)
    await recommendations_topic.send(key=key, value=to_json_bytes(rec))
    metrics.count("ratings.accepted")
    metrics.count("lists.sent")
    metrics.count("lists.scored_candidates", n_scored)
    metrics.observe_ms("ratings", worker_ms)
    if produced_at:
        metrics.observe_ms("ratings.end_to_worker", (time.time() - produced_at) * 1000.0)


@app.timer(interval=1.0)
async def sample_metrics():
    metrics.tick()


@app.timer(interval=settings.log_every_s)
async def log_progress():
    log.info("ratings/s %.1f, lists sent %d, dead letters %d, worker latency %s, model %s",
             metrics.rates().get("ratings.accepted", 0.0), metrics.counters["lists.sent"],
             metrics.counters["dead_letters"], metrics.percentiles("ratings"), model_version() or "(none yet)")
