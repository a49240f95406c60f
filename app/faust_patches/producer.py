"""The worker's producer: acks=all and idempotent on Apache Kafka.

Faust configures its aiokafka producer that way only for its own transactions
(``Producer._settings_extra``), which are not used. Without idempotence a record batch
the sender retries after a leader change can be written twice: 22 duplicate lists in one
of three runs of the broker-kill drill (``benchmarks/failover_bench.py``). Not on Tansu,
which refuses producer ids (../shared/EMBEDDED_BROKER.md).
"""
from __future__ import annotations

from faust.transport.drivers.aiokafka import Producer

from .upstream import original, replace

_idempotent = [False]


def _settings_extra(self) -> dict:
    return {"acks": "all", "enable_idempotence": True} if _idempotent[0] else original(Producer, "_settings_extra")(self)


def apply(idempotent: bool) -> None:
    """Producers created from now on are idempotent or as Faust makes them (last call wins)."""
    _idempotent[0] = idempotent
    replace(Producer, "_settings_extra", _settings_extra)
