"""The base class shared by every layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xplayers._validation import describe, fail, float_array, like, same_backend
from xplayers.errors import LayerStateError

__all__ = ["Layer"]


class Layer:
    """A layer with the book's interface: ``forward(x)`` then ``backward(dout)``.

    Subclasses keep what ``backward`` needs as attributes during ``forward``
    and expose their trainable arrays through :attr:`params` and the matching
    gradients through :attr:`grads` (same keys).
    """

    @property
    def params(self) -> dict[str, Any]:
        """Trainable arrays by name (the very arrays the layer computes with)."""
        return {}

    @property
    def grads(self) -> dict[str, Any]:
        """Gradients of :attr:`params` from the last ``backward`` (``None`` before)."""
        return {}

    #: ``forward(x)`` (``forward(x, t)`` for a loss layer) computes the output.
    forward: Callable[..., Any]
    #: ``backward(dout)`` returns the gradient with respect to the input.
    backward: Callable[..., Any]

    def __call__(self, *args: Any) -> Any:
        """Same as ``forward(*args)``."""
        return self.forward(*args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _forward_state(self, value: Any) -> Any:
        if value is None:
            name = type(self).__name__
            raise LayerStateError(
                f"{name}.backward: called before {name}.forward; run forward first "
                "(backward needs the values forward keeps)"
            )
        return value

    def _dout(self, dout: Any, out: Any) -> Any:
        """Check the upstream gradient against the forward output `out`; cast its dtype."""
        if like(dout, out) and dout.shape == out.shape:  # the common case
            return dout
        where = f"{type(self).__name__}.backward"
        xp = float_array(where, "dout", dout)
        same_backend(where, "dout", dout, "the forward output", out)
        if tuple(dout.shape) != tuple(out.shape):
            fail(
                where, "dout", f"the shape of the forward output {tuple(out.shape)}", describe(dout)
            )
        return dout if dout.dtype == out.dtype else xp.astype(dout, out.dtype)
