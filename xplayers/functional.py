r"""Pure layer math, written once against the Python Array API standard.

Every function takes its namespace from its array arguments, so it runs
unchanged on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict. None of
them writes into its arguments or converts array data to Python values, so
they also work on read-only, lazy (Dask) and traced (JAX ``jit``) arrays.

Each forward formula sits beside its backward formula. Shapes: ``N`` is the
batch size, ``C`` the number of classes.

Numerical stability
-------------------
* :func:`sigmoid` evaluates :math:`e^{-|x|}`, which never overflows.
* :func:`softmax`, :func:`log_softmax` and :func:`cross_entropy` shift each row
  by its maximum (log-sum-exp), so ``exp`` never overflows; rows whose
  maximum is infinite are handled explicitly (the ``+inf`` logits share the
  probability, an all ``-inf`` row is uniform, a NaN row gives NaN), without
  floating-point warnings.
* :func:`cross_entropy` works from the logits, not from probabilities, so no
  ``log(0)`` guard such as the book's ``1e-7`` is needed: a logit gap of
  1000 costs a loss of exactly 1000, and the loss is never negative.

Kernels
-------
Each function marked with :func:`kernel` has one generic implementation,
the body written here (the oracle), and may have a faster form of the same
formula for one library: a function of the same name and signature in that
backend's kernel module (``xplayers/backend/kernels_<backend>.py``, e.g.
NumPy writing into the arrays it has just created, ``np.dot`` for the
batch-1 outer product, the fused softmax cross-entropy backward). The
public function picks the implementation by the type of its first argument,
once per type. A kernel that does not cover an input (non-finite logits, an
odd dtype) returns ``NotImplemented`` and the generic version runs instead.
The generic version stays reachable as ``f.generic``; the tests run every
kernel against it on one table of inputs. To add a kernel, decorate the
generic function with ``@kernel`` and define the same name in the kernel
module.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar, cast

from array_api_compat import device

from xplayers._backend import backend_name, namespace

__all__ = [
    "affine",
    "affine_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "kernel",
    "log_softmax",
    "one_hot",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_cross_entropy",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The kernel module of each array type (None: the generic code only).
_KERNEL_MODULES: dict[type, ModuleType | None] = {}


def kernel_module(x: Any) -> ModuleType | None:
    """The kernel module of array `x`'s backend, or None; looked up once per array type."""
    cls = type(x)
    try:
        return _KERNEL_MODULES[cls]
    except KeyError:
        pass
    name = f"xplayers.backend.kernels_{backend_name(x)}"
    try:
        module: ModuleType | None = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the kernel module exists but its own import failed
            raise
        module = None
    _KERNEL_MODULES[cls] = module
    return module


def kernel(generic: F) -> F:
    """Make `generic` a public function that a backend's kernel module may speed up.

    The returned function calls the kernel of the same name in the kernel
    module of its first argument's backend (see :func:`kernel_module`), or
    `generic` when there is none or the kernel returns ``NotImplemented``.
    The choice is cached per array type; ``f.generic`` is the generic body.
    """
    name = generic.__name__
    chosen: dict[type, Callable[..., Any]] = {}

    @functools.wraps(generic)
    def public(x: Any, /, *args: Any, **kwargs: Any) -> Any:
        impl = chosen.get(type(x))
        if impl is None:
            impl = chosen[type(x)] = getattr(kernel_module(x), name, generic)
        out = impl(x, *args, **kwargs)
        if out is NotImplemented:
            return generic(x, *args, **kwargs)
        return out

    public.generic = generic  # type: ignore[attr-defined]
    return cast(F, public)


def kernels_of(x: Any) -> dict[str, Callable[..., Any]]:
    """The public kernel-backed functions with a kernel for `x`'s backend, by name."""
    module = kernel_module(x)
    return {
        name: getattr(module, name)
        for name, f in globals().items()
        if hasattr(f, "generic") and module is not None and hasattr(module, name)
    }


# --------------------------------------------------------------------------- affine


