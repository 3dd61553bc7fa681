"""The Sigmoid layer."""

from __future__ import annotations

from typing import Any

from xplayers._validation import float_array
from xplayers.functional import sigmoid, sigmoid_backward
from xplayers.layers._base import Layer

__all__ = ["Sigmoid"]


class Sigmoid(Layer):
    r"""Logistic sigmoid: :math:`y = 1/(1+e^{-x})`, :math:`dx = dout\,(1-y)\,y`.

    The forward pass evaluates :math:`e^{-|x|}` so that no input overflows
    (the book's ``1 / (1 + np.exp(-x))`` warns for ``x < -709`` in float64).

    Attributes
    ----------
    out : array or None
        The last forward output, kept for ``backward``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers import Sigmoid
    >>> layer = Sigmoid()
    >>> layer.forward(xp.asarray([0.0]))
    Array([0.5], dtype=array_api_strict.float64)
    >>> layer.backward(xp.asarray([1.0]))
    Array([0.25], dtype=array_api_strict.float64)
    """

    def __init__(self) -> None:
        self.out: Any = None

    def forward(self, x: Any) -> Any:
        """Return ``sigmoid(x)``; `x` of any shape and a real floating dtype."""
        float_array("Sigmoid.forward", "x", x)
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout: Any) -> Any:
        """Return ``dout * (1 - out) * out``; shape of `x`."""
        out = self._forward_state(self.out)
        return sigmoid_backward(self._dout(dout, out), out)
