"""The book's chapter 5-6 training scripts, shortened, run with the book's code and with xplayers.

The pattern of ``ch05/train.py``, ``ch06/train_rnnlm.py`` and
``ch06/train_better_rnnlm.py``: seed the
global NumPy generator, build the model, train it with ``RnnlmTrainer``
and ``SGD`` (clipping in chapter 6), report the perplexity. Both run on
the same grammar corpus (:mod:`xplayers.book2.datasets.grammar`), the
book's code from the snapshot of its repository in a subprocess, and the
perplexities are compared. The initial weights are the same (the models
draw them from the global generator in the book's order), so the runs
differ only by the order of floating-point operations.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from xplayers.book2 import SGD, BetterRnnlm, Rnnlm, RnnlmTrainer, SimpleRnnlm, eval_perplexity
from xplayers.book2.datasets import grammar

BOOK = Path("/work/.mirror/oreilly-japan+deep-learning-from-scratch-2/repo")

SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
from common.optimizer import SGD
from common.trainer import RnnlmTrainer
from common.util import eval_perplexity
from {module} import {cls}

train = np.load({train!r})
valid = np.load({valid!r})
np.random.seed(0)
model = {cls}({vocab}, 16, 16)
trainer = RnnlmTrainer(model, SGD({lr}))
trainer.fit(train[:-1], train[1:], {epochs}, 10, 10, max_grad={max_grad}, eval_interval=1000)
model.reset_state()
print("PPL", float(eval_perplexity(model, valid, 10, 10)))
"""


@pytest.fixture(scope="module")
def book_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (BOOK / "HEAD").exists() and not (BOOK / ".git").exists():
        pytest.skip(f"the book's repository snapshot is not at {BOOK}")
    archive = subprocess.run(
        ["git", "-C", str(BOOK), "archive", "HEAD"], capture_output=True, check=True
    ).stdout
    root = tmp_path_factory.mktemp("book2")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.mark.parametrize(
    ("module", "cls", "lr", "max_grad"),
    [
        ("ch05.simple_rnnlm", "SimpleRnnlm", 1.0, None),
        ("ch06.rnnlm", "Rnnlm", 20.0, 0.25),
        # the same weights and dropout masks: both drawn from the global generator
        ("ch06.better_rnnlm", "BetterRnnlm", 20.0, 0.25),
    ],
)
def test_book_and_xplayers_reach_the_same_perplexity(
    book_root, tmp_path, module, cls, lr, max_grad
):
    train, word_to_id, _ = grammar.load_data("train", size=2000)
    valid, _, _ = grammar.load_data("valid", size=400)
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "valid.npy", valid)
    epochs = 3
    script = SCRIPT.format(
        root=str(book_root),
        module=module,
        cls=cls,
        train=str(tmp_path / "train.npy"),
        valid=str(tmp_path / "valid.npy"),
        vocab=len(word_to_id),
        lr=lr,
        epochs=epochs,
        max_grad=max_grad,
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=book_root,
        env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"},
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    book_ppl = float(run.stdout.rsplit("PPL", 1)[1])

    np.random.seed(0)  # noqa: NPY002 - the book's global generator
    model = {"SimpleRnnlm": SimpleRnnlm, "Rnnlm": Rnnlm, "BetterRnnlm": BetterRnnlm}[cls](
        len(word_to_id), 16, 16
    )
    trainer = RnnlmTrainer(model, SGD(lr))
    trainer.fit(train[:-1], train[1:], epochs, 10, 10, max_grad=max_grad, eval_interval=1000)
    model.reset_state()
    ours = eval_perplexity(model, valid, 10, 10)
    assert ours < len(word_to_id) / 2  # it learned something
    print(f"{cls}: book {book_ppl:.3f}, xplayers {ours:.3f}")
    assert ours == pytest.approx(book_ppl, rel=0.02)
