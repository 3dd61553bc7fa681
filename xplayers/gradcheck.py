r"""Gradient checks: backpropagation against central differences in float64.

The numerical side always runs on a **host float64 NumPy copy** of the model
and its inputs, whatever backend and dtype the model itself uses, so float32
or GPU models are checked against an accurate reference:

.. math::
    \frac{\partial f}{\partial x_i} \approx
    \frac{f(x + h e_i) - f(x - h e_i)}{2h}

with truncation error :math:`O(h^2)` and rounding error about
:math:`\epsilon_{mach} |f| / h`; the default :math:`h = 10^{-5}` balances the
two in float64. Errors are reported per parameter as the largest
element-wise relative error

.. math::
    \max_i \frac{|a_i - b_i|}{\max(|a_i| + |b_i|,\ \tau)}

with the floor :math:`\tau = \mathrm{tiny} \cdot \max(1, |f|)`: the rounding
noise of the differences is about :math:`10^{-11} \max(1, |f|)` in float64,
so entries whose gradient is below :math:`\tau` (default
:math:`10^{-4} \max(1, |f|)`) are judged by their absolute error instead of
letting that noise dominate. A correct, well-scaled float64 model scores
below about :math:`10^{-7}`; a wrong formula scores near 1. Gradients that
vanish everywhere (deep sigmoid stacks with tiny weights) cannot be checked
this way: they drown in the noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import array_api_compat
import numpy as np

from xplayers._numerical import (
    EPS,
    host64,
    host_layer,
    host_target,
    numerical_gradient,
    scalar,
)
from xplayers._validation import describe, fail, positive_number
from xplayers.backend import namespace, to_numpy
from xplayers.network import Sequential
from xplayers.network.parameters import is_layer, layer_grads, layer_params

__all__ = [
    "EPS",
    "TINY",
    "gradient_check",
    "host_copy",
    "numerical_gradient",
    "numerical_params",
    "relative_error",
]

Array = np.ndarray[Any, Any]

#: Default floor of the relative error's denominator.
TINY = 1e-4


def host_copy(net: Sequential) -> Sequential:
    """Return a copy of `net` computing in float64 NumPy (used by gradient checks).

    The copy has the same class, layers and parameter names; its parameters
    are new float64 NumPy arrays, so changing them leaves `net` alone.

    Examples
    --------
    >>> import xplayers as xpl
    >>> from xplayers.gradcheck import host_copy
    >>> from xplayers.network import TwoLayerNet
    >>> with xpl.use_backend("array_api_strict"):
    ...     net = TwoLayerNet(3, 4, 2, seed=0, dtype="float32")
    >>> host = host_copy(net)
    >>> host.params["W1"].dtype, type(host.params["W1"]).__name__
    (dtype('float64'), 'ndarray')
    """
    return net.map_layers(host_layer)


def _select(where: str, wanted: Iterable[str] | None, available: list[str]) -> list[str]:
    if wanted is None:
        return available
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        fail(where, "params", f"names among {available}", repr(names))
    return names


def numerical_params(
    net: Sequential,
    x: Any,
    t: Any,
    *,
    eps: float = EPS,
    params: Iterable[str] | None = None,
) -> dict[str, Array]:
    """Gradients of a network's loss by central differences on a float64 host copy.

    Parameters
    ----------
    net : Sequential
        A :class:`~xplayers.network.Sequential`, ``TwoLayerNet`` or ``MultiLayerNet``
        on any backend; it is not modified.
    x, t : array
        A batch and its targets.
    eps : float, default 1e-5
    params : iterable of str, optional
        The parameter names to differentiate (default: all).

    Returns
    -------
    dict of str to numpy.ndarray
        Float64 gradients keyed like ``net.params``.

    Examples
    --------
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> from xplayers.network import TwoLayerNet
    >>> from xplayers.gradcheck import numerical_params
    >>> net = TwoLayerNet(3, 4, 2, weight_init_std=1.0, seed=0)
    >>> x, t = xpl.asarray(np.ones((2, 3))), xpl.asarray([0, 1])
    >>> num = numerical_params(net, x, t)
    >>> bool(np.allclose(num["W2"], net.gradient(x, t)["W2"], atol=1e-8))
    True
    """
    where = "numerical_params"
    if not isinstance(net, Sequential):
        fail(where, "net", "a network (Sequential, TwoLayerNet, MultiLayerNet)", describe(net))
    eps = positive_number(where, "eps", eps)
    keys = _select(where, params, list(net.params))
    return _numerical_net(net, x, t, eps, keys)[0]


def _numerical_net(
    net: Sequential, x: Any, t: Any, eps: float, keys: list[str]
) -> tuple[dict[str, Array], float]:
    """Numerical gradients of `keys` and the loss at the unperturbed point."""
    host = host_copy(net)
    x64, t64 = host64(x), host_target(t)

    def loss(_: Array) -> float:
        return scalar(host.loss(x64, t64, train_flg=True))  # as gradient() runs

    grads = {key: numerical_gradient(loss, host.params[key], eps=eps) for key in keys}
    return grads, loss(x64)


def relative_error(a: Any, b: Any, *, tiny: float = TINY) -> float:
    """Largest element-wise ``|a - b| / max(|a| + |b|, tiny)``; ``inf`` for different shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.gradcheck import relative_error
    >>> relative_error(np.array([1.0, 0.0]), np.array([1.5, 0.0]))
    0.2
    >>> relative_error(np.array([1.0]), np.array([3.0]))
    0.5
    """
    a64 = np.asarray(to_numpy(a), dtype=np.float64)
    b64 = np.asarray(to_numpy(b), dtype=np.float64)
    if a64.shape != b64.shape:
        return math.inf
    if a64.size == 0:
        return 0.0
    err = np.abs(a64 - b64) / np.maximum(np.abs(a64) + np.abs(b64), tiny)
    return float(np.max(np.where(np.isnan(err), np.inf, err)))


def gradient_check(
    model: Any,
    x: Any,
    t: Any = None,
    *,
    eps: float = EPS,
    params: Iterable[str] | None = None,
    tiny: float = TINY,
) -> dict[str, float]:
    r"""Compare a model's backpropagation with central differences in float64.

    Parameters
    ----------
    model : network or layer
        A network (:class:`~xplayers.network.Sequential`, ``TwoLayerNet``,
        ``MultiLayerNet``), checked on ``loss(x, t)`` for every parameter;
        a loss layer such as ``SoftmaxWithLoss`` (give `t`), checked on
        ``forward(x, t)`` for `x`; or any other layer, checked on the scalar
        ``sum(forward(x) * r)`` for a fixed random `r` (its backward is given
        `r` as ``dout``), for `x` and every parameter.
    x : array
        The input, on the model's backend.
    t : array, optional
        Targets, for a network or a loss layer.
    eps : float, default 1e-5
        The central-difference step.
    params : iterable of str, optional
        Names to check (``"W1"``; for a layer ``"x"``, ``"W"``, ``"b"``).
        Default: all.
    tiny : float, default 1e-4
        Floor of the relative error's denominator, relative to the size of
        the checked scalar: :math:`\tau = \mathrm{tiny} \cdot \max(1, |f|)`.

    Returns
    -------
    dict of str to float
        The largest relative error of each checked name (see
        :func:`relative_error`); ``inf`` when the backward gave a gradient of
        the wrong shape or none.

    Examples
    --------
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> from xplayers.gradcheck import gradient_check
    >>> from xplayers.network import MultiLayerNet
    >>> rng = np.random.default_rng(0)
    >>> net = MultiLayerNet(4, [5], 3, activation="sigmoid", seed=0)
    >>> x, t = xpl.asarray(rng.normal(size=(6, 4))), xpl.asarray(rng.integers(0, 3, 6))
    >>> errors = gradient_check(net, x, t)
    >>> sorted(errors), max(errors.values()) < 1e-6
    (['W1', 'W2', 'b1', 'b2'], True)
    >>> layer = xpl.Sigmoid()
    >>> gradient_check(layer, xpl.asarray(rng.normal(size=(2, 3))))["x"] < 1e-6
    True
    """
    where = "gradient_check"
    eps = positive_number(where, "eps", eps)
    tiny = positive_number(where, "tiny", tiny)
    if isinstance(model, Sequential):
        if t is None:
            fail(where, "t", "the targets of the network's loss", "None")
        keys = _select(where, params, list(model.params))
        analytic = model.gradient(x, t)
        numeric, f0 = _numerical_net(model, x, t, eps, keys)
        floor = tiny * max(1.0, abs(f0))
        return {k: _compare(analytic[k], numeric[k], floor) for k in keys}
    if not is_layer(model):
        fail(where, "model", "a network or a layer with forward and backward", describe(model))
    return _check_layer(model, x, t, eps, params, tiny)


def _compare(analytic: Any, numeric: Array, tiny: float) -> float:
    if analytic is None:
        return math.inf
    return relative_error(analytic, numeric, tiny=tiny)


def _check_layer(
    layer: Any, x: Any, t: Any, eps: float, params: Iterable[str] | None, tiny: float
) -> dict[str, float]:
    where = "gradient_check"
    keys = _select(where, params, ["x", *layer_params(layer)])
    host = host_layer(layer)
    x64, t64 = host64(x), host_target(t)
    if t is not None:
        # A loss layer: forward(x, t) is the scalar.
        loss = layer.forward(x, t)
        if getattr(loss, "ndim", 0) != 0:
            fail(where, "t", "None for a layer whose forward(x, t) is not a scalar loss", "targets")
        dx = layer.backward(1.0)

        def f(z: Array) -> float:
            return scalar(host.forward(z, t64))

    else:
        out = layer.forward(x)
        r = np.random.default_rng(0).standard_normal(tuple(out.shape))
        xp = namespace(out)
        dout = xp.asarray(r, device=array_api_compat.device(out))
        dx = layer.backward(xp.astype(dout, out.dtype))

        def f(z: Array) -> float:
            return float(np.sum(np.asarray(host.forward(z)) * r))

    analytic = {"x": dx, **layer_grads(layer)}
    floor = tiny * max(1.0, abs(f(x64)))
    errors = {}
    for key in keys:
        if key == "x":
            if dx is None:  # e.g. Affine(input_grad=False)
                continue
            numeric = numerical_gradient(f, x64, eps=eps)
        else:
            numeric = numerical_gradient(lambda _: f(x64), getattr(host, key), eps=eps)
        errors[key] = _compare(analytic[key], numeric, floor)
    return errors
