"""``recsys web``: the shop page and the operations dashboard.

A frontend of its own, the way a shop's would be: it consumes ``recommendations`` in its
own consumer group (``<app id>-web``, read from the start of the compacted topic so that
a restarted frontend knows every user's latest list again), keeps each user's latest
list (:class:`web.live.LiveState`), and pushes every new list to the browsers watching
that user by Server-Sent Events. It also reads ``user-events`` and ``ratings`` (from their
end: live online evaluation), ``dead-letters`` and the compacted ``items`` catalogue (from
their start, when they exist), and polls the stream worker's ``/metrics/`` and ``/health/``.

Routes (every path with or without its trailing slash):

- ``GET /``                    the shop page (``?user=alice``)
- ``GET /dashboard``           the live dashboard
- ``GET /static/...``          the page's HTML, JavaScript and CSS (no CDN)
- ``GET /api/catalogue``       items with names and categories
- ``GET /api/search``          ``?q=&user=``: catalogue matches, plain and reranked for the user
- ``GET /api/users``           users with a list
- ``GET /api/lists/{user}``    the user's latest list (the worker's fallback when none)
- ``GET /api/stream/{user}``   SSE: ``event: current`` once, then ``event: list`` per new list
- ``GET /api/dashboard``       the dashboard's numbers (JSON)
- ``GET /api/stream-dashboard`` SSE: the same numbers every second
- ``POST /api/collect``        a click of the page: forwarded to the worker's ``POST /collect/``
  with ``ts`` = the time it was received here and the API token (which stays on the server)
- ``GET /health``              ``ready`` once the consumers have their partitions

Run: ``recsys web --port 8080 --worker-url http://127.0.0.1:6066`` (loopback by default).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from pathlib import Path

import orjson
from aiohttp import ClientSession, ClientTimeout, web

from app.metrics import PROMETHEUS_TYPE, prometheus_text, wants_json
from broker.ports import require_free_port
from ranking.ab import parse_ab
from web.live import LiveState

log = logging.getLogger("recsys.web")
STATIC = Path(__file__).resolve().parent / "static"
#: How often the worker's /metrics/ and /health/ are polled, and the dashboard pushed.
POLL_S = 1.0
#: An SSE comment every this many seconds keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
#: Lists one slow browser may have queued before the oldest are dropped.
SSE_QUEUE = 1000
MAX_COLLECT_BYTES = 16 * 1024


def items_topic(conf) -> str:
    """Name of the compacted catalogue topic (``RECSYS_TOPIC_ITEMS``, default ``items``)."""
    return conf.topics.items


def ab_arms(conf) -> list:
    """The A/B arms of ``RECSYS_AB`` (``[]`` when unset; Settings has checked it)."""
    return parse_ab(conf.ranking.ab)


def default_variant(conf) -> str:
    return conf.ranking.ranker


class Hub:
    """Browsers watching users (SSE queues), and the dashboard's watchers."""

    def __init__(self) -> None:
        self.watchers: dict[str, set[asyncio.Queue]] = {}

    def watch(self, user: str) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=SSE_QUEUE)
        self.watchers.setdefault(user, set()).add(queue)
        return queue

    def unwatch(self, user: str, queue: asyncio.Queue) -> None:
        queues = self.watchers.get(user)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self.watchers[user]

    def publish(self, user: str, message: bytes) -> None:
        for queue in self.watchers.get(user, ()):
            if queue.full():  # a browser that does not read: it gets the newest lists
                queue.get_nowait()
            queue.put_nowait(message)


