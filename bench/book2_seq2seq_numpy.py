"""The baseline of chapter 8: *Deep Learning from Scratch 2*'s AttentionSeq2seq step in NumPy.

Written as the book writes it (``common/time_layers.py``, ``common/layers.py``,
``ch08/attention_layer.py``, ``ch07/seq2seq.py``, ``ch08/attention_seq2seq.py``,
``common/optimizer.py``, ``common/util.py``, ``common/trainer.py``): one
``LSTM`` object per time step, the attention as a loop of ``Attention``
objects over the decoder's steps with ``repeat``-based backward passes,
``np.add.at`` in the embedding's backward, ``clip_grads`` deciding on the
host and the book's ``Adam``; the time layers are those of ``book2_numpy``.
This is what xplayers is compared with; do not optimise it.

Differences from the book, none of which changes the work of a step: the
weights come from ``numpy.random.default_rng(seed)`` (the draws of
:class:`xplayers.book2.AttentionSeq2seq` with ``rng=``, in the same order);
``step()`` is the body of the book's ``Trainer.fit`` loop.
"""

from __future__ import annotations

import numpy as np
from book2_numpy import (
    TimeAffine,
    TimeEmbedding,
    TimeLSTM,
    TimeSoftmaxWithLoss,
    clip_grads,
    softmax,
)


class Softmax:
    def __init__(self):
        self.params, self.grads = [], []
        self.out = None

    def forward(self, x):
        self.out = softmax(x)
        return self.out

    def backward(self, dout):
        dx = self.out * dout
        sumdx = np.sum(dx, axis=1, keepdims=True)
        dx -= self.out * sumdx
        return dx


class WeightSum:
    def __init__(self):
        self.params, self.grads = [], []
        self.cache = None

    def forward(self, hs, a):
        N, T, H = hs.shape
        ar = a.reshape(N, T, 1)
        t = hs * ar
        c = np.sum(t, axis=1)
        self.cache = (hs, ar)
        return c

    def backward(self, dc):
        hs, ar = self.cache
        N, T, H = hs.shape
        dt = dc.reshape(N, 1, H).repeat(T, axis=1)
        dar = dt * hs
        dhs = dt * ar
        da = np.sum(dar, axis=2)
        return dhs, da


class AttentionWeight:
    def __init__(self):
        self.params, self.grads = [], []
        self.softmax = Softmax()
        self.cache = None

    def forward(self, hs, h):
        N, T, H = hs.shape
        hr = h.reshape(N, 1, H)
        t = hs * hr
        s = np.sum(t, axis=2)
        a = self.softmax.forward(s)
        self.cache = (hs, hr)
        return a

    def backward(self, da):
        hs, hr = self.cache
        N, T, H = hs.shape
        ds = self.softmax.backward(da)
        dt = ds.reshape(N, T, 1).repeat(H, axis=2)
        dhs = dt * hr
        dhr = dt * hs
        dh = np.sum(dhr, axis=1)
        return dhs, dh


class Attention:
    def __init__(self):
        self.params, self.grads = [], []
        self.attention_weight_layer = AttentionWeight()
        self.weight_sum_layer = WeightSum()
        self.attention_weight = None

    def forward(self, hs, h):
        a = self.attention_weight_layer.forward(hs, h)
        out = self.weight_sum_layer.forward(hs, a)
        self.attention_weight = a
        return out

    def backward(self, dout):
        dhs0, da = self.weight_sum_layer.backward(dout)
        dhs1, dh = self.attention_weight_layer.backward(da)
        return dhs0 + dhs1, dh


class TimeAttention:
    def __init__(self):
        self.params, self.grads = [], []
        self.layers = None

    def forward(self, hs_enc, hs_dec):
        N, T, H = hs_dec.shape
        out = np.empty_like(hs_dec)
        self.layers = []
        for t in range(T):
            layer = Attention()
            out[:, t, :] = layer.forward(hs_enc, hs_dec[:, t, :])
            self.layers.append(layer)
        return out

    def backward(self, dout):
        N, T, H = dout.shape
        dhs_enc = 0
        dhs_dec = np.empty_like(dout)
        for t in range(T):
            dhs, dh = self.layers[t].backward(dout[:, t, :])
            dhs_enc += dhs
            dhs_dec[:, t, :] = dh
        return dhs_enc, dhs_dec


