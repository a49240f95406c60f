"""The rankers, behind one protocol (``ranking/protocol.py``), and what they read.

Pure: no Kafka, no Faust, and no import from the rest of the project; the realtime
agent, the streaming evaluation and the benchmarks' peers all call ``Ranker.step``
through ``tables.state.UserState.apply``.

==============  ==================================================================
``protocol``    :class:`Interaction`, :class:`Step`, :class:`Ranker`, :class:`History`
``model``       :class:`SimilarityIndex`, its :class:`Blend` and the :class:`Model` a step reads
``history``     the recent interactions and rated items every ranker keeps
``default``     the default ranker
``features``    the learned ranker's candidates and their features
``learned``     the learned ranker (the default's candidates, ordered by weights learnt online)
``paper``       the paper's formula
``ab``          which ranker serves a user (``RECSYS_RANKER``, ``RECSYS_AB``)
==============  ==================================================================
"""
from __future__ import annotations

from ranking.default import DefaultRanker
from ranking.learned import LearnedRanker
from ranking.model import Blend, Model, SimilarityIndex
from ranking.paper import PaperRanker
from ranking.protocol import History, Interaction, Ranker, Step

#: Every ranker a worker can serve, by the name ``RECSYS_RANKER`` and ``RECSYS_AB`` use.
#: Adding a ranker is its module and one line here (the contract test then runs on it).
RANKERS: dict[str, type[Ranker]] = {
    "default": DefaultRanker,
    "paper": PaperRanker,
    "learned": LearnedRanker,
}


def make_ranker(name: str, conf) -> Ranker:
    """The ranker called ``name`` with its parameters from ``conf`` (``Settings``)."""
    try:
        cls = RANKERS[name]
    except KeyError:
        raise ValueError(f"no ranker {name!r}: one of {', '.join(RANKERS)}") from None
    return cls.from_settings(conf)


__all__ = ["RANKERS", "Blend", "DefaultRanker", "History", "Interaction", "LearnedRanker", "Model", "PaperRanker", "Ranker", "SimilarityIndex",
           "Step", "make_ranker"]
