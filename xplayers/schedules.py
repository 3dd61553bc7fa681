r"""Learning-rate schedules for :func:`xplayers.training.train`.

A schedule gives the learning rate of each update from the optimizer's own
rate :math:`\eta_0` (its ``lr`` when training starts), the number of updates
made before it, the updates per epoch and the run's total:

===============  ============================================================
StepDecay        :math:`\eta_0\,\gamma^{\lfloor e / s \rfloor}` in epoch
                 :math:`e` (counted from 0): times `gamma` every `step_size`
                 epochs
CosineDecay      :math:`\eta_{min} + (\eta_0 - \eta_{min})(1 + \cos(\pi k / K))/2`
                 for update :math:`k` of :math:`K`
ReduceOnPlateau  :math:`\max(\eta_0 f^r, \eta_{min})` after :math:`r`
                 reductions: one each time the monitored metric has not
                 improved for `patience` evaluations
===============  ============================================================

The loop sets ``optimizer.lr`` before each update (a Python float, so
nothing waits for a device and a compiled JAX step compiles nothing again).
A schedule object holds only its settings; what changes during a run
(ReduceOnPlateau's best value and counters) is a small JSON state the loop
keeps and saves in checkpoints, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn

from xplayers._validation import choice, fail, number_in, positive_int
from xplayers.errors import ModelFileError
from xplayers.monitoring import check_monitor, improved

__all__ = [
    "SCHEDULES",
    "CosineDecay",
    "ReduceOnPlateau",
    "Schedule",
    "StepDecay",
    "get_schedule",
]


class Schedule:
    """Base class: a learning rate per update, and a state changed at evaluations."""

    #: The name of the schedule on the command line and in checkpoints.
    name: ClassVar[str] = ""

    def rate(
        self, base: float, iteration: int, per_epoch: int, total: int, state: Mapping[str, Any]
    ) -> float:  # pragma: no cover - abstract
        """The learning rate of the update that follows `iteration` updates."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """The settings, as JSON data, with the name under ``"name"``."""
        raise NotImplementedError

    def initial_state(self) -> dict[str, Any]:
        """The state at the start of a run (empty for schedules of the update count alone)."""
        return {}

    def observe(self, state: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The state after an evaluation that measured `metrics`."""
        return dict(state)

    def check_state(self, where: str, state: object, name: str) -> dict[str, Any]:
        """Check a saved state (from checkpoint `name`); return it, or raise naming the file."""
        if state != {}:
            _bad_state(where, state, name)
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _bad_state(where: str, state: object, name: str) -> NoReturn:
    problem = f"{where} cannot resume from its learning-rate schedule state: {state!r}"
    raise ModelFileError(f"checkpoint {name}: {problem}"[:300])


