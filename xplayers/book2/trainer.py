"""Volume 2's ``common/trainer.py`` ``Trainer``: mini-batch training of a list-style model.

``Trainer(model, optimizer).fit(x, t, max_epoch, batch_size, max_grad,
eval_interval)`` runs the book's loop: each epoch a new permutation of the
samples, ``max_iters = len(x) // batch_size`` batches of it, and for each
``model.forward(batch_x, batch_t)``, ``model.backward()``, shared weights
summed once, optional :func:`~xplayers.book2.clip_grads` and
``optimizer.update`` (:func:`~xplayers.book2._training.apply_gradients`). Every
`eval_interval` iterations the mean loss since the last report is printed
in the book's format and appended to ``loss_list``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from xplayers._validation import describe, fail, positive_int, positive_number
from xplayers.backend import to_numpy
from xplayers.book2._cells import sync_host
from xplayers.book2._compiled import CompiledStep, StepKey, run_compiled
from xplayers.book2._training import (
    SharedWeights,
    apply_gradients,
    gather,
    index_like,
    on_data_backend,
)
from xplayers.errors import MissingDependencyError

__all__ = ["Trainer"]


class Trainer:
    """The book's ``Trainer``: ``fit``, ``plot``, ``loss_list``, ``current_epoch``.

    Parameters
    ----------
    model : object
        ``forward(x, t)`` returning the loss, ``backward()``, and ``params``
        and ``grads`` lists (the book's models, those of :mod:`xplayers.book2`).
    optimizer : object
        ``update(params, grads)`` (the optimizers of :mod:`xplayers.book2`).
    seed : int, numpy.random.Generator or None, keyword-only
        Where the epochs' permutations come from. None (the default): the
        global ``numpy.random``, as the book's ``numpy.random.permutation``,
        so a script's ``np.random.seed`` repeats its runs. Otherwise
        ``numpy.random.default_rng(seed)``, the trainer's own.

    Notes
    -----
    Host data (NumPy arrays, lists) is moved next to the model's weights
    once per :meth:`fit`; each batch is one ``take`` of the data with an
    index array on its device, the order of an epoch being moved there
    once. The order is the book's: each epoch permutes the previous
    epoch's order (the book's ``x = x[idx]``), so with the same global
    seed the batches are the book's. The losses are added up on the device; they are read on the
    host every `eval_interval` iterations only, where they are printed.
    Shared weights are found once per model (not searched at every step).
    On JAX each step is one compiled function for the models and
    optimizers of :mod:`xplayers.book2` (:mod:`xplayers.book2._compiled`;
    word2vec's negative sampling draws on the host and runs the layers).
    At the end of ``fit`` the trained weights are written back into the
    NumPy arrays a model file built them from (:func:`~xplayers.book2.sync_host`),
    so the book's ``model.word_vecs`` holds them on every backend.
    """

    def __init__(self, model: Any, optimizer: Any, *, seed: Any = None) -> None:
        for name in ("forward", "backward", "params", "grads"):
            if not hasattr(model, name):
                fail("Trainer", "model", f"a model with '{name}'", type(model).__name__)
        if not hasattr(optimizer, "update"):
            fail("Trainer", "optimizer", "an optimizer with 'update'", type(optimizer).__name__)
        self.model = model
        self.optimizer = optimizer
        self.loss_list: list[float] = []
        self.eval_interval: int | None = None
        self.current_epoch = 0
        self.rng: Any = np.random if seed is None else np.random.default_rng(seed)
        self._shared: SharedWeights | None = None
        self._shared_of: int | None = None
        self._steps: dict[StepKey, CompiledStep | None] = {}

    def shared_weights(self) -> SharedWeights:
        """The model's ties (:class:`~xplayers.book2._training.SharedWeights`), found once."""
        params = self.model.params
        if self._shared is None or self._shared_of != id(params):
            self._shared = SharedWeights(params, self.model)
            self._shared_of = id(params)
            self._steps = {}
        self._shared.check("Trainer.fit", params)
        return self._shared

    def fit(
        self,
        x: Any,
        t: Any,
        max_epoch: int = 10,
        batch_size: int = 32,
        max_grad: float | None = None,
        eval_interval: int | None = 20,
    ) -> None:
        """Train for `max_epoch` epochs of ``len(x) // batch_size`` batches.

        Parameters
        ----------
        x, t : arrays with one row per sample
            Inputs and targets, of the same length.
        max_epoch : int
        batch_size : int
            At most ``len(x)``; the last ``len(x) % batch_size`` samples
            of each permutation are left out, as in the book.
        max_grad : float or None
            Clip the gradients' global norm to it (:func:`~xplayers.book2.clip_grads`).
        eval_interval : int or None
            Print and record the mean loss every that many iterations
            (the first iteration of each epoch included); None: never.
        """
        where = "Trainer.fit"
        max_epoch = positive_int(where, "max_epoch", max_epoch)
        batch_size = positive_int(where, "batch_size", batch_size)
        if max_grad is not None:
            max_grad = positive_number(where, "max_grad", max_grad)
        if eval_interval is not None:
            eval_interval = positive_int(where, "eval_interval", eval_interval)
        ref = self.model.params[0] if self.model.params else None
        x = on_data_backend(where, "x", x, ref)
        t = on_data_backend(where, "t", t, ref)
        data_size = int(x.shape[0])
        if int(t.shape[0]) != data_size:
            fail(where, "t", f"{data_size} rows, one per row of x", describe(t))
        if data_size < batch_size:
            fail(where, "x", f"at least batch_size = {batch_size} rows", describe(x))
        max_iters = data_size // batch_size
        self.eval_interval = eval_interval
        shared = self.shared_weights()
        model, optimizer = self.model, self.optimizer
        total_loss: Any = 0.0
        loss_count = 0
        start_time = time.time()
        host_order = np.arange(data_size)
        try:
            for _ in range(max_epoch):
                # the book shuffles the shuffled data again (x = x[idx]) each epoch
                host_order = host_order[self.rng.permutation(data_size)]
                order = index_like(host_order, x)
                for iters in range(max_iters):
                    index = order[iters * batch_size : (iters + 1) * batch_size]
                    batch_x, batch_t = gather(x, index), gather(t, index)
                    loss = run_compiled(
                        self._steps, model, shared, optimizer, max_grad, batch_x, batch_t
                    )
                    if loss is NotImplemented:
                        loss = model.forward(batch_x, batch_t)
                        model.backward()
                        apply_gradients(model, optimizer, shared, max_grad)
                    total_loss = total_loss + loss
                    loss_count += 1
                    if eval_interval is not None and iters % eval_interval == 0:
                        avg_loss = float(to_numpy(total_loss)) / loss_count
                        elapsed_time = time.time() - start_time
                        print(
                            f"| epoch {self.current_epoch + 1} |  iter {iters + 1} / {max_iters} "
                            f"| time {int(elapsed_time)}[s] | loss {avg_loss:.2f}"
                        )
                        sys.stdout.flush()
                        self.loss_list.append(avg_loss)
                        total_loss, loss_count = 0.0, 0
                self.current_epoch += 1
        finally:
            sync_host(model)  # the host arrays a model file built (module doc)

    def plot(self, ylim: tuple[float, float] | None = None) -> None:
        """Plot ``loss_list`` with matplotlib's pyplot and show it, as the book does."""
        plt = _pyplot()
        x = np.arange(len(self.loss_list))
        if ylim is not None:
            plt.ylim(*ylim)
        plt.plot(x, self.loss_list, label="train")
        plt.xlabel("iterations (x" + str(self.eval_interval) + ")")
        plt.ylabel("loss")
        plt.show()


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            f"Trainer.plot needs matplotlib, which is not installed ({exc}); "
            "install it with: pip install matplotlib"
        ) from exc
    return plt
