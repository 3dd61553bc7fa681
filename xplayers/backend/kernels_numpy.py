"""NumPy kernels of the functional core: the same formulas, in NumPy's fastest form.

Each function here has the name and signature of a function of
:mod:`xplayers.functional` marked ``@kernel`` and computes the same formula
(the tests compare them on one table of inputs). What makes them faster:

* they write into the arrays they have just created (``out=``, ``+=``)
  instead of allocating a temporary for every operation, and never into
  their arguments (but ``subtract_scaled_``, the SGD update, whose job it is);
* ``np.dot`` for ``x.T @ dout``: ``matmul`` with an inner dimension of 1 (the
  batch-1 outer product) takes a slow loop, ``dot`` calls BLAS;
* the bias gradient and the softmax row sums as BLAS matrix-vector
  products with a vector of ones, and the row maximum of few classes
  column by column (NumPy's reductions along a short last axis are slow);
* one shift, one ``exp`` and one division for softmax and its loss; the
  softmax cross-entropy backward indexes the label entries instead of
  building a one-hot mask;
* NumPy's own functions, not array-api-compat's wrappers (which add a
  Python call each).
* im2col's windows are read through one strided view of the padded input
  (``as_strided``, read-only) and copied once, where the book fills a zero
  array in ``FH * FW`` strided assignments and copies it again to transpose
  it; col2im sums contiguous window slices into a buffer it owns with ``+=``
  (after one transposing copy of the gradient).

A kernel returns ``NotImplemented`` for the inputs whose special cases the
generic code defines (logits with an infinite or NaN row maximum, mixed
dtypes), and the generic version runs instead.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

Array = np.ndarray[Any, Any]

#: Vectors of ones by (length, dtype), read-only: ``ones @ dout`` is the column sum.
_ONES: dict[Hashable, Array] = {}
_CACHE_LOCK = threading.Lock()  # data-parallel gradients run these kernels on many threads


def _cached(cache: dict[Hashable, Array], key: Hashable, make: Callable[[], Array]) -> Array:
    """A read-only array from a small cache of at most 8 entries, safe across threads."""
    v = cache.get(key)
    if v is None:
        v = make()
        v.setflags(write=False)
        with _CACHE_LOCK:
            if len(cache) >= 8:  # the training batch, the ragged last batch, a few others
                cache.pop(next(iter(cache)), None)
            cache[key] = v
    return v


#: ``finfo(dtype).max`` as a Python float, by dtype.
_FMAX: dict[Any, float] = {}


def _fmax(dtype: Any) -> float:
    v = _FMAX.get(dtype)
    if v is None:
        v = _FMAX[dtype] = float(np.finfo(dtype).max)
    return v


def _ones(n: int, dtype: Any) -> Array:
    return _cached(_ONES, (n, dtype), lambda: np.ones(n, dtype))


def affine(x: Array, W: Array, b: Array, /) -> Any:
    """``x @ W + b``, the bias added into the product (``dot``: faster than ``matmul`` in 2-D)."""
    out = np.dot(x, W)
    if out.dtype != b.dtype or out.ndim != 2:
        return NotImplemented
    out += b
    return out


def affine_backward(
    dout: Array,
    x: Array,
    W: Array,
    /,
    *,
    input_grad: bool = True,
) -> Any:
    """``(dout @ W.T, x.T @ dout, sum(dout, axis=0))`` with ``dot`` and a GEMV."""
    if dout.ndim != 2 or x.ndim != 2 or dout.dtype != x.dtype:
        return NotImplemented
    dx = np.dot(dout, W.T) if input_grad else None
    return dx, np.dot(x.T, dout), np.dot(_ones(dout.shape[0], dout.dtype), dout)


def subtract_scaled_(p: Array, g: Array, lr: float, /) -> bool:
    """``p -= lr * g`` in place for a writable `p` of `g`'s dtype and shape; else False."""
    if type(p) is not np.ndarray or type(g) is not np.ndarray or not p.flags.writeable:
        return False
    if p.dtype != g.dtype or p.shape != g.shape:
        return False
    p -= lr * g
    return True


