"""How a long-running client of the broker starts (``recsys als-worker``, ``recsys learner``):
wait for the broker, create the topics it may be the first to use, run until SIGINT or
SIGTERM."""
from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

from app.settings import Settings


def run_service(conf: Settings, work: Callable[[asyncio.Event], Awaitable[dict]]) -> dict | None:
    """Run ``work(stop)`` once the broker answers (``stop`` is set on SIGINT or SIGTERM) and
    return what it returns; None, with one line on stderr, when no broker answers in 30 s."""
    from broker.detect import BrokerUnreachable, require_broker
    from broker.topics import create_topics

    try:
        require_broker(conf, wait_s=30.0)
    except BrokerUnreachable as exc:
        print(exc, file=sys.stderr)
        return None

    async def _main() -> dict:
        await create_topics(conf)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
                pass
        return await work(stop)

    return asyncio.run(_main())
