"""What the commands share: argument types, option groups, data loading, error lines.

Every argument type checks its value with the library's own checkers
(:mod:`xplayers._validation`), so the command line refuses exactly what the
API refuses, with argparse's one-line usage error (exit status 2).
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import numpy as np
import numpy.typing as npt

from xplayers._files import writable_file
from xplayers._validation import (
    number_in,
    positive_int,
    positive_ints,
    positive_number,
    seed_or_none,
)
from xplayers.backend import BACKENDS, get_backend, to_numpy
from xplayers.datasets import load_digits, load_mnist, train_test_split
from xplayers.errors import DatasetError, LayerInputError
from xplayers.init import WEIGHT_INIT_NAMES

__all__ = [
    "CLASSES",
    "DATASETS",
    "PROG",
    "add_backend_options",
    "add_data_options",
    "backend_args",
    "check_writable",
    "describe_network",
    "fraction",
    "hidden_sizes",
    "label_classes",
    "load_data",
    "non_negative_float",
    "positive_float",
    "positive_integer",
    "scheduler_address",
    "seed",
    "usage",
    "weight_init",
]

PROG = "xplayers"
#: Classes of both shipped datasets (the digits 0 to 9); --data counts its own.
CLASSES = 10
#: The datasets the commands can load, with their help text.
DATASETS: dict[str, str] = {
    "digits": "the 1,797 8x8 digits shipped with xplayers",
    "mnist": "the IDX files in --mnist-dir",
}

#: The protocols of dask.distributed a scheduler can be reached with from another process.
SCHEDULER_PROTOCOLS = ("tcp", "tls", "ws", "wss", "ucx")
_ADDRESS = re.compile(
    r"(?:(?P<protocol>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+):(?P<port>[0-9]{1,5})/?"
)

T = TypeVar("T")
Pair = tuple[npt.NDArray[Any], npt.NDArray[Any]]


# --------------------------------------------------------------------------- argument types


def _argument_type(
    parse: Callable[[str], Any], check: Callable[[Any], T], what: str
) -> Callable[[str], T]:
    """An argparse type: parse the text, then check the value with the library's checker."""

    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        try:
            return check(value)
        except LayerInputError as exc:  # "where: argument 'x': expected ...; got ..."
            expected = str(exc).partition("expected ")[2].rpartition("; got")[0] or what
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    return convert


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


positive_integer = _argument_type(int, lambda v: positive_int("", "", v), "an integer >= 1")
positive_float = _argument_type(float, lambda v: positive_number("", "", v), "a number > 0")
non_negative_float = _argument_type(
    float, lambda v: number_in("", "", v, low=0.0, low_open=False), "a number >= 0"
)
fraction = _argument_type(
    float, lambda v: number_in("", "", v, low=0.0, high=1.0), "a fraction between 0 and 1"
)
seed = _argument_type(int, lambda v: seed_or_none("", "", v), "an integer >= 0")
hidden_sizes = _argument_type(
    _ints,
    lambda v: positive_ints("", "", v),
    "hidden layer sizes as integers >= 1 separated by commas",
)


def weight_init(text: str) -> float | str:
    """``--init``: a standard deviation > 0, or a weight-scale name (he, relu...)."""
    try:
        float(text)
    except ValueError:
        name = text.lower()
        if name not in WEIGHT_INIT_NAMES:
            raise argparse.ArgumentTypeError(
                f"expected a standard deviation > 0 or one of {', '.join(WEIGHT_INIT_NAMES)}, "
                f"got {text!r}"
            ) from None
        return name
    return positive_float(text)


def scheduler_address(text: str) -> str:
    """``--scheduler``: ``[PROTOCOL://]HOST:PORT`` of a dask.distributed scheduler.

    Checked when parsed, so that a typo is a usage error rather than an
    error from deep inside dask.distributed; ``inproc://`` addresses name
    a scheduler inside one process, which the command cannot reach.
    """
    match = _ADDRESS.fullmatch(text)
    protocol = (match["protocol"] or "tcp").lower() if match else None
    if match is None or protocol not in SCHEDULER_PROTOCOLS or int(match["port"]) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected a scheduler address [PROTOCOL://]HOST:PORT with PROTOCOL one of "
            f"{', '.join(SCHEDULER_PROTOCOLS)} (e.g. tcp://127.0.0.1:8786), got {text!r}"
        )
    return text


# --------------------------------------------------------------------------- option groups


