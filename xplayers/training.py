"""The training loop: mini-batch updates, evaluation, checkpoints and a learning curve.

:func:`train` runs the book's loop (chapter 5, ``train_neuralnet.py``) for any
network with ``train_step``, ``loss`` and ``accuracy``, on the current
backend. Data stay on the host as NumPy arrays; each mini-batch is moved to
the backend as it is used (:class:`xplayers.datasets.BatchLoader`), and the
full training and test sets are evaluated in chunks, so memory on the device
is bounded by the batch and chunk sizes, not by the data set.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO, cast

import numpy as np
import numpy.typing as npt

from xplayers import metrics
from xplayers._controls import BEST_PREFIX, RunControls
from xplayers._files import writable_file
from xplayers._validation import describe, dtype_name, fail, number_in, positive_int
from xplayers.backend import asarray, is_lazy, materialize_all, namespace, reading_waits, to_numpy
from xplayers.datasets import BatchLoader, streaming
from xplayers.errors import (
    LayerInputError,
    MissingDependencyError,
    ModelFileError,
    ModelFileWarning,
    TrainingError,
)
from xplayers.functional import SEED_WORDS
from xplayers.io import atomic_writer, read_checkpoint, save, save_checkpoint
from xplayers.monitoring import EarlyStopping
from xplayers.parallel import full_batch_step, to_chunked
from xplayers.schedules import Schedule

__all__ = [
    "History",
    "MissingDependencyError",
    "ProgressBar",
    "TrainingError",
    "check_chance",
    "data_fingerprint",
    "evaluate",
    "show_progress",
    "train",
]

log = logging.getLogger("xplayers")

_PLOT_INSTALL = 'pip install "xplayers[plot]" (from a source checkout: pip install ".[plot]")'


class Trainable(Protocol):
    """What :func:`train` needs from a network (``TwoLayerNet``, ``MultiLayerNet``, ...)."""

    @property
    def params(self) -> Mapping[str, Any]: ...

    def config(self) -> dict[str, Any]: ...

    def loss(self, x: Any, t: Any) -> Any: ...

    def accuracy(self, x: Any, t: Any) -> float: ...

    def train_step(self, x: Any, t: Any, optimizer: Any) -> Any: ...

    def load_params(self, params: Mapping[str, Any]) -> None: ...

    def predict(self, x: Any) -> Any: ...


# --------------------------------------------------------------------------- history


@dataclass
class History:
    """The learning curve: one entry per evaluation.

    Attributes
    ----------
    epoch : list of float
        Epochs completed at the evaluation (``iteration / iterations_per_epoch``;
        a whole number at the end of each epoch).
    iteration : list of int
        Updates made so far.
    train_loss : list of float
        Mean training loss (per sample) over the updates since the previous
        evaluation, as computed during those updates.
    train_acc : list of float
        Accuracy on the whole training set.
    test_acc : list of float or None
        Accuracy on the whole test set; None when no test set was given.
    seconds : list of float
        Wall-clock seconds since training started, evaluation included.
    val_loss, val_acc : list of float or None
        Mean loss (per sample) and accuracy on the validation data; None
        without validation data.
    lr : list of float or None
        The learning rate of the last update before the evaluation (None
        for an optimizer without a float ``lr``).
    best_iteration : int or None
        With early stopping: the iteration of the best evaluation (whose
        parameters ``restore_best`` puts back).
    stopped_iteration : int or None
        The iteration at which early stopping ended the run; None when it
        ran to the end.
    warnings : list of str
        What :func:`train` found wrong with the run without stopping it:
        the final accuracy no better than chance (:func:`check_chance`).
        Empty for a healthy run; also written to the ``xplayers`` logger.
        Not part of :meth:`to_dict` (the learning curve files store).

    Examples
    --------
    >>> from xplayers.training import History
    >>> h = History(epoch=[1.0], iteration=[15], train_loss=[0.5], train_acc=[0.9],
    ...             test_acc=[None], seconds=[0.1])
    >>> len(h), h.to_dict()["test_acc"]
    (1, [None])
    >>> History.from_dict(h.to_dict()) == h
    True
    """

    epoch: list[float] = field(default_factory=list)
    iteration: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_acc: list[float | None] = field(default_factory=list)
    lr: list[float | None] = field(default_factory=list)
    best_iteration: int | None = None
    stopped_iteration: int | None = None

    def __post_init__(self) -> None:
        # Not a field: the fields are the per-evaluation curve that files store and check.
        self.warnings: list[str] = []

    def __len__(self) -> int:
        return len(self.iteration)

    def to_dict(self) -> dict[str, Any]:
        """Return the history as a dict of lists of Python numbers (JSON-serialisable)."""
        return {
            f.name: getattr(self, f.name) if f.name in _SCALARS else list(getattr(self, f.name))
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Rebuild a history from :meth:`to_dict`'s output (for example a checkpoint's metadata).

        The validation and learning-rate entries, which histories written
        before them lack, are then None.
        """
        names = [f.name for f in fields(cls) if f.name not in _OPTIONAL]
        missing = [n for n in names if n not in data]
        if missing:
            fail("History.from_dict", "data", f"the keys {names}", f"no {missing}")
        lists: dict[str, Any] = {n: list(data[n]) for n in names}
        n = len(lists["iteration"])
        for name in _OPTIONAL - _SCALARS:
            lists[name] = list(data[name]) if name in data else [None] * n
        scalars: dict[str, Any] = {name: data.get(name) for name in _SCALARS}
        return cls(**lists, **scalars)

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """Save the loss and accuracy curves as a PNG image.

        Uses matplotlib's object-oriented API with the Agg renderer, so no
        window opens and the process-wide pyplot backend is left alone. The
        file is written atomically.

        Parameters
        ----------
        path : str or os.PathLike
            The PNG file to write.
        title : str, optional
            A title over both panels.

        Returns
        -------
        pathlib.Path

        Raises
        ------
        MissingDependencyError
            matplotlib is not installed (an ``ImportError``).
        """
        figure_cls = _matplotlib_figure()
        fig = figure_cls(figsize=(9.0, 3.6), layout="constrained")
        ax_loss, ax_acc = fig.subplots(1, 2)
        ax_loss.plot(self.epoch, self.train_loss, marker="o", markersize=3)
        ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
        ax_acc.plot(self.epoch, self.train_acc, marker="o", markersize=3, label="train")
        if any(a is not None for a in self.test_acc):
            test = [math.nan if a is None else a for a in self.test_acc]
            ax_acc.plot(self.epoch, test, marker="s", markersize=3, linestyle="--", label="test")
        if any(a is not None for a in self.val_acc):
            val = [math.nan if a is None else a for a in self.val_acc]
            ax_acc.plot(
                self.epoch, val, marker="^", markersize=3, linestyle=":", label="validation"
            )
        ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0.0, 1.0), title="accuracy")
        ax_acc.legend(loc="lower right")
        for ax in (ax_loss, ax_acc):
            ax.grid(visible=True, alpha=0.3)
        if title:
            fig.suptitle(title)
        target = Path(path)
        with atomic_writer(target) as f:
            fig.savefig(f, format="png", dpi=100)
        return target


