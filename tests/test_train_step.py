"""train_step: the same result and layer state as the layer path, for every optimizer and backend."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

import xplayers as xpl
from xplayers.network import (
    MultiLayerNet,
    MultiLayerNetExtend,
    Sequential,
    SimpleConvNet,
    TwoLayerNet,
)
from xplayers.optim import OPTIMIZERS, SGD, get_optimizer


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
    if backend.slow and (activation, onehot) != ("relu", False) and name != "adam":
        pytest.skip("covered on the eager backends; JAX and Dask run each optimizer once")
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


def _state(net, backend):
    """Every array a training step leaves in the layers: grads, and all kept values.

    Each attribute of each layer (and of the loss layer) that holds an array,
    or a tuple of shapes, is compared: ``x``, ``out``, ``mask``, ``y``, ``t``,
    ``loss``, ``dW``, ``db``, im2col's ``col``, BatchNorm's running means, ...
    """
    out = {f"grad {k}": v for k, v in net.grads.items()}
    for name, layer in [*net.layers.items(), ("loss", net.last_layer)]:
        for attr, value in vars(layer).items():
            if array_api_compat.is_array_api_obj(value) or isinstance(value, tuple):
                out[f"{name}.{attr}"] = value
    return {k: v if isinstance(v, tuple) else backend.to_numpy(v) for k, v in out.items()}


def _nets():
    small_conv = {"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1}
    return {
        "relu": lambda: MultiLayerNet(6, [5, 4], 3, weight_init_std=0.5, seed=3),
        "sigmoid": lambda: MultiLayerNet(
            6, [5, 4], 3, activation="sigmoid", weight_init_std=0.5, seed=3
        ),
        "batchnorm, decay": lambda: MultiLayerNetExtend(
            6, [5], 3, use_batchnorm=True, weight_decay_lambda=0.01, seed=3
        ),
        "conv": lambda: SimpleConvNet(
            input_dim=(1, 4, 4), conv_param=small_conv, hidden_size=5, output_size=3, seed=3
        ),
    }


@pytest.mark.parametrize("net_name", list(_nets()))
@pytest.mark.parametrize("opt_name", ["sgd", "momentum", "adam"])
def test_train_step_leaves_the_layer_state_of_the_layer_path(backend, rng, net_name, opt_name):
    """After train_step, the layers hold what gradient + update leaves, on every backend."""
    if backend.slow and (opt_name != "sgd" or net_name == "conv"):
        pytest.skip("covered on the eager backends; JAX and Dask run each network with SGD")
    x, t = _data(rng, n=4, d=16 if net_name == "conv" else 6)
    x, t = backend.asarray(x), backend.asarray(t)
    a, b = _nets()[net_name](), _nets()[net_name]()
    opt_a, opt_b = get_optimizer(opt_name, lr=0.1), get_optimizer(opt_name, lr=0.1)
    for _ in range(2):  # the second step also starts from the state the first left
        a.train_step(x, t, opt_a)
        opt_b.update(b.params, b.gradient(x, t))  # the book's loop
    got, want = _state(a, backend), _state(b, backend)
    assert sorted(got) == sorted(want)
    assert len([k for k in got if k.startswith("grad")]) == len(a.params)
    assert any(k.endswith(".dW") for k in got)
    assert "loss.y" in got
    for key in got:
        if isinstance(want[key], tuple):
            assert got[key] == want[key], key
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-15, err_msg=key)


def test_an_sgd_subclass_takes_the_same_path(rng):
    class Logged(SGD):
        calls = 0

        def update(self, params, grads):
            type(self).calls += 1
            super().update(params, grads)

    x, t = _data(rng)
    a, b = TwoLayerNet(6, 5, 3, seed=0), TwoLayerNet(6, 5, 3, seed=0)
    a.train_step(x, t, Logged(lr=0.1))
    b.train_step(x, t, SGD(lr=0.1))
    assert Logged.calls == 1
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])


def test_train_step_loss_equals_net_loss_for_extreme_logits(backend):
    """Logits [1e308, -1e308]: the loss the step reports is net.loss's, without warnings."""
    layers = {"Affine1": xpl.Affine(backend.asarray(np.eye(2)), backend.asarray(np.zeros(2)))}
    net = Sequential(layers)
    x, t = backend.asarray(np.array([[1e308, -1e308]])), backend.asarray(np.array([0]))
    want = float(backend.to_numpy(net.loss(x, t)))
    got = float(backend.to_numpy(net.train_step(x, t, SGD(lr=1e-320))))
    assert got == want == 0.0


@pytest.mark.backends("dask")
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
