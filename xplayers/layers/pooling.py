"""The (max) Pooling layer (the book's chapter 7)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xplayers.functional import conv_output_size, max_pooling, max_pooling_backward
from xplayers.layers._base import NO_STATE, Layer, LayerFn
from xplayers.layers._window import (
    check_dout,
    check_fits,
    image_batch,
    non_negative_int,
    positive_int,
)

__all__ = ["Pooling", "PoolingFn"]


@dataclass(frozen=True)
class PoolingFn(LayerFn):
    """The pure pair of :class:`Pooling` (max pooling); ``saved`` holds ``x`` and ``arg_max``."""

    pool_h: int
    pool_w: int
    stride: int = 1
    pad: int = 0

    def forward(
        self, params: Mapping[str, Any], x: Any, state: Mapping[str, Any], *, train: bool = True
    ) -> tuple[Any, dict[str, Any], Mapping[str, Any]]:
        """``(window maxima, {"x", "arg_max"}, state)``."""
        out, arg_max = max_pooling(x, self.pool_h, self.pool_w, self.stride, self.pad)
        return out, {"x": x, "arg_max": arg_max}, state

    def backward(
        self,
        params: Mapping[str, Any],
        saved: Mapping[str, Any],
        dy: Any,
        *,
        input_grad: bool = True,
    ) -> tuple[Any, dict[str, Any]]:
        """``(dx, {})``: `dy` routed to each window's maximum."""
        dx = max_pooling_backward(
            dy,
            saved["arg_max"],
            tuple(saved["x"].shape),
            self.pool_h,
            self.pool_w,
            self.stride,
            self.pad,
        )
        return dx, {}


class Pooling(Layer):
    r"""Max pooling over ``pool_h x pool_w`` windows, moved by `stride`.

    Forward: each output is the maximum of its window. Backward: each
    ``dout`` value goes to the position of its window's maximum; where
    several values are equal, to the first one in row-major order (the
    book's ``argmax``); overlapping windows add up.

    The book's defaults are kept: ``stride=1`` (its networks pass
    ``stride=2``), ``pad=0``, padding with zeros. Unlike the book, whose
    output size ignores `pad` (so any ``pad > 0`` fails there), the output
    is ``(N, C, OH, OW)`` with ``OH = (H + 2*pad - pool_h) // stride + 1``.

    Attributes
    ----------
    x : array or None
        The last input.
    arg_max : array or None
        Position of each window's maximum, shape ``(N, OH, OW, C)`` (the book's, flattened).
        On JAX, whose native pooling finds the maxima again in backward, it
        is the pooled input (see the backends page of the docs).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers import Pooling
    >>> pool = Pooling(2, 2, stride=2)
    >>> x = xp.reshape(xp.arange(16.0), (1, 1, 4, 4))
    >>> pool.forward(x)
    Array([[[[ 5.,  7.],
             [13., 15.]]]], dtype=array_api_strict.float64)
    >>> pool.backward(xp.ones((1, 1, 2, 2)))[0, 0, ...]
    Array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 1.]], dtype=array_api_strict.float64)
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        where = "Pooling"
        self.pool_h = positive_int(where, "pool_h", pool_h)
        self.pool_w = positive_int(where, "pool_w", pool_w)
        self.stride = positive_int(where, "stride", stride)
        self.pad = non_negative_int(where, "pad", pad)
        self.x: Any = None
        self.arg_max: Any = None
        self._out_shape: tuple[int, ...] = ()

    def forward(self, x: Any) -> Any:
        """Return the window maxima of images `x` ``(N, C, H, W)``, shape ``(N, C, OH, OW)``."""
        where = "Pooling.forward"
        image_batch(where, x)
        check_fits(where, x, self.pool_h, self.pool_w, self.pad, "pooling window")
        out, saved, _ = self.fn.forward(NO_STATE, x, NO_STATE)
        self.take(saved)
        self._out_shape = tuple(out.shape)
        return out

    @property
    def fn(self) -> PoolingFn:
        """The layer's pure pair, of its current hyper-parameters."""
        return PoolingFn(self.pool_h, self.pool_w, self.stride, self.pad)

    def take(
        self,
        saved: Mapping[str, Any] | None = None,
        grads: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep a forward's ``x`` and ``arg_max``."""
        if saved is not None:
            self.x, self.arg_max = saved["x"], saved["arg_max"]

    def backward(self, dout: Any) -> Any:
        """Return ``dx`` ``(N, C, H, W)``: `dout` routed to each window's maximum."""
        x = self._forward_state(self.x)
        dout = check_dout("Pooling.backward", dout, self._out_shape, x, x.dtype)
        return self.fn.backward(NO_STATE, {"x": x, "arg_max": self.arg_max}, dout)[0]

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C, OH, OW)`` for one input image of shape ``(C, H, W)``."""
        c, h, w = input_shape
        oh = conv_output_size(h, self.pool_h, self.stride, self.pad)
        return (c, oh, conv_output_size(w, self.pool_w, self.stride, self.pad))

    def __repr__(self) -> str:
        return f"Pooling({self.pool_h}x{self.pool_w}, stride={self.stride}, pad={self.pad})"
