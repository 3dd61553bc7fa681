"""What the commands share: argument types, option groups, data loading, error lines.

Every argument type checks its value with the library's own checkers
(:mod:`xplayers._validation`), so the command line refuses exactly what the
API refuses, with argparse's one-line usage error (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import numpy.typing as npt

from xplayers._validation import (
    number_in,
    positive_int,
    positive_ints,
    positive_number,
    seed_or_none,
    writable_file,
)
from xplayers.backend import BACKENDS, get_backend
from xplayers.errors import LayerInputError

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
    "load_data",
    "non_negative_float",
    "positive_float",
    "positive_integer",
    "seed",
    "usage",
    "weight_init",
]

PROG = "xplayers"
#: Classes of both datasets (the digits 0 to 9).
CLASSES = 10
#: The datasets the commands can load, with their help text.
DATASETS: dict[str, str] = {
    "digits": "the 1,797 8x8 digits shipped with xplayers",
    "mnist": "the IDX files in --mnist-dir",
}

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
    """``--init``: a standard deviation > 0, or a name the network checks."""
    try:
        float(text)
    except ValueError:
        return text.lower()
    return positive_float(text)


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
    from xplayers.datasets import load_digits, load_mnist, train_test_split

    if name not in DATASETS:
        raise LayerInputError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")
    if name == "mnist":
        return load_mnist(mnist_dir, dtype=dtype)
    x, t = load_digits(dtype=dtype)
    return train_test_split(x, t, test_size=test_size, seed=seed, stratify=True)


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
