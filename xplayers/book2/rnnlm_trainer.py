"""Volume 2's ``RnnlmTrainer`` (``common/trainer.py``): truncated BPTT over one long corpus.

``fit(xs, ts, max_epoch, batch_size, time_size, max_grad, eval_interval)``
reads the corpus as ``batch_size`` rows starting ``len(xs) // batch_size``
words apart, ``time_size`` words at a time, updates the model after each
batch and prints the book's line
``| epoch %d |  iter %d / %d | time %d[s] | perplexity %.2f`` every
`eval_interval` iterations. Differences from the book, each for speed on
an accelerator and none changing the numbers:

- the corpus goes to the model's backend once per ``fit``, and each batch
  is gathered there with one index array (the book fills host arrays
  element by element);
- shared weights are found once per model
  (:class:`~xplayers.book2._training.SharedWeights`), not searched for at
  every step, and an update is :func:`~xplayers.book2._training.apply_gradients`;
- :func:`~xplayers.book2.clip_grads` reads nothing back, and the loss is
  summed on the device and read only when a progress line is printed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import array_api_compat
import numpy as np

from xplayers._files import atomic_writer
from xplayers._validation import describe, fail, positive_int, positive_number
from xplayers.backend import get_backend, namespace, to_numpy
from xplayers.book2._cells import sync_host
from xplayers.book2._compiled import CompiledStep, StepKey, compiled_step, run_compiled
from xplayers.book2._training import SharedWeights, apply_gradients
from xplayers.errors import MissingDependencyError

__all__ = ["RnnlmTrainer"]

#: ``callback(iteration, max_iters, loss)`` after every update; `loss` an array (read lazily).
StepCallback = Callable[[int, int, Any], None]


def _host_ids(where: str, arg: str, ids: Any) -> np.ndarray[Any, Any]:
    a = np.asarray(to_numpy(ids) if hasattr(ids, "shape") else ids)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        fail(where, arg, "a 1-D integer array of word ids", describe(a))
    return a


class RnnlmTrainer:
    """Train a language model with truncated backpropagation through time, as the book does.

    At the end of ``fit`` the trained weights are written back into the
    NumPy arrays a model file built them from (:func:`~xplayers.book2.sync_host`).

    Parameters
    ----------
    model
        A model with ``forward(xs, ts)``, ``backward()``, ``params`` and
        ``grads`` (:mod:`xplayers.book2.rnnlm`, or the book's own).
    optimizer
        An optimizer with ``update(params, grads)`` (:mod:`xplayers.book2`).

    Attributes
    ----------
    ppl_list : list of float
        The perplexity of each progress line of the last ``fit``.
    current_epoch : int
        Epochs trained, over all calls of ``fit``.
    time_idx : int
        Where the next batch starts, in words from each row's offset.
    """

    def __init__(self, model: Any, optimizer: Any) -> None:
        self.model = model
        self.optimizer = optimizer
        self.time_idx: int | None = None
        self.ppl_list: list[float] | None = None
        self.eval_interval: int | None = None
        self.current_epoch = 0
        self._sharing: SharedWeights | None = None
        self._steps: dict[StepKey, CompiledStep | None] = {}
        self._steps_of: int | None = None

    @property
    def sharing(self) -> SharedWeights:
        """The model's shared weights: its own ``sharing``, else found once from ``params``."""
        if self._sharing is None:
            own = getattr(self.model, "sharing", None)
            mine = own if isinstance(own, SharedWeights) else None
            self._sharing = mine or SharedWeights(self.model.params, self.model)
        return self._sharing

    def get_batch(self, x: Any, t: Any, batch_size: int, time_size: int) -> tuple[Any, Any]:
        """The next ``(batch_x, batch_t)``, each ``(batch_size, time_size)``, on `x`'s backend.

        Row ``i`` reads ``x[(i * jump + time_idx + k) % len(x)]`` for
        ``k < time_size`` with ``jump = len(x) // batch_size``, the book's
        batches; ``time_idx`` then moves on by `time_size`. Both are
        gathered with one index array.
        """
        if self.time_idx is None:
            self.time_idx = 0
        size = int(x.shape[0])
        jump = size // batch_size
        pos = (np.arange(batch_size)[:, None] * jump + self.time_idx + np.arange(time_size)) % size
        self.time_idx += time_size
        xp = namespace(x)
        idx = xp.asarray(pos.reshape(-1), device=_device(x))  # one index array for both
        shape = (batch_size, time_size)
        return (
            xp.reshape(xp.take(x, idx, axis=0), shape),
            xp.reshape(xp.take(t, idx, axis=0), shape),
        )

    def fit(
        self,
        xs: Any,
        ts: Any,
        max_epoch: int = 10,
        batch_size: int = 20,
        time_size: int = 35,
        max_grad: float | None = None,
        eval_interval: int | None = 20,
        *,
        callback: StepCallback | None = None,
    ) -> None:
        """Train for `max_epoch` passes of ``len(xs) // (batch_size * time_size)`` updates.

        `xs` are the inputs and `ts` the targets (the corpus shifted by
        one), 1-D integer ids; `max_grad` clips the global gradient norm;
        every `eval_interval` iterations (None: never) the mean perplexity
        since the last line is printed and kept in ``ppl_list``. `callback`
        is called after every update with the iteration (from 1), the
        iterations per epoch and the loss array.
        """
        where = "RnnlmTrainer.fit"
        max_epoch = positive_int(where, "max_epoch", max_epoch)
        batch_size = positive_int(where, "batch_size", batch_size)
        time_size = positive_int(where, "time_size", time_size)
        if max_grad is not None:
            max_grad = positive_number(where, "max_grad", max_grad)
        if eval_interval is not None:
            eval_interval = positive_int(where, "eval_interval", eval_interval)
        host_x, host_t = _host_ids(where, "xs", xs), _host_ids(where, "ts", ts)
        if len(host_x) != len(host_t):
            fail(where, "ts", f"{len(host_x)} ids, one per input", f"{len(host_t)} ids")
        max_iters = len(host_x) // (batch_size * time_size)
        if max_iters < 1:
            fail(
                where,
                "xs",
                f"at least batch_size * time_size = {batch_size * time_size} ids",
                f"{len(host_x)} ids",
            )
        x_dev, t_dev = self._on_model_backend(host_x), self._on_model_backend(host_t)
        self.time_idx = 0
        self.ppl_list = []
        self.eval_interval = eval_interval
        total_loss: Any = 0.0
        loss_count = 0
        start_time = time.time()
        try:
            for _ in range(max_epoch):
                for iters in range(max_iters):
                    batch_x, batch_t = self.get_batch(x_dev, t_dev, batch_size, time_size)
                    loss = self.train_step(batch_x, batch_t, max_grad)
                    total_loss = total_loss + loss
                    loss_count += 1
                    if callback is not None:
                        callback(iters + 1, max_iters, loss)
                    if eval_interval is not None and iters % eval_interval == 0:
                        ppl = math.exp(float(to_numpy(total_loss)) / loss_count)
                        elapsed_time = time.time() - start_time
                        print(
                            f"| epoch {self.current_epoch + 1} |  iter {iters + 1} / {max_iters} "
                            f"| time {int(elapsed_time)}[s] | perplexity {ppl:.2f}"
                        )
                        self.ppl_list.append(float(ppl))
                        total_loss, loss_count = 0.0, 0
                self.current_epoch += 1
        finally:
            sync_host(self.model)  # the host arrays a model file built (xplayers.book2._cells)

    def train_step(self, batch_x: Any, batch_t: Any, max_grad: float | None = None) -> Any:
        """One update, the body of ``fit``'s loop; return the loss (an array, not read).

        ``forward``, ``backward``, the shared weights' gradients summed
        (:attr:`sharing`), clipping to `max_grad`, the optimizer's
        ``update``, and the new weights given back to the model's layers.
        On JAX the whole step is one compiled function (:meth:`compiled_step`).
        """
        model = self.model
        if self._steps_of != id(model):
            self._steps, self._steps_of = {}, id(model)
        loss = run_compiled(
            self._steps, model, self.sharing, self.optimizer, max_grad, batch_x, batch_t
        )
        if loss is not NotImplemented:
            return loss
        loss = model.forward(batch_x, batch_t)
        model.backward()
        apply_gradients(model, self.optimizer, self.sharing, max_grad)
        return loss

    def compiled_step(self, max_grad: float | None = None) -> CompiledStep | None:
        """The compiled step :meth:`train_step` runs, or None where it runs the layers.

        On JAX, for the models and optimizers of :mod:`xplayers.book2`, the
        whole step is one ``jax.jit`` function
        (:mod:`xplayers.book2._compiled`); elsewhere the layers run one
        operation at a time.
        """
        if self._steps_of != id(self.model):
            self._steps, self._steps_of = {}, id(self.model)
        return compiled_step(self._steps, self.model, self.sharing, self.optimizer, max_grad)

    def _on_model_backend(self, ids: np.ndarray[Any, Any]) -> Any:
        params = self.model.params
        if not params:
            return get_backend().asarray(ids.astype(np.int64))
        ref = params[0]
        xp = namespace(ref)
        return xp.asarray(ids.astype(np.int64), device=_device(ref))

    def plot(
        self,
        ylim: tuple[float, float] | None = None,
        *,
        file_name: str | os.PathLike[str] | None = None,
    ) -> Path | None:
        """Plot ``ppl_list``: shown with pyplot as the book does, or saved to `file_name` (PNG)."""
        ppl = list(self.ppl_list or [])
        label = f"iterations (x{self.eval_interval})"
        if file_name is None:
            import matplotlib.pyplot as plt

            if ylim is not None:
                plt.ylim(*ylim)
            plt.plot(np.arange(len(ppl)), ppl, label="train")
            plt.xlabel(label)
            plt.ylabel("perplexity")
            plt.show()
            return None
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise MissingDependencyError(
                f"RnnlmTrainer.plot needs matplotlib, which is not installed ({exc})"
            ) from exc
        fig = Figure(figsize=(6.0, 4.0), layout="constrained")
        ax = fig.subplots()
        ax.plot(np.arange(len(ppl)), ppl, label="train")
        ax.set(xlabel=label, ylabel="perplexity")
        if ylim is not None:
            ax.set_ylim(*ylim)
        target = Path(file_name)
        with atomic_writer(target) as f:
            fig.savefig(f, format="png", dpi=100)
        return target


def _device(x: Any) -> Any:
    return array_api_compat.device(x)
