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
backend's kernel module (named by the backend record's ``kernels``, e.g.
``xplayers/backend/kernels_numpy.py``:
NumPy writing into the arrays it has just created, ``np.dot`` for the
batch-1 outer product, the fused softmax cross-entropy backward). The
public function picks the implementation by the type of its first argument,
once per type. A kernel that does not cover an input (non-finite logits, an
odd dtype) returns ``NotImplemented`` and the generic version runs instead.
The generic version stays reachable as ``f.generic``; the tests run every
kernel against it on one table of inputs (``tests/test_kernels.py``), each
in C order, transposed (Fortran) order, with negative strides, read-only,
and in float16 as well as float32 and float64, with 0-d, 1-d and empty
inputs where the function takes them. A kernel returns an array of its
input's kind for every shape, 0-d included (NumPy's ufuncs alone would
give a NumPy scalar there). To add a kernel, decorate the
generic function with ``@kernel`` and define the same name in the kernel
module.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, TypeVar, cast

import array_api_extra as xpx
import numpy as np
from array_api_compat import device

from xplayers._validation import dtype_name
from xplayers.backend import namespace, record_of

__all__ = [
    "BATCH_NORM_EPS",
    "SEED_WORDS",
    "affine",
    "affine_backward",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_eval",
    "batch_norm_eval_backward",
    "col2im",
    "conv_output_size",
    "convolution",
    "convolution_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "dropout_draw",
    "dropout_mask",
    "dropout_seed",
    "fold",
    "host_values",
    "im2col",
    "kernel",
    "labels_in_range",
    "log_softmax",
    "max_pooling",
    "max_pooling_backward",
    "one_hot",
    "relu",
    "relu_backward",
    "running_average",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_cross_entropy",
    "subtract_scaled_",
    "windows",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The kernel module of each array type (None: the generic code only).
_KERNEL_MODULES: dict[type, ModuleType | None] = {}


def kernel_module(x: Any) -> ModuleType | None:
    """The kernel module of array `x`'s backend (its record's ``kernels``), or None.

    Looked up once per array type.
    """
    cls = type(x)
    try:
        return _KERNEL_MODULES[cls]
    except KeyError:
        pass
    found = record_of(x)
    name = found.kernels if found is not None else None
    module = importlib.import_module(name) if name else None
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
    ``where``: NumPy's ``where`` branches per element and is slower on a
    half-random mask. The two agree for finite `dout`; a non-finite `dout`
    where ``x <= 0`` gives NaN there instead of 0.

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
    :math:`x < 0` (a ``where`` would branch per element on NumPy, which is
    slower).

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


@kernel
def subtract_scaled_(p: Any, g: Any, lr: float, /) -> bool:
    r"""Subtract :math:`\eta\,g` from parameter `p` in place in one fused operation; whether it did.

    The one function of the core that writes into an argument: the
    optimizer's SGD update :math:`p \leftarrow p - \eta\,g`, for backends
    that fuse it (torch's ``p.add_(g, alpha=-lr)``, the update of
    ``torch.optim.SGD``, where ``p -= lr * g`` allocates ``lr * g`` first).
    The generic version does nothing and returns False; the optimizer then
    subtracts ``lr * g`` itself.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import subtract_scaled_
    >>> subtract_scaled_(xp.ones(2), xp.ones(2), 0.5)
    False
    """
    return False


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


@kernel
def labels_in_range(t: Any, num_classes: int, /) -> Any:
    """Whether every label of `t` lies in ``[0, num_classes)``, as a 0-d boolean array.

    The class count is compared only where the labels' type holds it (a
    uint8 label is always below 300). Reading the answer (``bool(...)``)
    waits for the device; :class:`~xplayers.SoftmaxWithLoss` does it only
    where its ``check_labels`` asks for it.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import labels_in_range
    >>> bool(labels_in_range(xp.asarray([0, 2]), 3)), bool(labels_in_range(xp.asarray([3]), 3))
    (True, False)
    """
    xp = namespace(t)
    if t.shape[0] == 0:
        return xp.asarray(True, device=device(t))
    ok = xp.min(t) >= 0
    if num_classes <= _iinfo_max(t.dtype, xp):
        ok = ok & (xp.max(t) < num_classes)
    return ok


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


def _target(t: Any, x: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Return (mask or None, target probabilities or None) for labels or (N, C) targets.

    Integer labels are ``(N,)``, or a column ``(N, 1)`` when ``C > 1`` (the
    book's scripts pass those); an integer ``(N, C)`` array is one-hot rows.
    """
    c = x.shape[-1]
    if t.ndim <= 2 and xp.isdtype(t.dtype, "integral"):
        if t.ndim == 2 and t.shape[-1] == 1 and c > 1:
            t = xp.reshape(t, (t.shape[0],))
        if t.ndim == 1:
            return _label_mask(t, c, xp), None
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
        One-hot rows or probabilities. Integer labels as a column ``(N, 1)``
        are read as ``(N,)`` when ``C > 1``.

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


# ---------------------------------------------------------------- chapter 6: dropout, batch norm
# Dropout and batch normalisation (the book's chapter 6), against the Array API.
#
# Dropout is the book's *non-inverted* form: in training each value is kept
# unchanged or set to 0; at test time every value is scaled by the keep
# probability ``1 - ratio`` instead. The random keep-mask is drawn on the host
# from a seeded :class:`numpy.random.Generator` (the standard has no random
# numbers), so one seed gives the same masks on every backend.
#
# Batch normalisation follows the book's formulas, its epsilon ``10e-7``
# (that is ``1e-6``), and its running averages
# ``running = momentum * running + (1 - momentum) * batch``.

#: The book's ``10e-7`` added to the variance before the square root.
BATCH_NORM_EPS = 10e-7


class UniformSource(Protocol):
    """A host generator of uniform floats in ``[0, 1)``: ``random(shape)``.

    :class:`numpy.random.Generator` and :class:`numpy.random.RandomState` are
    ones; so is ``xplayers.book2``'s stand-in for NumPy's global generator.
    """

    def random(self, size: Any) -> Any:
        """``size``-shaped float64 uniform draws."""
        ...


def dropout_mask(rng: UniformSource, like: Any, ratio: float) -> Any:
    """Draw a keep-mask shaped like `like`: 1 where ``uniform > ratio``, else 0.

    Parameters
    ----------
    rng : numpy.random.Generator or UniformSource
        The host generator; ``rng.random(shape)`` in float64 is drawn, so the
        same generator state gives the same mask on every backend.
    like : array
        The mask gets its shape, dtype and device (one host-to-device copy).
    ratio : float
        The probability of dropping a value, the book's ``dropout_ratio``.

    Returns
    -------
    array
        Of 0.0 and 1.0, multiplied into the input (forward) and the gradient
        (backward).

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_strict as xp
    >>> from xplayers.functional import dropout_mask
    >>> dropout_mask(np.random.default_rng(0), xp.ones(4), 0.5)
    Array([1., 0., 0., 0.], dtype=array_api_strict.float64)
    """
    dtype = dtype_name(like.dtype)
    return host_values(like, lambda shape: (rng.random(shape) > ratio).astype(dtype))


@kernel
def host_values(like: Any, draw: Callable[[tuple[int, ...]], Any], /) -> Any:
    """``draw(like.shape)``, a NumPy array of `like`'s dtype, on `like`'s backend and device.

    `draw` is called once per call on the host; it may keep state (a
    generator it draws from). Inside ``jax.jit`` JAX's kernel calls it through an
    ordered ``jax.experimental.io_callback`` each time the compiled function
    runs, in program order, so a compiled step draws what the layers draw.
    """
    return namespace(like).asarray(draw(tuple(like.shape)), device=device(like))


#: How many 32-bit words a Dropout seed holds (:func:`dropout_seed`).
SEED_WORDS = 4


def dropout_seed(seed: Any = None) -> tuple[int, ...]:
    """The 32-bit words a seed fixes, for :func:`dropout_draw`.

    Parameters
    ----------
    seed : int, sequence of int, numpy.random.Generator or None
        An integer or a sequence of them (``[seed, k]``) is hashed by
        :class:`numpy.random.SeedSequence`; a Generator gives words drawn
        from it (advancing it); None draws fresh entropy.

    Returns
    -------
    tuple of int
        :data:`SEED_WORDS` integers in ``[0, 2**32)``.

    Examples
    --------
    >>> from xplayers.functional import dropout_seed
    >>> dropout_seed(0) == dropout_seed(0) != dropout_seed(1)
    True
    """
    if isinstance(seed, np.random.Generator):
        return tuple(int(w) for w in seed.integers(0, 2**32, size=SEED_WORDS, dtype=np.uint64))
    words = np.random.SeedSequence(seed).generate_state(SEED_WORDS, dtype=np.uint32)
    return tuple(int(w) for w in words)


def host_dropout_mask(
    seed: Any, count: Any, shape: tuple[int, ...], skip: int, ratio: float, dtype: str
) -> np.ndarray[Any, Any]:
    """The host keep-mask of draw `count` from `seed`, from its row `skip` on."""
    words = [int(w) for w in np.asarray(seed).reshape(-1)]
    rng = np.random.default_rng([*words, int(np.asarray(count))])
    if skip:  # one 64-bit step per float64 drawn: the rows before this batch's
        rng.bit_generator.advance(int(skip) * math.prod(shape[1:]))  # type: ignore[attr-defined]
    return (rng.random(shape) > ratio).astype(dtype)


@kernel
def dropout_draw(like: Any, seed: Any, count: Any, ratio: float, /, skip: int = 0) -> Any:
    """The keep-mask of draw number `count` from `seed`, shaped like `like`.

    A pure function of its arguments: the mask is
    ``numpy.random.default_rng([*seed, count]).random(shape) > ratio``,
    drawn in float64 on the host and copied to `like`'s backend, dtype and
    device, so the same seed and count give the same mask on every backend
    and inside ``jax.jit`` (JAX's kernel draws it through
    ``jax.pure_callback``). `skip` leaves out the first rows of a larger
    batch: the mask of rows ``skip:skip+N`` of the batch drawn with this
    `count` (each chunk of a data-parallel step draws its own rows).

    Parameters
    ----------
    like : array, shape (N, ...)
        The mask gets its shape, dtype and device.
    seed : sequence of int or array of uint32
        The words of :func:`dropout_seed`.
    count : int or 0-d integer array
        How many masks were drawn from `seed` before this one.
    ratio : float
        The probability of dropping a value.
    skip : int, default 0
        Rows of the drawn batch before `like`'s first row.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import dropout_draw, dropout_seed
    >>> full = dropout_draw(xp.ones((4, 3)), dropout_seed(0), 5, 0.5)
    >>> part = dropout_draw(xp.ones((2, 3)), dropout_seed(0), 5, 0.5, skip=2)
    >>> bool(xp.all(full[2:, :] == part))
    True
    """
    xp = namespace(like)
    host = host_dropout_mask(seed, count, tuple(like.shape), skip, ratio, dtype_name(like.dtype))
    return xp.asarray(host, device=device(like))


def running_average(running: Any, batch: Any, momentum: float, /) -> Any:
    """The book's running average ``momentum * running + (1 - momentum) * batch`` (a new array)."""
    return momentum * running + (1 - momentum) * batch


def batch_norm_eval(
    x: Any, gamma: Any, beta: Any, mean: Any, var: Any, eps: float = BATCH_NORM_EPS
) -> tuple[Any, Any, Any]:
    r"""Batch normalisation at test time, with the running averages.

    :math:`\hat x = (x - \mu_{run}) / s`, :math:`s = \sqrt{\sigma^2_{run} + \epsilon}`,
    :math:`y = \gamma \hat x + \beta`.

    Returns
    -------
    out, xn, std : array
        `std` and `xn` are what :func:`batch_norm_eval_backward` needs.
    """
    std = namespace(x).sqrt(var + eps)
    xn = (x - mean) / std
    return gamma * xn + beta, xn, std


def batch_norm_eval_backward(dout: Any, gamma: Any, xn: Any, std: Any) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`batch_norm_eval`: :math:`dx = \gamma\,dout / s`.

    Returns
    -------
    dx : array, shape (N, D)
    dgamma, dbeta : array, shape (D,)
    """
    xp = namespace(dout)
    return gamma * dout / std, xp.sum(xn * dout, axis=0), xp.sum(dout, axis=0)


def batch_norm(x: Any, gamma: Any, beta: Any, eps: float = BATCH_NORM_EPS) -> dict[str, Any]:
    r"""Normalise each column of `x` ``(N, D)`` over the batch, then scale and shift.

    .. math::
        \mu = \tfrac1N \textstyle\sum_n x_n, \quad
        x_c = x - \mu, \quad
        \sigma^2 = \tfrac1N \textstyle\sum_n x_{c,n}^2, \quad
        s = \sqrt{\sigma^2 + \epsilon}, \quad
        \hat x = x_c / s, \quad
        y = \gamma \hat x + \beta

    Returns
    -------
    dict
        ``out``, and what :func:`batch_norm_backward` and the running
        averages need: ``mu``, ``var``, ``xc``, ``xn``, ``std``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import batch_norm
    >>> r = batch_norm(xp.asarray([[1.0], [3.0]]), xp.ones(1), xp.zeros(1), eps=0.0)
    >>> r["out"], r["var"]
    (Array([[-1.],
           [ 1.]], dtype=array_api_strict.float64), Array([1.], dtype=array_api_strict.float64))
    """
    xp = namespace(x)
    mu = xp.mean(x, axis=0)
    xc = x - mu
    var = xp.mean(xc * xc, axis=0)
    std = xp.sqrt(var + eps)
    xn = xc / std
    return {"out": gamma * xn + beta, "mu": mu, "var": var, "xc": xc, "xn": xn, "std": std}


def batch_norm_backward(dout: Any, gamma: Any, xc: Any, xn: Any, std: Any) -> tuple[Any, Any, Any]:
    r"""Gradients of :func:`batch_norm` (training mode), the book's computational graph.

    Going backwards through the nodes of the forward formulas:

    .. math::
        d\beta = \textstyle\sum_n dout, \quad
        d\gamma = \textstyle\sum_n \hat x\, dout, \quad
        d\hat x = \gamma\, dout, \\
        ds = -\textstyle\sum_n d\hat x\, x_c / s^2, \quad
        d\sigma^2 = \tfrac{ds}{2s}, \quad
        dx_c = d\hat x / s + \tfrac2N x_c\, d\sigma^2, \quad
        dx = dx_c - \tfrac1N \textstyle\sum_n dx_c

    Returns
    -------
    dx : array, shape (N, D)
    dgamma, dbeta : array, shape (D,)
    """
    xp = namespace(dout)
    n = dout.shape[0]
    dbeta = xp.sum(dout, axis=0)
    dgamma = xp.sum(xn * dout, axis=0)
    dxn = gamma * dout
    dstd = -xp.sum(dxn * xc / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc = dxn / std + (2.0 / n) * xc * dvar
    dx = dxc - xp.sum(dxc, axis=0) / n
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- chapter 7: im2col
# Convolution and max pooling by im2col, written once against the Array API.
#
# The book's chapter-7 layout is kept: images are ``(N, C, H, W)``, filters
# ``(FN, C, FH, FW)``, and :func:`im2col` turns the input into a matrix of shape
# ``(N * OH * OW, C * FH * FW)`` whose row ``(n, oy, ox)`` holds the input
# window under the filter at output position ``(oy, ox)``, columns ordered
# ``(c, fy, fx)``. A convolution is then one matrix product, and its backward
# pass scatters the window gradients back with :func:`col2im` (the adjoint of
# :func:`im2col`: overlapping windows add up).
#
# The output size is ``OH = (H + 2 * pad - FH) // stride + 1`` (likewise
# ``OW``), as in the book.
#
# Implementations:
#
# * Windows that tile the padded input exactly (``stride == FH == FW``, the
#   book's 2x2 pooling with stride 2) need no copy loop: :func:`im2col` and
#   :func:`col2im` are a reshape and an axis permutation, on every backend.
# * Otherwise the generic version stacks the ``FH * FW`` strided slices of the
#   padded input (array-api-extra's ``pad``), and :func:`col2im` adds each
#   window slice into a zero image with array-api-extra's ``at`` (in place on
#   the function's own buffer where the library allows, functional on JAX);
#   the standard has neither pad nor scatter-add.
# * On NumPy, the kernels of :func:`windows` and :func:`fold`
#   (``xplayers/backend/kernels_numpy.py``) build the matrix from one strided
#   view (one copy, no loop) and sum the windows into a buffer they own.
# * On torch and JAX, :func:`convolution` and :func:`max_pooling` and their
#   backward functions are the libraries' own operations (``conv2d``,
#   ``max_pool2d``; ``lax.conv_general_dilated``, ``lax.reduce_window``),
#   which keep the input itself instead of the im2col matrix.
#
# Memory: the im2col matrix holds ``FH * FW / stride**2`` times the values of
# the (padded) input, e.g. 25x for the book's 5x5 filters with stride 1.


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


@kernel
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


@kernel
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


# --------------------------------------------------------------------------- chapter 7: convolution


@kernel
def convolution(x: Any, W: Any, b: Any, stride: int = 1, pad: int = 0) -> tuple[Any, Any, Any]:
    r"""2-D convolution (cross-correlation) of images `x` with filters `W`, by im2col.

    .. math::
        out_{n,f,i,j} = b_f + \sum_{c,u,v} W_{f,c,u,v}\,
            x^{pad}_{n,c,\,i s + u,\,j s + v}

    computed as ``im2col(x) @ col_W + b`` with ``col_W = W.reshape(FN, -1).T``.
    The kernels of torch and JAX call the library's own convolution instead
    and keep the input and the filters themselves for the backward pass (see
    Returns).

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    W : array, shape (FN, C, FH, FW)
    b : array, shape (FN,)
    stride, pad : int

    Returns
    -------
    out : array, shape (N, FN, OH, OW)
    col : array
        What :func:`convolution_backward` needs of `x`: ``im2col(x)``, shape
        ``(N * OH * OW, C * FH * FW)``, or, from the kernels of torch and
        JAX, `x` itself, shape ``(N, C, H, W)`` (no window copy is made).
    col_W : array
        ``W.reshape(FN, -1).T``, shape ``(C * FH * FW, FN)``, or, from the
        kernels of torch and JAX, `W` itself, shape ``(FN, C, FH, FW)``.

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
    out = affine(col, col_W, b)
    out = xp.permute_dims(xp.reshape(out, (n, oh, ow, fn)), (0, 3, 1, 2))
    return out, col, col_W


@kernel
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

    `col` and `col_W` are what :func:`convolution` returned, in either of
    its forms: the im2col matrices, or the input images and filters
    themselves (4-d), which this generic version unfolds first.

    Returns
    -------
    dx : array, shape (N, C, H, W), or None without `input_grad`
    dW : array, shape (FN, C, FH, FW)
    db : array, shape (FN,)
    """
    xp = namespace(dout)
    fn, c, fh, fw = filter_shape
    if col.ndim == 4:  # the input images, as the native kernels keep them
        col = im2col(col, fh, fw, stride, pad)
    if col_W.ndim == 4:  # the filters
        col_W = xp.reshape(col_W, (fn, -1)).T
    d = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, fn))
    dcol, dW_col, db = affine_backward(d, col, col_W, input_grad=input_grad)
    dW = xp.reshape(dW_col.T, (fn, c, fh, fw))
    if dcol is None:
        return None, dW, db
    return col2im(dcol, input_shape, fh, fw, stride, pad), dW, db


# --------------------------------------------------------------------------- chapter 7: max pooling


@kernel
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
        book's ``arg_max``. The JAX kernel returns `x` itself here instead
        (floating, shape ``(N, C, H, W)``): its backward pass finds the
        maxima again (``select_and_scatter``, the same first-maximum rule).

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.functional import max_pooling
    >>> x = xp.reshape(xp.asarray([1.0, 3.0, 3.0, 2.0]), (1, 1, 2, 2))
    >>> out, arg_max = max_pooling(x, 2, 2, stride=2)
    >>> out[0, 0, ...], arg_max[0, 0, 0, ...]
    (Array([[3.]], dtype=array_api_strict.float64), Array([1], dtype=array_api_strict.int64))
    """
    return _window_maxima(x, pool_h, pool_w, stride, pad)


def _window_maxima(x: Any, pool_h: int, pool_w: int, stride: int, pad: int) -> tuple[Any, Any]:
    """The generic :func:`max_pooling`: window maxima ``(N, C, OH, OW)`` and their positions."""
    xp = namespace(x)
    t = windows(x, pool_h, pool_w, stride, pad)  # (N, OH, OW, C, PH*PW)
    arg_max = xp.argmax(t, axis=-1)
    out = xp.permute_dims(xp.max(t, axis=-1), (0, 3, 1, 2))
    return out, arg_max


@kernel
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
    :func:`col2im` adds the windows up where they overlap. A floating
    `arg_max` is the pooled input itself (what the JAX kernel of
    :func:`max_pooling` keeps): the positions are found from it first.

    Returns
    -------
    array, shape (N, C, H, W)
    """
    xp = namespace(dout)
    if xp.isdtype(arg_max.dtype, "real floating"):  # the input, kept by a native kernel
        _, arg_max = _window_maxima(arg_max, pool_h, pool_w, stride, pad)
    d = xp.expand_dims(xp.permute_dims(dout, (0, 2, 3, 1)), axis=-1)  # (N, OH, OW, C, 1)
    positions = xp.arange(pool_h * pool_w, dtype=arg_max.dtype, device=device(arg_max))
    dmax = xp.where(xp.expand_dims(arg_max, axis=-1) == positions, d, 0.0)
    return fold(dmax, input_shape, pool_h, pool_w, stride, pad)
