"""The 8x8 handwritten digits shipped with xplayers (UCI optdigits, CC BY 4.0)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from xplayers.datasets._common import DatasetError, check_dtype, prepare

__all__ = ["DIGITS_SHA256", "load_digits"]

#: SHA-256 of ``xplayers/datasets/data/digits.npz``, checked on every load.
DIGITS_SHA256 = "af104d81e7cd419be5f343d23c6ca2e4e4ff847b06636260802df8e903c6183f"

_FILE = "digits.npz"
_N = 1797


def _read_raw() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    ref = resources.files("xplayers.datasets") / "data" / _FILE
    where = f"xplayers/datasets/data/{_FILE}"
    try:
        blob = ref.read_bytes()
    except OSError as exc:
        raise DatasetError(f"load_digits: cannot read {where}: {exc}; reinstall xplayers") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if digest != DIGITS_SHA256:
        raise DatasetError(
            f"load_digits: {where} is damaged: SHA-256 is {digest}, "
            f"expected {DIGITS_SHA256}; reinstall xplayers"
        )
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:  # pragma: no cover
        raise DatasetError(f"load_digits: cannot parse {where}: {exc}") from exc
    return images, labels


def load_digits(
    *,
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    dtype: npt.DTypeLike = "float32",
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Load the 1,797 8x8 handwritten digits that ship with xplayers.

    The images are the test part of the UCI "Optical Recognition of
    Handwritten Digits" data set (E. Alpaydin and C. Kaynak, 1998,
    doi:10.24432/C50P49), licensed CC BY 4.0; each pixel counts the "on"
    pixels of a 4x4 block of a 32x32 bitmap, so values are 0..16. The file's
    SHA-256 is checked on every call. Nothing is downloaded.

    Parameters
    ----------
    normalize : bool, default True
        Divide pixel values by 16 so they lie in [0, 1]. Needs a floating ``dtype``.
    flatten : bool, default True
        Return images as rows of 64 values, shape ``(N, 64)``; otherwise as
        ``(N, 1, 8, 8)`` (channel first, as the book's convolution chapters expect).
    one_hot_label : bool, default False
        Return labels as an ``(N, 10)`` one-hot array of ``dtype`` instead of
        ``int64`` class indices of shape ``(N,)``.
    dtype : dtype-like, default "float32"
        Data type of the images (and of one-hot labels).

    Returns
    -------
    x : numpy.ndarray
        Images, on the host.
    t : numpy.ndarray
        Labels 0..9, on the host.

    Raises
    ------
    DatasetError
        If the shipped file is missing or damaged.
    xplayers.errors.LayerInputError
        If ``dtype`` is not numeric, or not floating while ``normalize`` is true
        (a ``ValueError``).

    See Also
    --------
    train_test_split : Split the digits into training and test parts.
    BatchLoader : Feed mini-batches to the current backend.

    Examples
    --------
    >>> from xplayers.datasets import load_digits
    >>> x, t = load_digits()
    >>> x.shape, x.dtype, t.shape, t.dtype
    ((1797, 64), dtype('float32'), (1797,), dtype('int64'))
    >>> float(x.min()), float(x.max())
    (0.0, 1.0)
    >>> x, t = load_digits(flatten=False, one_hot_label=True)
    >>> x.shape, t.shape, t[0].tolist()
    ((1797, 1, 8, 8), (1797, 10), [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    """
    dt = check_dtype("load_digits", dtype, normalize)
    images, labels = _read_raw()
    if images.shape != (_N, 64) or labels.shape != (_N,):  # pragma: no cover
        raise DatasetError(f"load_digits: unexpected shapes {images.shape}, {labels.shape}")
    return prepare(
        images,
        labels,
        image_shape=(8, 8),
        max_value=16.0,
        normalize=normalize,
        flatten=flatten,
        one_hot_label=one_hot_label,
        dtype=dt,
    )
