r"""Convolution and max pooling by im2col, written once against the Array API.

The book's chapter-7 layout is kept: images are ``(N, C, H, W)``, filters
``(FN, C, FH, FW)``, and :func:`im2col` turns the input into a matrix of shape
``(N * OH * OW, C * FH * FW)`` whose row ``(n, oy, ox)`` holds the input
window under the filter at output position ``(oy, ox)``, columns ordered
``(c, fy, fx)``. A convolution is then one matrix product, and its backward
pass scatters the window gradients back with :func:`col2im` (the adjoint of
:func:`im2col`: overlapping windows add up).

The output size is ``OH = (H + 2 * pad - FH) // stride + 1`` (likewise
``OW``), as in the book.

Implementations
---------------
* Windows that tile the padded input exactly (``stride == FH == FW``, the
  book's 2x2 pooling with stride 2) need no copy loop: :func:`im2col` and
  :func:`col2im` are a reshape and an axis permutation, on every backend.
* Otherwise the generic version stacks the ``FH * FW`` strided slices of the
  padded input (array-api-extra's ``pad``), and :func:`col2im` adds each
  window slice into a zero image with array-api-extra's ``at`` (in place on
  the function's own buffer where the library allows, functional on JAX);
  the standard has neither pad nor scatter-add.
* On NumPy, :mod:`xplayers.kernels_numpy_conv` builds the matrix from one
  strided view (one copy, no loop) and sums the windows into a buffer it
  owns; it is tested against the generic version.

Memory: the im2col matrix holds ``FH * FW / stride**2`` times the values of
the (padded) input, e.g. 25x for the book's 5x5 filters with stride 1.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_extra as xpx
from array_api_compat import device, is_numpy_namespace

from xplayers import kernels_numpy_conv as _np_kernels
from xplayers._backend import namespace

__all__ = [
    "col2im",
    "conv_output_size",
    "convolution",
    "convolution_backward",
    "fold",
    "im2col",
    "max_pooling",
    "max_pooling_backward",
    "windows",
]


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """Output length ``(input_size + 2 * pad - filter_size) // stride + 1``.

    Examples
    --------
    >>> from xplayers.functional import conv_output_size
    >>> conv_output_size(28, 5), conv_output_size(24, 2, stride=2)
    (24, 12)
    """
    return (input_size + 2 * pad - filter_size) // stride + 1


def _pad(x: Any, pad: int, xp: ModuleType) -> Any:
    if pad == 0:
        return x
    return xpx.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), xp=xp)


def _tiles(filter_h: int, filter_w: int, stride: int) -> bool:
    """True when the windows tile the input without overlap or gaps."""
    return stride == filter_h == filter_w


def im2col(x: Any, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Any:
    r"""Unfold the filter windows of images `x` into the rows of a matrix.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    filter_h, filter_w : int
        The window (filter) size.
    stride, pad : int
        Step between windows; zeros added on each border.

    Returns
    -------
    array, shape (N * OH * OW, C * filter_h * filter_w)
        ``col[(n*OH + oy)*OW + ox, (c*FH + fy)*FW + fx] =
        x_pad[n, c, oy*stride + fy, ox*stride + fx]``; same dtype and
        device as `x`, a new array (never a view that aliases `x`'s data
        being written).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import im2col
    >>> x = xp.reshape(xp.arange(9.0), (1, 1, 3, 3))
    >>> im2col(x, 2, 2)
    Array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]], dtype=array_api_strict.float64)
    """
    xp = namespace(x)
    n, c = x.shape[0], x.shape[1]
    t = windows(x, filter_h, filter_w, stride, pad)
    return xp.reshape(t, (n * t.shape[1] * t.shape[2], c * filter_h * filter_w))


def windows(x: Any, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Any:
    """The windows of :func:`im2col` before flattening: shape ``(N, OH, OW, C, FH*FW)``.

    ``im2col(x, ...)`` is ``reshape(windows(x, ...), (N*OH*OW, C*FH*FW))``;
    pooling reduces the last axis. Keeping the 5 axes avoids reshapes that
    split and merge one axis at once (which Dask cannot do).
    """
    xp = namespace(x)
    n, c, h, w = x.shape
    oh = conv_output_size(h, filter_h, stride, pad)
    ow = conv_output_size(w, filter_w, stride, pad)
    if is_numpy_namespace(xp):
        return _np_kernels.windows(x, filter_h, filter_w, stride, pad, oh, ow)
    img = _pad(x, pad, xp)
    if _tiles(filter_h, filter_w, stride):
        img = img[:, :, : oh * stride, : ow * stride]
        t = xp.reshape(img, (n, c, oh, filter_h, ow, filter_w))
        t = xp.permute_dims(t, (0, 2, 4, 1, 3, 5))
        return xp.reshape(t, (n, oh, ow, c, filter_h * filter_w))
    span_h, span_w = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    slices = [
        img[:, :, fy : fy + span_h : stride, fx : fx + span_w : stride]
        for fy in range(filter_h)
        for fx in range(filter_w)
    ]
    return xp.permute_dims(xp.stack(slices, axis=-1), (0, 2, 3, 1, 4))


def col2im(
    col: Any,
    input_shape: tuple[int, int, int, int],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
) -> Any:
    r"""Fold window rows back into images, adding where windows overlap.

    The adjoint of :func:`im2col`: for any ``col`` and ``x``,
    ``sum(col2im(col) * x) == sum(col * im2col(x))``, which is why the
    gradient of a convolution with respect to its input is
    ``col2im(dcol)``. The padded border is cut off.

    Parameters
    ----------
    col : array, shape (N * OH * OW, C * filter_h * filter_w)
    input_shape : tuple (N, C, H, W)
        The shape of the images given to :func:`im2col`.
    filter_h, filter_w, stride, pad : int
        As given to :func:`im2col`.

    Returns
    -------
    array, shape (N, C, H, W)
        Same dtype and device as `col`.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import col2im
    >>> col2im(xp.ones((4, 4)), (1, 1, 3, 3), 2, 2)[0, 0, ...]
    Array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]], dtype=array_api_strict.float64)
    """
    xp = namespace(col)
    n, c, h, w = (int(s) for s in input_shape)
    oh = conv_output_size(h, filter_h, stride, pad)
    ow = conv_output_size(w, filter_w, stride, pad)
    t = xp.reshape(col, (n, oh, ow, c, filter_h * filter_w))
    return fold(t, (n, c, h, w), filter_h, filter_w, stride, pad)


def fold(
    t: Any,
    input_shape: tuple[int, int, int, int],
    filter_h: int,
    filter_w: int,
    stride: int = 1,
    pad: int = 0,
) -> Any:
    """:func:`col2im` of windows in the layout of :func:`windows`, ``(N, OH, OW, C, FH*FW)``."""
    xp = namespace(t)
    n, c, h, w = (int(s) for s in input_shape)
    oh, ow = int(t.shape[1]), int(t.shape[2])
    if is_numpy_namespace(xp):
        return _np_kernels.fold(t, (n, c, h, w), filter_h, filter_w, stride, pad)
    hp, wp = h + 2 * pad, w + 2 * pad
    if _tiles(filter_h, filter_w, stride):
        t = xp.reshape(t, (n, oh, ow, c, filter_h, filter_w))
        t = xp.permute_dims(t, (0, 3, 1, 4, 2, 5))
        img = xp.reshape(t, (n, c, oh * filter_h, ow * filter_w))
        if (oh * filter_h, ow * filter_w) != (hp, wp):
            widths = ((0, 0), (0, 0), (0, hp - oh * filter_h), (0, wp - ow * filter_w))
            img = xpx.pad(img, widths, xp=xp)
    else:
        t = xp.permute_dims(t, (0, 3, 4, 1, 2))  # (N, C, FH*FW, OH, OW)
        img = xp.zeros((n, c, hp, wp), dtype=t.dtype, device=device(t))
        span_h, span_w = stride * (oh - 1) + 1, stride * (ow - 1) + 1
        for fy in range(filter_h):
            for fx in range(filter_w):
                rows, cols = slice(fy, fy + span_h, stride), slice(fx, fx + span_w, stride)
                window = (slice(None), slice(None), rows, cols)
                img = xpx.at(img, window).add(t[:, :, fy * filter_w + fx, ...], copy=None)
    if pad:
        img = img[:, :, pad : pad + h, pad : pad + w]
    return img


# --------------------------------------------------------------------------- convolution


def convolution(x: Any, W: Any, b: Any, stride: int = 1, pad: int = 0) -> tuple[Any, Any, Any]:
    r"""2-D convolution (cross-correlation) of images `x` with filters `W`, by im2col.

    .. math::
        out_{n,f,i,j} = b_f + \sum_{c,u,v} W_{f,c,u,v}\,
            x^{pad}_{n,c,\,i s + u,\,j s + v}

    computed as ``im2col(x) @ col_W + b`` with ``col_W = W.reshape(FN, -1).T``.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    W : array, shape (FN, C, FH, FW)
    b : array, shape (FN,)
    stride, pad : int

    Returns
    -------
    out : array, shape (N, FN, OH, OW)
    col : array, shape (N * OH * OW, C * FH * FW)
        Kept for :func:`convolution_backward`.
    col_W : array, shape (C * FH * FW, FN)

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import convolution
    >>> out, _, _ = convolution(xp.ones((1, 1, 3, 3)), xp.ones((1, 1, 2, 2)), xp.zeros(1))
    >>> out[0, 0, ...]
    Array([[4., 4.],
           [4., 4.]], dtype=array_api_strict.float64)
    """
    xp = namespace(x)
    fn, _, fh, fw = W.shape
    n, _, h, w = x.shape
    oh, ow = conv_output_size(h, fh, stride, pad), conv_output_size(w, fw, stride, pad)
    col = im2col(x, fh, fw, stride, pad)
    col_W = xp.reshape(W, (fn, -1)).T
    out = col @ col_W + b
    out = xp.permute_dims(xp.reshape(out, (n, oh, ow, fn)), (0, 3, 1, 2))
    return out, col, col_W


def convolution_backward(
    dout: Any,
    col: Any,
    col_W: Any,
    input_shape: tuple[int, int, int, int],
    filter_shape: tuple[int, int, int, int],
    stride: int = 1,
    pad: int = 0,
    *,
    input_grad: bool = True,
) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`convolution`.

    With :math:`D` = `dout` as a ``(N * OH * OW, FN)`` matrix:

    .. math::
        db = \textstyle\sum_{rows} D, \qquad
        dW = (col^\top D)^\top \text{ as } (FN, C, FH, FW), \qquad
        dx = \mathrm{col2im}(D\, col_W^\top)

    Returns
    -------
    dx : array, shape (N, C, H, W), or None without `input_grad`
    dW : array, shape (FN, C, FH, FW)
    db : array, shape (FN,)
    """
    xp = namespace(dout)
    fn, c, fh, fw = filter_shape
    d = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, fn))
    db = xp.sum(d, axis=0)
    dW = xp.reshape((col.T @ d).T, (fn, c, fh, fw))
    if not input_grad:
        return None, dW, db
    dx = col2im(d @ col_W.T, input_shape, fh, fw, stride, pad)
    return dx, dW, db


