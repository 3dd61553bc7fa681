"""``xplayers evaluate``: the loss and accuracy of a saved model on its data.

``--top-k K`` adds the top-K accuracy and ``--confusion`` the confusion
matrix (:mod:`xplayers.metrics`).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any, cast

import numpy as np

from xplayers._validation import describe, number_in, seed_or_none
from xplayers.backend import use_backend
from xplayers.cli._common import (
    DATASETS,
    PROG,
    add_backend_options,
    add_data_options,
    backend_args,
    describe_network,
    label_classes,
    load_data,
    positive_integer,
    seed,
    usage,
)
from xplayers.datasets.streaming import open_dataset
from xplayers.errors import DatasetError, LayerInputError, ModelFileError
from xplayers.io import load, read_metadata
from xplayers.training import evaluate

__all__ = ["SPLITS", "add_parser", "format_confusion", "run"]

#: The parts of the data ``--split`` can choose.
SPLITS = ("test", "train", "all")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command and its options to the subcommand group `sub`."""
    e: argparse.ArgumentParser = sub.add_parser(
        "evaluate",
        help="loss and accuracy of a saved model",
        description="Load a model saved by 'xplayers train --output' and report its loss and "
        "accuracy. The data default to those the model was trained on: the data set and "
        "the digits split (seed and test size), or the --data and --test-data folders.",
    )
    e.add_argument("model", metavar="MODEL", help="a model file written by xplayers")
    add_backend_options(e)
    add_data_options(e, defaults=False)
    e.add_argument(
        "--data",
        metavar="DIR",
        help="evaluate on every row of the data set in DIR, laid out as for 'xplayers train "
        "--data' (default: the model's --data or --test-data, if it was trained on them)",
    )
    e.add_argument(
        "--split",
        choices=SPLITS,
        help="which part of the data to evaluate: for --dataset the split, for a model "
        "trained with --data its --test-data, --data or both (default: test)",
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


def _trained(args: argparse.Namespace, header: dict[str, Any]) -> dict[str, Any]:
    """What the model's metadata say of its data set, as a dict (empty when they say nothing).

    A bare string is taken as the data set's name. Anything else (a list, a
    dict whose name is not a string) is refused unless ``--dataset`` or
    ``--data`` says what to evaluate on.
    """
    trained = header["metadata"].get("dataset")
    if isinstance(trained, str):
        trained = {"name": trained}
    named = trained is None or (isinstance(trained, dict) and isinstance(trained.get("name"), str))
    if not named and args.dataset is None and args.data is None:
        usage(
            args,
            f"the model's metadata name its data set as {describe(trained)[:80]}, not a "
            f"name; give --dataset ({', '.join(DATASETS)}) or --data DIR",
        )
    return trained if named and isinstance(trained, dict) else {}


def _trained_split(args: argparse.Namespace, trained: dict[str, Any]) -> tuple[str, float, int]:
    """The dataset, test size and seed: from the options, else as the model was trained."""
    dataset = args.dataset or trained.get("name") or "digits"
    if dataset not in DATASETS:
        raise ModelFileError(
            f"{args.model}: the model was trained on {str(dataset)[:50]!r}, which xplayers "
            f"cannot load; give --dataset (one of {', '.join(DATASETS)}) or --data DIR"
        )
    test_size = args.test_size or trained.get("test_size") or 0.2
    split_seed = args.seed if args.seed is not None else trained.get("seed", 0)
    try:
        test_size = number_in("evaluate", "test_size", test_size, low=0.0, high=1.0)
        split_seed = seed_or_none("evaluate", "seed", split_seed)
    except LayerInputError:
        usage(args, "the model's metadata hold an invalid split; give --seed and --test-size")
    return dataset, test_size, 0 if split_seed is None else split_seed


def _data_folders(args: argparse.Namespace, trained: dict[str, Any], split: str) -> list[str]:
    """The folders a model trained with ``--data`` is evaluated on, for `split`."""
    data, test = trained.get("data"), trained.get("test_data")
    if not isinstance(data, str) or not (test is None or isinstance(test, str)):
        usage(args, "the model was trained with --data, whose path it does not hold; give --data")
    if split == "test" and test is None:
        usage(
            args,
            f"the model was trained with --data {data} and records no --test-data; give "
            "--split train or all, or --data DIR",
        )
    folders: dict[str, list[str | None]] = {"test": [test], "train": [data], "all": [data, test]}
    return [f for f in folders[split] if f is not None]


def _check_fit(model: str, network: Any, x: Any, classes: int, source: str) -> None:
    """Refuse data whose width or labels the network cannot take, naming both."""
    config = network.config()
    if "input_size" in config:
        width: int | None = int(config["input_size"])
    elif "input_dim" in config:
        width = math.prod(config["input_dim"])
    else:
        width = None
    has = math.prod(x.shape[1:])
    if width is not None and has != width:
        raise DatasetError(
            f"{model}: the network takes {width} values per sample, {source} has {has}; "
            "evaluate it on data like those it was trained on (--dataset or --data)"
        )
    outputs = config.get("output_size")
    if isinstance(outputs, int) and classes > outputs:
        raise DatasetError(
            f"{model}: the network has {outputs} classes, {source} has labels of {classes}; "
            "evaluate it on data like those it was trained on (--dataset or --data)"
        )


def _combined(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-sample means over several evaluations, and their confusion matrices summed."""
    if len(results) == 1:
        return results[0]
    n = sum(r["samples"] for r in results)
    combined: dict[str, Any] = {"samples": n}
    for key in ("loss", "accuracy", "top_k_accuracy"):
        if key in results[0]:
            combined[key] = sum(r[key] * r["samples"] for r in results) / n
    if "top_k" in results[0]:
        combined["top_k"] = results[0]["top_k"]
    if "confusion_matrix" in results[0]:
        combined["confusion_matrix"] = sum(r["confusion_matrix"] for r in results)
    return combined


def run(args: argparse.Namespace) -> int:
    """Run ``xplayers evaluate`` with parsed arguments; return the exit status."""
    if args.data is not None:
        for option in ("dataset", "split", "test_size", "seed", "mnist_dir"):
            if getattr(args, option) is not None:
                name = option.replace("_", "-")
                usage(args, f"--{name} does not apply to --data (every row of DIR is evaluated)")
    header = read_metadata(args.model)
    trained = _trained(args, header)
    split = args.split or "test"
    folders: list[str] | None = None
    if args.data is not None:
        folders, split = [args.data], "all"
    elif args.dataset is None and trained.get("name") == "data":
        folders = _data_folders(args, trained, split)
    dtype = header["params"][0]["dtype"] if header["params"] else "float32"
    with use_backend(*backend_args(args)) as backend:
        network = load(args.model)
        start = time.perf_counter()
        if folders is not None:
            source, result = " and ".join(folders), _on_folders(args, network, folders)
        else:
            source, result = _on_dataset(args, network, trained, split, dtype)
        seconds = time.perf_counter() - start
    print(
        f"{args.model}: {describe_network(network)} on {source} ({split}, "
        f"{result['samples']:.0f} samples): loss {result['loss']:.4f}  "
        f"accuracy {result['accuracy']:.4f}"
        + (f"  top-{args.top_k} accuracy {result['top_k_accuracy']:.4f}" if args.top_k else "")
        + f"  ({seconds:.2f} s on {backend})"
    )
    if args.confusion:
        print(format_confusion(result["confusion_matrix"]))
    return 0


def _on_folders(args: argparse.Namespace, network: Any, folders: list[str]) -> dict[str, Any]:
    """Evaluate `network` on every row of the data sets in `folders`, streamed."""
    results = []
    for folder in folders:
        x, t = open_dataset(folder)
        _check_fit(args.model, network, x, label_classes(f"{PROG} evaluate", [t]), folder)
        results.append(evaluate(network, cast(Any, x), cast(Any, t), **_options(args)))
    return _combined(results)


def _on_dataset(
    args: argparse.Namespace, network: Any, trained: dict[str, Any], split: str, dtype: str
) -> tuple[str, dict[str, Any]]:
    """Evaluate `network` on `split` of a named data set; return its name and the result."""
    name, test_size, split_seed = _trained_split(args, trained)
    train_set, test_set = load_data(name, args.mnist_dir, test_size, split_seed, dtype)
    if split == "test":
        x, t = test_set
    elif split == "train":
        x, t = train_set
    else:
        x = np.concatenate([train_set[0], test_set[0]])
        t = np.concatenate([train_set[1], test_set[1]])
    _check_fit(args.model, network, x, int(t.max()) + 1 if t.size else 0, name)
    return name, evaluate(network, x, t, **_options(args))


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`xplayers.evaluate` that the options choose."""
    return {"batch_size": args.batch_size, "top_k": args.top_k, "confusion": args.confusion}


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
