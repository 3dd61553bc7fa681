"""The fused NumPy step equals the generic layer path, and never overwrites what it returned."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import xplayers as xpl
from xplayers._numpy_step import NumpyStep


def _generic(params, acts, x, t, lr):
    """One SGD step through the public layers, on copies; returns loss and new params."""
    layers = []
    for i, (W, b) in enumerate(params):
        layers.append(xpl.Affine(W.copy(), b.copy()))
        if i < len(params) - 1:
            layers.append(xpl.Relu() if acts[i] == "relu" else xpl.Sigmoid())
    loss_layer = xpl.SoftmaxWithLoss()
    h = x
    for layer in layers:
        h = layer.forward(h)
    loss = loss_layer.forward(h, t)
    d = loss_layer.backward()
    for layer in reversed(layers):
        d = layer.backward(d)
    affines = [layer for layer in layers if isinstance(layer, xpl.Affine)]
    return (
        loss,
        [(a.W - lr * a.dW, a.b - lr * a.db) for a in affines],
        [(a.dW, a.db) for a in affines],
    )


def _params(rng, sizes, dtype):
    return [
        (
            rng.normal(scale=0.3, size=(m, k)).astype(dtype),
            rng.normal(scale=0.1, size=k).astype(dtype),
        )
        for m, k in itertools.pairwise(sizes)
    ]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["relu", "sigmoid"])
@pytest.mark.parametrize("target", ["labels", "onehot"])
@pytest.mark.parametrize("n", [0, 1, 7, 64])
def test_fused_sgd_step_equals_generic(rng, dtype, act, target, n):
    sizes = [12, 9, 6, 4]
    params = _params(rng, sizes, dtype)
    x = rng.normal(size=(n, 3, 4)).astype(dtype)
    labels = rng.integers(0, 4, size=n)
    t = labels if target == "labels" else np.eye(4, dtype=dtype)[labels]
    acts = [act, act]
    ref_loss, ref_params, _ = _generic(params, acts, x, t, lr=0.1)
    work = [(W.copy(), b.copy()) for W, b in params]
    step = NumpyStep()
    assert step.supports(work, x, t)
    loss = step(work, acts, x, t, sgd_lr=0.1)
    tol = {"rtol": 1e-12, "atol": 1e-13} if dtype == "float64" else {"rtol": 2e-5, "atol": 2e-6}
    assert loss.dtype == np.dtype(dtype)
    np.testing.assert_allclose(float(loss), float(ref_loss), **tol)
    for (W, b), (rW, rb) in zip(work, ref_params, strict=True):
        np.testing.assert_allclose(W, rW, **tol)
        np.testing.assert_allclose(b, rb, **tol)


def test_fused_step_gives_unscaled_gradients_to_an_optimizer(rng):
    params = _params(rng, [5, 4, 3], "float64")
    x, t = rng.normal(size=(6, 5)), rng.integers(0, 3, size=6)
    _, _, ref_grads = _generic(params, ["relu"], x, t, lr=0.0)
    seen = []
    NumpyStep()(
        params, ["relu"], x, t, update=lambda g: seen.extend((dW.copy(), db.copy()) for dW, db in g)
    )
    for (dW, db), (rW, rb) in zip(seen, ref_grads, strict=True):
        np.testing.assert_allclose(dW, rW, rtol=1e-12)
        np.testing.assert_allclose(db, rb, rtol=1e-12)


def test_returned_loss_is_never_overwritten(rng):
    params = _params(rng, [5, 4, 3], "float64")
    step = NumpyStep()
    x, t = rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)
    first = step(params, ["relu"], x, t, sgd_lr=0.5)
    kept = float(first)
    for _ in range(5):
        later = step(params, ["relu"], x, t, sgd_lr=0.5)
        assert later is not first
        assert not np.shares_memory(later, first)
    assert float(first) == kept


def test_non_finite_logits_defer_to_generic_path(rng):
    params = _params(rng, [2, 3], "float64")
    before = [(W.copy(), b.copy()) for W, b in params]
    x = np.array([[np.inf, 1.0]])
    assert NumpyStep()(params, [], x, np.array([0]), sgd_lr=0.1) is None
    for (W, b), (W0, b0) in zip(params, before, strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_fused_step_validates_like_the_layers(rng):
    params = _params(rng, [5, 3], "float64")
    step = NumpyStep()
    with pytest.raises(
        xpl.LayerInputError, match=r"Affine\.forward: argument 'x': expected 5 values"
    ):
        step(params, [], rng.normal(size=(2, 6)), np.array([0, 1]), sgd_lr=0.1)
    with pytest.raises(
        xpl.LayerInputError,
        match=r"SoftmaxWithLoss\.forward: argument 't': expected labels in \[0, 3\)",
    ):
        step(params, [], rng.normal(size=(2, 5)), np.array([0, 3]), sgd_lr=0.1)


def test_supports_only_writable_numpy(rng):
    params = _params(rng, [5, 3], "float64")
    x, t = np.ones((2, 5)), np.array([0, 1])
    assert NumpyStep.supports(params, x, t)
    ro = [(W.copy(), b.copy()) for W, b in params]
    ro[0][0].setflags(write=False)
    assert not NumpyStep.supports(ro, x, t)
    mixed = [(params[0][0].astype("float32"), params[0][1])]
    assert not NumpyStep.supports(mixed, x, t)
