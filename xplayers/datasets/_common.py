"""Shared pieces of the dataset loaders: the error type and the book's preprocessing."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from xplayers._validation import fail
from xplayers.errors import DatasetError

__all__ = ["DatasetError", "check_dtype", "prepare"]


def check_dtype(where: str, dtype: npt.DTypeLike, normalize: bool) -> np.dtype[Any]:
    """Validate the ``dtype`` option of the loader ``where`` and return it as a dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = np.dtype(object)
    if dt.kind not in "fiu":
        fail(where, "dtype", "a real numeric NumPy dtype such as 'float32'", repr(dtype))
    if normalize and dt.kind != "f":
        fail(
            where,
            "dtype",
            "a floating dtype when normalize=True",
            repr(dt.name),
            "Pass normalize=False to keep raw integer pixel values",
        )
    return dt


def prepare(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint8],
    *,
    image_shape: tuple[int, int],
    max_value: float,
    normalize: bool,
    flatten: bool,
    one_hot_label: bool,
    dtype: np.dtype[Any],
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Convert raw ``uint8`` images and labels the way the book's loaders do.

    ``images`` has one image per sample; ``labels`` holds class indices 0..9.
    Returns ``x`` of ``dtype`` (divided by ``max_value`` when ``normalize``),
    shaped ``(N, H*W)`` or ``(N, 1, H, W)``, and ``t`` as ``int64`` indices or
    as an ``(N, 10)`` one-hot array of ``dtype``.
    """
    x = images.astype(dtype)
    if normalize:
        x /= dtype.type(max_value)
    n = images.shape[0]
    h, w = image_shape
    x = x.reshape(n, h * w) if flatten else x.reshape(n, 1, h, w)  # also for n == 0
    t: npt.NDArray[Any] = labels.astype(np.int64)
    if one_hot_label:
        t = np.zeros((n, 10), dtype=dtype)
        t[np.arange(n), labels] = 1
    return x, t
