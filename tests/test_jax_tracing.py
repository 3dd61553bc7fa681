"""Layers and networks inside the user's own ``jax.jit``, ``jax.grad`` and ``jax.vmap``.

Traced arrays have a shape and a dtype but no values and no device: the
checks of shapes and dtypes run when the function is traced, the checks of
values (label ranges) are skipped, and the device check lets them pass. Each
transformed call must give the eager call's values.
"""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from xplayers.errors import LayerInputError
from xplayers.network import (
    DeepConvNet,
    MultiLayerNet,
    MultiLayerNetExtend,
    SimpleConvNet,
    TwoLayerNet,
)

pytestmark = pytest.mark.backends("jax")

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

TOL = {"rtol": 1e-10, "atol": 1e-12}


@pytest.fixture
def on_jax():
    """JAX selected, float64 on (the oracle comparisons need it)."""
    ok, why = xpl.backend_status("jax")
    if not ok:
        pytest.skip(f"backend jax not usable: {why}")
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        with xpl.use_backend("jax"):
            yield
    finally:
        jax.config.update("jax_enable_x64", before)


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)


def _conv(n=2):
    return {"filter_num": n, "filter_size": 3, "pad": 1, "stride": 1}


NETWORKS = {
    "TwoLayerNet": (lambda: TwoLayerNet(6, 5, 3, weight_init_std=0.5, seed=0), (6,)),
    "MultiLayerNet sigmoid, decay": (
        lambda: MultiLayerNet(6, [5, 4], 3, "sigmoid", weight_decay_lambda=0.1, seed=0),
        (6,),
    ),
    "MultiLayerNetExtend batchnorm": (
        lambda: MultiLayerNetExtend(6, [5], 3, use_batchnorm=True, seed=0),
        (6,),
    ),
    "SimpleConvNet": (
        lambda: SimpleConvNet((1, 6, 6), _conv(), 4, 3, weight_init_std=0.3, seed=0),
        (1, 6, 6),
    ),
    "DeepConvNet": (
        lambda: DeepConvNet(
            (1, 8, 8), *[_conv() for _ in range(6)], hidden_size=4, output_size=3, seed=0
        ),
        (1, 8, 8),
    ),
}


def _reseed(net):
    """Restart the Dropout masks, so two calls draw the same ones."""
    reseed = getattr(net, "reseed_dropout", None)
    if reseed is not None:
        reseed(0)


def _batch(shape, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, *shape))), jnp.asarray(rng.integers(0, 3, n))


@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_loss_predict_and_gradient_under_jit(on_jax, name):
    make, shape = NETWORKS[name]
    net = make()
    x, t = _batch(shape)
    _close(jax.jit(net.predict)(x), net.predict(x))
    if name == "DeepConvNet":
        return  # its layers are those of the networks above; one trace of them is enough
    _reseed(net)
    want_loss = net.loss(x, t)  # DeepConvNet: training mode, the book's default
    _reseed(net)
    _close(jax.jit(net.loss)(x, t), want_loss)
    _reseed(net)
    want = net.gradient(x, t)
    _reseed(net)  # the traced call draws its Dropout masks once, when traced
    got = jax.jit(net.gradient)(x, t)
    for key in want:
        _close(got[key], want[key])


@pytest.mark.parametrize("name", [n for n in NETWORKS if n != "DeepConvNet"])
def test_jax_grad_of_the_loss_is_backpropagation(on_jax, name):
    make, shape = NETWORKS[name]
    net = make()
    x, t = _batch(shape)
    params = dict(net.params)
    _reseed(net)
    want = net.gradient(x, t)
    before = net.loss(x, t, train_flg=False)
    _reseed(net)

    def loss_of(p):
        for key, value in p.items():
            net.params[key] = value
        return net.loss(x, t, train_flg=True)

    try:
        got = jax.grad(loss_of)(params)
    finally:
        for key, value in params.items():
            net.params[key] = value
    for key in want:
        _close(got[key], want[key])
    # the layers still run eagerly afterwards (nothing traced was kept that matters)
    _close(net.loss(x, t, train_flg=False), before)


def test_vmap_over_samples_and_over_parameter_sets(on_jax):
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.5, seed=0)
    x, t = _batch((6,), n=5)
    per_sample = jax.vmap(lambda xi: net.predict(xi[None, :])[0])(x)
    _close(per_sample, net.predict(x))
    losses = jax.vmap(lambda xi, ti: net.loss(xi[None, :], ti[None]))(x, t)
    _close(losses, [net.loss(x[i : i + 1], t[i : i + 1]) for i in range(5)])
    W1 = net.params["W1"]
    stack = jnp.stack([W1, 2.0 * W1])

    def loss_with(W):
        net.params["W1"] = W
        return net.loss(x, t)

    try:
        got = jax.vmap(loss_with)(stack)
    finally:
        net.params["W1"] = W1
    want = []
    for W in (W1, 2.0 * W1):
        net.params["W1"] = W
        want.append(net.loss(x, t))
    net.params["W1"] = W1
    _close(got, want)