@kernel
def affine(x: Any, W: Any, b: Any, /) -> Any:
    r"""Fully connected map :math:`y = x W + b`.

    Parameters
    ----------
    x : array, shape (N, D)
    W : array, shape (D, M)
    b : array, shape (M,)

    Returns
    -------
    array, shape (N, M)

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import affine
    >>> affine(xp.ones((1, 2)), xp.ones((2, 3)), xp.asarray([0.0, 1.0, 2.0]))
    Array([[2., 3., 4.]], dtype=array_api_strict.float64)
    """
    return x @ W + b


@kernel
def affine_backward(
    dout: Any,
    x: Any,
    W: Any,
    /,
    *,
    input_grad: bool = True,
) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`affine`, given the upstream gradient `dout`.

    .. math::
        dx = dout\,W^\top, \qquad dW = x^\top dout, \qquad db = \textstyle\sum_n dout_n

    Parameters
    ----------
    dout : array, shape (N, M)
    x : array, shape (N, D)
        The forward input.
    W : array, shape (D, M)
    input_grad : bool, default True
        When False, `dx` is not computed (returned as None).

    Returns
    -------
    (dx, dW, db) : arrays of shapes (N, D) or None, (D, M), (M,)

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import affine_backward
    >>> dx, dW, db = affine_backward(xp.ones((4, 2)), xp.ones((4, 3)), xp.ones((3, 2)))
    >>> db
    Array([4., 4.], dtype=array_api_strict.float64)
    """
    xp = namespace(dout)
    dx = dout @ W.T if input_grad else None
    return dx, x.T @ dout, xp.sum(dout, axis=0)


@kernel
def relu(x: Any, /) -> Any:
    r"""Rectified linear unit, :math:`\max(x, 0)`.

    Parameters
    ----------
    x : array, any shape, real floating dtype

    Returns
    -------
    array
        Same shape, dtype and device as `x`. NaN stays NaN.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import relu
    >>> relu(xp.asarray([-1.0, 0.0, 2.0]))
    Array([0., 0., 2.], dtype=array_api_strict.float64)
    """
    return namespace(x).maximum(x, 0.0)


@kernel
def relu_backward(dout: Any, out: Any, /) -> Any:
    r"""Gradient of :func:`relu`: :math:`dx = dout \cdot [out > 0]`.

    Uses the forward *output* (``out > 0`` exactly where ``x > 0``), so no
    mask has to be kept and nothing is written into `dout`.

    The NumPy kernel multiplies `dout` by the mask instead of selecting with
    ``where``: NumPy's ``where`` branches per element and runs about 7x
    slower on a half-random mask. The two agree for finite `dout`; a
    non-finite `dout` where ``x <= 0`` gives NaN there instead of 0.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import relu, relu_backward
    >>> out = relu(xp.asarray([-1.0, 3.0]))
    >>> relu_backward(xp.asarray([5.0, 5.0]), out)
    Array([0., 5.], dtype=array_api_strict.float64)
    """
    return namespace(dout).where(out > 0, dout, 0.0)


@kernel
def sigmoid(x: Any, /) -> Any:
    r"""Logistic sigmoid, :math:`1 / (1 + e^{-x})`, without overflow.

    With :math:`e = e^{-|x|} \in (0, 1]`, the result is :math:`1/(1+e)` for
    :math:`x \ge 0` and :math:`e/(1+e)` for :math:`x < 0`; neither can
    overflow, so ``sigmoid(-1000.0)`` is 0 without a warning. The two cases
    are joined without a branch as :math:`e^{\min(x, 0)} / (1 + e)`: the
    factor is exactly 1 for :math:`x \ge 0` and exactly :math:`e` for
    :math:`x < 0` (a ``where`` would branch per element on NumPy and run
    twice as slow).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import sigmoid
    >>> sigmoid(xp.asarray([-1000.0, 0.0, 1000.0]))
    Array([0. , 0.5, 1. ], dtype=array_api_strict.float64)
    """
    xp = namespace(x)
    e = xp.exp(-xp.abs(x))
    return xp.exp(xp.minimum(x, 0.0)) / (1.0 + e)


@kernel
def sigmoid_backward(dout: Any, out: Any, /) -> Any:
    r"""Gradient of :func:`sigmoid` from its output: :math:`dx = dout\,(1 - y)\,y`.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import sigmoid, sigmoid_backward
    >>> sigmoid_backward(xp.asarray([1.0]), sigmoid(xp.asarray([0.0])))
    Array([0.25], dtype=array_api_strict.float64)
    """
    return dout * (1.0 - out) * out


def _shifted(x: Any, xp: ModuleType) -> Any:
    """``x - max(x)`` along the last axis, without overflow, for every input.

    The difference is taken on halves (exact in binary floating point), so
    ``-1e308 - 1e308`` becomes ``-inf`` without an overflow warning. Rows
    without a finite maximum are defined explicitly: the ``+inf`` logits of a
    row share its probability, an all ``-inf`` row is uniform, and a row
    holding NaN gives NaN.
    """
    m = xp.max(x, axis=-1, keepdims=True)
    finite = xp.isfinite(m)
    half = x * 0.5 - xp.where(finite, m, 0.0) * 0.5
    lo = -_finfo_max(x.dtype, xp) * 0.5  # a Python float: keeps bfloat16 bfloat16
    z = xp.where(half < lo, -xp.inf, xp.maximum(half, lo) * 2.0)
    zero = xp.zeros((), dtype=x.dtype, device=device(x))
    special = xp.where(xp.isnan(m), m, xp.where(x == m, zero, -xp.inf))
    return xp.where(finite, z, special)


def _log_softmax_parts(x: Any, xp: ModuleType) -> tuple[Any, Any, Any]:
    """Return ``z = x - max``, ``exp(z)`` and ``sum(exp(z))`` (>= 1 unless NaN)."""
    z = _shifted(x, xp)
    e = xp.exp(z)
    return z, e, xp.sum(e, axis=-1, keepdims=True)


@kernel
def softmax(x: Any, /) -> Any:
    r"""Softmax along the last axis, :math:`y_i = e^{x_i - m} / \sum_j e^{x_j - m}`.

    :math:`m` is the row maximum, so every exponent is :math:`\le 0`.

    Parameters
    ----------
    x : array, shape (..., C)

    Returns
    -------
    array, shape (..., C)
        Rows sum to 1.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import softmax
    >>> softmax(xp.asarray([[0.0, 0.0], [1000.0, 0.0]]))
    Array([[0.5, 0.5],
           [1. , 0. ]], dtype=array_api_strict.float64)
    """
    xp = namespace(x)
    _, e, s = _log_softmax_parts(x, xp)
    return e / s


@kernel
def log_softmax(x: Any, /) -> Any:
    r"""Logarithm of :func:`softmax`, :math:`x_i - m - \log\sum_j e^{x_j - m}`.

    Exact for large logit gaps, where ``log(softmax(x))`` would give ``-inf``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import log_softmax
    >>> log_softmax(xp.asarray([[0.0, 1000.0]]))
    Array([[-1000.,     0.]], dtype=array_api_strict.float64)
    """
    xp = namespace(x)
    z, _, s = _log_softmax_parts(x, xp)
    return z - xp.log(s)


def one_hot(t: Any, num_classes: int, /, *, dtype: Any = None) -> Any:
    """One-hot encode integer labels by comparison (no index assignment).

    Parameters
    ----------
    t : array, shape (N,), integer dtype
    num_classes : int
    dtype : dtype, optional
        Default: the namespace's default floating dtype.

    Returns
    -------
    array, shape (N, num_classes)

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import one_hot
    >>> one_hot(xp.asarray([2, 0]), 3, dtype=xp.float32)
    Array([[0., 0., 1.],
           [1., 0., 0.]], dtype=array_api_strict.float32)
    """
    xp = namespace(t)
    mask = _label_mask(t, num_classes, xp)
    return xp.astype(mask, dtype if dtype is not None else xp.float64)


def _label_mask(t: Any, num_classes: int, xp: ModuleType) -> Any:
    """``mask[n, c] = (t[n] == c)``, in an integer type that holds every class number.

    Labels of a narrow type (uint8 with more than 256 classes) are widened
    first, so ``arange`` cannot wrap around and mark two classes at once.
    """
    if num_classes - 1 > _iinfo_max(t.dtype, xp):
        t = xp.astype(t, xp.int32 if num_classes <= 2**31 else xp.int64)
    classes = xp.arange(num_classes, dtype=t.dtype, device=device(t))
    return xp.expand_dims(t, axis=-1) == classes


_INFO: dict[tuple[Any, Any, str], float] = {}


def _finfo_max(dtype: Any, xp: ModuleType) -> float:
    """``finfo(dtype).max`` as a Python float, cached per dtype."""
    key = (type(dtype), dtype, "f")  # never compares dtypes of two libraries
    v = _INFO.get(key)
    if v is None:
        v = _INFO[key] = float(xp.finfo(dtype).max)
    return v


def _iinfo_max(dtype: Any, xp: ModuleType) -> float:
    """``iinfo(dtype).max`` (a Python int), cached per dtype."""
    key = (type(dtype), dtype, "i")
    v = _INFO.get(key)
    if v is None:
        v = _INFO[key] = int(xp.iinfo(dtype).max)
    return v


def _is_labels(t: Any, xp: ModuleType) -> bool:
    return t.ndim == 1 and bool(xp.isdtype(t.dtype, "integral"))


def _target(t: Any, x: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Return (mask or None, target probabilities or None) for labels or (N, C) targets."""
    if _is_labels(t, xp):
        return _label_mask(t, x.shape[-1], xp), None
    return None, t if t.dtype == x.dtype else xp.astype(t, x.dtype)