#: History entries that histories written before them lack.
_OPTIONAL = frozenset({"val_loss", "val_acc", "lr", "best_iteration", "stopped_iteration"})
#: History entries that are one number, not one per evaluation.
_SCALARS = frozenset({"best_iteration", "stopped_iteration"})


def _matplotlib_figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            f"plotting needs matplotlib, which is not installed ({exc}); "
            f"install it with: {_PLOT_INSTALL}"
        ) from exc
    return Figure


# --------------------------------------------------------------------------- evaluation


def _host_pair(where: str, arg: str, data: object) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        fail(where, arg, "a pair (x, t) of host (NumPy) arrays", type(data).__name__)
    if any(is_lazy(a) for a in data):  # np.asarray would compute (read) all of it
        fail(where, arg, "a pair (x, t) of host (NumPy) arrays", "a lazy array", streaming.HINT)
    try:
        x, t = np.asarray(data[0]), np.asarray(data[1])
    except (TypeError, ValueError, RuntimeError):
        fail(
            where,
            arg,
            "a pair (x, t) of host (NumPy) arrays",
            "arrays NumPy cannot read",
            "Convert them with xplayers.to_numpy(...)",
        )
    if x.ndim == 0 or t.ndim == 0 or x.shape[0] != t.shape[0] or x.shape[0] == 0:
        fail(
            where,
            arg,
            "x and t with the same number (>= 1) of samples along axis 0",
            f"shapes {x.shape} and {t.shape}",
        )
    return x, t


def _chunks(
    x: npt.NDArray[Any], t: npt.NDArray[Any], size: int
) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
    return [(x[i : i + size], t[i : i + size]) for i in range(0, x.shape[0], size)]


def _accuracy(network: Trainable, chunks: Iterable[tuple[Any, Any]]) -> float:
    correct, n = 0.0, 0
    with _closing(chunks):
        for xc, tc in chunks:
            correct += float(network.accuracy(asarray(xc), asarray(tc))) * int(xc.shape[0])
            n += int(xc.shape[0])
    return correct / max(n, 1)


@contextlib.contextmanager
def _closing(batches: Iterable[Any]) -> Iterator[None]:
    """Close a generator of batches (not a list) when the block is left, by an error too.

    A streamed epoch's generator holds a reading thread and the blocks it
    read ahead; an error kept by the caller keeps this frame, and so the
    generator, alive unless it is closed here.
    """
    try:
        yield
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _eval_chunks(
    where: str, arg: str, data: object, size: int
) -> tuple[Callable[[], Iterable[tuple[Any, Any]]], Any]:
    """How to read `data` in evaluation chunks, and its training loader's source.

    Chunked data (a Dask or zarr array, a folder of ``.npy`` files) are
    streamed block by block (:mod:`xplayers.datasets.streaming`); anything
    else is a host pair.
    """
    streamed = streaming.open_pair(where, arg, data)
    if streamed is not None:
        return (lambda: streaming.StreamLoader(*streamed, 1, shuffle=False).chunks(size)), streamed
    x, t = _host_pair(where, arg, data)
    return (lambda: _chunks(x, t, size)), (x, t)


def evaluate(
    network: Trainable,
    x: npt.ArrayLike,
    t: npt.ArrayLike,
    *,
    batch_size: int = 1000,
    top_k: int | None = None,
    confusion: bool = False,
) -> dict[str, Any]:
    """Mean loss and accuracy of `network` on host data, computed in chunks.

    Parameters
    ----------
    network : TwoLayerNet, MultiLayerNet or Sequential
    x, t : array_like
        Host (NumPy) inputs and labels; each chunk of `batch_size` samples is
        moved to the current backend in turn.
    batch_size : int, default 1000
        Samples per chunk; bounds the memory used on the device.
    top_k : int, optional
        Also report the top-`top_k` accuracy: the fraction of samples whose
        class is among the `top_k` highest scores
        (:func:`xplayers.metrics.top_k_accuracy`).
    confusion : bool, default False
        Also report the confusion matrix
        (:func:`xplayers.metrics.confusion_matrix`).

    Returns
    -------
    dict
        ``{"loss": float, "accuracy": float, "samples": int}``; the loss is
        the per-sample mean over all of `x`. With `top_k`, also
        ``"top_k": top_k`` and ``"top_k_accuracy": float``; with
        `confusion`, ``"confusion_matrix"``, an int64 NumPy array ``(C, C)``
        (rows the true classes, columns the predicted ones). These are
        counted on the backend chunk by chunk and read back once, at the end.

    Examples
    --------
    >>> from xplayers.datasets import load_digits
    >>> from xplayers.network import TwoLayerNet
    >>> from xplayers.training import evaluate
    >>> x, t = load_digits()
    >>> result = evaluate(TwoLayerNet(64, 10, 10, seed=0), x, t, top_k=3, confusion=True)
    >>> result["samples"], round(result["loss"], 1), result["confusion_matrix"].shape
    (1797, 2.3, (10, 10))
    """
    size = positive_int("evaluate", "batch_size", batch_size)
    k = None if top_k is None else positive_int("evaluate", "top_k", top_k)
    chunks = _eval_chunks("evaluate", "x, t", (x, t), size)[0]
    total_loss = 0.0
    correct = 0.0
    n = 0
    counts: metrics.Counts | None = None
    for xc, tc in chunks():
        xb, tb = asarray(xc), asarray(tc)
        total_loss += float(network.loss(xb, tb)) * int(xc.shape[0])
        correct += float(network.accuracy(xb, tb)) * int(xc.shape[0])
        n += int(xc.shape[0])
        if k is not None or confusion:
            part = metrics.count("evaluate", network.predict(xb), tb, top_k=k, confusion=confusion)
            counts = part if counts is None else counts + part
    result: dict[str, Any] = {"loss": total_loss / n, "accuracy": correct / n, "samples": n}
    if counts is not None:
        if k is not None:
            result["top_k"] = k
        result.update(counts.read("evaluate"))
    return result


def _host_labels(t: Any) -> npt.NDArray[Any]:
    """Host labels of host data or of chunked data (read block by block; labels are small)."""
    if streaming.is_chunked(t):
        rows = streaming.open_rows(t, where="check_chance", arg="labels")
        return np.concatenate([to_numpy(rows.read(a, b)) for a, b in itertools.pairwise(rows.cuts)])
    return np.asarray(to_numpy(t) if not isinstance(t, np.ndarray) else t)


def check_chance(history: History, labels: Any, split: str = "test") -> str | None:
    """Warn when the last accuracy of `history` is no better than chance.

    Chance is the accuracy of always answering the most common class of
    `labels` (:func:`xplayers.metrics.chance_accuracy`; ``1/C`` on balanced
    classes). A run that ends there learnt nothing a constant answer would
    not give, most often because the learning rate is too high. The
    warning is appended to :attr:`History.warnings` and logged on the
    ``xplayers`` logger; nothing stops.

    Parameters
    ----------
    history : History
        A run's history, with at least one evaluation.
    labels : array_like
        The labels of the set whose accuracy is compared: the test set's
        when `split` is ``"test"``, else the training set's.
    split : {"test", "train"}, default "test"

    Returns
    -------
    str or None
        The warning, or None when the run beat chance.

    Examples
    --------
    >>> from xplayers.training import History, check_chance
    >>> h = History([1.0], [10], [2.3], [0.1], [0.1], [0.5])
    >>> text = check_chance(h, list(range(10)))  # ten classes, one sample each: chance 0.1
    >>> text.startswith("train: the final test accuracy 0.1000 is no better than chance")
    True
    >>> h.warnings == [text]
    True
    """
    if not len(history):
        return None
    accuracy = history.test_acc[-1] if split == "test" else history.train_acc[-1]
    if accuracy is None:
        return None
    chance = metrics.chance_accuracy(_host_labels(labels))
    if accuracy > chance:
        return None
    text = (
        f"train: the final {split} accuracy {accuracy:.4f} is no better than chance "
        f"({chance:.4f}, always answering the most common class): the network learnt "
        "nothing; try a lower learning rate, or check that the labels match the inputs"
    )
    history.warnings.append(text)
    log.warning("%s", text)
    return text


