r"""``xplayers train``: train a network, print the learning curve, save the model.

The book's chapter-5 experiment is::

    xplayers train --dataset mnist --mnist-dir DIR --network two-layer --hidden 50 \
        --optimizer sgd --lr 0.1 --batch-size 100 --iterations 10000
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import time
from typing import Any

import numpy as np

from xplayers._validation import FLOAT_DTYPES
from xplayers.backend import use_backend
from xplayers.cli._common import (
    CLASSES,
    PROG,
    add_backend_options,
    add_data_options,
    backend_args,
    check_writable,
    describe_network,
    fraction,
    hidden_sizes,
    label_classes,
    non_negative_float,
    positive_float,
    positive_integer,
    seed,
    usage,
    weight_init,
)
from xplayers.cli.stream import (
    add_stream_options,
    cluster,
    route_backend,
    training_data,
)
from xplayers.errors import LayerInputError
from xplayers.init import WEIGHT_INIT_NAMES
from xplayers.io import save
from xplayers.layers import ACTIVATIONS
from xplayers.monitoring import METRICS, EarlyStopping
from xplayers.network import MultiLayerNet, SimpleConvNet, TwoLayerNet
from xplayers.optim import OPTIMIZERS, get_optimizer
from xplayers.schedules import SCHEDULES, CosineDecay, ReduceOnPlateau, StepDecay
from xplayers.training import train

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_LR", "NETWORKS", "add_parser", "run"]

#: The learning rates the command uses by default, tuned on the digits; an
#: optimizer missing here starts from its own default.
DEFAULT_LR = {
    "sgd": 0.1,
    "momentum": 0.05,
    "nesterov": 0.05,
    "adagrad": 0.05,
    "rmsprop": 0.001,
    "adam": 0.005,
}
#: Passes over the training data when neither --epochs nor --iterations is given.
DEFAULT_EPOCHS = 30
#: The --network choices and the classes they build.
NETWORKS = {"two-layer": "TwoLayerNet", "multi": "MultiLayerNet", "conv": "SimpleConvNet"}


def default_lr(name: str) -> float:
    """The learning rate ``--optimizer name`` uses without ``--lr``."""
    if name in DEFAULT_LR:
        return DEFAULT_LR[name]
    return float(inspect.signature(OPTIMIZERS[name]).parameters["lr"].default)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``train`` command and its options to the subcommand group `sub`."""
    t: argparse.ArgumentParser = sub.add_parser(
        "train",
        help="train a network and report its test accuracy",
        description="Train a network on the shipped digits or on MNIST, print one line per "
        "epoch and a summary with the test accuracy.",
    )
    add_backend_options(t)
    add_data_options(t, defaults=True)
    add_stream_options(t)
    t.add_argument(
        "--network",
        choices=NETWORKS,
        default="multi",
        help="TwoLayerNet (Affine-ReLU-Affine, chapter 5), MultiLayerNet (chapter 6) or "
        "SimpleConvNet (conv-ReLU-pool-Affine-ReLU-Affine, chapter 7) (default: multi)",
    )
    t.add_argument(
        "--filters",
        type=positive_integer,
        default=30,
        metavar="N",
        help="conv only: number of convolution filters (default: 30, as the book)",
    )
    t.add_argument(
        "--filter-size",
        type=positive_integer,
        metavar="K",
        help="conv only: filter height and width (default: 5 for 28x28 MNIST as the book, "
        "3 for the 8x8 digits)",
    )
    t.add_argument(
        "--hidden",
        type=hidden_sizes,
        default=[100],
        metavar="N[,N...]",
        help="hidden layer sizes; one for two-layer, a comma list for multi (default: 100)",
    )
    t.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        help="multi only: hidden activation (default: relu)",
    )
    t.add_argument(
        "--init",
        type=weight_init,
        metavar="STD|NAME",
        help="initial weight scale: a standard deviation, or for multi one of "
        + ", ".join(map(repr, WEIGHT_INIT_NAMES))
        + " (default: 0.01 for two-layer, as in the book; for multi the scale suited to "
        "--activation)",
    )
    t.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="adam",
        help="update rule (default: adam)",
    )
    t.add_argument(
        "--lr",
        type=positive_float,
        help="learning rate (default: "
        + ", ".join(f"{k} {default_lr(k):g}" for k in OPTIMIZERS)
        + ")",
    )
    t.add_argument(
        "--batch-size", type=positive_integer, default=100, help="samples per update (default: 100)"
    )
    length = t.add_mutually_exclusive_group()
    length.add_argument(
        "--epochs",
        type=positive_integer,
        help=f"passes over the training data (default: {DEFAULT_EPOCHS})",
    )
    length.add_argument(
        "--iterations",
        type=positive_integer,
        help="number of updates instead of --epochs; evaluated every epoch and at the end",
    )
    t.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the initial weights, the split and the batch order (default: 0)",
    )
    t.add_argument(
        "--dtype",
        choices=FLOAT_DTYPES,
        default="float32",
        help="floating dtype of data and parameters (default: float32)",
    )
    t.add_argument("--output", metavar="MODEL.npz", help="save the trained network here")
    t.add_argument("--plot", metavar="CURVE.png", help="save the learning curves as a PNG")
    t.add_argument(
        "--checkpoint", metavar="PATH.npz", help="save the network here after every epoch"
    )
    t.add_argument(
        "--resume",
        metavar="PATH.npz",
        help="continue the run saved in this checkpoint, bit for bit (give the options "
        "of the run that wrote it; --iterations/--epochs count from its start)",
    )
    t.add_argument(
        "--summary",
        action="store_true",
        help="print the network's layers, output shapes and parameter counts before training",
    )
    t.add_argument(
        "--quiet",
        action="store_true",
        help="print only the final summary (no per-epoch lines, no progress bar)",
    )
    _add_control_options(t)
    return t


