"""Helpers shared by test modules (``tests/`` is on ``sys.path`` under pytest)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Offset of a right-hemisphere label from its left one (brainiron's atomic labels).
RIGHT_OFFSET = 10


def composite_dice(est: np.ndarray, truth: np.ndarray, members: Sequence[int]) -> float:
    """Dice of a composite region, left and right hemisphere averaged.

    Parameters
    ----------
    est, truth : ndarray
        Integer label images on the same grid.
    members : sequence of int
        The composite's left atomic labels (the right ones are ``+ 10``).

    Returns
    -------
    float
        The mean of the left and the right Dice (0 for a hemisphere empty in both images).
    """
    out = []
    for offset in (0, RIGHT_OFFSET):
        ids = [m + offset for m in members]
        a, b = np.isin(est, ids), np.isin(truth, ids)
        out.append(2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    return float(np.mean(out))