# --------------------------------------------------------------------------- progress bar


class ProgressBar:
    """A one-line progress bar, redrawn in place at most ten times a second."""

    def __init__(self, total: int, per_epoch: int, stream: TextIO, *, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self.per_epoch = per_epoch
        self.stream = stream
        self.start = time.perf_counter()
        self.last = -math.inf
        self.shown = False

    def update(self, iteration: int, loss: Callable[[], float | None]) -> None:
        """Redraw, at most ten times a second; `loss` is called only then (it may read a GPU)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and iteration < self.total:
            return
        value = loss()
        self.last = now
        width = max(shutil.get_terminal_size((80, 20)).columns - 1, 20)
        epoch = (iteration - 1) // self.per_epoch + 1 if iteration else 1
        rate = iteration / max(now - self.start, 1e-9)
        tail = f" {iteration}/{self.total} epoch {epoch}"
        if value is not None:
            tail += f" loss {value:.4f}"
        tail += f" {rate:.0f} it/s"
        room = max(width - len(tail) - 2, 10)
        filled = room * iteration // self.total
        line = "[" + "#" * filled + "." * (room - filled) + "]" + tail
        self.stream.write("\r" + line[:width])
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        """Erase the bar's line, so that a line printed next starts clean."""
        if self.shown:
            width = max(shutil.get_terminal_size((80, 20)).columns - 1, 20)
            self.stream.write("\r" + " " * width + "\r")
            self.stream.flush()
            self.shown = False
            self.last = -math.inf


def show_progress(progress: bool | None) -> bool:
    """`progress` when given, else whether standard error is a terminal."""
    if progress is not None:
        return bool(progress)
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


# --------------------------------------------------------------------------- training


def _total(epochs: object, iterations: object, per_epoch: int) -> int:
    if (epochs is None) == (iterations is None):
        fail(
            "train",
            "epochs",
            "exactly one of epochs= or iterations=",
            "both" if epochs is not None else "neither",
        )
    if epochs is not None:
        return positive_int("train", "epochs", epochs) * per_epoch
    return positive_int("train", "iterations", iterations)


def _check_output(arg: str, path: str | os.PathLike[str] | None) -> Path | None:
    return None if path is None else writable_file("train", arg, path)


def _check_data(
    network: Trainable, train_pair: tuple[Any, Any], test_pair: Any, test_arg: str = "test_data"
) -> None:
    """Check the data fit the network before any update: widths, label kind and range.

    One training sample goes through ``network.predict`` (inference mode, no
    state changes) to learn the number of classes ``C``; host labels must
    then be integers in ``0..C-1`` (``(N,)`` or a column ``(N, 1)``) or
    one-hot rows of width ``C``, and the test inputs must have the training
    inputs' width. Streamed labels are read block by block, all of them, and a
    bad block is named.
    """
    x, t = train_pair
    predict = getattr(network, "predict", None)
    known = (np.ndarray, streaming.Rows)  # host arrays, or streamed rows
    if not (isinstance(x, known) and isinstance(t, known)) or not callable(predict):
        return
    pairs = [("train_data", x, t)]
    if test_pair is not None:
        xt, tt = test_pair
        if tuple(xt.shape[1:]) != x.shape[1:]:
            fail(
                "train",
                test_arg,
                f"inputs of shape (N, {', '.join(map(str, x.shape[1:]))}) like train_data",
                f"shape {xt.shape}",
            )
        if isinstance(xt, known) and isinstance(tt, known):
            pairs.append((test_arg, xt, tt))
    classes = int(predict(asarray(x[:1])).shape[-1])
    for arg, _, given in pairs:
        if isinstance(given, streaming.Rows):  # streamed: every block, naming the bad one
            streaming.check_labels("train", arg, given, classes)
            continue
        if given.ndim == 2 and given.shape[1] == classes:
            continue
        labels = given
        if given.ndim == 2 and given.shape[1] == 1 and given.dtype.kind in "iu":
            labels = given[:, 0]  # a column of labels, as the network's loss reads it
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            fail(
                "train",
                arg,
                f"integer labels (N,) (or a column (N, 1) of them) or one-hot rows "
                f"(N, {classes}) for the network's {classes} classes",
                f"labels of shape {labels.shape} and dtype {labels.dtype}",
            )
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= classes:
            fail(
                "train",
                arg,
                f"labels from 0 to {classes - 1} for the network's {classes} classes",
                f"labels from {lo} to {hi}",
            )


def train(
    network: Trainable,
    optimizer: Any,
    train_data: tuple[npt.ArrayLike, npt.ArrayLike],
    test_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    *,
    epochs: int | None = None,
    iterations: int | None = None,
    batch_size: int = 100,
    seed: int | None = 0,
    eval_every: Literal["epoch"] | int = "epoch",
    eval_batch_size: int = 1000,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    plot: str | os.PathLike[str] | None = None,
    callback: Callable[[History], object] | None = None,
    resume: str | os.PathLike[str] | None = None,
    validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    validation_split: float | None = None,
    schedule: Schedule | None = None,
    early_stopping: EarlyStopping | None = None,
    clip_norm: float | None = None,
    full_batch: bool = False,
    client: Any = None,
) -> History:
    """Train `network` with mini-batch updates and evaluate it as it learns.

    An epoch is one pass over the training data in a new random order
    (``ceil(N / batch_size)`` updates; the last batch may be smaller). Give
    either `epochs` or `iterations`: the book's chapter-5 experiment is
    ``iterations=10000, batch_size=100``, evaluated every epoch (600 updates
    for MNIST's 60,000 images), with a last evaluation at the end when the
    run stops mid-epoch. With `full_batch`, an epoch is one update on the
    gradient of all training rows.

    Parameters
    ----------
    network : TwoLayerNet, MultiLayerNet or Sequential
        Any network with ``train_step(x, t, optimizer)`` returning the
        batch's loss as a 0-d array, and ``loss`` and ``accuracy``. Its
        parameters live on the current backend.
    optimizer : SGD, Momentum, Nesterov, AdaGrad, RMSprop or Adam
        Passed to ``network.train_step``.
    train_data : (x, t)
        Host (NumPy) training inputs and labels; they stay on the host.
    test_data : (x, t), optional
        Host test inputs and labels, evaluated at every evaluation.
    epochs : int, optional
        Number of passes over the training data.
    iterations : int, optional
        Number of updates, instead of `epochs`.
    batch_size : int, default 100
        Samples per update.
    seed : int or None, default 0
        Seed of the order in which samples are visited (``None``: a new
        order every run). The network's initial weights have their own seed.
    eval_every : "epoch" or int, default "epoch"
        Evaluate at the end of each epoch, or every this many updates; also
        after the last update.
    eval_batch_size : int, default 1000
        Samples per chunk when evaluating the whole training and test sets.
    progress : bool or None, default None
        Draw a one-line progress bar on standard error. ``None``: only when
        standard error is a terminal.
    checkpoint : path, optional
        Save the network here (with :func:`xplayers.io.save_checkpoint`,
        atomically) after every evaluation, with everything `resume` needs:
        the optimizer's state, the batch-order generator's state, the
        iteration and the history so far.
    plot : path, optional
        Save the loss and accuracy curves here as a PNG when training ends
        (needs matplotlib: ``pip install "xplayers[plot]"``, from a source
        checkout ``pip install ".[plot]"``).
    callback : callable, optional
        Called as ``callback(history)`` after every evaluation (the newest
        entry is last), for example to print a line per epoch.
    resume : path, optional
        Continue the run saved in this checkpoint (written by
        ``checkpoint=``): its weights, running averages, optimizer state,
        batch order, iteration and history replace those of `network` and
        `optimizer`, and training goes on to the same `epochs` or
        `iterations` as the interrupted run, bit for bit as if it had never
        stopped. The network must have the checkpoint's config (all of it
        but the initial weights' ``seed`` and ``weight_init_std``), the
        optimizer its class and hyper-parameters, the training data the
        same samples in the same order (compared by a digest, see
        :func:`data_fingerprint`) and batch size, and `epochs` or
        `iterations` must reach at least the checkpoint's iteration. Every
        value of the checkpoint's training state is checked before anything
        changes.
        The schedule, early stopping, clipping and validation data must be
        the interrupted run's too (their state comes from the checkpoint).
    validation_data : (x, t), optional
        Host validation inputs and labels, evaluated at every evaluation
        (``History.val_loss``, ``History.val_acc``) and watched by
        `early_stopping` and :class:`~xplayers.schedules.ReduceOnPlateau`.
    validation_split : float, optional
        Instead of `validation_data`: hold out this fraction, in (0, 1), of
        the training samples, the last ``int(N * validation_split)`` rows as
        given (shuffle the data first if they are ordered, as
        :func:`~xplayers.datasets.train_test_split` does), as Keras does.
        Host (NumPy) training data only.
    schedule : Schedule, optional
        A learning-rate schedule of :mod:`xplayers.schedules`
        (:class:`~xplayers.schedules.StepDecay`,
        :class:`~xplayers.schedules.CosineDecay`,
        :class:`~xplayers.schedules.ReduceOnPlateau`); it sets
        ``optimizer.lr`` before each update, from the optimizer's own rate,
        which ``optimizer.lr`` is again when ``train`` returns.
        ``History.lr`` records the rate at each evaluation.
    early_stopping : EarlyStopping, optional
        Stop when the monitored metric has not improved for its patience,
        and keep (and with ``restore_best``, put back at the end) the
        parameters of the best evaluation
        (:class:`xplayers.monitoring.EarlyStopping`).
    clip_norm : float, optional
        Scale each update's gradients so that their global norm (over all
        parameters) is at most this (:func:`xplayers.optim.clip_grad_norm`,
        computed on the device: no update waits for it).
    full_batch : bool, default False
        Make each epoch one update on the mean gradient of all training
        rows, summed chunk by chunk on Dask
        (:func:`xplayers.parallel.full_batch_step`; chunks of
        `eval_batch_size` rows for host data, the data's own blocks for
        chunked data); `batch_size` is then not used, and an iteration is
        an epoch. Checkpoints, resume, evaluation and the controls work as
        for mini-batches. Needs ``dask``.
    client : dask.distributed.Client, optional
        With `full_batch`: compute the gradients on this client's cluster
        (default: the current Dask scheduler).

    Returns
    -------
    History
        The learning curve.

    Raises
    ------
    TrainingError
        The loss became NaN or infinite, or diverged: stayed above
        :data:`DIVERGED_FACTOR` times its starting value for
        :data:`DIVERGED_EVALUATIONS` evaluations, or ended there. The
        message names the epoch and iteration where it went wrong. On Dask,
        losses are computed at evaluation time, so the error comes then,
        still naming the first bad iteration.
    MissingDependencyError
        `plot` was given and matplotlib is not installed (checked before
        training starts).
    xplayers.errors.LayerInputError
        An argument is invalid (a ``ValueError``); all of them, the data
        included (widths, labels in ``0..C-1``), are checked before the
        first update.

    Examples
    --------
    >>> from xplayers.datasets import load_digits, train_test_split
    >>> from xplayers.network import TwoLayerNet
    >>> from xplayers.optim import SGD
    >>> from xplayers.training import train
    >>> train_set, test_set = train_test_split(*load_digits(), test_size=0.2, seed=0)
    >>> net = TwoLayerNet(64, 50, 10, weight_init_std=0.1, seed=0)
    >>> history = train(net, SGD(lr=0.5), train_set, test_set, epochs=5, batch_size=50)
    >>> history.epoch
    [1.0, 2.0, 3.0, 4.0, 5.0]
    >>> history.test_acc[-1] > 0.85
    True
    """
    chunk = positive_int("train", "eval_batch_size", eval_batch_size)
    chunks, (x_train, t_train), test_pair, val_pair = _open_data(
        train_data, test_data, validation_data, validation_split, chunk
    )
    train_chunks, test_chunks, val_chunks = chunks
    rng = np.random.default_rng(seed)  # the batch order: saved in checkpoints
    loader, step = _stepping(
        network, (x_train, t_train), batch_size, rng, chunk, full_batch, client
    )
    controls = _check_setup(
        network,
        optimizer,
        ((x_train, t_train), test_pair, val_pair),
        schedule,
        early_stopping,
        clip_norm,
    )
    per_epoch = len(loader)
    total = _total(epochs, iterations, per_epoch)
    every = per_epoch if eval_every == "epoch" else positive_int("train", "eval_every", eval_every)
    checkpoint_path = _check_output("checkpoint", checkpoint)
    plot_path = _check_output("plot", plot)
    if plot_path is not None:
        _matplotlib_figure()  # fail now, not after training
    bar = ProgressBar(total, per_epoch, sys.stderr, enabled=show_progress(progress))
    history, it, skip, data = _start(
        resume, network, optimizer, rng, loader, total, checkpoint, controls
    )
    window = _LossWindow(per_epoch)
    start = time.perf_counter() - (history.seconds[-1] if history.seconds else 0.0)
    stepper = controls.stepper(optimizer)

    def record(iteration: int) -> None:
        bar.clear()
        metrics = _append_evaluation(
            history,
            network,
            optimizer,
            iteration,
            window.mean(last=iteration == total),
            (iteration / per_epoch, time.perf_counter() - start),
            (train_chunks, test_chunks, val_chunks),
        )
        controls.observe(metrics, iteration, network)
        history.best_iteration = controls.best_iteration
        if controls.stopped:
            history.stopped_iteration = iteration
        if checkpoint_path is not None:
            _save_checkpoint(
                network,
                checkpoint_path,
                history,
                optimizer,
                {**_position(iteration, epoch, rng, loader), "data": data},
                controls,
            )
        if callback is not None:
            callback(history)

    with _blas_threads(network, loader.batch_size):
        try:
            while it < total and not controls.stopped:
                # the epoch's first iteration and generator state, then its batches
                epoch, batches, skip = (it - skip, rng.bit_generator.state), _skip(loader, skip), 0
                with _closing(batches):
                    for xb, tb in batches:
                        controls.set_rate(optimizer, it, per_epoch, total)
                        loss = step(xb, tb, stepper)
                        it += 1
                        bar.update(it, window.add(loss, int(xb.shape[0]), it))
                        if it % every == 0 or it == total:
                            record(it)
                        if it == total or controls.stopped:
                            break
        finally:
            bar.clear()
            controls.reset_rate(optimizer)
    controls.finish(network, optimizer)
    _finish(history, t_train, test_pair, plot_path)
    return history


def _finish(history: History, t_train: Any, test_pair: Any, plot_path: Path | None) -> None:
    """After the last update: the chance check on the test set (else the training set), the plot."""
    if test_pair is not None:
        check_chance(history, test_pair[1], "test")
    else:
        check_chance(history, t_train, "train")
    if plot_path is not None:
        history.plot(plot_path)


def _append_evaluation(
    history: History,
    network: Trainable,
    optimizer: Any,
    iteration: int,
    train_loss: float,
    when: tuple[float, float],
    chunks: tuple[Callable[[], Iterable[tuple[Any, Any]]], Any, Any],
) -> dict[str, float | None]:
    """Evaluate `network` into a new entry of `history`; return the metrics monitors watch."""
    train_chunks, test_chunks, val_chunks = chunks
    history.epoch.append(when[0])
    history.iteration.append(iteration)
    history.train_loss.append(train_loss)
    history.train_acc.append(_accuracy(network, train_chunks()))
    history.test_acc.append(None if test_chunks is None else _accuracy(network, test_chunks()))
    val_loss, val_acc = (
        (None, None) if val_chunks is None else _loss_accuracy(network, val_chunks())
    )
    history.val_loss.append(val_loss)
    history.val_acc.append(val_acc)
    lr = getattr(optimizer, "lr", None)
    history.lr.append(lr if isinstance(lr, float) else None)
    history.seconds.append(when[1])
    return {
        "train_loss": train_loss,
        "train_acc": history.train_acc[-1],
        "val_loss": val_loss,
        "val_acc": val_acc,
    }


def _loader(
    x: Any, t: Any, batch_size: int, rng: np.random.Generator
) -> streaming.StreamLoader | BatchLoader:
    """The training batches: streamed block by block from chunked data, else from host arrays."""
    if isinstance(x, streaming.Rows):
        return streaming.StreamLoader(x, t, batch_size, shuffle=True, seed=rng)
    return BatchLoader(x, t, batch_size, shuffle=True, seed=rng)


def _stepping(
    network: Trainable,
    pair: tuple[Any, Any],
    batch_size: int,
    rng: np.random.Generator,
    chunk: int,
    full_batch: bool,
    client: Any,
) -> tuple[Any, Callable[[Any, Any, Any], Any]]:
    """The training batches and the step each takes: mini-batch or full-batch updates."""
    if client is not None and not full_batch:
        fail("train", "client", "no client without full_batch=True", describe(client))
    if not full_batch:
        return _loader(*pair, batch_size, rng), network.train_step

    def step(x: Any, t: Any, optimizer: Any) -> float:
        return full_batch_step(network, optimizer, x, t, client=client)

    return _WholeBatch(*pair, chunk), step


class _WholeBatch:
    """The batches of full-batch training: each epoch one batch, all the training rows.

    Host rows are handed to :func:`~xplayers.parallel.full_batch_step` as a
    Dask array of `chunk` rows per block; chunked data as they are.
    """

    def __init__(self, x: Any, t: Any, chunk: int) -> None:
        self.x, self.t = x, t
        self.batch_size = int(x.shape[0])
        host = isinstance(x, np.ndarray)
        self.batch = (to_chunked(x, chunk), to_chunked(t, chunk)) if host else (x, t)

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        yield self.batch


def _check_setup(
    network: Trainable,
    optimizer: Any,
    pairs: tuple[tuple[Any, Any], Any, Any],
    schedule: object,
    early_stopping: object,
    clip_norm: object,
) -> RunControls:
    """Check the data against the network and the run's controls; return the controls."""
    train_pair, test_pair, val_pair = pairs
    _check_data(network, train_pair, test_pair)
    if val_pair is not None:
        _check_data(network, train_pair, val_pair, "validation_data")
    rows = None if val_pair is None else int(val_pair[0].shape[0])
    return RunControls.create(optimizer, schedule, early_stopping, clip_norm, rows)


def _open_data(
    train_data: Any, test_data: Any, validation_data: Any, validation_split: object, chunk: int
) -> tuple[tuple[Any, Any, Any], tuple[Any, Any], Any, Any]:
    """The evaluation chunks of the three sets, the training pair, the test and validation pairs."""
    train_data, validation_data = _split_validation(train_data, validation_data, validation_split)
    train_chunks, train_pair = _eval_chunks("train", "train_data", train_data, chunk)
    test_chunks, test_pair = (
        (None, None) if test_data is None else _eval_chunks("train", "test_data", test_data, chunk)
    )
    val_chunks, val_pair = (
        (None, None)
        if validation_data is None
        else _eval_chunks("train", "validation_data", validation_data, chunk)
    )
    return (train_chunks, test_chunks, val_chunks), train_pair, test_pair, val_pair


def _split_validation(
    train_data: Any, validation_data: Any, validation_split: object
) -> tuple[Any, Any]:
    """`train_data` less the rows `validation_split` holds out, and the validation data."""
    if validation_split is None:
        return train_data, validation_data
    if validation_data is not None:
        fail(
            "train",
            "validation_split",
            "validation_data= or validation_split=, not both",
            "both",
        )
    fraction = number_in("train", "validation_split", validation_split, low=0.0, high=1.0)
    x, t = _host_pair("train", "train_data", train_data)
    cut = int(x.shape[0] * (1.0 - fraction))
    if cut < 1 or cut >= x.shape[0]:
        fail(
            "train",
            "validation_split",
            f"a fraction leaving at least one sample on each side of the {x.shape[0]} samples",
            f"{validation_split!r}",
        )
    return (x[:cut], t[:cut]), (x[cut:], t[cut:])


def _loss_accuracy(network: Trainable, chunks: Iterable[tuple[Any, Any]]) -> tuple[float, float]:
    """Per-sample mean loss and accuracy over `chunks`."""
    total_loss, correct, n = 0.0, 0.0, 0
    for xc, tc in chunks:
        xb, tb = asarray(xc), asarray(tc)
        total_loss += float(network.loss(xb, tb)) * int(xc.shape[0])
        correct += float(network.accuracy(xb, tb)) * int(xc.shape[0])
        n += int(xc.shape[0])
    return total_loss / max(n, 1), correct / max(n, 1)


#: Multiply-adds of the largest matrix product of a step below which BLAS runs one thread.
SMALL_GEMM = 2**24


def _blas_threads(network: Any, batch_size: int) -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread for small matrix products, where threads only wait for each other.

    OpenBLAS's threads spin while waiting; on small products (the digits
    network, MNIST at batch 100) they gain nothing, and beside another busy
    process they slow training down many times (``docs/performance.md``).
    Uses threadpoolctl when it is installed.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; kept optional for minimal installs
        return contextlib.nullcontext()
    params = getattr(network, "params", None) or {}
    sizes = [math.prod(p.shape) for p in params.values() if len(p.shape) == 2]
    if not sizes or batch_size * max(sizes) > SMALL_GEMM:
        return contextlib.nullcontext()
    limits: contextlib.AbstractContextManager[Any] = threadpool_limits(1, user_api="blas")
    return limits


