"""Sending rejected input to the ``dead-letters`` topic, with the reason, and counting it.

A dead letter holds the rejected bytes twice (as text and as base64), so a big bad
message would make a letter over the producer's 1 MB limit: the send would fail, the
agent would stop and the message would be lost. Letters therefore keep at most
``RECSYS_DEAD_LETTER_MAX_BYTES`` of the original (``truncated``, ``original_size``).
"""
from __future__ import annotations

import base64
import logging
import time

from app import metrics
from app.app import settings
from app.records import DeadLetter, InvalidInput, printable, to_json_bytes
from app.topics import dead_letters_topic

log = logging.getLogger(__name__)

#: Bytes of the message key kept (ours are user ids of at most 256 characters).
KEY_MAX_BYTES = 1024


def kept_prefix(data: bytes, max_bytes: int) -> bytes:
    """The first ``max_bytes`` of ``data``, minus the start of a UTF-8 character cut in two
    (so the text and base64 copies of a letter hold the same bytes)."""
    if len(data) <= max_bytes:
        return data
    cut = max_bytes
    # data[cut] is the first byte left out; a continuation byte (10xxxxxx) means its
    # character began before the cut: leave out that character's 1-3 earlier bytes too.
    while cut > max(0, max_bytes - 3) and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return data[:cut]


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def dead_letter_for(event, reason: str, detail: str = "", *, max_bytes: int | None = None) -> DeadLetter:
    """Build the dead letter of a Faust event (its message's bytes, up to ``max_bytes``, and position)."""
    message = event.message
    value: bytes = message.value if isinstance(message.value, bytes) else (message.value or b"")
    kept = kept_prefix(value, settings.input.dead_letter_max_bytes if max_bytes is None else max_bytes)
    detail = printable(detail)[:400]
    if len(kept) < len(value):
        detail += f" [value truncated: first {len(kept)} of {len(value)} bytes kept]"
    key = message.key
    if isinstance(key, bytes) and len(key) > KEY_MAX_BYTES:
        key = kept_prefix(key, KEY_MAX_BYTES)
        detail += f" [key truncated to {len(key)} bytes]"
    return DeadLetter(
        topic=message.topic, partition=message.partition, offset=message.offset, reason=reason,
        detail=detail, value=_text(kept), value_b64=base64.b64encode(kept).decode(),
        key=key.decode("utf-8", "replace") if isinstance(key, bytes) else key, rejected_at=time.time(),
        truncated=len(kept) < len(value), original_size=len(value),
    )


async def send_dead_letter(event, reason: str, detail: str = "") -> None:
    letter = dead_letter_for(event, reason, detail)
    metrics.count(f"rejected.{letter.topic}.{reason}")
    metrics.count("dead_letters")
    key = event.message.key
    if isinstance(key, bytes):  # the Kafka key of the letter counts towards its size too
        key = kept_prefix(key, KEY_MAX_BYTES)
    await dead_letters_topic.send(key=key, value=to_json_bytes(letter))


async def process_or_dead_letter(event, handle) -> None:
    """Run ``await handle(event)``; invalid input, or any unexpected error, dead-letters the
    message with its reason instead of stopping the agent (nothing is lost: the dead
    letter holds the original bytes, or a prefix of huge ones, and the position)."""
    try:
        await handle(event)
    except Exception as exc:  # noqa: BLE001  any failure of a handler is a dead letter, never a stopped agent
        await dead_letter_error(event, exc)


async def dead_letter_error(event, exc: Exception) -> None:
    """Dead-letter ``event`` for ``exc``: its reason if it is :class:`InvalidInput`, else
    ``internal_error`` (logged with its traceback: a bug, not bad input)."""
    if isinstance(exc, InvalidInput):
        await send_dead_letter(event, exc.reason, exc.detail)
        return
    log.error("could not process %s[%s]@%s", event.message.topic, event.message.partition,
              event.message.offset, exc_info=exc)
    await send_dead_letter(event, "internal_error", repr(exc))
