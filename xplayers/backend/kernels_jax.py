"""JAX kernels of the functional core: XLA's own convolution, pooling and indexed updates.

Each function has the name and signature of a function of
:mod:`xplayers.functional` or :mod:`xplayers.sequence` marked ``@kernel``
and computes the same formula (the tests compare them). All of them trace
under ``jax.jit``: they branch on shapes, dtypes and Python integers only.

* :func:`scatter_add`: ``zeros.at[indices].add(values)``, one XLA scatter
  that adds repeated indices up (and drops indices out of range, negative
  ones included, as the generic form skips them).
* :func:`dropout_draw`: the same host draw as the generic form, through
  ``jax.pure_callback`` when the seed, count or shape are traced (inside
  ``jax.jit``), so a compiled step draws the masks the layers draw.
* :func:`host_values`: the generic copy of a host draw; inside ``jax.jit``
  an ordered ``jax.experimental.io_callback``, so the draws of a stateful
  host generator (volume 2's dropout masks) run once per call of the
  compiled function, in program order.
* :func:`convolution`: ``lax.conv_general_dilated`` (zero padding, the
  book's layouts ``NCHW`` and ``OIHW``, full float32 precision); it keeps
  the input and the filters themselves as ``col`` and ``col_W``, and
  :func:`convolution_backward` takes both gradients from ``jax.vjp`` of the
  convolution (the transposed convolutions; XLA drops the unused forward).
* :func:`max_pooling`: ``lax.reduce_window`` with ``max`` over the
  zero-padded input; it keeps the input itself as ``arg_max``, and
  :func:`max_pooling_backward` is ``jax.vjp`` of the pooling, XLA's
  ``select_and_scatter``, which sends each ``dout`` to the first maximum of
  its window in row-major order, as ``argmax``. Where a window holds NaN
  the maximum is NaN as in the generic code, but the gradient may go to
  another element than ``argmax``'s first NaN.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import io_callback

from xplayers._validation import traced
from xplayers.functional import host_dropout_mask

_FLOATS = (jnp.dtype("float32"), jnp.dtype("float64"))
_HIGHEST = lax.Precision.HIGHEST  # no TF32 or bfloat16 passes on GPUs: the generic's sums


def scatter_add(values: Any, indices: Any, num_rows: int, /) -> Any:
    """``zeros((num_rows, D)).at[indices].add(values, mode="drop")``, negative indices dropped."""
    if values.ndim != 2 or indices.ndim != 1 or not jnp.issubdtype(indices.dtype, jnp.integer):
        return NotImplemented
    where = None if traced(values) else values.device  # a tracer has no device
    out = jnp.zeros((num_rows, values.shape[1]), dtype=values.dtype, device=where)
    rows = jnp.where(indices < 0, num_rows, indices)  # JAX would wrap a negative index around
    return out.at[rows].add(values, mode="drop")


def dropout_draw(like: Any, seed: Any, count: Any, ratio: float, /, skip: int = 0) -> Any:
    """The generic host draw; under ``jax.jit``, the same draw as a ``jax.pure_callback``."""
    if not (traced(like) or traced(seed) or traced(count)):
        return NotImplemented
    shape, dtype = tuple(like.shape), like.dtype
    draw = functools.partial(
        host_dropout_mask, shape=shape, skip=skip, ratio=ratio, dtype=jnp.dtype(dtype).name
    )
    struct: Any = jax.ShapeDtypeStruct  # typed in some JAX releases, not in others
    out = struct(shape, dtype)
    return jax.pure_callback(draw, out, seed, count, vmap_method="broadcast_all")


def host_values(like: Any, draw: Any, /) -> Any:
    """The generic copy; under ``jax.jit``, `draw` as an ordered ``io_callback``."""
    if not traced(like):
        return NotImplemented
    struct: Any = jax.ShapeDtypeStruct  # typed in some JAX releases, not in others
    shape = tuple(like.shape)
    return io_callback(lambda: draw(shape), struct(shape, like.dtype), ordered=True)


def _floats(*arrays: Any) -> bool:
    """Whether the arrays are JAX arrays of one dtype, float32 or float64."""
    dtype = arrays[0].dtype
    return dtype in _FLOATS and all(isinstance(a, jax.Array) and a.dtype == dtype for a in arrays)


# --------------------------------------------------------------------------- convolution


def _conv(x: Any, W: Any, stride: int, pad: int) -> Any:
    return lax.conv_general_dilated(
        x,
        W,
        (stride, stride),
        ((pad, pad), (pad, pad)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=_HIGHEST,
    )


@functools.partial(jax.jit, static_argnums=(3, 4))
def _conv_bias(x: Any, W: Any, b: Any, stride: int, pad: int) -> Any:
    return _conv(x, W, stride, pad) + b[None, :, None, None]


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _conv_grads(
    dout: Any, x: Any, W: Any, stride: int, pad: int, input_grad: bool
) -> tuple[Any, Any, Any]:
    _, vjp = jax.vjp(lambda x_, W_: _conv(x_, W_, stride, pad), x, W)
    dx, dW = vjp(dout)
    return (dx if input_grad else None), dW, jnp.sum(dout, axis=(0, 2, 3))


def convolution(x: Any, W: Any, b: Any, stride: int = 1, pad: int = 0) -> Any:
    """``conv_general_dilated(x, W) + b``; keeps `x` and `W` themselves as ``col`` and ``col_W``."""
    if x.ndim != 4 or W.ndim != 4 or b.ndim != 1 or not _floats(x, W, b):
        return NotImplemented
    return _conv_bias(x, W, b, stride, pad), x, W


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
) -> Any:
    """``dx``, ``dW`` from ``jax.vjp`` of the convolution, ``db`` as the sum of `dout`.

    Takes the input and filters that :func:`convolution` keeps; the im2col
    matrices of the generic forward go to the generic backward.
    """
    if col.ndim != 4 or col_W.ndim != 4 or dout.ndim != 4 or not _floats(dout, col, col_W):
        return NotImplemented
    return _conv_grads(dout, col, col_W, stride, pad, input_grad)


# --------------------------------------------------------------------------- max pooling


def _pool(x: Any, ph: int, pw: int, stride: int, pad: int) -> Any:
    if pad:  # the book pads with zeros (reduce_window's own padding would be -inf)
        x = jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    # a Python -inf: reduce_window sees the max monoid, whose gradient JAX defines
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, ph, pw), (1, 1, stride, stride), "VALID")


_pool_jit = jax.jit(_pool, static_argnums=(1, 2, 3, 4))


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _pool_grad(dout: Any, x: Any, ph: int, pw: int, stride: int, pad: int) -> Any:
    _, vjp = jax.vjp(lambda a: _pool(a, ph, pw, stride, pad), x)
    return vjp(dout)[0]


def max_pooling(x: Any, ph: int, pw: int, stride: int = 1, pad: int = 0, /) -> Any:
    """``reduce_window`` max of the zero-padded input; keeps `x` itself as ``arg_max``."""
    if x.ndim != 4 or not _floats(x):
        return NotImplemented
    return _pool_jit(x, ph, pw, stride, pad), x


def max_pooling_backward(
    dout: Any,
    arg_max: Any,
    input_shape: tuple[int, int, int, int],
    ph: int,
    pw: int,
    stride: int = 1,
    pad: int = 0,
    /,
) -> Any:
    """``jax.vjp`` of the pooling (``select_and_scatter``), from the input kept as ``arg_max``.

    Window positions (an integer ``arg_max``, the generic forward's) go to
    the generic backward.
    """
    if dout.ndim != 4 or arg_max.ndim != 4 or not _floats(dout, arg_max):
        return NotImplemented
    return _pool_grad(dout, arg_max, ph, pw, stride, pad)
