"""The book's ``Trainer`` (``common/trainer.py``, chapters 6 to 8), on any backend.

:class:`Trainer` runs the loop of the book's class with the same arguments,
attributes and printed lines, so the chapter 6-8 scripts run unchanged with
their ``common/`` modules pointed at xplayers::

    trainer = Trainer(network, x_train, t_train, x_test, t_test,
                      epochs=20, mini_batch_size=100,
                      optimizer='Adam', optimizer_param={'lr': 0.001},
                      evaluate_sample_num_per_epoch=1000)
    trainer.train()
    trainer.train_acc_list, trainer.test_acc_list

Each step samples a mini-batch *with replacement* as the book does
(``np.random.choice(train_size, batch_size)``), takes the gradient, updates
the parameters, then computes the batch's loss again after the update (the
loss the book records). An epoch is ``max(train_size / mini_batch_size, 1)``
steps, and the accuracies are measured after the first step of each epoch,
as in the book.

Seeding: by default the batches come from NumPy's global generator, as in
the book, so ``np.random.seed(s)`` before :meth:`Trainer.train` reproduces
the book's run under that seed. With ``seed=s`` the trainer draws from its
own ``np.random.RandomState(s)`` instead, which gives the same batches as
``np.random.seed(s)`` without touching the global state.

The data may be host (NumPy) arrays, whose mini-batches the network copies
to its backend as it uses them, or arrays of the current backend, indexed
there with ``take``. Accuracies are computed in chunks of
:data:`EVAL_CHUNK` samples and combined from exact counts, so they equal
the book's single pass over the whole set while bounding the memory used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import array_api_compat
import numpy as np

from xplayers._validation import describe, fail, positive_int, seed_or_none
from xplayers.backend import namespace, to_numpy
from xplayers.optim import get_optimizer

__all__ = ["EVAL_CHUNK", "Trainer"]

#: Samples per chunk when the trainer measures an accuracy.
EVAL_CHUNK = 1000


class Trainer:
    """Train a network the way the book's ``common/trainer.py`` does.

    Parameters
    ----------
    network
        A network with ``params``, ``gradient(x, t)``, ``loss(x, t)`` and
        ``accuracy(x, t)`` (the book's and xplayers' networks).
    x_train, t_train, x_test, t_test : array
        Training and test inputs and labels, NumPy arrays or arrays of the
        current backend.
    epochs : int, default 20
    mini_batch_size : int, default 100
    optimizer : str, default "SGD"
        ``'sgd'``, ``'momentum'``, ``'nesterov'``, ``'adagrad'``,
        ``'rmsprop'`` or ``'adam'``, in any case (the book writes ``'Adam'``).
    optimizer_param : dict, default ``{'lr': 0.01}``
        Hyper-parameters of that optimizer.
    evaluate_sample_num_per_epoch : int, optional
        Measure the per-epoch accuracies on the first this many samples of
        each set only (the final test accuracy uses the whole test set).
    verbose : bool, default True
        Print ``train loss:...`` after each step and a line per epoch, as
        the book does.
    seed : int, optional
        Draw the batches from ``np.random.RandomState(seed)``; by default
        from NumPy's global generator, as the book.

    Attributes
    ----------
    train_loss_list : list of float
        The loss of each step's batch, measured after the update.
    train_acc_list, test_acc_list : list of float
        The accuracies measured once per epoch.
    optimizer
        The :mod:`xplayers.optim` optimizer built from the name.
    current_iter, current_epoch, max_iter : int
    iter_per_epoch : float

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.datasets import load_digits
    >>> from xplayers.network import MultiLayerNet
    >>> from xplayers.trainer import Trainer
    >>> x, t = load_digits()
    >>> net = MultiLayerNet(64, [30], 10, seed=0)
    >>> trainer = Trainer(net, x[:1500], t[:1500], x[1500:], t[1500:], epochs=3,
    ...                   optimizer="Adam", optimizer_param={"lr": 0.01}, verbose=False, seed=0)
    >>> trainer.train()
    >>> len(trainer.train_acc_list), trainer.test_acc_list[-1] > 0.8
    (3, True)
    """

    def __init__(
        self,
        network: Any,
        x_train: Any,
        t_train: Any,
        x_test: Any,
        t_test: Any,
        epochs: int = 20,
        mini_batch_size: int = 100,
        optimizer: str = "SGD",
        optimizer_param: Mapping[str, float] | None = None,
        evaluate_sample_num_per_epoch: int | None = None,
        verbose: bool = True,
        *,
        seed: int | None = None,
    ) -> None:
        for name in ("gradient", "loss", "accuracy"):
            if not callable(getattr(network, name, None)):
                fail(
                    "Trainer",
                    "network",
                    "a network with params, gradient, loss and accuracy",
                    describe(network),
                )
        _pair("Trainer", "x_train, t_train", x_train, t_train)
        _pair("Trainer", "x_test, t_test", x_test, t_test)
        self.network = network
        self.verbose = bool(verbose)
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.epochs = positive_int("Trainer", "epochs", epochs)
        self.batch_size = positive_int("Trainer", "mini_batch_size", mini_batch_size)
        self.evaluate_sample_num_per_epoch = (
            None
            if evaluate_sample_num_per_epoch is None
            else positive_int(
                "Trainer", "evaluate_sample_num_per_epoch", evaluate_sample_num_per_epoch
            )
        )
        if not isinstance(optimizer, str):
            fail("Trainer", "optimizer", "an optimizer name such as 'Adam'", repr(optimizer))
        params = {"lr": 0.01} if optimizer_param is None else dict(optimizer_param)
        self.optimizer = get_optimizer(optimizer, **params)
        seed = seed_or_none("Trainer", "seed", seed)
        self._random: Any = np.random if seed is None else np.random.RandomState(seed)

        self.train_size = int(x_train.shape[0])
        self.iter_per_epoch = max(self.train_size / self.batch_size, 1)
        self.max_iter = int(self.epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0

        self._losses: list[float] = []
        self._pending: list[Any] = []  # losses not read yet: read together, in one transfer
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []

    @property
    def train_loss_list(self) -> list[float]:
        """The loss of each step, as Python floats (read from the device when asked)."""
        self._read_losses()
        return self._losses

    def _read_losses(self) -> None:
        if self._pending:
            xp = namespace(self._pending[0])
            values = to_numpy(xp.stack([xp.asarray(v) for v in self._pending]))
            self._losses.extend(float(v) for v in values.tolist())
            self._pending.clear()

    def train_step(self) -> None:
        """One update on a random mini-batch; measure the accuracies when an epoch begins."""
        batch_mask = self._random.choice(self.train_size, self.batch_size)
        x_batch = _take(self.x_train, batch_mask)
        t_batch = _take(self.t_train, batch_mask)

        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)

        loss = self.network.loss(x_batch, t_batch)
        if self.verbose:
            self._read_losses()
            self._losses.append(float(loss))
            print("train loss:" + str(self._losses[-1]))
        else:
            self._pending.append(loss)

        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1
            n = self.evaluate_sample_num_per_epoch
            train_acc = self._accuracy(self.x_train, self.t_train, n)
            test_acc = self._accuracy(self.x_test, self.t_test, n)
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            self._read_losses()
            if self.verbose:
                print(
                    "=== epoch:"
                    + str(self.current_epoch)
                    + ", train acc:"
                    + str(train_acc)
                    + ", test acc:"
                    + str(test_acc)
                    + " ==="
                )
        self.current_iter += 1

    def train(self) -> None:
        """Run the remaining steps of the ``max_iter``, then report the final test accuracy."""
        while self.current_iter < self.max_iter:
            self.train_step()
        test_acc = self._accuracy(self.x_test, self.t_test, None)
        self._read_losses()
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))

    def _accuracy(self, x: Any, t: Any, limit: int | None) -> float:
        """The accuracy on the first `limit` samples (all: None), from exact per-chunk counts."""
        n = int(x.shape[0]) if limit is None else min(limit, int(x.shape[0]))
        correct = 0
        for start in range(0, n, EVAL_CHUNK):
            stop = min(start + EVAL_CHUNK, n)
            acc = self.network.accuracy(x[start:stop, ...], t[start:stop, ...])
            correct += round(float(acc) * (stop - start))
        return correct / float(n)


def _pair(where: str, arg: str, x: object, t: object) -> None:
    shapes = [getattr(a, "shape", None) for a in (x, t)]
    if any(s is None or len(s) == 0 for s in shapes) or shapes[0][0] != shapes[1][0]:  # type: ignore[index]
        fail(
            where,
            arg,
            "inputs and labels with the same number of samples along axis 0",
            f"{describe(x)} and {describe(t)}",
        )
    if shapes[0][0] == 0:  # type: ignore[index]
        fail(where, arg, "at least one sample", f"{describe(x)} and {describe(t)}")


def _take(a: Any, rows: np.ndarray[Any, Any]) -> Any:
    """Rows `rows` of `a`: NumPy indexing on the host, ``take`` on a backend's arrays."""
    if isinstance(a, np.ndarray):
        return a[rows]
    xp = namespace(a)
    return xp.take(a, xp.asarray(rows, device=array_api_compat.device(a)), axis=0)