#: A run has diverged when its mean training loss stays above this many times
#: its starting value (at least 1) for :data:`DIVERGED_EVALUATIONS` evaluations
#: in a row, or is above it at the last one.
DIVERGED_FACTOR = 100.0
#: Evaluations in a row with a diverged loss that stop training.
DIVERGED_EVALUATIONS = 3


class _LossWindow:
    """Sum of per-sample losses since the last evaluation, checked for divergence.

    A NaN or infinite loss stops training at once. A finite loss far above
    the first one (:data:`DIVERGED_FACTOR`) stops it when it stays there
    (:data:`DIVERGED_EVALUATIONS`) or the run ends there; the error names
    the first update of that stretch. Host-memory eager backends (NumPy,
    torch CPU) convert each loss with one ``float()``, which waits for
    nothing. Losses whose reading would wait for a device (CuPy, torch CUDA,
    JAX: :func:`xplayers.backend.reading_waits`) or compute a graph (Dask)
    stay where they are and are read together, with one transfer, in
    :meth:`mean` at the next evaluation; the progress bar reads the newest
    one when it redraws (at most ten times a second). So a training step
    itself never waits for the device.
    """

    def __init__(self, per_epoch: int) -> None:
        self.per_epoch = per_epoch
        self.total = 0.0
        self.count = 0
        self.pending: list[tuple[Any, int, int]] = []
        self.start: float | None = None  # the first loss of the run
        self.first_high: int | None = None  # first update above the limit in this window
        self.streak: list[int] = []  # first high update of each diverged evaluation in a row
        self.last: float | None = None  # the newest loss read

    def add(self, loss: Any, n: int, iteration: int) -> Callable[[], float | None]:
        """Take the loss of one update; return :meth:`latest`, for the progress bar."""
        if self.pending or is_lazy(loss) or reading_waits(loss):
            self.pending.append((loss, n, iteration))
        else:
            self._take(float(loss), n, iteration)
        return self.latest

    def latest(self) -> float | None:
        """The newest loss, for the progress bar: read now unless it is lazy (Dask)."""
        if not self.pending:
            return self.last
        loss = self.pending[-1][0]
        return None if is_lazy(loss) else float(loss)

    def _where(self, iteration: int) -> str:
        epoch = (iteration - 1) // self.per_epoch + 1
        step = (iteration - 1) % self.per_epoch + 1
        return (
            f"epoch {epoch}, iteration {iteration} (batch {step} of {self.per_epoch} in the epoch)"
        )

    def _limit(self) -> float:
        return DIVERGED_FACTOR * max(self.start or 0.0, 1.0)

    def _take(self, value: float, n: int, iteration: int) -> None:
        if not math.isfinite(value):
            hint = (
                "before any update, so not the learning rate: the initial weights are too "
                "large (weight_init_std) or the inputs hold NaN, infinite or huge values"
                if iteration == 1
                else "lower the learning rate, or check the inputs for NaN or infinite values"
            )
            raise TrainingError(
                f"train: the loss became {value} at {self._where(iteration)}; {hint}"
            )
        if self.start is None:
            self.start = value
        if self.first_high is None and value > self._limit():
            self.first_high = iteration
        self.total += value * n
        self.count += n
        self.last = value

    def mean(self, *, last: bool = False) -> float:
        if self.pending:
            xp = namespace(self.pending[0][0])
            values = to_numpy(xp.stack(materialize_all([p[0] for p in self.pending])))
            for value, (_, n, iteration) in zip(values.tolist(), self.pending, strict=True):
                self._take(float(value), n, iteration)
            self.pending.clear()
        mean = self.total / max(self.count, 1)
        if mean > self._limit():
            self.streak.append(self.first_high or 0)
        else:
            self.streak.clear()
        if self.streak and (last or len(self.streak) >= DIVERGED_EVALUATIONS):
            raise TrainingError(
                f"train: the loss diverged: {mean:.3g} per sample over the last updates, more "
                f"than {DIVERGED_FACTOR:g} times its starting value {self.start:.3g}, since "
                f"{self._where(self.streak[0])}; lower the learning rate"
            )
        self.total, self.count, self.first_high = 0.0, 0, None
        return mean


