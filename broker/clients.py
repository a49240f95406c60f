"""Every Kafka client of the project is built here, from one :class:`Settings`.

The one place that applies the security settings (SASL/SSL pass through to every
client, benchmarks included), the fetch wait, and the broker workarounds, which are
chosen by asking the broker what it is (``broker/detect.py``), never by its URL.
Faust builds its own clients from the same settings (``app/app.py``).

Usage::

    clients = KafkaClients(conf)
    producer = await clients.producer("bulk")     # started; stop it when done
    consumer = await clients.consumer("ratings", group_id=None)
    ends = await clients.end_offsets(consumer, partitions)
"""
from __future__ import annotations

from broker import tansu_workarounds
from broker.detect import KAFKA, TANSU, detect_engine

#: Producer profiles: "latency" sends at once (interactive tools, tests), "bulk" batches
#: (loaders, the ALS publisher, benchmark drivers), "durable" batches a little. Every one
#: waits for the in-sync replicas (a write acknowledged by a leader that then dies is not
#: lost) and, on Apache Kafka, is idempotent (a retried send never writes a second copy;
#: Tansu refuses producer ids: ../shared/EMBEDDED_BROKER.md).
PRODUCER_PROFILES = {
    "latency": {"linger_ms": 0, "acks": "all"},
    "bulk": {"linger_ms": 20, "acks": "all", "max_batch_size": 256 * 1024},
    "durable": {"linger_ms": 5, "acks": "all"},
}


def security_kwargs(conf) -> dict:
    """aiokafka keyword arguments for SASL/SSL (only ``security_protocol`` for PLAINTEXT)."""
    kw: dict = {"security_protocol": conf.kafka.security_protocol}
    if conf.kafka.security_protocol in {"SSL", "SASL_SSL"}:
        from aiokafka.helpers import create_ssl_context

        kw["ssl_context"] = create_ssl_context(cafile=conf.kafka.ssl_cafile or None)
    if conf.kafka.security_protocol.startswith("SASL"):
        kw.update(sasl_mechanism=conf.kafka.sasl_mechanism, sasl_plain_username=conf.kafka.sasl_username,
                  sasl_plain_password=conf.kafka.sasl_password.value)
    return kw


class KafkaClients:
    """Builds started aiokafka clients for one deployment (``conf``)."""

    def __init__(self, conf) -> None:
        self.conf = conf
        self._engine = None if conf.kafka.broker_engine == "auto" else conf.kafka.broker_engine

    def common(self) -> dict:
        return {"bootstrap_servers": self.conf.kafka.bootstrap_servers, **security_kwargs(self.conf)}

    async def engine(self) -> str:
        """``"tansu"`` or ``"kafka"``: ``RECSYS_BROKER_ENGINE``, or asked of the broker once."""
        if self._engine is None:
            self._engine = await detect_engine(self.conf.kafka.bootstrap_servers, security_kwargs(self.conf))
        return self._engine

    async def producer(self, profile: str = "latency", **overrides):
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(**self.common(), **{**await self.producer_options(profile), **overrides})
        await producer.start()
        return producer

    async def consumer(self, *topics: str, **overrides):
        """A started consumer; by default outside any group, from the earliest offset."""
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(*topics, **self.common(), **{**await self.consumer_options(), **overrides})
        await consumer.start()
        return consumer

    async def consumer_options(self) -> dict:
        """What every consumer of the project gets (before the caller's overrides)."""
        # The fetch wait: aiokafka's default is 500 ms, and a partition just drained waits for
        # the fetch in flight (app/faust_patches/fetch_wait.py): a reader of lists wants them sooner.
        # Under exactly_once an aborted transaction's lists and states are not there to read.
        options = {"group_id": None, "enable_auto_commit": False, "auto_offset_reset": "earliest",
                   "fetch_max_wait_ms": self.conf.worker.fetch_wait_ms,
                   "isolation_level": "read_committed" if self.conf.worker.processing_guarantee == "exactly_once"
                   else "read_uncommitted"}
        if await self.engine() == TANSU:
            options.update(fetch_max_wait_ms=tansu_workarounds.FETCH_MAX_WAIT_MS,
                           session_timeout_ms=int(tansu_workarounds.SESSION_TIMEOUT_S * 1000),
                           heartbeat_interval_ms=int(tansu_workarounds.HEARTBEAT_INTERVAL_S * 1000))
        return options

    async def producer_options(self, profile: str) -> dict:
        """What every producer of the profile gets (before the caller's overrides)."""
        return {**PRODUCER_PROFILES[profile], "enable_idempotence": await self.engine() == KAFKA}

    async def admin(self):
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**self.common())
        await admin.start()
        return admin

    async def end_offsets(self, consumer, partitions) -> dict:
        """Log-end offsets; on Tansu from Fetch high watermarks (its ListOffsets is wrong)."""
        if await self.engine() == TANSU:
            return await tansu_workarounds.fetch_high_watermarks(consumer._client, list(partitions))
        return await consumer.end_offsets(list(partitions))


__all__ = ["KAFKA", "PRODUCER_PROFILES", "TANSU", "KafkaClients", "security_kwargs"]
