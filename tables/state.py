"""The per-user state the realtime agent keeps, as one typed, versioned value.

Stored in the ``user_state`` table (``tables/definitions.py``) and its changelog as one
msgpack array (schema 3, :meth:`UserState.to_bytes`)::

    [3, recent, rated, items, because, model_version, ts, event, offset, explored]

    recent   [[item, rating, ts], ...]   the K most recent ratings, oldest first
    rated    [item, ...]                 items rated, most recent last (bounded)
    items    [[item, score], ...]        the user's list (``recs``; None: no list yet)
    because  [...]                       per listed item, the place in ``recent`` of the
                                         item that put it there (or the item, or None)
    offset                               source offset of the last applied rating

The list's model version, time, triggering event and explored slot follow it. About half
the bytes of the same state as the JSON object of schema 2 (``{"schema": 2, "recent":
..., "recs": {"items": ..., "because": {item: item}, ...}, "offset": ...}``), which still
loads, as does schema 1 (no ``schema`` key, no ``offset``: written before the field
existed); :meth:`UserState.to_value` is that object (the query API and the Quix Streams
peer, whose store is JSON, use it).

``offset`` is the offset, on the user's own partition of ``ratings``, of the last
rating applied to this state: a message at or below it is a redelivery (at-least-once)
and changes nothing, however old it is (Quix Streams keeps the same per changelog).

:meth:`UserState.apply` is the one place a ranker's step is applied to a user's state:
the realtime agent, the streaming evaluation, the failover drills' expected lists and
the benchmarks' peers all go through it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

import msgpack
import orjson

from ranking.features import KeptCandidates
from ranking.learned import Examples, LearnedRanker
from ranking.model import Model
from ranking.protocol import Interaction, Ranker, Step

#: The schema :meth:`UserState.to_bytes` writes.
SCHEMA = 3

#: The item of a history or list entry.
_first = itemgetter(0)


@dataclass
class UserState:
    recent: list = field(default_factory=list)
    rated: list = field(default_factory=list)
    recs: dict = field(default_factory=dict)
    offset: int | None = None

    @classmethod
    def from_value(cls, value: dict[str, Any] | None) -> UserState:
        """Load a stored value (any schema so far; ``None`` or ``{}`` is a new user)."""
        value = value or {}
        return cls(recent=list(value.get("recent", [])), rated=list(value.get("rated", [])),
                   recs=dict(value.get("recs", {})), offset=value.get("offset"))

    def to_value(self) -> dict[str, Any]:
        """The state as the JSON object of schema 2."""
        return {"schema": 2, "recent": self.recent, "rated": self.rated, "recs": self.recs, "offset": self.offset}

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> UserState:
        """Load a stored value: schema 3 (msgpack), or a JSON object of an older schema
        (empty or None: a new user)."""
        if not raw:
            return cls()
        if raw[:1] == b"{":
            return cls.from_value(orjson.loads(raw))
        schema, recent, rated, items, because, version, ts, event, offset, explored = msgpack.unpackb(raw)
        if schema != SCHEMA:
            raise ValueError(f"user state of schema {schema!r}: this release reads {SCHEMA} and older")
        recs = {}
        if items is not None:
            if not isinstance(because, dict):
                names = list(map(_first, recent))
                because = {q: names[b] if isinstance(b, int) else b
                           for q, b in zip(map(_first, items), because, strict=True) if b is not None}
            recs = {"items": items, "model_version": version, "ts": ts, "because": because, "event": event}
            if explored is not None:
                recs["explored"] = explored
        return cls(recent=recent, rated=rated, recs=recs, offset=offset)

    def to_bytes(self) -> bytes:
        """The state as stored (schema 3): ``because`` as places in ``recent`` where it can."""
        recs = self.recs
        if not recs:
            return msgpack.packb([SCHEMA, self.recent, self.rated, None, None, None, None, None, self.offset, None])
        items, because = recs.get("items", []), recs.get("because") or {}
        if because.keys() <= set(map(_first, items)):
            place = {q: j for j, q in enumerate(map(_first, self.recent))}  # a repeated item: its newest
            because = [None if b is None else place.get(b, b) for b in map(because.get, map(_first, items))]
        return msgpack.packb([SCHEMA, self.recent, self.rated, items, because, recs.get("model_version"),
                              recs.get("ts"), recs.get("event"), self.offset, recs.get("explored")])

    @property
    def last_list(self) -> list:
        return self.recs.get("items", [])

    def already_applied(self, offset: int) -> bool:
        """True for a redelivered message: its offset is not after the last applied one."""
        return self.offset is not None and offset <= self.offset

    def apply(self, offset: int, ranker: Ranker, interaction: Interaction, model: Model) -> tuple[bool, Step]:
        """Apply one interaction, read at ``offset``, through ``ranker``: the new history,
        and ``recs`` = the new list with ``model.version``, the interaction's time and
        ``because``. Returns ``(changed, step)``; ``changed`` is False for a redelivered
        message (:meth:`already_applied`: at-least-once), which leaves the state, its
        list and its model version as they are."""
        if self.already_applied(offset):
            return False, Step.unchanged(self)
        step = ranker.step(self, interaction, model)
        self.record(offset, step, interaction, model)
        return True, step

    def record(self, offset: int, step: Step, interaction: Interaction, model: Model) -> None:
        """Keep ``step``, made by the interaction read at ``offset``: :meth:`apply`'s second half."""
        self.recent, self.rated = step.recent, step.rated
        self.recs = {"items": step.items, "model_version": model.version, "ts": interaction.ts,
                     "because": step.because, "event": interaction.event}
        if step.explored is not None:
            self.recs["explored"] = step.explored
        self.offset = offset


