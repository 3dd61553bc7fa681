"""Volume 2's ``common/optimizer.py``: list-style optimizers with ``update(params, grads)``.

Each class keeps the book's name, constructor arguments, state attributes
(``v``, ``h``, ``m``, ``iter``) and formulas. ``update`` walks the two lists
in step: ``params[i]`` is updated from ``grads[i]``.

Updates are written into ``params[i]`` (``params[i][...] = new``) where the
array allows it, so the layers that hold the same arrays see the new
weights, as with the book's ``params[i] -= ...``. Where arrays are immutable
(JAX) or read-only, ``params[i]`` is replaced in the given list instead,
the rule the layers of :mod:`xplayers.book2` use for their gradients:
there, read the weights back from that list after each ``update``.
"""

from __future__ import annotations

import math
from typing import Any

from xplayers._validation import fail, number_in, positive_number
from xplayers.backend import namespace
from xplayers.book2._common import store, zeros_like_all
from xplayers.functional import subtract_scaled_

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop"]


def _pairs(where: str, params: list[Any], grads: list[Any]) -> range:
    """Indices of `params` and `grads`, checked to be lists of the same length."""
    if len(params) != len(grads):
        fail(
            where,
            "grads",
            f"one gradient per parameter ({len(params)})",
            f"{len(grads)} gradients",
        )
    return range(len(params))


class SGD:
    """Stochastic gradient descent: ``param -= lr * grad``.

    Where the backend fuses the update (:func:`~xplayers.functional.subtract_scaled_`:
    torch's ``add_``, NumPy's in-place subtraction) it is written into the
    parameter without the intermediate arrays; the layers holding it see
    the new values either way.
    """

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = positive_number("SGD", "lr", lr)

    def update(self, params: list[Any], grads: list[Any]) -> None:
        """Update every ``params[i]`` from ``grads[i]``."""
        for i in _pairs("SGD.update", params, grads):
            if not subtract_scaled_(params[i], grads[i], self.lr):
                store(params, i, params[i] - self.lr * grads[i])


class Momentum:
    """Momentum SGD: ``v = momentum * v - lr * grad``; ``param += v``."""

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = positive_number("Momentum", "lr", lr)
        self.momentum = number_in("Momentum", "momentum", momentum, low=0.0, low_open=False)
        self.v: list[Any] | None = None

    def update(self, params: list[Any], grads: list[Any]) -> None:
        """Update every ``params[i]`` from ``grads[i]``; ``v`` starts at zeros."""
        idx = _pairs("Momentum.update", params, grads)
        if self.v is None:
            self.v = zeros_like_all(params)
        for i in idx:
            store(self.v, i, self.momentum * self.v[i] - self.lr * grads[i])
            store(params, i, params[i] + self.v[i])


class Nesterov:
    """Nesterov's accelerated gradient, in the book's form (arXiv:1212.0901).

    ``v = momentum * v - lr * grad``, then
    ``param += momentum**2 * v - (1 + momentum) * lr * grad``.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = positive_number("Nesterov", "lr", lr)
        self.momentum = number_in("Nesterov", "momentum", momentum, low=0.0, low_open=False)
        self.v: list[Any] | None = None

    def update(self, params: list[Any], grads: list[Any]) -> None:
        """Update every ``params[i]`` from ``grads[i]``; ``v`` starts at zeros."""
        idx = _pairs("Nesterov.update", params, grads)
        if self.v is None:
            self.v = zeros_like_all(params)
        mu, lr = self.momentum, self.lr
        for i in idx:
            store(self.v, i, mu * self.v[i] - lr * grads[i])
            new = params[i] + mu * mu * self.v[i]
            store(params, i, new - (1 + mu) * lr * grads[i])


class AdaGrad:
    """AdaGrad: ``h += grad**2``; ``param -= lr * grad / (sqrt(h) + 1e-7)``."""

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = positive_number("AdaGrad", "lr", lr)
        self.h: list[Any] | None = None

    def update(self, params: list[Any], grads: list[Any]) -> None:
        """Update every ``params[i]`` from ``grads[i]``; ``h`` starts at zeros."""
        idx = _pairs("AdaGrad.update", params, grads)
        if self.h is None:
            self.h = zeros_like_all(params)
        for i in idx:
            g = grads[i]
            store(self.h, i, self.h[i] + g * g)
            xp = namespace(self.h[i])
            store(params, i, params[i] - self.lr * g / (xp.sqrt(self.h[i]) + 1e-7))


class RMSprop:
    """RMSprop: ``h = decay_rate * h + (1 - decay_rate) * grad**2``, then AdaGrad's step."""

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        self.lr = positive_number("RMSprop", "lr", lr)
        self.decay_rate = number_in(
            "RMSprop", "decay_rate", decay_rate, low=0.0, high=1.0, low_open=False
        )
        self.h: list[Any] | None = None

    def update(self, params: list[Any], grads: list[Any]) -> None:
        """Update every ``params[i]`` from ``grads[i]``; ``h`` starts at zeros."""
        idx = _pairs("RMSprop.update", params, grads)
        if self.h is None:
            self.h = zeros_like_all(params)
        rho = self.decay_rate
        for i in idx:
            g = grads[i]
            store(self.h, i, rho * self.h[i] + (1 - rho) * g * g)
            xp = namespace(self.h[i])
            store(params, i, params[i] - self.lr * g / (xp.sqrt(self.h[i]) + 1e-7))


class Adam:
    """Adam (arXiv:1412.6980v8) as volume 2 writes it: bias correction folded into the step.

    With ``t = iter`` after the increment,
    ``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``,
    ``m += (1 - beta1) * (grad - m)``, ``v += (1 - beta2) * (grad**2 - v)``
    and ``param -= lr_t * m / (sqrt(v) + 1e-7)``: the moments themselves are
    never corrected, and ``1e-7`` is added to ``sqrt(v)``, not to the
    corrected ``sqrt(v_hat)``.
    """

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr = positive_number("Adam", "lr", lr)
        self.beta1 = number_in("Adam", "beta1", beta1, low=0.0, high=1.0, low_open=False)
        self.beta2 = number_in("Adam", "beta2", beta2, low=0.0, high=1.0, low_open=False)
        self.iter = 0
        self.m: list[Any] | None = None
        self.v: list[Any] | None = None

    def update(self, params: list[Any], grads: list[Any]) -> None:
        """Update every ``params[i]`` from ``grads[i]``; ``m`` and ``v`` start at zeros."""
        idx = _pairs("Adam.update", params, grads)
        if self.m is None or self.v is None:
            self.m, self.v = zeros_like_all(params), zeros_like_all(params)
        self.iter += 1
        b1, b2, t = self.beta1, self.beta2, self.iter
        lr_t = self.lr * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        for i in idx:
            g = grads[i]
            store(self.m, i, self.m[i] + (1 - b1) * (g - self.m[i]))
            store(self.v, i, self.v[i] + (1 - b2) * (g * g - self.v[i]))
            xp = namespace(self.v[i])
            store(params, i, params[i] - lr_t * self.m[i] / (xp.sqrt(self.v[i]) + 1e-7))
