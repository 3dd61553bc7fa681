"""Volume 2's Trainer, shared weights and spiral data (xplayers.book2), on every backend.

The two-layer network is chapter 1's, written here as the book writes it
with the layers of xplayers.book2.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.backend import backend_name
from xplayers.book2 import (
    SGD,
    Adam,
    Affine,
    MatMul,
    Sigmoid,
    SoftmaxWithLoss,
    Trainer,
    _training,
    clip_grads,
    sync_host,
    trainer,
)
from xplayers.book2._training import SharedWeights, remove_duplicate
from xplayers.book2.datasets import spiral
from xplayers.errors import LayerInputError


class TwoLayerNet:
    """Chapter 1's network, as the book writes it."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, seed: int = 0):
        I, H, O = input_size, hidden_size, output_size  # noqa: E741 (the book's names)
        rng = np.random.default_rng(seed)
        W1 = 0.01 * rng.standard_normal((I, H))
        b1 = np.zeros(H)
        W2 = 0.01 * rng.standard_normal((H, O))
        b2 = np.zeros(O)
        self.W1 = W1  # kept, as the book's CBOW keeps W_in (model.word_vecs)
        self.layers = [Affine(W1, b1), Sigmoid(), Affine(W2, b2)]
        self.loss_layer = SoftmaxWithLoss()
        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def predict(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def forward(self, x: Any, t: Any) -> Any:
        score = self.predict(x)
        return self.loss_layer.forward(score, t)

    def backward(self, dout: Any = 1) -> Any:
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout


class TiedNet:
    """``x @ W @ W.T`` with ``W`` listed twice and once transposed, as the book's weight tying."""

    def __init__(self, W: np.ndarray):
        self.a, self.b, self.c = MatMul(W), MatMul(W), MatMul(W.T)
        self.loss_layer = SoftmaxWithLoss()
        self.params, self.grads = [], []
        for layer in (self.a, self.b, self.c):
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, x: Any, t: Any) -> Any:
        h = self.a.forward(x) + self.b.forward(x)
        return self.loss_layer.forward(self.c.forward(h), t)

    def backward(self, dout: Any = 1) -> None:
        dh = self.c.backward(self.loss_layer.backward(dout))
        self.a.backward(dh)
        self.b.backward(dh)


# --------------------------------------------------------------------------- spiral


def test_spiral_is_the_books_formula_and_leaves_the_global_generator_alone():
    state = np.random.get_state()  # noqa: NPY002
    x, t = spiral.load_data()
    after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(a, b) for a, b in zip(state[1:3], after[1:3], strict=True))
    assert x.shape == (300, 2)
    assert x.dtype == np.float64
    assert t.dtype == np.int32
    np.testing.assert_array_equal(t.sum(axis=0), [100, 100, 100])
    rs = np.random.RandomState(1984)  # the book: np.random.seed(1984), then randn per point
    for j in range(3):
        for i in range(100):
            rate = i / 100
            theta = j * 4.0 + 4.0 * rate + rs.randn() * 0.2
            want = [rate * np.sin(theta), rate * np.cos(theta)]
            np.testing.assert_array_equal(x[100 * j + i], want)
            assert t[100 * j + i, j] == 1
    x2, _ = spiral.load_data(seed=1)
    assert not np.array_equal(x, x2)


# --------------------------------------------------------------------------- trainer


def test_trainer_fits_the_spiral(backend, capsys):
    x, t = spiral.load_data()
    # the book's SGD(lr=1.0); Adam learns in fewer epochs where steps are slow (Dask, JAX)
    epochs = 8 if backend.slow else 100
    model = TwoLayerNet(2, 10, 3)
    tr = Trainer(model, Adam(lr=0.05) if backend.slow else SGD(lr=1.0), seed=0)
    tr.fit(x, t, max_epoch=epochs, batch_size=30, eval_interval=10)
    assert len(tr.loss_list) == epochs  # iterations 1 of each epoch (10 per epoch)
    first, last = tr.loss_list[0], np.mean(tr.loss_list[-3:])
    assert first == pytest.approx(np.log(3), abs=0.02)  # small weights: uniform guesses
    assert last < first - 0.15
    assert tr.current_epoch == epochs
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == epochs
    pattern = r"\| epoch (\d+) \|  iter 1 / 10 \| time \d+\[s\] \| loss (\d+\.\d\d)"
    match = re.fullmatch(pattern, lines[-1])
    assert match is not None
    assert match.group(1) == str(epochs)
    assert float(match.group(2)) == pytest.approx(tr.loss_list[-1], abs=0.006)
    assert backend_name(model.params[0]) == backend.name