def _layers():
    rng = np.random.default_rng(3)

    def arr(*shape):
        return jnp.asarray(rng.normal(size=shape))

    return {
        "Relu": (xpl.Relu(), arr(4, 5)),
        "Sigmoid": (xpl.Sigmoid(), arr(4, 5)),
        "Affine": (xpl.Affine(arr(5, 3), arr(3)), arr(4, 5)),
        "Affine images": (xpl.Affine(arr(8, 3), arr(3)), arr(4, 2, 2, 2)),
        "Dropout test": (xpl.Dropout(0.3, seed=0), arr(4, 5)),
        "BatchNormalization": (xpl.BatchNormalization(arr(5) + 1.0, arr(5)), arr(4, 5)),
        "Convolution": (xpl.Convolution(arr(2, 1, 3, 3), arr(2), pad=1), arr(2, 1, 5, 5)),
        "Pooling": (xpl.Pooling(2, 2, stride=2), arr(2, 1, 4, 4)),
        "Pooling overlapping": (xpl.Pooling(3, 3, stride=1, pad=1), arr(2, 1, 4, 4)),
    }


def _run(layer, x, dout_seed=4):
    flag = getattr(layer, "takes_train_flg", False)
    out = layer.forward(x, False) if flag else layer.forward(x)
    dout = jnp.asarray(np.random.default_rng(dout_seed).normal(size=out.shape))
    return out, layer.backward(dout)


@pytest.mark.parametrize("name", list(_layers()))
def test_layer_forward_and_backward_under_jit_and_grad(on_jax, name):
    layer, x = _layers()[name]
    want_out, want_dx = _run(layer, x)
    got_out, got_dx = jax.jit(lambda a: _run(layer, a))(x)
    _close(got_out, want_out)
    _close(got_dx, want_dx)
    # jax.grad through forward agrees with the layer's own backward
    dout = jnp.asarray(np.random.default_rng(4).normal(size=want_out.shape))
    flag = getattr(layer, "takes_train_flg", False)
    grad = jax.grad(
        lambda a: jnp.sum((layer.forward(a, False) if flag else layer.forward(a)) * dout)
    )
    _close(grad(x), want_dx)


def test_loss_layer_under_jit_grad_and_vmap(on_jax):
    rng = np.random.default_rng(5)
    x, t = jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray([0, 2, 1, 2])
    layer = xpl.SoftmaxWithLoss(check_labels=True)
    want = layer.forward(x, t)
    want_dx = layer.backward()
    _close(jax.jit(layer.forward)(x, t), want)
    _close(jax.grad(layer.forward)(x, t), want_dx)
    _close(jax.jit(layer.forward)(x, t[:, None]), want)  # a label column, traced
    per_row = jax.vmap(lambda xi, ti: layer.forward(xi[None, :], ti[None]))(x, t)
    _close(jnp.mean(per_row), want)


def test_shape_checks_run_when_traced(on_jax):
    layer = xpl.Affine(jnp.ones((5, 3)), jnp.zeros(3))
    with pytest.raises(LayerInputError, match=r"Affine\.forward: argument 'x'.*\(traced\)"):
        jax.jit(layer.forward)(jnp.ones((4, 6)))
    with pytest.raises(LayerInputError, match=r"SoftmaxWithLoss\.forward: argument 't'"):
        jax.jit(xpl.SoftmaxWithLoss().forward)(jnp.ones((2, 3)), jnp.ones((2, 2), dtype=int))


def test_batchnorm_running_averages_stay_concrete_under_jit(on_jax):
    bn = xpl.BatchNormalization(jnp.ones(3), jnp.zeros(3))
    x = jnp.asarray(np.random.default_rng(6).normal(size=(5, 3)))
    bn.forward(x)  # eager: the averages move
    mean, var = bn.running_mean, bn.running_var
    jax.jit(lambda a: bn.forward(a, True))(x)
    assert bn.running_mean is mean
    assert bn.running_var is var
    _close(bn.forward(x, False), (x - mean) / jnp.sqrt(var + 1e-6))  # still usable


def test_accuracy_under_jit_says_it_returns_a_float(on_jax):
    net = TwoLayerNet(6, 5, 3, seed=0)
    x, t = _batch((6,))
    with pytest.raises(LayerInputError, match=r"TwoLayerNet\.accuracy: .*Python float"):
        jax.jit(net.accuracy)(x, t)
    assert 0.0 <= net.accuracy(x, t) <= 1.0
