"""``xplayers evaluate``: the loss and accuracy of a saved model on its data.

``--top-k K`` adds the top-K accuracy and ``--confusion`` the confusion
matrix (:mod:`xplayers.metrics`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from xplayers._validation import number_in, seed_or_none
from xplayers.backend import use_backend
from xplayers.cli._common import (
    DATASETS,
    add_backend_options,
    add_data_options,
    backend_args,
    describe_network,
    load_data,
    positive_integer,
    seed,
    usage,
)
from xplayers.errors import LayerInputError, ModelFileError

__all__ = ["SPLITS", "add_parser", "format_confusion", "run"]

#: The parts of the data ``--split`` can choose.
SPLITS = ("test", "train", "all")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command and its options to the subcommand group `sub`."""
    e: argparse.ArgumentParser = sub.add_parser(
        "evaluate",
        help="loss and accuracy of a saved model",
        description="Load a model saved by 'xplayers train --output' and report its loss and "
        "accuracy. The digits split (seed and test size) defaults to the one the model "
        "was trained with.",
    )
    e.add_argument("model", metavar="MODEL", help="a model file written by xplayers")
    add_backend_options(e)
    add_data_options(e, defaults=False)
    e.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="which part of the data to evaluate (default: test)",
    )
    e.add_argument(
        "--seed", type=seed, help="digits only: seed of the split (default: as trained, else 0)"
    )
    e.add_argument(
        "--batch-size",
        type=positive_integer,
        default=1000,
        help="samples per evaluation chunk (default: 1000)",
    )
    e.add_argument(
        "--top-k",
        type=positive_integer,
        metavar="K",
        help="also report the top-K accuracy: samples whose class is among the K highest scores",
    )
    e.add_argument(
        "--confusion",
        action="store_true",
        help="also print the confusion matrix (rows: true class, columns: predicted class)",
    )
    return e


def _trained_split(args: argparse.Namespace, header: dict[str, Any]) -> tuple[str, float, int]:
    """The dataset, test size and seed: from the options, else as the model was trained."""
    trained = header["metadata"].get("dataset")
    trained = trained if isinstance(trained, dict) else {}
    dataset = args.dataset or trained.get("name") or "digits"
    if dataset not in DATASETS:
        raise ModelFileError(
            f"{args.model}: the model was trained on {str(dataset)[:50]!r}, which xplayers "
            f"cannot load; give --dataset (one of {', '.join(DATASETS)})"
        )
    test_size = args.test_size or trained.get("test_size") or 0.2
    split_seed = args.seed if args.seed is not None else trained.get("seed", 0)
    try:
        test_size = number_in("evaluate", "test_size", test_size, low=0.0, high=1.0)
        split_seed = seed_or_none("evaluate", "seed", split_seed)
    except LayerInputError:
        usage(args, "the model's metadata hold an invalid split; give --seed and --test-size")
    return dataset, test_size, 0 if split_seed is None else split_seed


def run(args: argparse.Namespace) -> int:
    """Run ``xplayers evaluate`` with parsed arguments; return the exit status."""
    from xplayers.io import load, read_metadata
    from xplayers.training import evaluate

    header = read_metadata(args.model)
    dataset, test_size, split_seed = _trained_split(args, header)
    dtype = header["params"][0]["dtype"] if header["params"] else "float32"
    with use_backend(*backend_args(args)) as backend:
        network = load(args.model)
        train_set, test_set = load_data(dataset, args.mnist_dir, test_size, split_seed, dtype)
        if args.split == "test":
            x, t = test_set
        elif args.split == "train":
            x, t = train_set
        else:
            x = np.concatenate([train_set[0], test_set[0]])
            t = np.concatenate([train_set[1], test_set[1]])
        start = time.perf_counter()
        result = evaluate(
            network, x, t, batch_size=args.batch_size, top_k=args.top_k, confusion=args.confusion
        )
        seconds = time.perf_counter() - start
    print(
        f"{args.model}: {describe_network(network)} on {dataset} ({args.split}, "
        f"{result['samples']:.0f} samples): loss {result['loss']:.4f}  "
        f"accuracy {result['accuracy']:.4f}"
        + (f"  top-{args.top_k} accuracy {result['top_k_accuracy']:.4f}" if args.top_k else "")
        + f"  ({seconds:.2f} s on {backend})"
    )
    if args.confusion:
        print(format_confusion(result["confusion_matrix"]))
    return 0


def format_confusion(matrix: np.ndarray[Any, Any]) -> str:
    """The confusion matrix as a text table: one row per true class, one column per prediction.

    Examples
    --------
    >>> import numpy as np
    >>> print(format_confusion(np.array([[5, 1], [0, 7]])))
    confusion matrix (rows: true class, columns: predicted class)
    true/pred   0   1
            0   5   1
            1   0   7
    """
    classes = range(matrix.shape[0])
    width = max(3, len(str(int(matrix.max(initial=0)))), len(str(matrix.shape[0] - 1)))
    label = "true/pred"
    lines = [
        "confusion matrix (rows: true class, columns: predicted class)",
        label + "".join(f" {c:>{width}}" for c in classes),
    ]
    for c in classes:
        cells = "".join(f" {int(v):>{width}}" for v in matrix[c])
        lines.append(f"{c:>{len(label)}}{cells}")
    return "\n".join(lines)
