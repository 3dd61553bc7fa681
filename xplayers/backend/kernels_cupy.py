"""CuPy kernels of the functional core: one fused GPU pass where the generic code takes several.

Each function has the name and signature of a function of
:mod:`xplayers.functional` marked ``@kernel`` and computes the same formula
(``tests/test_kernels.py`` compares them on a GPU; without one those tests
skip with the reason):

* :func:`relu_backward`: ``out > 0 ? dout : 0`` in one ``ElementwiseKernel``
  (no boolean mask array);
* :func:`cross_entropy_backward`: ``(y - [c == t_n]) * scale`` for integer
  labels in one ``ElementwiseKernel`` over ``y`` (no one-hot mask, no
  separate scaling pass); ``scale`` stays on the device, so a 0-d ``dout``
  is never read on the host.

The kernels are compiled by CuPy on first use and cached by it.
"""

from __future__ import annotations

import functools
from typing import Any

import cupy
import cupyx


@functools.cache
def _relu_backward() -> Any:
    return cupy.ElementwiseKernel(
        "T dout, T out", "T dx", "dx = out > 0 ? dout : (T)0", "xplayers_relu_backward"
    )


@functools.cache
def _ce_backward() -> Any:
    return cupy.ElementwiseKernel(
        "raw T y, raw I t, int64 C, T scale",
        "T dx",
        "const long long n = i / C; dx = (y[i] - (i % C == (long long)t[n] ? (T)1 : (T)0)) * scale",
        "xplayers_ce_backward",
    )


def relu_backward(dout: Any, out: Any, /) -> Any:
    """``dout`` where ``out > 0``, else 0, in one pass."""
    if dout.dtype != out.dtype or dout.shape != out.shape:
        return NotImplemented
    return _relu_backward()(dout, out)


def cross_entropy_backward(y: Any, t: Any, dout: Any = 1.0, /) -> Any:
    """``(y - onehot(t)) * dout / N`` for integer labels, in one pass."""
    if y.ndim != 2 or t.ndim != 1 or t.dtype.kind not in "iu":
        return NotImplemented
    n, c = y.shape
    scale = cupy.asarray(dout / max(n, 1), dtype=y.dtype)  # a 0-d array: no host read
    y = cupy.ascontiguousarray(y)  # the kernel indexes y flat, like dx
    dx = cupy.empty_like(y)
    _ce_backward()(y, cupy.ascontiguousarray(t), c, scale, dx)
    return dx


def scatter_add(values: Any, indices: Any, num_rows: int, /) -> Any:
    """``cupyx.scatter_add`` (atomic adds on the GPU) of the rows of `values` into new zeros.

    The book's ``cupy.scatter_add`` moved to ``cupyx`` in CuPy 8. Indices
    must lie in ``[0, num_rows)`` (the layers check them).
    """
    if values.ndim != 2 or indices.ndim != 1 or indices.dtype.kind not in "iu":
        return NotImplemented
    out = cupy.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    cupyx.scatter_add(out, indices, values)
    return out
