"""The query API (Faust web views).

- ``GET  /recommendations/{user}/``    the user's last list (routed to the owning worker);
  ``?n=5`` at most n items, ``?exclude=a,b`` without those items, ``?category=c`` only
  items of that category (from the ``items`` topic)
- ``GET  /users/{user}/behaviour/``     window counts and segment (routed likewise)
- ``GET  /items/hot/``                  this worker's hottest items
- ``POST /rerank/``                     ``{"user", "items", "n"}``: the items in the order of the
  user's ranker (forwarded, body and all, to the worker owning the user)
- ``POST /collect/``                    validate a JSON rating or event and produce it
  (a body without ``ts`` gets the time it was received)
- ``GET  /health/``                     readiness: 200 once the model topic is read and
  ratings partitions are assigned, 503 before; model version, assigned partitions
- ``GET  /health/live/``                liveness: 200 while the worker's web server runs
- ``GET  /metrics/``                    Prometheus text (counters, latency histograms, gauges),
  or the JSON of ``/metrics/json/`` when ``Accept`` prefers ``application/json``
- ``GET  /metrics/json/``               counters, rates and latency percentiles (JSON)

Every path answers with and without its trailing slash (a second route, not a redirect
that would drop a POST body). Scores in lists are rounded to 4 decimals; a fallback
item (a hot item padding a short paper list) has the score ``null``.

With ``RECSYS_API_TOKEN`` set, all but ``/health/`` need the bearer token (checked by
the middleware in ``app/app.py``, before Faust routes a request to another worker).
Views are registered on the worker's app by :func:`register` (``app/worker.py``).
"""
from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from aiohttp.web import HTTPRequestEntityTooLarge, Response
from faust.web import View

from agents.behaviour import user_behaviour
from api.lists import filter_list, filtered_entry, list_filters, parse_rerank
from app.metrics import PROMETHEUS_TYPE, prefers_json, prometheus_text
from app.records import InvalidInput, Rating, parse_collected, to_json_bytes, wire_list

if TYPE_CHECKING:
    from app.worker import Worker


