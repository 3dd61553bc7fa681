"""The baseline: *Deep Learning from Scratch* in plain NumPy, written as the book writes it.

Chapter 5 (``common/functions.py``, ``common/layers.py``, ``ch05/two_layer_net.py``):
ReLU with a boolean mask and ``out[mask] = 0``, ``np.dot`` with a ``reshape``
in Affine, softmax with max-subtraction, cross-entropy with ``+ 1e-7`` inside
the log, the softmax backward by fancy indexing ``dx[np.arange(N), t] -= 1``.
Chapter 7 (``common/util.py``, ``ch07/simple_convnet.py``): ``im2col`` and
``col2im`` as loops over the filter, Convolution and max Pooling through them.
This is what xplayers is compared with; do not optimise it.

Differences from the book, none of which changes the work of a step: weights
come from ``numpy.random.default_rng(seed)`` in a chosen dtype; ``im2col`` and
``col2im`` allocate in the input's dtype (the book's ``np.zeros`` is always
float64, which would turn a float32 step into float64 work); ``step()`` is the
book's training-loop body (``gradient``, then ``params[key] -= lr * grads[key]``).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

CONV_PARAM = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}


def init_params(hidden_size, dtype="float64", seed=0, weight_init_std=0.01):
    """Host weights of a 784-hidden_size-10 net, ``W = std * randn``, ``b = 0``."""
    rng = np.random.default_rng(seed)
    return {
        "W1": weight_init_std * rng.standard_normal((784, hidden_size), dtype=dtype),
        "b1": np.zeros(hidden_size, dtype=dtype),
        "W2": weight_init_std * rng.standard_normal((hidden_size, 10), dtype=dtype),
        "b2": np.zeros(10, dtype=dtype),
    }


def init_conv_params(dtype="float64", seed=0, weight_init_std=0.01):
    """Host weights of chapter 7's SimpleConvNet on (1, 28, 28) inputs: conv 30x5x5, 100, 10."""
    rng = np.random.default_rng(seed)
    w = lambda *shape: weight_init_std * rng.standard_normal(shape, dtype=dtype)  # noqa: E731
    return {
        "W1": w(30, 1, 5, 5),
        "b1": np.zeros(30, dtype=dtype),
        "W2": w(30 * 12 * 12, 100),
        "b2": np.zeros(100, dtype=dtype),
        "W3": w(100, 10),
        "b3": np.zeros(10, dtype=dtype),
    }


