"""Helpers shared by test modules (fixtures live in ``conftest.py``)."""
from __future__ import annotations

import json


def last_json(capsys) -> dict:
    """The JSON object a command printed as its last line of stdout."""
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])
