"""Volume 2's ``common/layers.py``: the list-style layers over the pure functions.

Each class keeps the book's names and conventions: ``params`` and ``grads``
are lists (gradients stored as described in :mod:`xplayers.book2`), loss
layers take ``forward(x, t)`` and ``backward(dout=1)``. The math is that of
:mod:`xplayers.functional` and :mod:`xplayers.sequence`.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from xplayers._validation import describe, fail, float_array, number_in
from xplayers.backend import namespace
from xplayers.book2._cells import hold
from xplayers.book2._common import (
    adopt,
    as_tokens,
    forwarded,
    mask_source,
    on_layer_backend,
    store,
    zeros_like_all,
)
from xplayers.functional import (
    affine,
    affine_backward,
    cross_entropy_backward,
    dropout_mask,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_cross_entropy,
)
from xplayers.sequence import (
    embedding,
    embedding_backward,
    matmul,
    matmul_backward,
    sigmoid_cross_entropy,
    sigmoid_cross_entropy_backward,
    softmax_backward,
)

__all__ = [
    "Affine",
    "Dropout",
    "Embedding",
    "MatMul",
    "Sigmoid",
    "SigmoidWithLoss",
    "Softmax",
    "SoftmaxWithLoss",
]


class Book2Layer:
    """Base of the volume 2 layers: ``params``/``grads`` lists, ``forward``/``backward``."""

    params: list[Any]
    grads: list[Any]

    def _take(self, names: str, *params: Any) -> None:
        """Keep `params` (moved from the host once, see the package doc) and zero gradients."""
        where = type(self).__name__
        pairs = zip(names.split(), params, strict=True)
        self.params = [adopt(where, n, p) for n, p in pairs]
        self.grads = zeros_like_all(self.params)
        hold(self)

    def _input(self, method: str, x: Any, size: int | None = None) -> Any:
        where = f"{type(self).__name__}.{method}"
        x = on_layer_backend(x, self.params[0]) if self.params else x
        float_array(where, "x", x)
        if size is not None and (x.ndim != 2 or int(x.shape[1]) != size):
            fail(where, "x", f"shape (N, {size})", describe(x))
        return x


class MatMul(Book2Layer):
    """``x @ W`` without a bias (the word2vec layers of chapters 3 and 4)."""

    def __init__(self, W: Any) -> None:
        self._take("W", W)
        self.x: Any = None
        self._cache: Any = None

    def forward(self, x: Any) -> Any:
        """Return ``x @ W``, ``x`` of shape ``(N, D)``.

        Integer or boolean `x` (the one-hot rows of chapter 3) is converted
        to ``W``'s dtype first; NumPy would promote ``int32 @ float32`` to
        float64.
        """
        W = self.params[0]
        x = on_layer_backend(x, W)
        if array_api_compat.is_array_api_obj(x):
            xp = namespace(x)
            if xp.isdtype(x.dtype, ("integral", "bool")):
                x = xp.astype(x, W.dtype)
        x = self._input("forward", x, int(W.shape[0]))
        out, self._cache = matmul(x, self.params[0])
        self.x = x
        return out

    def backward(self, dout: Any) -> Any:
        """Store ``dW = x.T @ dout``; return ``dx = dout @ W.T``."""
        dx, dW = matmul_backward(forwarded(self, self._cache), dout)
        store(self.grads, 0, dW)
        return dx


class Affine(Book2Layer):
    """``x @ W + b`` for 2-D `x`."""

    def __init__(self, W: Any, b: Any) -> None:
        self._take("W b", W, b)
        self.x: Any = None

    def forward(self, x: Any) -> Any:
        """Return ``x @ W + b``, ``x`` of shape ``(N, D)``."""
        W, b = self.params
        self.x = self._input("forward", x, int(W.shape[0]))
        return affine(self.x, W, b)

    def backward(self, dout: Any) -> Any:
        """Store ``dW`` and ``db``; return ``dx``."""
        dx, dW, db = affine_backward(dout, forwarded(self, self.x), self.params[0])
        store(self.grads, 0, dW)
        store(self.grads, 1, db)
        return dx


class Softmax(Book2Layer):
    """Softmax along the last axis (overflow-free); backward from the output."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.out: Any = None

    def forward(self, x: Any) -> Any:
        """Return the softmax of `x` along its last axis."""
        self.out = softmax(self._input("forward", x))
        return self.out

    def backward(self, dout: Any) -> Any:
        """Return ``dx`` from the kept output."""
        return softmax_backward(forwarded(self, self.out), dout)


