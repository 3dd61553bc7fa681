r"""``xplayers lm-train`` and ``xplayers lm-generate``: volume 2's language models.

``lm-train`` trains chapter 6's ``Rnnlm`` or ``BetterRnnlm`` on the Penn
Treebank files in ``--data DIR`` or, by default, on the grammar corpus
that ships with xplayers (:mod:`xplayers.book2.datasets.grammar`), one
epoch at a time as the book's ``ch06/train_better_rnnlm.py`` does: after
each epoch the validation perplexity is measured and the learning rate
divided by ``--lr-decay`` when it got worse; at the end the test
perplexity. The book's chapter 6 run is::

    xplayers lm-train --data DIR --model better --epochs 40 --lr 20 --output better.npz

``lm-generate MODEL.npz --start WORD`` writes text with a saved model,
as ``ch07/generate_better_text.py`` does.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xplayers._validation import FLOAT_DTYPES
from xplayers.backend import to_numpy, use_backend
from xplayers.book2 import SGD, BetterRnnlm, Rnnlm, RnnlmTrainer
from xplayers.book2.datasets import grammar, ptb
from xplayers.book2.rnnlm import BaseModel, load_model
from xplayers.cli._common import (
    PROG,
    add_backend_options,
    backend_args,
    check_writable,
    fraction,
    positive_float,
    positive_integer,
    seed,
    usage,
)
from xplayers.errors import LayerInputError, ModelFileError, TrainingError
from xplayers.training import ProgressBar, show_progress

__all__ = ["GENERATE", "TRAIN", "Command"]

#: The --model choices and the classes they build.
MODELS: dict[str, type[BaseModel]] = {"rnnlm": Rnnlm, "better": BetterRnnlm}
#: Words the book leaves out of generated text (``ch07/generate_text.py``).
BOOK_SKIP = ("N", "<unk>", "$")
#: The options a resumed run must repeat.
_RESUME_OPTIONS = (
    "data",
    "model",
    "hidden_size",
    "dropout",
    "lr",
    "lr_decay",
    "max_grad",
    "batch_size",
    "time_size",
    "seed",
    "dtype",
)


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_parser(sub)`` adds it to the parser, ``run(args)`` runs it."""

    add_parser: Callable[[Any], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- lm-train


def _add_train_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "lm-train",
        help="train a recurrent language model and report its perplexity",
        description="Train volume 2's Rnnlm or BetterRnnlm (chapter 6) on the Penn Treebank "
        "files of --data or on the grammar corpus shipped with xplayers; print the validation "
        "perplexity after every epoch and the test perplexity at the end.",
    )
    add_backend_options(p)
    p.add_argument(
        "--data",
        metavar="DIR",
        help="directory holding ptb.train.txt, ptb.valid.txt and ptb.test.txt (from "
        f"{ptb.URL}); default: the grammar corpus shipped with xplayers",
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        default="rnnlm",
        help="rnnlm: embedding-LSTM-affine; better: two LSTM layers, dropout, tied weights "
        "(default: rnnlm)",
    )
    p.add_argument(
        "--hidden-size",
        type=positive_integer,
        metavar="H",
        help="LSTM width, also the word vectors' (default: 100 for rnnlm, 650 for better, "
        "as the book)",
    )
    p.add_argument(
        "--dropout", type=fraction, default=0.5, help="better only: dropout ratio (default: 0.5)"
    )
    p.add_argument(
        "--lr", type=positive_float, default=20.0, help="SGD learning rate (default: 20)"
    )
    p.add_argument(
        "--lr-decay",
        type=positive_float,
        default=4.0,
        metavar="F",
        help="divide the learning rate by F after an epoch whose validation perplexity is "
        "worse than the best (default: 4, as the book; 1 never decays)",
    )
    p.add_argument(
        "--max-grad",
        type=positive_float,
        default=0.25,
        help="clip the global gradient norm to this (default: 0.25)",
    )
    p.add_argument(
        "--batch-size", type=positive_integer, default=20, help="rows per batch (default: 20)"
    )
    p.add_argument(
        "--time-size",
        type=positive_integer,
        default=35,
        help="time steps per batch (truncated backpropagation; default: 35)",
    )
    p.add_argument(
        "--epochs", type=positive_integer, default=4, help="passes over the corpus (default: 4)"
    )
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the initial weights, the dropout masks and the grammar corpus (default: 0)",
    )
    p.add_argument(
        "--dtype",
        choices=FLOAT_DTYPES,
        default="float32",
        help="floating dtype of the weights (default: float32)",
    )
    p.add_argument("--output", metavar="MODEL.npz", help="save the trained model here")
    p.add_argument("--checkpoint", metavar="PATH.npz", help="save the model here after every epoch")
    p.add_argument(
        "--resume",
        metavar="PATH.npz",
        help="continue the run saved in this checkpoint, bit for bit (give the options of the "
        "run that wrote it; --epochs counts from its start)",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print only the final perplexities (no per-epoch lines, no progress bar)",
    )
    return p


