"""Faust's side of the project's own exactly once (``agents/transactions.py``).

Faust runs ``at_least_once`` (its transactions are not used), so two things of its
consumer must change when the realtime agent commits transactions of its own:

1. **Offsets committed elsewhere** (:func:`apply`): the ``ratings`` offsets are committed
   inside each partition's transaction. Faust's periodic commit of the same offsets would
   race with them (a commit computed before a transaction and arriving after it moves the
   group's offset back, and a restart would read committed ratings again): Faust keeps its
   bookkeeping for those topics and commits only the others.
2. **read_committed** (``fetch_wait.apply``): the worker's consumer reads re-routed ratings
   and recovers the state changelog; an aborted transaction's records are neither.
3. **A recovery that ends** (:class:`_InTransactions`): a changelog written in transactions
   ends with a commit marker, which no reader receives, so the last offset Faust's recovery
   sees stays below the highwater and it waits forever. Faust checks the consumer's
   position against the highwater only when the app runs its own transactions: the
   recovery is given a view of the app that says it does.
"""
from __future__ import annotations

from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer

from .upstream import original, replace

_external: set[str] = set()


async def _commit_offsets(self, offsets, start_new_transaction: bool = True) -> bool:
    """Faust's commit, without the offsets of topics committed in transactions (counted as
    committed, so Faust's bookkeeping moves on)."""
    elsewhere = {tp: offset for tp, offset in offsets.items() if tp.topic in _external}
    self._committed_offset.update(elsewhere)
    rest = {tp: offset for tp, offset in offsets.items() if tp.topic not in _external}
    if not rest:
        return False
    return await original(Consumer, "_commit_offsets")(self, rest, start_new_transaction=start_new_transaction)


class _InTransactions:
    """The app, except that ``in_transaction`` is true (what the recovery reads it for)."""

    in_transaction = True

    def __init__(self, app) -> None:
        object.__setattr__(self, "_app", app)

    def __getattr__(self, name: str):
        return getattr(self._app, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._app, name, value)


def _recovery_init(self, app, *args, **kwargs) -> None:
    original(Recovery, "__init__")(self, app, *args, **kwargs)
    if _external:
        self.app = _InTransactions(app)


def apply(external_commits: set[str]) -> None:
    """Leave the offsets of ``external_commits`` (topic names) to their transactions (the
    last call wins; an empty set restores Faust's commits)."""
    _external.clear()
    _external.update(external_commits)
    replace(Consumer, "_commit_offsets", _commit_offsets)
    replace(Recovery, "__init__", _recovery_init)
