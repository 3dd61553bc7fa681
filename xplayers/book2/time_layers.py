"""Volume 2's ``common/time_layers.py``: recurrent and time-distributed layers.

The classes keep the book's names, signatures and attributes (``params``,
``grads``, ``stateful``, ``h``/``c``, ``dh``, ``set_state``,
``reset_state``, ``train_flg``, ``ignore_label``); the math is that of
:mod:`xplayers.sequence`. Where the book keeps a list of per-step layer
objects (``self.layers``), these classes keep the per-step caches of the
pure functions instead.
"""

from __future__ import annotations

from typing import Any

from xplayers._validation import describe, fail, float_array, number_in
from xplayers.backend import materialize, namespace
from xplayers.book2._cells import hold
from xplayers.book2._common import (
    as_tokens,
    check_state,
    check_time_input,
    forwarded,
    mask_source,
    on_layer_backend,
    store,
)
from xplayers.book2.layers import Book2Layer
from xplayers.functional import dropout_mask
from xplayers.sequence import (
    embedding,
    embedding_backward,
    gru,
    gru_backward,
    lstm,
    lstm_backward,
    rnn,
    rnn_backward,
    sigmoid_cross_entropy,
    sigmoid_cross_entropy_backward,
    time_affine,
    time_affine_backward,
    time_gru,
    time_gru_backward,
    time_lstm,
    time_lstm_backward,
    time_rnn,
    time_rnn_backward,
    time_softmax_cross_entropy,
    time_softmax_cross_entropy_backward,
)

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "TimeAffine",
    "TimeBiLSTM",
    "TimeDropout",
    "TimeEmbedding",
    "TimeGRU",
    "TimeLSTM",
    "TimeRNN",
    "TimeSigmoidWithLoss",
    "TimeSoftmaxWithLoss",
]


class _Cell(Book2Layer):
    """A recurrent cell with weights ``Wx (D, G*H)``, ``Wh (H, G*H)``, ``b (G*H,)``."""

    gates = 1

    def __init__(self, Wx: Any, Wh: Any, b: Any) -> None:
        self._take("Wx Wh b", Wx, Wh, b)
        Wx, Wh, b = self.params
        where = type(self).__name__
        H = int(Wh.shape[0])
        if Wh.ndim != 2 or int(Wh.shape[1]) != self.gates * H:
            fail(where, "Wh", f"shape (H, {self.gates}*H)", describe(Wh))
        if Wx.ndim != 2 or int(Wx.shape[1]) != self.gates * H:
            fail(where, "Wx", f"shape (D, {self.gates * H})", describe(Wx))
        if b.ndim != 1 or int(b.shape[0]) != self.gates * H:
            fail(where, "b", f"shape ({self.gates * H},)", describe(b))
        self.cache: Any = None

    @property
    def _weights(self) -> tuple[Any, Any, Any]:
        Wx, Wh, b = self.params
        return Wx, Wh, b

    @property
    def _hidden(self) -> int:
        return int(self.params[1].shape[0])

    def _step_input(self, x: Any, *states: tuple[str, Any]) -> tuple[Any, ...]:
        where = f"{type(self).__name__}.forward"
        x = self._input("forward", x, int(self.params[0].shape[0]))
        n = int(x.shape[0])
        return (
            x,
            *(check_state(where, name, s, self.params[0], self._hidden, n) for name, s in states),
        )

    def _store_all(self, grads: tuple[Any, ...]) -> None:
        for i, g in enumerate(grads):
            store(self.grads, i, g)


class RNN(_Cell):
    """One step of the book's RNN: ``forward(x, h_prev) -> h_next``; ``backward(dh_next)``."""

    def forward(self, x: Any, h_prev: Any) -> Any:
        """Return the next hidden state ``(N, H)``."""
        x, h_prev = self._step_input(x, ("h_prev", h_prev))
        h_next, self.cache = rnn(*self._weights, x, h_prev)
        return h_next

    def backward(self, dh_next: Any) -> tuple[Any, Any]:
        """Store the weight gradients; return ``(dx, dh_prev)``."""
        dx, dh_prev, grads = rnn_backward(forwarded(self, self.cache), dh_next)
        self._store_all(grads)
        return dx, dh_prev


