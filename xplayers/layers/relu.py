"""The ReLU layer."""

from __future__ import annotations

from typing import Any

from xplayers._validation import float_array
from xplayers.functional import relu, relu_backward
from xplayers.layers._base import Layer

__all__ = ["Relu"]


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

    def __init__(self) -> None:
        self.out: Any = None

    def forward(self, x: Any) -> Any:
        """Return ``max(x, 0)``; `x` of any shape and a real floating dtype."""
        float_array("Relu.forward", "x", x)
        self.out = relu(x)
        return self.out

    def backward(self, dout: Any) -> Any:
        """Return ``dout`` where the input was positive, else 0; shape of `x`."""
        out = self._forward_state(self.out)
        return relu_backward(self._dout(dout, out), out)