def _add_control_options(t: argparse.ArgumentParser) -> None:
    """Validation, early stopping, learning-rate schedules and gradient clipping."""
    g = t.add_argument_group("validation, early stopping, schedules and clipping")
    g.add_argument(
        "--validation-split",
        type=fraction,
        metavar="F",
        help="hold out this fraction of the training samples (the last rows, after the "
        "shuffled split of --dataset) as validation data, evaluated every epoch",
    )
    g.add_argument(
        "--patience",
        type=positive_integer,
        metavar="N",
        help="stop when --monitor has not improved for N evaluations in a row (early stopping)",
    )
    g.add_argument(
        "--monitor",
        choices=METRICS,
        default="val_loss",
        help="the metric --patience, --restore-best and --lr-schedule plateau watch; val_* "
        "needs --validation-split (default: val_loss)",
    )
    g.add_argument(
        "--min-delta",
        type=non_negative_float,
        default=0.0,
        metavar="D",
        help="the smallest change of --monitor that counts as an improvement (default: 0)",
    )
    g.add_argument(
        "--restore-best",
        action=argparse.BooleanOptionalAction,
        help="at the end, put back the weights of the evaluation where --monitor was best "
        "(default: on with --patience, else off)",
    )
    g.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        help="change the learning rate during the run: step (times --lr-factor every "
        "--lr-step-size epochs), cosine (down to --lr-min over the run), plateau (times "
        "--lr-factor when --monitor has not improved for --lr-patience evaluations)",
    )
    g.add_argument(
        "--lr-step-size",
        type=positive_integer,
        default=10,
        metavar="EPOCHS",
        help="step: epochs between two decays (default: 10)",
    )
    g.add_argument(
        "--lr-factor",
        type=fraction,
        default=0.1,
        metavar="F",
        help="step and plateau: the factor of each decay (default: 0.1)",
    )
    g.add_argument(
        "--lr-patience",
        type=positive_integer,
        default=5,
        metavar="N",
        help="plateau: evaluations without improvement before a decay (default: 5)",
    )
    g.add_argument(
        "--lr-min",
        type=non_negative_float,
        default=0.0,
        metavar="LR",
        help="cosine: the rate at the end; plateau: the lowest rate (default: 0)",
    )
    g.add_argument(
        "--clip-norm",
        type=positive_float,
        metavar="MAX",
        help="scale each update's gradients so that their global norm is at most MAX",
    )