class LSTM(_Cell):
    """One LSTM step, gates f, g, i, o: ``forward(x, h_prev, c_prev) -> (h_next, c_next)``."""

    gates = 4

    def forward(self, x: Any, h_prev: Any, c_prev: Any) -> tuple[Any, Any]:
        """Return the next hidden and cell states, each ``(N, H)``."""
        x, h_prev, c_prev = self._step_input(x, ("h_prev", h_prev), ("c_prev", c_prev))
        h_next, c_next, self.cache = lstm(*self._weights, x, h_prev, c_prev)
        return h_next, c_next

    def backward(self, dh_next: Any, dc_next: Any) -> tuple[Any, Any, Any]:
        """Store the weight gradients; return ``(dx, dh_prev, dc_prev)``."""
        dx, dh_prev, dc_prev, grads = lstm_backward(forwarded(self, self.cache), dh_next, dc_next)
        self._store_all(grads)
        return dx, dh_prev, dc_prev


class GRU(_Cell):
    """One GRU step in the book's formulation (gates z, r, h̃): ``forward(x, h_prev) -> h_next``."""

    gates = 3

    def forward(self, x: Any, h_prev: Any) -> Any:
        """Return the next hidden state ``(N, H)``."""
        x, h_prev = self._step_input(x, ("h_prev", h_prev))
        h_next, self.cache = gru(*self._weights, x, h_prev)
        return h_next

    def backward(self, dh_next: Any) -> tuple[Any, Any]:
        """Store the weight gradients; return ``(dx, dh_prev)``."""
        dx, dh_prev, grads = gru_backward(forwarded(self, self.cache), dh_next)
        self._store_all(grads)
        return dx, dh_prev


class _TimeCell(_Cell):
    """A cell over ``T`` steps: ``forward(xs (N, T, D)) -> hs (N, T, H)``, ``backward(dhs)``.

    With ``stateful=True`` the last hidden state carries over to the next
    ``forward`` (its batch size must then stay the same); :meth:`set_state`
    sets it, :meth:`reset_state` forgets it. ``dh`` is the gradient of the
    first hidden state after ``backward``.
    """

    def __init__(self, Wx: Any, Wh: Any, b: Any, stateful: bool = False) -> None:
        super().__init__(Wx, Wh, b)
        self.stateful = bool(stateful)
        self.h: Any = None
        self.dh: Any = None

    def _time_input(self, xs: Any) -> Any:
        return check_time_input(
            f"{type(self).__name__}.forward", xs, self.params[0], int(self.params[0].shape[0])
        )

    def _carried(self, xs: Any, name: str, value: Any) -> Any:
        """The state to start from: None (zeros) unless stateful; checked against the batch."""
        if not self.stateful or value is None:
            return None
        return check_state(
            f"{type(self).__name__}.set_state",
            name,
            value,
            self.params[0],
            self._hidden,
            int(xs.shape[0]),
        )

    def set_state(self, h: Any) -> None:
        """Set the hidden state ``(N, H)`` the next (stateful) ``forward`` starts from."""
        where = f"{type(self).__name__}.set_state"
        self.h = _computed(check_state(where, "h", h, self.params[0], self._hidden, None))

    def reset_state(self) -> None:
        """Forget the hidden state: the next ``forward`` starts from zeros."""
        self.h = None


def _computed(state: Any) -> Any:
    """A lazy (Dask) state computed now, so that each later step's graph does not carry it.

    A decoder's state set from an encoder's output would otherwise bring the
    encoder's whole graph into every step of a generation, computed again
    each time a generated id is read.
    """
    return None if state is None else materialize(state)


class TimeRNN(_TimeCell):
    """The book's RNN over ``T`` steps."""

    def forward(self, xs: Any) -> Any:
        """Return the hidden states ``(N, T, H)`` of the inputs ``xs (N, T, D)``."""
        xs = self._time_input(xs)
        hs, self.cache, self.h = time_rnn(*self._weights, xs, self._carried(xs, "h", self.h))
        return hs

    def backward(self, dhs: Any) -> Any:
        """Store the weight gradients summed over time; return ``dxs (N, T, D)``."""
        dxs, self.dh, grads = time_rnn_backward(forwarded(self, self.cache), dhs)
        self._store_all(grads)
        return dxs


class TimeGRU(_TimeCell):
    """The book's GRU over ``T`` steps."""

    gates = 3

    def forward(self, xs: Any) -> Any:
        """Return the hidden states ``(N, T, H)`` of the inputs ``xs (N, T, D)``."""
        xs = self._time_input(xs)
        hs, self.cache, self.h = time_gru(*self._weights, xs, self._carried(xs, "h", self.h))
        return hs

    def backward(self, dhs: Any) -> Any:
        """Store the weight gradients summed over time; return ``dxs (N, T, D)``."""
        dxs, self.dh, grads = time_gru_backward(forwarded(self, self.cache), dhs)
        self._store_all(grads)
        return dxs


