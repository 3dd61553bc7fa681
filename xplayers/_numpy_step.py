"""A fused training step for NumPy, beside the generic array-API path.

It runs the same math as the layers (forward, softmax cross-entropy, backward,
update) for a stack ``Affine, act, Affine, act, ..., Affine, SoftmaxWithLoss``
but writes every intermediate array into buffers it owns and reuses from step
to step: new arrays above ~32 MiB are page-faulted on every allocation, which
costs as much as the arithmetic at large batch sizes. It also folds the SGD
learning rate into the loss gradient, skips the first layer's input gradient,
and fuses the softmax and cross-entropy backward into the softmax buffer.

Nothing it returns is ever written again: the loss is a fresh 0-d array, and
the buffers never leave this module (the optimizer is given them for the
duration of one ``update`` call only). The tests check this path against the
generic one for equality.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xplayers._validation import describe, fail
from xplayers.layers.softmax_with_loss import check_logits_and_targets

__all__ = ["NumpyStep"]

Array = np.ndarray[Any, Any]


class NumpyStep:
    """Buffers and code for one fused step of an Affine/activation stack on NumPy.

    One instance belongs to one network; buffers are kept per array role and
    replaced only when the batch shape or dtype changes.
    """

    def __init__(self) -> None:
        self._sets: dict[tuple[int, Any], dict[tuple[Any, ...], Array]] = {}
        self._cur: dict[tuple[Any, ...], Array] = {}
        self._rows: dict[int, Array] = {}

    def _buf(self, key: tuple[Any, ...], shape: tuple[int, ...], dtype: Any) -> Array:
        """The buffer for one role, for the current batch size and dtype (see :meth:`_use`)."""
        b = self._cur.get(key)
        if b is None:
            b = self._cur[key] = np.empty(shape, dtype)
        return b

    def _use(self, n: int, dtype: Any) -> None:
        """Select the buffer set of batch size `n` (the parameter shapes never change)."""
        cur = self._sets.get((n, dtype))
        if cur is None:
            if len(self._sets) >= 2:  # the full batch and one ragged last batch
                self._sets.pop(next(iter(self._sets)))
            cur = self._sets[(n, dtype)] = {}
        self._cur = cur

    @staticmethod
    def supports(params: Sequence[tuple[Array, Array]], x: Any, t: Any) -> bool:
        """Whether the fused path applies: writable NumPy parameters of one float dtype."""
        if not (type(x) is np.ndarray and type(t) is np.ndarray):
            return False
        dtype = params[0][0].dtype
        for W, b in params:
            if not (
                type(W) is np.ndarray
                and type(b) is np.ndarray
                and W.dtype == dtype
                and b.dtype == dtype
                and W.flags.writeable
                and b.flags.writeable
            ):
                return False
        return bool(dtype.kind == "f" and x.dtype.kind == "f")

    def __call__(
        self,
        params: Sequence[tuple[Array, Array]],
        activations: Sequence[str],
        x: Array,
        t: Array,
        *,
        sgd_lr: float | None = None,
        update: Callable[[list[tuple[Array, Array]]], None] | None = None,
    ) -> Array | None:
        """Run forward, loss, backward and the update; return the mean loss.

        Parameters
        ----------
        params : list of (W, b)
            The Affine parameters, first layer first; updated in place.
        activations : list of {"relu", "sigmoid"}
            One per hidden layer (``len(params) - 1``).
        x : ndarray, shape (N, ...)
        t : ndarray, labels (N,) or targets (N, C)
        sgd_lr : float, optional
            Plain SGD with this learning rate, folded into the gradient.
        update : callable, optional
            Otherwise called once with ``[(dW1, db1), ...]`` (unscaled
            gradients in buffers that are reused by the next step).

        Returns
        -------
        ndarray of shape () or None
            The loss, or None when a logit is not finite (the caller then takes
            the generic path, which defines those cases; nothing was updated).
        """
        n = x.shape[0]
        self._use(n, params[0][0].dtype)
        inputs, z = self._forward(params, activations, x)
        _check_targets(z, t)
        scale = (1.0 if sgd_lr is None else sgd_lr) / max(n, 1)
        fused = self._loss_and_gradient(z, t, scale)
        if fused is None:
            return None
        loss, dz = fused
        grads = self._backward(params, activations, inputs, dz)
        if sgd_lr is not None:
            for (W, b), (dW, db) in zip(params, grads, strict=True):
                np.subtract(W, dW, out=W)
                np.subtract(b, db, out=b)
        elif update is not None:
            update(grads)
        else:  # pragma: no cover - programming error
            fail("NumpyStep", "update", "sgd_lr or update", "neither")
        return loss

    def _forward(
        self, params: Sequence[tuple[Array, Array]], activations: Sequence[str], x: Array
    ) -> tuple[list[Array], Array]:
        """Return the input of every Affine and the logits (all but `x` in buffers)."""
        n = x.shape[0]
        W0 = params[0][0]
        dtype = W0.dtype
        a = x.reshape(n, math.prod(x.shape[1:])) if x.ndim != 2 else x
        if a.shape[1] != W0.shape[0]:
            fail(
                "Affine.forward",
                "x",
                f"{W0.shape[0]} values per sample, shape (N, {W0.shape[0]}), to match W "
                f"of shape {W0.shape}",
                describe(x),
            )
        if a.dtype != dtype:
            a = a.astype(dtype)
        inputs = [a]
        last = len(params) - 1
        for i, (W, b) in enumerate(params):
            h = self._buf(("h", i), (n, W.shape[1]), dtype)
            np.matmul(a, W, out=h)
            h += b
            if i < last:
                if activations[i] == "relu":
                    np.maximum(h, 0, out=h)
                else:
                    _sigmoid_inplace(h)
                inputs.append(h)
            a = h
        return inputs, a

    def _loss_and_gradient(self, z: Array, t: Array, scale: float) -> tuple[Array, Array] | None:
        """Mean loss and ``scale * N * dL/dz``, overwriting the logits buffer `z`."""
        n = z.shape[0]
        m = np.maximum.reduce(z, axis=1, keepdims=True)
        if not np.isfinite(m).all() or (t.ndim == 2 and not np.isfinite(z).all()):
            return None  # the generic path defines infinite and NaN logits
        z -= m
        y = self._buf(("y",), z.shape, z.dtype)
        np.exp(z, out=y)
        s = np.add.reduce(y, axis=1, keepdims=True)
        log_s = np.log(s[:, 0])
        if t.ndim == 1:
            rows = self._rows.get(n)
            if rows is None:
                rows = self._rows[n] = np.arange(n)
            total = log_s.sum() - z[rows, t].sum()
            np.divide(scale, s, out=s)
            y *= s  # softmax times the scale, in one pass
            y[rows, t] -= scale
        else:
            tt = t if t.dtype == z.dtype else t.astype(z.dtype)
            tsum = tt.sum(axis=1, keepdims=True)
            total = (log_s * tsum[:, 0]).sum() - np.einsum("nc,nc->", tt, z)
            y /= s
            y *= tsum
            y -= tt
            y *= scale
        return np.asarray(total / max(n, 1), dtype=z.dtype), y

    def _backward(
        self,
        params: Sequence[tuple[Array, Array]],
        activations: Sequence[str],
        inputs: list[Array],
        dout: Array,
    ) -> list[tuple[Array, Array]]:
        """Return ``[(dW, db), ...]`` in buffers; the first layer's dx is never formed."""
        n = dout.shape[0]
        ones = self._cur.get(("ones",))
        if ones is None:
            ones = self._cur[("ones",)] = np.ones(n, dout.dtype)
        grads: list[tuple[Array, Array]] = []
        for i in range(len(params) - 1, -1, -1):
            W, b = params[i]
            a_prev = inputs[i]
            dW = self._buf(("dW", i), W.shape, W.dtype)
            if n == 1:  # an outer product: matmul takes a slow loop for K = 1, dot calls BLAS
                np.dot(a_prev.T, dout, out=dW)
            else:
                np.matmul(a_prev.T, dout, out=dW)
            db = self._buf(("db", i), b.shape, b.dtype)
            np.matmul(ones, dout, out=db)  # a BLAS GEMV: 4x faster than add.reduce(axis=0)
            grads.append((dW, db))
            if i:
                dh = self._buf(("dh", i), a_prev.shape, W.dtype)
                np.matmul(dout, W.T, out=dh)
                if activations[i - 1] == "relu":
                    mask = self._buf(("mask", i), a_prev.shape, np.bool_)
                    np.greater(a_prev, 0, out=mask)
                    # multiply, not copyto(where=): a masked copy branches per element
                    # and runs 15x slower on a half-random mask (dh is finite here)
                    np.multiply(dh, mask, out=dh)
                else:
                    dh *= 1.0 - a_prev
                    dh *= a_prev
                dout = dh
        grads.reverse()
        return grads


def _check_targets(z: Array, t: Array) -> None:
    """The checks of SoftmaxWithLoss.forward, at NumPy speed; its own call words the error."""
    n, c = z.shape
    if t.ndim == 1 and t.shape[0] == n and t.dtype.kind in "iu":
        if n == 0 or (t.min() >= 0 and t.max() < c):
            return
    elif t.shape == (n, c) and t.dtype.kind in "fiub":
        return
    check_logits_and_targets("SoftmaxWithLoss.forward", z, t)


def _sigmoid_inplace(h: Array) -> None:
    """Overwrite `h` with sigmoid(h): the generic formula ``exp(min(h, 0)) / (1 + exp(-|h|))``."""
    e = np.abs(h)
    np.negative(e, out=e)
    np.exp(e, out=e)
    e += 1.0
    np.minimum(h, 0, out=h)
    np.exp(h, out=h)
    h /= e