def _controls(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of train for the control options; usage errors first."""
    uses_monitor = args.patience is not None or args.restore_best or args.lr_schedule == "plateau"
    if uses_monitor and args.monitor.startswith("val_") and args.validation_split is None:
        usage(
            args,
            f"--monitor {args.monitor} needs --validation-split (or --monitor train_loss)",
        )
    schedule: Any = None
    if args.lr_schedule == "step":
        schedule = StepDecay(args.lr_step_size, args.lr_factor)
    elif args.lr_schedule == "cosine":
        schedule = CosineDecay(args.lr_min)
    elif args.lr_schedule == "plateau":
        schedule = ReduceOnPlateau(
            args.monitor, args.lr_factor, args.lr_patience, args.min_delta, args.lr_min
        )
    restore = args.patience is not None if args.restore_best is None else args.restore_best
    stopping = (
        EarlyStopping(args.monitor, args.patience, args.min_delta, restore)
        if args.patience is not None or restore
        else None
    )
    return {
        "validation_split": args.validation_split,
        "schedule": schedule,
        "early_stopping": stopping,
        "clip_norm": args.clip_norm,
    }


def _summary(
    args: argparse.Namespace, history: Any, controls: dict[str, Any], seconds: float, what: str
) -> list[str]:
    """The closing lines: the kept weights' accuracies, and how early stopping ended the run."""
    stopping = controls["early_stopping"]
    restored = stopping is not None and stopping.restore_best and history.best_iteration
    at = history.iteration.index(history.best_iteration) if restored else -1
    test_acc = history.test_acc[at]
    lines = [
        ("" if test_acc is None else f"test accuracy {test_acc:.4f} ")
        + f"(train {history.train_acc[at]:.4f}) after "
        f"{history.epoch[-1]:g} epoch{'' if history.epoch[-1] == 1 else 's'} "
        f"({history.iteration[-1]} iterations) in "
        f"{seconds:.2f} s: {what}"
    ]
    if history.stopped_iteration is not None:
        lines.append(
            f"stopped early at iteration {history.stopped_iteration}: {args.monitor} had not "
            f"improved by more than {args.min_delta:g} for {args.patience} "
            f"evaluation{'' if args.patience == 1 else 's'}"
        )
    if restored:
        lines.append(
            f"kept the weights of iteration {history.best_iteration}, where {args.monitor} "
            f"was best ({_metric(history, args.monitor, at):.4f})"
        )
    return lines


def _metric(history: Any, name: str, index: int) -> float:
    """The value of metric `name` (``val_loss``, ``train_acc``, ...) at evaluation `index`."""
    return float(getattr(history, name)[index])


def _network(args: argparse.Namespace, input_size: int, output_size: int) -> Any:

    if args.network != "conv" and (args.filter_size is not None or args.filters != 30):
        usage(args, "--filters and --filter-size apply to --network conv only")
    if args.network == "conv":
        if len(args.hidden) != 1:
            usage(args, f"--network conv takes one --hidden size, got {len(args.hidden)}")
        if args.activation is not None:
            usage(args, "--activation applies to --network multi only")
        side = _side(args, input_size)
        size = args.filter_size or (5 if side >= 28 else 3)
        if size > side:
            usage(args, f"--filter-size {size} is larger than the {side}x{side} images")
        return SimpleConvNet(
            input_dim=(1, side, side),
            conv_param={"filter_num": args.filters, "filter_size": size, "pad": 0, "stride": 1},
            hidden_size=args.hidden[0],
            output_size=output_size,
            weight_init_std=0.01 if args.init is None else args.init,
            seed=args.seed,
            dtype=args.dtype,
        )
    if args.network == "two-layer":
        if len(args.hidden) != 1:
            usage(args, f"--network two-layer takes one --hidden size, got {len(args.hidden)}")
        if args.activation is not None:
            usage(args, "--activation applies to --network multi only")
        if isinstance(args.init, str):
            usage(args, f"--network two-layer takes --init as a number, got {args.init!r}")
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


def _side(args: argparse.Namespace, input_size: int) -> int:
    """The side of the square one-channel images whose rows have `input_size` pixels."""
    side = math.isqrt(input_size)
    if side * side != input_size:
        usage(args, f"--network conv needs square images; the rows have {input_size} values")
    return side


def _epoch_line(history: Any, *, show_lr: bool = False) -> str:
    test, val_loss, val_acc, lr = (
        history.test_acc[-1],
        history.val_loss[-1],
        history.val_acc[-1],
        history.lr[-1],
    )
    return (
        f"epoch {history.epoch[-1]:6.2f}  iteration {history.iteration[-1]:6d}  "
        f"loss {history.train_loss[-1]:.4f}  train acc {history.train_acc[-1]:.4f}  "
        + (f"val loss {val_loss:.4f}  val acc {val_acc:.4f}  " if val_loss is not None else "")
        + (f"test acc {test:.4f}  " if test is not None else "")
        + (f"lr {lr:.3g}  " if show_lr and lr is not None else "")
        + f"{history.seconds[-1]:7.2f} s"
    )


def _data_source(args: argparse.Namespace, test_size: float) -> dict[str, Any]:
    """The data set as the model's metadata record it, for ``xplayers evaluate``.

    ``--data`` and ``--test-data`` are stored as absolute paths, or as None
    when a path is not valid UTF-8 (JSON cannot hold it; evaluate then asks
    for ``--data``).
    """
    if args.data is None:
        return {
            "name": args.dataset,
            "test_size": test_size if args.dataset == "digits" else None,
            "seed": args.seed,
        }
    return {
        "name": "data",
        "data": _json_path(args.data),
        "test_data": None if args.test_data is None else _json_path(args.test_data),
    }


def _json_path(path: str) -> str | None:
    absolute = os.path.abspath(path)
    try:
        absolute.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return absolute


def run(args: argparse.Namespace) -> int:
    """Run ``xplayers train`` with parsed arguments; return the exit status."""
    if args.dataset == "mnist" and args.test_size is not None:
        usage(args, "--test-size applies to --dataset digits only (MNIST has its own test set)")
    test_size = 0.2 if args.test_size is None else args.test_size
    for option in ("output", "plot", "checkpoint"):
        check_writable(args, option)
    dataset = _data_source(args, test_size)
    epochs = None if args.iterations is not None else (args.epochs or DEFAULT_EPOCHS)
    lr = default_lr(args.optimizer) if args.lr is None else args.lr
    controls = _controls(args)
    with (
        cluster(args.scheduler) as client,
        use_backend(*route_backend(args, *backend_args(args))) as backend,
        np.errstate(over="ignore", invalid="ignore", divide="ignore"),  # a NaN loss says it
    ):
        train_set, test_set = training_data(args, test_size)
        input_size = int(np.prod(train_set[0].shape[1:]))
        classes = CLASSES
        if args.data is not None:
            labels = [train_set[1]] + ([] if test_set is None else [test_set[1]])
            classes = label_classes(f"{PROG} train --data", labels)
        try:
            network = _network(args, input_size, classes)
        except LayerInputError as exc:  # an option the network refuses (--init 1e300)
            usage(args, str(exc).replace("argument 'weight_init_std'", "argument --init"))
        optimizer = get_optimizer(args.optimizer, lr=lr)
        if args.summary:
            print(network.summary(), flush=True)
        what = (
            f"{describe_network(network)}, {args.optimizer} lr={lr:g}, "
            f"{'full batch' if args.full_batch else f'batch {args.batch_size}'}, "
            f"{args.dtype}, {backend}"
        )
        if not args.quiet:
            source = args.data if args.data is not None else args.dataset
            tests = 0 if test_set is None else len(test_set[0])
            held = (
                ""
                if args.validation_split is None
                else f" ({len(train_set[0]) - int(len(train_set[0]) * (1 - args.validation_split))}"
                " of them held out for validation)"
            )
            print(
                f"training {what} on {source}: {len(train_set[0])} training{held}, "
                f"{tests} test samples",
                flush=True,
            )
        start = time.perf_counter()
        show_lr = controls["schedule"] is not None
        callback = (
            None if args.quiet else lambda h: print(_epoch_line(h, show_lr=show_lr), flush=True)
        )
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
            resume=args.resume,
            plot=args.plot,
            callback=callback,
            full_batch=args.full_batch,
            client=client if args.full_batch else None,
            **controls,
        )
        seconds = time.perf_counter() - start
        if args.output is not None:
            save(
                network,
                args.output,
                metadata={
                    "dataset": dataset,
                    "optimizer": {"name": args.optimizer, "lr": lr},
                    "batch_size": args.batch_size,
                    "history": history.to_dict(),
                },
            )
    for line in _summary(args, history, controls, seconds, what):
        print(line)
    for label, path in (("model", args.output), ("plot", args.plot)):
        if path is not None and not args.quiet:
            print(f"{label} saved to {path}")
    return 0
