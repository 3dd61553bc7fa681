"""The book's chapter 6-8 networks: names, gradients, weight decay, files, host inputs."""

from __future__ import annotations

import json
import os
import pickle
import stat

import numpy as np
import pytest

import xplayers as xpl
from xplayers.gradcheck import relative_error
from xplayers.network import from_config, param_shapes

SMALL_CONV = {"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}
TINY_DEEP = {
    f"conv_param_{k}": {"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1}
    for k in range(1, 7)
}


def _images(rng, n=3, c=1, h=8, w=8):
    return rng.normal(size=(n, c, h, w)), rng.integers(0, 10, size=n)


def _check_gradient(net, x, t, rtol=1e-6):
    grads = net.gradient(x, t)
    num = net.numerical_gradient(x, t)
    assert list(grads) == list(net.params)
    for key, value in grads.items():
        assert relative_error(xpl.to_numpy(value), num[key]) < rtol, key


def test_simple_convnet_names_and_gradient(backend, rng):
    net = xpl.SimpleConvNet(
        (1, 8, 8), SMALL_CONV, hidden_size=6, output_size=10, weight_init_std=0.5, seed=1
    )
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert tuple(net.params["W2"].shape) == (3 * 3 * 3, 6)
    x, t = _images(rng)
    _check_gradient(net, backend.asarray(x), backend.asarray(t))


def test_simple_convnet_defaults_are_the_books():
    shapes = param_shapes({"class": "SimpleConvNet"})
    assert shapes["W1"] == (30, 1, 5, 5)
    assert shapes["W2"] == (30 * 12 * 12, 100)
    assert shapes["W3"] == (100, 10)


def test_deep_convnet_structure_and_gradient(rng):
    net = xpl.DeepConvNet((1, 8, 8), **TINY_DEEP, hidden_size=5, output_size=3, seed=0)
    assert [k for k in net.params if k[0] == "W"] == [f"W{k}" for k in range(1, 9)]
    assert list(net.layers)[-5:] == ["Affine1", "Relu7", "Dropout1", "Affine2", "Dropout2"]
    assert param_shapes({"class": "DeepConvNet"})["W7"] == (64 * 4 * 4, 50)
    x = rng.normal(size=(2, 1, 8, 8))
    t = np.array([0, 2])
    # With dropout the loss is random; the test-time path is deterministic:
    y1 = xpl.to_numpy(net.predict(x))
    y2 = xpl.to_numpy(net.predict(x, train_flg=False))
    np.testing.assert_array_equal(y1, y2)
    for layer in net.layers.values():
        if isinstance(layer, xpl.Dropout):
            layer.dropout_ratio = 0.0  # deterministic for the gradient check
    _check_gradient(net, x, t)


def test_dropout_masks_follow_the_network_seed(backend, rng):
    x = rng.normal(size=(4, 5))
    outs = []
    for _ in range(2):
        net = xpl.MultiLayerNetExtend(5, [6], 3, use_dropout=True, dropout_ration=0.5, seed=4)
        outs.append(backend.to_numpy(net.predict(backend.asarray(x), train_flg=True)))
    np.testing.assert_array_equal(outs[0], outs[1])
    net.reseed_dropout(4)
    again = backend.to_numpy(net.predict(backend.asarray(x), train_flg=True))
    np.testing.assert_array_equal(again, outs[0])


def test_multi_layer_net_extend_batchnorm_gradient(backend, rng):
    net = xpl.MultiLayerNetExtend(4, [5, 3], 3, use_batchnorm=True, weight_decay_lambda=0.1, seed=2)
    assert list(net.params) == [
        "W1",
        "b1",
        "gamma1",
        "beta1",
        "W2",
        "b2",
        "gamma2",
        "beta2",
        "W3",
        "b3",
    ]
    assert net.hidden_layer_num == 2
    x = rng.normal(size=(6, 4))
    t = rng.integers(0, 3, size=6)
    _check_gradient(net, backend.asarray(x), backend.asarray(t))
    first = xpl.to_numpy(net.layers["BatchNorm1"].running_mean)
    assert np.any(first != 0)  # training forward moved the running averages


def test_weight_decay_as_the_book(backend, rng):
    lam = 0.3
    net = xpl.MultiLayerNet(4, [5], 3, weight_decay_lambda=lam, seed=0)
    plain = xpl.MultiLayerNet(4, [5], 3, seed=0)
    x, t = backend.asarray(rng.normal(size=(6, 4))), backend.asarray(rng.integers(0, 3, size=6))
    W = [xpl.to_numpy(net.params[k]) for k in ("W1", "W2")]
    penalty = 0.5 * lam * sum(float((w**2).sum()) for w in W)
    loss = float(xpl.to_numpy(net.loss(x, t)))
    np.testing.assert_allclose(loss, float(xpl.to_numpy(plain.loss(x, t))) + penalty, rtol=1e-12)
    g, g0 = net.gradient(x, t), plain.gradient(x, t)
    np.testing.assert_allclose(
        xpl.to_numpy(g["W1"]), xpl.to_numpy(g0["W1"]) + lam * W[0], rtol=1e-12
    )
    np.testing.assert_allclose(xpl.to_numpy(g["b1"]), xpl.to_numpy(g0["b1"]), rtol=1e-12)
    _check_gradient(net, x, t)


def test_accuracy_batches_and_one_hot(backend, rng):
    net = xpl.SimpleConvNet((1, 8, 8), SMALL_CONV, hidden_size=4, seed=0)
    x, t = _images(rng, n=7)
    whole = net.accuracy(backend.asarray(x), backend.asarray(t), batch_size=100)
    assert net.accuracy(backend.asarray(x), backend.asarray(t), batch_size=3) == pytest.approx(
        whole
    )
    onehot = np.eye(10)[t]
    assert net.accuracy(backend.asarray(x), backend.asarray(onehot), batch_size=2) == pytest.approx(
        whole
    )


@pytest.mark.parametrize(
    "config",
    [
        {
            "class": "SimpleConvNet",
            "input_dim": [1, 8, 8],
            "conv_param": SMALL_CONV,
            "hidden_size": 4,
            "seed": 3,
        },
        {
            "class": "MultiLayerNetExtend",
            "input_size": 4,
            "hidden_size_list": [3],
            "output_size": 2,
            "use_batchnorm": True,
            "seed": 3,
        },
        {"class": "DeepConvNet", "input_dim": [1, 8, 8], **TINY_DEEP, "hidden_size": 4, "seed": 3},
    ],
)
def test_config_and_files_round_trip(tmp_path, rng, config):
    net = from_config(config)
    cfg = json.loads(json.dumps(net.config()))
    assert cfg["class"] == config["class"]
    copy = from_config(cfg)
    for key in net.params:
        np.testing.assert_array_equal(xpl.to_numpy(copy.params[key]), xpl.to_numpy(net.params[key]))
    model = xpl.save(net, tmp_path / "model.npz")
    assert type(xpl.load(model)) is type(net)
    for path in (net.save_params(tmp_path / "params.npz"), model):
        other = from_config({**cfg, "seed": 99})
        other.load_params(path)
        for key in net.params:
            np.testing.assert_array_equal(
                xpl.to_numpy(other.params[key]), xpl.to_numpy(net.params[key])
            )


@pytest.mark.skipif(not hasattr(os, "pathconf"), reason="POSIX name limits and mode bits")
def test_save_params_writes_any_legal_name_and_no_setuid_file(tmp_path):
    net = xpl.SimpleConvNet((1, 8, 8), SMALL_CONV, hidden_size=4, seed=0)
    path = tmp_path / ("p" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 4) + ".npz")
    path.write_bytes(b"old")
    path.chmod(0o6755)
    assert net.save_params(path) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    other = xpl.SimpleConvNet((1, 8, 8), SMALL_CONV, hidden_size=4, seed=1)
    other.load_params(path)
    for key in net.params:
        np.testing.assert_array_equal(
            xpl.to_numpy(other.params[key]), xpl.to_numpy(net.params[key])
        )
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_book_pickle_refused_with_a_conversion_hint(tmp_path):
    net = xpl.SimpleConvNet((1, 8, 8), SMALL_CONV, hidden_size=4, seed=0)
    host = {k: xpl.to_numpy(v) for k, v in net.params.items()}
    pkl = tmp_path / "params.pkl"
    pkl.write_bytes(pickle.dumps(host))
    with pytest.raises(xpl.LayerInputError, match=r"np\.savez"):
        net.load_params(pkl)
    np.savez(tmp_path / "converted.npz", **host)  # the conversion the message gives
    net.load_params(tmp_path / "converted.npz")


@pytest.mark.parametrize("backend_name", ["array_api_strict", "torch"])
def test_numpy_inputs_on_another_backend(backend_name, rng):
    """The book's scripts keep NumPy data: networks move it to their own backend once per call."""
    ok, why = xpl.backend_status(backend_name)
    if not ok:
        pytest.skip(why)
    with xpl.use_backend(backend_name):
        net = xpl.SimpleConvNet((1, 8, 8), SMALL_CONV, hidden_size=4, seed=0)
        ext = xpl.MultiLayerNetExtend(64, [5], 10, use_batchnorm=True, use_dropout=True, seed=0)
    x, t = _images(rng, n=4)
    for model, data in ((net, x), (ext, x.reshape(4, -1))):
        grads = model.gradient(data, t)
        assert type(grads["W1"]).__module__.split(".")[0] == backend_name
        float(xpl.to_numpy(model.loss(data, t)))
        assert 0.0 <= model.accuracy(data, t) <= 1.0
        assert tuple(model.predict(data).shape) == (4, 10)
        xpl.SGD(lr=0.1).update(model.params, grads)
        num = model.numerical_gradient(data[:2], t[:2]) if model is net else None
        assert num is None or set(num) == set(model.params)