# --------------------------------------------------------------------------- max pooling


def max_pooling(x: Any, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> tuple[Any, Any]:
    r"""Max pooling over ``pool_h x pool_w`` windows, the book's way.

    Each output is the maximum of its window; the padded border holds zeros
    (the book's :func:`im2col` pads with zeros), so with ``pad > 0`` a
    window of negative values gives 0.

    Returns
    -------
    out : array, shape (N, C, OH, OW)
    arg_max : array, shape (N, OH, OW, C), the index type
        The position of the maximum inside each window (row-major, the first
        one when several are equal, as ``argmax``); flattened, it is the
        book's ``arg_max``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import max_pooling
    >>> x = xp.reshape(xp.asarray([1.0, 3.0, 3.0, 2.0]), (1, 1, 2, 2))
    >>> out, arg_max = max_pooling(x, 2, 2, stride=2)
    >>> out[0, 0, ...], arg_max[0, 0, 0, ...]
    (Array([[3.]], dtype=array_api_strict.float64), Array([1], dtype=array_api_strict.int64))
    """
    xp = namespace(x)
    t = windows(x, pool_h, pool_w, stride, pad)  # (N, OH, OW, C, PH*PW)
    arg_max = xp.argmax(t, axis=-1)
    out = xp.permute_dims(xp.max(t, axis=-1), (0, 3, 1, 2))
    return out, arg_max


def max_pooling_backward(
    dout: Any,
    arg_max: Any,
    input_shape: tuple[int, int, int, int],
    pool_h: int,
    pool_w: int,
    stride: int = 1,
    pad: int = 0,
) -> Any:
    r"""Gradient of :func:`max_pooling`: each `dout` value goes to its window's maximum.

    The book's ``dmax[arange, arg_max] = dout`` is written without index
    assignment: a one-hot of `arg_max` (a comparison) times `dout`; then
    :func:`col2im` adds the windows up where they overlap.

    Returns
    -------
    array, shape (N, C, H, W)
    """
    xp = namespace(dout)
    d = xp.expand_dims(xp.permute_dims(dout, (0, 2, 3, 1)), axis=-1)  # (N, OH, OW, C, 1)
    positions = xp.arange(pool_h * pool_w, dtype=arg_max.dtype, device=device(arg_max))
    dmax = xp.where(xp.expand_dims(arg_max, axis=-1) == positions, d, 0.0)
    return fold(dmax, input_shape, pool_h, pool_w, stride, pad)
