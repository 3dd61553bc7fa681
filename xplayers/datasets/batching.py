"""Seeded train/test split and mini-batches that move to the current backend one at a time."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from xplayers._validation import describe, fail, number_in, positive_int
from xplayers.backend import asarray, is_lazy
from xplayers.datasets.streaming import HINT

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["BatchLoader", "iterate_batches", "train_test_split"]

_Array = npt.NDArray[Any]
_Seed = int | np.random.Generator | None


def _host(where: str, arg: str, a: object) -> _Array:
    if is_lazy(a):  # random rows of a Dask array would compute (read) all of it per batch
        fail(where, arg, "a host (NumPy) array", "a lazy array", HINT)
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError, RuntimeError):
        fail(
            where,
            arg,
            "a host (NumPy) array",
            describe(a),
            "Convert it with xplayers.to_numpy(...)",
        )
    if arr.ndim == 0:
        fail(where, arg, "an array with samples along axis 0", "a 0-d array")
    return arr


def _pair(where: str, x: object, t: object) -> tuple[_Array, _Array]:
    xa, ta = _host(where, "x", x), _host(where, "t", t)
    if xa.shape[0] != ta.shape[0]:
        fail(where, "t", f"{xa.shape[0]} samples along axis 0, as many as x", str(ta.shape[0]))
    return xa, ta


def train_test_split(
    x: npt.ArrayLike,
    t: npt.ArrayLike,
    *,
    test_size: float = 0.2,
    seed: _Seed = 0,
    stratify: bool = False,
) -> tuple[tuple[_Array, _Array], tuple[_Array, _Array]]:
    """Split samples into a shuffled training part and a test part, reproducibly.

    Parameters
    ----------
    x, t : array_like
        Host (NumPy) inputs and labels with the same length along axis 0.
    test_size : float, default 0.2
        Fraction of samples in the test part, strictly between 0 and 1; the test
        part gets ``round(test_size * N)`` samples (per class when ``stratify``).
    seed : int, numpy.random.Generator or None, default 0
        Seed for :func:`numpy.random.default_rng`; the same seed gives the same split.
    stratify : bool, default False
        Keep each class's share equal in both parts. Classes come from ``t``:
        class indices of shape ``(N,)`` or ``(N, 1)``, or one-hot rows of shape
        ``(N, C)``.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuples of numpy.ndarray
        Disjoint parts that together hold every sample once, each in shuffled order.

    Raises
    ------
    xplayers.errors.LayerInputError
        If the lengths differ, ``test_size`` is not in (0, 1), or a part would be empty.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.datasets import train_test_split
    >>> x, t = np.arange(20).reshape(10, 2), np.arange(10) % 2
    >>> (x_train, t_train), (x_test, t_test) = train_test_split(x, t, test_size=0.3, seed=1)
    >>> x_train.shape, x_test.shape
    ((7, 2), (3, 2))
    >>> sorted(x_train[:, 0].tolist() + x_test[:, 0].tolist()) == x[:, 0].tolist()
    True
    """
    where = "train_test_split"
    xa, ta = _pair(where, x, t)
    fraction = number_in(where, "test_size", test_size, low=0.0, high=1.0)
    n = xa.shape[0]
    rng = np.random.default_rng(seed)
    if stratify:
        if ta.ndim > 2:
            fail(
                where,
                "t",
                "labels (N,) or (N, 1), or one-hot (N, C) when stratify=True",
                str(ta.shape),
            )
        labels = ta
        if ta.ndim == 2:  # a column (N, 1) holds the labels; wider rows are one-hot
            labels = ta[:, 0] if ta.shape[1] == 1 else ta.argmax(axis=1)
        classes, inverse = np.unique(labels, return_inverse=True)
        parts = [np.arange(0)]
        for c in range(classes.size):
            members = rng.permutation(np.flatnonzero(inverse == c))
            parts.append(members[: round(fraction * members.size)])
        test = rng.permutation(np.concatenate(parts))
        keep = np.ones(n, dtype=bool)
        keep[test] = False
        train = rng.permutation(np.flatnonzero(keep))
    else:
        order = rng.permutation(n)
        n_test = round(fraction * n)
        test, train = order[:n_test], order[n_test:]
    if test.size == 0 or train.size == 0:
        fail(
            where,
            "test_size",
            f"a fraction that leaves both parts non-empty for {n} samples",
            f"{test_size!r} ({train.size} training, {test.size} test samples)",
        )
    return (xa[train], ta[train]), (xa[test], ta[test])


class BatchLoader:
    """Mini-batches of host data, moved to the current backend one batch at a time.

    Iterate once per epoch. Each ``iter()`` call draws a fresh permutation from
    one generator seeded at construction, so epochs differ from each other but
    the whole sequence repeats for the same ``seed``. Only the batch being
    yielded is copied to the backend (with :func:`xplayers.asarray`, at the
    time it is yielded); ``x`` and ``t`` stay on the host.

    Parameters
    ----------
    x, t : array_like
        Host (NumPy) inputs and labels with the same length along axis 0.
    batch_size : int
        Samples per batch, at least 1.
    shuffle : bool, default True
        Visit samples in a new random order each epoch; otherwise in stored order.
    seed : int, numpy.random.Generator or None, default None
        Seed for :func:`numpy.random.default_rng`; None gives a different
        sequence of epochs every run.
    drop_last : bool, default False
        Skip the final batch of an epoch when it is smaller than ``batch_size``.

    Attributes
    ----------
    x, t : numpy.ndarray
        The host data.
    batch_size : int
    shuffle, drop_last : bool

    Raises
    ------
    xplayers.errors.LayerInputError
        If the lengths differ, ``batch_size`` is not an integer >= 1, or the data
        cannot be read as NumPy arrays (a ``ValueError``).

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.datasets import BatchLoader
    >>> x, t = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> loader = BatchLoader(x, t, batch_size=2, seed=0)
    >>> len(loader)
    3
    >>> [tb.shape[0] for xb, tb in loader]
    [2, 2, 1]
    >>> loader = BatchLoader(x, t, batch_size=2, shuffle=False, drop_last=True)
    >>> [[int(v) for v in tb] for xb, tb in loader]
    [[0, 1], [2, 3]]
    """

    def __init__(
        self,
        x: npt.ArrayLike,
        t: npt.ArrayLike,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: _Seed = None,
        drop_last: bool = False,
    ) -> None:
        self.x, self.t = _pair("BatchLoader", x, t)
        self.batch_size = positive_int("BatchLoader", "batch_size", batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = int(self.x.shape[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        n = self.x.shape[0]
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        return self._batches(order)

    def _batches(self, order: npt.NDArray[np.intp]) -> Iterator[tuple[Any, Any]]:
        stop = len(self) * self.batch_size if self.drop_last else order.size
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield asarray(self.x[idx]), asarray(self.t[idx])

    def __repr__(self) -> str:
        return (
            f"BatchLoader(n={self.x.shape[0]}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last})"
        )


def iterate_batches(
    x: npt.ArrayLike,
    t: npt.ArrayLike,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: _Seed = None,
    drop_last: bool = False,
) -> Iterator[tuple[Any, Any]]:
    """Yield one epoch of ``(xb, tb)`` mini-batches on the current backend.

    A one-epoch shortcut for ``iter(BatchLoader(...))``; arguments are checked
    at the call, not at the first batch. Use :class:`BatchLoader` to run
    several epochs from one seeded generator.

    Parameters
    ----------
    x, t : array_like
        Host (NumPy) inputs and labels with the same length along axis 0.
    batch_size : int
        Samples per batch, at least 1.
    shuffle : bool, default True
        Visit samples in random order; otherwise in stored order.
    seed : int, numpy.random.Generator or None, default None
        Seed for :func:`numpy.random.default_rng`.
    drop_last : bool, default False
        Skip the final batch when it is smaller than ``batch_size``.

    Yields
    ------
    xb, tb : array
        Batches created with :func:`xplayers.asarray` on the current backend.

    Raises
    ------
    xplayers.errors.LayerInputError
        If the lengths differ, ``batch_size`` is not an integer >= 1, or the data
        cannot be read as NumPy arrays (a ``ValueError``).

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.datasets import iterate_batches
    >>> x, t = np.zeros((7, 3)), np.arange(7)
    >>> [xb.shape for xb, tb in iterate_batches(x, t, 3, seed=0)]
    [(3, 3), (3, 3), (1, 3)]
    """
    xa, ta = _pair("iterate_batches", x, t)
    size = positive_int("iterate_batches", "batch_size", batch_size)
    return iter(BatchLoader(xa, ta, size, shuffle=shuffle, seed=seed, drop_last=drop_last))
