"""Classification metrics of a network's scores: top-k accuracy, the confusion matrix, chance.

Each metric takes the scores ``(N, C)`` a network's ``predict`` returns and the
targets in any form ``accuracy`` accepts (integer labels ``(N,)`` or one-hot
rows ``(N, C)``, checked by the same rule), and computes on the scores'
backend and device: the counts are array operations, read back once at the
end, so a loop over chunks (as :func:`xplayers.evaluate` runs) does not wait
for the device at every chunk.

Ties count the way ``argmax`` breaks them: of equal scores, the class with the
smaller index ranks first, so ``top_k_accuracy(scores, t, k=1)`` is exactly
the network's ``accuracy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
import numpy.typing as npt

from xplayers._validation import describe, fail, positive_int
from xplayers.backend import materialize_all, namespace, to_numpy
from xplayers.errors import LayerInputError
from xplayers.layers.softmax_with_loss import target_labels

__all__ = ["Counts", "chance_accuracy", "confusion_matrix", "count", "top_k_accuracy"]

#: Rows whose one-hot matrix product is exact in float32 (counts below 2**24).
_ROWS = 2**20


@dataclass
class Counts:
    """Counts of one or more batches, as arrays on the scores' backend (0-d or ``(C, C)``).

    :func:`count` makes one per batch; ``+`` adds two (an array addition, no
    read-back); :meth:`read` brings them to the host at the end.

    Attributes
    ----------
    samples : int
        Rows counted.
    top_k : int or None
        The ``k`` of :attr:`hits`.
    hits : array or None
        Rows whose target is among the `top_k` highest scores.
    confusion : array or None
        ``confusion[i, j]``: rows of class ``i`` predicted as ``j``.
    outside : array
        Labels outside ``0..C-1`` (none when the data are right).
    """

    samples: int
    top_k: int | None
    hits: Any
    confusion: Any
    outside: Any

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.samples + other.samples,
            self.top_k,
            None if self.hits is None else self.hits + other.hits,
            None if self.confusion is None else self.confusion + other.confusion,
            self.outside + other.outside,
        )

    def read(self, where: str) -> dict[str, Any]:
        """The host values: ``top_k_accuracy`` (a float) and ``confusion_matrix`` (int64).

        Raises
        ------
        LayerInputError
            Some labels lie outside ``0..C-1``.
        """
        # lazy (Dask) counts share the predictions: computed together, in one scheduler run
        counted, hits, confusion = materialize_all([self.outside, self.hits, self.confusion])
        outside = int(to_numpy(counted))
        if outside:
            classes = "the classes of the scores' columns"
            raise LayerInputError(
                f"{where}: argument 't': expected labels from 0 to C-1 ({classes}); "
                f"got {outside} label{'s' if outside > 1 else ''} outside that range"
            )
        out: dict[str, Any] = {}
        if hits is not None:
            out["top_k_accuracy"] = float(to_numpy(hits)) / self.samples
        if confusion is not None:
            out["confusion_matrix"] = np.asarray(to_numpy(confusion), dtype=np.int64)
        return out


def _scores(where: str, scores: Any) -> Any:
    if not array_api_compat.is_array_api_obj(scores) or scores.ndim != 2 or scores.shape[0] == 0:
        fail(where, "scores", "a non-empty array of shape (N, C)", describe(scores))
    return namespace(scores)


def count(
    where: str, scores: Any, t: Any, *, top_k: int | None = None, confusion: bool = False
) -> Counts:
    """Count the top-`top_k` hits and/or the confusion matrix of one batch, on its backend.

    Parameters
    ----------
    where : str
        The function error messages name.
    scores : array, shape (N, C)
    t : array
        Labels ``(N,)`` or one-hot rows ``(N, C)`` on the scores' backend.
    top_k : int, optional
        Count the rows whose target is among the `top_k` highest scores.
    confusion : bool, default False
        Count the ``(C, C)`` confusion matrix.

    Returns
    -------
    Counts
        Arrays on the scores' backend; nothing has been read back.
    """
    xp = _scores(where, scores)
    n, c = int(scores.shape[0]), int(scores.shape[1])
    k = None if top_k is None else positive_int(where, "k", top_k)
    predicted = xp.argmax(scores, axis=1)
    labels = target_labels(where, scores, t, predicted.dtype)
    index = predicted.dtype
    device = array_api_compat.device(scores)
    classes = xp.arange(c, dtype=index, device=device)
    outside = xp.sum(xp.astype((labels < 0) | (labels >= c), index))
    hits = None
    if k is not None:
        is_target = labels[:, None] == classes[None, :]
        target = xp.sum(xp.where(is_target, scores, xp.zeros_like(scores)), axis=1)[:, None]
        ahead = (scores > target) | ((scores == target) & (classes[None, :] < labels[:, None]))
        rank = xp.sum(xp.astype(ahead, index), axis=1)
        hits = xp.sum(xp.astype(rank < k, index))
    matrix = None
    if confusion:
        for start in range(0, n, _ROWS):  # exact float products, chunk by chunk; no read-back
            rows = slice(start, min(start + _ROWS, n))
            true = xp.astype(labels[rows, None] == classes[None, :], scores.dtype)
            said = xp.astype(predicted[rows, None] == classes[None, :], scores.dtype)
            part = xp.astype(xp.round(xp.matmul(xp.matrix_transpose(true), said)), index)
            matrix = part if matrix is None else matrix + part
    return Counts(n, k, hits, matrix, outside)


def top_k_accuracy(scores: Any, t: Any, k: int = 1) -> float:
    """The fraction of rows whose target class is among the `k` highest scores.

    Parameters
    ----------
    scores : array, shape (N, C)
        Scores of any backend (``net.predict(x)``).
    t : array
        Integer labels ``(N,)`` in ``0..C-1`` or one-hot rows ``(N, C)``, on
        the scores' backend and device.
    k : int, default 1
        How many of the highest scores count; ``k=1`` is the accuracy.

    Returns
    -------
    float

    Raises
    ------
    LayerInputError
        `scores` is not a non-empty ``(N, C)`` array, `t` is not one of the
        forms above or has labels outside ``0..C-1``, or `k` is not an
        integer >= 1.

    Examples
    --------
    >>> import xplayers as xpl
    >>> from xplayers.metrics import top_k_accuracy
    >>> scores = xpl.asarray([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]])
    >>> t = xpl.asarray([2, 0])
    >>> top_k_accuracy(scores, t, k=1), top_k_accuracy(scores, t, k=2)
    (0.5, 1.0)
    """
    result: float = count("top_k_accuracy", scores, t, top_k=k).read("top_k_accuracy")[
        "top_k_accuracy"
    ]
    return result


def confusion_matrix(scores: Any, t: Any) -> npt.NDArray[np.int64]:
    """The ``(C, C)`` confusion matrix: entry ``[i, j]`` counts rows of class ``i`` predicted ``j``.

    The predicted class is the argmax of each row of `scores` (as
    ``accuracy`` takes it); rows are the true classes, columns the
    predicted ones, so the diagonal holds the correct predictions.

    Parameters
    ----------
    scores : array, shape (N, C)
        Scores of any backend (``net.predict(x)``).
    t : array
        Integer labels ``(N,)`` in ``0..C-1`` or one-hot rows ``(N, C)``, on
        the scores' backend and device.

    Returns
    -------
    numpy.ndarray of int64, shape (C, C)
        Counted on the scores' backend, read back once.

    Raises
    ------
    LayerInputError
        As :func:`top_k_accuracy`.

    Examples
    --------
    >>> import xplayers as xpl
    >>> from xplayers.metrics import confusion_matrix
    >>> scores = xpl.asarray([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> confusion_matrix(scores, xpl.asarray([0, 1, 1]))
    array([[1, 0],
           [1, 1]])
    """
    result: npt.NDArray[np.int64] = count("confusion_matrix", scores, t, confusion=True).read(
        "confusion_matrix"
    )["confusion_matrix"]
    return result


def chance_accuracy(t: npt.ArrayLike) -> float:
    """The accuracy of always predicting the most common class of host targets `t`.

    A network whose accuracy is no higher has learnt nothing a constant
    answer would not give (on balanced classes this is ``1/C``).

    Parameters
    ----------
    t : array_like
        Host integer labels ``(N,)`` or one-hot rows ``(N, C)``, N >= 1.

    Returns
    -------
    float

    Examples
    --------
    >>> from xplayers.metrics import chance_accuracy
    >>> chance_accuracy([0, 1, 1, 2])
    0.5
    """
    labels = np.asarray(t)
    if labels.ndim == 2:
        labels = np.argmax(labels, axis=1)
    if labels.ndim != 1 or labels.shape[0] == 0 or labels.dtype.kind not in "iu":
        fail(
            "chance_accuracy",
            "t",
            "integer labels (N,) or one-hot rows (N, C) with N >= 1",
            f"shape {labels.shape} and dtype {labels.dtype}",
        )
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max()) / float(labels.shape[0])
