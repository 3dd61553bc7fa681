r"""The ``xplayers`` command: ``train``, ``evaluate`` and ``info``.

Run ``xplayers --help`` (or ``python -m xplayers --help``). With no options,
``xplayers train`` trains a network on the 8x8 digits that ship with
xplayers and prints its test accuracy. The book's chapter-5 experiment is::

    xplayers train --dataset mnist --mnist-dir DIR --network two-layer --hidden 50 \
        --optimizer sgd --lr 0.1 --batch-size 100 --iterations 10000

Errors are reported on one line of standard error, ``xplayers: error: ...``,
with exit status 2 for bad arguments and 1 for anything else that fails
(a missing file, an unusable backend, a diverging run); never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from xplayers.backend import BACKENDS, get_backend, report, use_backend
from xplayers.errors import XplayersError

__all__ = ["build_parser", "main"]

PROG = "xplayers"

#: The default learning rate of each optimizer on the command line.
DEFAULT_LR = {
    "sgd": 0.1,
    "momentum": 0.05,
    "nesterov": 0.05,
    "adagrad": 0.05,
    "rmsprop": 0.001,
    "adam": 0.005,
}
OPTIMIZERS = tuple(DEFAULT_LR)
#: Passes over the training data when neither --epochs nor --iterations is given.
DEFAULT_EPOCHS = 30
#: Classes of both datasets (the digits 0 to 9).
CLASSES = 10


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports errors on one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------- argument types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _hidden(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"expected hidden layer sizes as integers >= 1 separated by commas, got {text!r}"
        )
    return sizes


def _init(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text.lower()
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a standard deviation > 0, got {text!r}")
    return value


# --------------------------------------------------------------------------- parser


def _add_backend(p: argparse.ArgumentParser) -> None:
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


def _add_data(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    p.add_argument(
        "--dataset",
        choices=("digits", "mnist"),
        default="digits" if defaults else None,
        help="digits: the 1,797 8x8 digits shipped with xplayers; mnist: the IDX files "
        "in --mnist-dir" + (" (default: digits)" if defaults else " (default: as trained)"),
    )
    p.add_argument(
        "--mnist-dir",
        metavar="DIR",
        help="directory holding the four MNIST IDX files (default: $XPLAYERS_MNIST_DIR)",
    )
    p.add_argument(
        "--test-size",
        type=_fraction,
        help="digits only: fraction held out for testing, split per class"
        + (" (default: 0.2)" if defaults else " (default: as trained)"),
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``xplayers`` command."""
    parser = _Parser(
        prog=PROG,
        description="Train and evaluate the networks of Deep Learning from Scratch "
        "on any array backend.",
    )
    from xplayers._version import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser(
        "train",
        help="train a network and report its test accuracy",
        description="Train a network on the shipped digits or on MNIST, print one line per "
        "epoch and a summary with the test accuracy.",
    )
    _add_backend(t)
    _add_data(t, defaults=True)
    t.add_argument(
        "--network",
        choices=("two-layer", "multi"),
        default="multi",
        help="TwoLayerNet (Affine-ReLU-Affine, chapter 5) or MultiLayerNet (chapter 6) "
        "(default: multi)",
    )
    t.add_argument(
        "--hidden",
        type=_hidden,
        default=[100],
        metavar="N[,N...]",
        help="hidden layer sizes; one for two-layer, a comma list for multi (default: 100)",
    )
    t.add_argument(
        "--activation",
        choices=("relu", "sigmoid"),
        help="multi only: hidden activation (default: relu)",
    )
    t.add_argument(
        "--init",
        type=_init,
        metavar="STD|NAME",
        help="initial weight scale: a standard deviation, or for multi 'relu'/'he' or "
        "'sigmoid'/'xavier' (default: 0.01 for two-layer, as in the book; for multi the "
        "scale suited to --activation)",
    )
    t.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="adam",
        help="update rule (default: adam)",
    )
    t.add_argument(
        "--lr",
        type=_positive_float,
        help="learning rate (default: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items())
        + ")",
    )
    t.add_argument(
        "--batch-size", type=_positive_int, default=100, help="samples per update (default: 100)"
    )
    length = t.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs",
        type=_positive_int,
        help=f"passes over the training data (default: {DEFAULT_EPOCHS})",
    )
    length.add_argument(
        "--iterations",
        type=_positive_int,
        help="number of updates instead of --epochs; evaluated every epoch and at the end",
    )
    t.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights, the split and the batch order (default: 0)",
    )
    t.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="floating dtype of data and parameters (default: float32)",
    )
    t.add_argument("--output", metavar="MODEL.npz", help="save the trained network here")
    t.add_argument("--plot", metavar="CURVE.png", help="save the learning curves as a PNG")
    t.add_argument(
        "--checkpoint", metavar="PATH.npz", help="save the network here after every epoch"
    )
    t.add_argument(
        "--quiet",
        action="store_true",
        help="print only the final summary (no per-epoch lines, no progress bar)",
    )
    t.set_defaults(handler=_train)

    e = sub.add_parser(
        "evaluate",
        help="loss and accuracy of a saved model",
        description="Load a model saved by 'xplayers train --output' and report its loss and "
        "accuracy. The digits split (seed and test size) defaults to the one the model "
        "was trained with.",
    )
    e.add_argument("model", metavar="MODEL", help="a model file written by xplayers")
    _add_backend(e)
    _add_data(e, defaults=False)
    e.add_argument(
        "--split",
        choices=("test", "train", "all"),
        default="test",
        help="which part of the data to evaluate (default: test)",
    )
    e.add_argument(
        "--seed", type=int, help="digits only: seed of the split (default: as trained, else 0)"
    )
    e.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1000,
        help="samples per evaluation chunk (default: 1000)",
    )
    e.set_defaults(handler=_evaluate)

    i = sub.add_parser(
        "info",
        help="backends, devices and library versions",
        description="Show every backend (installed, version, usable or why not, devices), "
        "the Python, NumPy and array-api-compat versions, and the BLAS library.",
    )
    i.set_defaults(handler=_info)
    return parser


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xplayers`` command and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for bad arguments, 1 when the command fails; the
        reason is printed as one line ``xplayers: error: ...`` on standard
        error.

    Examples
    --------
    >>> from xplayers.cli import main
    >>> main(["train", "--epochs", "0"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args))
    except SystemExit as exc:  # --help, --version and argument errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BrokenPipeError:  # the reader went away (`xplayers info | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit cannot fail again
        return 141
    except (XplayersError, OSError) as exc:
        _error(exc)
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130


