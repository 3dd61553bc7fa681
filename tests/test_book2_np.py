"""The book's ``np`` and ``BaseModel`` as the book's own model files use them.

The model files of chapters 6 to 8 take ``np`` from ``from common.time_layers
import *`` and call it both on host values (building weights) and on the
layers' outputs (``np.concatenate``, ``np.repeat``, ``np.sum``,
``np.argmax``); they subclass ``BaseModel`` and set ``params`` and ``grads``
themselves, without calling its constructor.
"""

from __future__ import annotations

from typing import Any

import numpy
import pytest

from xplayers.backend import backend_name
from xplayers.book2 import BaseModel, TimeAffine, TimeEmbedding, TimeSoftmaxWithLoss

BOOK_STAR: dict[str, Any] = {}
exec("from xplayers.book2 import *", BOOK_STAR)  # the book's own import line
np = BOOK_STAR["np"]


def test_host_values_get_numpy():
    assert np.random is numpy.random
    assert np.float32 is numpy.float32
    assert np.sqrt(4) == 2.0
    w = (np.random.RandomState(0).randn(2, 3) / np.sqrt(2)).astype("f")
    assert isinstance(w, numpy.ndarray)
    assert isinstance(np.zeros(3), numpy.ndarray)
    assert np.concatenate((numpy.ones(2), numpy.zeros(1))).tolist() == [1.0, 1.0, 0.0]


def test_backend_arrays_stay_on_their_backend(backend):
    h = backend.asarray(numpy.arange(6.0).reshape(2, 3))
    hs = np.reshape(np.repeat(h, 4, axis=0), (2, 4, 3))  # ch07/peeky_seq2seq.py
    out = np.concatenate((hs, hs), axis=2)
    total = np.sum(out, axis=1)
    best = np.argmax(backend.asarray(numpy.array([0.1, 3.0, 0.2])))
    for a in (hs, out, total, best):
        assert backend_name(a) == backend.name
    want_hs = numpy.repeat(numpy.arange(6.0).reshape(2, 3), 4, axis=0).reshape(2, 4, 3)
    numpy.testing.assert_array_equal(backend.to_numpy(hs), want_hs)
    numpy.testing.assert_array_equal(
        backend.to_numpy(total), numpy.concatenate((want_hs, want_hs), axis=2).sum(axis=1)
    )
    assert int(backend.to_numpy(best)) == 1


class BookTiedModel(BaseModel):
    """Like the book's ch06/better_rnnlm.py: params set directly, the output tied to the input."""

    def __init__(self) -> None:
        rng = numpy.random.RandomState(0)
        embed_W = (rng.randn(5, 3) / 100).astype("f")
        self.layers = [TimeEmbedding(embed_W), TimeAffine(embed_W.T, numpy.zeros(5, "f"))]
        self.loss_layer = TimeSoftmaxWithLoss()
        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads


def test_a_book_model_on_base_model_saves_and_loads(backend, tmp_path):
    model = BookTiedModel()
    assert model.config() == {}
    assert len(model.sharing.unique(model.params)) == 2  # embed_W once, and the bias
    path = model.save_params(tmp_path / "m.pkl")
    assert path.suffix == ".npz"
    saved = backend.to_numpy(model.params[0]).copy()
    other = BookTiedModel()
    other.load_params(path)
    numpy.testing.assert_array_equal(backend.to_numpy(other.params[0]), saved)
    numpy.testing.assert_array_equal(backend.to_numpy(other.layers[1].params[0]), saved.T)


@pytest.mark.parametrize("name", ["zeros", "argmax"])
def test_numpy_functions_keep_their_names_and_docs(name):
    assert getattr(np, name).__name__ == name
    assert getattr(np, name).__doc__ == getattr(numpy, name).__doc__


def test_zeros_like_takes_the_books_item_assignment(backend):
    """ch07/seq2seq.py's Encoder.backward: ``dhs = np.zeros_like(hs); dhs[:, -1, :] = dh``."""
    hs = backend.asarray(numpy.ones((2, 3, 4), dtype=numpy.float32))
    dh = backend.asarray(numpy.full((2, 4), 5.0, dtype=numpy.float32))
    dhs = np.zeros_like(hs)
    dhs[:, -1, :] = dh
    want = numpy.zeros((2, 3, 4), numpy.float32)
    want[:, -1, :] = 5.0
    got = numpy.asarray(dhs) if isinstance(dhs, numpy.ndarray) else backend.to_numpy(dhs)
    numpy.testing.assert_array_equal(got, want)
    assert got.dtype == numpy.float32
