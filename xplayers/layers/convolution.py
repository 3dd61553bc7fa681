"""The Convolution layer (the book's chapter 7)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from xplayers._validation import describe, dtype_name, fail, float_array, same_backend
from xplayers.backend import namespace
from xplayers.functional import conv_output_size, convolution, convolution_backward
from xplayers.layers._base import NO_STATE, Layer, LayerFn
from xplayers.layers._window import (
    check_dout,
    check_fits,
    image_batch,
    non_negative_int,
    positive_int,
)

__all__ = ["Convolution", "ConvolutionFn"]


@dataclass(frozen=True)
class ConvolutionFn(LayerFn):
    """The pure pair of :class:`Convolution` (im2col, or the backend's native convolution).

    The forward casts `x` to `W`'s dtype; ``saved`` holds that ``x``,
    ``col``, ``col_W`` and the input's ``dtype``, to which ``dx`` is cast back.
    """

    stride: int = 1
    pad: int = 0

    param_names: ClassVar[tuple[str, ...]] = ("W", "b")

    def check(self, params: Mapping[str, Any], x: Any) -> None:
        """Images ``(N, C, H, W)`` of `W`'s channels and backend, large enough for the filter."""
        where = "Convolution.forward"
        image_batch(where, x)
        W = params["W"]
        same_backend(where, "x", x, "the layer's parameters W, b", W)
        _, c, fh, fw = W.shape
        if x.shape[1] != c:
            fail(where, "x", f"{c} channels, shape (N, {c}, H, W), to match W", describe(x))
        check_fits(where, x, fh, fw, self.pad, f"{fh}x{fw} filter")

    def forward(
        self, params: Mapping[str, Any], x: Any, state: Mapping[str, Any], *, train: bool = True
    ) -> tuple[Any, dict[str, Any], Mapping[str, Any]]:
        """``(convolution, {"x", "col", "col_W", "dtype"}, state)``."""
        W = params["W"]
        dtype = x.dtype
        if dtype != W.dtype:
            x = namespace(x).astype(x, W.dtype)
        out, col, col_W = convolution(x, W, params["b"], self.stride, self.pad)
        return out, {"x": x, "col": col, "col_W": col_W, "dtype": dtype}, state

    def backward(
        self,
        params: Mapping[str, Any],
        saved: Mapping[str, Any],
        dy: Any,
        *,
        input_grad: bool = True,
    ) -> tuple[Any, dict[str, Any]]:
        """``(dx, {"W", "b"})``; `dx` in the input's dtype, None without `input_grad`."""
        W = params["W"]
        dx, dW, db = convolution_backward(
            dy,
            saved["col"],
            saved["col_W"],
            tuple(saved["x"].shape),
            tuple(W.shape),
            self.stride,
            self.pad,
            input_grad=input_grad,
        )
        if dx is not None and dx.dtype != saved["dtype"]:
            dx = namespace(dx).astype(dx, saved["dtype"])
        return dx, {"W": dW, "b": db}


class Convolution(Layer):
    r"""2-D convolution: :math:`out = \mathrm{im2col}(x)\,W_{col} + b`.

    Shapes: `x` is ``(N, C, H, W)``, `W` is ``(FN, C, FH, FW)``, `b` is
    ``(FN,)``, the output is ``(N, FN, OH, OW)`` with
    ``OH = (H + 2*pad - FH) // stride + 1``. Backward, with `dout` as a
    ``(N*OH*OW, FN)`` matrix :math:`D`:

    .. math::
        db = \textstyle\sum D, \qquad dW = col^\top D, \qquad
        dx = \mathrm{col2im}(D\,W_{col}^\top)

    The layer keeps the very `W` and `b` it was given, so in-place updates
    (``params["W1"] -= lr * grads["W1"]``) are seen by the next ``forward``.
    Dtypes as :class:`~xplayers.Affine`: the layer computes in its
    parameters' dtype and returns ``dx`` in the input's dtype.

    Parameters
    ----------
    W : array, shape (FN, C, FH, FW), real floating dtype
    b : array, shape (FN,), same backend, device and dtype as `W`
    stride : int >= 1, default 1
    pad : int >= 0, default 0
        Zeros added on every border of the input.
    input_grad : bool, default True
        When False, ``backward`` computes only ``dW`` and ``db`` and returns
        ``None`` (the first layer of a network needs no ``dx``).

    Attributes
    ----------
    W, b : array
    dW, db : array or None
        Gradients from the last ``backward``.
    x : array or None
        The last input (in the parameters' dtype).
    col : array or None
        ``im2col(x)``, shape ``(N*OH*OW, C*FH*FW)``: ``FH*FW/stride**2``
        times the input's size. On a backend with a native convolution
        (PyTorch, JAX) it is `x` itself; see "Convolution and max pooling on
        each backend" in the backends page of the docs.
    col_W : array or None
        ``W.reshape(FN, -1).T`` (`W` itself with a native convolution).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers import Convolution
    >>> conv = Convolution(xp.ones((2, 1, 3, 3)), xp.zeros(2), pad=1)
    >>> conv.forward(xp.ones((1, 1, 4, 4))).shape
    (1, 2, 4, 4)
    >>> conv.backward(xp.ones((1, 2, 4, 4))).shape, conv.dW.shape
    ((1, 1, 4, 4), (2, 1, 3, 3))
    """

    def __init__(
        self, W: Any, b: Any, stride: int = 1, pad: int = 0, *, input_grad: bool = True
    ) -> None:
        where = "Convolution"
        float_array(where, "W", W)
        if W.ndim != 4:
            fail(where, "W", "filters of shape (FN, C, FH, FW)", describe(W))
        float_array(where, "b", b)
        same_backend(where, "b", b, "W", W)
        if tuple(b.shape) != (W.shape[0],) or b.dtype != W.dtype:
            fail(where, "b", f"shape ({W.shape[0]},) and dtype {W.dtype} to match W", describe(b))
        self.W = W
        self.b = b
        self.stride = positive_int(where, "stride", stride)
        self.pad = non_negative_int(where, "pad", pad)
        self.input_grad = input_grad
        self.x: Any = None
        self.col: Any = None
        self.col_W: Any = None
        self.dW: Any = None
        self.db: Any = None
        self._saved: dict[str, Any] | None = None
        self._out_shape: tuple[int, ...] = ()

    @property
    def params(self) -> dict[str, Any]:
        """``{"W": W, "b": b}``."""
        return {"W": self.W, "b": self.b}

    @property
    def grads(self) -> dict[str, Any]:
        """``{"W": dW, "b": db}``."""
        return {"W": self.dW, "b": self.db}

    def forward(self, x: Any) -> Any:
        """Return the convolution of images `x` ``(N, C, H, W)``, shape ``(N, FN, OH, OW)``."""
        self.fn.check(self.params, x)
        out, saved, _ = self.fn.forward(self.params, x, NO_STATE)
        self.take(saved)
        self._out_shape = tuple(out.shape)
        return out

    @property
    def fn(self) -> ConvolutionFn:
        """The layer's pure pair, of its current hyper-parameters."""
        return ConvolutionFn(self.stride, self.pad)

    def take(
        self,
        saved: Mapping[str, Any] | None = None,
        grads: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep a forward's ``x``, ``col``, ``col_W`` and a backward's ``dW``, ``db``."""
        if saved is not None:
            self._saved = dict(saved)
            self.x, self.col, self.col_W = saved["x"], saved["col"], saved["col_W"]
        if grads is not None:
            self.dW, self.db = grads["W"], grads["b"]

    def backward(self, dout: Any) -> Any:
        """Set ``dW``, ``db``; return ``dx`` ``(N, C, H, W)`` (None without ``input_grad``)."""
        x = self._forward_state(self.x)
        dout = check_dout("Convolution.backward", dout, self._out_shape, x, self.W.dtype)
        dx, grads = self.fn.backward(
            self.params, self._saved or {}, dout, input_grad=self.input_grad
        )
        self.take(grads=grads)
        return dx

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(FN, OH, OW)`` for one input image of shape ``(C, H, W)``."""
        fn, _, fh, fw = self.W.shape
        _, h, w = input_shape
        oh = conv_output_size(h, fh, self.stride, self.pad)
        return (fn, oh, conv_output_size(w, fw, self.stride, self.pad))

    def __repr__(self) -> str:
        fn, c, fh, fw = self.W.shape
        return (
            f"Convolution({c} -> {fn}, {fh}x{fw}, stride={self.stride}, pad={self.pad}, "
            f"dtype={dtype_name(self.W.dtype)})"
        )