def make_batch(batch_size, dtype="float64", seed=1, shape=(784,)):
    """A synthetic MNIST-shaped batch: ``x`` uniform in [0, 1), int64 labels ``t``."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, *shape), dtype=dtype)
    return x, rng.integers(0, 10, size=batch_size, dtype=np.int64)


def layer_arrays(layer, batch_size, hidden_size, dtype="float64", seed=2):
    """Inputs of one layer benchmarked alone: ``x``, ``dout``, and ``W``/``b`` or ``t``.

    ``relu``/``sigmoid`` act on ``(N, H)``, ``affine1`` is 784 -> H, ``affine2``
    H -> 10, ``softmaxwithloss`` takes ``(N, 10)`` logits and labels.
    """
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape, dtype=dtype)  # noqa: E731
    if layer in ("relu", "sigmoid"):
        return {"x": normal(batch_size, hidden_size), "dout": normal(batch_size, hidden_size)}
    if layer == "softmaxwithloss":
        return {"x": normal(batch_size, 10), "t": rng.integers(0, 10, batch_size)}
    params = init_params(hidden_size, dtype)
    if layer == "affine1":
        x, W, b = rng.random((batch_size, 784), dtype=dtype), params["W1"], params["b1"]
    else:
        x, W, b = np.maximum(normal(batch_size, hidden_size), 0), params["W2"], params["b2"]
    return {"x": x, "W": W, "b": b, "dout": normal(batch_size, W.shape[1])}


# --------------------------------------------------------------------------- functions


def softmax(x):
    if x.ndim == 2:
        x = x.T
        x = x - np.max(x, axis=0)
        y = np.exp(x) / np.sum(np.exp(x), axis=0)
        return y.T

    x = x - np.max(x)  # guard against overflow
    return np.exp(x) / np.sum(np.exp(x))


def cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)

    # one-hot labels become class indices
    if t.size == y.size:
        t = t.argmax(axis=1)

    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_data.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1

    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w), dtype=input_data.dtype)

    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]

    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)

    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1), dtype=col.dtype)
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x, :, :]

    return img[:, :, pad : H + pad, pad : W + pad]


# --------------------------------------------------------------------------- layers


class Relu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0
        dx = dout
        return dx


class Sigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        out = 1 / (1 + np.exp(-x))
        self.out = out
        return out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class Affine:
    def __init__(self, W, b):
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        # accepts tensors (N, C, H, W)
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class SoftmaxWithLoss:
    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = softmax(x)
        self.loss = cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        if self.t.size == self.y.size:  # one-hot labels
            dx = (self.y - self.t) / batch_size
        else:
            dx = self.y.copy()
            dx[np.arange(batch_size), self.t] -= 1
            dx = dx / batch_size
        return dx


class Convolution:
    def __init__(self, W, b, stride=1, pad=0):
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.x = None
        self.col = None
        self.col_W = None
        self.dW = None
        self.db = None

    def forward(self, x):
        FN, C, FH, FW = self.W.shape
        N, C, H, W = x.shape
        out_h = 1 + int((H + 2 * self.pad - FH) / self.stride)
        out_w = 1 + int((W + 2 * self.pad - FW) / self.stride)

        col = im2col(x, FH, FW, self.stride, self.pad)
        col_W = self.W.reshape(FN, -1).T
        out = np.dot(col, col_W) + self.b
        out = out.reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)

        self.x = x
        self.col = col
        self.col_W = col_W
        return out

    def backward(self, dout):
        FN, C, FH, FW = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)

        self.db = np.sum(dout, axis=0)
        self.dW = np.dot(self.col.T, dout)
        self.dW = self.dW.transpose(1, 0).reshape(FN, C, FH, FW)

        dcol = np.dot(dout, self.col_W.T)
        return col2im(dcol, self.x.shape, FH, FW, self.stride, self.pad)


class Pooling:
    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        self.x = None
        self.arg_max = None

    def forward(self, x):
        N, C, H, W = x.shape
        out_h = int(1 + (H - self.pool_h) / self.stride)
        out_w = int(1 + (W - self.pool_w) / self.stride)

        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad)
        col = col.reshape(-1, self.pool_h * self.pool_w)

        arg_max = np.argmax(col, axis=1)
        out = np.max(col, axis=1)
        out = out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)

        self.x = x
        self.arg_max = arg_max
        return out

    def backward(self, dout):
        dout = dout.transpose(0, 2, 3, 1)

        pool_size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, pool_size), dtype=dout.dtype)
        dmax[np.arange(self.arg_max.size), self.arg_max.flatten()] = dout.flatten()
        dmax = dmax.reshape((*dout.shape, pool_size))

        dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)


LAYERS = {"relu": Relu, "sigmoid": Sigmoid, "affine1": Affine, "affine2": Affine}
LAYERS["softmaxwithloss"] = SoftmaxWithLoss


# --------------------------------------------------------------------------- networks


class BookNet:
    """Chapter 5's ``TwoLayerNet`` (Affine-Relu-Affine-SoftmaxWithLoss) from given weights."""

    def __init__(self, params):
        self.params = {key: value.copy() for key, value in params.items()}
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        y = self.predict(x)
        return self.lastLayer.forward(y, t)

    def gradient(self, x, t):
        # forward
        self.loss(x, t)

        # backward
        dout = 1
        dout = self.lastLayer.backward(dout)
        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)

        grads = {}
        grads["W1"], grads["b1"] = self.layers["Affine1"].dW, self.layers["Affine1"].db
        grads["W2"], grads["b2"] = self.layers["Affine2"].dW, self.layers["Affine2"].db
        return grads

    def step(self, x, t, lr=0.1):
        """The book's training-loop body: gradient, then SGD in place. Returns the loss."""
        grad = self.gradient(x, t)
        for key in self.params:
            self.params[key] -= lr * grad[key]
        return self.lastLayer.loss


class SimpleConvNet(BookNet):
    """Chapter 7's ``SimpleConvNet``: conv - relu - pool - affine - relu - affine - softmax."""

    def __init__(self, params, conv_param=CONV_PARAM):
        self.params = {key: value.copy() for key, value in params.items()}
        self.layers = OrderedDict()
        self.layers["Conv1"] = Convolution(
            self.params["W1"], self.params["b1"], conv_param["stride"], conv_param["pad"]
        )
        self.layers["Relu1"] = Relu()
        self.layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers["Affine1"] = Affine(self.params["W2"], self.params["b2"])
        self.layers["Relu2"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W3"], self.params["b3"])
        self.lastLayer = SoftmaxWithLoss()

    def gradient(self, x, t):
        BookNet.gradient(self, x, t)
        grads = {}
        for i, name in enumerate(("Conv1", "Affine1", "Affine2"), start=1):
            grads[f"W{i}"], grads[f"b{i}"] = self.layers[name].dW, self.layers[name].db
        return grads