class TimeLSTM(_TimeCell):
    """The book's LSTM over ``T`` steps; the cell state ``c`` is carried like ``h``."""

    gates = 4

    def __init__(self, Wx: Any, Wh: Any, b: Any, stateful: bool = False) -> None:
        super().__init__(Wx, Wh, b, stateful)
        self.c: Any = None

    def forward(self, xs: Any) -> Any:
        """Return the hidden states ``(N, T, H)`` of the inputs ``xs (N, T, D)``."""
        xs = self._time_input(xs)
        h = self._carried(xs, "h", self.h)
        c = self._carried(xs, "c", self.c)
        hs, self.cache, (self.h, self.c) = time_lstm(*self._weights, xs, h, c)
        return hs

    def backward(self, dhs: Any) -> Any:
        """Store the weight gradients summed over time; return ``dxs (N, T, D)``."""
        dxs, (self.dh, _), grads = time_lstm_backward(forwarded(self, self.cache), dhs)
        self._store_all(grads)
        return dxs

    def set_state(self, h: Any, c: Any = None) -> None:
        """Set the hidden state and (optionally, else zeros) the cell state, each ``(N, H)``."""
        where = "TimeLSTM.set_state"
        self.h = _computed(check_state(where, "h", h, self.params[0], self._hidden, None))
        batch = None if self.h is None else int(self.h.shape[0])
        self.c = _computed(check_state(where, "c", c, self.params[0], self._hidden, batch))

    def reset_state(self) -> None:
        """Forget both states."""
        self.h, self.c = None, None


class TimeEmbedding(Book2Layer):
    """Embedding of ``(N, T)`` ids; the backward is one scatter-add over all ``N*T`` ids."""

    def __init__(self, W: Any) -> None:
        self._take("W", W)
        self.W = self.params[0]
        self.idx: Any = None

    def forward(self, xs: Any) -> Any:
        """Return the rows of ``W`` for the ids ``xs (N, T)``: ``(N, T, D)``."""
        W = self.params[0]
        self.idx = as_tokens("TimeEmbedding.forward", "xs", xs, W, int(W.shape[0]), ndim=2)
        if int(self.idx.shape[1]) == 0:
            fail(
                "TimeEmbedding.forward", "xs", "at least one time step (T >= 1)", describe(self.idx)
            )
        return embedding(W, self.idx)

    def backward(self, dout: Any) -> None:
        """Store ``dW``: one scatter-add of all ``N * T`` rows of `dout`."""
        W = self.params[0]
        store(self.grads, 0, embedding_backward(dout, forwarded(self, self.idx), int(W.shape[0])))


class TimeAffine(Book2Layer):
    """``xs @ W + b`` at every step of ``(N, T, D)`` inputs, as one matrix product."""

    def __init__(self, W: Any, b: Any) -> None:
        self._take("W b", W, b)
        self.x: Any = None
        self._cache: Any = None

    def forward(self, x: Any) -> Any:
        """Return ``x @ W + b`` at every step: ``(N, T, M)``."""
        W, b = self.params
        x = check_time_input("TimeAffine.forward", x, W, int(W.shape[0]))
        out, self._cache = time_affine(W, b, x)
        self.x = x
        return out

    def backward(self, dout: Any) -> Any:
        """Store ``dW`` and ``db``; return ``dx (N, T, D)``."""
        dx, grads = time_affine_backward(forwarded(self, self._cache), dout)
        for i, g in enumerate(grads):
            store(self.grads, i, g)
        return dx


