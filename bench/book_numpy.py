"""Baseline: the layers of *Deep Learning from Scratch*, chapter 5, in plain NumPy.

Written the way the book writes them (``common/functions.py``,
``common/layers.py``, ``ch05/two_layer_net.py``): ReLU with a boolean mask and
``out[mask] = 0``, ``np.dot`` with a ``reshape`` in Affine, softmax with
max-subtraction, cross-entropy with ``+ 1e-7`` inside the log and the softmax
backward with fancy indexing ``dx[np.arange(N), t] -= 1``. This is the
reference the xplayers step is compared with; do not optimise it.

Differences from the book, none of which change the work done per step:
weights come from ``numpy.random.default_rng(seed)`` in a chosen ``dtype``
(:func:`init_params`), and :class:`BookNet` adds ``step()``, the book's
training-loop body (gradient by backpropagation, then
``params[key] -= lr * grads[key]``).

Like the book, the first Affine layer computes ``dx`` in its backward although
training does not need it; the GFLOP/s of every peer are counted with the
five GEMMs the step needs (:func:`limits.step_flops`).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

INPUT_SIZE = 784
OUTPUT_SIZE = 10


# --------------------------------------------------------------------------- data


def init_params(
    hidden_size: int,
    dtype: str | np.dtype = "float64",
    seed: int = 0,
    *,
    input_size: int = INPUT_SIZE,
    output_size: int = OUTPUT_SIZE,
    weight_init_std: float = 0.01,
) -> dict[str, np.ndarray]:
    """Initial host weights of a ``input_size-hidden_size-output_size`` net.

    As the book: ``W = weight_init_std * randn``, ``b = 0``; ``W1`` is
    ``(input_size, hidden_size)`` (inputs along rows). Every peer copies these,
    so all of them start from identical weights.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    return {
        "W1": weight_init_std * rng.standard_normal((input_size, hidden_size), dtype=dtype),
        "b1": np.zeros(hidden_size, dtype=dtype),
        "W2": weight_init_std * rng.standard_normal((hidden_size, output_size), dtype=dtype),
        "b2": np.zeros(output_size, dtype=dtype),
    }


def make_batch(
    batch_size: int,
    dtype: str | np.dtype = "float64",
    seed: int = 1,
    *,
    input_size: int = INPUT_SIZE,
    output_size: int = OUTPUT_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic MNIST-shaped batch: ``x`` uniform in [0, 1), integer labels ``t`` (int64)."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, input_size), dtype=np.dtype(dtype))
    t = rng.integers(0, output_size, size=batch_size, dtype=np.int64)
    return x, t


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

    # if the labels are one-hot vectors, turn them into class indices
    if t.size == y.size:
        t = t.argmax(axis=1)

    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


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
        dx = dout * (1.0 - self.out) * self.out

        return dx


class Affine:
    def __init__(self, W, b):
        self.W = W
        self.b = b

        self.x = None
        self.original_x_shape = None
        # gradients of the weight and bias
        self.dW = None
        self.db = None

    def forward(self, x):
        # accept tensors (N, C, H, W)
        self.original_x_shape = x.shape
        x = x.reshape(x.shape[0], -1)
        self.x = x

        out = np.dot(self.x, self.W) + self.b

        return out

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)

        dx = dx.reshape(*self.original_x_shape)  # back to the input's shape (tensors)
        return dx


class SoftmaxWithLoss:
    def __init__(self):
        self.loss = None
        self.y = None  # output of softmax
        self.t = None  # labels

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


# --------------------------------------------------------------------------- network