def sse(event: str, data: dict, event_id: str | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


class WebService:
    """The consumers and the HTTP routes of one ``recsys web`` process."""

    def __init__(self, conf, worker_url: str, *, grace_s: float = 1.0, consume: bool = True) -> None:
        self.conf = conf
        self.consume = consume
        self.worker_url = worker_url.rstrip("/")
        self.state = LiveState(arms=ab_arms(conf), default_variant=default_variant(conf), grace_s=grace_s,
                               started_at=time.time())
        self.hub = Hub()
        self.ready = {"recommendations": False, "inputs": False}
        self.worker: dict = {"ok": False, "error": "not polled yet"}
        self.group: dict = {"members": [], "lag": {}, "error": "not polled yet"}
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.http: ClientSession | None = None
        self.consumers: list = []

    # ------------------------------------------------------------ lifecycle
    async def start(self, app: web.Application) -> None:
        self.http = ClientSession(timeout=ClientTimeout(total=5))
        jobs = [self.consume_recommendations, self.consume_inputs, self.consume_catalogue_and_letters,
                self.settle_joins] if self.consume else []
        for job in jobs + [self.poll_worker, self.poll_group]:
            self.tasks.append(asyncio.create_task(self.forever(job), name=job.__name__))

    async def stop(self, app: web.Application) -> None:
        self.stopping.set()
        for queues in self.hub.watchers.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(b"")  # ends the streams now, not at their next keepalive
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for consumer in list(self.consumers):
            with contextlib.suppress(Exception):
                await consumer.stop()
        if self.http is not None:
            await self.http.close()

    async def forever(self, job) -> None:
        """Run ``job``; if it fails (broker gone, topic deleted), log and start it again."""
        while not self.stopping.is_set():
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one line, then retry
                log.warning("%s failed (%s: %s); retrying in 2 s", job.__name__, type(exc).__name__, exc)
            await asyncio.sleep(2.0)

    async def consumer(self, *topics: str, **overrides):
        from broker.clients import KafkaClients

        consumer = await KafkaClients(self.conf).consumer(*topics, **overrides)
        self.consumers.append(consumer)
        return consumer

    async def release(self, consumer) -> None:
        with contextlib.suppress(ValueError):
            self.consumers.remove(consumer)
        with contextlib.suppress(Exception):
            await consumer.stop()

    async def wait_for_topics(self, probe, *wanted: str) -> dict:
        """Block until every topic of ``wanted`` exists with its partitions (the worker
        creates them); returns ``{topic: [partition, ...]}``."""
        said = 0.0
        while True:
            # consumer.topics() fetches the metadata but does not keep it: read its partitions here
            cluster = await probe._client.fetch_all_metadata()
            found = {t: sorted(cluster.partitions_for_topic(t) or ()) for t in wanted}
            existing = {t for t, parts in found.items() if parts}
            if set(wanted) <= existing:
                return found
            if time.monotonic() - said > 30:
                log.info("waiting for topics %s", ", ".join(sorted(set(wanted) - existing)))
                said = time.monotonic()
            await asyncio.sleep(1.0)

    # ------------------------------------------------------------ consumers
    async def consume_recommendations(self) -> None:
        conf = self.conf
        probe = await self.consumer()
        try:
            await self.wait_for_topics(probe, conf.topics.recommendations)
        finally:
            await self.release(probe)
        consumer = await self.consumer(conf.topics.recommendations, group_id=f"{conf.worker.app_id}-web",
                                       auto_offset_reset="earliest", enable_auto_commit=False)
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                self.ready["recommendations"] = bool(consumer.assignment())
                now = time.time()
                for tp, records in batch.items():
                    for record in records:
                        self.on_list(record, now, f"{tp.partition}:{record.offset}")
        finally:
            self.ready["recommendations"] = False
            await self.release(consumer)

    def on_list(self, record, now: float, event_id: str) -> None:
        if record.value is None:  # a tombstone: the user's list is gone
            if record.key is not None:
                self.state.forget(record.key.decode("utf-8", "replace"))
            return
        try:
            rec = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(rec, dict) or not rec.get("user"):
            return
        self.state.add_list(rec, now)
        user = str(rec["user"])
        if user in self.hub.watchers:
            self.hub.publish(user, sse("list", self.state.enrich(rec), event_id))

    async def consume_inputs(self) -> None:
        """``user-events`` and ``ratings`` from their current end: the online evaluation."""
        from aiokafka import TopicPartition

        from broker.clients import KafkaClients

        conf = self.conf
        consumer = await self.consumer()
        try:
            found = await self.wait_for_topics(consumer, conf.topics.events, conf.topics.ratings)
            partitions = [TopicPartition(topic, p) for topic, parts in found.items() for p in parts]
            consumer.assign(partitions)
            ends = await KafkaClients(conf).end_offsets(consumer, partitions)
            for tp in partitions:
                consumer.seek(tp, ends[tp])
            self.ready["inputs"] = True
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    for record in records:
                        self.on_input(tp.topic, record)
        finally:
            self.ready["inputs"] = False
            await self.release(consumer)

    def on_input(self, topic: str, record) -> None:
        try:
            data = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError:
            return  # the worker dead-letters it; nothing to join
        if not isinstance(data, dict):
            return
        at = (record.timestamp or 0) / 1000.0 or time.time()
        user, item = str(data.get("user") or ""), str(data.get("item") or "")
        if not user:
            return
        if topic == self.conf.topics.events:
            self.state.add_event(user, item, str(data.get("event") or ""), at)
        elif data.get("source", "explicit") == "explicit":  # implicit ratings are the events again
            self.state.add_event(user, item, "rating", at)

    async def consume_catalogue_and_letters(self) -> None:
        """``items`` and ``dead-letters`` from their start, once they exist (checked every 10 s)."""
        conf = self.conf
        wanted = (items_topic(conf), conf.topics.dead_letters)
        probe = await self.consumer()
        try:
            while True:
                existing = {t for t in wanted if t in await probe.topics()}
                if not existing:
                    await asyncio.sleep(10.0)
                    continue
                break
        finally:
            await self.release(probe)
        self.state.catalogue.clear()
        self.state.dead_letters.clear()
        consumer = await self.consumer(*sorted(existing))
        try:
            checked = time.monotonic()
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    for record in records:
                        self.on_aux(tp.topic, record)
                if time.monotonic() - checked > 10.0 and len(existing) < len(wanted):
                    checked = time.monotonic()
                    if {t for t in wanted if t in await consumer.topics()} != existing:
                        return  # a topic appeared: start again, reading both from the start
        finally:
            await self.release(consumer)

    def on_aux(self, topic: str, record) -> None:
        if topic == self.conf.topics.dead_letters:
            try:
                letter = orjson.loads(record.value) if record.value is not None else {}
            except orjson.JSONDecodeError:
                letter = {}
            self.state.add_dead_letter(str(letter.get("reason") or "unknown") if isinstance(letter, dict)
                                       else "unknown")
            return
        item = record.key.decode("utf-8", "replace") if record.key is not None else ""
        if record.value is None:
            if item:
                self.state.add_item(item, None, None)
            return
        try:
            data = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict):
            item = str(data.get("item") or item)
            if item:
                self.state.add_item(item, data.get("name"), data.get("category"))

    async def settle_joins(self) -> None:
        while True:
            self.state.settle(time.time())
            await asyncio.sleep(0.25)

    async def poll_group(self) -> None:
        """The workers' consumer group: members with their partitions, lag per partition."""
        from broker.groups import group_lag, group_members

        conf = self.conf
        while True:
            errors = []
            for key, ask in (("members", lambda: group_members(conf, conf.worker.app_id)),
                             ("lag", lambda: group_lag(conf, conf.worker.app_id, [conf.topics.ratings, conf.topics.events]))):
                try:  # each on its own: a broker that cannot answer one still shows the other
                    self.group[key] = await ask()
                except Exception as exc:  # noqa: BLE001 - shown on the dashboard, tried again
                    errors.append(f"{key}: {type(exc).__name__}: {exc}")
            self.group.update(error="; ".join(errors) or None, polled_at=time.time())
            await asyncio.sleep(max(POLL_S, 2.0))

    async def poll_worker(self) -> None:
        while True:
            try:
                metrics = await self.worker_get("/metrics/json/")
                health = await self.worker_get("/health/", ok=(200, 503))  # 503: starting, still a health
                self.worker = {"ok": True, "metrics": metrics, "health": health, "polled_at": time.time()}
            except Exception as exc:  # noqa: BLE001 - the worker may be starting or gone
                self.worker = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "polled_at": time.time()}
            await asyncio.sleep(POLL_S)

    # ------------------------------------------------------------ the worker
    def worker_headers(self) -> dict:
        token = self.conf.api.api_token.value
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def worker_get(self, path: str, ok=(200,)):
        async with self.http.get(self.worker_url + path, headers=self.worker_headers()) as resp:
            if resp.status not in ok:
                resp.raise_for_status()
            return await resp.json()

    # ------------------------------------------------------------ routes
    async def page(self, request: web.Request) -> web.FileResponse:
        name = "dashboard.html" if request.path.rstrip("/").endswith("dashboard") else "index.html"
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    async def catalogue(self, request: web.Request) -> web.Response:
        limit = _int_query(request, "limit", 200)
        return web.json_response({"items": self.state.catalogue_items(limit), "total": self.state.catalogue_size(),
                                  "named": bool(self.state.catalogue)}, dumps=_dumps)

    async def users(self, request: web.Request) -> web.Response:
        return web.json_response({"users": self.state.users(_int_query(request, "limit", 200)),
                                  "count": len(self.state.lists)}, dumps=_dumps)

    async def user_list(self, request: web.Request) -> web.Response:
        user = request.match_info["user"]
        rec = self.state.latest(user)
        if rec is not None:
            return web.json_response({**self.state.enrich(rec), "source": "realtime"}, dumps=_dumps)
        try:  # no list on the topic yet: the worker's answer (its hot-items fallback)
            data = await self.worker_get(f"/recommendations/{user}/")
        except Exception as exc:  # noqa: BLE001
            return web.json_response({"user": user, "items": [], "source": "none",
                                      "error": f"{type(exc).__name__}: {exc}"}, dumps=_dumps)
        enriched = self.state.enrich({**data, "user": user})
        return web.json_response({**enriched, "source": data.get("source", "worker")}, dumps=_dumps)

    async def stream_user(self, request: web.Request) -> web.StreamResponse:
        user = request.match_info["user"]
        queue = self.hub.watch(user)  # before the first send: no list can slip between
        resp = None
        try:
            resp = await self.sse_response(request)
            rec = self.state.latest(user)
            await resp.write(sse("current", self.state.enrich(rec) if rec else {"user": user, "items": []}))
            while not self.stopping.is_set():
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    message = b": keepalive\n\n"
                if not message:  # the service stops
                    break
                await resp.write(message)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.hub.unwatch(user, queue)
        return resp if resp is not None else web.Response(status=503)

    async def sse_response(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        await resp.write(b"retry: 2000\n\n")
        return resp

    def dashboard_data(self) -> dict:
        now = time.time()
        data = self.state.snapshot(now)
        worker = self.worker
        metrics = worker.get("metrics") or {}
        per_s, counters = metrics.get("per_second") or {}, metrics.get("counters") or {}
        health = worker.get("health") or {}
        data["worker"] = {
            "url": self.worker_url, "ok": worker.get("ok", False), "error": worker.get("error"),
            "ratings_per_s": per_s.get("ratings.accepted"), "events_per_s": per_s.get("events.accepted"),
            "lists_per_s": per_s.get("lists.sent"), "dead_letters_per_s": per_s.get("dead_letters"),
            "ratings_total": counters.get("ratings.accepted", 0), "events_total": counters.get("events.accepted", 0),
            "lists_total": counters.get("lists.sent", 0), "dead_letters_total": counters.get("dead_letters", 0),
            "model_version": health.get("model_version"), "model_items": health.get("model_items"),
            "model_blend": health.get("model_blend"), "learned": health.get("learned"),
            "partitions": health.get("ratings_partitions"), "uptime_s": metrics.get("uptime_s"),
            "model_age_s": round(now - health["model_trained_at"], 1) if health.get("model_trained_at") else None,
        }
        data["group"] = {"members": self.group["members"], "error": self.group.get("error"),
                         "lag": {t: {str(p): n for p, n in parts.items()} for t, parts in self.group["lag"].items()},
                         "lag_total": sum(n for parts in self.group["lag"].values() for n in parts.values())}
        data["ready"] = dict(self.ready)
        return data

    async def dashboard(self, request: web.Request) -> web.Response:
        return web.json_response(self.dashboard_data(), dumps=_dumps)

    async def stream_dashboard(self, request: web.Request) -> web.StreamResponse:
        resp = await self.sse_response(request)
        try:
            while not self.stopping.is_set():
                await resp.write(sse("dashboard", self.dashboard_data()))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), POLL_S)
        except (ConnectionResetError, ConnectionError):
            pass
        return resp

    async def collect(self, request: web.Request) -> web.Response:
        """A click of the page, forwarded to the worker with the receive time and the token."""
        if request.content_length is not None and request.content_length > MAX_COLLECT_BYTES:
            return web.json_response({"error": "too_large"}, status=413)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": "bad_json"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "bad_json", "detail": "not a JSON object"}, status=400)
        body["ts"] = time.time()
        headers = {"Content-Type": "application/json", **self.worker_headers()}
        try:
            async with self.http.post(self.worker_url + "/collect/", data=orjson.dumps(body),
                                      headers=headers) as resp:
                text = await resp.read()
                status = resp.status
        except Exception as exc:  # noqa: BLE001
            return web.json_response({"error": "worker_unreachable", "detail": f"{type(exc).__name__}: {exc}"},
                                     status=502)
        try:
            answer = orjson.loads(text)
        except orjson.JSONDecodeError:
            answer = {"detail": text.decode("utf-8", "replace")[:200]}
        return web.json_response(answer, status=status, dumps=_dumps)

    async def health(self, request: web.Request) -> web.Response:
        ready = all(self.ready.values())
        return web.json_response({"status": "ok", "ready": ready, "consumers": self.ready,
                                  "worker_ok": self.worker.get("ok", False), "users": len(self.state.lists)},
                                 status=200 if ready else 503)


    async def search(self, request: web.Request) -> web.Response:
        """``?q=words&user=u``: the catalogue's matches in their plain order, and in the
        order the worker's ``POST /rerank/`` gives for the user (None when it fails)."""
        query, user = request.query.get("q", ""), request.query.get("user", "")
        plain = self.state.search(query)
        answer = {"query": query, "user": user, "plain": [self.state.describe(i) for i in plain],
                  "personalised": None}
        if plain and user:
            try:
                async with self.http.post(self.worker_url + "/rerank/", json={"user": user, "items": plain},
                                          headers=self.worker_headers()) as resp:
                    resp.raise_for_status()
                    ranked = await resp.json()
                answer["personalised"] = [{**self.state.describe(q), "score": s} for q, s in ranked["items"]]
                answer.update(variant=ranked.get("variant"), model_version=ranked.get("model_version"))
            except Exception as exc:  # noqa: BLE001 - shown on the page; the plain order stays usable
                answer["error"] = f"{type(exc).__name__}: {exc}"
        return web.json_response(answer, dumps=_dumps)

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text (lists and events seen, dead letters, produce-to-list and
        produce-to-frontend histograms, users), or JSON when ``Accept`` prefers it."""
        if wants_json(request.path, request.headers.get("Accept", "")):
            return web.json_response({**self.state.metrics.snapshot(), "users": len(self.state.lists)}, dumps=_dumps)
        gauges = {"users": ("users with a list", [({}, float(len(self.state.lists)))]),
                  "model_info": ("the model version of the newest list (value 1)",
                                 [({"version": self.state.model_version}, 1.0)])}
        body = prometheus_text(self.state.metrics, gauges, prefix="recsys_web")
        return web.Response(body=body, headers={"Content-Type": PROMETHEUS_TYPE})


def _dumps(data) -> str:
    return orjson.dumps(data).decode()


def _int_query(request: web.Request, name: str, default: int) -> int:
    try:
        return max(1, min(int(request.query.get(name, default)), 10_000))
    except ValueError:
        return default


#: The app's :class:`WebService` (aiohttp's typed key for application state).
SERVICE = web.AppKey("service", WebService)


def create_app(conf, worker_url: str, *, grace_s: float = 1.0, consume: bool = True) -> web.Application:
    """The aiohttp application of ``recsys web``; its consumers start with the app
    (``consume=False``: none, only the HTTP side, for tests without a broker)."""
    service = WebService(conf, worker_url, grace_s=grace_s, consume=consume)
    app = web.Application(client_max_size=MAX_COLLECT_BYTES)
    app[SERVICE] = service
    routes = [("GET", "/", service.page), ("GET", "/dashboard", service.page),
              ("GET", "/metrics", service.metrics), ("GET", "/metrics/json", service.metrics),
              ("GET", "/api/catalogue", service.catalogue), ("GET", "/api/users", service.users),
              ("GET", "/api/search", service.search),
              ("GET", "/api/lists/{user}", service.user_list), ("GET", "/api/stream/{user}", service.stream_user),
              ("GET", "/api/dashboard", service.dashboard), ("GET", "/api/stream-dashboard", service.stream_dashboard),
              ("POST", "/api/collect", service.collect), ("GET", "/health", service.health)]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        if path != "/":  # with and without the trailing slash, no redirect (a POST keeps its body)
            app.router.add_route(method, path + "/", handler)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_startup.append(service.start)
    app.on_shutdown.append(service.stop)
    return app


def main(argv: list[str], conf) -> int:
    """``recsys web [--port N] [--host H] [--worker-url URL]``."""
    parser = argparse.ArgumentParser(prog="recsys web", description="the shop page and the live dashboard")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    parser.add_argument("--worker-url", default=f"http://127.0.0.1:{conf.api.web_port}",
                        help="the stream worker's HTTP API (default http://127.0.0.1:$RECSYS_WEB_PORT)")
    args = parser.parse_args(argv)
    if args.port:  # 0: any free port
        require_free_port(args.port, args.host, "recsys web --port")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(conf, args.worker_url)
    url = f"http://{args.host}:{args.port}"
    web.run_app(app, host=args.host, port=args.port, access_log=None,
                print=lambda _: print(f"recsys web: shop {url}/  dashboard {url}/dashboard  "
                                      f"(worker {args.worker_url})", flush=True))
    return 0


if __name__ == "__main__":  # python -m web.server (until the CLI has the command)
    import sys

    from app.settings import load_settings

    sys.exit(main(sys.argv[1:], load_settings()))
