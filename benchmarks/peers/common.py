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
import os
import time
from pathlib import Path

from agents.batches import keep_freed_memory
from agents.lists import interaction_of, recommendation_for
from app.records import InvalidInput, examples_message, parse_rating, to_json_bytes, wire_lists
from app.settings import Settings
from app.worker import learned_served
from ranking import Blend, LearnedRanker, Model, SimilarityIndex
from ranking.ab import Assignment
from ranking.batch import prepare
from ranking.features import KeptCandidates
from tables.broadcast import LearnedBroadcast
from tables.state import BatchSteps, UserState


def peer_args(doc: str, group: str, argv=None) -> argparse.Namespace:
    """The command line every peer script takes (the benchmark passes the same flags)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model JSON written by the benchmark")
    p.add_argument("--count", type=int, required=True, help="stop after this many lists")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--group", default=group)
    p.add_argument("--timeout", type=float, default=60.0, help="stop after this many idle seconds")
    return p.parse_args(argv)


def tune_process() -> None:
    """What ``recsys worker`` does to its process before it ranks (``cli/commands.py``):
    one BLAS thread, freed memory kept for the next batch. The peers get it too: it is
    not the framework's doing."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, "blas")
    keep_freed_memory()


def cpu_line() -> str:
    """The CPU this process used, as its last log line says it (``cpu_s=<user + system>``):
    a peer that stops by itself is gone before the benchmark can read its ``/proc``."""
    times = os.times()
    return f"cpu_s={times.user + times.system:.3f}"


def write_model(path: Path, neighbours: dict, extras: dict, version: str, learned_messages=()) -> None:
    """The model file peers read: what the benchmark publishes to the worker (the
    similarity model and, for the learned ranker, its frozen ``ranker-model`` messages)."""
    learned = [[key.decode(), value.decode()] for key, value in learned_messages]
    path.write_text(json.dumps({"version": version, "neighbours": neighbours, **extras, "learned_messages": learned}))


class RatingProcessor:
    """Ratings in, ``(user, new state value or None, list bytes, examples bytes or None)``
    out, as the agent makes them: :meth:`process` one message at a time (a per-message
    framework's way), :meth:`process_many` a fetched batch at once (the agent's way:
    ``tables.state.BatchSteps``). The learned ranker's examples go to ``ranker-examples``."""

    def __init__(self, conf: Settings, model_file: Path) -> None:
        model = json.loads(Path(model_file).read_text())
        self.conf = conf
        self.version = model["version"]
        blend = Blend.from_dict(model["blend"]) if model.get("blend") else None
        index = SimilarityIndex(model["neighbours"], related=model.get("related"), counts=model.get("counts"),
                                sources=model.get("sources"), blend=blend, keep_sources=learned_served(conf))
        prepare(index)  # as the worker does when a model comes into service
        weights = LearnedBroadcast()  # the frozen weight set the worker is sent, if any
        for key, value in model.get("learned_messages", []):
            weights.apply(key.encode(), value.encode())
        self.model = Model(index, version=self.version, learned=weights.weights)
        self.ranking = Assignment.from_settings(conf)
        self.kept = KeptCandidates(conf.ranking.learned_kept_users)
        self.invalid = 0

    def _parsed(self, value: bytes):
        try:
            return parse_rating(value, rating_min=self.conf.input.rating_min, rating_max=self.conf.input.rating_max,
                                max_future_s=self.conf.input.max_future_s)
        except InvalidInput:
            self.invalid += 1
            return None

    def process(self, value: bytes, state_value: dict | None, offset: int, produced_at: float = 0.0):
        """One message; ``None`` for a bad one (counted: the peers keep no dead-letter topic)."""
        started = time.perf_counter()
        rating = self._parsed(value)
        if rating is None:
            return None
        state, key = UserState.from_value(state_value), rating.user.encode()
        variant, ranker = self.ranking.ranker_for(rating.user)
        interaction = interaction_of(rating)
        examples = None
        if isinstance(ranker, LearnedRanker) and not state.already_applied(offset):
            examples = ranker.examples(state, interaction, self.model, made=self.kept.take(key, state.offset))
        changed, step = state.apply(offset, ranker, interaction, self.model)
        if changed:
            self.kept.put(key, offset, step.made)
        rec = recommendation_for(rating, state.recs, variant, self.version, produced_at,
                                 (time.perf_counter() - started) * 1000.0)
        return (rating.user, (state.to_value() if changed else None), to_json_bytes(rec),
                examples_message(examples)[1] if examples is not None else None)

    def process_many(self, messages: list[tuple[bytes, int, float]], load) -> tuple[list, dict]:
        """A batch of ``(value, offset, produced_at)`` in order, each user's state read once
        (``load(key)``: its stored bytes or None, as the worker stores them): ``([(user, list
        bytes, examples bytes or None), ...], {key: new state bytes})``."""
        started = time.perf_counter()
        steps, states, read = BatchSteps(self.model, self.kept), {}, []
        for value, offset, produced_at in messages:
            rating = self._parsed(value)
            if rating is None:
                continue
            key = rating.user.encode()
            state = states.get(key)
            if state is None:
                state = states[key] = UserState.from_bytes(load(key))
            variant, ranker = self.ranking.ranker_for(rating.user)
            read.append((rating, key, variant, produced_at, steps.apply(state, offset, ranker, interaction_of(rating), key)))
        steps.flush()
        share_ms = (time.perf_counter() - started) * 1000.0 / max(len(read), 1)
        out, changed_keys = [], set()
        lists = wire_lists([steps.recs[i].get("items", []) for *_r, i in read])
        for (rating, key, variant, produced_at, i), items in zip(read, lists, strict=True):
            changed, _step = steps.results[i]  # the peers' input is all valid ratings: no step raises
            if changed:
                changed_keys.add(key)
            rec = recommendation_for(rating, steps.recs[i], variant, self.version, produced_at, share_ms, items)
            examples = steps.examples[i]
            out.append((rating.user, to_json_bytes(rec), examples_message(examples)[1] if examples else None))
        return out, {key: states[key].to_bytes() for key in changed_keys}
