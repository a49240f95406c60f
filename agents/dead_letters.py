"""Sending rejected input to the ``dead-letters`` topic, with the reason, and counting it."""
from __future__ import annotations

import base64
import logging
import time

from app import metrics
from app.records import DeadLetter, to_json_bytes
from app.topics import dead_letters_topic

log = logging.getLogger(__name__)


def dead_letter_for(event, reason: str, detail: str = "") -> DeadLetter:
    """Build the dead letter of a Faust event (its message's exact bytes and position)."""
    message = event.message
    value: bytes = message.value if isinstance(message.value, bytes) else (message.value or b"")
    key = message.key
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return DeadLetter(
        topic=message.topic, partition=message.partition, offset=message.offset, reason=reason,
        detail=detail[:500], value=text, value_b64=base64.b64encode(value).decode(),
        key=key.decode("utf-8", "replace") if isinstance(key, bytes) else key, rejected_at=time.time(),
    )


async def send_dead_letter(event, reason: str, detail: str = "") -> None:
    letter = dead_letter_for(event, reason, detail)
    metrics.count(f"rejected.{letter.topic}.{reason}")
    metrics.count("dead_letters")
    await dead_letters_topic.send(key=event.message.key, value=to_json_bytes(letter))
