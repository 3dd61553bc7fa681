"""MNIST from the four standard IDX files in a local directory (never downloads)."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xplayers.datasets._common import DatasetError, check_dtype, prepare

__all__ = ["MNIST_DIR_ENV", "MNIST_FILES", "load_mnist"]

#: Environment variable read by :func:`load_mnist` when ``path`` is None.
MNIST_DIR_ENV = "XPLAYERS_MNIST_DIR"

#: The IDX file names looked for (each may also end in ``.gz``).
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

_SOURCES = (
    "MNIST is available from https://yann.lecun.com/exdb/mnist/ and mirrors such as "
    "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's MNIST(root, download=True) "
    "also leaves these files in root/MNIST/raw)"
)

_Array = npt.NDArray[Any]


def _locate(directory: Path) -> list[Path]:
    found: list[Path] = []
    missing: list[str] = []
    for name in MNIST_FILES:
        # Some copies (Kaggle's among them) name the files train-images.idx3-ubyte.
        dotted = name.replace("-idx", ".idx")
        candidates = [directory / n for n in (name, f"{name}.gz", dotted, f"{dotted}.gz")]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missing.append(f"{name}[.gz]")
        else:
            found.append(hit)
    if missing:
        raise DatasetError(
            f"load_mnist: missing {', '.join(missing)} in directory {directory} "
            f"(looked for {', '.join(MNIST_FILES)}, each plain or .gz). {_SOURCES}; "
            "nothing is downloaded automatically."
        )
    return found


_CHUNK = 1 << 20


def _read_upto(f: Any, n: int) -> bytes:
    """Read at most `n` bytes of `f`, in chunks, so memory follows what is really there."""
    parts: list[bytes] = []
    while n > 0:
        part = f.read(min(n, _CHUNK))
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _read_idx(path: Path, ndim: int) -> npt.NDArray[np.uint8]:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions, checking its header.

    The file is read as a stream and never past the size its header declares
    (plus one byte, to detect trailing data): a small ``.gz`` that inflates to
    gigabytes is refused after reading no more than a legitimate file would.
    """
    gz = path.suffix == ".gz"
    what = "decompressed file" if gz else "file"
    header = 4 + 4 * ndim
    try:
        with gzip.open(path, "rb") if gz else path.open("rb") as f:
            head = _read_upto(f, header)
            if len(head) < header:
                raise DatasetError(
                    f"load_mnist: {path} is truncated: {what} has {len(head)} bytes, "
                    f"shorter than the {header}-byte IDX header"
                )
            magic, *dims = struct.unpack(f">{ndim + 1}I", head)
            expected_magic = 0x0800 | ndim
            if magic != expected_magic:
                kind = "image" if ndim == 3 else "label"
                raise DatasetError(
                    f"load_mnist: {path} has magic number 0x{magic:08X}, expected "
                    f"0x{expected_magic:08X} (IDX {kind} file of unsigned bytes)"
                )
            if ndim == 3 and (dims[1] == 0 or dims[2] == 0):
                raise DatasetError(f"load_mnist: {path} declares empty {dims[1]}x{dims[2]} images")
            size = header + math.prod(dims)
            # A plain file's length is known before its data is read; a
            # compressed one is inflated one byte past the declared size at most.
            length = os.fstat(f.fileno()).st_size if not gz else size
            data = _read_upto(f, size - header + 1) if length == size else b""
            if length == size:
                length = header + len(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"load_mnist: cannot read {path}: {exc}") from exc
    if length != size:
        if length < size:
            got, problem = f"{length} bytes", "truncated"
        elif gz:  # reading stopped one byte past the declared size
            got, problem = f"more than {size} bytes", "trailing bytes"
        else:
            got, problem = f"{length} bytes", f"{length - size} trailing bytes"
        raise DatasetError(
            f"load_mnist: {path} has {got} ({what}) but its header "
            f"(dimensions {tuple(dims)}) implies {size}: {problem}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _read_pair(
    img_path: Path, lbl_path: Path
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    images, labels = _read_idx(img_path, 3), _read_idx(lbl_path, 1)
    if images.shape[0] == 0:
        raise DatasetError(f"load_mnist: {img_path} declares 0 images; nothing to train or test on")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"load_mnist: {img_path} holds {images.shape[0]} images but "
            f"{lbl_path} holds {labels.shape[0]} labels"
        )
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        raise DatasetError(
            f"load_mnist: {lbl_path} has label {labels[bad[0]]} at index {bad[0]}, expected 0..9"
        )
    return images, labels


