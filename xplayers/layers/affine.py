"""The Affine (fully connected) layer."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from xplayers._validation import describe, dtype_name, fail, float_array, like, same_backend
from xplayers.backend import namespace
from xplayers.functional import affine, affine_backward
from xplayers.layers._base import Layer

__all__ = ["Affine", "check_input"]


def check_input(x: Any, W: Any) -> ModuleType:
    """What ``Affine.forward`` requires of its input: floating, ``(N, ...)`` with ``D`` values.

    Returns the namespace of `x`; raises ``LayerInputError`` naming the layer.
    """
    where = "Affine.forward"
    xp = float_array(where, "x", x, ndim_min=2)
    if math.prod(x.shape[1:]) != W.shape[0]:
        fail(
            where,
            "x",
            f"{W.shape[0]} values per sample, shape (N, {W.shape[0]}), to match W "
            f"of shape {tuple(W.shape)}",
            describe(x),
        )
    return xp


class Affine(Layer):
    r"""Fully connected layer: :math:`y = x W + b`.

    Shapes: `x` is ``(N, D)`` or ``(N, ...)`` with ``D`` values per sample
    (images are flattened, and ``backward`` restores the input shape), `W`
    is ``(D, M)``, `b` is ``(M,)``, `y` is ``(N, M)``. Backward:

    .. math::
        dx = dout\,W^\top, \qquad dW = x^\top dout, \qquad db = \textstyle\sum_n dout_n

    The layer keeps the very `W` and `b` it was given (no copy), so updating
    them in place (``params["W1"] -= lr * grads["W1"]``, as the book's
    networks do) is seen by the next ``forward``.

    Dtypes: the layer computes in its parameters' dtype. An input (or
    ``dout``) of another floating dtype is cast to it, and ``dx`` is cast back
    to the input's dtype, so float32 parameters stay float32 and ``dx``
    matches ``x``.

    Parameters
    ----------
    W : array, shape (D, M), real floating dtype
    b : array, shape (M,), same backend, device and dtype as `W`
    input_grad : bool, default True
        When False, ``backward`` computes only ``dW`` and ``db`` and returns
        ``None``: the first layer of a network has no use for ``dx``, one of
        its two backward matrix products (a third of the layer's matrix work).

    Attributes
    ----------
    W, b : array
        The parameters.
    dW, db : array or None
        Their gradients from the last ``backward``.
    x : array or None
        The flattened ``(N, D)`` input kept by ``forward``.
    original_x_shape : tuple or None
        The input's shape, restored on ``dx``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers import Affine
    >>> layer = Affine(xp.ones((3, 2)), xp.zeros(2))
    >>> layer.forward(xp.ones((4, 3)))[0, :]
    Array([3., 3.], dtype=array_api_strict.float64)
    >>> layer.backward(xp.ones((4, 2))).shape
    (4, 3)
    >>> layer.db
    Array([4., 4.], dtype=array_api_strict.float64)
    """

    def __init__(self, W: Any, b: Any, *, input_grad: bool = True) -> None:
        float_array("Affine", "W", W)
        if W.ndim != 2:
            fail("Affine", "W", "a 2-D weight matrix of shape (D_in, D_out)", describe(W))
        float_array("Affine", "b", b)
        same_backend("Affine", "b", b, "W", W)
        if tuple(b.shape) != (W.shape[1],) or b.dtype != W.dtype:
            fail(
                "Affine", "b", f"shape ({W.shape[1]},) and dtype {W.dtype} to match W", describe(b)
            )
        self.W = W
        self.b = b
        self.input_grad = input_grad
        self.x: Any = None
        self.original_x_shape: tuple[int, ...] | None = None
        self.dW: Any = None
        self.db: Any = None
        self._x_dtype: Any = None

    @property
    def params(self) -> dict[str, Any]:
        """``{"W": W, "b": b}``."""
        return {"W": self.W, "b": self.b}

    @property
    def grads(self) -> dict[str, Any]:
        """``{"W": dW, "b": db}``."""
        return {"W": self.dW, "b": self.db}

    def forward(self, x: Any) -> Any:
        """Return ``x @ W + b`` of shape ``(N, M)``; `x` is ``(N, D)`` or ``(N, ...)``."""
        W = self.W
        if like(x, W) and x.ndim == 2 and x.shape[1] == W.shape[0]:  # the common case
            self.original_x_shape = x.shape
            self._x_dtype = x.dtype
            self.x = x
            return affine(x, W, self.b)
        xp = check_input(x, W)
        same_backend("Affine.forward", "x", x, "the layer's parameters W, b", W)
        n, d = x.shape[0], W.shape[0]
        self.original_x_shape = tuple(x.shape)
        self._x_dtype = x.dtype
        if x.ndim != 2:
            x = xp.reshape(x, (n, d))
        if x.dtype != W.dtype:
            x = xp.astype(x, W.dtype)
        self.x = x
        return affine(x, W, self.b)

    def backward(self, dout: Any) -> Any:
        """Set ``dW``, ``db``; return ``dx`` in the input's shape (None without ``input_grad``)."""
        x = self._forward_state(self.x)
        W = self.W
        if like(dout, x) and dout.shape == (x.shape[0], W.shape[1]):  # the common case
            dx, self.dW, self.db = affine_backward(dout, x, W, input_grad=self.input_grad)
            if dx is None or (dx.dtype == self._x_dtype and len(self.original_x_shape or ()) == 2):
                return dx
            xp = namespace(dx)
        else:
            xp, dout = self._dout_for(dout, x)
            dx, self.dW, self.db = affine_backward(dout, x, W, input_grad=self.input_grad)
            if dx is None:
                return None
        if dx.dtype != self._x_dtype:
            dx = xp.astype(dx, self._x_dtype)
        if len(self.original_x_shape or ()) != 2:
            dx = xp.reshape(dx, self.original_x_shape)
        return dx

    def _dout_for(self, dout: Any, x: Any) -> tuple[ModuleType, Any]:
        where = "Affine.backward"
        xp = float_array(where, "dout", dout)
        same_backend(where, "dout", dout, "the forward input", x)
        expected = (x.shape[0], self.W.shape[1])
        if tuple(dout.shape) != expected:
            fail(where, "dout", f"the shape of the forward output {expected}", describe(dout))
        return xp, dout if dout.dtype == self.W.dtype else xp.astype(dout, self.W.dtype)

    def __repr__(self) -> str:
        d, m = self.W.shape
        return f"Affine({d} -> {m}, dtype={dtype_name(self.W.dtype)})"
