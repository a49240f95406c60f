"""Every patch of Faust internals, in one place (faust-streaming 0.15.3).

- :mod:`.at_least_once`: acks of unprocessed messages and unverified offset gaps
  let commits pass ratings that were never processed (faust-streaming #606, #316;
  robinhood/faust #559). Applied on every broker.
- :mod:`.changelog_rebuild`: a broker that lost its data (memory-only Tansu
  restarted) crash-loops a restarted worker on ``ConsistencyError``; the local state
  is kept and written back to the empty changelog instead.
- :mod:`.quiet_monitor`: a Monitor without per-message hooks (speed; an App setting).
- ``app/faust_patches/tansu.py``: workarounds for the embedded Tansu broker only.

Each has tests in ``tests/test_faust_patches.py`` that fail without it.
"""
from __future__ import annotations

from . import at_least_once, changelog_rebuild
from .quiet_monitor import QuietMonitor

__all__ = ["QuietMonitor", "apply"]


def apply(metrics) -> None:
    """Install the patches that apply on every broker (idempotent); they count into ``metrics``."""
    at_least_once.apply(metrics)
    changelog_rebuild.apply(metrics)
