"""Which networks the fused NumPy training step (:mod:`xplayers._numpy_step`) can run.

:meth:`Sequential.train_step <xplayers.network.Sequential.train_step>` asks
:func:`numpy_plan` once per network; when the layers fit, each step then goes
through :meth:`NumpyPlan.step`, which falls back (returns ``None``) whenever
the arrays of that step are not writable NumPy arrays of one float dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, Protocol

from xplayers._numpy_step import NumpyStep
from xplayers.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss
from xplayers.optim import SGD

__all__ = ["NumpyPlan", "numpy_plan"]


class Optimizer(Protocol):
    """Anything with ``update(params, grads)``."""

    def update(self, params: MutableMapping[str, Any], grads: Mapping[str, Any], /) -> None: ...


class NumpyPlan:
    """The Affine layers and activation names of a stack the fused NumPy step can run."""

    def __init__(self, affines: list[Affine], activations: list[str]) -> None:
        self.affines = affines
        self.activations = activations
        self.numpy_step: NumpyStep | None = None

    def step(
        self, params: MutableMapping[str, Any], x: Any, t: Any, optimizer: Optimizer
    ) -> Any | None:
        """Run one fused step and return its loss, or ``None`` when these arrays do not fit."""
        pairs = [(a.W, a.b) for a in self.affines]
        if not NumpyStep.supports(pairs, x, t):
            return None
        if self.numpy_step is None:
            self.numpy_step = NumpyStep()
        if type(optimizer) is SGD:
            return self.numpy_step(pairs, self.activations, x, t, sgd_lr=optimizer.lr)
        keys = list(params)

        def update(grads: list[tuple[Any, Any]]) -> None:
            flat = [g for pair in grads for g in pair]
            optimizer.update(params, dict(zip(keys, flat, strict=True)))

        return self.numpy_step(pairs, self.activations, x, t, update=update)


def numpy_plan(layers: Sequence[Any], last_layer: Any) -> NumpyPlan | None:
    """The plan of a stack the fused step fits, else ``None``.

    It fits ``Affine, act, ..., Affine`` (each act a ``Relu`` or ``Sigmoid``)
    ending in ``SoftmaxWithLoss``, with only the first Affine built without
    ``input_grad``.
    """
    affines, acts = list(layers[0::2]), list(layers[1::2])
    fits = (
        type(last_layer) is SoftmaxWithLoss
        and all(type(a) is Affine for a in affines)
        and all(a.input_grad for a in affines[1:])
        and all(type(h) in (Relu, Sigmoid) for h in acts)
        and len(affines) == len(acts) + 1
    )
    names = ["relu" if type(h) is Relu else "sigmoid" for h in acts]
    return NumpyPlan(affines, names) if fits else None
