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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