def test_trainer_gathers_batches_on_the_models_device(backend):
    seen: list[str] = []
    model = TwoLayerNet(2, 4, 3)
    forward = model.forward

    def recording(x: Any, t: Any) -> Any:
        seen.append(backend_name(x))
        seen.append(backend_name(t))
        return forward(x, t)

    model.forward = recording
    x, t = spiral.load_data()
    Trainer(model, SGD()).fit(x, t, max_epoch=1, batch_size=100, eval_interval=None)
    assert seen == [backend.name] * 6 if not backend.readonly else seen == ["numpy"] * 6


def test_losses_are_read_on_the_host_only_when_printed(monkeypatch, capsys):
    reads: list[Any] = []
    real = trainer.to_numpy
    monkeypatch.setattr(trainer, "to_numpy", lambda a: reads.append(a) or real(a))
    x, t = spiral.load_data()
    tr = Trainer(TwoLayerNet(2, 4, 3), SGD(), seed=1)
    tr.fit(x, t, max_epoch=2, batch_size=10, eval_interval=20)  # 30 iterations per epoch
    assert len(reads) == 4  # iterations 1 and 21 of each epoch
    assert len(tr.loss_list) == 4
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_trainer_is_repeatable_with_a_seed_or_the_global_generator():
    x, t = spiral.load_data()

    def run(seed: Any) -> list[float]:
        tr = Trainer(TwoLayerNet(2, 5, 3), SGD(lr=1.0), seed=seed)
        tr.fit(x, t, max_epoch=3, batch_size=30, eval_interval=5)
        return tr.loss_list

    assert run(3) == run(3)
    assert run(3) != run(4)
    np.random.seed(8)  # noqa: NPY002 (the book's trainer draws from the global generator)
    a = run(None)
    np.random.seed(8)  # noqa: NPY002
    assert run(None) == a


def test_trainer_clips_like_the_books_clip_grads(monkeypatch):
    calls: list[float] = []

    def spy(grads: list[Any], max_norm: float) -> None:
        calls.append(max_norm)
        clip_grads(grads, max_norm)

    monkeypatch.setattr(_training, "clip_grads", spy)
    x, t = spiral.load_data()
    Trainer(TwoLayerNet(2, 4, 3), SGD()).fit(x, t, 1, 100, max_grad=0.5, eval_interval=None)
    assert calls == [0.5] * 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 301}, r"Trainer.fit: argument 'x': expected at least batch_size = 301"),
        ({"batch_size": 0}, r"Trainer.fit: argument 'batch_size'"),
        ({"max_epoch": 1.5}, r"Trainer.fit: argument 'max_epoch'"),
        ({"max_grad": -1.0}, r"Trainer.fit: argument 'max_grad'"),
        ({"t": np.zeros((299, 3), np.int32)}, r"Trainer.fit: argument 't': expected 300 rows"),
        ({"x": [[0.0], [1.0, 2.0]]}, r"Trainer.fit: argument 'x': expected a rectangular"),
    ],
)
def test_trainer_refuses_bad_arguments(kwargs, message):
    x, t = spiral.load_data()
    args = {"x": x, "t": t, "max_epoch": 1, "batch_size": 30, **kwargs}
    model = TwoLayerNet(2, 4, 3)
    before = [p.copy() for p in model.params]
    with pytest.raises(LayerInputError, match=message):
        Trainer(model, SGD()).fit(**args)
    for p, b in zip(model.params, before, strict=True):
        np.testing.assert_array_equal(p, b)  # no weight changes before a refusal
    with pytest.raises(LayerInputError, match=r"Trainer: argument 'model'"):
        Trainer(object(), SGD())


