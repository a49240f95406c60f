"""The one place that touches private API of faust-streaming, mode and aiokafka.

Domain code (agents, tables, views) uses only what this module exports:

- :func:`check_upstream`: refuse to start when the installed faust-streaming, mode or
  aiokafka is not what the patches were checked against (``upstream.py``);
- :func:`apply`: install the patches, explicitly, when the worker is built (importing
  any module of this package patches nothing);
- :func:`is_current`: may a message still be processed and acked (no rebalance since it
  was fetched)?
- :class:`BatchWriter`: the realtime agent's output, sent as record batches and written
  to a table's store through what Faust started;
- :class:`QuietMonitor`: Faust's Monitor without its per-message hooks (an App setting).

The patches (``UPSTREAM.md`` lists each with its upstream issue and when it can go):

- :mod:`.at_least_once`: acks of unprocessed messages, unverified offset gaps and stream
  buffers cleared after a recovery let commits pass ratings that were never processed.
- :mod:`.changelog_rebuild`: a broker that lost its data (memory-only Tansu restarted)
  crash-loops a restarted worker on ``ConsistencyError``; the local state is kept and
  written back to the empty changelog instead.
- :mod:`.fetch_wait`: Faust's 1500 ms fetch wait delays messages on quiet partitions
  (and the worker's consumer reads ``read_committed`` under exactly once).
- :mod:`.exactly_once`: Faust does not commit the offsets the project's own transactions
  do, and its recovery ends past their commit markers.
- :mod:`.producer`: the worker's producer is idempotent on Apache Kafka.
- :mod:`.tansu`: workarounds for the embedded Tansu broker only.

Each has tests in ``tests/unit/test_faust_patches.py`` that fail without it.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .upstream import UpstreamChanged, check_upstream

if TYPE_CHECKING:
    from app.metrics import Metrics

__all__ = ["BatchWriter", "QuietMonitor", "UpstreamChanged", "apply", "check_upstream", "is_current"]

#: Imported on first use: the guard (and the command line, which names UpstreamChanged)
#: must work without importing Faust, before anything imports a private name of it.
_FROM_FAUST = {"BatchWriter": ".batch_writer", "QuietMonitor": ".quiet_monitor", "is_current": ".at_least_once"}


def __getattr__(name: str):
    if name in _FROM_FAUST:
        return getattr(importlib.import_module(_FROM_FAUST[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def apply(*, tansu: bool, value_resets: Mapping[str, Callable[[bytes], bytes]], metrics: Metrics,
          guard: bool = True, fetch_wait_ms: int = 20, external_commits: set[str] = frozenset()) -> None:
    """Check upstream (:func:`check_upstream`, ``guard`` = ``RECSYS_FAUST_GUARD``), then
    install the patches (idempotent): those for every broker, and Tansu's if ``tansu``
    (never undone).

    ``value_resets``: table name -> function applied to each raw value a lost changelog
    gets back from the local store (:mod:`.changelog_rebuild`): offsets of the lost log
    mean nothing in the new one. ``metrics``: the worker's, where the patches count what
    they did (refused acks, real gaps, skipped blocks caught, keys written back).
    ``fetch_wait_ms``: the worker consumer's fetch wait (:mod:`.fetch_wait`; Tansu's own
    value on Tansu). ``external_commits``: topics whose offsets the project's own
    transactions commit (:mod:`.exactly_once`; the worker then reads ``read_committed``).
    """
    check_upstream(guard)
    from broker.tansu_workarounds import FETCH_MAX_WAIT_MS as TANSU_FETCH_WAIT_MS

    from . import at_least_once, changelog_rebuild, exactly_once, fetch_wait, producer
    from . import tansu as tansu_patch

    at_least_once.apply(metrics)
    changelog_rebuild.apply(value_resets, metrics)  # after at_least_once: it wraps its on_recovery_completed
    fetch_wait.apply(TANSU_FETCH_WAIT_MS if tansu else fetch_wait_ms, read_committed=bool(external_commits))
    exactly_once.apply(set(external_commits))
    producer.apply(idempotent=not tansu)
    if tansu:
        tansu_patch.apply()
