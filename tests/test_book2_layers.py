"""The volume 2 classes (xplayers.book2): the book's results, conventions and errors.

The references are small NumPy transcriptions of the book's formulas
written here (the book's code is not a test dependency), and
``torch.nn.LSTM`` with the weights permuted into torch's gate order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import book2
from xplayers import sequence as sq
from xplayers.backend import backend_name
from xplayers.book2 import (
    GRU,
    Dropout,
    Embedding,
    TimeAffine,
    TimeBiLSTM,
    TimeDropout,
    TimeEmbedding,
    TimeGRU,
    TimeLSTM,
    TimeRNN,
    TimeSigmoidWithLoss,
    TimeSoftmaxWithLoss,
)
from xplayers.book2._cells import latest
from xplayers.errors import LayerInputError, LayerStateError

N, T, D, H, V = 3, 4, 5, 3, 7
BOOK_NAMES = [
    "MatMul",
    "Affine",
    "Softmax",
    "SoftmaxWithLoss",
    "Sigmoid",
    "SigmoidWithLoss",
    "Dropout",
    "Embedding",
    "RNN",
    "TimeRNN",
    "LSTM",
    "TimeLSTM",
    "GRU",
    "TimeGRU",
    "TimeEmbedding",
    "TimeAffine",
    "TimeSoftmaxWithLoss",
    "TimeDropout",
    "TimeBiLSTM",
    "TimeSigmoidWithLoss",
]


#: common/optimizer.py and common/util.py, also exported by xplayers.book2.
OTHER_BOOK_NAMES = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "clip_grads"]
OTHER_BOOK_NAMES += ["preprocess", "create_co_matrix", "cos_similarity", "most_similar", "ppmi"]
OTHER_BOOK_NAMES += ["create_contexts_target", "convert_one_hot", "to_cpu", "to_gpu"]
OTHER_BOOK_NAMES += ["eval_perplexity", "eval_seq2seq", "analogy", "normalize"]
OTHER_BOOK_NAMES += ["BaseModel", "SimpleRnnlm", "Rnnlm", "BetterRnnlm", "RnnlmGen"]
OTHER_BOOK_NAMES += ["BetterRnnlmGen", "RnnlmTrainer"]
#: ch07/seq2seq.py, ch07/peeky_seq2seq.py, ch08/attention_layer.py, ch08/attention_seq2seq.py.
OTHER_BOOK_NAMES += ["Encoder", "Decoder", "Seq2seq", "PeekyDecoder", "PeekySeq2seq"]
OTHER_BOOK_NAMES += ["WeightSum", "AttentionWeight", "Attention", "TimeAttention"]
OTHER_BOOK_NAMES += ["AttentionEncoder", "AttentionDecoder", "AttentionSeq2seq"]
#: common/trainer.py, ch04/negative_sampling_layer.py and the word2vec models of chapters 3 and 4.
OTHER_BOOK_NAMES += ["Trainer", "EmbeddingDot", "UnigramSampler", "NegativeSamplingLoss"]
OTHER_BOOK_NAMES += ["SimpleCBOW", "SimpleSkipGram", "CBOW", "SkipGram"]
#: common/np.py's np, which the book's time_layers.py passes on through its star import.
OTHER_BOOK_NAMES += ["np"]
#: Not the book's: writes trained weights back into the NumPy arrays a model file built.
OTHER_BOOK_NAMES += ["sync_host"]


def _sig(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# The book's formulas, one step at a time, in NumPy.
def book_lstm(Wx, Wh, b, xs, h, c):
    hs = []
    for t in range(xs.shape[1]):
        A = xs[:, t] @ Wx + h @ Wh + b
        f, g, i, o = np.split(A, 4, axis=1)
        c = _sig(f) * c + np.tanh(g) * _sig(i)
        h = _sig(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), h, c


def book_gru(Wx, Wh, b, xs, h):
    hs = []
    for t in range(xs.shape[1]):
        x = xs[:, t]
        Wxz, Wxr, Wxh = np.split(Wx, 3, axis=1)
        Whz, Whr, Whh = np.split(Wh, 3, axis=1)
        bz, br, bh = np.split(b, 3)
        z = _sig(x @ Wxz + h @ Whz + bz)
        r = _sig(x @ Wxr + h @ Whr + br)
        hh = np.tanh(x @ Wxh + (r * h) @ Whh + bh)
        h = (1 - z) * h + z * hh
        hs.append(h)
    return np.stack(hs, 1), h


def _weights(rng: np.random.Generator, gates: int) -> list[np.ndarray]:
    return [rng.normal(size=s) * 0.5 for s in ((D, gates * H), (H, gates * H), (gates * H,))]


def test_star_import_has_the_books_names():
    namespace: dict[str, Any] = {}
    exec("from xplayers.book2 import *", namespace)
    assert set(BOOK_NAMES) <= set(namespace)
    assert set(book2.__all__) == set(BOOK_NAMES) | set(OTHER_BOOK_NAMES)


@pytest.mark.parametrize("cls", [TimeLSTM, TimeGRU])
def test_stateful_sequence_equals_the_books_formulas(backend, cls):
    rng = np.random.default_rng(1)
    lstm = cls is TimeLSTM
    W = _weights(rng, 4 if lstm else 3)
    layer = cls(*(backend.asarray(w) for w in W), stateful=True)
    h, c = np.zeros((N, H)), np.zeros((N, H))
    for _ in range(2):  # the second call starts from the first one's last state
        xs = rng.normal(size=(N, T, D))
        hs = backend.to_numpy(layer.forward(backend.asarray(xs)))
        want, h, *rest = book_lstm(*W, xs, h, c) if lstm else book_gru(*W, xs, h)
        if lstm:
            c = rest[0]
        np.testing.assert_allclose(hs, want, rtol=1e-10, atol=1e-12)
    layer.reset_state()
    xs = rng.normal(size=(N, T, D))
    want = book_lstm(*W, xs, 0 * h, 0 * h)[0] if lstm else book_gru(*W, xs, 0 * h)[0]
    np.testing.assert_allclose(backend.to_numpy(layer.forward(backend.asarray(xs))), want, 1e-10)


def test_lstm_equals_torch_nn_lstm():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    Wx, Wh, b = _weights(rng, 4)
    xs, dhs = rng.normal(size=(N, T, D)), rng.normal(size=(N, T, H))
    layer = TimeLSTM(Wx, Wh, b)
    hs = layer.forward(xs)
    dxs = layer.backward(dhs)

    order = [2, 0, 1, 3]  # torch's gates i, f, g, o from the book's f, g, i, o

    def to_torch(w: np.ndarray) -> np.ndarray:
        return np.concatenate([np.split(w, 4, axis=-1)[k] for k in order], axis=-1)

    def from_torch(w: np.ndarray) -> np.ndarray:
        parts = np.split(w, 4, axis=-1)
        return np.concatenate([parts[order.index(k)] for k in range(4)], axis=-1)

    net = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(to_torch(Wx).T.copy()))
        net.weight_hh_l0.copy_(torch.from_numpy(to_torch(Wh).T.copy()))
        net.bias_ih_l0.copy_(torch.from_numpy(to_torch(b)))
        net.bias_hh_l0.zero_()
    x = torch.from_numpy(xs).requires_grad_(True)
    out, _ = net(x)
    out.backward(torch.from_numpy(dhs))
    np.testing.assert_allclose(hs, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dxs, x.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads[0], from_torch(net.weight_ih_l0.grad.numpy().T), 1e-10)
    np.testing.assert_allclose(layer.grads[1], from_torch(net.weight_hh_l0.grad.numpy().T), 1e-10)
    np.testing.assert_allclose(layer.grads[2], from_torch(net.bias_ih_l0.grad.numpy()), 1e-10)


def test_gru_equals_torch_autograd_of_the_books_formula():
    """torch.nn.GRU is another function (reset gate after the product), so autograd checks it."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    W = _weights(rng, 3)
    xs, dhs = rng.normal(size=(N, T, D)), rng.normal(size=(N, T, H))
    layer = TimeGRU(*W)
    hs = layer.forward(xs)
    dxs = layer.backward(dhs)
    Wx, Wh, b, x = (torch.from_numpy(a).requires_grad_(True) for a in (*W, xs))
    h = torch.zeros(N, H, dtype=torch.float64)
    outs = []
    for t in range(T):
        ax = x[:, t] @ Wx + b
        z = torch.sigmoid(ax[:, :H] + h @ Wh[:, :H])
        r = torch.sigmoid(ax[:, H : 2 * H] + h @ Wh[:, H : 2 * H])
        hh = torch.tanh(ax[:, 2 * H :] + (r * h) @ Wh[:, 2 * H :])
        h = (1 - z) * h + z * hh
        outs.append(h)
    torch.stack(outs, 1).backward(torch.from_numpy(dhs))
    np.testing.assert_allclose(hs, torch.stack(outs, 1).detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(dxs, x.grad.numpy(), rtol=1e-10, atol=1e-12)
    for got, want in zip(layer.grads, (Wx, Wh, b), strict=True):
        np.testing.assert_allclose(got, want.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_time_softmax_with_loss_ignores_labels_like_the_book(backend):
    rng = np.random.default_rng(4)
    xs = rng.normal(size=(N, T, V))
    ts = rng.integers(0, V, size=(N, T))
    ts[0, 1] = ts[2, 3] = -1
    layer = TimeSoftmaxWithLoss()
    loss = float(backend.to_numpy(layer.forward(backend.asarray(xs), backend.asarray(ts))))
    dx = backend.to_numpy(layer.backward(backend.asarray(np.asarray(2.0))))
    y = np.exp(xs - xs.max(2, keepdims=True))
    y /= y.sum(2, keepdims=True)
    mask = ts != -1
    picked = np.take_along_axis(y, np.where(mask, ts, 0)[..., None], 2)[..., 0]
    assert loss == pytest.approx(-np.sum(np.log(picked) * mask) / mask.sum(), rel=1e-12)
    want = y.copy()
    for n, t in zip(*np.nonzero(mask), strict=True):
        want[n, t, ts[n, t]] -= 1
    want *= 2.0 * mask[..., None] / mask.sum()
    np.testing.assert_allclose(dx, want, rtol=1e-10, atol=1e-15)


def test_bilstm_reads_the_second_direction_backwards(backend):
    rng = np.random.default_rng(5)
    W1, W2 = _weights(rng, 4), _weights(rng, 4)
    xs = rng.normal(size=(N, T, D))
    layer = TimeBiLSTM(*(backend.asarray(w) for w in W1 + W2))
    out = backend.to_numpy(layer.forward(backend.asarray(xs)))
    zero = np.zeros((N, H))
    np.testing.assert_allclose(out[..., :H], book_lstm(*W1, xs, zero, zero)[0], rtol=1e-10)
    back = book_lstm(*W2, xs[:, ::-1], zero, zero)[0][:, ::-1]
    np.testing.assert_allclose(out[..., H:], back, rtol=1e-10)
    dxs = layer.backward(backend.asarray(rng.normal(size=(N, T, 2 * H))))
    assert tuple(dxs.shape) == (N, T, D)
    assert len(layer.grads) == 6


def test_gradients_are_written_into_the_grads_lists(backend):
    rng = np.random.default_rng(6)
    W = [backend.asarray(w) for w in _weights(rng, 1)]
    xs, dhs = (backend.asarray(rng.normal(size=s)) for s in ((N, T, D), (N, T, H)))
    layer = TimeRNN(*W)
    held = list(layer.grads)  # what a model's grads list holds (the book: model.grads += ...)
    layer.forward(xs)
    layer.backward(dhs)
    _, cache, _ = sq.time_rnn(*W, xs)
    _, _, want = sq.time_rnn_backward(cache, dhs)
    for old, new, w in zip(held, layer.grads, want, strict=True):
        np.testing.assert_allclose(backend.to_numpy(new), backend.to_numpy(w), rtol=1e-12)
        if backend.name == "jax" or backend.lazy:  # immutable or lazy: replaced in the list
            assert new is not old
            assert latest(old) is new  # what an optimizer given the held list reads
        else:  # written in place: the held entry has the new values
            assert new is old
            np.testing.assert_allclose(backend.to_numpy(old), backend.to_numpy(w), rtol=1e-12)


def test_time_embedding_backward_is_one_scatter_add(monkeypatch):
    calls: list[tuple[int, ...]] = []
    real = sq.scatter_add

    def counting(values: Any, indices: Any, num_rows: int) -> Any:
        calls.append(tuple(values.shape))
        return real(values, indices, num_rows)

    monkeypatch.setattr(sq, "scatter_add", counting)
    rng = np.random.default_rng(7)
    W = rng.normal(size=(V, D))
    layer = TimeEmbedding(W)
    ids = rng.integers(0, V, size=(N, T))
    out = layer.forward(ids)
    np.testing.assert_array_equal(out, W[ids])
    dout = rng.normal(size=(N, T, D))
    layer.backward(dout)
    assert calls == [(N * T, D)]
    want = np.zeros_like(W)
    np.add.at(want, ids, dout)
    np.testing.assert_allclose(layer.grads[0], want, rtol=1e-12)


# --------------------------------------------------------------------------- host weights


def test_host_weights_move_once_and_ties_survive(backend):
    rng = np.random.default_rng(8)
    embed_W = rng.normal(size=(V, D))
    emb = TimeEmbedding(embed_W)
    affine = TimeAffine(embed_W.T, rng.normal(size=V))  # the book's weight tying
    other = Embedding(embed_W)
    W = emb.params[0]
    assert other.params[0] is W
    assert backend_name(W) == backend.name
    np.testing.assert_array_equal(backend.to_numpy(affine.params[0]), embed_W.T)
    if backend.name == "numpy":
        assert W is embed_W  # nothing to move
    out = affine.forward(emb.forward(rng.integers(0, V, size=(N, T))))
    assert backend_name(out) == backend.name


@pytest.mark.backends("torch")
def test_tied_host_weights_share_memory_on_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    embed_W = rng.normal(size=(V, D))
    with xpl.use_backend("torch"):
        emb = TimeEmbedding(embed_W)
        affine = TimeAffine(embed_W.T, rng.normal(size=V))
    assert isinstance(emb.params[0], torch.Tensor)
    emb.params[0] -= 1.0  # the book's optimizers update in place
    np.testing.assert_array_equal(affine.params[0].numpy(), emb.params[0].numpy().T)


# --------------------------------------------------------------------------- dropout


def test_time_dropout_is_inverted_and_seeded(backend):
    xs = backend.asarray(np.ones((2, 3, 50)))
    a, b = TimeDropout(0.25, seed=3), TimeDropout(0.25, seed=3)
    out = backend.to_numpy(a.forward(xs))
    np.testing.assert_array_equal(out, backend.to_numpy(b.forward(xs)))
    assert set(np.unique(out)) <= {0.0, 1 / 0.75}
    np.testing.assert_array_equal(backend.to_numpy(a.backward(xs)), out)
    a.train_flg = False
    assert a.forward(xs) is xs
    np.testing.assert_array_equal(backend.to_numpy(a.backward(xs)), np.ones((2, 3, 50)))


def test_unseeded_dropout_draws_the_books_masks_from_the_global_generator(backend):
    """The book's ``np.random.rand(*x.shape) > ratio``: ``np.random.seed`` fixes the masks."""
    xs = backend.asarray(np.ones((2, 3, 50), dtype=np.float32))
    state = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(7)  # noqa: NPY002
        time_mask = backend.to_numpy(TimeDropout(0.3).forward(xs))
        mask = backend.to_numpy(Dropout(0.4).forward(xs))
        np.random.seed(7)  # noqa: NPY002
        want_time = (np.random.rand(2, 3, 50) > 0.3).astype(np.float32) / np.float32(0.7)  # noqa: NPY002
        want = (np.random.rand(2, 3, 50) > 0.4).astype(np.float32)  # noqa: NPY002
    finally:
        np.random.set_state(state)  # noqa: NPY002
    np.testing.assert_allclose(time_mask, want_time, rtol=1e-6)
    np.testing.assert_array_equal(mask, want)


def test_dropout_is_the_books_non_inverted_one():
    drop = Dropout(0.5, seed=0)
    out = drop.forward(np.ones(400))
    assert set(np.unique(out)) == {0.0, 1.0}
    np.testing.assert_array_equal(drop.forward(np.ones(3), train_flg=False), [0.5] * 3)
    assert drop.params == []
    assert drop.grads == []


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.array([[0, 7]]), "TimeEmbedding.forward: argument 'xs': expected ids in [0, 7)"),
        (np.array([[0, -1]]), "TimeEmbedding.forward: argument 'xs': expected ids in [0, 7)"),
        (np.array([[0.0, 1.0]]), "expected an integer array of ids"),
        ([[0, 1], [2]], "expected a rectangular array of integer ids; got ragged"),
        (np.zeros((2, 0), np.int64), "at least one time step"),
        (np.array([1, 2]), "expected 2 dimensions"),
    ],
)
def test_bad_token_ids_are_refused(ids, message):
    layer = TimeEmbedding(np.ones((V, D)))
    with pytest.raises(LayerInputError, match=message.replace("[", r"\[").replace(")", r"\)")):
        layer.forward(ids)