class StepDecay(Schedule):
    """Multiply the learning rate by `gamma` every `step_size` epochs (PyTorch's ``StepLR``).

    Parameters
    ----------
    step_size : int
        Epochs between two decays.
    gamma : float, default 0.1
        The factor, in (0, 1].

    Examples
    --------
    >>> from xplayers.schedules import StepDecay
    >>> s = StepDecay(step_size=2, gamma=0.5)
    >>> [s.rate(0.1, k, per_epoch=10, total=60, state={}) for k in (0, 19, 20, 40)]
    [0.1, 0.1, 0.05, 0.025]
    """

    name = "step"

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = positive_int("StepDecay", "step_size", step_size)
        self.gamma = number_in("StepDecay", "gamma", gamma, low=0.0)
        if self.gamma > 1.0:
            fail("StepDecay", "gamma", "a number in (0, 1]", repr(gamma))

    def rate(
        self, base: float, iteration: int, per_epoch: int, total: int, state: Mapping[str, Any]
    ) -> float:
        """The learning rate of the update that follows `iteration` updates."""
        return base * self.gamma ** (iteration // (self.step_size * per_epoch))

    def config(self) -> dict[str, Any]:
        """The settings, as JSON data, with the name under ``"name"``."""
        return {"name": self.name, "step_size": self.step_size, "gamma": self.gamma}


class CosineDecay(Schedule):
    r"""Cosine annealing from the optimizer's rate to `min_lr` over the run, update by update.

    Parameters
    ----------
    min_lr : float, default 0.0
        The rate at the end of the run.

    Examples
    --------
    >>> from xplayers.schedules import CosineDecay
    >>> s = CosineDecay(min_lr=0.01)
    >>> [round(s.rate(0.1, k, per_epoch=5, total=10, state={}), 4) for k in (0, 5, 10)]
    [0.1, 0.055, 0.01]
    """

    name = "cosine"

    def __init__(self, min_lr: float = 0.0) -> None:
        self.min_lr = number_in("CosineDecay", "min_lr", min_lr, low=0.0, low_open=False)

    def rate(
        self, base: float, iteration: int, per_epoch: int, total: int, state: Mapping[str, Any]
    ) -> float:
        """The learning rate of the update that follows `iteration` updates."""
        low = min(self.min_lr, base)
        return low + (base - low) * (1.0 + math.cos(math.pi * iteration / total)) / 2.0

    def config(self) -> dict[str, Any]:
        """The settings, as JSON data, with the name under ``"name"``."""
        return {"name": self.name, "min_lr": self.min_lr}


class ReduceOnPlateau(Schedule):
    """Lower the learning rate when a metric stops improving (Keras's ``ReduceLROnPlateau``).

    Parameters
    ----------
    monitor : {"val_loss", "val_acc", "train_loss", "train_acc"}, default "val_loss"
        The metric watched at each evaluation.
    factor : float, default 0.1
        The rate is multiplied by this, in (0, 1), at each reduction.
    patience : int, default 5
        Evaluations without improvement before a reduction.
    min_delta : float, default 0.0
        The smallest change that counts as an improvement.
    min_lr : float, default 0.0
        The rate never goes below this.

    Examples
    --------
    >>> from xplayers.schedules import ReduceOnPlateau
    >>> s = ReduceOnPlateau(factor=0.5, patience=2)
    >>> state = s.initial_state()
    >>> for loss in (1.0, 0.9, 0.95, 0.92):
    ...     state = s.observe(state, {"val_loss": loss})
    >>> state["reductions"], s.rate(0.1, 0, 10, 100, state)
    (1, 0.05)
    """

    name = "plateau"

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 5,
        min_delta: float = 0.0,
        min_lr: float = 0.0,
    ) -> None:
        self.monitor = check_monitor("ReduceOnPlateau", monitor)
        self.factor = number_in("ReduceOnPlateau", "factor", factor, low=0.0, high=1.0)
        self.patience = positive_int("ReduceOnPlateau", "patience", patience)
        self.min_delta = number_in(
            "ReduceOnPlateau", "min_delta", min_delta, low=0.0, low_open=False
        )
        self.min_lr = number_in("ReduceOnPlateau", "min_lr", min_lr, low=0.0, low_open=False)

    def rate(
        self, base: float, iteration: int, per_epoch: int, total: int, state: Mapping[str, Any]
    ) -> float:
        """The learning rate of the update that follows `iteration` updates."""
        scaled = base * self.factor ** int(state["reductions"])
        return max(scaled, min(self.min_lr, base))

    def config(self) -> dict[str, Any]:
        """The settings, as JSON data, with the name under ``"name"``."""
        return {
            "name": self.name,
            "monitor": self.monitor,
            "factor": self.factor,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "min_lr": self.min_lr,
        }

    def initial_state(self) -> dict[str, Any]:
        """The state at the start of a run: no best value, no reduction."""
        return {"best": None, "wait": 0, "reductions": 0}

    def observe(self, state: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
        """The state after an evaluation that measured `metrics`."""
        value = metrics[self.monitor]
        if improved(self.monitor, value, state["best"], self.min_delta):
            return {"best": value, "wait": 0, "reductions": state["reductions"]}
        wait = state["wait"] + 1
        if wait >= self.patience:
            return {"best": state["best"], "wait": 0, "reductions": state["reductions"] + 1}
        return {"best": state["best"], "wait": wait, "reductions": state["reductions"]}

    def check_state(self, where: str, state: object, name: str) -> dict[str, Any]:
        """Check a saved state (from checkpoint `name`); return it, or raise naming the file."""
        if not isinstance(state, Mapping) or set(state) != {"best", "wait", "reductions"}:
            _bad_state(where, state, name)
        best, wait, reductions = state["best"], state["wait"], state["reductions"]
        if not (
            (best is None or _finite(best))
            and _count(wait)
            and wait < self.patience
            and _count(reductions)
        ):
            _bad_state(where, state, name)
        return dict(state)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: Schedule classes by their command-line name.
SCHEDULES: dict[str, type[Schedule]] = {
    "step": StepDecay,
    "cosine": CosineDecay,
    "plateau": ReduceOnPlateau,
}


def get_schedule(name: str, **kwargs: Any) -> Schedule:
    """Create a schedule from its name (``"step"``, ``"cosine"``, ``"plateau"``) and settings.

    Examples
    --------
    >>> from xplayers.schedules import get_schedule
    >>> get_schedule("step", step_size=10)
    StepDecay(step_size=10, gamma=0.1)
    """
    return SCHEDULES[choice("get_schedule", "name", name, SCHEDULES)](**kwargs)
