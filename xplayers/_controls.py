"""What :func:`xplayers.training.train` adds around its updates, and its checkpoint state.

A :class:`RunControls` holds, for one run, the learning-rate schedule and its
state, early stopping and the best parameters so far, and gradient clipping.
The loop asks it for the rate before each update (:meth:`RunControls.set_rate`),
gives it the metrics of each evaluation (:meth:`RunControls.observe`), and
saves :meth:`RunControls.saved` in checkpoints under the training state's
``"controls"`` key (the best parameters as arrays named ``"best.<key>"``);
:meth:`RunControls.restore` checks a saved state completely before it
changes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xplayers._validation import describe, dtype_name, fail, number_in
from xplayers.backend import to_numpy
from xplayers.errors import ModelFileError
from xplayers.monitoring import EarlyStopping
from xplayers.optim import ClipGradNorm
from xplayers.schedules import Schedule

__all__ = ["BEST_PREFIX", "RunControls"]

#: The prefix of the best parameters' names among a checkpoint's arrays.
BEST_PREFIX = "best."


@dataclass
class RunControls:
    """The schedule, early stopping and clipping of one run, and their state."""

    schedule: Schedule | None = None
    stopping: EarlyStopping | None = None
    clip_norm: float | None = None
    validation_rows: int | None = None
    base_lr: float | None = None
    schedule_state: dict[str, Any] = field(default_factory=dict)
    stopping_state: dict[str, Any] = field(default_factory=dict)
    best_params: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        optimizer: Any,
        schedule: object,
        early_stopping: object,
        clip_norm: object,
        validation_rows: int | None,
    ) -> RunControls:
        """Check the arguments of ``train`` that these controls take; return them."""
        if schedule is not None and not isinstance(schedule, Schedule):
            fail(
                "train",
                "schedule",
                "a schedule of xplayers.schedules (StepDecay, CosineDecay, ReduceOnPlateau)",
                describe(schedule),
            )
        if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
            fail(
                "train",
                "early_stopping",
                "an xplayers.monitoring.EarlyStopping",
                describe(early_stopping),
            )
        clip = None if clip_norm is None else number_in("train", "clip_norm", clip_norm, low=0.0)
        base = None
        if schedule is not None:
            lr = getattr(optimizer, "lr", None)
            if not isinstance(lr, float):
                fail(
                    "train",
                    "schedule",
                    "an optimizer with a float learning rate lr",
                    describe(optimizer),
                )
            base = lr
        for watcher, arg in ((schedule, "schedule"), (early_stopping, "early_stopping")):
            monitor = getattr(watcher, "monitor", "")
            if monitor.startswith("val_") and validation_rows is None:
                fail(
                    "train",
                    arg,
                    f"validation data for monitor={monitor!r} "
                    "(validation_data= or validation_split=)",
                    "none",
                    "Or monitor 'train_loss' or 'train_acc'",
                )
        controls = cls(schedule, early_stopping, clip, validation_rows, base)
        controls.schedule_state = schedule.initial_state() if schedule is not None else {}
        controls.stopping_state = (
            early_stopping.initial_state() if early_stopping is not None else {}
        )
        return controls

    def stepper(self, optimizer: Any) -> Any:
        """What ``network.train_step`` gets: the optimizer, or it behind gradient clipping."""
        return optimizer if self.clip_norm is None else ClipGradNorm(optimizer, self.clip_norm)

    def set_rate(self, optimizer: Any, iteration: int, per_epoch: int, total: int) -> None:
        """Set ``optimizer.lr`` for the update that follows `iteration` updates."""
        if self.schedule is not None and self.base_lr is not None:
            optimizer.lr = self.schedule.rate(
                self.base_lr, iteration, per_epoch, total, self.schedule_state
            )

    def reset_rate(self, optimizer: Any) -> None:
        """Give the optimizer its own learning rate back."""
        if self.base_lr is not None:
            optimizer.lr = self.base_lr

    @property
    def stopped(self) -> bool:
        """Whether early stopping has ended the run."""
        return bool(self.stopping_state.get("stopped", False))

    @property
    def best_iteration(self) -> int | None:
        """The iteration of the best evaluation so far (None without early stopping)."""
        return self.stopping_state.get("best_iteration")

    def observe(self, metrics: Mapping[str, Any], iteration: int, network: Any) -> None:
        """Take the metrics of the evaluation after `iteration` updates."""
        if self.schedule is not None:
            self.schedule_state = self.schedule.observe(self.schedule_state, metrics)
        if self.stopping is not None:
            value = metrics[self.stopping.monitor]
            self.stopping_state, better = self.stopping.observe(
                self.stopping_state, value, iteration
            )
            if better and self.stopping.restore_best:
                self.best_params = {
                    k: np.array(to_numpy(v), copy=True) for k, v in network.params.items()
                }

    def finish(self, network: Any, optimizer: Any) -> None:
        """At the end of the run: the optimizer's own rate, the best parameters back."""
        self.reset_rate(optimizer)
        if self.stopping is not None and self.stopping.restore_best and self.best_params:
            network.load_params(self.best_params)

    def config(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        return {
            "schedule": None if self.schedule is None else self.schedule.config(),
            "early_stopping": None if self.stopping is None else self.stopping.config(),
            "clip_norm": self.clip_norm,
            "validation_rows": self.validation_rows,
        }

    def saved(self) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]]]:
        """The JSON state for a checkpoint and the arrays (the best parameters) beside it."""
        state = {
            **self.config(),
            "schedule_state": self.schedule_state,
            "early_stopping_state": self.stopping_state,
        }
        arrays = {BEST_PREFIX + k: v for k, v in self.best_params.items()}
        return state, arrays

    def restore(
        self, saved: object, arrays: Mapping[str, Any], network: Any, name: str
    ) -> RunControls:
        """Check a saved state against this run; return the controls it restores.

        Other settings than this run's raise ``LayerInputError``; values the
        run could not have written raise ``ModelFileError`` naming the file.

        Nothing changes here: the caller applies the result (:meth:`adopt`)
        once every other part of the checkpoint is checked too.
        """
        if saved is None:  # a checkpoint of a run without any of these controls
            saved = {
                **RunControls().config(),
                "schedule_state": {},
                "early_stopping_state": {},
            }
        mine = self.config()
        if not isinstance(saved, Mapping) or {k: saved.get(k) for k in mine} != mine:
            got = {k: saved.get(k) for k in mine} if isinstance(saved, Mapping) else saved
            fail(
                "train",
                "resume",
                f"a checkpoint of a run with the same schedule, early stopping, clipping and "
                f"validation data ({mine})"[:400],
                f"{name}, written with {got!r}"[:400],
            )
        restored = RunControls(**{**vars(self), "best_params": {}})
        if self.schedule is not None:
            restored.schedule_state = self.schedule.check_state(
                "train", saved.get("schedule_state"), name
            )
        if self.stopping is not None:
            restored.stopping_state = self.stopping.check_state(
                "train", saved.get("early_stopping_state"), name
            )
        restored.best_params = _best_params(arrays, network, name)
        keep = self.stopping is not None and self.stopping.restore_best
        if keep and (restored.best_iteration is None) != (not restored.best_params):
            raise ModelFileError(
                f"checkpoint {name}: the best parameters do not match the best evaluation "
                f"(best_iteration {restored.best_iteration}, {len(restored.best_params)} "
                "best arrays)"
            )
        return restored

    def adopt(self, other: RunControls) -> None:
        """Take the state of `other` (from :meth:`restore`)."""
        self.schedule_state = other.schedule_state
        self.stopping_state = other.stopping_state
        self.best_params = other.best_params


def _best_params(
    arrays: Mapping[str, Any], network: Any, name: str
) -> dict[str, np.ndarray[Any, Any]]:
    """The saved best parameters, checked against the network's (all or none)."""
    best = {k.removeprefix(BEST_PREFIX): v for k, v in arrays.items() if k.startswith(BEST_PREFIX)}
    if not best:
        return {}
    params = network.params
    if set(best) != set(params):
        raise ModelFileError(
            f"checkpoint {name}: best parameters {sorted(best)} are not the network's "
            f"{sorted(params)}"[:300]
        )
    out = {}
    for key, value in best.items():
        host = np.asarray(value)
        p = params[key]
        if host.shape != tuple(p.shape) or host.dtype.name != dtype_name(p.dtype):
            raise ModelFileError(
                f"checkpoint {name}: best parameter {key!r} is {host.dtype} {host.shape}, "
                f"not of the shape and dtype of {describe(p)}"
            )
        if not np.isfinite(host).all():
            raise ModelFileError(f"checkpoint {name}: best parameter {key!r} is not finite")
        out[key] = np.array(host, copy=True)
    return out