def _error(exc: BaseException) -> None:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text += f": {exc.filename}"
    print(f"{PROG}: error: {text}", file=sys.stderr)


def _usage(args: argparse.Namespace, message: str) -> NoReturn:
    print(f"{PROG}: error: {message} (see '{PROG} {args.command} --help')", file=sys.stderr)
    raise SystemExit(2)


# --------------------------------------------------------------------------- data


_Pair = tuple[npt.NDArray[Any], npt.NDArray[Any]]


def _load_data(
    name: str, mnist_dir: str | None, test_size: float, seed: int, dtype: str
) -> tuple[_Pair, _Pair]:
    from xplayers.datasets import load_digits, load_mnist, train_test_split

    if name == "mnist":
        return load_mnist(mnist_dir, dtype=dtype)
    x, t = load_digits(dtype=dtype)
    return train_test_split(x, t, test_size=test_size, seed=seed, stratify=True)


# --------------------------------------------------------------------------- train


def _network(args: argparse.Namespace, input_size: int, output_size: int) -> Any:
    from xplayers.network import MultiLayerNet, TwoLayerNet

    if args.network == "two-layer":
        if len(args.hidden) != 1:
            _usage(args, f"--network two-layer takes one --hidden size, got {len(args.hidden)}")
        if args.activation is not None:
            _usage(args, "--activation applies to --network multi only")
        if isinstance(args.init, str):
            _usage(args, f"--network two-layer takes --init as a number, got {args.init!r}")
        std = 0.01 if args.init is None else args.init
        return TwoLayerNet(
            input_size,
            args.hidden[0],
            output_size,
            weight_init_std=std,
            seed=args.seed,
            dtype=args.dtype,
        )
    activation = args.activation or "relu"
    return MultiLayerNet(
        input_size,
        args.hidden,
        output_size,
        activation=activation,
        weight_init_std=activation if args.init is None else args.init,
        seed=args.seed,
        dtype=args.dtype,
    )


