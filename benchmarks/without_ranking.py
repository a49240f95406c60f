"""``realtime_bench.py --without-ranking``: what the worker costs per rating besides ranking.

Run in the worker process before it starts (the benchmark's prelude), :func:`install`
replaces the default ranker's batch ranking with a copy of one list: the first row with
a non-empty list is ranked for real, and every rating after it gets a copy of that list
(same length, same ``because``; the benchmark prints the lists' mean length). Everything else runs as in service: the stream and its
batches, each user's state read, changed and written, the list rounded, encoded,
published and its offsets committed. The run's CPU per rating is then the floor that no
ranker can take the worker below, and its ratings/s the most this worker gets through
while the broker and the benchmark's clients share the machine.
"""
from __future__ import annotations

from ranking import batch


def install() -> None:
    """Patch ``ranking.batch`` in this process (an experiment: never in service)."""
    real, first = batch._rank_rows, []

    def one_list_for_every_row(ranker, rows, index, content, explain, pairs=True):
        if not rows or not pairs:  # the learned ranker's recall (another shape): not replaced
            return real(ranker, rows, index, content, explain, pairs)
        if not first or not first[0][0]:  # until a history with something to list comes
            first[:] = real(ranker, rows[:1], index, content, explain, pairs)
        items, because, scored = first[0]
        return [([list(entry) for entry in items], dict(because), scored) for _row in rows]

    batch._rank_rows = one_list_for_every_row
