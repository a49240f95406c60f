"""The query API's list filters (``?n=``, ``?exclude=``), pure: no Faust."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import orjson

from app.records import InvalidInput, wire_list

#: Items one rerank request may give.
RERANK_MAX_ITEMS = 1000


def list_filters(query: Mapping[str, str]) -> tuple[int | None, set[str]]:
    """``?n=`` and ``?exclude=a,b`` of a list request; ``ValueError`` for a bad ``n``."""
    raw = query.get("n")
    n = None
    if raw is not None and raw != "":
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"n={raw!r} is not a whole number >= 1")
        n = int(raw)
    exclude = {x.strip() for x in query.get("exclude", "").split(",") if x.strip()}
    return n, exclude


def filter_list(items: Sequence[Sequence], n: int | None = None, exclude: Iterable[str] = (),
                keep=None) -> list[list]:
    """The wire list without ``exclude``d items and items ``keep(item)`` refuses, cut to ``n``."""
    ex = set(exclude)
    out = [e for e in wire_list(items) if e[0] not in ex and (keep is None or keep(e[0]))]
    return out if n is None else out[:n]


def filtered_entry(entry: Mapping, n: int | None = None, exclude: Iterable[str] = (), keep=None) -> dict:
    """A stored list entry (``recs`` of a user's state) as the query API answers it: its
    items filtered (:func:`filter_list`) and ``because`` only for the items that remain."""
    items = filter_list(entry["items"], n, exclude, keep)
    listed = {e[0] for e in items}
    because = {q: r for q, r in (entry.get("because") or {}).items() if q in listed}
    out = {"items": items, "because": because, "model_version": entry.get("model_version"), "ts": entry.get("ts")}
    if "explored" in entry:
        out["explored"] = entry["explored"]
    return out


def parse_rerank(body: bytes) -> tuple[str, list[str], int | None]:
    """``(user, items, n)`` of a ``POST /rerank/`` body ``{"user", "items": [...], "n"}``;
    :class:`InvalidInput` (``bad_rerank``, ``too_many_items``) for anything else."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("bad_rerank", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("bad_rerank", 'a JSON object {"user", "items", "n"} is expected')
    user, items, n = data.get("user"), data.get("items"), data.get("n")
    if not isinstance(user, str) or not user:
        raise InvalidInput("bad_rerank", "user: a non-empty string")
    if not isinstance(items, list) or not all(isinstance(q, str) and q for q in items):
        raise InvalidInput("bad_rerank", "items: a list of non-empty strings")
    if len(items) > RERANK_MAX_ITEMS:
        raise InvalidInput("too_many_items", f"{len(items)} items: at most {RERANK_MAX_ITEMS}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise InvalidInput("bad_rerank", "n: a whole number >= 1")
    return user, items, n
