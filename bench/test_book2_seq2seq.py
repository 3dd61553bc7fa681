"""Volume 2, chapter 8: one AttentionSeq2seq training step on the date questions, batch 128.

The step is the body of the book's ``Trainer.fit``: forward, backward,
``clip_grads(grads, 5.0)`` and ``Adam`` (vocabulary 59, wordvec 16, hidden
256, questions of 29 characters reversed, answers of 11, as ``ch08/train.py``).
Rows: the book's NumPy code (``book2_seq2seq_numpy.py``) and
:class:`xplayers.book2.AttentionSeq2seq` on the backend ``XPLAYERS_BACKEND``
selects, plus torch and JAX on the CPU when that is NumPy (the default
run of ``nox -s bench``); on a GPU backend only that backend. Every row
starts from the same weights and the same batch; a timed step ends when
the device is done (the backend record's ``sync`` of the loss and weights).
"""

from __future__ import annotations

import numpy as np
import pytest
from book2_seq2seq_numpy import Adam as BookAdam
from book2_seq2seq_numpy import AttentionSeq2seq as BookAttentionSeq2seq
from book2_seq2seq_numpy import step as book_step

import xplayers as xpl
from xplayers import book2
from xplayers.backend import record
from xplayers.book2.datasets import sequence

BATCH, WORDVEC, HIDDEN = 128, 16, 256
TABLE = f"AttentionSeq2seq training step, date, batch {BATCH} (samples/s)"
GROUP = f"attention seq2seq step date N={BATCH}"


@pytest.fixture(scope="module")
def date_batch():
    lines = sequence.date_lines(2000, seed=0)
    (x, t), _ = sequence.from_lines(lines)
    return x[:BATCH, ::-1].copy(), t[:BATCH].copy(), len(sequence.get_vocab()[0])


def test_book_step(measure, xb, date_batch):
    if xb.gpu:  # seconds per step: it would take the GPU check's whole time
        pytest.skip("the book's NumPy step is measured in the CPU run")
    x, t, vocab = date_batch
    model, optimizer = BookAttentionSeq2seq(vocab, WORDVEC, HIDDEN, seed=0), BookAdam()
    measure(
        lambda: book_step(model, optimizer, x, t),
        GROUP,
        "book",
        table=TABLE,
        row="float32",
        samples=BATCH,
    )


@pytest.mark.parametrize("target", ["selected", "torch:cpu", "jax:cpu"])
def test_xplayers_step(measure, xb, date_batch, target):
    x, t, vocab = date_batch
    if target == "selected":
        name, device, label = xb.backend.name, xb.backend.device, xb.label
    elif xb.backend.name != "numpy":
        pytest.skip(f"{target} runs beside NumPy only (this run measures {xb.label})")
    else:
        name, device, label = target.split(":")[0], "cpu", target
        usable, why = record(name).status(device)
        if not usable:
            pytest.skip(f"{target}: {why}")
    with xpl.use_backend(name, device):
        model = book2.AttentionSeq2seq(vocab, WORDVEC, HIDDEN, rng=np.random.default_rng(0))
        optimizer = book2.Adam()
        sync = record(name).sync

        def run():
            loss = model.forward(x, t)
            model.backward()
            params, grads = model.params, model.grads
            book2.clip_grads(grads, 5.0)
            optimizer.update(params, grads)
            sync([loss, *params])

        measure(
            run,
            GROUP,
            f"xplayers {label}",
            table=TABLE,
            row="float32",
            samples=BATCH,
            relative_to="book",
            device="gpu" if xb.gpu and target == "selected" else "cpu",
        )