def register(worker: Worker) -> None:
    """Register every view on ``worker.app``."""
    app, conf, metrics = worker.app, worker.settings, worker.metrics
    user_state = worker.tables.user_state

    def route(path: str):
        """``app.page`` at ``path`` and at ``path`` without its trailing slash."""
        def register_view(view):
            app.page(path.rstrip("/"))(view)
            return app.page(path)(view)
        return register_view

    @route("/recommendations/{user}/")
    @app.table_route(table=user_state, match_info="user")
    async def get_recommendations(web, request, user: str):
        metrics.count("api.recommendations.served")  # on the owning worker, after any routing
        try:
            n, exclude = list_filters(request.query)
        except ValueError as exc:
            return web.json({"error": "bad_query", "detail": str(exc)}, status=400)
        wanted = request.query.get("category")
        keep = (lambda item: worker.catalogue.category.get(item) == wanted) if wanted else None
        entry = worker.newest_user_state(user.encode()).recs
        if not entry:  # a user the service has not seen: what is popular now
            popular, source = worker.popular_now(conf.ranking.k)
            fallback = [[item, None] for item in popular]
            return web.json({"user": user, "items": filter_list(fallback, n, exclude, keep),
                             "source": "hot-items" if source == "trending" else "popular",
                             "model_version": worker.model.version})
        return web.json({"user": user, "source": "realtime", **filtered_entry(entry, n, exclude, keep)})

    @route("/users/{user}/behaviour/")
    @app.table_route(table=user_state, match_info="user")
    async def get_behaviour(web, request, user: str):
        return web.json(user_behaviour(worker, user))

    @route("/items/hot/")
    async def get_hot_items(web, request):
        items, source = worker.popular_now(conf.behaviour.hot_items)
        return web.json({"items": items, "source": source, "window_s": conf.behaviour.hopping_size_s})

    @route("/collect/")
    class Collect(View):
        """The seeds' collection service: one JSON rating (has ``rating``) or event (has ``event``).

        Bodies are validated by the topics' own parser (``app.records.parse_collected``), so
        what is accepted here is exactly what the agents accept; every bad body gets a 4xx
        with the reason.
        """

        async def post(self, request):
            try:
                body = await request.read()  # aiohttp refuses more than client_max_size (1 MiB)
            except HTTPRequestEntityTooLarge as exc:
                return self.reject("too_large", exc.text or "body too large", status=413)
            try:
                record = parse_collected(body, rating_min=conf.input.rating_min, rating_max=conf.input.rating_max,
                                         max_future_s=conf.input.max_future_s, default_ts=time.time())
            except InvalidInput as exc:
                return self.reject(exc.reason, exc.detail)
            topic = worker.topics.ratings if isinstance(record, Rating) else worker.topics.events
            await topic.send(key=record.user.encode(), value=to_json_bytes(record))
            metrics.count("collect.accepted")
            return self.json({"accepted": True, "topic": topic.get_topic_name()}, status=202)

        def reject(self, reason: str, detail: str, status: int = 400):
            metrics.count(f"collect.rejected.{reason}")
            return self.json({"error": reason, "detail": detail}, status=status)

    @route("/rerank/")
    class Rerank(View):
        """Personalised order of the items a shop gives (``ranking/rerank.py``), by the
        ranker of the user's list, on the worker that owns the user: Faust forwards a
        routed request without its body, so the request is forwarded here, body and all."""

        async def post(self, request):
            body = await request.read()
            try:
                user, items, n = parse_rerank(body)
            except InvalidInput as exc:
                metrics.count(f"rerank.rejected.{exc.reason}")
                return self.json({"error": exc.reason, "detail": exc.detail}, status=400)
            owner = owner_url(app, user_state.name, user)
            if owner is None:
                return self.json({"error": "not_ready", "detail": "the user's partition has no worker yet"}, status=503)
            if owner is not True and not request.headers.get(ROUTED_HEADER):
                return await forward(app, owner, request, body)
            started = time.perf_counter()
            state = worker.newest_user_state(user.encode())
            variant, ranker = worker.ranking.ranker_for(user)
            model = worker.current_model()
            ranked = ranker.rerank(state, items, model)[:n]
            listed = {q for q, _s in ranked}
            because = {q: r for q, r in (state.recs.get("because") or {}).items() if q in listed}
            metrics.observe_ms("rerank", (time.perf_counter() - started) * 1000.0)
            metrics.count("rerank.served")
            return self.json({"user": user, "items": wire_list(ranked), "because": because, "variant": variant,
                              "model_version": model.version})

    @route("/health/")
    async def health(web, request):
        model = worker.model
        assigned = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == conf.topics.ratings)
        ready = model.caught_up.is_set() and bool(assigned)
        return web.json({"status": "ok" if ready else "starting", "ready": ready, "model_version": model.version,
                         "model_trained_at": model.marker.get("trained_at"),
                         "model_items": len(model.index), "model_loaded": model.caught_up.is_set(),
                         "model_blend": {**model.marker.get("blend", {}), **model.index.blend.as_dict(),
                                         "name": model.index.blend.name},
                         "model_messages_rejected": model.rejected, "ratings_partitions": assigned,
                         "cold_items": len(worker.content) if worker.content is not None else 0,
                         "learned": learned_health(worker)},
                        status=200 if ready else 503)

    @route("/health/live/")
    async def liveness(web, request):
        return web.json({"status": "alive"})

    @route("/metrics/")
    async def get_metrics(web, request):
        """Prometheus text, unless the request's ``Accept`` prefers JSON."""
        if prefers_json(request.headers.get("Accept", "")):
            return web.json(metrics.snapshot())
        return web.bytes(prometheus_text(metrics, worker_gauges(worker)), headers={"Content-Type": PROMETHEUS_TYPE})

    @route("/metrics/json/")
    async def get_metrics_json(web, request):
        return web.json(metrics.snapshot())


#: Marks a request one worker forwarded to the owner of its user (never forwarded again).
ROUTED_HEADER = "X-Recsys-Routed"


