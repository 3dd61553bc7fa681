"""The Affine (fully connected) layer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

from xplayers._validation import describe, dtype_name, fail, float_array, like, same_backend
from xplayers.backend import namespace
from xplayers.functional import affine, affine_backward
from xplayers.layers._base import NO_STATE, Layer, LayerFn

__all__ = ["Affine", "AffineFn", "check_input"]


@dataclass(frozen=True)
class AffineFn(LayerFn):
    """The pure pair of :class:`Affine`: ``y = x W + b`` on `x` flattened to ``(N, D)``.

    The forward casts `x` to `W`'s dtype and flattens it; ``saved`` holds
    that ``x`` and the input's ``shape`` and ``dtype``, to which the
    backward restores ``dx``.
    """

    param_names: ClassVar[tuple[str, ...]] = ("W", "b")

    def check(self, params: Mapping[str, Any], x: Any) -> None:
        """See :func:`check_input`; `x` of the parameters' backend and device too."""
        W = params["W"]
        check_input(x, W)
        same_backend("Affine.forward", "x", x, "the layer's parameters W, b", W)

    def forward(
        self, params: Mapping[str, Any], x: Any, state: Mapping[str, Any], *, train: bool = True
    ) -> tuple[Any, dict[str, Any], Mapping[str, Any]]:
        """``(x W + b, {"x", "shape", "dtype"}, state)``."""
        W = params["W"]
        shape, dtype = tuple(x.shape), x.dtype
        if x.ndim != 2 or dtype != W.dtype:
            xp = namespace(x)
            if x.ndim != 2:
                x = xp.reshape(x, (shape[0], W.shape[0]))
            if dtype != W.dtype:
                x = xp.astype(x, W.dtype)
        return affine(x, W, params["b"]), {"x": x, "shape": shape, "dtype": dtype}, state

    def backward(
        self,
        params: Mapping[str, Any],
        saved: Mapping[str, Any],
        dy: Any,
        *,
        input_grad: bool = True,
    ) -> tuple[Any, dict[str, Any]]:
        """``(dx, {"W": x^T dy, "b": sum(dy)})``, `dx` in the input's shape and dtype."""
        dx, dW, db = affine_backward(dy, saved["x"], params["W"], input_grad=input_grad)
        if dx is not None:
            shape, dtype = saved["shape"], saved["dtype"]
            if dx.dtype != dtype or len(shape) != 2:
                xp = namespace(dx)
                if dx.dtype != dtype:
                    dx = xp.astype(dx, dtype)
                if len(shape) != 2:
                    dx = xp.reshape(dx, shape)
        return dx, {"W": dW, "b": db}


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

    fn: AffineFn = AffineFn()

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
        self._saved: dict[str, Any] | None = None

    @property
    def params(self) -> dict[str, Any]:
        """``{"W": W, "b": b}``."""
        return {"W": self.W, "b": self.b}

    @property
    def grads(self) -> dict[str, Any]:
        """``{"W": dW, "b": db}``."""
        return {"W": self.dW, "b": self.db}

    def take(
        self,
        saved: Mapping[str, Any] | None = None,
        grads: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep a forward's ``x`` and ``original_x_shape``, a backward's ``dW`` and ``db``."""
        if saved is not None:
            self._saved = dict(saved)
            self.x, self.original_x_shape = saved["x"], saved["shape"]
        if grads is not None:
            self.dW, self.db = grads["W"], grads["b"]

    def forward(self, x: Any) -> Any:
        """Return ``x @ W + b`` of shape ``(N, M)``; `x` is ``(N, D)`` or ``(N, ...)``."""
        W = self.W
        params = {"W": W, "b": self.b}
        if not (like(x, W) and x.ndim == 2 and x.shape[1] == W.shape[0]):  # else check it
            self.fn.check(params, x)
        y, saved, _ = self.fn.forward(params, x, NO_STATE)
        self.take(saved)
        return y

    def backward(self, dout: Any) -> Any:
        """Set ``dW``, ``db``; return ``dx`` in the input's shape (None without ``input_grad``)."""
        x = self._forward_state(self.x)
        W = self.W
        if not (like(dout, x) and dout.shape == (x.shape[0], W.shape[1])):  # else check it
            dout = self._dout_for(dout, x)
        dx, grads = self.fn.backward(
            {"W": W, "b": self.b}, self._saved or {}, dout, input_grad=self.input_grad
        )
        self.take(grads=grads)
        return dx

    def _dout_for(self, dout: Any, x: Any) -> Any:
        where = "Affine.backward"
        xp = float_array(where, "dout", dout)
        same_backend(where, "dout", dout, "the forward input", x)
        expected = (x.shape[0], self.W.shape[1])
        if tuple(dout.shape) != expected:
            fail(where, "dout", f"the shape of the forward output {expected}", describe(dout))
        return dout if dout.dtype == self.W.dtype else xp.astype(dout, self.W.dtype)

    def __repr__(self) -> str:
        d, m = self.W.shape
        return f"Affine({d} -> {m}, dtype={dtype_name(self.W.dtype)})"
