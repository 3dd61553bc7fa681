"""Class labels of targets for the metrics: :func:`class_labels`.

:func:`xplayers.metrics.top_k_accuracy` and
:func:`xplayers.metrics.confusion_matrix` accept the targets that
``SoftmaxWithLoss`` and ``accuracy`` accept, checked by their one rule
(``xplayers.layers.softmax_with_loss.targets``), and count labels outside
``[0, C)`` on the device instead of reading them at every call.
"""

from __future__ import annotations

from typing import Any

from xplayers.backend import namespace
from xplayers.layers.softmax_with_loss import targets

__all__ = ["class_labels"]


def class_labels(where: str, t: Any, scores: Any, dtype: Any) -> Any:
    """The integer class labels ``(N,)`` of targets `t` for `scores` ``(N, C)``.

    Parameters
    ----------
    where : str
        The function the message names (``"TwoLayerNet.accuracy"``).
    t : array
        The targets of ``SoftmaxWithLoss`` (its ``targets`` rule): integer
        labels ``(N,)`` (or a column ``(N, 1)``), or one-hot rows ``(N, C)``
        whose argmax is taken, on the backend and device of `scores`.
    scores : array, shape (N, C)
        The network's scores.
    dtype : dtype
        The dtype of the labels returned: that of ``argmax(scores, axis=1)``,
        so they compare with the predicted classes directly.

    Returns
    -------
    array, shape (N,)
        The labels, in `dtype`. Their range is not read here (that would
        wait for the device).

    Raises
    ------
    LayerInputError
        `t` is not an array, lives on another backend or device, or has
        another shape or a non-integer dtype (for labels).
    """
    t = targets(where, scores, t, check_labels=False)  # the range is counted on the device
    labels = namespace(scores).argmax(t, axis=1) if t.ndim == 2 else t
    return labels if labels.dtype == dtype else namespace(scores).astype(labels, dtype)
