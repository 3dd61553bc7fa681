"""The book's chapter 7 and 8 training runs, shortened, beside xplayers on the same data.

A book-style program: the book's ``ch07/train_seq2seq.py`` and
``ch08/train.py`` loop (``forward``, ``backward``, ``clip_grads``, ``Adam``
on shuffled batches, then ``eval_seq2seq`` on test questions) runs the
book's own classes, imported from its repository snapshot, and the classes
of :mod:`xplayers.book2`, on the same generated questions. Both models
draw their weights from ``np.random.randn`` after the same
``np.random.seed``, so they start equal and must stay together: the same
losses step by step (float32 rounding apart) and nearly the same answers.
The test skips when the snapshot is not on this machine.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from xplayers import book2
from xplayers.book2.datasets import sequence

BOOK = Path("/work/.mirror/oreilly-japan+deep-learning-from-scratch-2/repo")
BOOK_MODULES = ("common", "ch07", "ch08", "dataset", "seq2seq", "peeky_seq2seq")
STEPS, BATCH, WORDVEC, HIDDEN = 40, 32, 16, 32


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """The book's modules, imported from a copy of the snapshot; removed again afterwards."""
    if not BOOK.exists():
        pytest.skip(f"the book's repository snapshot is not at {BOOK}")
    root = tmp_path_factory.mktemp("book")
    archive = subprocess.run(
        ["git", "-C", str(BOOK), "archive", "HEAD", "common", "ch07", "ch08"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    saved = list(sys.path)
    sys.path[:0] = [str(root), str(root / "ch07")]
    try:
        yield {
            name: importlib.import_module(name)
            for name in (
                "common.optimizer",
                "common.util",
                "ch07.seq2seq",
                "peeky_seq2seq",
                "ch08.attention_seq2seq",
            )
        }
    finally:
        sys.path[:] = saved
        for name in list(sys.modules):
            if name.split(".")[0] in BOOK_MODULES:
                del sys.modules[name]


def _data(task: str, reverse: bool) -> tuple[tuple[Any, Any], tuple[Any, Any], dict[int, str]]:
    make = sequence.GENERATED[f"{task}.txt"]
    (x_train, t_train), (x_test, t_test) = sequence.from_lines(make(2000, seed=11))
    if reverse:
        x_train, x_test = x_train[:, ::-1].copy(), x_test[:, ::-1].copy()
    return (x_train, t_train), (x_test, t_test), dict(sequence.get_vocab()[1])


def _train(model: Any, optimizer: Any, clip: Any, x: Any, t: Any) -> list[float]:
    """The book's Trainer.fit, shortened: shuffled batches, clip_grads(5.0), update."""
    order = np.random.default_rng(5).permutation(len(x))
    losses = []
    for i in range(STEPS):
        idx = order[(i * BATCH) % len(x) :][:BATCH]
        loss = model.forward(x[idx], t[idx])
        model.backward()
        params, grads = model.params, model.grads
        clip(grads, 5.0)
        optimizer.update(params, grads)
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize(
    ("task", "module", "name", "reverse"),
    [
        ("addition", "ch07.seq2seq", "Seq2seq", False),
        ("addition", "peeky_seq2seq", "PeekySeq2seq", True),
        ("date", "ch08.attention_seq2seq", "AttentionSeq2seq", True),
    ],
)
def test_the_books_run_and_xplayers_agree(book, task, module, name, reverse):
    (x_train, t_train), (x_test, t_test), id_to_char = _data(task, reverse)
    vocab = len(id_to_char)
    state = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(1)  # noqa: NPY002
        theirs = getattr(book[module], name)(vocab, WORDVEC, HIDDEN)
        np.random.seed(1)  # noqa: NPY002
        ours = getattr(book2, name)(vocab, WORDVEC, HIDDEN)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    for a, b in zip(theirs.params, ours.params, strict=True):
        np.testing.assert_array_equal(a, b)

    book_losses = _train(
        theirs, book["common.optimizer"].Adam(), book["common.util"].clip_grads, x_train, t_train
    )
    our_losses = _train(ours, book2.Adam(), book2.clip_grads, x_train, t_train)
    np.testing.assert_allclose(our_losses, book_losses, rtol=2e-3)
    assert our_losses[-1] < 0.95 * our_losses[0]  # both learned something

    # eval_seq2seq over test questions, the book's own function for its model
    n = 60
    book_eval, our_eval = book["common.util"].eval_seq2seq, book2.eval_seq2seq
    book_right = sum(
        book_eval(theirs, x_test[[i]], t_test[[i]], id_to_char, False, reverse) for i in range(n)
    )
    our_right = sum(
        our_eval(ours, x_test[[i]], t_test[[i]], id_to_char, False, reverse) for i in range(n)
    )
    assert abs(our_right - book_right) <= 2
    guesses = ours.generate_batch(x_test[:n], int(t_test[0, 0]), t_test.shape[1] - 1)
    assert int(np.sum(np.all(guesses == t_test[:n, 1:], axis=1))) == our_right
    same = [
        theirs.generate(x_test[[i]], int(t_test[i, 0]), t_test.shape[1] - 1) == list(guesses[i])
        for i in range(n)
    ]
    assert sum(same) >= 0.95 * n
