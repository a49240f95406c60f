"""The contract of ``Ranker.step`` (ranking/protocol.py), checked on every ranker.

Every entry of ``ranking.RANKERS`` (made from ``Settings``, stepping with the worker's
``Model``) and every baseline of the streaming evaluation (``evaluation.baselines.BASELINES``,
stepping with its ``SharedState``) walks small random streams of one user, and after
every step:

- its list never holds an item the user had, and has at most ``k`` items;
- the same inputs give the same step (a fresh ranker on deep copies, too, and another
  process with another hash seed);
- the step changed none of its inputs;
- the same interaction again, and an older one, change nothing;
- a disliked item is not in the list, then or later.

A new ranker is checked by adding it to ``RANKERS`` (or ``BASELINES``).
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from app.settings import Settings
from evaluation import prequential
from evaluation.baselines import BASELINES
from evaluation.rankers import HotWindow, SharedState, TopCounter
from ranking import RANKERS, History, Interaction, Model, SimilarityIndex, Step, make_ranker
from ranking.content import CatalogueText, ContentIndex
from tests.conftest import ROOT

K = 5
ITEMS = [f"i{n}" for n in range(30)]
#: Catalogue items no model knows yet: the default ranker recalls them by their text.
NEW_ITEMS = [f"n{n}" for n in range(5)]
SEEDS = range(4)


def worker_model(rng: random.Random) -> Model:
    """A random published model: factor and co-occurrence lists, counts, hot items."""
    neighbours = {a: {b: round(rng.uniform(0.3, 1.0), 3) for b in rng.sample(ITEMS, 10) if b != a}
                  for a in rng.sample(ITEMS, 25)}
    related = {a: {b: round(rng.random(), 3) for b in rng.sample(ITEMS, 8) if b != a} for a in rng.sample(ITEMS, 20)}
    counts = {q: rng.randint(0, 20) for q in ITEMS}
    words = ["red", "blue", "shoe", "hat", "wool", "silk", "summer", "winter"]
    text = CatalogueText({q: " ".join(rng.sample(words, 3)) for q in ITEMS + NEW_ITEMS})
    return Model(SimilarityIndex(neighbours, related=related, counts=counts), tuple(rng.sample(ITEMS, 8)), "v1",
                 content=ContentIndex(text, counts, cold_min=5))


@pytest.fixture(scope="module")
def trained():
    return train_small_model()


def train_small_model():
    """A small ALS model (the evaluation's retrain) on random events of users u0..u19."""
    rng = random.Random(99)
    n = 400
    stream = prequential.Stream([f"u{rng.randrange(20)}" for _ in range(n)], [rng.choice(ITEMS) for _ in range(n)],
                                np.array([float(rng.randint(1, 5)) for _ in range(n)]), np.arange(n, dtype=float),
                                (1.0, 5.0))
    data = prequential.interactions(stream, n)
    model = prequential.train(data, Settings().replace(als={"rank": 3, "iters": 3, "similar": 10}))
    fitting = SharedState(TopCounter(size=10), HotWindow(size_s=150.0, step_s=20.0, n_hot=8))
    fitting.fit_for(cls(k=K) for cls in BASELINES.values())
    fitting.set_model(model, data)  # the baselines' fits, once
    return stream, model, fitting.data, fitting.fitted


def evaluation_model(rng: random.Random, trained) -> SharedState:
    """The evaluation's model after its events: the ALS model, all-time and windowed counts."""
    stream, model, data, fitted = trained
    shared = SharedState(TopCounter(size=10), HotWindow(size_s=150.0, step_s=20.0, n_hot=8))
    shared.set_model(copy.deepcopy(model))  # its own model and fits: a step that changed them would show
    shared.data, shared.fitted = copy.deepcopy(data), copy.deepcopy(fitted)
    for j in sorted(rng.sample(range(len(stream)), 300)):  # in time order, as events arrive
        shared.observe(stream.items[j], float(stream.ts[j]))
    return shared


def random_stream(rng: random.Random, user: str) -> list[tuple[str, Interaction]]:
    """One user's interactions, mostly in time order: re-ratings, same-second pairs, stale
    ones (older than the item's last) and dislikes (the walk dislikes the top item of the
    list it has then). An item is never interacted with twice in the same second."""
    out: list[tuple[str, Interaction]] = []
    ts, used = 1000.0, set()
    for _ in range(40):
        kind = rng.choices(["new", "same-second", "stale", "dislike"], weights=[6, 1, 1, 2])[0]
        ts += 0.0 if kind == "same-second" else rng.choice([1.0, 5.0, 30.0])
        if kind == "stale" and out:
            last = out[-1][1]
            out.append((kind, Interaction(user, last.item, float(rng.randint(1, 5)), last.ts - 10.0)))
            continue
        item = rng.choice([q for q in ITEMS if (q, ts) not in used])
        used.add((item, ts))
        out.append((kind, Interaction(user, item, 1.0 if kind == "dislike" else float(rng.randint(1, 5)), ts,
                                      dislike=kind == "dislike")))
    return out


def cases(trained):
    """``name -> (fresh ranker, model maker, user)`` for every ranker under contract."""
    out = {name: (lambda name=name: make_ranker(name, Settings().replace(ranking={"k": K})), lambda rng: worker_model(rng), "u0")
           for name in RANKERS}
    for name, cls in BASELINES.items():
        out[name] = (lambda cls=cls: cls(k=K), lambda rng: evaluation_model(rng, trained), "u3")
    return out


def contents(x):
    """A deep, comparable picture of ``x`` (lists, dicts, sets, arrays, objects' fields)."""
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, dict):
        return {k: contents(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, collections.deque)):
        return [contents(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return frozenset(x)
    if dataclasses.is_dataclass(x):
        return (type(x).__name__, {f.name: contents(getattr(x, f.name)) for f in dataclasses.fields(x)})
    if hasattr(x, "__dict__"):
        return (type(x).__name__, contents(vars(x)))
    return x


def walk(name, seed, trained):
    """Every step of one random stream: ``(state before, interaction, model, step, ranker)``,
    plus the interactions applied so far. Dislikes target the list's top item."""
    make, make_model, user = cases(trained)[name]
    rng = random.Random(seed)
    model, ranker = make_model(rng), make()
    state, applied = History(), []
    for kind, interaction in random_stream(rng, user):
        if kind == "dislike":  # of the list's top item, which the user has not had yet
            if not state.last_list:
                continue
            interaction = dataclasses.replace(interaction, item=state.last_list[0][0])
        step = ranker.step(state, interaction, model)
        yield state, interaction, model, step, ranker, list(applied)
        applied.append(interaction)
        state = History(step.recent, step.rated, step.items)


NAMES = sorted({*RANKERS, *BASELINES})


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", NAMES)
class TestRankerContract:
    def test_never_lists_an_item_the_user_had(self, name, seed, trained):
        for _state, interaction, _model, step, _ranker, applied in walk(name, seed, trained):
            had = {i.item for i in applied} | {interaction.item}
            assert not had & {q for q, _s in step.items}, f"{name} lists an item the user had"

    def test_at_most_k_items_each_once(self, name, seed, trained):
        lengths = []
        for _state, _interaction, _model, step, ranker, _applied in walk(name, seed, trained):
            assert ranker.k == K and len(step.items) <= K
            assert len({q for q, _s in step.items}) == len(step.items)
            lengths.append(len(step.items))
        assert max(lengths) == K  # the streams do fill lists: the bound is met, not just respected

    def test_the_same_inputs_give_the_same_step(self, name, seed, trained):
        make, copied = cases(trained)[name][0], None
        for state, interaction, model, step, ranker, _applied in walk(name, seed, trained):
            assert ranker.step(state, interaction, model) == step
            copied = copied or copy.deepcopy(model)  # one model for the whole walk: copied once
            assert make().step(copy.deepcopy(state), copy.deepcopy(interaction), copied) == step

    def test_a_step_changes_none_of_its_inputs(self, name, seed, trained):
        model = None
        for state, interaction, model, _step, ranker, _applied in walk(name, seed, trained):
            before = contents((state, interaction, ranker))
            ranker.step(state, interaction, model)
            assert contents((state, interaction, ranker)) == before
        # the model after every step of the walk (twice each) is the one the walk started with
        assert contents(model) == contents(cases(trained)[name][1](random.Random(seed)))

    def test_a_redelivered_or_older_interaction_changes_nothing(self, name, seed, trained):
        checked = 0
        for _state, interaction, model, step, ranker, applied in walk(name, seed, trained):
            after = History(step.recent, step.rated, step.items)
            recent = {e[0] for e in step.recent}
            # the same interaction again; and every earlier one of an item the history still holds
            for old in [interaction, *(i for i in applied if i.item in recent)]:
                replayed = ranker.step(after, old, model)
                assert replayed == Step.unchanged(after), f"{name}: {old} changed the state"
                checked += 1
        assert checked > 40

    def test_a_disliked_item_leaves_the_list_for_good(self, name, seed, trained):
        disliked: set[str] = set()
        for _state, interaction, _model, step, _ranker, _applied in walk(name, seed, trained):
            if interaction.dislike:
                disliked.add(interaction.item)
            assert not disliked & {q for q, _s in step.items}, f"{name} lists a disliked item"
        assert disliked


def walk_digests(trained) -> dict[str, str]:
    """A digest of every step of every walk, per ranker."""
    out = {}
    for name in NAMES:
        h = hashlib.sha256()
        for seed in SEEDS:
            for *_inputs, step, _ranker, _applied in walk(name, seed, trained):
                made = step.made  # the learned ranker's candidates: its next examples
                fields = [getattr(step, f.name) for f in dataclasses.fields(step) if f.name != "made"]
                if made is not None:
                    fields.append([made.items, made.X.tolist(), made.because])
                h.update(json.dumps(fields, sort_keys=True).encode())
        out[name] = h.hexdigest()
    return out


def test_steps_do_not_depend_on_the_hash_seed(trained):
    """Set and dict orders of strings change with the hash seed: a list built from one
    would differ between two workers (or a worker and its restart)."""
    code = ("import json; from tests.unit.test_ranker_contract import train_small_model, walk_digests; "
            "print(json.dumps(walk_digests(train_small_model())))")
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": seed}) for seed in ("1", "2")]
    here = walk_digests(trained)
    for run in runs:
        out, _ = run.communicate(timeout=120)
        assert run.returncode == 0 and json.loads(out) == here


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(RANKERS))
def test_every_served_ranker_reranks_every_given_item_once_unknown_ones_last(name, seed, trained):
    """The rerank contract (``ranking/rerank.py``), on every state of a walk: each given
    item once (repeats dropped), items the user had included, scored ones best first, the
    ones the model does not know last in the given order with no score; pure."""
    rng = random.Random(seed)
    for _state, _interaction, model, step, ranker, _applied in walk(name, seed, trained):
        after = History(step.recent, step.rated, step.items)
        known = list(model.index.position)
        given = rng.sample(known, min(12, len(known))) + [e[0] for e in step.recent[-2:]] + ["new-1", "new-2"]
        given.insert(3, given[0])  # a repeat
        before = contents((after, model))
        out = ranker.rerank(after, given, model)
        assert contents((after, model)) == before and ranker.rerank(after, given, model) == out
        assert len(out) == len(set(given)) and {q for q, _s in out} == set(given)
        assert out[-2:] == [["new-1", None], ["new-2", None]]
        scores = [s for _q, s in out if s is not None]
        assert scores == sorted(scores, reverse=True)
        assert all(s is None for _q, s in out[len(scores):])  # the unscored after every scored one
