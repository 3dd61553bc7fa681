r"""Dropout and batch normalisation (the book's chapter 6), against the Array API.

Dropout is the book's *non-inverted* form: in training each value is kept
unchanged or set to 0; at test time every value is scaled by the keep
probability ``1 - ratio`` instead. The random keep-mask is drawn on the host
from a seeded :class:`numpy.random.Generator` (the standard has no random
numbers), so one seed gives the same masks on every backend.

Batch normalisation follows the book's formulas, its epsilon ``10e-7``
(that is ``1e-6``), and its running averages
``running = momentum * running + (1 - momentum) * batch``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import device

from xplayers._backend import namespace
from xplayers._validation import dtype_name

__all__ = ["BATCH_NORM_EPS", "batch_norm", "batch_norm_backward", "dropout_mask"]

#: The book's ``10e-7`` added to the variance before the square root.
BATCH_NORM_EPS = 10e-7


def dropout_mask(rng: np.random.Generator, like: Any, ratio: float) -> Any:
    """Draw a keep-mask shaped like `like`: 1 where ``uniform > ratio``, else 0.

    Parameters
    ----------
    rng : numpy.random.Generator
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
    xp = namespace(like)
    host = (rng.random(tuple(like.shape)) > ratio).astype(dtype_name(like.dtype))
    return xp.asarray(host, device=device(like))


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
