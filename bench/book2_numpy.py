"""The baseline of volume 2: the book's RNN language models in plain NumPy, as the book writes them.

``common/time_layers.py``: ``TimeEmbedding`` as one ``Embedding`` per time
step (each backward a dense ``V x D`` ``np.add.at``), ``TimeLSTM`` as one
``LSTM`` object per step, ``TimeAffine`` through a reshape, the softmax
loss with ``log(y + 1e-7)``, inverted ``TimeDropout`` from
``np.random.rand``. ``common/trainer.py``'s step: ``forward``,
``backward``, ``remove_duplicate`` searching for shared weights (with
``np.all(params[i].T == params[j])``), ``clip_grads`` with its host test,
``SGD`` with ``params[i] -= lr * grads[i]``. This is what xplayers is
compared with; do not optimise it.

Differences from the book, none changing the work of a step: the weights
come from ``init_lm(...)`` (``numpy.random.default_rng``) and are shared
with every implementation; ``BookLm.step`` is the trainer's loop body.
"""

from __future__ import annotations

import numpy as np

LR = 20.0
MAX_GRAD = 0.25


def init_lm(V, D, H, layers, dtype="float32", seed=0):
    """Host weights: ``embed_W``, then ``(Wx, Wh, b)`` per LSTM layer, then ``affine_b``.

    ``affine_W`` (``H x V``) is added when the model does not tie it to
    ``embed_W`` (one LSTM layer, ``Rnnlm``).
    """
    rng = np.random.default_rng(seed)
    rn = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    p = {"embed_W": rn(V, D) / 100}
    for k in range(layers):
        d = D if k == 0 else H
        p[f"Wx{k}"] = rn(d, 4 * H) / np.sqrt(d)
        p[f"Wh{k}"] = rn(H, 4 * H) / np.sqrt(H)
        p[f"b{k}"] = np.zeros(4 * H, dtype=dtype)
    if layers == 1:
        p["affine_W"] = rn(H, V) / np.sqrt(H)
    p["affine_b"] = np.zeros(V, dtype=dtype)
    return {k: v.astype(dtype) for k, v in p.items()}


def make_lm_batch(V, N, T, seed=1):
    """``(xs, ts)``: ``(N, T)`` word ids, Zipf-distributed as words are."""
    rng = np.random.default_rng(seed)
    ids = (rng.zipf(1.2, size=(2, N, T)) - 1) % V
    return ids[0].astype(np.int32), ids[1].astype(np.int32)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    x = np.exp(x)
    x /= x.sum(axis=1, keepdims=True)
    return x


class Embedding:
    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.idx = None

    def forward(self, idx):
        (W,) = self.params
        self.idx = idx
        return W[idx]

    def backward(self, dout):
        (dW,) = self.grads
        dW[...] = 0
        np.add.at(dW, self.idx, dout)


class TimeEmbedding:
    def __init__(self, W):
        self.params = [W]
        self.grads = [np.zeros_like(W)]
        self.layers = None
        self.W = W

    def forward(self, xs):
        N, T = xs.shape
        V, D = self.W.shape
        out = np.empty((N, T, D), dtype="f")
        self.layers = []
        for t in range(T):
            layer = Embedding(self.W)
            out[:, t, :] = layer.forward(xs[:, t])
            self.layers.append(layer)
        return out

    def backward(self, dout):
        N, T, D = dout.shape
        grad = 0
        for t in range(T):
            layer = self.layers[t]
            layer.backward(dout[:, t, :])
            grad += layer.grads[0]
        self.grads[0][...] = grad


class LSTM:
    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.cache = None

    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        N, H = h_prev.shape
        A = np.dot(x, Wx) + np.dot(h_prev, Wh) + b
        f = sigmoid(A[:, :H])
        g = np.tanh(A[:, H : 2 * H])
        i = sigmoid(A[:, 2 * H : 3 * H])
        o = sigmoid(A[:, 3 * H :])
        c_next = f * c_prev + g * i
        h_next = o * np.tanh(c_next)
        self.cache = (x, h_prev, c_prev, i, f, g, o, c_next)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        Wx, Wh, b = self.params
        x, h_prev, c_prev, i, f, g, o, c_next = self.cache
        tanh_c_next = np.tanh(c_next)
        ds = dc_next + (dh_next * o) * (1 - tanh_c_next**2)
        dc_prev = ds * f
        di = ds * g
        df = ds * c_prev
        do = dh_next * tanh_c_next
        dg = ds * i
        di *= i * (1 - i)
        df *= f * (1 - f)
        do *= o * (1 - o)
        dg *= 1 - g**2
        dA = np.hstack((df, dg, di, do))
        dWh = np.dot(h_prev.T, dA)
        dWx = np.dot(x.T, dA)
        db = dA.sum(axis=0)
        self.grads[0][...] = dWx
        self.grads[1][...] = dWh
        self.grads[2][...] = db
        dx = np.dot(dA, Wx.T)
        dh_prev = np.dot(dA, Wh.T)
        return dx, dh_prev, dc_prev


