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
        self.recent, self.rated = step.recent, step.rated
        self.recs = {"items": step.items, "model_version": model.version, "ts": interaction.ts,
                     "because": step.because, "event": interaction.event}
        if step.explored is not None:
            self.recs["explored"] = step.explored
        self.offset = offset
        return True, step
