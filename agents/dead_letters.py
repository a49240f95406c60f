"""Sending rejected input to the ``dead-letters`` topic, with the reason, and counting it."""
from __future__ import annotations

import base64
import logging
import time

from app import metrics
from app.records import DeadLetter, InvalidInput, to_json_bytes
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


async def process_or_dead_letter(event, handle) -> None:
    """Run ``await handle(event)``; invalid input, or any unexpected error, dead-letters the
    message with its reason instead of stopping the agent (nothing is lost: the dead
    letter holds the original bytes and position)."""
    try:
        await handle(event)
    except InvalidInput as exc:
        await send_dead_letter(event, exc.reason, exc.detail)
    except Exception as exc:
        log.exception("could not process %s[%s]@%s", event.message.topic, event.message.partition,
                      event.message.offset)
        await send_dead_letter(event, "internal_error", repr(exc))
