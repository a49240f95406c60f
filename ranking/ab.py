"""A/B tests: which ranker serves a user.

``RECSYS_AB=default:50,paper:50`` splits users between rankers by a stable hash of the
user id (:func:`assign_variant`: the same answer in every process, on every machine,
for ever); without it every user gets ``RECSYS_RANKER``. The worker assigns; the web
page (``web/live.py``) reads the variant with the same function.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from ranking import make_ranker
from ranking.protocol import Ranker


def parse_ab(spec: str) -> list[tuple[str, int]]:
    """``"default:50,paper:50"`` -> ``[("default", 50), ("paper", 50)]``; ``""`` -> ``[]``.

    Weights are non-negative integers (shares of their sum, not necessarily 100); names
    are unique. Raises ``ValueError`` naming the bad part.
    """
    arms: list[tuple[str, int]] = []
    for part in (p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        name, colon, weight = part.partition(":")
        name, weight = name.strip(), weight.strip()
        if not colon or not name or not weight.isdigit():
            raise ValueError(f"RECSYS_AB part {part!r} is not name:weight (weight a whole number)")
        if any(name == known for known, _ in arms):
            raise ValueError(f"RECSYS_AB names variant {name!r} twice")
        arms.append((name, int(weight)))
    if arms and sum(w for _, w in arms) == 0:
        raise ValueError("RECSYS_AB weights are all 0")
    return arms


def user_hash(user: str) -> int:
    """A stable 64-bit number of ``user``: the first 8 bytes (big-endian) of
    SHA-256(``"recsys-ab:" + user`` in UTF-8). The worker must use this same function."""
    digest = hashlib.sha256(b"recsys-ab:" + user.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def assign_variant(user: str, arms: list[tuple[str, int]], default: str = "default") -> str:
    """The arm of ``user``: buckets are split between arms in proportion to their weights
    (in the order given). No arms: ``default``."""
    total = sum(w for _, w in arms)
    if not arms or total <= 0:
        return default
    point = user_hash(user) % total
    for name, weight in arms:
        if point < weight:
            return name
        point -= weight
    return arms[-1][0]  # unreachable: point < total


def served_rankers(conf) -> set[str]:
    """The rankers that serve someone: the A/B arms, else ``RECSYS_RANKER``."""
    arms = parse_ab(conf.ranking.ab)
    return {name for name, _w in arms} if arms else {conf.ranking.ranker}


@dataclass(frozen=True)
class Assignment:
    """Which ranker serves each user.

    Parameters
    ----------
    rankers : mapping of name -> Ranker
        Every ranker that may serve (``default`` and every arm's).
    default : str
        The ranker of every user when no A/B test runs.
    arms : tuple of (name, weight)
        The A/B arms (:func:`parse_ab`); they override ``default``.
    """

    rankers: Mapping[str, Ranker]
    default: str = "default"
    arms: tuple = ()

    @classmethod
    def from_settings(cls, conf) -> Assignment:
        arms = tuple(parse_ab(conf.ranking.ab))
        names = dict.fromkeys([conf.ranking.ranker, *(name for name, _ in arms)])
        return cls({name: make_ranker(name, conf) for name in names}, conf.ranking.ranker, arms)

    def variant(self, user: str) -> str:
        return assign_variant(user, list(self.arms), self.default)

    def ranker_for(self, user: str) -> tuple[str, Ranker]:
        """``(variant, its ranker)`` for ``user``."""
        variant = self.variant(user)
        return variant, self.rankers[variant]