def _describe(network: Any) -> str:
    config = network.config()
    sizes = _layer_sizes(config)
    name = str(config.get("class", type(network).__name__))
    return f"{name} {'-'.join(map(str, sizes))}" if sizes else name


def _layer_sizes(config: dict[str, Any]) -> list[int]:
    if "input_size" in config and "output_size" in config:
        hidden = config.get("hidden_size_list", config.get("hidden_size", []))
        hidden = hidden if isinstance(hidden, list) else [hidden]
        return [config["input_size"], *hidden, config["output_size"]]
    return []


def _epoch_line(history: Any) -> str:
    test = history.test_acc[-1]
    return (
        f"epoch {history.epoch[-1]:6.2f}  iteration {history.iteration[-1]:6d}  "
        f"loss {history.train_loss[-1]:.4f}  train acc {history.train_acc[-1]:.4f}  "
        + (f"test acc {test:.4f}  " if test is not None else "")
        + f"{history.seconds[-1]:7.2f} s"
    )


def _train(args: argparse.Namespace) -> int:
    from xplayers.io import save
    from xplayers.optim import get_optimizer
    from xplayers.training import train

    if args.dataset == "mnist" and args.test_size is not None:
        _usage(args, "--test-size applies to --dataset digits only (MNIST has its own test set)")
    test_size = 0.2 if args.test_size is None else args.test_size
    for option in ("output", "plot", "checkpoint"):
        path = getattr(args, option)
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            _usage(args, f"--{option}: directory of {path!r} does not exist")
    epochs = None if args.iterations is not None else (args.epochs or DEFAULT_EPOCHS)
    lr = DEFAULT_LR[args.optimizer] if args.lr is None else args.lr
    with use_backend(*_backend_args(args)) as backend:
        train_set, test_set = _load_data(
            args.dataset, args.mnist_dir, test_size, args.seed, args.dtype
        )
        input_size = int(np.prod(train_set[0].shape[1:]))
        network = _network(args, input_size, CLASSES)
        optimizer = get_optimizer(args.optimizer, lr=lr)
        what = (
            f"{_describe(network)}, {args.optimizer} lr={lr:g}, batch {args.batch_size}, "
            f"{args.dtype}, {_where(backend)}"
        )
        if not args.quiet:
            print(
                f"training {what} on {args.dataset}: {len(train_set[0])} training, "
                f"{len(test_set[0])} test samples",
                flush=True,
            )
        start = time.perf_counter()
        history = train(
            network,
            optimizer,
            train_set,
            test_set,
            epochs=epochs,
            iterations=args.iterations,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=False if args.quiet else None,
            checkpoint=args.checkpoint,
            plot=args.plot,
            callback=None if args.quiet else lambda h: print(_epoch_line(h), flush=True),
        )
        seconds = time.perf_counter() - start
        if args.output is not None:
            save(
                network,
                args.output,
                metadata={
                    "dataset": {
                        "name": args.dataset,
                        "test_size": test_size if args.dataset == "digits" else None,
                        "seed": args.seed,
                    },
                    "optimizer": {"name": args.optimizer, "lr": lr},
                    "batch_size": args.batch_size,
                    "history": history.to_dict(),
                },
            )
    test_acc = history.test_acc[-1]
    print(
        f"test accuracy {test_acc:.4f} (train {history.train_acc[-1]:.4f}) after "
        f"{history.epoch[-1]:g} epoch{'' if history.epoch[-1] == 1 else 's'} "
        f"({history.iteration[-1]} iterations) in "
        f"{seconds:.2f} s: {what}"
    )
    for label, path in (("model", args.output), ("plot", args.plot)):
        if path is not None and not args.quiet:
            print(f"{label} saved to {path}")
    return 0