class SoftmaxWithLoss(Book2Layer):
    """Softmax and mean cross-entropy of ``(N, C)`` scores; labels ``(N,)`` or one-hot."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.y: Any = None
        self.t: Any = None

    def forward(self, x: Any, t: Any) -> Any:
        """Return the mean cross-entropy of scores `x` against labels `t`."""
        where = "SoftmaxWithLoss.forward"
        x = self._input("forward", x)
        if x.ndim != 2:
            fail(where, "x", "shape (N, C)", describe(x))
        t = on_layer_backend(t, x)
        if getattr(t, "ndim", 0) == 2 and tuple(t.shape) == tuple(x.shape):
            t = namespace(t).argmax(t, axis=1)  # the book: one-hot rows become labels
        t = as_tokens(where, "t", t, x, int(x.shape[1]), ndim=1)
        if t.shape[0] != x.shape[0]:
            fail(where, "t", f"{x.shape[0]} labels, one per row of x", describe(t))
        loss, self.y = softmax_cross_entropy(x, t)
        self.t = t
        return loss

    def backward(self, dout: Any = 1) -> Any:
        """Return ``(y - t) * dout / N``."""
        return cross_entropy_backward(forwarded(self, self.y), self.t, dout)


class Sigmoid(Book2Layer):
    """The logistic sigmoid, overflow-free."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.out: Any = None

    def forward(self, x: Any) -> Any:
        """Return ``1 / (1 + exp(-x))``."""
        self.out = sigmoid(self._input("forward", x))
        return self.out

    def backward(self, dout: Any) -> Any:
        """Return ``dout * (1 - y) * y``."""
        return sigmoid_backward(dout, forwarded(self, self.out))


class SigmoidWithLoss(Book2Layer):
    """Sigmoid and mean binary cross-entropy against 0/1 targets of the shape of `x`."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.loss: Any = None
        self.y: Any = None
        self.t: Any = None
        self._cache: Any = None

    def forward(self, x: Any, t: Any) -> Any:
        """Return the mean binary cross-entropy of scores `x` against targets `t`."""
        where = "SigmoidWithLoss.forward"
        x = self._input("forward", x)
        t = on_layer_backend(t, x)
        if tuple(getattr(t, "shape", ())) != tuple(x.shape):
            fail(where, "t", f"targets of the shape of x, {tuple(x.shape)}", describe(t))
        self.loss, self._cache = sigmoid_cross_entropy(x, t)
        self.y, self.t = self._cache
        return self.loss

    def backward(self, dout: Any = 1) -> Any:
        """Return ``(y - t) * dout / N``."""
        return sigmoid_cross_entropy_backward(forwarded(self, self._cache), dout)


class Dropout(Book2Layer):
    """The book's (non-inverted) dropout: ``forward(x, train_flg=True)``.

    Training keeps each value with probability ``1 - dropout_ratio``; test
    time scales by ``1 - dropout_ratio``. The mask is drawn on the host, so
    it is the same on every backend: from the layer's own
    ``numpy.random.default_rng(seed)``, or, without a seed, from NumPy's
    global generator as the book draws it (``np.random.rand(*x.shape)``), so
    ``np.random.seed`` gives the book's masks.
    """

    def __init__(self, dropout_ratio: float = 0.5, *, seed: Any = None) -> None:
        self.params, self.grads = [], []
        self.dropout_ratio = number_in(
            "Dropout", "dropout_ratio", dropout_ratio, low=0.0, high=1.0, low_open=False
        )
        self.rng = mask_source(seed)
        self.mask: Any = None
        self._train = True

    def forward(self, x: Any, train_flg: bool = True) -> Any:
        """Return ``x * mask`` (training) or ``x * (1 - dropout_ratio)``."""
        x = self._input("forward", x)
        self._train = bool(train_flg)
        if not train_flg:
            return x * (1.0 - self.dropout_ratio)
        self.mask = dropout_mask(self.rng, x, self.dropout_ratio)
        return x * self.mask

    def backward(self, dout: Any) -> Any:
        """Return ``dout * mask`` (``dout * (1 - dropout_ratio)`` after a test forward)."""
        if not self._train:
            return dout * (1.0 - self.dropout_ratio)
        return dout * forwarded(self, self.mask)


class Embedding(Book2Layer):
    """Rows of ``W`` ``(V, D)`` by integer ids; the backward is one scatter-add."""

    def __init__(self, W: Any) -> None:
        self._take("W", W)
        self.idx: Any = None

    def forward(self, idx: Any) -> Any:
        """Return the rows of ``W`` named by the integer ids `idx`."""
        W = self.params[0]
        self.idx = as_tokens("Embedding.forward", "idx", idx, W, int(W.shape[0]), ndim=None)
        return embedding(W, self.idx)

    def backward(self, dout: Any) -> None:
        """Store ``dW``, the rows of `dout` added into the rows of their ids."""
        W = self.params[0]
        store(self.grads, 0, embedding_backward(dout, forwarded(self, self.idx), int(W.shape[0])))