def owner_url(app, table: str, user: str):
    """``True`` when this worker owns ``user``'s partition of ``table``, else the owner's
    URL; None while no worker is assigned it (a rebalance)."""
    try:
        dest = app.router.key_store(table, user)
    except KeyError:
        return None
    here = app.conf.canonical_url
    return True if (dest.host, dest.port) == (here.host, here.port) else dest


async def forward(app, owner, request, body: bytes):
    """``request`` sent on to ``owner`` with its body and headers (the token included)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
    headers[ROUTED_HEADER] = "1"
    url = str(owner.with_path(request.path).with_query(request.query_string))
    async with app.http_client.post(url, data=body, headers=headers) as resp:
        return Response(body=await resp.read(), status=resp.status,
                        headers={"Content-Type": resp.headers.get("Content-Type", "application/json")})


def worker_gauges(worker) -> dict:
    """The worker's gauges for Prometheus: its model, its learned weight set, its
    partitions and how far behind their ends it reads."""
    model, app, conf = worker.model, worker.app, worker.settings
    trained_at = model.marker.get("trained_at")
    gauges = {"model_info": ("the similarity model in service (value 1)", [({"version": model.version}, 1.0)]),
              "model_items": ("items the model in service lists", [({}, float(len(model.index)))]),
              "cold_items": ("catalogue items recalled by their words (fewer interactions than RECSYS_COLD_ITEM_MIN)",
                             [({}, float(len(worker.content) if worker.content is not None else 0))])}
    if isinstance(trained_at, (int, float)):
        gauges["model_age_seconds"] = ("seconds since the model in service was trained",
                                       [({}, max(time.time() - trained_at, 0.0))])
    if worker.learned.weights is not None:
        gauges["learned_info"] = ("the learned ranker's weight set in service (value 1)",
                                  [({"version": worker.learned.weights.version}, 1.0)])
    consumer = app.consumer
    assigned = sorted(consumer.assignment()) if consumer is not None else []
    gauges["assigned_partitions"] = ("input partitions assigned to this worker",
                                     [({"topic": tp.topic}, float(sum(1 for t in assigned if t.topic == tp.topic)))
                                      for tp in {t.topic: t for t in assigned}.values()])
    lags = [({"topic": tp.topic, "partition": tp.partition}, lag) for tp in assigned
            if tp.topic == conf.topics.ratings and (lag := _lag(consumer, tp)) is not None]
    gauges["consumer_lag"] = ("messages between what this worker read and the partition's end", lags)
    gauges["user_state_keys"] = ("users this worker holds state for, by partition (RocksDB's estimate)",
                                 state_sizes(worker.tables.user_state))
    return gauges


def state_sizes(table) -> list[tuple[dict, float]]:
    """``[({"partition": p}, keys)]`` of a table's store: RocksDB's own key estimate per
    partition (no scan), or the size of a memory store."""
    store = table.data
    dbs = getattr(store, "_dbs", None)  # faust.stores.rocksdb.Store: one database per partition
    if dbs is None:
        with contextlib.suppress(Exception):
            return [({"partition": "all"}, float(len(store)))]
        return []
    out = []
    for partition, db in list(dbs.items()):
        with contextlib.suppress(Exception):
            out.append(({"partition": partition}, float(db.property_int_value("rocksdb.estimate-num-keys") or 0)))
    return out


def _lag(consumer, tp) -> float | None:
    """Messages of ``tp`` after the last one the worker read (None: its end not known yet)."""
    with contextlib.suppress(Exception):  # not fetched from yet: no highwater
        end = consumer.highwater(tp)
        if end is not None:
            read = consumer._read_offset.get(tp)  # Faust's own record of what it read
            return float(max(end - (read + 1 if read is not None else 0), 0))
    return None


def learned_health(worker) -> dict | None:
    """The learned ranker's serving weight set: its version and the gate's numbers (None:
    no set yet, the learned ranker lists the recall order)."""
    learned = worker.learned
    weights = learned.weights
    if weights is None:
        return None
    return {"version": weights.version, "validation": weights.validation,
            "item_biases": {task: len(b) for task, b in weights.item_bias.items()},
            "refused": learned.refused.get("refused", 0), "rejected": learned.refused.get("rejected", [])[-5:]}