def add_backend_options(p: argparse.ArgumentParser) -> None:
    """``--backend`` (from the backend registry) and ``--device``."""
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="array backend (default: $XPLAYERS_BACKEND, else numpy)",
    )
    p.add_argument(
        "--device",
        help="device of the backend: cpu, a GPU index or cuda:N (cupy), cuda:N or mps (torch), "
        "gpu:N (jax), device1 (array_api_strict)",
    )


def add_data_options(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--dataset``, ``--mnist-dir`` and ``--test-size``."""
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="digits" if defaults else None,
        help="; ".join(f"{k}: {v}" for k, v in DATASETS.items())
        + (" (default: digits)" if defaults else " (default: as trained)"),
    )
    p.add_argument(
        "--mnist-dir",
        metavar="DIR",
        help="directory holding the four MNIST IDX files (default: $XPLAYERS_MNIST_DIR)",
    )
    p.add_argument(
        "--test-size",
        type=fraction,
        help="digits only: fraction held out for testing, split per class"
        + (" (default: 0.2)" if defaults else " (default: as trained)"),
    )


# --------------------------------------------------------------------------- helpers


def usage(args: argparse.Namespace, message: str) -> NoReturn:
    """Report a usage error of the current command on one line and exit with status 2."""
    print(f"{PROG}: error: {message} (see '{PROG} {args.command} --help')", file=sys.stderr)
    raise SystemExit(2)


def check_writable(args: argparse.Namespace, option: str) -> None:
    """Check the file of ``--option`` can be written (see :func:`writable_file`), or exit 2."""
    path = getattr(args, option.replace("-", "_"))
    if path is None:
        return
    try:
        writable_file(PROG, f"--{option}", path)
    except LayerInputError as exc:
        usage(args, str(exc).removeprefix(f"{PROG}: "))


def backend_args(args: argparse.Namespace) -> tuple[str, Any]:
    """The backend and device named on the command line, else the current ones."""
    if args.backend is not None:
        return args.backend, args.device
    current = get_backend()
    return current.name, current.device if args.device is None else args.device


def load_data(
    name: str, mnist_dir: str | None, test_size: float, seed: int, dtype: str
) -> tuple[Pair, Pair]:
    """The training and test sets of dataset `name` (:data:`DATASETS`)."""
    if name not in DATASETS:
        raise LayerInputError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")
    if name == "mnist":
        return load_mnist(mnist_dir, dtype=dtype)
    x, t = load_digits(dtype=dtype)
    return train_test_split(x, t, test_size=test_size, seed=seed, stratify=True)


def label_classes(where: str, labels: Iterable[Any]) -> int:
    """The number of classes streamed labels hold, read block by block.

    Each of `labels` (:class:`~xplayers.datasets.streaming.Rows`) holds
    one-hot rows, whose width is the count, or integer class indices from
    0, whose largest value plus one is. The largest over all of them is
    returned.

    Raises
    ------
    xplayers.errors.DatasetError
        Labels of another kind (floats, 3-d), negative, or of fewer than two
        classes.
    """
    classes = 0
    for t in labels:
        if t.ndim == 2:
            classes = max(classes, int(t.shape[1]))
            continue
        if t.ndim != 1 or t.dtype.kind not in "iu":
            raise DatasetError(
                f"{where}: expected labels t of integer class indices (N,) or one-hot rows "
                f"(N, C); got shape {tuple(t.shape)} and dtype {t.dtype}"
            )
        for start, stop in itertools.pairwise(t.cuts):
            block = np.asarray(to_numpy(t.read(start, stop)))
            if block.size == 0:
                continue
            low = int(block.min())
            if low < 0:
                raise DatasetError(
                    f"{where}: expected labels t of class indices >= 0; got {low} in rows "
                    f"{start}:{stop}"
                )
            classes = max(classes, int(block.max()) + 1)
    if classes < 2:
        raise DatasetError(f"{where}: expected labels t of at least two classes; got {classes}")
    return classes


def describe_network(network: Any) -> str:
    """``"MultiLayerNet 64-100-10"``: the class and the layer widths."""
    config = network.config()
    name = str(config.get("class", type(network).__name__))
    sizes: list[int] = []
    if "input_size" in config and "output_size" in config:
        hidden = config.get("hidden_size_list", config.get("hidden_size", []))
        hidden = hidden if isinstance(hidden, list) else [hidden]
        sizes = [config["input_size"], *hidden, config["output_size"]]
    return f"{name} {'-'.join(map(str, sizes))}" if sizes else name