class TimeLSTM:
    def __init__(self, Wx, Wh, b, stateful=False):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.layers = None
        self.h, self.c = None, None
        self.dh = None
        self.stateful = stateful

    def forward(self, xs):
        Wx, Wh, b = self.params
        N, T, D = xs.shape
        H = Wh.shape[0]
        self.layers = []
        hs = np.empty((N, T, H), dtype="f")
        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H), dtype="f")
        if not self.stateful or self.c is None:
            self.c = np.zeros((N, H), dtype="f")
        for t in range(T):
            layer = LSTM(*self.params)
            self.h, self.c = layer.forward(xs[:, t, :], self.h, self.c)
            hs[:, t, :] = self.h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        Wx, Wh, b = self.params
        N, T, H = dhs.shape
        D = Wx.shape[0]
        dxs = np.empty((N, T, D), dtype="f")
        dh, dc = 0, 0
        grads = [0, 0, 0]
        for t in reversed(range(T)):
            layer = self.layers[t]
            dx, dh, dc = layer.backward(dhs[:, t, :] + dh, dc)
            dxs[:, t, :] = dx
            for i, grad in enumerate(layer.grads):
                grads[i] += grad
        for i, grad in enumerate(grads):
            self.grads[i][...] = grad
        self.dh = dh
        return dxs

    def set_state(self, h, c=None):
        self.h, self.c = h, c

    def reset_state(self):
        self.h, self.c = None, None


class TimeAffine:
    def __init__(self, W, b):
        self.params = [W, b]
        self.grads = [np.zeros_like(W), np.zeros_like(b)]
        self.x = None

    def forward(self, x):
        N, T, D = x.shape
        W, b = self.params
        rx = x.reshape(N * T, -1)
        out = np.dot(rx, W) + b
        self.x = x
        return out.reshape(N, T, -1)

    def backward(self, dout):
        x = self.x
        N, T, D = x.shape
        W, b = self.params
        dout = dout.reshape(N * T, -1)
        rx = x.reshape(N * T, -1)
        db = np.sum(dout, axis=0)
        dW = np.dot(rx.T, dout)
        dx = np.dot(dout, W.T)
        dx = dx.reshape(*x.shape)
        self.grads[0][...] = dW
        self.grads[1][...] = db
        return dx


class TimeSoftmaxWithLoss:
    def __init__(self):
        self.params, self.grads = [], []
        self.cache = None
        self.ignore_label = -1

    def forward(self, xs, ts):
        N, T, V = xs.shape
        if ts.ndim == 3:  # one-hot targets
            ts = ts.argmax(axis=2)
        mask = ts != self.ignore_label
        xs = xs.reshape(N * T, V)
        ts = ts.reshape(N * T)
        mask = mask.reshape(N * T)
        ys = softmax(xs)
        ls = np.log(ys[np.arange(N * T), ts])
        ls *= mask
        loss = -np.sum(ls)
        loss /= mask.sum()
        self.cache = (ts, ys, mask, (N, T, V))
        return loss

    def backward(self, dout=1):
        ts, ys, mask, (N, T, V) = self.cache
        dx = ys
        dx[np.arange(N * T), ts] -= 1
        dx *= dout
        dx /= mask.sum()
        dx *= mask[:, np.newaxis]
        return dx.reshape((N, T, V))


class TimeDropout:
    def __init__(self, dropout_ratio=0.5):
        self.params, self.grads = [], []
        self.dropout_ratio = dropout_ratio
        self.mask = None
        self.train_flg = True

    def forward(self, xs):
        if self.train_flg:
            flg = np.random.rand(*xs.shape) > self.dropout_ratio
            scale = 1 / (1.0 - self.dropout_ratio)
            self.mask = flg.astype(np.float32) * scale
            return xs * self.mask
        return xs

    def backward(self, dout):
        return dout * self.mask


class BookLm:
    """``Rnnlm`` (one LSTM layer, its own ``affine_W``) or ``BetterRnnlm`` (two, tied, dropout)."""

    def __init__(self, p, dropout_ratio=0.5):
        better = "affine_W" not in p
        self.layers = [TimeEmbedding(p["embed_W"])]
        k = 0
        while f"Wx{k}" in p:
            if better:
                self.layers.append(TimeDropout(dropout_ratio))
            self.layers.append(TimeLSTM(p[f"Wx{k}"], p[f"Wh{k}"], p[f"b{k}"], stateful=True))
            k += 1
        if better:
            self.layers.append(TimeDropout(dropout_ratio))
            self.layers.append(TimeAffine(p["embed_W"].T, p["affine_b"]))  # weight tying
        else:
            self.layers.append(TimeAffine(p["affine_W"], p["affine_b"]))
        self.loss_layer = TimeSoftmaxWithLoss()
        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, xs, ts):
        for layer in self.layers:
            xs = layer.forward(xs)
        return self.loss_layer.forward(xs, ts)

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def step(self, xs, ts):
        """The body of ``RnnlmTrainer.fit``'s loop."""
        loss = self.forward(xs, ts)
        self.backward()
        params, grads = remove_duplicate(self.params, self.grads)
        clip_grads(grads, MAX_GRAD)
        for i in range(len(params)):
            params[i] -= LR * grads[i]
        return loss


def clip_grads(grads, max_norm):
    total_norm = 0
    for grad in grads:
        total_norm += np.sum(grad**2)
    total_norm = np.sqrt(total_norm)
    rate = max_norm / (total_norm + 1e-6)
    if rate < 1:
        for grad in grads:
            grad *= rate  # noqa: PLW2901 - in place, as the book


def remove_duplicate(params, grads):
    params, grads = params[:], grads[:]
    while True:
        find_flg = False
        L = len(params)
        for i in range(L - 1):
            for j in range(i + 1, L):
                if params[i] is params[j]:
                    grads[i] += grads[j]
                    find_flg = True
                    params.pop(j)
                    grads.pop(j)
                elif (
                    params[i].ndim == 2
                    and params[j].ndim == 2
                    and params[i].T.shape == params[j].shape
                    and np.all(params[i].T == params[j])  # noqa: SIM300 - the book's test
                ):
                    grads[i] += grads[j].T
                    find_flg = True
                    params.pop(j)
                    grads.pop(j)
                if find_flg:
                    break
            if find_flg:
                break
        if not find_flg:
            break
    return params, grads
