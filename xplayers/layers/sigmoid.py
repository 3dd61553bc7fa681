"""The Sigmoid layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xplayers._validation import float_array
from xplayers.functional import sigmoid, sigmoid_backward
from xplayers.layers._base import NO_STATE, Layer, LayerFn

__all__ = ["Sigmoid", "SigmoidFn"]


@dataclass(frozen=True)
class SigmoidFn(LayerFn):
    """The pure pair of :class:`Sigmoid`; ``saved`` holds the output ``out``."""

    def forward(
        self, params: Mapping[str, Any], x: Any, state: Mapping[str, Any], *, train: bool = True
    ) -> tuple[Any, dict[str, Any], Mapping[str, Any]]:
        """``(sigmoid(x), {"out": ...}, state)``."""
        out = sigmoid(x)
        return out, {"out": out}, state

    def backward(
        self,
        params: Mapping[str, Any],
        saved: Mapping[str, Any],
        dy: Any,
        *,
        input_grad: bool = True,
    ) -> tuple[Any, dict[str, Any]]:
        """``(sigmoid_backward(dy, out), {})``."""
        return sigmoid_backward(dy, saved["out"]), {}


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

    fn: SigmoidFn = SigmoidFn()

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
        """Return ``sigmoid(x)``; `x` of any shape and a real floating dtype."""
        float_array("Sigmoid.forward", "x", x)
        y, saved, _ = self.fn.forward(NO_STATE, x, NO_STATE)
        self.take(saved)
        return y

    def backward(self, dout: Any) -> Any:
        """Return ``dout * (1 - out) * out``; shape of `x`."""
        out = self._forward_state(self.out)
        return self.fn.backward(NO_STATE, {"out": out}, self._dout(dout, out))[0]