class BatchSteps:
    """Many interactions applied as :meth:`UserState.apply` applies them one after the
    other (the same states, steps and examples), the steps of different users made
    together by their ranker (:meth:`Ranker.step_many`: the default and learned rankers
    make them as arrays, ``ranking/batch.py``).

    :meth:`apply` queues; :meth:`flush` makes the steps in rounds: round k holds the k-th
    queued interaction of every state, so each step reads the state its predecessor left,
    and a user who comes back within the batch does not split it. For the learned ranker,
    each interaction first makes its examples of the list the user had
    (:meth:`~ranking.learned.LearnedRanker.examples`), from the candidates ``kept`` holds
    for the user (each step puts its own there).

    After :meth:`flush`, ``results[i]`` is the i-th interaction's ``(changed, step)``, or
    the exception that applying it raised (a group that fails is applied one interaction
    at a time, so only the bad one fails); ``recs[i]`` the user's ``recs`` right after it
    (what its list message says: the state may have moved on by then); ``examples[i]``
    what it taught, or None.
    """

    def __init__(self, model: Model, kept: KeptCandidates | None = None) -> None:
        self.model = model
        self.kept = kept if kept is not None else KeptCandidates(users=0)
        self.results: list[tuple[bool, Step] | Exception | None] = []
        self.recs: list[dict | None] = []
        self.examples: list[Examples | None] = []
        self._queued: list[_Queued] = []  # in arrival order

    def apply(self, state: UserState, offset: int, ranker: Ranker, interaction: Interaction,
              key: bytes | None = None) -> int:
        """Queue one interaction (``key``: its user's, for ``kept``); returns its place in :attr:`results`."""
        i = len(self.results)
        self.results.append(None)
        self.recs.append(None)
        self.examples.append(None)
        self._queued.append(_Queued(i, state, offset, ranker, interaction, key))
        return i

    def flush(self) -> None:
        """Make every queued step, round after round."""
        queued, self._queued = self._queued, []
        rounds: list[list[_Queued]] = []
        depth: dict[int, int] = {}  # id(state) -> its interactions queued so far
        for entry in queued:
            k = depth.get(id(entry.state), 0)
            depth[id(entry.state)] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(entry)
        for entries in rounds:
            self._round(entries)

    def _round(self, entries: list[_Queued]) -> None:
        groups: dict[int, list[_Queued]] = {}
        for e in entries:
            if e.state.already_applied(e.offset):  # a redelivery: changes nothing
                self._one(e)
                continue
            if isinstance(e.ranker, LearnedRanker):
                try:
                    self.examples[e.i] = e.ranker.examples(e.state, e.interaction, self.model,
                                                           made=self.kept.take(e.key, e.state.offset))
                except Exception as exc:  # noqa: BLE001  as the step would not be made either
                    self.results[e.i] = exc
                    continue
            groups.setdefault(id(e.ranker), []).append(e)
        for group in groups.values():
            try:
                steps = group[0].ranker.step_many([(e.state, e.interaction) for e in group], self.model)
            except Exception:  # noqa: BLE001  one at a time: the interaction that fails is the one reported
                for e in group:
                    self._one(e)
                continue
            for e, step in zip(group, steps, strict=True):
                e.state.record(e.offset, step, e.interaction, self.model)
                self._made(e, (True, step))

    def _one(self, e: _Queued) -> None:
        try:
            self._made(e, e.state.apply(e.offset, e.ranker, e.interaction, self.model))
        except Exception as exc:  # noqa: BLE001  the caller reports it (the agent: a dead letter)
            self.results[e.i] = exc

    def _made(self, e: _Queued, result: tuple[bool, Step]) -> None:
        self.results[e.i], self.recs[e.i] = result, e.state.recs  # a new recs dict at every step: this one stays
        if result[0]:
            self.kept.put(e.key, e.offset, result[1].made)


class _Queued(NamedTuple):
    """One interaction waiting in :class:`BatchSteps`: its place in the results, the user's
    state, the offset it was read at, its ranker, itself and the user's key."""

    i: int
    state: UserState
    offset: int
    ranker: Ranker
    interaction: Interaction
    key: bytes | None
