"""The per-user state the realtime agent keeps, as one typed, versioned value.

Stored in the ``user_state`` table (``tables/definitions.py``) as a JSON object::

    {"schema": 2,
     "recent": [[item, rating, ts], ...],   # the K most recent ratings, oldest first
     "rated":  [item, ...],                  # items rated, most recent last (bounded)
     "recs":   {"items": [[item, score], ...], "model_version": "...", "ts": ...},
     "offset": 1234}                         # source offset of the last applied rating

``offset`` is the offset, on the user's own partition of ``ratings``, of the last
rating applied to this state: a message at or below it is a redelivery (at-least-once)
and changes nothing, however old it is (Quix Streams keeps the same per changelog).
Schema 1 (no ``schema`` key, no ``offset``: written before the field existed) still
loads.

:meth:`UserState.apply` is the one place a ranker's step is applied to a user's state:
the realtime agent, the streaming evaluation, the failover drills' expected lists and
the benchmarks' peers all go through it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ranking.features import KeptCandidates
from ranking.learned import Examples, LearnedRanker
from ranking.model import Model
from ranking.protocol import Interaction, Ranker, Step

SCHEMA = 2


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
        return {"schema": SCHEMA, "recent": self.recent, "rated": self.rated, "recs": self.recs,
                "offset": self.offset}

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
        self._queued: list[tuple] = []  # (i, state, offset, ranker, interaction, key), in arrival order

    def apply(self, state: UserState, offset: int, ranker: Ranker, interaction: Interaction,
              key: bytes | None = None) -> int:
        """Queue one interaction (``key``: its user's, for ``kept``); returns its place in :attr:`results`."""
        i = len(self.results)
        self.results.append(None)
        self.recs.append(None)
        self.examples.append(None)
        self._queued.append((i, state, offset, ranker, interaction, key))
        return i

    def flush(self) -> None:
        """Make every queued step, round after round."""
        queued, self._queued = self._queued, []
        rounds: list[list[tuple]] = []
        depth: dict[int, int] = {}  # id(state) -> its interactions queued so far
        for entry in queued:
            k = depth.get(id(entry[1]), 0)
            depth[id(entry[1])] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(entry)
        for entries in rounds:
            self._round(entries)

    def _round(self, entries: list[tuple]) -> None:
        groups: dict[int, list[tuple]] = {}
        for entry in entries:
            i, state, offset, ranker, interaction, key = entry
            if state.already_applied(offset):  # a redelivery: changes nothing
                self._one(entry)
                continue
            if isinstance(ranker, LearnedRanker):
                try:
                    self.examples[i] = ranker.examples(state, interaction, self.model,
                                                       made=self.kept.take(key, state.offset))
                except Exception as exc:  # noqa: BLE001  as the step would not be made either
                    self.results[i] = exc
                    continue
            groups.setdefault(id(ranker), []).append(entry)
        for group in groups.values():
            try:
                steps = group[0][3].step_many([(entry[1], entry[4]) for entry in group], self.model)
            except Exception:  # noqa: BLE001  one at a time: the interaction that fails is the one reported
                for entry in group:
                    self._one(entry)
                continue
            for (i, state, offset, _ranker, interaction, key), step in zip(group, steps, strict=True):
                state.record(offset, step, interaction, self.model)
                self._made(i, state, offset, key, (True, step))

    def _one(self, entry: tuple) -> None:
        i, state, offset, ranker, interaction, key = entry
        try:
            self._made(i, state, offset, key, state.apply(offset, ranker, interaction, self.model))
        except Exception as exc:  # noqa: BLE001  the caller reports it (the agent: a dead letter)
            self.results[i] = exc

    def _made(self, i: int, state: UserState, offset: int, key, result: tuple[bool, Step]) -> None:
        self.results[i], self.recs[i] = result, state.recs  # a new recs dict at every step: this one stays
        if result[0]:
            self.kept.put(key, offset, result[1].made)