def _batch(x: Any) -> int:
    """The batch size to divide by: N, or 1 for an empty batch (whose mean is 0)."""
    return max(int(x.shape[0]), 1)


@kernel
def cross_entropy(x: Any, t: Any, /) -> Any:
    r"""Mean softmax cross-entropy of logits `x` against targets `t`.

    .. math::
        L = -\frac{1}{N} \sum_n \sum_c t_{nc} \log \mathrm{softmax}(x_n)_c
          = \frac{1}{N} \sum_n \Big(m_n + \log\sum_c e^{x_{nc} - m_n}
            - \sum_c t_{nc} x_{nc}\Big) \quad (\textstyle\sum_c t_{nc} = 1)

    computed through :func:`log_softmax`, so it is exact for any logit gap and
    never negative for probability targets. The mean of an empty batch is 0.

    Parameters
    ----------
    x : array, shape (N, C), real floating dtype
        Logits (scores before softmax).
    t : array, shape (N,) of integer labels in ``[0, C)``, or shape (N, C)
        One-hot rows or probabilities.

    Returns
    -------
    array, shape ()
        The mean loss, in `x`'s dtype.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import cross_entropy
    >>> cross_entropy(xp.asarray([[0.0, 1000.0]]), xp.asarray([0]))
    Array(1000., dtype=array_api_strict.float64)
    """
    xp = namespace(x)
    logp = log_softmax(x)
    return _nll(logp, t, x, xp)


