r"""``xplayers seq2seq``: train volume 2's sequence-to-sequence models, report their accuracy.

The book's chapter-7 run (addition, ``ch07/train_seq2seq.py``) and
chapter-8 run (dates, ``ch08/train.py``) are::

    xplayers seq2seq --task addition --model plain --epochs 25
    xplayers seq2seq --task date --model attention --reverse --epochs 10

Each epoch shuffles the training questions, makes ``N // batch_size``
updates (the book's ``Trainer``: forward, backward, ``clip_grads``,
``Adam``, through the update step :class:`xplayers.book2.Trainer` uses, which
also keeps Dask's task graphs short) and measures the accuracy on the held-out tenth: the share of
test questions whose whole greedy answer is right, decoded a batch at a
time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from array_api_compat import device
from threadpoolctl import threadpool_limits

from xplayers._files import atomic_writer
from xplayers._validation import FLOAT_DTYPES, dtype_name
from xplayers.backend import namespace, to_numpy, use_backend
from xplayers.book2 import Adam, seq2seq
from xplayers.book2._training import SharedWeights, apply_gradients
from xplayers.book2.datasets import sequence
from xplayers.cli._common import (
    add_backend_options,
    backend_args,
    check_writable,
    positive_float,
    positive_integer,
    seed,
    usage,
)
from xplayers.errors import ModelFileError, TrainingError
from xplayers.training import SMALL_GEMM, ProgressBar, show_progress

__all__ = ["CHECKPOINT_KEY", "MODELS", "TASKS", "add_parser", "run"]

#: The --model choices and the classes of :mod:`xplayers.book2.seq2seq` they build.
MODELS = {"plain": "Seq2seq", "peeky": "PeekySeq2seq", "attention": "AttentionSeq2seq"}
#: The --task choices, their generated set and the book's epochs for them.
TASKS = {"addition": ("addition.txt", 25), "date": ("date.txt", 10)}
#: The archive entry of a checkpoint holding its JSON state.
CHECKPOINT_KEY = "__xplayers_seq2seq__"
#: Questions decoded at once when measuring the accuracy.
EVAL_BATCH = 1000
#: The options a checkpoint must agree with to be resumed.
_RUN_OPTIONS = (
    "task",
    "data",
    "model",
    "reverse",
    "wordvec_size",
    "hidden",
    "batch_size",
    "lr",
    "max_grad",
    "seed",
    "dtype",
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``seq2seq`` command and its options to the subcommand group `sub`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "seq2seq",
        help="train a sequence-to-sequence model (volume 2) and report its accuracy",
        description="Train Seq2seq, PeekySeq2seq or AttentionSeq2seq of Deep Learning from "
        "Scratch 2 on the addition or date questions (generated, or a file of the book's "
        "format), print one line per epoch and the test accuracy.",
    )
    add_backend_options(p)
    p.add_argument(
        "--task",
        choices=TASKS,
        default="addition",
        help="addition: '16+75' -> '91' (chapter 7); date: 'september 27, 1994' -> "
        "'1994-09-27' (chapter 8) (default: addition)",
    )
    p.add_argument(
        "--data",
        metavar="FILE",
        help="a file of 'question_answer' lines, such as the book's addition.txt or date.txt "
        "(default: the generated set of --task)",
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        default="plain",
        help="plain: Seq2seq; peeky: PeekySeq2seq (chapter 7); attention: AttentionSeq2seq "
        "(chapter 8) (default: plain)",
    )
    p.add_argument(
        "--reverse",
        action="store_true",
        help="feed the questions reversed, as the book's is_reverse (chapter 8 does)",
    )
    p.add_argument(
        "--wordvec-size",
        type=positive_integer,
        default=16,
        metavar="D",
        help="embedding size (default: 16)",
    )
    p.add_argument(
        "--hidden",
        type=positive_integer,
        metavar="H",
        help="LSTM hidden size (default: 128, or 256 for attention, as the book)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_integer,
        default=128,
        help="questions per update (default: 128)",
    )
    p.add_argument(
        "--epochs",
        type=positive_integer,
        help="passes over the training questions (default: 25 for addition, 10 for date)",
    )
    p.add_argument("--lr", type=positive_float, default=0.001, help="Adam's rate (default: 0.001)")
    p.add_argument(
        "--max-grad",
        type=positive_float,
        default=5.0,
        metavar="MAX",
        help="clip the gradients' global norm to MAX (default: 5.0)",
    )
    p.add_argument(
        "--size",
        type=positive_integer,
        metavar="N",
        help="use the first N questions only (default: all 50,000)",
    )
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the initial weights and the batch order (default: 0)",
    )
    p.add_argument(
        "--dtype",
        choices=FLOAT_DTYPES,
        default="float32",
        help="floating dtype of the parameters (default: float32, as the book)",
    )
    p.add_argument(
        "--examples",
        type=int,
        default=0,
        metavar="K",
        help="after training, print the first K test questions with the model's answers",
    )
    p.add_argument("--output", metavar="MODEL.npz", help="save the parameters here (save_params)")
    p.add_argument("--checkpoint", metavar="PATH.npz", help="save the run here after every epoch")
    p.add_argument(
        "--resume",
        metavar="PATH.npz",
        help="continue the run saved in this checkpoint, bit for bit (give the options of the "
        "run that wrote it; --epochs counts from its start)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only the final line (no per-epoch lines, no progress bar)",
    )
    return p


# --------------------------------------------------------------------------- data


Pair = tuple[npt.NDArray[Any], npt.NDArray[Any]]


def _data(args: argparse.Namespace) -> tuple[Pair, Pair, dict[int, str]]:
    """The training and test questions and answers, reversed with --reverse, and the vocabulary."""
    name = args.data if args.data is not None else TASKS[args.task][0]
    if args.data is not None and not Path(args.data).is_file():
        usage(args, f"--data {args.data!r}: no such file")
    lines = sequence.read_lines(name)[: args.size]
    if len(lines) < 10:
        usage(args, f"{len(lines)} questions: need at least 10 (a tenth for testing)")
    (x_train, t_train), (x_test, t_test) = sequence.from_lines(lines, name=name)
    if args.reverse:
        x_train, x_test = x_train[:, ::-1].copy(), x_test[:, ::-1].copy()
    return (x_train, t_train), (x_test, t_test), dict(sequence.get_vocab()[1])


# --------------------------------------------------------------------------- training


def _accuracy(model: Any, x: Any, t: Any) -> float:
    """The share of questions whose whole greedy answer equals `t` (after its start id)."""
    right = 0
    for start in range(0, len(x), EVAL_BATCH):
        xb, tb = x[start : start + EVAL_BATCH], t[start : start + EVAL_BATCH]
        guess = model.generate_batch(xb, int(tb[0, 0]), int(tb.shape[1]) - 1)
        right += int(np.sum(np.all(guess == tb[:, 1:], axis=1)))
    return right / len(x)


def _step(
    model: Any, optimizer: Any, shared: SharedWeights, xb: Any, tb: Any, max_grad: float
) -> Any:
    """One update of the book's Trainer (:func:`apply_gradients`); returns the loss."""
    loss = model.forward(xb, tb)
    model.backward()
    apply_gradients(model, optimizer, shared, max_grad)
    return loss


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in _RUN_OPTIONS} | {"size": args.size}


