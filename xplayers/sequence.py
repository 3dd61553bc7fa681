r"""Pure math of the sequence layers (*Deep Learning from Scratch 2*), against the Array API.

Like :mod:`xplayers.functional`, every function takes its namespace from its
arrays, writes into none of its arguments, and reads no array data on the
host, so it runs on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict.

Each layer is a pair of pure functions: a forward ``f(params, inputs,
state) -> (outputs, cache, new state)`` and a backward ``f_backward(cache,
dout) -> (input gradients, parameter gradients)``. The cache holds what the
backward needs (the parameters included), so the backward takes nothing else.

Shapes: ``N`` batch, ``T`` time steps, ``D`` input size, ``H`` hidden size,
``V`` vocabulary (rows of an embedding matrix or classes of a softmax).

Gate layouts follow the book: the LSTM's ``Wx`` ``(D, 4H)``, ``Wh``
``(H, 4H)`` and ``b`` ``(4H,)`` hold the gates in the order **f, g, i, o**
(forget, cell candidate, input, output); the GRU's ``(D, 3H)``,
``(H, 3H)``, ``(3H,)`` hold **z, r, h̃** (update, reset, candidate).

Scatter-add
-----------
The gradient of a gather (:func:`embedding`) adds rows of the upstream
gradient into the rows their indices name, repeated indices adding up. The
standard has no such operation: :func:`scatter_add` is a kernel, with one
form per library (``np.add.at`` done faster, ``torch.index_add``, JAX's
``.at[].add``, CuPy's ``add.at``) and a generic form without any index
assignment: a one-hot comparison matrix times the values, a chunk of
indices at a time.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from array_api_compat import device

from xplayers.backend import namespace
from xplayers.functional import (
    affine,
    affine_backward,
    kernel,
    log_softmax,
    one_hot,
    sigmoid,
    sigmoid_backward,
)

__all__ = [
    "SCATTER_CHUNK",
    "at_labels",
    "embedding",
    "embedding_backward",
    "embedding_dot",
    "embedding_dot_backward",
    "gru",
    "gru_backward",
    "lstm",
    "lstm_backward",
    "lstm_through_time_backward",
    "matmul",
    "matmul_backward",
    "negative_sampling_loss",
    "negative_sampling_loss_backward",
    "rnn",
    "rnn_backward",
    "scatter_add",
    "sigmoid_cross_entropy",
    "sigmoid_cross_entropy_backward",
    "softmax_backward",
    "softmax_label_gradient",
    "time_affine",
    "time_affine_backward",
    "time_gru",
    "time_gru_backward",
    "time_lstm",
    "time_lstm_backward",
    "time_rnn",
    "time_rnn_backward",
    "time_softmax_cross_entropy",
    "time_softmax_cross_entropy_backward",
]

Cache = tuple[Any, ...]

#: Entries of the one-hot block the generic :func:`scatter_add` builds at a time (V x chunk).
SCATTER_CHUNK = 1 << 22


# --------------------------------------------------------------------------- matmul, softmax


def matmul(x: Any, W: Any, /) -> tuple[Any, Cache]:
    """The book's ``MatMul``: ``x @ W``; the cache is ``(x, W)``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.sequence import matmul
    >>> matmul(xp.ones((1, 2)), xp.ones((2, 3)))[0]
    Array([[2., 2., 2.]], dtype=array_api_strict.float64)
    """
    return x @ W, (x, W)


def matmul_backward(cache: Cache, dout: Any, /) -> tuple[Any, Any]:
    r"""Gradients of :func:`matmul`: :math:`dx = dout\,W^\top`, :math:`dW = x^\top dout`."""
    x, W = cache
    return dout @ W.T, x.T @ dout


def softmax_backward(y: Any, dout: Any, /) -> Any:
    r"""Gradient of a softmax along the last axis from its output `y`.

    .. math:: dx = y \odot dout - y \textstyle\sum_j y_j\, dout_j
    """
    xp = namespace(y)
    dx = y * dout
    return dx - y * xp.sum(dx, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- losses


def _softplus(x: Any, xp: ModuleType) -> Any:
    """``log(1 + e^x)`` without overflow: ``max(x, 0) + log1p(e^{-|x|})``."""
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


def sigmoid_cross_entropy(x: Any, t: Any, /) -> tuple[Any, Cache]:
    r"""Mean binary cross-entropy of scores `x` against 0/1 targets `t` (SigmoidWithLoss).

    .. math::
        L = \frac1N \sum_n \big(t_n \log(1 + e^{-x_n}) + (1 - t_n) \log(1 + e^{x_n})\big)

    the book's :math:`-\frac1N\sum \log y_{t}` with :math:`y = \sigma(x)`,
    evaluated from the scores, so no ``1e-7`` guard is needed and a score
    gap of 1000 costs exactly 1000. ``N`` is the number of entries of `x`
    (any shape; `t` of the same shape, integer or floating).

    Returns
    -------
    (loss, cache) : 0-d array in `x`'s dtype, and ``(y, t)`` for the backward
    """
    xp = namespace(x)
    tf = t if t.dtype == x.dtype else xp.astype(t, x.dtype)
    per = tf * _softplus(-x, xp) + (1.0 - tf) * _softplus(x, xp)
    n = max(1, _size(x))
    return xp.sum(per / n), (sigmoid(x), tf)


def sigmoid_cross_entropy_backward(cache: Cache, dout: Any = 1.0, /) -> Any:
    r"""Gradient of :func:`sigmoid_cross_entropy`: :math:`(y - t)\,dout / N`."""
    y, t = cache
    return (y - t) * (dout / max(1, _size(y)))


def _size(x: Any) -> int:
    n = 1
    for s in x.shape:
        n *= int(s)
    return n


def time_softmax_cross_entropy(xs: Any, ts: Any, /, ignore_label: int = -1) -> tuple[Any, Cache]:
    r"""Softmax cross-entropy of ``(N, T, V)`` scores, averaged over the labels that count.

    .. math::
        L = -\frac{1}{\max(1, M)} \sum_{n,t:\ t_{nt} \ne \text{ignore}}
            \log \mathrm{softmax}(x_{nt})_{t_{nt}}

    where ``M`` is the number of labels not equal to `ignore_label` (the
    book's ``mask.sum()``; the book divides by 0 when every label is
    ignored, here the loss is then 0). Computed through
    :func:`~xplayers.functional.log_softmax`, without the book's ``1e-7``;
    the labels' entries are picked with :func:`at_labels`, and the
    backward is one :func:`softmax_label_gradient`.

    Parameters
    ----------
    xs : array, shape (N, T, V)
    ts : array, shape (N, T) of integer labels, or (N, T, V) one-hot rows
    ignore_label : int, default -1

    Returns
    -------
    (loss, cache) : 0-d array in `xs`' dtype, and what the backward needs
    """
    xp = namespace(xs)
    n, t, v = (int(s) for s in xs.shape)
    if ts.ndim == 3:
        ts = xp.argmax(ts, axis=2)
    x2 = xp.reshape(xs, (n * t, v))
    t1 = xp.reshape(ts, (n * t,))
    logp = log_softmax(x2)
    mask = xp.astype(t1 != ignore_label, xs.dtype)
    count = xp.maximum(xp.sum(mask), 1.0)
    loss = -xp.sum(at_labels(logp, t1) * mask) / count
    return loss, (xp.exp(logp), t1, mask, count, (n, t, v))


def time_softmax_cross_entropy_backward(cache: Cache, dout: Any = 1.0, /) -> Any:
    r"""Gradient of :func:`time_softmax_cross_entropy`: :math:`(y - t)\,dout\,m / M`."""
    y, t1, mask, count, shape = cache
    xp = namespace(y)
    return xp.reshape(softmax_label_gradient(y, t1, mask * (dout / count)), shape)


@kernel
def at_labels(x: Any, t: Any, /) -> Any:
    """The entry of each row of `x` ``(M, C)`` at its label: ``x[m, t[m]]``, shape ``(M,)``.

    Rows whose label lies outside ``[0, C)`` (an ignored ``-1``) give 0.
    The generic form compares the labels with the class numbers (no
    indexing by data), so it runs on every backend; the library kernels
    gather.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.sequence import at_labels
    >>> at_labels(xp.asarray([[1.0, 2.0], [3.0, 4.0]]), xp.asarray([1, -1]))
    Array([2., 0.], dtype=array_api_strict.float64)
    """
    xp = namespace(x)
    hot = one_hot(t, int(x.shape[1]), dtype=xp.bool)
    return xp.sum(xp.where(hot, x, 0.0), axis=1)


@kernel
def softmax_label_gradient(y: Any, t: Any, weight: Any, /) -> Any:
    r"""Rows of softmax probabilities minus their one-hot labels, scaled: :math:`(y - t)\,w`.

    ``out[m] = (y[m] - onehot(t[m])) * weight[m]``; a label outside
    ``[0, C)`` has an all-zero one-hot row. The gradient of a softmax
    cross-entropy whose row ``m`` counts `weight[m]`.

    Parameters
    ----------
    y : array, shape (M, C)
    t : integer array, shape (M,)
    weight : array, shape (M,)

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.sequence import softmax_label_gradient
    >>> y = xp.asarray([[0.25, 0.75], [0.5, 0.5]])
    >>> softmax_label_gradient(y, xp.asarray([1, -1]), xp.asarray([2.0, 1.0]))
    Array([[ 0.5, -0.5],
           [ 0.5,  0.5]], dtype=array_api_strict.float64)
    """
    xp = namespace(y)
    hot = one_hot(t, int(y.shape[1]), dtype=y.dtype)
    return (y - hot) * xp.expand_dims(weight, axis=1)


# --------------------------------------------------------------------------- embedding


def embedding(W: Any, idx: Any, /) -> Any:
    """Rows of `W` ``(V, D)`` picked by the integer array `idx`; shape ``idx.shape + (D,)``.

    The book's ``W[idx]``, as a ``take`` of the flattened indices.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.sequence import embedding
    >>> embedding(xp.reshape(xp.arange(6.0), (3, 2)), xp.asarray([2, 0, 2]))
    Array([[4., 5.],
           [0., 1.],
           [4., 5.]], dtype=array_api_strict.float64)
    """
    xp = namespace(W)
    flat = xp.reshape(idx, (-1,))
    rows = xp.take(W, flat, axis=0)
    return xp.reshape(rows, (*idx.shape, int(W.shape[1])))


def embedding_backward(dout: Any, idx: Any, num_rows: int, /) -> Any:
    """Gradient of :func:`embedding` with respect to ``W``: one :func:`scatter_add`.

    Parameters
    ----------
    dout : array, shape ``idx.shape + (D,)``
    idx : integer array, any shape
    num_rows : int
        ``V``, the rows of ``W``.

    Returns
    -------
    array, shape (V, D): row ``v`` is the sum of the `dout` rows whose index is ``v``
    """
    xp = namespace(dout)
    d = int(dout.shape[-1])
    return scatter_add(xp.reshape(dout, (-1, d)), xp.reshape(idx, (-1,)), num_rows)


@kernel
def scatter_add(values: Any, indices: Any, num_rows: int, /) -> Any:
    r"""Add the rows of `values` into the rows of a zero ``(num_rows, D)`` array named by `indices`.

    ``out[v] = sum(values[m] for m where indices[m] == v)``: NumPy's
    ``np.add.at(out, indices, values)`` on a new zero array, repeated
    indices adding up.

    Indices outside ``[0, num_rows)`` (the ignored ``-1`` of a loss, say)
    add nothing in the generic form; the library kernels require valid
    indices (the layers check them).

    The generic form multiplies a one-hot comparison matrix, ``(V, chunk)``,
    by each chunk of `values`; a chunk holds at most :data:`SCATTER_CHUNK`
    one-hot entries. It needs no index assignment, so it runs on every
    backend (and traces under JAX ``jit``), at the cost of ``V * M * D``
    multiply-adds: the library kernels are the fast forms.

    Parameters
    ----------
    values : array, shape (M, D)
    indices : integer array, shape (M,)
    num_rows : int

    Returns
    -------
    array, shape (num_rows, D), `values`' dtype and device

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.sequence import scatter_add
    >>> scatter_add(xp.ones((3, 2)), xp.asarray([1, 1, 0]), 3)
    Array([[1., 1.],
           [2., 2.],
           [0., 0.]], dtype=array_api_strict.float64)
    """
    xp = namespace(values)
    m, d = int(values.shape[0]), int(values.shape[1])
    dev = device(values)
    out = xp.zeros((num_rows, d), dtype=values.dtype, device=dev)
    if m == 0 or num_rows == 0:
        return out
    rows = xp.reshape(xp.arange(num_rows, dtype=indices.dtype, device=dev), (num_rows, 1))
    step = max(1, SCATTER_CHUNK // num_rows)
    for start in range(0, m, step):
        stop = min(start + step, m)  # the standard leaves stops past the end unspecified
        hot = xp.astype(rows == xp.reshape(indices[start:stop], (1, -1)), values.dtype)
        out = out + hot @ values[start:stop, ...]
    return out


# --------------------------------------------------------------------------- RNN


def rnn(Wx: Any, Wh: Any, b: Any, x: Any, h_prev: Any, /) -> tuple[Any, Cache]:
    r"""One step of the book's RNN: :math:`h' = \tanh(h W_h + x W_x + b)`.

    Returns
    -------
    (h_next, cache) : the new hidden state ``(N, H)`` (output and state at once)
    """
    xp = namespace(x)
    h_next = xp.tanh(h_prev @ Wh + x @ Wx + b)
    return h_next, (Wx, Wh, x, h_prev, h_next)


def _rnn_cell_backward(h_next: Any, dh_next: Any) -> Any:
    r"""The gradient of the RNN's pre-activation: :math:`dt = dh' \odot (1 - h'^2)`."""
    return dh_next * (1.0 - h_next * h_next)


def rnn_backward(cache: Cache, dh_next: Any, /) -> tuple[Any, Any, tuple[Any, Any, Any]]:
    r"""Gradients of :func:`rnn`.

    .. math::
        dt = dh' \odot (1 - h'^2), \quad dx = dt\,W_x^\top, \quad dh = dt\,W_h^\top, \quad
        dW_x = x^\top dt, \quad dW_h = h^\top dt, \quad db = \textstyle\sum_n dt

    Returns
    -------
    (dx, dh_prev, (dWx, dWh, db))
    """
    Wx, Wh, x, h_prev, h_next = cache
    xp = namespace(dh_next)
    dt = _rnn_cell_backward(h_next, dh_next)
    return dt @ Wx.T, dt @ Wh.T, (x.T @ dt, h_prev.T @ dt, xp.sum(dt, axis=0))


# --------------------------------------------------------------------------- LSTM


def _lstm_cell(A: Any, c_prev: Any, xp: ModuleType) -> tuple[Any, Any, Cache]:
    """The LSTM's gates from the pre-activation `A` ``(N, 4H)``: ``(h', c', gate cache)``."""
    H = int(A.shape[1]) // 4
    f = sigmoid(A[:, :H])
    g = xp.tanh(A[:, H : 2 * H])
    i = sigmoid(A[:, 2 * H : 3 * H])
    o = sigmoid(A[:, 3 * H :])
    c_next = f * c_prev + g * i
    tc = xp.tanh(c_next)
    return o * tc, c_next, (c_prev, f, g, i, o, tc)


def _lstm_cell_backward(gates: Cache, dh_next: Any, dc_next: Any, xp: ModuleType) -> Any:
    """``(dA, dc_prev)``: the gradients of the pre-activation and of the cell state."""
    c_prev, f, g, i, o, tc = gates
    ds = dc_next + dh_next * o * (1.0 - tc * tc)
    df = sigmoid_backward(ds * c_prev, f)
    dg = ds * i * (1.0 - g * g)
    di = sigmoid_backward(ds * g, i)
    do = sigmoid_backward(dh_next * tc, o)
    return xp.concat((df, dg, di, do), axis=1), ds * f


def lstm(Wx: Any, Wh: Any, b: Any, x: Any, h_prev: Any, c_prev: Any, /) -> tuple[Any, Any, Cache]:
    r"""One LSTM step, gates in the book's order f, g, i, o.

    .. math::
        A = x W_x + h W_h + b = [a_f, a_g, a_i, a_o], \quad
        f, i, o = \sigma(a_f), \sigma(a_i), \sigma(a_o), \quad g = \tanh(a_g), \\
        c' = f \odot c + g \odot i, \qquad h' = o \odot \tanh(c')

    Returns
    -------
    (h_next, c_next, cache)
    """
    xp = namespace(x)
    h_next, c_next, gates = _lstm_cell(x @ Wx + h_prev @ Wh + b, c_prev, xp)
    return h_next, c_next, (Wx, Wh, x, h_prev, *gates)


def lstm_backward(
    cache: Cache, dh_next: Any, dc_next: Any, /
) -> tuple[Any, Any, Any, tuple[Any, Any, Any]]:
    r"""Gradients of :func:`lstm` (derivation in the docs' volume 2 page).

    .. math::
        ds = dc' + dh' \odot o \odot (1 - \tanh^2 c'), \quad dc = ds \odot f, \\
        da_f = ds \odot c \odot f(1 - f), \quad da_g = ds \odot i \odot (1 - g^2), \\
        da_i = ds \odot g \odot i(1 - i), \quad da_o = dh' \odot \tanh c' \odot o(1 - o), \\
        dA = [da_f, da_g, da_i, da_o], \quad dx = dA\,W_x^\top, \quad dh = dA\,W_h^\top

    Returns
    -------
    (dx, dh_prev, dc_prev, (dWx, dWh, db))
    """
    Wx, Wh, x, h_prev, *gates = cache
    xp = namespace(dh_next)
    dA, dc_prev = _lstm_cell_backward(tuple(gates), dh_next, dc_next, xp)
    grads = (x.T @ dA, h_prev.T @ dA, xp.sum(dA, axis=0))
    return dA @ Wx.T, dA @ Wh.T, dc_prev, grads


# --------------------------------------------------------------------------- GRU


def _gru_cell(ax: Any, Wh: Any, h_prev: Any, xp: ModuleType) -> tuple[Any, Cache]:
    """The GRU step from the input part ``ax = x W_x + b`` ``(N, 3H)``: ``(h', cache)``."""
    H = int(Wh.shape[0])
    ah = h_prev @ Wh[:, : 2 * H]
    z = sigmoid(ax[:, :H] + ah[:, :H])
    r = sigmoid(ax[:, H : 2 * H] + ah[:, H:])
    rh = r * h_prev
    hh = xp.tanh(ax[:, 2 * H :] + rh @ Wh[:, 2 * H :])
    return h_prev + z * (hh - h_prev), (h_prev, z, r, rh, hh)


def _gru_cell_backward(Wh: Any, cell: Cache, dh_next: Any, xp: ModuleType) -> tuple[Any, Any]:
    """``(dA, dh_prev)``, ``dA = [da_z, da_r, da_h]`` the gradient of ``x W_x + b``."""
    h_prev, z, r, _, hh = cell
    H = int(Wh.shape[0])
    dah = dh_next * z * (1.0 - hh * hh)
    drh = dah @ Wh[:, 2 * H :].T
    daz = sigmoid_backward(dh_next * (hh - h_prev), z)
    dar = sigmoid_backward(drh * h_prev, r)
    dzr = xp.concat((daz, dar), axis=1)
    dh_prev = dh_next * (1.0 - z) + drh * r + dzr @ Wh[:, : 2 * H].T
    return xp.concat((dzr, dah), axis=1), dh_prev


def _gru_hidden_grad(h_prev: Any, rh: Any, dA: Any) -> Any:
    """``dW_h = [h^T da_z, h^T da_r, (r h)^T da_h]`` from ``dA = [da_z, da_r, da_h]``."""
    xp = namespace(dA)
    H2 = 2 * int(h_prev.shape[1])
    return xp.concat((h_prev.T @ dA[:, :H2], rh.T @ dA[:, H2:]), axis=1)


def gru(Wx: Any, Wh: Any, b: Any, x: Any, h_prev: Any, /) -> tuple[Any, Cache]:
    r"""One GRU step in the book's formulation (gates z, r, h̃).

    .. math::
        z = \sigma(x W_{xz} + h W_{hz} + b_z), \quad
        r = \sigma(x W_{xr} + h W_{hr} + b_r), \\
        \tilde h = \tanh\big(x W_{xh} + (r \odot h) W_{hh} + b_h\big), \quad
        h' = (1 - z) \odot h + z \odot \tilde h

    The reset gate multiplies the state *before* the product with
    :math:`W_{hh}` (Cho et al., 2014), where ``torch.nn.GRU`` (cuDNN's form)
    multiplies the product, :math:`r \odot (h W_{hh} + b_{hn})`, and gives
    :math:`z` the other role; the two are different functions.

    Returns
    -------
    (h_next, cache)
    """
    xp = namespace(x)
    h_next, cell = _gru_cell(x @ Wx + b, Wh, h_prev, xp)
    return h_next, (Wx, Wh, x, *cell)


def gru_backward(cache: Cache, dh_next: Any, /) -> tuple[Any, Any, tuple[Any, Any, Any]]:
    r"""Gradients of :func:`gru` (derivation in the docs' volume 2 page).

    .. math::
        da_h = dh' \odot z \odot (1 - \tilde h^2), \quad
        d(rh) = da_h W_{hh}^\top, \\
        da_z = dh' \odot (\tilde h - h) \odot z(1 - z), \quad
        da_r = d(rh) \odot h \odot r(1 - r), \\
        dh = dh' \odot (1 - z) + d(rh) \odot r + [da_z, da_r] [W_{hz}, W_{hr}]^\top, \\
        dW_x = x^\top [da_z, da_r, da_h], \quad
        dW_h = [h^\top da_z, h^\top da_r, (r h)^\top da_h]

    Returns
    -------
    (dx, dh_prev, (dWx, dWh, db))
    """
    Wx, Wh, x, *cell = cache
    xp = namespace(dh_next)
    dA, dh_prev = _gru_cell_backward(Wh, tuple(cell), dh_next, xp)
    h_prev, rh = cell[0], cell[3]
    return dA @ Wx.T, dh_prev, (x.T @ dA, _gru_hidden_grad(h_prev, rh, dA), xp.sum(dA, axis=0))


# --------------------------------------------------------------------------- over time
#
# Over T steps the input's part of every pre-activation, ``x_t W_x + b``, is one
# matrix product of all N*T rows before the recurrence, and the weight
# gradients are one product each after it, from the pre-activation gradients
# of all steps stacked: ``dW_x = X^T dA`` instead of T products of N rows
# summed (the book's per-step layers), the same sums in another order. Only
# the products with W_h stay inside the loop.


def _zeros_state(xs: Any, H: int, like: Any) -> Any:
    xp = namespace(like)
    return xp.zeros((int(xs.shape[0]), H), dtype=like.dtype, device=device(like))


def _zeros_step(dhs: Any) -> Any:
    """Zeros of one step of `dhs` ``(N, T, H)``: ``(N, H)``."""
    return namespace(dhs).zeros_like(dhs[:, 0, :])


def _rows(x: Any) -> Any:
    """``(N, T, D)`` as ``(N*T, D)``."""
    n, t, d = (int(s) for s in x.shape)
    return namespace(x).reshape(x, (n * t, d))


def _input_part(Wx: Any, b: Any, xs: Any) -> Any:
    """``xs @ Wx + b`` for all ``N*T`` rows at once, shape ``(N, T, G*H)``."""
    n, t = int(xs.shape[0]), int(xs.shape[1])
    return namespace(xs).reshape(affine(_rows(xs), Wx, b), (n, t, int(Wx.shape[1])))


def _previous(h0: Any, hs: Any) -> Any:
    """The state before each step, ``[h0, hs[:, 0], ..., hs[:, T-2]]``, as ``(N*T, H)`` rows."""
    xp = namespace(hs)
    t = int(hs.shape[1])
    prev = xp.concat((xp.expand_dims(h0, axis=1), hs[:, : t - 1, :]), axis=1)
    return _rows(prev)


def _input_grads(Wx: Any, xs: Any, dA: list[Any]) -> tuple[Any, Any, Any, Any]:
    """``(dxs, dWx, db, rows of dA)`` from the T pre-activation gradients `dA`, each ``(N, G)``.

    The T steps' gradients are stacked into ``N*T`` rows: one product each
    for ``dxs`` and ``dWx``, one sum for ``db``.
    """
    xp = namespace(xs)
    n, t, d = (int(s) for s in xs.shape)
    rows = _rows(xp.stack(dA, axis=1))
    dx, dWx, db = affine_backward(rows, _rows(xs), Wx)
    return xp.reshape(dx, (n, t, d)), dWx, db, rows


def time_rnn(Wx: Any, Wh: Any, b: Any, xs: Any, h: Any = None, /) -> tuple[Any, Cache, Any]:
    """:func:`rnn` over the ``T`` steps of `xs` ``(N, T, D)`` from state `h` (zeros when None).

    Returns
    -------
    (hs, cache, h_last) : hidden states ``(N, T, H)``, what the backward needs, the last state
    """
    xp = namespace(xs)
    h0 = _zeros_state(xs, int(Wh.shape[0]), Wh) if h is None else h
    xw = _input_part(Wx, b, xs)
    h, hs = h0, []
    for t in range(int(xs.shape[1])):
        h = xp.tanh(xw[:, t, :] + h @ Wh)
        hs.append(h)
    out = xp.stack(hs, axis=1)
    return out, (Wx, Wh, xs, h0, out), h


def time_rnn_backward(
    cache: Cache, dhs: Any, dh: Any = None, /
) -> tuple[Any, Any, tuple[Any, Any, Any]]:
    """Gradients of :func:`time_rnn` (backpropagation through time).

    `dh` is the gradient arriving at the last state (None: 0).

    Returns
    -------
    (dxs, dh0, (dWx, dWh, db)) : ``dh0`` is the gradient of the initial state (the book's ``dh``)
    """
    Wx, Wh, xs, h0, hs = cache
    dh = _zeros_step(dhs) if dh is None else dh
    dts = []
    for t in reversed(range(int(dhs.shape[1]))):
        dt = _rnn_cell_backward(hs[:, t, :], dhs[:, t, :] + dh)
        dh = dt @ Wh.T
        dts.append(dt)
    dts.reverse()
    dxs, dWx, db, dA = _input_grads(Wx, xs, dts)
    return dxs, dh, (dWx, _previous(h0, hs).T @ dA, db)


@kernel
def time_lstm(
    Wx: Any, Wh: Any, b: Any, xs: Any, h: Any = None, c: Any = None, /
) -> tuple[Any, Cache, tuple[Any, Any]]:
    """:func:`lstm` over the ``T`` steps of `xs` ``(N, T, D)``; states zero when None.

    A kernel: a library with its own LSTM over a sequence runs it (torch on
    the CPU: ``torch.lstm`` with the gates reordered to its i, f, g, o, the
    cache then holding its autograd graph, which
    :func:`time_lstm_backward` runs).

    Returns
    -------
    (hs, cache, (h_last, c_last))
    """
    xp = namespace(xs)
    H = int(Wh.shape[0])
    h0 = _zeros_state(xs, H, Wh) if h is None else h
    c = _zeros_state(xs, H, Wh) if c is None else c
    xw = _input_part(Wx, b, xs)
    h, hs, gates = h0, [], []
    for t in range(int(xs.shape[1])):
        h, c, k = _lstm_cell(xw[:, t, :] + h @ Wh, c, xp)
        hs.append(h)
        gates.append(k)
    out = xp.stack(hs, axis=1)
    return out, (Wx, Wh, xs, h0, out, tuple(gates)), (h, c)


def time_lstm_backward(
    cache: Cache, dhs: Any, dh: Any = None, dc: Any = None, /
) -> tuple[Any, tuple[Any, Any], tuple[Any, Any, Any]]:
    """Gradients of :func:`time_lstm`.

    Returns
    -------
    (dxs, (dh0, dc0), (dWx, dWh, db))
    """
    return lstm_through_time_backward(dhs, cache, dh, dc)


@kernel
def lstm_through_time_backward(
    dhs: Any, cache: Cache, dh: Any = None, dc: Any = None, /
) -> tuple[Any, tuple[Any, Any], tuple[Any, Any, Any]]:
    """:func:`time_lstm_backward`, a kernel chosen by `dhs` (a library's cache goes to its own)."""
    Wx, Wh, xs, h0, hs, gates = cache
    xp = namespace(dhs)
    dh = _zeros_step(dhs) if dh is None else dh
    dc = _zeros_step(dhs) if dc is None else dc
    dAs = []
    for t in reversed(range(int(dhs.shape[1]))):
        dA, dc = _lstm_cell_backward(gates[t], dhs[:, t, :] + dh, dc, xp)
        dh = dA @ Wh.T
        dAs.append(dA)
    dAs.reverse()
    dxs, dWx, db, dA2 = _input_grads(Wx, xs, dAs)
    return dxs, (dh, dc), (dWx, _previous(h0, hs).T @ dA2, db)


def time_gru(Wx: Any, Wh: Any, b: Any, xs: Any, h: Any = None, /) -> tuple[Any, Cache, Any]:
    """:func:`gru` over the ``T`` steps of `xs`; as :func:`time_rnn`."""
    xp = namespace(xs)
    h0 = _zeros_state(xs, int(Wh.shape[0]), Wh) if h is None else h
    ax = _input_part(Wx, b, xs)
    h, hs, cells = h0, [], []
    for t in range(int(xs.shape[1])):
        h, k = _gru_cell(ax[:, t, :], Wh, h, xp)
        hs.append(h)
        cells.append(k)
    return xp.stack(hs, axis=1), (Wx, Wh, xs, tuple(cells)), h


def time_gru_backward(
    cache: Cache, dhs: Any, dh: Any = None, /
) -> tuple[Any, Any, tuple[Any, Any, Any]]:
    """Gradients of :func:`time_gru`; as :func:`time_rnn_backward`."""
    Wx, Wh, xs, cells = cache
    xp = namespace(dhs)
    dh = _zeros_step(dhs) if dh is None else dh
    dAs = []
    for t in reversed(range(int(dhs.shape[1]))):
        dA, dh = _gru_cell_backward(Wh, cells[t], dhs[:, t, :] + dh, xp)
        dAs.append(dA)
    dAs.reverse()
    dxs, dWx, db, dA2 = _input_grads(Wx, xs, dAs)
    h_prev = _rows(xp.stack([k[0] for k in cells], axis=1))
    rh = _rows(xp.stack([k[3] for k in cells], axis=1))
    return dxs, dh, (dWx, _gru_hidden_grad(h_prev, rh, dA2), db)


# --------------------------------------------------------------------------- time affine


def time_affine(W: Any, b: Any, xs: Any, /) -> tuple[Any, Cache]:
    """:func:`~xplayers.functional.affine` applied at every step of `xs` ``(N, T, D)``.

    Returns
    -------
    (out, cache) : ``(N, T, M)`` and ``(W, xs as (N*T, D), (N, T))``
    """
    xp = namespace(xs)
    n, t, d = (int(s) for s in xs.shape)
    rx = xp.reshape(xs, (n * t, d))
    out = affine(rx, W, b)
    return xp.reshape(out, (n, t, int(W.shape[1]))), (W, rx, (n, t))


def time_affine_backward(cache: Cache, dout: Any, /) -> tuple[Any, tuple[Any, Any]]:
    """Gradients of :func:`time_affine`: ``(dxs, (dW, db))``."""
    W, rx, (n, t) = cache
    xp = namespace(dout)
    d2 = xp.reshape(dout, (n * t, int(dout.shape[2])))
    dx, dW, db = affine_backward(d2, rx, W)
    return xp.reshape(dx, (n, t, int(rx.shape[1]))), (dW, db)


# --------------------------------------------------------------------------- word2vec


def embedding_dot(W: Any, h: Any, idx: Any, /) -> tuple[Any, Cache]:
    r"""Dot products of rows of `W` with rows of `h`: ``out[n, ...] = W[idx[n, ...]] . h[n]``.

    The book's ``EmbeddingDot`` (chapter 4), for ids of any shape ``(N, ...)``:
    every id of row ``n`` is scored against ``h[n]``.

    Parameters
    ----------
    W : array, shape (V, H)
    h : array, shape (N, H)
    idx : integer array, shape (N, ...)

    Returns
    -------
    (out, cache) : scores of shape ``idx.shape``, and what the backward needs

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers.sequence import embedding_dot
    >>> W = xp.reshape(xp.arange(6.0), (3, 2))
    >>> embedding_dot(W, xp.asarray([[1.0, 1.0]]), xp.asarray([[2, 0]]))[0]
    Array([[9., 1.]], dtype=array_api_strict.float64)
    """
    xp = namespace(W)
    rows = embedding(W, idx)
    hb = _rows_for(h, idx, xp)
    return xp.sum(rows * hb, axis=-1), (W, hb, idx, rows)


def _rows_for(h: Any, idx: Any, xp: ModuleType) -> Any:
    """`h` ``(N, H)`` reshaped to broadcast against the rows of `idx` ``(N, ...)``."""
    return xp.reshape(h, (int(h.shape[0]), *([1] * (idx.ndim - 1)), int(h.shape[1])))


def embedding_dot_backward(cache: Cache, dout: Any, /) -> tuple[Any, Any]:
    r"""Gradients of :func:`embedding_dot`: ``(dh, dW)``.

    .. math::
        dh_n = \textstyle\sum_k dout_{nk} W_{idx_{nk}}, \qquad
        dW_v = \textstyle\sum_{(n, k):\, idx_{nk} = v} dout_{nk}\, h_n

    ``dW`` is one :func:`scatter_add` of all the ids.
    """
    W, hb, idx, rows = cache
    xp = namespace(dout)
    d = xp.expand_dims(dout, axis=-1)
    n, width = int(hb.shape[0]), int(hb.shape[-1])
    dh = xp.sum(xp.reshape(d * rows, (n, -1, width)), axis=1)
    dW = embedding_backward(d * hb, idx, int(W.shape[0]))
    return dh, dW


def negative_sampling_loss(W: Any, h: Any, target: Any, negatives: Any, /) -> tuple[Any, Cache]:
    r"""The book's negative-sampling loss: one positive and ``S`` negative words per target.

    Scores :math:`s = W_{w} \cdot h_n` for the target word (label 1) and
    each of its negative samples (label 0), and

    .. math::
        L = \frac1N \sum_{n, \ldots} \Big(\log(1 + e^{-s_{\text{target}}})
            + \sum_{k=1}^{S} \log(1 + e^{s_k})\Big),

    the sum over the ``S + 1`` words of the mean binary cross-entropy over
    the batch (the book's ``S + 1`` ``SigmoidWithLoss`` layers), computed
    from the scores (no ``1e-7`` guard). With targets of shape ``(N, C)``
    (skip-gram's ``C`` context words) it is the sum of the ``C`` losses.

    Parameters
    ----------
    W : array, shape (V, H)
        The output-side word vectors.
    h : array, shape (N, H)
    target : integer array, shape (N,) or (N, C)
    negatives : integer array, shape ``target.shape + (S,)``

    Returns
    -------
    (loss, cache) : 0-d array in `h`'s dtype, and what the backward needs
    """
    xp = namespace(W)
    ids = xp.concat((xp.expand_dims(target, axis=-1), negatives), axis=-1)
    scores, dot_cache = embedding_dot(W, h, ids)
    width = int(ids.shape[-1])
    label = xp.astype(xp.arange(width, device=device(scores)) == 0, scores.dtype)
    per = label * _softplus(-scores, xp) + (1.0 - label) * _softplus(scores, xp)
    n = max(1, int(h.shape[0]))
    return xp.sum(per) / n, (dot_cache, sigmoid(scores), label, n)


def negative_sampling_loss_backward(cache: Cache, dout: Any = 1.0, /) -> tuple[Any, Any]:
    r"""Gradients of :func:`negative_sampling_loss`: ``(dh, dW)``.

    The scores' gradient is :math:`ds = (y - t)\,dout / N`, ``y`` the sigmoid of the scores.
    """
    dot_cache, y, label, n = cache
    return embedding_dot_backward(dot_cache, (y - label) * (dout / n))
