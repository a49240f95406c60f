"""The learner's checkpoint: what it learnt and up to which offset of ``ranker-examples``,
written together, atomically (a temporary file renamed over the last one).

A restart loads it and reads on from its offsets: what it learnt after the checkpoint is
learnt again from the same state, the same way, so nothing is learnt twice or lost (the
heads are deterministic functions of the examples in offset order). Without a
checkpoint the learner starts from nothing and reads the topic from the beginning.
The gate's window is not kept: it fills again from the examples read after a restart.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ranking.learned import TASKS, LearnedWeights

from .online import OnlineLearner


def save(path: Path, learner: OnlineLearner, offsets: dict[int, int]) -> None:
    """Write ``learner``'s state and the next offset of every partition read to ``path``."""
    arrays = {}
    for task, head in learner.heads.items():
        arrays[f"{task}.z"], arrays[f"{task}.n"] = head.z, head.n
        arrays[f"{task}.items"] = np.array(list(head.item_bias), dtype=str)
        arrays[f"{task}.bias"] = np.fromiter(head.item_bias.values(), dtype=np.float64, count=len(head.item_bias))
    serving = learner.serving
    if serving is not None:
        for task in TASKS:
            arrays[f"serving.{task}.w"] = serving.heads[task]
            biases = serving.item_bias.get(task, {})
            arrays[f"serving.{task}.items"] = np.array(list(biases), dtype=str)
            arrays[f"serving.{task}.bias"] = np.fromiter(biases.values(), dtype=np.float64, count=len(biases))
    meta = {"offsets": {str(p): o for p, o in offsets.items()}, "features": list(learner.features),
            "versions": learner.versions, "examples_learnt": learner.examples_learnt, "refused": learner.refused,
            "rows_since_offer": learner.rows_since_offer,
            "serving": {"version": serving.version, "validation": serving.validation} if serving else None}
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path, learner: OnlineLearner) -> dict[int, int] | None:
    """Restore ``learner`` from ``path``; returns the offsets to read on from (None: no
    checkpoint, or one for other features: the learner starts afresh)."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        if tuple(meta["features"]) != learner.features:
            return None
        for task, head in learner.heads.items():
            head.z, head.n = z[f"{task}.z"].copy(), z[f"{task}.n"].copy()
            head.item_bias = dict(zip(z[f"{task}.items"].tolist(), z[f"{task}.bias"].tolist(), strict=True))
        if meta["serving"] is not None:
            heads = {task: z[f"serving.{task}.w"].copy() for task in TASKS}
            biases = {task: dict(zip(z[f"serving.{task}.items"].tolist(), z[f"serving.{task}.bias"].tolist(),
                                     strict=True)) for task in TASKS}
            learner.serving = LearnedWeights(meta["serving"]["version"], learner.features, heads, biases,
                                             meta["serving"]["validation"])
            learner.gate.serve(learner.serving)
    learner.versions, learner.examples_learnt = meta["versions"], meta["examples_learnt"]
    learner.refused = meta.get("refused", 0)
    learner.rows_since_offer = meta["rows_since_offer"]
    return {int(p): int(o) for p, o in meta["offsets"].items()}
