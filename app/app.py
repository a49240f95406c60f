"""The Faust application of a worker, made from one :class:`Settings`.

:func:`create_app` turns settings into a ``faust.App`` (broker, credentials, store,
producer and consumer tuning, the web server and its token check); ``app/worker.py``
builds the worker around it (topics, tables, agents, views). Importing this module
creates nothing and connects to nothing.
"""
from __future__ import annotations

import hmac
import logging

import faust
from aiohttp import web

from app import faust_patches
from app.metrics import Metrics
from app.settings import Settings
from broker import tansu_workarounds
from broker.clients import security_kwargs
from broker.detect import TANSU, BrokerUnreachable, require_broker

log = logging.getLogger(__name__)

#: Paths open to anyone even with ``RECSYS_API_TOKEN`` set: health checks of load
#: balancers and process managers (and ``WorkerProcess.wait_ready``) carry no token.
PUBLIC_PATHS = frozenset({"/health/", "/health", "/health/live/", "/health/live"})


def broker_credentials(conf: Settings):
    """Faust credentials for SASL/SSL, or None for PLAINTEXT."""
    protocol = conf.kafka.security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    ssl_context = security_kwargs(conf).get("ssl_context")
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=conf.kafka.sasl_username,
            password=conf.kafka.sasl_password.value,
            mechanism=conf.kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)


def token_middleware(token: str, metrics: Metrics):
    """aiohttp middleware: every request but :data:`PUBLIC_PATHS` needs ``Authorization:
    Bearer <token>``. It runs before any view, so also before Faust's ``table_route``
    forwards a request to the owning worker (which gets the same header and checks again)."""
    expected = token.encode()

    @web.middleware
    async def require_token(request, handler):
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if not scheme:
            return _unauthorized(metrics, "missing_token", "send Authorization: Bearer <RECSYS_API_TOKEN>")
        # aiohttp decodes headers with surrogateescape; compare_digest: no timing leak.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(errors="surrogateescape"),
                                                                 expected):
            return _unauthorized(metrics, "bad_token", "wrong token or not a Bearer token")
        return await handler(request)

    return require_token


def _unauthorized(metrics: Metrics, reason: str, detail: str) -> web.Response:
    metrics.count("api.unauthorized")
    return web.json_response({"error": reason, "detail": detail}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="recsys"'})


def web_settings(conf: Settings, metrics: Metrics) -> dict:
    """Faust web settings: its own views off unless ``debug_endpoints``, and the token check."""
    debug = conf.api.debug_endpoints
    # /table/<name>/<key>/ serves any user's raw state, /router/ the workers' URLs and
    # partitions, / and /assignment/ statistics, /graph/ the service tree. table_route
    # does not need /router/: it asks the partition assignor (faust/app/router.py).
    options = {"middlewares": [token_middleware(conf.api.api_token.value, metrics)]} if conf.api.api_token else {}
    return {"web_router_enabled": debug, "web_tables_enabled": debug, "web_stats_enabled": debug,
                "web_graph_enabled": debug, "web_application_options": options}


def broker_engine(conf: Settings) -> str:
    """``RECSYS_BROKER_ENGINE``, or asked of the broker (``recsys worker`` waits for the
    broker first, so the question is answered; elsewhere an unreachable broker gets no
    workarounds, with a warning)."""
    if conf.kafka.broker_engine != "auto":
        return conf.kafka.broker_engine
    try:
        return require_broker(conf, wait_s=0)
    except BrokerUnreachable as exc:
        log.warning("%s: assuming Apache Kafka (no Tansu workarounds)", exc)
        return "kafka"


def create_app(conf: Settings, metrics: Metrics | None = None) -> faust.App:
    """The ``faust.App`` of ``conf`` (patches are applied by ``app/worker.py``, not here)."""
    extra = {}
    if broker_engine(conf) == TANSU:
        extra.update(broker_session_timeout=tansu_workarounds.SESSION_TIMEOUT_S,
                     broker_heartbeat_interval=tansu_workarounds.HEARTBEAT_INTERVAL_S)
    if conf.kafka.session_timeout_s:
        extra["broker_session_timeout"] = conf.kafka.session_timeout_s
    if conf.kafka.heartbeat_interval_s:
        extra["broker_heartbeat_interval"] = conf.kafka.heartbeat_interval_s
    return faust.App(
        conf.worker.app_id,
        broker=conf.kafka.broker_url,
        broker_credentials=broker_credentials(conf),
        store=conf.worker.store,
        datadir=str(conf.data_dir / "worker"),
        topic_partitions=conf.kafka.partitions,
        topic_replication_factor=conf.kafka.replication,
        # Faust's own transactions are not used (faust-streaming #323, #517, #177): under
        # RECSYS_PROCESSING_GUARANTEE=exactly_once the realtime agent commits its own, one
        # per input partition (agents/transactions.py).
        processing_guarantee="at_least_once",
        # linger: Faust's default is 0; a few ms batch the lists (docs/RESULTS.md).
        producer_linger=conf.worker.producer_linger_ms / 1000.0,
        producer_max_batch_size=conf.worker.producer_batch_bytes,
        # Bounded polls keep the stream buffer from filling (see WorkerSettings.max_poll_records).
        broker_max_poll_records=conf.worker.max_poll_records,
        web_host=conf.api.web_host,
        web_port=conf.api.web_port,
        web_bind=conf.api.web_host,
        **web_settings(conf, metrics or Metrics()),
        # Faust's Monitor minus its per-message hooks; our own counters are /metrics/.
        Monitor=faust_patches.QuietMonitor,
        key_serializer="raw",
        value_serializer="json",
        **extra,
    )