# --------------------------------------------------------------------------- shared weights


def test_remove_duplicate_sums_tied_gradients_once(backend):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 4))
    model = TiedNet(W)
    x, t = rng.normal(size=(5, 3)), rng.integers(0, 3, size=5)
    model.forward(backend.asarray(x), backend.asarray(t))
    model.backward()
    shared = SharedWeights(model.params, model)
    assert shared.keep == [0]
    assert shared.merged == [[(1, False), (2, True)]]
    a, b, c = (backend.to_numpy(layer.grads[0]) for layer in (model.a, model.b, model.c))
    (g,) = shared.summed(shared.gradients(model.grads))
    np.testing.assert_allclose(backend.to_numpy(g), a + b + c.T, rtol=1e-12)
    if backend.name == "numpy":
        params, grads = remove_duplicate(model.params, model.grads)
        assert params == [model.params[0]]
        np.testing.assert_allclose(grads[0], a + b + c.T, rtol=1e-12)
        np.testing.assert_array_equal(model.a.grads[0], a)  # not added into in place


def test_equal_values_are_not_a_tie():
    """The book merges equal-valued transposes (zero-initialised square matrices, say)."""
    A, B = np.zeros((3, 3)), np.zeros((3, 3))
    assert SharedWeights([A, B]).keep == [0, 1]
    assert SharedWeights([A, A.T]).merged == [[(1, True)]]
    assert SharedWeights([A, A.T.copy()]).keep == [0, 1]


def test_trainer_keeps_tied_weights_tied(backend):
    rng = np.random.default_rng(1)
    model = TiedNet(rng.normal(size=(3, 4)))
    x, t = rng.normal(size=(40, 3)), rng.integers(0, 3, size=40)
    tr = Trainer(model, Adam(lr=0.05), seed=0)
    before = backend.to_numpy(model.a.params[0]).copy()
    tr.fit(x, t, max_epoch=2, batch_size=10, eval_interval=None)
    after = backend.to_numpy(model.a.params[0])
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(backend.to_numpy(model.b.params[0]), after)
    np.testing.assert_allclose(backend.to_numpy(model.c.params[0]), after.T, rtol=1e-12)
    np.testing.assert_array_equal(backend.to_numpy(model.params[2]), after.T)
    assert len(tr.optimizer.m) == 1  # one weight updated, its three gradients summed


def test_ties_are_found_once_per_model(monkeypatch):
    calls = []
    real = _training.is_transpose_of
    monkeypatch.setattr(_training, "is_transpose_of", lambda a, b: calls.append(1) or real(a, b))
    rng = np.random.default_rng(2)
    model = TiedNet(rng.normal(size=(3, 4)))
    x, t = rng.normal(size=(40, 3)), rng.integers(0, 3, size=40)
    tr = Trainer(model, SGD(), seed=0)
    tr.fit(x, t, max_epoch=1, batch_size=10, eval_interval=None)
    once = len(calls)
    assert once > 0
    tr.fit(x, t, max_epoch=3, batch_size=10, eval_interval=None)
    assert len(calls) == once


def test_immutable_weights_reach_every_layer():
    """On JAX (immutable arrays) the optimizer replaces the weights; the layers get the new ones."""
    pytest.importorskip("jax")
    rng = np.random.default_rng(3)
    with xpl.use_backend("jax"):
        model = TiedNet(rng.normal(size=(3, 4)).astype("f"))
        x, t = rng.normal(size=(20, 3)), rng.integers(0, 3, size=20)
        old = model.a.params[0]
        Trainer(model, SGD(lr=0.5), seed=0).fit(x, t, 1, 10, eval_interval=None)
    assert model.a.params[0] is not old
    assert model.b.params[0] is model.a.params[0]
    assert model.params[0] is model.a.params[0]
    np.testing.assert_array_equal(np.asarray(model.c.params[0]), np.asarray(model.a.params[0]).T)


