"""``recsys load``: stream a dataset file into its topic, with a progress bar.

Parsing is ``datatools/datasets.py``'s (the one place formats are read); this module only
produces. Rating formats go to ``ratings``, behaviour formats to ``user-events``; every
message is keyed by user id so one user's events stay in order on one partition.
"""
from __future__ import annotations

import asyncio
import collections
import sys
import time

from app.records import Rating, UserEvent, to_json_bytes
from app.settings import Settings
from broker.clients import KafkaClients
from datatools.datasets import SCALES, RatingRow, iter_rows


def row_to_message(row) -> tuple[bytes, bytes]:
    """(key, value) bytes of one parsed row, in the wire format of app/records.py."""
    if isinstance(row, RatingRow):
        record = Rating(user=row.user, item=row.item, rating=float(row.rating), ts=float(row.ts))
    else:
        record = UserEvent(user=row.user, item=row.item, event=row.event, ts=float(row.ts), category=row.category)
    return row.user.encode(), to_json_bytes(record)


async def load_file(path: str, fmt: str, *, limit: int | None = None, rate: float | None = None,
                    conf: Settings, topic: str | None = None, progress: bool = True) -> dict:
    """Produce every valid row of ``path`` (at most ``limit``, reading at most ``limit``
    bad lines); return ``{"sent", "skipped": {reason: n}, ...}``.

    ``rate`` caps events per second (a replay at a visible pace); ``None`` is as fast as
    the broker takes them.
    """
    scale = SCALES.get(fmt)
    if scale and (scale[0] < conf.input.rating_min or scale[1] > conf.input.rating_max):
        # Not an error (the file may hold a subset), but the workers would dead-letter
        # every rating outside their scale: say so before sending 100k of them.
        print(f"warning: {fmt} ratings are on {scale[0]:g}..{scale[1]:g} but the workers accept "
              f"{conf.input.rating_min:g}..{conf.input.rating_max:g} (RECSYS_RATING_MIN/MAX): ratings outside it will be "
              "dead-lettered", file=sys.stderr)
    skipped: collections.Counter = collections.Counter()
    producer = await KafkaClients(conf).producer("bulk")
    sent, started = 0, time.monotonic()
    topics_used: collections.Counter = collections.Counter()
    try:
        pending = []
        for row in iter_rows(path, fmt, limit=limit, skipped=skipped, progress=progress, max_bad=limit):
            key, value = row_to_message(row)
            target = topic or (conf.topics.ratings if isinstance(row, RatingRow) else conf.topics.events)
            pending.append(await producer.send(target, value=value, key=key))
            topics_used[target] += 1
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    elapsed = time.monotonic() - started
    return {"sent": sent, "skipped": dict(skipped), "skipped_total": sum(skipped.values()),
            "topics": dict(topics_used), "seconds": round(elapsed, 2),
            "per_second": round(sent / elapsed, 1) if elapsed else None}
