"""A batch that cannot be published is never committed (agents/batches.py)."""
from __future__ import annotations

import asyncio
import types

import pytest

from agents import batches
from app.faust_patches import at_least_once
from tests.unit.test_faust_patches import consumer_stub, message


def test_a_failed_publish_refuses_every_ack_of_the_batch(monkeypatch):
    consumer = consumer_stub(generation=1)
    events = [types.SimpleNamespace(message=message(offset, 1)) for offset in (10, 11, 12)]
    consumer._unacked_messages.update(e.message for e in events)
    monkeypatch.setattr(batches, "app", types.SimpleNamespace(in_transaction=False, consumer=consumer))

    async def broker_refuses(self):
        raise ConnectionError("broker gone")

    monkeypatch.setattr(batches.Batch, "_publish_in_record_batches", broker_refuses)
    with pytest.raises(ConnectionError):
        asyncio.run(batches.Batch(input_partitions=1).publish(events))
    for event in events:  # what take_events does after the agent's body
        at_least_once.ack(consumer, event.message)
    assert consumer._acked[events[0].message.tp] == []  # nothing committable: read again after the restart
    assert not consumer._unacked_messages  # and nothing waits for these acks