def _backend_args(args: argparse.Namespace) -> tuple[str, Any]:
    """The backend and device named on the command line, else the current ones."""
    if args.backend is not None:
        return args.backend, args.device
    current = get_backend()
    return current.name, current.device if args.device is None else args.device


# --------------------------------------------------------------------------- evaluate


def _evaluate(args: argparse.Namespace) -> int:
    from xplayers.io import load, read_metadata
    from xplayers.training import evaluate

    header = read_metadata(args.model)
    trained = header["metadata"].get("dataset")
    trained = trained if isinstance(trained, dict) else {}
    dataset = args.dataset or trained.get("name") or "digits"
    if dataset not in ("digits", "mnist"):
        dataset = "digits"
    test_size = args.test_size or trained.get("test_size") or 0.2
    seed = args.seed if args.seed is not None else trained.get("seed", 0)
    if not isinstance(seed, int) or not isinstance(test_size, float):
        _usage(args, "the model's metadata hold an invalid split; give --seed and --test-size")
    dtype = header["params"][0]["dtype"] if header["params"] else "float32"
    with use_backend(*_backend_args(args)) as backend:
        network = load(args.model)
        train_set, test_set = _load_data(dataset, args.mnist_dir, test_size, seed, dtype)
        if args.split == "test":
            x, t = test_set
        elif args.split == "train":
            x, t = train_set
        else:
            x = np.concatenate([train_set[0], test_set[0]])
            t = np.concatenate([train_set[1], test_set[1]])
        start = time.perf_counter()
        result = evaluate(network, x, t, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
    print(
        f"{args.model}: {_describe(network)} on {dataset} ({args.split}, "
        f"{result['samples']:.0f} samples): loss {result['loss']:.4f}  "
        f"accuracy {result['accuracy']:.4f}  ({seconds:.2f} s on {_where(backend)})"
    )
    return 0


# --------------------------------------------------------------------------- info


def _version(module: str) -> str | None:
    try:
        return str(importlib.metadata.version(module))
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "unknown"))


def _where(backend: Any) -> str:
    return str(backend)


def _blas() -> list[str]:
    lines: list[str] = []
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        lines.extend(
            f"{pool.get('internal_api', '?')} {pool.get('version', '?')} "
            f"({pool.get('user_api', '?')}, {pool.get('num_threads', '?')} threads) "
            f"{pool.get('filepath', '')}"
            for pool in threadpool_info()
        )
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        lines.insert(0, f"NumPy built with {blas.get('name', '?')} {blas.get('version', '?')}")
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    if threadpool_info is None:
        lines.append("(pip install threadpoolctl to list the libraries loaded and their threads)")
    return lines


def _info(args: argparse.Namespace) -> int:
    from xplayers._backend import ENV_VAR
    from xplayers._version import __version__

    print(f"xplayers {__version__}")
    print(f"Python {platform.python_version()} ({sys.executable}) on {platform.platform()}")
    print(f"numpy {np.__version__}, array-api-compat {_version('array_api_compat')}")
    env = os.environ.get(ENV_VAR)
    try:
        current = str(get_backend()) + (f" ({ENV_VAR}={env!r})" if env else "")
    except XplayersError as exc:
        current = f"unusable: {exc}"
    print(f"current backend: {current}")
    print("backends:")
    for entry in report():
        print(f"  {entry.line()}")
    print("BLAS:")
    for line in _blas():
        print(f"  {line}")
    return 0
