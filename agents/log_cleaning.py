"""The paper's log-collection module: ``raw-logs`` lines -> ``ratings`` / ``user-events``.

Lines without our prefixes are not ours and are skipped (counted); lines with a prefix
that do not parse go to ``dead-letters`` with the reason.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from app.records import Rating, parse_log_line, to_json_bytes

if TYPE_CHECKING:
    from app.worker import Worker


def register(worker: Worker) -> None:
    @worker.app.agent(worker.topics.raw_logs, name="agents.log_cleaning.clean_logs")
    async def clean_logs(stream):
        async for event in stream.events():
            await worker.dead_letters.process(event, lambda e: forward_log_line(worker, e))


async def forward_log_line(worker: Worker, event) -> None:
    conf = worker.settings
    record = parse_log_line(event.value, rating_min=conf.input.rating_min, rating_max=conf.input.rating_max,
                            max_future_s=conf.input.max_future_s)
    if record is None:
        worker.metrics.count("raw_logs.ignored")
        return
    topic = worker.topics.ratings if isinstance(record, Rating) else worker.topics.events
    await topic.send(key=record.user.encode(), value=to_json_bytes(record))
    worker.metrics.count(f"raw_logs.forwarded.{topic.get_topic_name()}")
