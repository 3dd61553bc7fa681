"""The ReLU layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xplayers._validation import float_array
from xplayers.functional import relu, relu_backward
from xplayers.layers._base import NO_STATE, Layer, LayerFn

__all__ = ["Relu", "ReluFn"]


@dataclass(frozen=True)
class ReluFn(LayerFn):
    """The pure pair of :class:`Relu`; ``saved`` holds the output ``out``."""

    def forward(
        self, params: Mapping[str, Any], x: Any, state: Mapping[str, Any], *, train: bool = True
    ) -> tuple[Any, dict[str, Any], Mapping[str, Any]]:
        """``(relu(x), {"out": ...}, state)``."""
        out = relu(x)
        return out, {"out": out}, state

    def backward(
        self,
        params: Mapping[str, Any],
        saved: Mapping[str, Any],
        dy: Any,
        *,
        input_grad: bool = True,
    ) -> tuple[Any, dict[str, Any]]:
        """``(relu_backward(dy, out), {})``."""
        return relu_backward(dy, saved["out"]), {}


class Relu(Layer):
    r"""Rectified linear unit: :math:`y = \max(x, 0)`, :math:`dx = dout \cdot [x > 0]`.

    Unlike the book's version, ``backward`` never writes into `dout` (the book
    zeroes ``dout[mask]`` in place, changing the caller's array), and the
    mask is taken from the kept output ``out`` (``out > 0`` exactly where
    ``x > 0``) instead of a separate boolean array.

    Attributes
    ----------
    out : array or None
        The last forward output, shape of `x`.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers import Relu
    >>> relu = Relu()
    >>> relu.forward(xp.asarray([[1.0, -0.5], [-2.0, 3.0]]))
    Array([[1., 0.],
           [0., 3.]], dtype=array_api_strict.float64)
    >>> relu.backward(xp.ones((2, 2)))
    Array([[1., 0.],
           [0., 1.]], dtype=array_api_strict.float64)
    """

    fn: ReluFn = ReluFn()

    def __init__(self) -> None:
        self.out: Any = None

    def take(
        self,
        saved: Mapping[str, Any] | None = None,
        grads: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep a forward's output ``out``."""
        if saved is not None:
            self.out = saved["out"]

    def forward(self, x: Any) -> Any:
        """Return ``max(x, 0)``; `x` of any shape and a real floating dtype."""
        float_array("Relu.forward", "x", x)
        y, saved, _ = self.fn.forward(NO_STATE, x, NO_STATE)
        self.take(saved)
        return y

    def backward(self, dout: Any) -> Any:
        """Return ``dout`` where the input was positive, else 0; shape of `x`."""
        out = self._forward_state(self.out)
        return self.fn.backward(NO_STATE, {"out": out}, self._dout(dout, out))[0]