@dataclass
class _Corpus:
    train: np.ndarray[Any, Any]
    valid: np.ndarray[Any, Any]
    test: np.ndarray[Any, Any]
    words: list[str]
    source: str


def _corpus(args: argparse.Namespace) -> _Corpus:
    if args.data is not None:
        train, word_to_id, _ = ptb.load_data("train", data_dir=args.data)
        valid, _, _ = ptb.load_data("valid", data_dir=args.data)
        test, word_to_id, _ = ptb.load_data("test", data_dir=args.data)
        source = f"ptb in {args.data}"
    else:
        train, word_to_id, _ = grammar.load_data("train", seed=args.seed)
        valid, _, _ = grammar.load_data("valid", seed=args.seed)
        test, _, _ = grammar.load_data("test", seed=args.seed)
        source = f"the grammar corpus (seed {args.seed})"
    words = sorted(word_to_id, key=word_to_id.__getitem__)
    return _Corpus(train, valid, test, words, source)


def _perplexity(model: BaseModel, corpus: np.ndarray[Any, Any], batch: int, steps: int) -> float:
    """The book's ``eval_perplexity``, without its printing; NaN for a corpus under one batch."""
    iters = (len(corpus) - 1) // (batch * steps)
    if iters < 1:
        return math.nan
    model.reset_state()
    total: Any = 0.0
    jump = (len(corpus) - 1) // batch
    for i in range(iters):  # the book's eval_perplexity batches
        pos = i * steps + jump * np.arange(batch)[:, None] + np.arange(steps)
        xs, ts = corpus[pos % len(corpus)], corpus[(pos + 1) % len(corpus)]
        total = total + (
            model.forward(xs, ts, train_flg=False)
            if isinstance(model, BetterRnnlm)
            else model.forward(xs, ts)
        )
    model.reset_state()
    return math.exp(float(to_numpy(total)) / iters)


@dataclass
class _State:
    """What a checkpoint holds beyond the weights: enough to continue bit for bit."""

    epoch: int = 0
    lr: float = 0.0
    best: float | None = None
    history: list[dict[str, float]] | None = None

    def to_json(self, model: BaseModel) -> dict[str, Any]:
        drops = [layer.rng.bit_generator.state for layer in getattr(model, "drop_layers", [])]
        return {
            "epoch": self.epoch,
            "lr": self.lr,
            "best": self.best,
            "history": self.history or [],
            "dropout_states": drops,
        }


