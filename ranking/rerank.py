"""Personalised rerank of a candidate list the shop gives (search results, a category
page): every given item once, in the order the user's ranker scores them.

Each ranker the worker serves has ``rerank(state, items, model)``: its own formula over
the user's current state, for exactly the given items, the ones the user already had
included (a search result the shopper bought before is still a search result).
:func:`reranked` puts the scores in order: scored items best first (ties in the given
order), then the items with no score (the model does not know them) in the given order,
with the score ``None``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence


def distinct(items: Sequence[str]) -> list[str]:
    """``items`` without repeats, first occurrence kept."""
    return list(dict.fromkeys(items))


def reranked(items: Sequence[str], scores: Mapping[str, float]) -> list[list]:
    """``[[item, score or None], ...]``: every item of ``items`` once, scored ones by
    descending score (ties in given order), then the unscored ones in given order."""
    given = distinct(items)
    place = {q: j for j, q in enumerate(given)}
    scored = sorted((q for q in given if q in scores), key=lambda q: (-scores[q], place[q]))
    return [[q, scores[q]] for q in scored] + [[q, None] for q in given if q not in scores]
