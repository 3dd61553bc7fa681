"""Datasets for the book's examples, loaded as host NumPy arrays, and batching helpers.

- :func:`load_digits` -- 1,797 8x8 handwritten digits shipped with xplayers
  (UCI optdigits, CC BY 4.0; see ``data/LICENSE-digits.txt``).
- :func:`load_mnist` -- MNIST from the four IDX files in a local directory
  (argument or the ``XPLAYERS_MNIST_DIR`` environment variable); never downloads.
- :func:`train_test_split` -- seeded, optionally stratified split.
- :class:`BatchLoader` / :func:`iterate_batches` -- mini-batches moved to the
  current backend one batch at a time.
"""

from xplayers.datasets._common import DatasetError
from xplayers.datasets.batching import BatchLoader, iterate_batches, train_test_split
from xplayers.datasets.digits import DIGITS_SHA256, load_digits
from xplayers.datasets.mnist import MNIST_DIR_ENV, MNIST_FILES, load_mnist

__all__ = [
    "DIGITS_SHA256",
    "MNIST_DIR_ENV",
    "MNIST_FILES",
    "BatchLoader",
    "DatasetError",
    "iterate_batches",
    "load_digits",
    "load_mnist",
    "train_test_split",
]