@kernel
def softmax_cross_entropy(x: Any, t: Any, /) -> tuple[Any, Any]:
    r""":func:`cross_entropy` and :func:`softmax` of the same logits in one pass.

    The forward of :class:`~xplayers.SoftmaxWithLoss`: the mean loss and the
    probabilities ``y`` that :func:`cross_entropy_backward` needs, from one
    shift and one ``exp``. Defined for an empty batch (loss 0, ``y`` of shape
    ``(0, C)``).

    Returns
    -------
    (loss, y) : array of shape () and array of shape (N, C), both in `x`'s dtype

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import softmax_cross_entropy
    >>> loss, y = softmax_cross_entropy(xp.asarray([[0.0, 0.0]]), xp.asarray([1]))
    >>> loss
    Array(0.69314718, dtype=array_api_strict.float64)
    """
    xp = namespace(x)
    n, c = x.shape
    if n == 0:  # defined, and kept away from reductions over empty rows
        dev = device(x)
        return xp.zeros((), dtype=x.dtype, device=dev), xp.zeros((0, c), dtype=x.dtype, device=dev)
    z, e, s = _log_softmax_parts(x, xp)
    return _nll(z - xp.log(s), t, x, xp), e / s


def _nll(logp: Any, t: Any, x: Any, xp: ModuleType) -> Any:
    mask, probs = _target(t, x, xp)
    if mask is not None:
        picked = xp.where(mask, logp, 0.0)
    else:
        # where() keeps 0 * -inf from turning into NaN for impossible classes.
        picked = probs * xp.where(probs != 0, logp, 0.0)
    return -_mean_rows(xp.sum(picked, axis=-1), xp)


