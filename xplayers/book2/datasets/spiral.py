"""The book's ``dataset/spiral.py``: three interleaved spirals, 100 points each.

Point ``i`` of class ``j`` lies at radius ``r = i / N`` and angle
``theta = 4 j + 4 r + 0.2 e`` (``e`` standard normal):
``x = (r sin(theta), r cos(theta))``; ``t`` is its one-hot class.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xplayers._validation import seed_or_none

__all__ = ["load_data"]

#: Points per class, dimensions of a point, classes: the book's ``N``, ``DIM``, ``CLS_NUM``.
N, DIM, CLS_NUM = 100, 2, 3


def load_data(seed: int | None = 1984) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``(x, t)``: ``x`` float64 ``(300, 2)`` points, ``t`` int32 ``(300, 3)`` one-hot classes.

    The noise comes from ``numpy.random.RandomState(seed)``, the generator
    behind the book's ``np.random.seed(seed)`` and ``np.random.randn``, so
    the points are the book's, drawn in the book's order (class by class).
    The book seeds the global generator; here it is left as it was.

    Examples
    --------
    >>> from xplayers.book2.datasets import spiral
    >>> x, t = spiral.load_data()
    >>> x.shape, t.shape, t.sum(axis=0).tolist()
    ((300, 2), (300, 3), [100, 100, 100])
    """
    seed = seed_or_none("spiral.load_data", "seed", seed)
    noise = np.random.RandomState(seed).randn(CLS_NUM, N)
    rate = np.arange(N) / N
    theta = np.arange(CLS_NUM)[:, None] * 4.0 + 4.0 * rate + noise * 0.2
    x = np.stack([rate * np.sin(theta), rate * np.cos(theta)], axis=-1).reshape(-1, DIM)
    t = np.zeros((N * CLS_NUM, CLS_NUM), dtype=np.int32)
    t[np.arange(N * CLS_NUM), np.repeat(np.arange(CLS_NUM), N)] = 1
    return x, t
