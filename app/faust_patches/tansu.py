"""Faust's aiokafka driver patched for the Tansu stand-in, and ONLY for it.

Installed by ``app.faust_patches.apply(tansu=True)`` when the broker that answers is Tansu
(detected: ``broker/detect.py``); a real Kafka cluster runs stock Faust. The settings and the
Fetch-based end offsets are in ``broker/tansu_workarounds.py`` (no Faust there).

1. Tansu holds a JoinGroup reply for session_timeout/2: short session (6 s) and
   heartbeat (1 s) bring the first processed message from ~31 s to ~4.5 s.
2. Tansu's ListOffsets(LATEST) returns the newest batch's base offset + 1 instead of the
   log end. Faust uses it as the changelog "highwater" during table recovery, which
   crashes a restart (``ConsistencyError``) or silently drops records. We take the end
   offset from a Fetch response's high watermark instead, which Tansu gets right.
3. Fetch long-polls sleep remaining/2 between polls, so latency is ~fetch_max_wait/4..1/2:
   the fetch wait is 100 ms (below ~20 ms consumers can stall), set by ``fetch_wait.py``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from broker.tansu_workarounds import FETCH_MAX_WAIT_MS, SESSION_TIMEOUT_S, fetch_high_watermarks

from .upstream import replace

log = logging.getLogger(__name__)

_applied = False


def apply() -> None:
    """Patch Faust's aiokafka driver for Tansu (idempotent)."""
    global _applied
    if _applied:
        return
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread

    async def _highwaters(self, partitions) -> Mapping:
        consumer = self._ensure_consumer()
        if self.consumer.in_transaction:  # pragma: no cover - we run at_least_once
            return {tp: consumer.last_stable_offset(tp) for tp in partitions}
        return await fetch_high_watermarks(consumer._client, list(partitions))

    replace(thread_cls, "_highwaters", _highwaters)
    _applied = True
    log.info("applied Tansu workarounds (session %ss, fetch wait %sms, fetch-based highwaters)",
             SESSION_TIMEOUT_S, FETCH_MAX_WAIT_MS)
