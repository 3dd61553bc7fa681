"""Volume 2's ``common/optimizer.py``: list-style optimizers with ``update(params, grads)``.

Each class keeps the book's name, constructor arguments, state attributes
(``v``, ``h``, ``m``, ``iter``) and formulas. ``update`` walks the two lists
in step: ``params[i]`` is updated from ``grads[i]``.

Updates are written into ``params[i]`` (``params[i][...] = new``) where the
array allows it, so the layers that hold the same arrays see the new
weights, as with the book's ``params[i] -= ...``. Where arrays are immutable
(JAX), read-only or lazy (Dask), ``params[i]`` is replaced in the given list
instead, the rule the layers of :mod:`xplayers.book2` use for their
gradients, and every layer of :mod:`xplayers.book2` holding the old array
gets the new one. ``update`` first puts in both lists the arrays the layers
hold now, so ``optimizer.update(model.params, model.grads)`` with a model's
lists gathered once reads the current gradients
(:mod:`xplayers.book2._cells`). Arrays no layer
holds are replaced in the given list only: read them back from there.

Pure rules
----------
Each class's formulas are its ``rule``, a pure function of one weight, its
gradient, its state arrays (``state_names``, in that order) and the
hyper-parameters ``begin_step`` returns for this step:
``rule(p, g, state, **hyper) -> (new p, new state)``. ``update`` applies it
to every weight; the compiled training step of the trainers
(:mod:`xplayers.book2._compiled`) applies the same rule inside one
compiled function, so both give the same numbers.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from xplayers._validation import fail, number_in, positive_number
from xplayers.backend import namespace
from xplayers.book2._cells import refresh
from xplayers.book2._common import store, zeros_like_all
from xplayers.functional import subtract_scaled_
from xplayers.optim import adagrad_step, adam_step, momentum_step, sgd_step

__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop"]


def _pairs(where: str, params: list[Any], grads: list[Any]) -> range:
    """Indices of `params` and `grads`, checked to be lists of the same length.

    Both lists are first given the arrays the layers hold now (:func:`refresh`):
    a model's lists gathered once hold the first ones where arrays are replaced.
    """
    if len(params) != len(grads):
        fail(
            where,
            "grads",
            f"one gradient per parameter ({len(params)})",
            f"{len(grads)} gradients",
        )
    refresh(params)
    refresh(grads)
    return range(len(params))


def _through(
    step: Any, names: tuple[str, ...], p: Any, g: Any, state: tuple[Any, ...], hyper: dict[str, Any]
) -> tuple[Any, tuple[Any, ...]]:
    """Apply volume 1's pure `step` (:mod:`xplayers.optim`), where the formulas are the same."""
    amount, new = step(g, dict(zip(names, state, strict=True)), **hyper)
    return p - amount, tuple(new[n] for n in names)


class _Rule:
    """What the optimizers share: ``update`` applies the class's pure ``rule`` to each weight."""

    #: The names of the state lists (one array per weight), in ``rule``'s order.
    state_names: ClassVar[tuple[str, ...]] = ()
    lr: float

    def begin_step(self) -> dict[str, float]:
        """Count a step; return the hyper-parameters ``rule`` takes for it."""
        return {"lr": self.lr}

    @staticmethod
    def rule(p: Any, g: Any, state: tuple[Any, ...], **hyper: float) -> tuple[Any, tuple[Any, ...]]:
        """The new weight and state of weight `p` with gradient `g`."""
        raise NotImplementedError

    def states(self, params: list[Any]) -> list[list[Any]]:
        """The state lists (``state_names``), zeros like `params` where not yet made."""
        out = []
        for name in self.state_names:
            if getattr(self, name) is None:
                setattr(self, name, zeros_like_all(params))
            out.append(getattr(self, name))
        return out

    def update(self, params: list[Any], grads: list[Any]) -> None:
        """Update every ``params[i]`` from ``grads[i]``; the state starts at zeros."""
        idx = _pairs(f"{type(self).__name__}.update", params, grads)
        stores = self.states(params)
        hyper = self.begin_step()
        for i in idx:
            new, state = self.rule(params[i], grads[i], tuple(s[i] for s in stores), **hyper)
            for lst, value in zip(stores, state, strict=True):
                store(lst, i, value)
            store(params, i, new)


class SGD(_Rule):
    """Stochastic gradient descent: ``param -= lr * grad``.

    Where the backend fuses the update (:func:`~xplayers.functional.subtract_scaled_`:
    torch's ``add_``, NumPy's in-place subtraction) ``update`` writes it into
    the parameter without the intermediate arrays; elsewhere it applies
    ``rule``. The layers holding the parameter see the new values either way.
    """

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = positive_number("SGD", "lr", lr)

    def update(self, params: list[Any], grads: list[Any]) -> None:
        """Update every ``params[i]`` from ``grads[i]``, fused where the backend allows."""
        for i in _pairs("SGD.update", params, grads):
            if not subtract_scaled_(params[i], grads[i], self.lr):
                store(params, i, self.rule(params[i], grads[i], (), lr=self.lr)[0])

    @staticmethod
    def rule(p: Any, g: Any, state: tuple[Any, ...], **hyper: float) -> tuple[Any, tuple[Any, ...]]:
        """``p - lr * g``."""
        return _through(sgd_step, (), p, g, state, hyper)