def _restore(path: str, model: BaseModel, args: argparse.Namespace) -> _State:
    meta = model.load_params(path)
    ck = meta.get("checkpoint")
    if not isinstance(ck, dict) or "epoch" not in ck:
        raise ModelFileError(f"model file {path!r}: not a checkpoint of {PROG} lm-train")
    if meta.get("options") != _options(args):
        raise ModelFileError(
            f"checkpoint {path!r} was written by a run with other options "
            f"({meta.get('options')}); give the same options to resume it"
        )
    drops = getattr(model, "drop_layers", [])
    for layer, state in zip(drops, ck.get("dropout_states", []), strict=False):
        layer.rng.bit_generator.state = state
    return _State(int(ck["epoch"]), float(ck["lr"]), ck.get("best"), list(ck.get("history", [])))


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The options a resumed run must share with the run that wrote the checkpoint."""
    return {k: getattr(args, k) for k in _RESUME_OPTIONS}


def _build(args: argparse.Namespace, vocab: int) -> BaseModel:
    hidden = args.hidden_size or (650 if args.model == "better" else 100)
    if args.model == "better":
        return BetterRnnlm(vocab, hidden, hidden, args.dropout, seed=args.seed, dtype=args.dtype)
    return Rnnlm(vocab, hidden, hidden, seed=args.seed, dtype=args.dtype)


def _run_train(args: argparse.Namespace) -> int:
    for option in ("output", "checkpoint"):
        check_writable(args, option)
    data = _corpus(args)
    if len(data.train) - 1 < args.batch_size * args.time_size:
        usage(
            args,
            f"the training corpus has {len(data.train)} words, fewer than one batch "
            f"(--batch-size {args.batch_size} x --time-size {args.time_size} + 1)",
        )
    with use_backend(*backend_args(args)) as backend:
        model = _build(args, len(data.words))
        state = _State(lr=args.lr, history=[])
        if args.resume is not None:
            state = _restore(args.resume, model, args)
        optimizer = SGD(lr=state.lr)
        trainer = RnnlmTrainer(model, optimizer)
        what = (
            f"{type(model).__name__} V={len(data.words)} H={model.config()['hidden_size']}, "
            f"SGD lr={state.lr:g}, batch {args.batch_size}x{args.time_size}, {args.dtype}, "
            f"{backend}"
        )
        if not args.quiet:
            print(
                f"training {what} on {data.source}: {len(data.train)} training, "
                f"{len(data.valid)} validation, {len(data.test)} test words",
                flush=True,
            )
        per_epoch = (len(data.train) - 1) // (args.batch_size * args.time_size)
        total = per_epoch * args.epochs
        bar = ProgressBar(
            total, per_epoch, sys.stderr, enabled=show_progress(False if args.quiet else None)
        )
        done = [state.epoch * per_epoch]

        def step(_: int, __: int, loss: Any) -> None:
            done[0] += 1
            bar.update(done[0], lambda: float(to_numpy(loss)))

        start = time.perf_counter()
        xs, ts = data.train[:-1], data.train[1:]
        while state.epoch < args.epochs:
            trainer.fit(
                xs, ts, 1, args.batch_size, args.time_size, args.max_grad, None, callback=step
            )
            state.epoch += 1
            _check_finite(model, state.epoch)
            ppl = _perplexity(model, data.valid, 10, args.time_size)
            bar.clear()
            line = {"epoch": state.epoch, "lr": optimizer.lr, "valid_perplexity": ppl}
            assert state.history is not None
            state.history.append(line)
            if not args.quiet:
                print(
                    f"epoch {state.epoch}/{args.epochs}: valid perplexity {ppl:.2f}, "
                    f"lr {optimizer.lr:g}",
                    flush=True,
                )
            if state.best is None or ppl < state.best:
                state.best = ppl
            else:
                optimizer.lr /= args.lr_decay
            state.lr = optimizer.lr
            if args.checkpoint is not None:
                _save(model, args.checkpoint, data, args, state, checkpoint=True)
        seconds = time.perf_counter() - start
        test_ppl = _perplexity(model, data.test, 10, args.time_size)
        valid_ppl = state.history[-1]["valid_perplexity"] if state.history else math.nan
        if args.output is not None:
            _save(model, args.output, data, args, state, checkpoint=False, test=test_ppl)
    print(
        f"{what}: {args.epochs} epochs in {seconds:.1f} s; valid perplexity {valid_ppl:.2f}, "
        f"test perplexity {test_ppl:.2f}"
    )
    if args.output is not None and not args.quiet:
        print(f"model saved to {args.output}")
    return 0


def _check_finite(model: BaseModel, epoch: int) -> None:
    for p in model.params:
        if not np.all(np.isfinite(to_numpy(p))):
            raise TrainingError(
                f"{PROG} lm-train: the weights became NaN or infinite in epoch {epoch} "
                "(try a smaller --lr or --max-grad)"
            )


def _save(
    model: BaseModel,
    path: str,
    data: _Corpus,
    args: argparse.Namespace,
    state: _State,
    *,
    checkpoint: bool,
    test: float | None = None,
) -> None:
    meta: dict[str, Any] = {
        "words": data.words,
        "corpus": data.source,
        "options": _options(args),
        "history": state.history or [],
    }
    if checkpoint:
        meta["checkpoint"] = state.to_json(model)
    if test is not None and math.isfinite(test):
        meta["test_perplexity"] = test
    model.save_params(Path(path), metadata=meta)


# --------------------------------------------------------------------------- lm-generate


def _add_generate_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "lm-generate",
        help="write text with a language model saved by lm-train",
        description="Sample text word by word from a model saved by 'xplayers lm-train "
        "--output' (chapter 7's generate_text.py); <eos> ends a line.",
    )
    p.add_argument("model", metavar="MODEL.npz", help="a model saved by lm-train")
    add_backend_options(p)
    p.add_argument("--start", required=True, metavar="WORD", help="the first word")
    p.add_argument(
        "--length", type=positive_integer, default=100, help="words to write (default: 100)"
    )
    p.add_argument(
        "--skip",
        action="append",
        metavar="WORD",
        help="a word never to sample; repeat for more (default: N, <unk> and $, as the book, "
        "those in the vocabulary)",
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of the sampling (default: 0)")
    p.add_argument(
        "--dtype",
        choices=FLOAT_DTYPES,
        help="compute in this dtype (default: the model's own)",
    )
    return p


def _run_generate(args: argparse.Namespace) -> int:
    with use_backend(*backend_args(args)):
        model, meta = load_model(args.model, generator=True)
        if args.dtype is not None and args.dtype != model.config()["dtype"]:
            cls = type(model)
            model = cls(**{**model.config(), "dtype": args.dtype})
            model.load_params(args.model)
        words = meta.get("words")
        if not isinstance(words, list) or len(words) != int(model.params[0].shape[0]):
            raise ModelFileError(
                f"model file {args.model!r}: has no vocabulary (save it with "
                f"'{PROG} lm-train --output')"
            )
        word_to_id = {w: i for i, w in enumerate(words)}
        if args.start not in word_to_id:
            usage(args, f"--start {args.start!r} is not a word of the model's vocabulary")
        skip_words = BOOK_SKIP if args.skip is None else tuple(args.skip)
        unknown = [w for w in (args.skip or []) if w not in word_to_id]
        if unknown:
            usage(args, f"--skip {unknown[0]!r} is not a word of the model's vocabulary")
        skip = [word_to_id[w] for w in skip_words if w in word_to_id]
        try:
            ids = model.generate(word_to_id[args.start], skip, args.length, seed=args.seed)  # type: ignore[attr-defined]
        except LayerInputError as exc:
            usage(args, str(exc))
    text = " ".join(words[i] for i in ids).replace("<eos>", ".\n")
    lines = [line.strip().replace(" .", ".") for line in text.splitlines()]
    with contextlib.suppress(BrokenPipeError):
        print("\n".join(line for line in lines if line))
    return 0


TRAIN = Command(_add_train_parser, _run_train)
GENERATE = Command(_add_generate_parser, _run_generate)