@pytest.mark.backends("dask")
def test_lazy_weights_are_computed_at_each_step():
    """On Dask each step's weights, optimizer state and gradients are persisted: graphs stay short."""
    pytest.importorskip("dask")
    x, t = spiral.load_data()
    sizes = []
    with xpl.use_backend("dask"):
        model = TwoLayerNet(2, 4, 3)
        tr = Trainer(model, Adam(), seed=0)
        for _ in range(2):
            tr.fit(x, t, max_epoch=1, batch_size=100, eval_interval=None)
            sizes.append([len(a.__dask_graph__()) for a in model.params + model.layers[0].grads])
    assert sizes[0] == sizes[1]
    assert max(sizes[1]) <= 2


def _own_loop(model: TwoLayerNet, optimizer: Any, steps: int = 12) -> list[float]:
    """The book's ``train_custom_loop.py``: forward, backward, ``optimizer.update`` on the lists."""
    x, t = spiral.load_data()
    losses = []
    for i in range(steps):
        rows = slice(30 * i, 30 * i + 30)
        losses.append(float(xpl.to_numpy(model.forward(x[rows], t[rows]))))
        model.backward()
        optimizer.update(model.params, model.grads)
    return losses


@pytest.mark.parametrize("opt_class", [SGD, Adam])
def test_the_books_own_loop_trains_on_every_backend(backend, opt_class):
    """``optimizer.update(model.params, model.grads)`` with the model's lists gathered once.

    Where arrays are replaced rather than written (JAX, Dask), the model's
    lists hold the first arrays: the optimizer must read the layers' current
    gradients and the layers must get the updated weights, as on NumPy.
    """
    with xpl.use_backend("numpy"):
        want_model = TwoLayerNet(2, 10, 3, seed=4)
        want = _own_loop(want_model, opt_class(lr=0.5))
    model = TwoLayerNet(2, 10, 3, seed=4)
    got = _own_loop(model, opt_class(lr=0.5))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[-1] < got[0] - 0.01  # it learned
    layer_params = [p for layer in model.layers for p in layer.params]
    want_params = [p for layer in want_model.layers for p in layer.params]
    for mine, layers, ref in zip(model.params, layer_params, want_params, strict=True):
        assert mine is layers  # the model's list and the layers' agree
        np.testing.assert_allclose(backend.to_numpy(layers), ref, rtol=1e-5, atol=1e-6)


def test_fit_writes_the_trained_weights_into_the_model_files_host_arrays(backend):
    """The book's ``model.word_vecs = W_in`` keeps the host array the layers were built from."""
    model = TwoLayerNet(2, 10, 3, seed=4)
    initial = model.W1.copy()
    x, t = spiral.load_data()
    Trainer(model, SGD(lr=1.0), seed=0).fit(x, t, 2, 30, eval_interval=None)
    trained = backend.to_numpy(model.layers[0].params[0]).copy()
    assert np.abs(trained - initial).max() > 1e-3
    np.testing.assert_allclose(model.W1, trained, rtol=1e-6)
    # after a loop of one's own, sync_host writes them
    _own_loop(model, SGD(lr=1.0), steps=3)
    assert np.abs(backend.to_numpy(model.layers[0].params[0]) - trained).max() > 1e-6
    sync_host(model)
    np.testing.assert_allclose(model.W1, backend.to_numpy(model.layers[0].params[0]), rtol=1e-6)


def test_the_books_own_loop_keeps_transposed_ties(backend):
    """``remove_duplicate`` then ``update`` in a loop of one's own: ``W``, ``W`` and ``W.T`` stay tied."""
    rng = np.random.default_rng(3)
    W = rng.normal(size=(3, 4))
    x, t = rng.normal(size=(20, 3)), rng.integers(0, 3, size=20)
    out = {}
    for target in ("numpy", backend.name):
        with xpl.use_backend(target, backend.device if target == backend.name else None):
            model = TiedNet(W.copy())
            optimizer = SGD(lr=0.5)
            for _ in range(3):
                model.forward(x, t)
                model.backward()
                optimizer.update(*remove_duplicate(model.params, model.grads))
        out[target] = [
            np.asarray(xpl.to_numpy(p)) for p in (model.a, model.b, model.c) for p in p.params
        ]
    a, b, c = out[backend.name]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(c, a.T, rtol=1e-6)
    np.testing.assert_allclose(a, out["numpy"][0], rtol=1e-5, atol=1e-6)
