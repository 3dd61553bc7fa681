"""train_step: the fused NumPy path equals the layer path for every optimizer, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from xplayers.network import MultiLayerNet, TwoLayerNet
from xplayers.optim import OPTIMIZERS, get_optimizer


def _data(rng, n=12, d=6, c=3, onehot=False):
    x = rng.normal(size=(n, d))
    labels = rng.integers(0, c, size=n)
    return x, (np.eye(c)[labels] if onehot else labels)


def _generic_steps(net, opt, batches):
    losses = []
    for x, t in batches:
        losses.append(float(xpl.to_numpy(net.loss(x, t))))
        net.gradient(x, t)
        opt.update(net.params, net.grads)
    return losses


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("onehot", [False, True])
def test_train_step_matches_layer_path(backend, rng, name, activation, onehot):
    batches = [_data(rng, onehot=onehot) for _ in range(4)]
    dev = [(backend.asarray(x), backend.asarray(t)) for x, t in batches]
    kwargs = {"lr": 0.05}
    a = MultiLayerNet(6, [5, 4], 3, activation=activation, weight_init_std=0.5, seed=3)
    b = MultiLayerNet(6, [5, 4], 3, activation=activation, weight_init_std=0.5, seed=3)
    opt_a, opt_b = get_optimizer(name, **kwargs), get_optimizer(name, **kwargs)
    fast = [float(backend.to_numpy(a.train_step(x, t, opt_a))) for x, t in dev]
    slow = _generic_steps(b, opt_b, dev)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    for key in a.params:
        np.testing.assert_allclose(
            backend.to_numpy(a.params[key]), backend.to_numpy(b.params[key]), rtol=1e-11, atol=1e-14
        )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_train_step_keeps_dtype_and_parameter_identity(backend, rng, dtype):
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.3, seed=0, dtype=dtype)
    before = {k: net.params[k] for k in net.params}
    x, t = _data(rng)
    loss = net.train_step(
        backend.asarray(x.astype(dtype)), backend.asarray(t), get_optimizer("sgd", lr=0.1)
    )
    assert loss.dtype == backend.dtype(dtype)
    for k, v in net.params.items():
        assert v.dtype == backend.dtype(dtype)
        if backend.name == "numpy" and not backend.readonly:
            assert v is before[k]  # updated in place: the book's shared params dict stays valid


def test_nothing_returned_is_overwritten(rng):
    """Buffers are reused between steps, but never the arrays handed to the caller."""
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.3, seed=0)
    opt = get_optimizer("sgd", lr=0.1)
    x, t = _data(rng)
    scores = net.predict(x)
    scores_copy = scores.copy()
    grads = {k: v.copy() for k, v in net.gradient(x, t).items()}
    grads_live = net.grads
    losses = [net.train_step(x, t, opt) for _ in range(5)]
    values = [float(v) for v in losses]
    for _ in range(5):
        net.train_step(x, t, opt)
    assert [float(v) for v in losses] == values
    assert len({id(v) for v in losses}) == len(losses)
    np.testing.assert_array_equal(scores, scores_copy)
    for k, v in grads.items():
        np.testing.assert_array_equal(grads_live[k], v)


def test_fused_path_is_taken_on_numpy(rng):
    net = TwoLayerNet(6, 5, 3, seed=0)
    net.train_step(*_data(rng), get_optimizer("sgd"))
    assert net._numpy_plan is not None
    assert net._numpy_plan.numpy_step is not None
    ro = TwoLayerNet(6, 5, 3, seed=0)
    x, t = _data(rng)
    x.setflags(write=False)
    ro.train_step(x, t, get_optimizer("sgd"))  # read-only input: fused path still fine
    assert ro._numpy_plan is not None
    assert ro._numpy_plan.numpy_step is not None


def test_dask_graph_stays_short(rng):
    """Lazy parameters and optimizer state are persisted each update, so steps cost the same."""
    pytest.importorskip("dask")
    with xpl.use_backend("dask"):
        net = TwoLayerNet(6, 5, 3, weight_init_std=0.3, seed=0)
        opt = get_optimizer("adam", lr=0.01)
        x, t = (xpl.asarray(a) for a in _data(rng))
        sizes = []
        for _ in range(6):
            net.train_step(x, t, opt)
            sizes.append(max(len(net.params[k].__dask_graph__()) for k in net.params))
            sizes.append(max(len(v.__dask_graph__()) for v in opt.m.values()))
    assert max(sizes) == min(sizes)