def _save_checkpoint(
    network: Trainable,
    path: Path,
    history: History,
    optimizer: Any,
    where: dict[str, Any],
    controls: RunControls,
) -> None:
    metadata = {
        "checkpoint": {"epoch": history.epoch[-1], "iteration": history.iteration[-1]},
        "history": history.to_dict(),
    }
    if not callable(getattr(optimizer, "state", None)):  # an optimizer of one's own
        save(network, path, metadata=metadata)
        return
    info, arrays = optimizer.state()
    if controls.base_lr is not None:  # scheduled: the optimizer's own rate, as resume builds it
        info["hyper"]["lr"] = controls.base_lr
    state = {"train": {**where, "optimizer": info, "layers": _layer_generators(network)}}
    arrays = {f"optimizer.{name}": value for name, value in arrays.items()}
    control_state, control_arrays = controls.saved()
    state["train"]["controls"] = control_state
    arrays.update(control_arrays)
    save_checkpoint(network, path, state=state, arrays=arrays, metadata=metadata)


def _layer_generators(network: Any) -> dict[str, Any]:
    """The random state of each layer that draws (Dropout: its seed words and count), by name."""
    layers = getattr(network, "layers", None) or {}
    return {
        name: {"seed": list(layer.seed_words), "count": int(layer.count)}
        for name, layer in layers.items()
        if isinstance(getattr(layer, "seed_words", None), tuple)
    }


