r"""Central differences in float64 on host copies: the numerical side of gradient checks.

Networks use it for the book's ``numerical_gradient(x, t)`` method and
:mod:`xplayers.gradcheck` builds its checks on it, so it sits below both.
The public entry point is :func:`xplayers.gradcheck.numerical_gradient`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from xplayers._validation import describe, fail, positive_number
from xplayers.backend import to_numpy

__all__ = ["EPS", "host64", "host_layer", "host_target", "numerical_gradient", "scalar"]

Array = np.ndarray[Any, Any]

#: Default step of the central differences.
EPS = 1e-5


def scalar(value: Any) -> float:
    """A Python float from a number or a 0-d array of any backend."""
    return float(np.asarray(to_numpy(value) if array_api_compat.is_array_api_obj(value) else value))


def host64(x: Any) -> Array:
    """A writable float64 NumPy copy of array `x` of any backend."""
    return np.array(to_numpy(x), dtype=np.float64, copy=True)


def host_target(t: Any) -> Any:
    """Targets on the host: labels keep their integer dtype, one-hot rows become float64."""
    if t is None or not array_api_compat.is_array_api_obj(t):
        return t
    host = np.array(to_numpy(t), copy=True)
    return host.astype(np.float64) if host.dtype.kind in "fb" else host


def host_layer(layer: Any) -> Any:
    """A shallow copy of `layer` whose parameters (and kept state) are float64 NumPy copies.

    The state is the arrays named in the layer's ``state`` attribute that are
    not None (``BatchNormalization``: its running averages).
    """
    clone = copy.copy(layer)
    params = getattr(layer, "params", None) or {}
    for attr, value in dict(params).items():
        setattr(clone, attr, host64(value))
    for attr in getattr(layer, "state", ()):
        value = getattr(layer, attr, None)
        if value is not None:
            setattr(clone, attr, host64(value))
    return clone


def numerical_gradient(f: Callable[[Array], Any], x: Any, *, eps: float = EPS) -> Array:
    r"""Gradient of the scalar function `f` at `x` by central differences, in float64.

    `f` is called with a float64 NumPy array holding `x` with one entry
    moved by :math:`\pm h`. When `x` is itself a writable float64 NumPy array,
    that array *is* `x`, moved in place and restored afterwards, so the
    book's idiom ``numerical_gradient(lambda W: net.loss(x, t), net.params["W1"])``
    works; otherwise `f` gets a float64 host copy and must compute from its
    argument.

    Parameters
    ----------
    f : callable
        ``f(x) -> float`` or a 0-d array of any backend.
    x : array
        Any backend, shape and real dtype.
    eps : float, default 1e-5
        The step :math:`h`.

    Returns
    -------
    numpy.ndarray
        Float64, shape of `x`.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.gradcheck import numerical_gradient
    >>> numerical_gradient(lambda z: float(np.sum(z**2)), np.array([1.0, -2.0])).round(8)
    array([ 2., -4.])
    """
    eps = positive_number("numerical_gradient", "eps", eps)
    if isinstance(x, np.ndarray) and x.dtype == np.float64 and x.flags.writeable:
        z = x
    else:
        if not array_api_compat.is_array_api_obj(x):
            fail("numerical_gradient", "x", "an array", describe(x))
        z = host64(x)
    grad = np.zeros(z.shape, dtype=np.float64)
    for idx in np.ndindex(*z.shape):
        old = z[idx]
        up, down = old + eps, old - eps
        z[idx] = up
        fp = scalar(f(z))
        z[idx] = down
        fm = scalar(f(z))
        z[idx] = old
        grad[idx] = (fp - fm) / (up - down)  # the step actually taken, after rounding
    return grad