def _arrays(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """Run an elementwise `kernel` on 0-d arrays as on 1-element ones, and return a 0-d array.

    NumPy's ufuncs return a NumPy scalar for 0-d inputs (not an array, and
    ``out=`` refuses it), where a layer must return an array of its input's
    kind.
    """

    @functools.wraps(kernel)
    def run(*arrays: Array) -> Any:
        if arrays[0].ndim != 0:
            return kernel(*arrays)
        out = kernel(*(a.reshape(1) for a in arrays))
        return out if out is NotImplemented else out.reshape(())

    return run


@_arrays
def relu(x: Array, /) -> Array:
    """``max(x, 0)``."""
    return np.maximum(x, 0.0)


@_arrays
def relu_backward(dout: Array, out: Array, /) -> Array:
    """``dout * (out > 0)``: a multiplication, not NumPy's per-element branching ``where``."""
    return np.multiply(dout, out > 0)


@_arrays
def sigmoid(x: Array, /) -> Array:
    """``exp(min(x, 0)) / (1 + exp(-|x|))`` in two arrays."""
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    e += 1.0
    out = np.minimum(x, 0.0)
    np.exp(out, out=out)
    out /= e
    return out


@_arrays
def sigmoid_backward(dout: Array, out: Array, /) -> Any:
    """``dout * (1 - out) * out`` in one array."""
    if dout.dtype != out.dtype:
        return NotImplemented
    dx = np.subtract(1.0, out)
    dx *= dout
    dx *= out
    return dx


def _shift(x: Array) -> tuple[Array, Array, Array]:
    """``z = x - max``, ``e = exp(z)`` and ``s = sum(e)`` per row, without warnings.

    ``x - max`` rounds to ``-inf`` where the true difference is below the
    float minimum, as the generic shift defines it. Where a row maximum is
    not finite the values are NaN or wrong; callers check and defer those
    rows to the generic code, which defines them.
    """
    if x.ndim != 2:
        m = np.maximum.reduce(x, axis=-1, keepdims=True)
    elif x.shape[0] >= 256 and x.shape[1] <= 32:  # few classes: a reduction per row is slow
        m = x[:, 0].copy()
        for j in range(1, x.shape[1]):  # the row maximum column by column (NaN stays NaN)
            np.maximum(m, x[:, j], out=m)
        m = m[:, None]
    else:
        m = np.maximum.reduce(x, axis=-1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.subtract(x, m)
    e = np.exp(z)
    if x.ndim != 2:
        return z, e, np.add.reduce(e, axis=-1, keepdims=True)
    return z, e, np.dot(e, _ones(x.shape[1], x.dtype))[:, None]  # row sums as one GEMV


def _finite_rows(s: Array) -> bool:
    """Whether every row sum of ``exp(x - max)`` is finite and >= 1: every row max was finite."""
    return bool(np.isfinite(np.add.reduce(s, axis=None, dtype=np.float64)))


#: ``arange(n)`` by n, read-only: the row index of the label entries.
_ROWS: dict[Hashable, Array] = {}


def _rows(n: int) -> Array:
    return _cached(_ROWS, n, lambda: np.arange(n))


def softmax(x: Array, /) -> Any:
    """``exp(x - max) / sum``, divided in place."""
    if x.ndim == 0 or x.size == 0:
        return NotImplemented
    _, e, s = _shift(x)
    if not _finite_rows(s):
        return NotImplemented
    e /= s
    return e


def log_softmax(x: Array, /) -> Any:
    """``x - max - log(sum(exp(x - max)))``, subtracted in place."""
    if x.ndim == 0 or x.size == 0:
        return NotImplemented
    z, _, s = _shift(x)
    if not _finite_rows(s):
        return NotImplemented
    z -= np.log(s)
    return z


def softmax_cross_entropy(x: Array, t: Array, /) -> Any:
    """Mean loss and softmax from one shift: ``sum(log s - z[n, t_n]) / N`` for labels.

    A loss that is not finite (a row maximum that was not finite, or a true
    loss of ``inf``) is recomputed by the generic code, which defines it.
    """
    n = x.shape[0]
    if x.ndim != 2 or x.size == 0 or n > _fmax(x.dtype) or not _plain_targets(t, x):
        return NotImplemented
    z, y, s = _shift(x)
    if t.ndim == 1:
        total = np.add.reduce(np.log(s), axis=None) - np.add.reduce(z[_rows(n), t])
    else:
        p = t if t.dtype == x.dtype else t.astype(x.dtype)
        # sum_c p_c (log s - z_c); where p_c = 0 and z_c = -inf the generic takes 0, not NaN
        pz = np.multiply(p, z, where=p != 0, out=np.zeros_like(z))
        total = np.dot(np.log(s[:, 0]), np.add.reduce(p, axis=1)) - np.add.reduce(pz, axis=None)
    loss = total / n  # a NumPy scalar: no overflow dividing by n >= 1
    if not math.isfinite(loss):
        return NotImplemented
    y /= s
    return loss, y


def _plain_targets(t: Array, y: Array) -> bool:
    """Whether `t` is labels ``(N,)`` or rows ``(N, C)`` of `y` (a column goes to the generic)."""
    return t.ndim == 1 or t.shape == y.shape


def cross_entropy(x: Array, t: Array, /) -> Any:
    """The loss of :func:`softmax_cross_entropy`."""
    out = softmax_cross_entropy(x, t)
    return out if out is NotImplemented else out[0]


def cross_entropy_backward(y: Array, t: Array, dout: Any = 1.0, /) -> Any:
    """``(y - onehot(t)) * dout / N``: the label entries are indexed, no mask is built."""
    if y.ndim != 2 or not _plain_targets(t, y):
        return NotImplemented
    n = y.shape[0]
    scale = dout / max(n, 1)
    if t.ndim == 1:
        dx = np.multiply(y, scale)
        rows = _rows(n)
        dx[rows, t] = (y[rows, t] - 1.0) * scale
        return dx
    p = t if t.dtype == y.dtype else t.astype(y.dtype)
    dx = np.multiply(y, np.add.reduce(p, axis=1, keepdims=True))
    dx -= p
    dx *= scale
    return dx


#: The unsigned dtype of each signed integer dtype (``int64`` -> ``uint64``).
_UNSIGNED: dict[Any, Any] = {}


def labels_in_range(t: Array, num_classes: int, /) -> Any:
    """``all(0 <= t < C)`` in one pass: negative labels viewed as unsigned are huge."""
    kind = t.dtype.kind
    if kind == "i":
        unsigned = _UNSIGNED.get(t.dtype)
        if unsigned is None:
            unsigned = _UNSIGNED[t.dtype] = np.dtype(t.dtype.str.replace("i", "u"))
        t = t.view(unsigned)
    elif kind != "u":
        return NotImplemented
    return t.size == 0 or bool(np.maximum.reduce(t, axis=None) < num_classes)


# --------------------------------------------------------------------------- im2col


def windows(x: Array, fh: int, fw: int, stride: int = 1, pad: int = 0, /) -> Array:
    """Windows ``(N, OH, OW, C, FH*FW)`` from one strided view of `x`, copied once."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    s_n, s_c, s_h, s_w = img.strides
    view = as_strided(
        img,
        shape=(n, oh, ow, c, fh, fw),
        strides=(s_n, s_h * stride, s_w * stride, s_c, s_h, s_w),
        writeable=False,
    )
    t = np.empty((n, oh, ow, c, fh, fw), dtype=x.dtype)
    np.copyto(t, view)
    return t.reshape(n, oh, ow, c, fh * fw)


def fold(
    t: Array,
    input_shape: tuple[int, int, int, int],
    fh: int,
    fw: int,
    stride: int = 1,
    pad: int = 0,
    /,
) -> Array:
    """Images from windows: ``+=`` of contiguous slices into a zero buffer it owns."""
    n, c, h, w = input_shape
    oh, ow = t.shape[1], t.shape[2]
    t = t.reshape(n, oh, ow, c, fh, fw)
    img: Array
    if stride == fh == fw:
        img = t.transpose(0, 3, 1, 4, 2, 5).reshape(n, c, oh * fh, ow * fw)
        hp, wp = h + 2 * pad, w + 2 * pad
        if (oh * fh, ow * fw) != (hp, wp):
            img = np.pad(img, ((0, 0), (0, 0), (0, hp - oh * fh), (0, wp - ow * fw)))
    else:
        t = np.ascontiguousarray(t.transpose(4, 5, 0, 3, 1, 2))  # (FH, FW, N, C, OH, OW)
        img = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=t.dtype)
        span_h, span_w = stride * (oh - 1) + 1, stride * (ow - 1) + 1
        for fy in range(fh):
            for fx in range(fw):
                img[:, :, fy : fy + span_h : stride, fx : fx + span_w : stride] += t[fy, fx]
    if pad:
        img = img[:, :, pad : pad + h, pad : pad + w]
    return img


def _tiled_views(a: Array, ph: int, pw: int, oh: int, ow: int) -> list[Array]:
    """The ``ph * pw`` window positions of images `a` ``(N, H, W, C)`` as strided views."""
    return [a[:, u : oh * ph : ph, v : ow * pw : pw, :] for u in range(ph) for v in range(pw)]


def max_pooling(x: Array, ph: int, pw: int, stride: int = 1, pad: int = 0, /) -> Any:
    """Non-overlapping windows: elementwise maxima of the window positions, no window copy.

    Works on the ``(N, H, W, C)`` view of `x` (the memory order a convolution
    leaves), so neither the windows nor the output are copied into another
    layout; the first maximum wins ties, as ``argmax``.
    """
    if not stride == ph == pw or pad or x.ndim != 4:
        return NotImplemented
    oh, ow = x.shape[2] // ph, x.shape[3] // pw
    views = _tiled_views(x.transpose(0, 2, 3, 1), ph, pw, oh, ow)
    out = views[0].copy()
    for v in views[1:]:
        np.maximum(out, v, out=out)
    if np.isnan(out).any():  # argmax's NaN rule: the generic code defines it
        return NotImplemented
    arg = np.zeros(out.shape, dtype=np.intp)
    for p in range(len(views) - 1, 0, -1):  # backwards, so the first maximum wins
        np.copyto(arg, p, where=views[p] == out)
    np.copyto(arg, 0, where=views[0] == out)
    return out.transpose(0, 3, 1, 2), arg


def max_pooling_backward(
    dout: Array,
    arg_max: Array,
    input_shape: tuple[int, int, int, int],
    ph: int,
    pw: int,
    stride: int = 1,
    pad: int = 0,
    /,
) -> Any:
    """Each window position of a zero ``(N, H, W, C)`` buffer gets ``dout`` where it won."""
    if not stride == ph == pw or pad:
        return NotImplemented
    n, c, h, w = input_shape
    oh, ow = arg_max.shape[1], arg_max.shape[2]
    d = dout.transpose(0, 2, 3, 1)
    dx = np.zeros((n, h, w, c), dtype=dout.dtype)
    for p, v in enumerate(_tiled_views(dx, ph, pw, oh, ow)):
        np.multiply(d, arg_max == p, out=v)
    return dx.transpose(0, 3, 1, 2)


def scatter_add(values: Array, indices: Array, num_rows: int, /) -> Any:
    """``np.add.at`` on a new zero array, done by sorting: one ``add.reduceat`` over repeated rows.

    The indices are sorted (stably); rows whose index occurs once are
    copied to their place, and each run of a repeated index is summed by
    one ``np.add.reduceat`` over those rows only (word frequencies are
    Zipf-like: most ids of a batch occur once, a few very often). Indices
    outside ``[0, num_rows)`` go to the generic form (which skips them).
    """
    if values.ndim != 2 or indices.ndim != 1 or indices.dtype.kind not in "iu":
        return NotImplemented
    m = indices.shape[0]
    out = np.zeros((num_rows, values.shape[1]), dtype=values.dtype)
    if m == 0:
        return out
    if int(indices.min()) < 0 or int(indices.max()) >= num_rows:
        return NotImplemented
    order = np.argsort(indices, kind="stable")
    ordered = indices[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    counts = np.diff(np.append(starts, m))
    once = counts == 1
    out[ordered[starts[once]]] = values[order[starts[once]]]
    if not once.all():
        repeated = np.repeat(~once, counts)
        rows, ids = order[repeated], ordered[repeated]
        runs = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        out[ids[runs]] = np.add.reduceat(values[rows], runs, axis=0)
    return out


def _label_rows(x: Array, t: Array) -> tuple[Array, Array] | None:
    """``(rows, labels)`` of the rows of `x` whose label is in ``[0, C)``; None to defer."""
    if x.ndim != 2 or t.ndim != 1 or t.dtype.kind not in "iu" or t.shape[0] != x.shape[0]:
        return None
    rows = np.flatnonzero((t >= 0) & (t < x.shape[1]))
    return rows, t[rows]


def at_labels(x: Array, t: Array, /) -> Any:
    """``x[m, t[m]]`` by indexing (0 where the label is outside ``[0, C)``)."""
    found = _label_rows(x, t)
    if found is None:
        return NotImplemented
    rows, labels = found
    out = np.zeros(x.shape[0], dtype=x.dtype)
    out[rows] = x[rows, labels]
    return out


def softmax_label_gradient(y: Array, t: Array, weight: Array, /) -> Any:
    """``y * weight[:, None]`` with ``weight`` subtracted at the label entries, no one-hot built."""
    found = _label_rows(y, t)
    if found is None or weight.shape != t.shape or weight.dtype != y.dtype:
        return NotImplemented
    rows, labels = found
    out = y * weight[:, None]
    out[rows, labels] -= weight[rows]
    return out
