"""Helpers shared by test modules (fixtures live in ``conftest.py``)."""
from __future__ import annotations

import collections
import json
import types

from faust.types import TP
from faust.types.tuples import Message


def last_json(capsys) -> dict:
    """The JSON object a command printed as its last line of stdout."""
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


class FlowControl:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


def consumer_stub(generation: int, flow_active: bool = True):
    """Just what ``Consumer.ack`` touches."""
    app_stub = types.SimpleNamespace(consumer_generation_id=generation, flow_control=FlowControl(flow_active),
                                     topics=types.SimpleNamespace(acks_enabled_for=lambda topic: True))
    return types.SimpleNamespace(app=app_stub, _committed_offset=collections.defaultdict(lambda: None),
                                 _acked_index=collections.defaultdict(set), _acked=collections.defaultdict(list),
                                 _unacked_messages=set(), _n_acked=0, _waiting_for_ack=None)


def message(offset: int, generation: int | None = None, key: bytes = b"k", value: bytes = b"v") -> Message:
    return Message("ratings", 0, offset, 0.0, 0, None, key, value, None, tp=TP("ratings", 0),
                   generation_id=generation)