def load_mnist(
    path: str | os.PathLike[str] | None = None,
    *,
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    dtype: npt.DTypeLike = "float32",
) -> tuple[tuple[_Array, _Array], tuple[_Array, _Array]]:
    """Load MNIST from the standard IDX files in a local directory.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` from ``path``;
    each may be plain or gzip-compressed (``.gz``; a plain file wins if both
    exist), and the dotted spelling ``train-images.idx3-ubyte`` of some
    copies is accepted too. Every header is checked (magic number, dimensions, exact file
    length) and labels must be 0..9. Nothing is downloaded: get the files from
    https://yann.lecun.com/exdb/mnist/ or a mirror first.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Directory holding the four files. If omitted, the environment variable
        ``XPLAYERS_MNIST_DIR`` names it.
    normalize : bool, default True
        Divide pixel values by 255 so they lie in [0, 1]. Needs a floating ``dtype``.
    flatten : bool, default True
        Return images as rows of ``H*W`` (784) values; otherwise as ``(N, 1, H, W)``.
    one_hot_label : bool, default False
        Return labels as an ``(N, 10)`` one-hot array of ``dtype`` instead of
        ``int64`` class indices.
    dtype : dtype-like, default "float32"
        Data type of the images (and of one-hot labels).

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuples of numpy.ndarray
        The 60,000 training and 10,000 test samples, on the host, as in the
        book's ``dataset/mnist.py``.

    Raises
    ------
    DatasetError
        If no directory is given, a file is missing (the message lists the names
        looked for and where to get them), or a file is damaged or inconsistent.
    xplayers.errors.LayerInputError
        If ``dtype`` is not numeric, or not floating while ``normalize`` is true
        (a ``ValueError``).

    Examples
    --------
    >>> import os
    >>> from xplayers.datasets import load_mnist
    >>> if os.environ.get("XPLAYERS_MNIST_DIR"):  # doctest: +SKIP
    ...     (x_train, t_train), (x_test, t_test) = load_mnist()
    ...     print(x_train.shape, t_train.shape, x_test.shape, t_test.shape)
    (60000, 784) (60000,) (10000, 784) (10000,)
    >>> load_mnist("/nonexistent")
    Traceback (most recent call last):
    ...
    xplayers.errors.DatasetError: load_mnist: directory /nonexistent does not exist
    """
    dt = check_dtype("load_mnist", dtype, normalize)
    if path is None:
        env = os.environ.get(MNIST_DIR_ENV)
        if not env:
            raise DatasetError(
                f"load_mnist: no directory given; pass path= or set {MNIST_DIR_ENV} "
                f"to the directory holding {', '.join(MNIST_FILES)} (plain or .gz). {_SOURCES}."
            )
        path = env
        origin = f" (from {MNIST_DIR_ENV})"
    else:
        origin = ""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise DatasetError(f"load_mnist: directory {directory}{origin} {problem}")
    files = _locate(directory)
    train = _read_pair(files[0], files[1])
    test = _read_pair(files[2], files[3])
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DatasetError(
            f"load_mnist: training images are {train[0].shape[1:]} but test images "
            f"are {test[0].shape[1:]}"
        )
    shape = (int(train[0].shape[1]), int(train[0].shape[2]))

    def convert(pair: tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]) -> tuple[_Array, _Array]:
        return prepare(
            *pair,
            image_shape=shape,
            max_value=255.0,
            normalize=normalize,
            flatten=flatten,
            one_hot_label=one_hot_label,
            dtype=dt,
        )

    return convert(train), convert(test)