class BookNet:
    """The book's ``TwoLayerNet`` (Affine-Relu-Affine-SoftmaxWithLoss) plus ``step()``.

    Parameters
    ----------
    hidden_size
        Width of the hidden layer (100 and 1000 in the benchmarks).
    dtype, seed, weight_init_std, input_size, output_size
        Passed to :func:`init_params` when ``params`` is not given.
    params
        Initial weights (copied), e.g. the dict a peer was built from.
    lr
        Default learning rate of :meth:`step`.
    """

    def __init__(
        self,
        hidden_size=100,
        *,
        dtype="float64",
        seed=0,
        weight_init_std=0.01,
        input_size=INPUT_SIZE,
        output_size=OUTPUT_SIZE,
        params=None,
        lr=0.1,
    ):
        if params is None:
            params = init_params(
                hidden_size,
                dtype,
                seed,
                input_size=input_size,
                output_size=output_size,
                weight_init_std=weight_init_std,
            )
        # initialise the weights
        self.params = {key: np.array(value, copy=True) for key, value in params.items()}
        self.lr = lr

        # build the layers
        self.layers = OrderedDict()
        self.layers["Affine1"] = Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = Relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])

        self.lastLayer = SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)

        return x

    # x: input data, t: labels
    def loss(self, x, t):
        y = self.predict(x)
        return self.lastLayer.forward(y, t)

    def accuracy(self, x, t):
        y = self.predict(x)
        y = np.argmax(y, axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)

        accuracy = np.sum(y == t) / float(x.shape[0])
        return accuracy

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

        # collect
        grads = {}
        grads["W1"], grads["b1"] = self.layers["Affine1"].dW, self.layers["Affine1"].db
        grads["W2"], grads["b2"] = self.layers["Affine2"].dW, self.layers["Affine2"].db

        return grads

    def step(self, x, t, lr=None):
        """One training step: forward, loss, backward, SGD update in place. Returns the loss."""
        learning_rate = self.lr if lr is None else lr
        grad = self.gradient(x, t)

        # update
        for key in ("W1", "b1", "W2", "b2"):
            self.params[key] -= learning_rate * grad[key]

        return self.lastLayer.loss


# --------------------------------------------------------------------------- layer cases

#: Layers benchmarked one by one, and the hidden width each depends on.
#: ``relu``/``sigmoid`` act on the hidden activations ``(N, H)``; ``affine1`` is
#: ``784 -> H``; ``affine2`` is ``H -> 10``; ``softmaxwithloss`` acts on ``(N, 10)``
#: logits and does not depend on ``H``.
LAYERS = ("relu", "sigmoid", "affine1", "affine2", "softmaxwithloss")
HIDDEN_INDEPENDENT_LAYERS = frozenset({"softmaxwithloss"})


def layer_arrays(
    layer: str,
    batch_size: int,
    hidden_size: int,
    dtype: str | np.dtype = "float64",
    seed: int = 2,
) -> dict[str, np.ndarray]:
    """Host inputs for benchmarking ``layer`` alone on one batch.

    Returns ``x`` (the forward input), ``dout`` (the upstream gradient of the
    backward; absent for ``softmaxwithloss``, whose backward starts from 1),
    and for Affine layers ``W``/``b`` taken from :func:`init_params`, for
    ``softmaxwithloss`` the labels ``t``. Activations are standard normal, so
    about half of a ReLU's inputs are negative. Every implementation
    benchmarked on a layer case should be fed these arrays.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if layer in ("relu", "sigmoid"):
        return {
            "x": rng.standard_normal((batch_size, hidden_size), dtype=dtype),
            "dout": rng.standard_normal((batch_size, hidden_size), dtype=dtype),
        }
    if layer in ("affine1", "affine2"):
        params = init_params(hidden_size, dtype)
        W, b = (params["W1"], params["b1"]) if layer == "affine1" else (params["W2"], params["b2"])
        fan_in, fan_out = W.shape
        if layer == "affine1":
            x = rng.random((batch_size, fan_in), dtype=dtype)
        else:
            x = np.maximum(rng.standard_normal((batch_size, fan_in), dtype=dtype), 0)
        return {
            "x": x,
            "W": W,
            "b": b,
            "dout": rng.standard_normal((batch_size, fan_out), dtype=dtype),
        }
    if layer == "softmaxwithloss":
        return {
            "x": rng.standard_normal((batch_size, OUTPUT_SIZE), dtype=dtype),
            "t": rng.integers(0, OUTPUT_SIZE, size=batch_size, dtype=np.int64),
        }
    msg = f"unknown layer {layer!r}; expected one of {LAYERS}"
    raise ValueError(msg)


def book_layer(layer: str, arrays: dict[str, np.ndarray]):
    """The book's layer object for a layer case, built from :func:`layer_arrays`."""
    if layer == "relu":
        return Relu()
    if layer == "sigmoid":
        return Sigmoid()
    if layer in ("affine1", "affine2"):
        return Affine(arrays["W"], arrays["b"])
    if layer == "softmaxwithloss":
        return SoftmaxWithLoss()
    msg = f"unknown layer {layer!r}; expected one of {LAYERS}"
    raise ValueError(msg)
