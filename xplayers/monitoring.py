"""Watching a metric during training: early stopping and the best model.

:class:`EarlyStopping` is given to :func:`xplayers.training.train`; at each
evaluation the loop reads the monitored metric (``"val_loss"`` by default),
keeps a host copy of the parameters when it improved by more than
`min_delta`, stops after `patience` evaluations without such an improvement,
and puts the best parameters back at the end (``restore_best=True``, as
Keras's ``restore_best_weights``). :class:`~xplayers.schedules.ReduceOnPlateau`
uses the same rule to lower the learning rate.

A loss improves by going down, an accuracy by going up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from xplayers._validation import choice, describe, fail, number_in, positive_int
from xplayers.errors import ModelFileError

__all__ = ["METRICS", "EarlyStopping", "check_monitor", "improved"]

#: The metrics an evaluation records, each with the direction that improves it.
METRICS: dict[str, str] = {
    "val_loss": "min",
    "val_acc": "max",
    "train_loss": "min",
    "train_acc": "max",
}


def check_monitor(where: str, monitor: object) -> str:
    """Check `monitor` names one of :data:`METRICS`; return it."""
    return choice(where, "monitor", monitor, METRICS)


def improved(monitor: str, value: float, best: float | None, min_delta: float) -> bool:
    """Whether `value` beats `best` by more than `min_delta` in `monitor`'s direction.

    Examples
    --------
    >>> from xplayers.monitoring import improved
    >>> improved("val_loss", 0.5, None, 0.0), improved("val_loss", 0.5, 0.55, 0.1)
    (True, False)
    >>> improved("val_acc", 0.9, 0.85, 0.01)
    True
    """
    if best is None:
        return True
    if METRICS[monitor] == "min":
        return value < best - min_delta
    return value > best + min_delta


@dataclass(frozen=True)
class EarlyStopping:
    """Stop training when a metric stops improving; keep the best parameters.

    Parameters
    ----------
    monitor : {"val_loss", "val_acc", "train_loss", "train_acc"}, default "val_loss"
        The metric watched at each evaluation (``val_*`` needs validation
        data: ``validation_data=`` or ``validation_split=``).
    patience : int or None, default 5
        Evaluations in a row without improvement after which training
        stops; None: never stop, only keep the best parameters.
    min_delta : float, default 0.0
        The smallest change that counts as an improvement.
    restore_best : bool, default True
        Put the parameters of the best evaluation back into the network
        when training ends (stopped early or not). The network's other
        state, such as BatchNormalization's running averages, stays that of
        the last update.

    Examples
    --------
    >>> from xplayers.monitoring import EarlyStopping
    >>> EarlyStopping(patience=3)
    EarlyStopping(monitor='val_loss', patience=3, min_delta=0.0, restore_best=True)
    """

    monitor: str = "val_loss"
    patience: int | None = 5
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "monitor", check_monitor("EarlyStopping", self.monitor))
        if self.patience is not None:
            positive_int("EarlyStopping", "patience", self.patience)
        number_in("EarlyStopping", "min_delta", self.min_delta, low=0.0, low_open=False)
        object.__setattr__(self, "min_delta", float(self.min_delta))
        if not isinstance(self.restore_best, bool):
            fail("EarlyStopping", "restore_best", "True or False", describe(self.restore_best))

    def config(self) -> dict[str, Any]:
        """The settings, as JSON data (saved in checkpoints and compared on resume)."""
        return {
            "monitor": self.monitor,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "restore_best": self.restore_best,
        }

    def initial_state(self) -> dict[str, Any]:
        """The state before the first evaluation."""
        return {"best": None, "best_iteration": None, "wait": 0, "stopped": False}

    def observe(
        self, state: Mapping[str, Any], value: float, iteration: int
    ) -> tuple[dict[str, Any], bool]:
        """The state after an evaluation that measured `value`, and whether it is the best."""
        new = dict(state)
        better = improved(self.monitor, value, state["best"], self.min_delta)
        if better:
            new.update(best=value, best_iteration=iteration, wait=0)
        else:
            new["wait"] = state["wait"] + 1
            new["stopped"] = self.patience is not None and new["wait"] >= self.patience
        return new, better

    def check_state(self, where: str, state: object, name: str) -> dict[str, Any]:
        """Check a saved state (from a checkpoint `name`); return it, or raise naming the file."""
        if not isinstance(state, Mapping) or set(state) != set(self.initial_state()):
            _bad_state(where, state, name)
        best, at, wait, stopped = (state[k] for k in ("best", "best_iteration", "wait", "stopped"))
        ok = (
            (best is None) == (at is None)
            and (best is None or _finite(best))
            and (at is None or _count(at))
            and _count(wait)
            and isinstance(stopped, bool)
        )
        if not ok:
            _bad_state(where, state, name)
        return dict(state)


def _bad_state(where: str, state: object, name: str) -> NoReturn:
    raise ModelFileError(
        f"checkpoint {name}: {where} cannot resume from its early-stopping state: {state!r}"[:300]
    )


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