class TimeSoftmaxWithLoss(Book2Layer):
    """Softmax cross-entropy of ``(N, T, V)`` scores; labels equal to ``ignore_label`` left out."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.cache: Any = None
        self.ignore_label = -1

    def forward(self, xs: Any, ts: Any) -> Any:
        """Return the mean loss over the labels that are not ``ignore_label``."""
        where = "TimeSoftmaxWithLoss.forward"
        float_array(where, "xs", xs)
        if xs.ndim != 3 or int(xs.shape[1]) == 0:
            fail(where, "xs", "shape (N, T, V) with T >= 1", describe(xs))
        ts = on_layer_backend(ts, xs)
        if getattr(ts, "ndim", 0) == 3 and tuple(ts.shape) == tuple(xs.shape):
            ts = namespace(ts).argmax(ts, axis=2)
        ts = as_tokens(
            where, "ts", ts, xs, int(xs.shape[2]), ndim=2, ignore_label=self.ignore_label
        )
        if tuple(ts.shape) != tuple(xs.shape[:2]):
            fail(where, "ts", f"labels of shape (N, T) = {tuple(xs.shape[:2])}", describe(ts))
        loss, self.cache = time_softmax_cross_entropy(xs, ts, ignore_label=self.ignore_label)
        return loss

    def backward(self, dout: Any = 1) -> Any:
        """Return ``dxs (N, T, V)``, zero at the ignored labels."""
        return time_softmax_cross_entropy_backward(forwarded(self, self.cache), dout)


class TimeSigmoidWithLoss(Book2Layer):
    """Binary cross-entropy of ``(N, T)`` scores against 0/1 targets, the mean over all steps."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.xs_shape: Any = None
        self._cache: Any = None

    def forward(self, xs: Any, ts: Any) -> Any:
        """Return the mean binary cross-entropy over all ``N * T`` scores."""
        where = "TimeSigmoidWithLoss.forward"
        float_array(where, "xs", xs)
        if xs.ndim != 2 or int(xs.shape[1]) == 0:
            fail(where, "xs", "shape (N, T) with T >= 1", describe(xs))
        ts = on_layer_backend(ts, xs)
        if tuple(getattr(ts, "shape", ())) != tuple(xs.shape):
            fail(where, "ts", f"targets of shape {tuple(xs.shape)}", describe(ts))
        self.xs_shape = tuple(xs.shape)
        loss, self._cache = sigmoid_cross_entropy(xs, ts)
        return loss

    def backward(self, dout: Any = 1) -> Any:
        """Return ``(y - t) * dout / (N * T)``."""
        return sigmoid_cross_entropy_backward(forwarded(self, self._cache), dout)


class TimeDropout(Book2Layer):
    """Inverted dropout over ``(N, T, D)``: kept values scaled by ``1 / (1 - dropout_ratio)``.

    ``train_flg`` (an attribute, as in the book) switches it off for
    evaluation. The mask is drawn on the host, so it is the same on every
    backend: from the layer's own ``numpy.random.default_rng(seed)``, or,
    without a seed, from NumPy's global generator as the book draws it
    (``np.random.rand(*xs.shape) > dropout_ratio``), so ``np.random.seed``
    gives the book's masks.
    """

    def __init__(self, dropout_ratio: float = 0.5, *, seed: Any = None) -> None:
        self.params, self.grads = [], []
        self.dropout_ratio = number_in(
            "TimeDropout", "dropout_ratio", dropout_ratio, low=0.0, high=1.0, low_open=False
        )
        self.rng = mask_source(seed)
        self.mask: Any = None
        self.train_flg = True

    def forward(self, xs: Any) -> Any:
        """Return ``xs * mask`` in training (``train_flg``), else `xs`."""
        float_array("TimeDropout.forward", "xs", xs)
        if not self.train_flg:
            self.mask = None
            return xs
        self.mask = dropout_mask(self.rng, xs, self.dropout_ratio) * (
            1.0 / (1.0 - self.dropout_ratio)
        )
        return xs * self.mask

    def backward(self, dout: Any) -> Any:
        """Return ``dout * mask`` (`dout` after an evaluation forward)."""
        return dout if self.mask is None else dout * self.mask


class TimeBiLSTM(Book2Layer):
    """Two :class:`TimeLSTM` layers, one reading the sequence backwards; outputs concatenated."""

    def __init__(
        self, Wx1: Any, Wh1: Any, b1: Any, Wx2: Any, Wh2: Any, b2: Any, stateful: bool = False
    ) -> None:
        self.forward_lstm = TimeLSTM(Wx1, Wh1, b1, stateful)
        self.backward_lstm = TimeLSTM(Wx2, Wh2, b2, stateful)
        self.params = self.forward_lstm.params + self.backward_lstm.params
        self.grads = self.forward_lstm.grads + self.backward_lstm.grads
        hold(self)

    def forward(self, xs: Any) -> Any:
        """Return both directions' hidden states side by side: ``(N, T, 2H)``."""
        o1 = self.forward_lstm.forward(xs)
        xp = namespace(o1)
        o2 = self.backward_lstm.forward(xp.flip(on_layer_backend(xs, o1), axis=1))
        return xp.concat((o1, xp.flip(o2, axis=1)), axis=2)

    def backward(self, dhs: Any) -> Any:
        """Store both layers' gradients; return the sum of their ``dxs``."""
        xp = namespace(dhs)
        H = int(dhs.shape[2]) // 2
        dxs1 = self.forward_lstm.backward(dhs[:, :, :H])
        dxs2 = self.backward_lstm.backward(xp.flip(dhs[:, :, H:], axis=1))
        self.grads[:] = self.forward_lstm.grads + self.backward_lstm.grads
        return dxs1 + xp.flip(dxs2, axis=1)