def _mean_rows(rows: Any, xp: ModuleType) -> Any:
    """The mean of per-row values ``(N,)``, without overflow, in their dtype.

    Each row is divided by ``N`` before the sum, so losses near the float
    maximum do not overflow. When ``N`` itself exceeds the dtype's maximum
    (float16 from a batch of 65,520), the mean is taken in float32 and cast
    back: ``N`` cast to float16 would be ``inf``.
    """
    n = _batch(rows)
    if n <= _finfo_max(rows.dtype, xp):
        return xp.sum(rows / n)
    return xp.astype(xp.sum(xp.astype(rows, xp.float32) / n), rows.dtype)


@kernel
def cross_entropy_backward(y: Any, t: Any, dout: Any = 1.0, /) -> Any:
    r"""Gradient of :func:`cross_entropy` with respect to the logits.

    .. math::
        \frac{\partial L}{\partial x_{nc}} = \frac{dout}{N}
            \Big(y_{nc} \sum_k t_{nk} - t_{nc}\Big)

    which is the book's :math:`(y - t)/N` for one-hot or probability rows.

    Parameters
    ----------
    y : array, shape (N, C)
        ``softmax(x)`` from the forward pass.
    t : array, shape (N,) integer labels, or (N, C)
        The targets given to the forward pass.
    dout : float or 0-d array, default 1.0
        Upstream gradient of the loss.

    Returns
    -------
    array, shape (N, C)

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import cross_entropy_backward
    >>> cross_entropy_backward(xp.asarray([[0.25, 0.75]]), xp.asarray([1]))
    Array([[ 0.25, -0.25]], dtype=array_api_strict.float64)
    """
    xp = namespace(y)
    mask, probs = _target(t, y, xp)
    scale = dout / _batch(y)
    if mask is not None:
        return (y - xp.astype(mask, y.dtype)) * scale
    return (y * xp.sum(probs, axis=-1, keepdims=True) - probs) * scale


# --------------------------------------------------------------------------- chapters 6-7
# Dropout, batch normalisation, im2col/col2im, convolution and max pooling live
# in their own modules (one concept each) and are re-exported here, so that
# ``xplayers.functional`` stays the one place to look for the layer math.

from xplayers.functional_conv import (  # noqa: E402
    col2im,
    conv_output_size,
    convolution,
    convolution_backward,
    im2col,
    max_pooling,
    max_pooling_backward,
)
from xplayers.functional_regularize import (  # noqa: E402
    BATCH_NORM_EPS,
    batch_norm,
    batch_norm_backward,
    dropout_mask,
)

__all__ += [
    "BATCH_NORM_EPS",
    "batch_norm",
    "batch_norm_backward",
    "col2im",
    "conv_output_size",
    "convolution",
    "convolution_backward",
    "dropout_mask",
    "im2col",
    "max_pooling",
    "max_pooling_backward",
]
