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
    """Many interactions applied in order (each :meth:`UserState.apply` would give the
    same states and steps), the steps of different users made together by their ranker
    (:meth:`Ranker.step_many`: the default and learned rankers make them as arrays,
    ``ranking/batch.py``).

    :meth:`apply` keeps an interaction waiting (a redelivery is applied at once). A
    state's next interaction first makes every waiting step (:meth:`flush`), so each step
    reads the state its predecessor left. After :meth:`flush`, ``results[i]`` is the
    i-th interaction's ``(changed, step)``, or the exception that applying it raised (a
    group that fails is applied one interaction at a time, so only the bad one fails),
    and ``recs[i]`` the user's ``recs`` right after it (what its list message says: the
    state itself may have moved on by then).
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.results: list[tuple[bool, Step] | Exception | None] = []
        self.recs: list[dict | None] = []
        self._waiting: dict[int, tuple] = {}  # id(state) -> (i, state, offset, ranker, interaction)
        self._latest: dict[int, int] = {}  # id(state) -> its latest interaction's place in results

    def apply(self, state: UserState, offset: int, ranker: Ranker, interaction: Interaction) -> int:
        """Apply (or queue) one interaction; returns its place in :attr:`results`."""
        if id(state) in self._waiting:
            self.flush()
        i = len(self.results)
        self.results.append(None)
        self.recs.append(None)
        self._latest[id(state)] = i
        if state.already_applied(offset):
            self._one(i, state, offset, ranker, interaction)
        else:
            self._waiting[id(state)] = (i, state, offset, ranker, interaction)
        return i

    def latest(self, state: UserState) -> Step | None:
        """The step of ``state``'s latest interaction of the batch (made now if it waits),
        or None (none, or it failed)."""
        if id(state) in self._waiting:
            self.flush()
        i = self._latest.get(id(state))
        result = self.results[i] if i is not None else None
        return result[1] if isinstance(result, tuple) else None

    def examples(self, state: UserState, key: bytes, ranker, interaction: Interaction, kept):
        """What ``interaction`` teaches of the list ``state`` has (the learned ranker's
        :meth:`~ranking.learned.LearnedRanker.examples`): its candidates as the step that
        made them left them (an earlier interaction of this batch, or ``kept``, a
        ``ranking.features.KeptCandidates``, since an earlier batch), else recomputed."""
        earlier = self.latest(state)
        if earlier is not None and earlier.made is not None:  # as kept would keep them: the same examples either way
            made = earlier.made.kept()
        else:
            made = kept.take(key, state.offset)
        return ranker.examples(state, interaction, self.model, made=made)

    def flush(self) -> None:
        """Make every waiting step (one :meth:`Ranker.step_many` per ranker) and keep it."""
        groups: dict[int, list[tuple]] = {}
        for entry in self._waiting.values():
            groups.setdefault(id(entry[3]), []).append(entry)
        self._waiting = {}
        for group in groups.values():
            try:
                steps = group[0][3].step_many([(state, interaction) for _i, state, _o, _r, interaction in group],
                                              self.model)
            except Exception:  # noqa: BLE001  one at a time: the interaction that fails is the one reported
                for i, state, offset, ranker, interaction in group:
                    self._one(i, state, offset, ranker, interaction)
                continue
            for (i, state, offset, _ranker, interaction), step in zip(group, steps, strict=True):
                state.record(offset, step, interaction, self.model)
                self.results[i], self.recs[i] = (True, step), state.recs

    def _one(self, i: int, state: UserState, offset: int, ranker: Ranker, interaction: Interaction) -> None:
        try:
            self.results[i] = state.apply(offset, ranker, interaction, self.model)
            self.recs[i] = state.recs  # a new dict at every step: this one stays as it is
        except Exception as exc:  # noqa: BLE001  the caller reports it (the agent: a dead letter)
            self.results[i] = exc