def test_labels_may_be_the_ignore_label_but_no_other_negative():
    layer = TimeSoftmaxWithLoss()
    xs = np.zeros((1, 3, V))
    layer.forward(xs, np.array([[0, -1, 6]]))
    with pytest.raises(LayerInputError, match=r"argument 'ts'.*or -1 \(ignore_label\); got id -2"):
        layer.forward(xs, np.array([[0, -2, -1]]))
    with pytest.raises(LayerInputError, match=r"argument 'ts'.*got id 7"):
        layer.forward(xs, np.array([[0, 7, -1]]))
    with pytest.raises(
        LayerInputError, match=r"argument 'ts': expected labels of shape \(N, T\) = \(1, 3\)"
    ):
        layer.forward(xs, np.array([[0, 1]]))


def test_state_of_the_wrong_shape_is_refused():
    rng = np.random.default_rng(10)
    layer = TimeLSTM(*_weights(rng, 4), stateful=True)
    with pytest.raises(LayerInputError, match=r"TimeLSTM.set_state: argument 'h': expected shape"):
        layer.set_state(np.zeros((N, H + 1)))
    layer.set_state(np.zeros((N + 1, H)))
    with pytest.raises(LayerInputError, match=rf"TimeLSTM.set_state: argument 'h'.*\({N}, {H}\)"):
        layer.forward(np.zeros((N, T, D)))