def _restore_generators(
    network: Any, saved: object, path: str | os.PathLike[str]
) -> list[tuple[Any, Any]]:
    """Check the saved layers' random states against `network`'s; return (layer, state) pairs."""
    if saved is None:  # written before layer generators were saved: they go on as they are
        return []
    mine = _layer_generators(network)
    if not isinstance(saved, dict) or set(saved) != set(mine):
        fail(
            "train",
            "resume",
            f"a checkpoint with the generators of this network's layers {sorted(mine)}",
            f"{str(path)!r}, with {sorted(saved) if isinstance(saved, dict) else saved!r}"[:300],
        )
    return [
        (network.layers[key], _draw_state(state, f"layers.{key}", path))
        for key, state in saved.items()
    ]


def _draw_state(state: object, what: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    """`state` if it is a layer's random state: ``{"seed": [words], "count": n}``."""
    words = state.get("seed") if isinstance(state, dict) else None
    count = state.get("count") if isinstance(state, dict) else None
    ok = (
        isinstance(words, list)
        and len(words) == SEED_WORDS
        and all(type(w) is int and 0 <= w < 2**32 for w in words)
        and type(count) is int
        and count >= 0
    )
    if not ok:
        raise _bad_state(path, f"{what} is not a Dropout layer's seed and count: {state!r}"[:300])
    return {"seed": tuple(cast(list[int], words)), "count": count}


def _generator_state(state: object, what: str, path: str | os.PathLike[str]) -> Any:
    """`state` if a PCG64 generator takes it exactly as it is (tried on a new one)."""
    probe = np.random.default_rng()
    ok = isinstance(state, dict) and state.get("has_uint32") in (0, 1)
    try:
        probe.bit_generator.state = state  # type: ignore[assignment]
        ok = ok and probe.bit_generator.state == state
    except (TypeError, ValueError, KeyError, OverflowError):
        ok = False
    if not ok:
        raise _bad_state(path, f"{what} is not a generator's state: {state!r}"[:300])
    return state


def _bad_state(path: str | os.PathLike[str], problem: str) -> ModelFileError:
    """The error for a checkpoint whose training state cannot be trusted."""
    return ModelFileError(f"checkpoint {str(path)!r}: {problem}")


def _skip(loader: Iterable[Any], n: int) -> Iterator[Any]:
    """A new epoch of `loader` after its first `n` batches (resumed mid-epoch)."""
    batches = iter(loader)
    for _ in range(n):
        next(batches)
    return batches


def _position(
    iteration: int, epoch: tuple[int, Any], rng: np.random.Generator, loader: Any
) -> dict[str, Any]:
    """Where the batch order stands after `iteration`: what resume starts from."""
    done = iteration - epoch[0]
    if done == len(loader):  # the epoch is over: the next one starts from here
        where = {"iteration": iteration, "skip": 0, "rng": rng.bit_generator.state}
    else:
        where = {"iteration": iteration, "skip": done, "rng": epoch[1]}
    return {**where, "batches": _batch_setup(loader)}


def _batch_setup(loader: Any) -> dict[str, int]:
    """What the batch order depends on, besides the generator: checked on resume."""
    return {"batch_size": loader.batch_size, "rows": int(loader.x.shape[0]), "batches": len(loader)}


def data_fingerprint(loader: Any) -> str:
    """A digest of a loader's training data in their order, which :func:`train` checkpoints.

    A resumed run must visit the same samples in the same order, so
    ``resume=`` compares it: another split of the same data (another seed),
    shuffled or edited samples are refused. NumPy arrays are hashed whole
    (SHA-256 over their shape, dtype and bytes); streamed data (Dask, zarr,
    folders of ``.npy`` files), which would have to be read in full, by
    their shapes, dtypes, block boundaries and first and last rows.

    Parameters
    ----------
    loader : BatchLoader or StreamLoader
        Its ``x`` and ``t``.

    Returns
    -------
    str
        ``"sha256:"`` and the digest's first 32 hexadecimal digits.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.datasets import BatchLoader
    >>> from xplayers.training import data_fingerprint
    >>> x, t = np.zeros((4, 2)), np.arange(4)
    >>> a = data_fingerprint(BatchLoader(x, t, 2))
    >>> a == data_fingerprint(BatchLoader(x, t[::-1].copy(), 2)), a[:7]
    (False, 'sha256:')
    """
    digest = hashlib.sha256()
    for a in (loader.x, loader.t):
        digest.update(repr((tuple(a.shape), str(a.dtype))).encode())
        if isinstance(a, np.ndarray):
            digest.update(_bytes(a))
            continue
        digest.update(repr(tuple(a.cuts)).encode())
        n = int(a.shape[0])
        for i in sorted({0, n - 1}) if n else ():
            digest.update(_bytes(to_numpy(a.read(i, i + 1))))
    return "sha256:" + digest.hexdigest()[:32]


def _start(
    resume: str | os.PathLike[str] | None,
    network: Trainable,
    optimizer: Any,
    rng: np.random.Generator,
    loader: Any,
    total: int,
    checkpoint: object,
    controls: RunControls,
) -> tuple[History, int, int, str]:
    """The history, iteration and batches to skip a run starts from, and its data digest."""
    data = "" if checkpoint is None and resume is None else data_fingerprint(loader)
    if resume is None:
        return History(), 0, 0, data
    run = _Run(rng, loader, total, data)
    return (*_resume(resume, network, optimizer, run, controls), data)


def _bytes(a: npt.NDArray[Any]) -> Any:
    """The bytes of `a` in C order, without a copy when it is C-contiguous already."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


@dataclass(frozen=True)
class _Run:
    """The run a checkpoint must fit: its generator, loader, length and data digest."""

    rng: np.random.Generator
    loader: Any
    total: int
    data: str


def _resume(
    path: str | os.PathLike[str],
    network: Trainable,
    optimizer: Any,
    run: _Run,
    controls: RunControls,
) -> tuple[History, int, int]:
    """Restore a run from a checkpoint; return its history, iteration and batches to skip.

    Everything is checked before anything of `network` or `optimizer`
    changes: the checkpoint against this run (network config, optimizer,
    data, batches, length), then every value of its training state.
    """
    saved = read_checkpoint(path)
    state = saved.state.get("train")
    name = repr(str(path))
    if not isinstance(state, dict) or not callable(getattr(optimizer, "set_state", None)):
        fail(
            "train",
            "resume",
            "a checkpoint written by train(..., checkpoint=...) and an xplayers optimizer",
            f"{name}, which holds no training state"
            if not isinstance(state, dict)
            else f"an optimizer without set_state ({type(optimizer).__name__})",
        )
    _check_network(network, saved, name)
    _check_data_and_batches(state, run, path)
    iteration, skip = _check_position(state, run, path)
    history = _check_history(saved.header["metadata"].get("history"), iteration, path)
    batch_order = _generator_state(state.get("rng"), "rng", path)
    generators = _restore_generators(network, state.get("layers"), path)
    buffers = _stage_buffers(network, saved, path)
    arrays = {
        k.removeprefix("optimizer."): v
        for k, v in saved.arrays.items()
        if not k.startswith(BEST_PREFIX)
    }
    restored = controls.restore(state.get("controls"), saved.arrays, network, name)
    if not isinstance(state.get("optimizer"), dict):
        got = repr(state.get("optimizer"))[:200]
        raise _bad_state(path, f"optimizer state is not a JSON object: {got}")
    try:  # checks everything, then sets
        optimizer.set_state(state["optimizer"], arrays, network.params)
    except LayerInputError as exc:
        fail("train", "resume", "a checkpoint whose optimizer state fits", f"{name}: {exc}")
    network.load_params(saved.params)
    for (layer, attr), value in buffers:
        setattr(layer, attr, value)
    run.rng.bit_generator.state = batch_order
    for layer, draw_state in generators:
        layer.seed_words, layer.count = draw_state["seed"], draw_state["count"]
    controls.adopt(restored)
    return history, iteration, skip


#: Config keys that only choose the initial weights, which a resumed run replaces.
INITIAL_WEIGHT_KEYS = ("seed", "weight_init_std")


def _architecture(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as JSON data, without the keys that only choose the initial weights."""
    plain = json.loads(json.dumps(dict(config)))
    return {k: v for k, v in plain.items() if k not in INITIAL_WEIGHT_KEYS}


def _check_network(network: Trainable, saved: Any, name: str) -> None:
    """The checkpoint's network must be this one: parameters, then the whole config."""
    mine = {k: (tuple(v.shape), dtype_name(v.dtype)) for k, v in network.params.items()}
    theirs = {k: (tuple(v.shape), v.dtype.name) for k, v in saved.params.items()}
    kind = saved.header["config"].get("class")
    if mine != theirs or kind != network.config().get("class"):
        fail(
            "train",
            "resume",
            f"a checkpoint of this network ({type(network).__name__} with {mine})"[:300],
            f"{name}, a {kind} with {theirs}"[:300],
        )
    here, there = _architecture(network.config()), _architecture(saved.header["config"])
    if here != there:
        keys = sorted(k for k in {*here, *there} if here.get(k) != there.get(k))
        differences = ", ".join(
            f"{k} {there.get(k, 'absent')!r} in the checkpoint, {here.get(k, 'absent')!r} here"
            for k in keys
        )
        fail(
            "train",
            "resume",
            f"a checkpoint of a network with this config ({type(network).__name__})",
            f"{name}, whose network differs: {differences}"[:400],
            "Resume with the network the checkpoint was written with",
        )


def _check_data_and_batches(state: Mapping[str, Any], run: _Run, path: Any) -> None:
    """The checkpoint's run must have these batches and these data in this order."""
    name = repr(str(path))
    wanted = _batch_setup(run.loader)
    if state.get("batches") != wanted:
        fail(
            "train",
            "resume",
            f"a checkpoint of a run over the same data and batches ({wanted})",
            f"{name}, written with {state.get('batches')!r}"[:300],
        )
    data = state.get("data")
    if data is None:  # written before the data were fingerprinted
        warnings.warn(
            f"checkpoint {name}: written by an older xplayers without a fingerprint of its "
            "training data, so that it was written over these data in this order is not "
            "checked",
            ModelFileWarning,
            stacklevel=5,  # the caller of train
        )
    elif data != run.data:
        fail(
            "train",
            "resume",
            "a checkpoint of a run over the same training samples in the same order",
            f"{name}, written over other data (another split or seed, other or reordered "
            "samples; their fingerprints differ)",
            "Resume with the data, split and seed of the run that wrote it",
        )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_position(state: Mapping[str, Any], run: _Run, path: Any) -> tuple[int, int]:
    """The checkpoint's iteration and batches to skip, checked against each other and the run."""
    iteration, skip = state.get("iteration"), state.get("skip")
    per_epoch = len(run.loader)
    if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 1:
        raise _bad_state(path, f"iteration is {iteration!r}, not an integer >= 1"[:300])
    if not _whole(skip) or skip != iteration % per_epoch:
        raise _bad_state(
            path,
            f"skip (batches done in the epoch) is {repr(skip)[:50]}; after {iteration} "
            f"updates in epochs of {per_epoch} batches it is {iteration % per_epoch}",
        )
    if iteration > run.total:
        fail(
            "train",
            "resume",
            f"a run at least as long as the checkpoint's: {run.total} updates asked "
            "(epochs and iterations count from the start of the run)",
            f"{str(path)!r}, saved after {iteration} updates",
            f"Give iterations >= {iteration} to continue it",
        )
    return iteration, iteration % per_epoch


def _check_history(data: object, iteration: int, path: Any) -> History:
    """The saved learning curve, every value checked: the history the resumed run extends."""
    if not isinstance(data, dict):
        raise _bad_state(path, f"history is not a JSON object: {data!r}"[:300])
    lists: dict[str, list[Any]] = {}
    for f in fields(History):
        if f.name in _SCALARS:
            continue
        values = data.get(f.name)
        if values is None and f.name in _OPTIONAL:  # written before the entry existed
            continue
        if not isinstance(values, list) or not values:
            raise _bad_state(path, f"history {f.name!r} is not a non-empty list: {values!r}"[:300])
        bad = next((v for v in values if not _history_value(f.name, str(f.type), v)), values)
        if bad is not values:
            why = _HISTORY_RANGE.get(f.name, "")
            raise _bad_state(path, f"history {f.name!r} holds {bad!r}{why}"[:300])
        lists[f.name] = list(values)
    steps = lists["iteration"]
    for name in _OPTIONAL - _SCALARS - set(lists):
        lists[name] = [None] * len(steps)
    lengths = {len(v) for v in lists.values()}
    if len(lengths) != 1:
        raise _bad_state(path, "history lists differ in length")
    if any(a >= b for a, b in itertools.pairwise(steps)) or steps[-1] != iteration:
        raise _bad_state(
            path,
            f"history iterations {steps[-4:]} do not increase to the checkpoint's {iteration}"[
                :300
            ],
        )
    scalars: dict[str, Any] = {name: data.get(name) for name in _SCALARS}
    for name, value in scalars.items():
        if value is not None and (not _whole(value) or not 1 <= value <= iteration):
            raise _bad_state(
                path, f"history {name!r} is {value!r}, not an iteration from 1 to {iteration}"[:300]
            )
    entries: dict[str, Any] = {**lists, **scalars}
    return History(**entries)


#: What each history value must be, for the error message.
_HISTORY_RANGE = {
    "epoch": " (epochs are numbers >= 0)",
    "iteration": " (iterations are integers >= 1)",
    "train_loss": " (losses are numbers >= 0)",
    "train_acc": " (accuracies are numbers from 0 to 1)",
    "test_acc": " (accuracies are numbers from 0 to 1, or null)",
    "seconds": " (seconds are numbers >= 0)",
    "val_loss": " (losses are numbers >= 0, or null)",
    "val_acc": " (accuracies are numbers from 0 to 1, or null)",
    "lr": " (learning rates are numbers >= 0, or null)",
}


def _history_value(name: str, kind: str, value: object) -> bool:
    """Whether `value` can be an entry of the history list `name` (annotated `kind`)."""
    if value is None:
        return "None" in kind
    if "int]" in kind:
        return _whole(value) and value >= 1  # type: ignore[operator]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return 0 <= value <= 1 if name.endswith("_acc") else value >= 0


def _stage_buffers(network: Any, saved: Any, path: Any) -> list[tuple[tuple[Any, str], Any]]:
    """The checkpoint's buffers (running averages), checked against `network`'s; none if lacking."""
    if saved.lacking:
        warnings.warn(
            f"checkpoint {str(path)!r}: written before running averages were stored; it lacks "
            f"{', '.join(map(repr, saved.lacking))}, so the network's own go on and the "
            "resumed run is not bit for bit the one that was interrupted",
            ModelFileWarning,
            stacklevel=5,  # the caller of train
        )
    stage = getattr(network, "stage_buffers", None)
    if not saved.buffers or not callable(stage):
        return []
    try:
        staged: list[tuple[tuple[Any, str], Any]] = stage(saved.buffers, "train")
    except LayerInputError as exc:
        raise _bad_state(path, f"buffers cannot be used: {exc}") from None
    return staged
