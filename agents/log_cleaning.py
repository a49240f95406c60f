"""The paper's log-collection module: ``raw-logs`` lines -> ``ratings`` / ``user-events``.

Lines without our prefixes are not ours and are skipped (counted); lines with a prefix
that do not parse go to ``dead-letters`` with the reason.
"""
from __future__ import annotations

from agents.dead_letters import process_or_dead_letter
from app import metrics
from app.app import app, settings
from app.records import Rating, parse_log_line, to_json_bytes
from app.topics import events_topic, ratings_topic, raw_logs_topic


@app.agent(raw_logs_topic)
async def clean_logs(stream):
    async for event in stream.events():
        await process_or_dead_letter(event, forward_log_line)


async def forward_log_line(event) -> None:
    record = parse_log_line(event.value, rating_min=settings.input.rating_min, rating_max=settings.input.rating_max,
                            max_future_s=settings.input.max_future_s)
    if record is None:
        metrics.count("raw_logs.ignored")
        return
    topic = ratings_topic if isinstance(record, Rating) else events_topic
    await topic.send(key=record.user.encode(), value=to_json_bytes(record))
    metrics.count(f"raw_logs.forwarded.{topic.get_topic_name()}")
