"""Python's ``round(x, digits)`` over a whole array at once, to the same floats.

Lists carry their scores rounded (6 decimals from the rankers, 4 on the wire), and a
batch rounds tens of thousands of them: ``round`` costs a few hundred nanoseconds each
(it rounds the exact binary value through a decimal string). ``np.round`` is
``rint(x * 10**digits) / 10**digits``: the division gives the float nearest to the
integer it is given over ``10**digits``, as ``round`` does, so the two differ only when
``x * 10**digits`` rounded the product across a half (the product is within a few ulps
of one) or is too large to hold its integer exactly. Those few are left to ``round``.
"""
from __future__ import annotations

import numpy as np

#: How close to a half a scaled value must be for the product's rounding to matter (ulps).
_NEAR_HALF_ULPS = 4


def rounded(values, digits: int) -> list[float]:
    """``[round(float(x), digits) for x in values]``, as arrays."""
    x = np.asarray(values, dtype=np.float64)
    scale = 10.0 ** digits
    y = x * scale
    out = np.rint(y) / scale
    with np.errstate(invalid="ignore"):
        unsure = ~(np.abs(y) < 2.0 ** 52) | (np.abs(np.abs(y - np.floor(y)) - 0.5)
                                             <= _NEAR_HALF_ULPS * np.spacing(np.abs(y)))
    for i in np.flatnonzero(unsure).tolist():
        out[i] = round(float(x[i]), digits)
    return out.tolist()
