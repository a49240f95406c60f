"""The one protocol every ranker implements.

A ranker turns one interaction of a user into that user's next list::

    step = ranker.step(state, interaction, model)

``state`` is the user's :class:`History` (any object with ``recent``, ``rated`` and
``last_list``: ``tables.state.UserState`` in the worker), ``model`` what the ranker
reads besides the user (:class:`ranking.model.Model`; the streaming evaluation passes
a richer object for its baselines). ``step`` is pure: it changes none of its arguments
and returns the user's new history with the new list (:class:`Step`); the caller
stores it (``UserState.apply``). What every ranker must do is checked for every entry
of ``ranking.RANKERS`` by ``tests/unit/test_ranker_contract.py``:

- a list never holds an item the user had (``rated``), and has at most ``k`` items;
- the same inputs give the same step;
- a replayed interaction (:func:`ranking.history.is_replay`: a redelivery or a stale
  one) returns the history and the previous list as they are (:meth:`Step.unchanged`);
- a dislike removes its item from the list for good.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ranking.model import Model


# Interaction and Step are made once per rating: plain slots dataclasses, read-only by
# convention (a frozen dataclass's __init__ takes three times as long).
@dataclass(slots=True)
class Interaction:
    """One interaction of a user with an item.

    ``rating`` is the rating, or a behaviour event's weight; ``dislike`` says the user
    turned the item down (it is also the lowest rating: what the paper's formula reads);
    ``event`` is the behaviour event it came from (``rating`` for a rating); ``from_list``
    says the user took the item from their recommendations list.
    """

    user: str
    item: str
    rating: float
    ts: float
    dislike: bool = False
    event: str = "rating"
    from_list: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """What a step reads of its user: ``recent`` (``[[item, rating, ts], ...]`` oldest
    first, one entry per item), ``rated`` (items the user had, most recent last) and
    ``last_list`` (the current list, ``[[item, score], ...]`` best first)."""

    recent: Sequence = ()
    rated: Sequence = ()
    last_list: Sequence = ()


@dataclass(slots=True)
class Step:
    """What one interaction did: the user's new history and new list.

    ``items`` is ``[[item, score], ...]`` best first (``score`` ``None`` for an item that
    only pads the list); ``because[q]`` the recent item that put q there (rankers that
    cannot say leave it empty); ``n_candidates`` how many items this step scored;
    ``explored`` the slot an exploring ranker filled from outside its top.
    """

    recent: list
    rated: list
    items: list
    because: dict
    n_candidates: int
    #: The slot an exploring ranker filled from outside its top (``ranking.learned``), else None.
    explored: dict | None = None
    #: What the list was made from, for the examples of the user's next interaction (the
    #: learned ranker's candidates); kept in memory by the caller, never stored.
    made: object = field(default=None, compare=False)

    @classmethod
    def unchanged(cls, state: History) -> Step:
        """The step of an interaction that changes nothing: the history and list as they are."""
        return cls(list(state.recent), list(state.rated), [list(e) for e in state.last_list], {}, 0)


class Ranker(ABC):
    """Base of every ranker: its parameters are its constructor's arguments (``k`` the
    list length at least) and :meth:`from_settings` reads them from ``Settings``."""

    k: int

    @classmethod
    @abstractmethod
    def from_settings(cls, conf) -> Ranker:
        """The ranker the worker runs with ``conf`` (``app.settings.Settings``)."""

    @abstractmethod
    def step(self, state: History, interaction: Interaction, model: Model) -> Step:
        """The user's new history and list after ``interaction``; pure."""

    def step_many(self, pairs: Sequence[tuple[History, Interaction]], model: Model) -> list[Step]:
        """``[self.step(state, interaction, model) for state, interaction in pairs]``: the
        steps of interactions of different users, which a ranker may make together (as
        arrays: ``ranking/batch.py``); the same steps either way."""
        return [self.step(state, interaction, model) for state, interaction in pairs]
