"""What every peer of ``realtime_bench.py --peers`` does per rating: the realtime agent's
work (``agents/realtime.py``) through the same pure functions, leaving the state store,
the changelog and the output to the framework under test.

The model comes from a JSON file the benchmark writes (the same neighbours, related
lists and counts it publishes to the worker's ``item-similarity`` topic), so a peer
needs no Faust and no model topic reader.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from agents.lists import interaction_of, recommendation_for
from app.records import InvalidInput, parse_rating, to_json_bytes
from app.settings import Settings
from ranking import Model, SimilarityIndex
from ranking.ab import Assignment
from tables.state import UserState


def peer_args(doc: str, group: str, argv=None) -> argparse.Namespace:
    """The command line every peer script takes (the benchmark passes the same flags)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model JSON written by the benchmark")
    p.add_argument("--count", type=int, required=True, help="stop after this many lists")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--group", default=group)
    p.add_argument("--timeout", type=float, default=60.0, help="stop after this many idle seconds")
    return p.parse_args(argv)


def write_model(path: Path, neighbours: dict, extras: dict, version: str) -> None:
    """The model file peers read: what the benchmark publishes to the worker."""
    path.write_text(json.dumps({"version": version, "neighbours": neighbours, **extras}))


class RatingProcessor:
    """One rating in, ``(new state value or None, list bytes)`` out, as the agent does it."""

    def __init__(self, conf: Settings, model_file: Path) -> None:
        model = json.loads(Path(model_file).read_text())
        self.conf = conf
        self.version = model["version"]
        self.model = Model(SimilarityIndex(model["neighbours"], related=model.get("related"),
                                           counts=model.get("counts")), version=self.version)
        self.ranking = Assignment.from_settings(conf)
        self.invalid = 0

    def process(self, value: bytes, state_value: dict | None, offset: int, produced_at: float = 0.0):
        """``(user, new state value or None if unchanged, list bytes)``; ``None`` for a
        bad message (counted: the peers keep no dead-letter topic)."""
        started = time.perf_counter()
        try:
            rating = parse_rating(value, rating_min=self.conf.input.rating_min, rating_max=self.conf.input.rating_max,
                                  max_future_s=self.conf.input.max_future_s)
        except InvalidInput:
            self.invalid += 1
            return None
        state = UserState.from_value(state_value)
        variant, ranker = self.ranking.ranker_for(rating.user)
        changed, _step = state.apply(offset, ranker, interaction_of(rating), self.model)
        rec = recommendation_for(rating, state.recs, variant, self.version, produced_at,
                                 (time.perf_counter() - started) * 1000.0)
        return rating.user, (state.to_value() if changed else None), to_json_bytes(rec)