def _lstm_weights(rn, D, H):
    return (
        (rn(D, 4 * H) / np.sqrt(D)).astype("f"),
        (rn(H, 4 * H) / np.sqrt(H)).astype("f"),
        np.zeros(4 * H).astype("f"),
    )


class AttentionEncoder:
    def __init__(self, rn, V, D, H):
        self.embed = TimeEmbedding((rn(V, D) / 100).astype("f"))
        self.lstm = TimeLSTM(*_lstm_weights(rn, D, H), stateful=False)
        self.params = self.embed.params + self.lstm.params
        self.grads = self.embed.grads + self.lstm.grads

    def forward(self, xs):
        return self.lstm.forward(self.embed.forward(xs))

    def backward(self, dhs):
        self.embed.backward(self.lstm.backward(dhs))


class AttentionDecoder:
    def __init__(self, rn, V, D, H):
        self.embed = TimeEmbedding((rn(V, D) / 100).astype("f"))
        self.lstm = TimeLSTM(*_lstm_weights(rn, D, H), stateful=True)
        self.attention = TimeAttention()
        affine_W = (rn(2 * H, V) / np.sqrt(2 * H)).astype("f")
        self.affine = TimeAffine(affine_W, np.zeros(V).astype("f"))
        self.params, self.grads = [], []
        for layer in (self.embed, self.lstm, self.attention, self.affine):
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, xs, enc_hs):
        self.lstm.set_state(enc_hs[:, -1])
        dec_hs = self.lstm.forward(self.embed.forward(xs))
        c = self.attention.forward(enc_hs, dec_hs)
        return self.affine.forward(np.concatenate((c, dec_hs), axis=2))

    def backward(self, dscore):
        dout = self.affine.backward(dscore)
        H = dout.shape[2] // 2
        dc, ddec_hs0 = dout[:, :, :H], dout[:, :, H:]
        denc_hs, ddec_hs1 = self.attention.backward(dc)
        dout = self.lstm.backward(ddec_hs0 + ddec_hs1)
        denc_hs[:, -1] += self.lstm.dh
        self.embed.backward(dout)
        return denc_hs


class AttentionSeq2seq:
    def __init__(self, V, D, H, seed=0):
        rng = np.random.default_rng(seed)

        def rn(*shape):
            return rng.standard_normal(shape)

        self.encoder = AttentionEncoder(rn, V, D, H)
        self.decoder = AttentionDecoder(rn, V, D, H)
        self.softmax = TimeSoftmaxWithLoss()
        self.params = self.encoder.params + self.decoder.params
        self.grads = self.encoder.grads + self.decoder.grads

    def forward(self, xs, ts):
        h = self.encoder.forward(xs)
        score = self.decoder.forward(ts[:, :-1], h)
        return self.softmax.forward(score, ts[:, 1:])

    def backward(self, dout=1):
        self.encoder.backward(self.decoder.backward(self.softmax.backward(dout)))


class Adam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter = 0
        self.m, self.v = None, None

    def update(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for i in range(len(params)):
            self.m[i] += (1 - self.beta1) * (grads[i] - self.m[i])
            self.v[i] += (1 - self.beta2) * (grads[i] ** 2 - self.v[i])
            params[i] -= lr_t * self.m[i] / (np.sqrt(self.v[i]) + 1e-7)


def step(model, optimizer, x, t, max_grad=5.0):
    """The body of the book's ``Trainer.fit`` loop (no shared weights in this model)."""
    loss = model.forward(x, t)
    model.backward()
    clip_grads(model.grads, max_grad)
    optimizer.update(model.params, model.grads)
    return loss
