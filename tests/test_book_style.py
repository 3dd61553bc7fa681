"""Programs written the way the book's chapter 5-7 scripts are, run against xplayers.

They are not copies of the book's files: they use its idioms (a ``params``
dict shared with the layers, ``OrderedDict`` of layers, ``train_flg``,
in-place ``params[key] -= lr * grads[key]``, the book's ``numerical_gradient``
moving entries in place, a Trainer-style epoch loop, NumPy data with
``uint8`` labels, ``(N, 1)`` label columns and one-hot rows) first with
xplayers' layers only, then with its networks and optimizers.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import xplayers as xpl
from xplayers.backend import backend_name
from xplayers.datasets import load_digits


def book_numerical_gradient(f, x):
    """The book's central differences: move each entry of `x` in place by +-1e-4."""
    h = 1e-4
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        idx = it.multi_index
        tmp = x[idx]
        x[idx] = float(tmp) + h
        fxh1 = f(x)
        x[idx] = tmp - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp
        it.iternext()
    return grad


class BookStyleConvNet:
    """conv - relu - pool - affine - relu - affine - softmax, written as chapter 7 writes it."""

    def __init__(
        self,
        input_dim=(1, 8, 8),
        filter_num=4,
        filter_size=3,
        hidden_size=10,
        output_size=10,
        weight_init_std=0.1,
    ):
        conv_output_size = input_dim[1] - filter_size + 1
        pool_output_size = int(filter_num * (conv_output_size / 2) * (conv_output_size / 2))
        rng = np.random.default_rng(0)
        self.params = {}
        self.params["W1"] = weight_init_std * rng.standard_normal(
            (filter_num, input_dim[0], filter_size, filter_size)
        )
        self.params["b1"] = np.zeros(filter_num)
        self.params["W2"] = weight_init_std * rng.standard_normal((pool_output_size, hidden_size))
        self.params["b2"] = np.zeros(hidden_size)
        self.params["W3"] = weight_init_std * rng.standard_normal((hidden_size, output_size))
        self.params["b3"] = np.zeros(output_size)
        self.layers = OrderedDict()
        self.layers["Conv1"] = xpl.Convolution(self.params["W1"], self.params["b1"], 1, 0)
        self.layers["Relu1"] = xpl.Relu()
        self.layers["Pool1"] = xpl.Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = xpl.Affine(self.params["W2"], self.params["b2"])
        self.layers["Relu2"] = xpl.Relu()
        self.layers["Affine2"] = xpl.Affine(self.params["W3"], self.params["b3"])
        self.last_layer = xpl.SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x, t):
        y = np.argmax(self.predict(x), axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        return np.sum(y == t) / float(x.shape[0])

    def numerical_gradient(self, x, t):
        loss_w = lambda w: float(self.loss(x, t))  # noqa: E731 - the book's idiom
        return {key: book_numerical_gradient(loss_w, self.params[key]) for key in self.params}

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        grads = {}
        for i, name in enumerate(("Conv1", "Affine1", "Affine2"), start=1):
            grads[f"W{i}"], grads[f"b{i}"] = self.layers[name].dW, self.layers[name].db
        return grads


class BookStyleBatchNormNet:
    """Affine - BatchNorm - Relu - Dropout - Affine, chapter 6's way (keys tell the layer kind)."""

    def __init__(self, sizes=(64, 12, 10), use_dropout=False):
        rng = np.random.default_rng(1)
        self.params = {
            "W1": np.sqrt(2.0 / sizes[0]) * rng.standard_normal(sizes[:2]),
            "b1": np.zeros(sizes[1]),
            "gamma1": np.ones(sizes[1]),
            "beta1": np.zeros(sizes[1]),
            "W2": np.sqrt(2.0 / sizes[1]) * rng.standard_normal(sizes[1:]),
            "b2": np.zeros(sizes[2]),
        }
        self.layers = OrderedDict()
        self.layers["Affine1"] = xpl.Affine(self.params["W1"], self.params["b1"])
        self.layers["BatchNorm1"] = xpl.BatchNormalization(
            self.params["gamma1"], self.params["beta1"]
        )
        self.layers["Activation_function1"] = xpl.Relu()
        if use_dropout:
            self.layers["Dropout1"] = xpl.Dropout(0.2)
        self.layers["Affine2"] = xpl.Affine(self.params["W2"], self.params["b2"])
        self.last_layer = xpl.SoftmaxWithLoss()

    def predict(self, x, train_flg=False):
        for key, layer in self.layers.items():
            if "Dropout" in key or "BatchNorm" in key:
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def loss(self, x, t, train_flg=False):
        return self.last_layer.forward(self.predict(x, train_flg), t)

    def gradient(self, x, t):
        self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {
            "W1": self.layers["Affine1"].dW,
            "b1": self.layers["Affine1"].db,
            "gamma1": self.layers["BatchNorm1"].dgamma,
            "beta1": self.layers["BatchNorm1"].dbeta,
            "W2": self.layers["Affine2"].dW,
            "b2": self.layers["Affine2"].db,
        }


def _slow(backend) -> bool:
    """JAX and Dask pay per call; the long loops run once there, on the eager backends in full."""
    return backend.lazy or backend.name == "jax"


def _digits(flatten):
    x, t = load_digits(flatten=flatten)
    return x, t.astype(np.uint8)  # the book's load_mnist gives uint8 labels


def test_chapter7_gradient_check_with_the_layers():
    """ch07/gradient_check.py's pattern: a (1, 1) label column, random input, dict comparison."""
    net = BookStyleConvNet(input_dim=(1, 6, 6), filter_num=3, hidden_size=5)
    x = np.random.default_rng(2).random(36).reshape((1, 1, 6, 6))
    t = np.array([1]).reshape((1, 1))
    grad_num = net.numerical_gradient(x, t)
    grad = net.gradient(x, t)
    for key, val in grad_num.items():
        assert np.abs(val - grad[key]).mean() < 1e-6, key


def test_chapter7_training_with_the_layers():
    """train_convnet.py's loop on float32 images and uint8 labels: the loss falls."""
    x, t = _digits(flatten=False)
    net = BookStyleConvNet()
    lr, losses = 0.3, []
    rng = np.random.default_rng(3)
    for _ in range(100):
        batch = rng.choice(x.shape[0], 50)
        grads = net.gradient(x[batch], t[batch])
        for key in ("W1", "b1", "W2", "b2", "W3", "b3"):
            net.params[key] -= lr * grads[key]  # in place: the layers see it
        losses.append(float(net.loss(x[batch], t[batch])))
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert net.accuracy(x[:300], np.eye(10)[t[:300]]) > 0.5


def test_chapter6_batch_norm_gradient_check_with_the_layers():
    """batch_norm_gradient_check.py's pattern, with one-hot labels and train_flg."""
    x, t = _digits(flatten=True)
    onehot = np.eye(10)[t[:4]]
    net = BookStyleBatchNormNet()
    xb = x[:4].astype(np.float64)
    grads = net.gradient(xb, onehot)
    for key in net.params:
        num = book_numerical_gradient(
            lambda _: float(net.loss(xb, onehot, train_flg=True)), net.params[key]
        )
        assert np.abs(num - grads[key]).mean() < 1e-6, key


def test_chapter6_dropout_and_test_mode_with_the_layers():
    x, t = _digits(flatten=True)
    net = BookStyleBatchNormNet(use_dropout=True)
    first = float(net.loss(x[:100], t[:100], train_flg=False))
    for _ in range(40):
        grads = net.gradient(x[:100], t[:100])
        for key in net.params:
            net.params[key] -= 0.1 * grads[key]
    assert float(net.loss(x[:100], t[:100], train_flg=False)) < first


@pytest.mark.parametrize(
    ("name", "lr"),
    [("SGD", 0.1), ("Momentum", 0.05), ("AdaGrad", 0.05), ("Adam", 0.01), ("RMSprop", 0.01)],
)
def test_chapter6_networks_and_optimizers_in_a_trainer_loop(backend, name, lr):
    """overfit_weight_decay.py / optimizer_compare_mnist.py's loop on NumPy data, any backend."""
    if _slow(backend) and name != "SGD":
        pytest.skip("one optimizer on JAX and Dask keeps the suite fast; all of them run eagerly")
    x, t = _digits(flatten=True)
    x_train, t_train = x[:300], t[:300]
    optimizer = getattr(xpl, name)(lr=lr)
    net = xpl.MultiLayerNetExtend(
        64,
        [20, 20],
        10,
        weight_decay_lambda=0.01,
        use_batchnorm=True,
        use_dropout=True,
        dropout_ration=0.1,
        seed=0,
    )
    rng = np.random.default_rng(4)
    train_acc = [net.accuracy(x_train, t_train)]
    for _ in range(30):
        batch = rng.choice(300, 50)
        grads = net.gradient(x_train[batch], t_train[batch])  # NumPy in, on the backend
        optimizer.update(net.params, grads)
    train_acc.append(net.accuracy(x_train, t_train))
    assert train_acc[-1] > train_acc[0]
    assert backend_name(net.params["W1"]) == backend.name


def test_chapter7_simple_convnet_and_save_params(backend, tmp_path):
    """train_convnet.py with the network and optimizer, then the book's save/load of parameters."""
    if _slow(backend):
        pytest.skip("SimpleConvNet's gradients on JAX and Dask are in test_book_networks")
    x, t = _digits(flatten=False)
    net = xpl.SimpleConvNet(
        input_dim=(1, 8, 8),
        conv_param={"filter_num": 6, "filter_size": 3, "pad": 0, "stride": 1},
        hidden_size=20,
        output_size=10,
        weight_init_std=0.1,
        seed=0,
    )
    opt = xpl.Adam(lr=0.01)
    rng = np.random.default_rng(5)
    before = net.accuracy(x[:200], t[:200], batch_size=64)
    for _ in range(15):
        batch = rng.choice(x.shape[0], 32)
        opt.update(net.params, net.gradient(x[batch], t[batch]))
    assert net.accuracy(x[:200], t[:200], batch_size=64) > before
    path = net.save_params(tmp_path / "params.npz")
    fresh = xpl.SimpleConvNet(
        input_dim=(1, 8, 8),
        conv_param={"filter_num": 6, "filter_size": 3, "pad": 0, "stride": 1},
        hidden_size=20,
        output_size=10,
        seed=1,
    )
    fresh.load_params(path)
    np.testing.assert_array_equal(
        xpl.to_numpy(fresh.predict(x[:5])), xpl.to_numpy(net.predict(x[:5]))
    )
