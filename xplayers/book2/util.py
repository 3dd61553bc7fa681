"""Volume 2's ``common/util.py``: gradient clipping and the book's text and evaluation helpers.

Names, arguments and return values are the book's. Arrays are computed
with the library of the arrays given (NumPy, CuPy, torch, JAX, Dask,
array-api-strict); the text helpers work on the host, as the book's do.
"""

from __future__ import annotations

from typing import Any

from xplayers.backend import namespace
from xplayers.book2._common import store

__all__ = ["clip_grads"]


def clip_grads(grads: list[Any], max_norm: float) -> None:
    """Scale every gradient by ``max_norm / (norm + 1e-6)`` when that is below 1.

    ``norm`` is the global norm, ``sqrt`` of the sum of the squares of all
    entries of all `grads`. The book tests ``rate < 1`` on the host; here the
    factor ``minimum(1, max_norm / (norm + 1e-6))`` stays an array and every
    gradient is multiplied by it, so nothing is read back from the device
    (no synchronisation on a GPU, nothing computed on a lazy Dask array).
    The products are written into ``grads[i]`` where the array allows it and
    replace ``grads[i]`` where arrays are immutable (JAX), as the layers'
    gradients are stored (:mod:`xplayers.book2`).
    """
    if not grads:
        return
    xp = namespace(grads[0])
    total = xp.sum(grads[0] * grads[0])
    for g in grads[1:]:
        total = total + xp.sum(g * g)
    rate = max_norm / (xp.sqrt(total) + 1e-6)
    rate = xp.minimum(rate, xp.ones_like(rate))
    for i in range(len(grads)):
        store(grads, i, grads[i] * rate)