def test_time_layers_refuse_no_time_steps_and_wrong_sizes():
    rng = np.random.default_rng(11)
    layer = TimeGRU(*_weights(rng, 3))
    with pytest.raises(LayerInputError, match=r"TimeGRU.forward: argument 'xs': expected at least"):
        layer.forward(np.zeros((N, 0, D)))
    with pytest.raises(LayerInputError, match=rf"expected shape \(N, T, {D}\)"):
        layer.forward(np.zeros((N, T, D + 1)))
    with pytest.raises(LayerInputError, match=r"TimeGRU: argument 'Wh'"):
        TimeGRU(np.zeros((D, 3 * H)), np.zeros((H, 4 * H)), np.zeros(3 * H))
    with pytest.raises(LayerInputError, match=r"TimeSigmoidWithLoss.forward: argument 'ts'"):
        TimeSigmoidWithLoss().forward(np.zeros((2, 3)), np.zeros((2, 2)))


def test_backward_before_forward_says_so():
    with pytest.raises(LayerStateError, match=r"GRU.backward: called before GRU.forward"):
        GRU(*_weights(np.random.default_rng(0), 3)).backward(np.zeros((N, H)))


def test_labels_may_be_a_python_list_but_not_a_ragged_one():
    layer = book2.SoftmaxWithLoss()
    assert float(layer.forward(np.zeros((2, 3)), [0, 2])) == pytest.approx(np.log(3))
    with pytest.raises(LayerInputError, match=r"SoftmaxWithLoss.forward: argument 't'.*ragged"):
        layer.forward(np.zeros((2, 3)), [[0], [1, 2]])


def test_token_ids_are_checked_with_one_read_of_their_range(backend, monkeypatch):
    """``as_tokens`` brings the smallest and largest id to the host together, once."""
    from xplayers.book2 import _common

    reads: list[tuple[int, ...]] = []
    real = _common.to_numpy

    def counting(x: Any) -> Any:
        reads.append(tuple(x.shape))
        return real(x)

    monkeypatch.setattr(_common, "to_numpy", counting)
    W = backend.asarray(np.zeros((5, 2)))
    layer = TimeEmbedding(W)
    layer.forward(backend.asarray(np.array([[0, 4], [2, 1]])))
    if backend.name == "dask":  # lazy ids are not read (nor checked)
        assert reads == []
        return
    assert reads == [(2,)]
    with pytest.raises(LayerInputError, match="id 5"):
        layer.forward(backend.asarray(np.array([[0, 5]])))