class Momentum(_Rule):
    """Momentum SGD: ``v = momentum * v - lr * grad``; ``param += v``."""

    state_names = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = positive_number("Momentum", "lr", lr)
        self.momentum = number_in("Momentum", "momentum", momentum, low=0.0, low_open=False)
        self.v: list[Any] | None = None

    def begin_step(self) -> dict[str, float]:
        """``lr`` and ``momentum``."""
        return {"lr": self.lr, "momentum": self.momentum}

    @staticmethod
    def rule(p: Any, g: Any, state: tuple[Any, ...], **hyper: float) -> tuple[Any, tuple[Any, ...]]:
        """``v = momentum * v - lr * g``; ``p + v``."""
        return _through(momentum_step, ("v",), p, g, state, hyper)


class Nesterov(_Rule):
    """Nesterov's accelerated gradient, in the book's form (arXiv:1212.0901).

    ``v = momentum * v - lr * grad``, then
    ``param += momentum**2 * v - (1 + momentum) * lr * grad``.
    """

    state_names = ("v",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = positive_number("Nesterov", "lr", lr)
        self.momentum = number_in("Nesterov", "momentum", momentum, low=0.0, low_open=False)
        self.v: list[Any] | None = None

    def begin_step(self) -> dict[str, float]:
        """``lr`` and ``momentum``."""
        return {"lr": self.lr, "momentum": self.momentum}

    @staticmethod
    def rule(p: Any, g: Any, state: tuple[Any, ...], **hyper: float) -> tuple[Any, tuple[Any, ...]]:
        """``v = momentum * v - lr * g``; ``p + momentum**2 * v - (1 + momentum) * lr * g``."""
        mu, lr = hyper["momentum"], hyper["lr"]
        v = mu * state[0] - lr * g
        return p + mu * mu * v - (1 + mu) * lr * g, (v,)


class AdaGrad(_Rule):
    """AdaGrad: ``h += grad**2``; ``param -= lr * grad / (sqrt(h) + 1e-7)``."""

    state_names = ("h",)

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = positive_number("AdaGrad", "lr", lr)
        self.h: list[Any] | None = None

    @staticmethod
    def rule(p: Any, g: Any, state: tuple[Any, ...], **hyper: float) -> tuple[Any, tuple[Any, ...]]:
        """``h + g**2``; ``p - lr * g / (sqrt(h) + 1e-7)``."""
        return _through(adagrad_step, ("h",), p, g, state, hyper)


class RMSprop(_Rule):
    """RMSprop: ``h = decay_rate * h + (1 - decay_rate) * grad**2``, then AdaGrad's step."""

    state_names = ("h",)

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        self.lr = positive_number("RMSprop", "lr", lr)
        self.decay_rate = number_in(
            "RMSprop", "decay_rate", decay_rate, low=0.0, high=1.0, low_open=False
        )
        self.h: list[Any] | None = None

    def begin_step(self) -> dict[str, float]:
        """``lr`` and ``decay_rate``."""
        return {"lr": self.lr, "decay_rate": self.decay_rate}

    @staticmethod
    def rule(p: Any, g: Any, state: tuple[Any, ...], **hyper: float) -> tuple[Any, tuple[Any, ...]]:
        """``h = decay_rate * h + (1 - decay_rate) * g**2``; ``p - lr * g / (sqrt(h) + 1e-7)``."""
        rho = hyper["decay_rate"]
        h = rho * state[0] + (1 - rho) * g * g
        return p - hyper["lr"] * g / (namespace(h).sqrt(h) + 1e-7), (h,)


class Adam(_Rule):
    """Adam (arXiv:1412.6980v8) as volume 2 writes it: bias correction folded into the step.

    With ``t = iter`` after the increment,
    ``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``,
    ``m += (1 - beta1) * (grad - m)``, ``v += (1 - beta2) * (grad**2 - v)``
    and ``param -= lr_t * m / (sqrt(v) + 1e-7)``: the moments themselves are
    never corrected, and ``1e-7`` is added to ``sqrt(v)``, not to the
    corrected ``sqrt(v_hat)``.
    """

    state_names = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr = positive_number("Adam", "lr", lr)
        self.beta1 = number_in("Adam", "beta1", beta1, low=0.0, high=1.0, low_open=False)
        self.beta2 = number_in("Adam", "beta2", beta2, low=0.0, high=1.0, low_open=False)
        self.iter = 0
        self.m: list[Any] | None = None
        self.v: list[Any] | None = None

    def begin_step(self) -> dict[str, float]:
        """Count the step (``iter``); ``lr_t`` of this step, ``beta1`` and ``beta2``."""
        self.iter += 1
        b1, b2, t = self.beta1, self.beta2, self.iter
        lr_t = self.lr * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        return {"lr_t": lr_t, "beta1": b1, "beta2": b2}

    @staticmethod
    def rule(p: Any, g: Any, state: tuple[Any, ...], **hyper: float) -> tuple[Any, tuple[Any, ...]]:
        """``m``, ``v`` moved towards ``g``, ``g**2``; ``p - lr_t * m / (sqrt(v) + 1e-7)``."""
        return _through(adam_step, ("m", "v"), p, g, state, hyper)