def _save_checkpoint(
    path: str, model: Any, optimizer: Any, rng: np.random.Generator, state: dict[str, Any]
) -> None:
    """Parameters, Adam's moments, the batch-order generator and the history, atomically."""
    arrays: dict[str, Any] = {f"p{i}": np.asarray(to_numpy(p)) for i, p in enumerate(model.params)}
    if optimizer.m is not None:
        for i, (m, v) in enumerate(zip(optimizer.m, optimizer.v, strict=True)):
            arrays[f"m{i}"], arrays[f"v{i}"] = np.asarray(to_numpy(m)), np.asarray(to_numpy(v))
    doc = state | {"adam_iter": optimizer.iter, "rng": rng.bit_generator.state}
    arrays[CHECKPOINT_KEY] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    with atomic_writer(Path(path)) as f:
        np.savez(f, **arrays)


def _resume(
    args: argparse.Namespace, model: Any, optimizer: Any, rng: np.random.Generator
) -> dict[str, Any]:
    """Put the run of ``--resume`` back into `model`, `optimizer` and `rng`; return its state."""
    path = args.resume
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = set(archive.files)
            if CHECKPOINT_KEY not in files:
                raise ModelFileError(f"{path}: not a checkpoint of xplayers seq2seq")
            doc = json.loads(bytes(archive[CHECKPOINT_KEY]).decode())
            arrays = {k: archive[k] for k in files - {CHECKPOINT_KEY}}
    except (ValueError, KeyError, json.JSONDecodeError, EOFError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: not a readable checkpoint ({exc})") from None
    missing = {"options", "epoch", "history", "adam_iter", "rng"} - set(doc)
    wanted = {f"p{i}" for i in range(len(model.params))}
    if missing or not isinstance(doc["options"], dict) or not wanted <= set(arrays):
        raise ModelFileError(f"{path}: an incomplete checkpoint of xplayers seq2seq")
    saved = doc["options"]
    for key, value in _run_options(args).items():
        if saved.get(key) != value:
            option = "--" + key.replace("_", "-")
            usage(
                args,
                f"--resume {path}: the checkpoint's run has {option} {saved.get(key)!r}, "
                f"not {value!r}; give the options of the run that wrote it",
            )
    params = model.params
    for i, p in enumerate(params):
        value = arrays[f"p{i}"]
        if value.shape != tuple(int(s) for s in p.shape):
            raise ModelFileError(f"{path}: parameter {i} has shape {value.shape}")
    xp = namespace(params[0])
    dtype = dtype_name(params[0].dtype)
    for i, p in enumerate(params):
        model.params[i] = xp.asarray(arrays[f"p{i}"].astype(dtype), device=device(p))
    if "m0" in arrays:
        optimizer.m = [xp.asarray(arrays[f"m{i}"], device=device(p)) for i, p in enumerate(params)]
        optimizer.v = [xp.asarray(arrays[f"v{i}"], device=device(p)) for i, p in enumerate(params)]
    optimizer.iter = int(doc["adam_iter"])
    rng.bit_generator.state = doc["rng"]
    return dict(doc)


def run(args: argparse.Namespace) -> int:
    """Run ``xplayers seq2seq`` with parsed arguments; return the exit status."""
    for option in ("output", "checkpoint"):
        check_writable(args, option)
    if args.examples < 0:
        usage(args, f"--examples takes an integer >= 0, got {args.examples}")
    args.hidden = args.hidden or (256 if args.model == "attention" else 128)
    epochs = args.epochs or TASKS[args.task][1]
    train_set, test_set, id_to_char = _data(args)
    if args.batch_size > len(train_set[0]):
        usage(
            args,
            f"--batch-size {args.batch_size} exceeds the {len(train_set[0])} training questions",
        )
    with (
        use_backend(*backend_args(args)) as backend,
        np.errstate(over="ignore", invalid="ignore", divide="ignore"),
    ):
        cls = getattr(seq2seq, MODELS[args.model])
        model = cls(
            len(id_to_char),
            args.wordvec_size,
            args.hidden,
            rng=np.random.default_rng(args.seed),
            dtype=args.dtype,
        )
        optimizer = Adam(lr=args.lr)
        order = np.random.default_rng([args.seed, 1])
        state: dict[str, Any] = {"epoch": 0, "history": {"loss": [], "acc": []}}
        if args.resume is not None:
            state = _resume(args, model, optimizer, order)
        what = (
            f"{cls.__name__} D={args.wordvec_size} H={args.hidden}"
            f"{' reversed' if args.reverse else ''}, adam lr={args.lr:g}, batch "
            f"{args.batch_size}, {args.dtype}, {backend}"
        )
        if not args.quiet:
            print(
                f"training {what} on {args.data or args.task}: {len(train_set[0])} training, "
                f"{len(test_set[0])} test questions",
                flush=True,
            )
        start = time.perf_counter()
        with _blas_threads(model, args.batch_size):
            history = _train(args, model, optimizer, order, state, epochs, train_set, test_set)
            acc = history["acc"][-1] if history["acc"] else _accuracy(model, *test_set)
            for i in range(min(args.examples, len(test_set[0]))):
                _show_example(model, test_set[0][i], test_set[1][i], id_to_char, args.reverse)
        if args.output is not None:
            model.save_params(args.output)
    print(
        f"test accuracy {acc:.4f} after {epochs} epoch{'' if epochs == 1 else 's'} in "
        f"{time.perf_counter() - start:.2f} s: {what}"
    )
    if args.output is not None and not args.quiet:
        print(f"parameters saved to {args.output}")
    return 0


def _blas_threads(model: Any, batch_size: int) -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread where the largest product is small, as ``xplayers train`` does.

    See :func:`xplayers.training._blas_threads`: on a busy 2-core machine,
    OpenBLAS's spinning threads made a step of the addition model ten times
    slower.
    """
    sizes = [math.prod(int(s) for s in p.shape) for p in model.params if len(p.shape) == 2]
    if batch_size * max(sizes) > SMALL_GEMM:
        return contextlib.nullcontext()
    limits: contextlib.AbstractContextManager[Any] = threadpool_limits(1, user_api="blas")
    return limits


def _train(
    args: argparse.Namespace,
    model: Any,
    optimizer: Any,
    order: np.random.Generator,
    state: dict[str, Any],
    epochs: int,
    train_set: Pair,
    test_set: Pair,
) -> dict[str, list[float]]:
    """Train from epoch ``state["epoch"]`` to `epochs`; return the loss and accuracy history."""
    history: dict[str, list[float]] = state["history"]
    x_train, t_train = train_set
    per_epoch = len(x_train) // args.batch_size
    first = int(state["epoch"])
    shared = SharedWeights(model.params, model)
    bar = ProgressBar(
        max(per_epoch * (epochs - first), 1),
        per_epoch,
        sys.stderr,
        enabled=not args.quiet and show_progress(None),
    )
    start = time.perf_counter()
    for epoch in range(first, epochs):
        idx = order.permutation(len(x_train))
        xs, ts = x_train[idx], t_train[idx]
        total = 0.0
        for it in range(per_epoch):
            batch = slice(it * args.batch_size, (it + 1) * args.batch_size)
            loss = float(_step(model, optimizer, shared, xs[batch], ts[batch], args.max_grad))
            if not math.isfinite(loss):
                bar.clear()
                raise TrainingError(
                    f"the loss became {loss} in epoch {epoch + 1}; try a smaller --lr"
                )
            total += loss
            bar.update((epoch - first) * per_epoch + it + 1, functools.partial(float, loss))
        bar.clear()
        history["loss"].append(total / per_epoch)
        history["acc"].append(_accuracy(model, *test_set))
        if not args.quiet:
            print(
                f"epoch {epoch + 1:3d}  loss {history['loss'][-1]:.4f}  "
                f"test acc {history['acc'][-1]:.4f}  {time.perf_counter() - start:7.2f} s",
                flush=True,
            )
        if args.checkpoint is not None:
            saved = {"options": _run_options(args), "epoch": epoch + 1, "history": history}
            _save_checkpoint(args.checkpoint, model, optimizer, order, saved)
    return history


def _show_example(
    model: Any, x: npt.NDArray[Any], t: npt.NDArray[Any], id_to_char: dict[int, str], reverse: bool
) -> None:
    """Print ``Q``, ``T`` (the answer) and the model's guess, as the book's eval_seq2seq."""
    guess = model.generate(x[None, :], int(t[0]), len(t) - 1)
    question = "".join(id_to_char[int(c)] for c in x)
    answer = "".join(id_to_char[int(c)] for c in t[1:])
    text = "".join(id_to_char[int(c)] for c in guess)
    print(f"Q {question[::-1] if reverse else question}")
    print(f"T {answer}")
    print(f"{'O' if text == answer else 'X'} {text}")
