"""Volume 2's attention layers and seq2seq models (xplayers.book2.attention, .seq2seq).

Gradients are checked against central differences of the same functions on
float64 NumPy copies (the loss ``sum(outputs * R)`` for fixed random ``R``),
on every backend; the attention also against torch's automatic
differentiation of the book's formulas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.book2 import Adam, Trainer
from xplayers.book2 import attention as at
from xplayers.book2 import seq2seq as seq2seq_module
from xplayers.book2.seq2seq import (
    AttentionSeq2seq,
    PeekySeq2seq,
    Seq2seq,
)
from xplayers.errors import LayerInputError, LayerStateError, ModelFileError
from xplayers.gradcheck import numerical_gradient, relative_error

TOL = 1e-6
N, T, TD, H = 2, 3, 2, 3
MODELS = [Seq2seq, PeekySeq2seq, AttentionSeq2seq]


def _r(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape)


def _dot(a: Any, b: np.ndarray) -> float:
    return float(np.sum(np.asarray(a) * b))


# --------------------------------------------------------------------------- attention math

CASES: dict[str, tuple[dict[str, tuple[int, ...]], Any, Any]] = {
    # name: (input shapes, forward -> outputs tuple, backward(cache, *douts) -> grads tuple)
    "weight_sum": (
        {"hs": (N, T, H), "a": (N, T)},
        lambda a: at.weight_sum(a["hs"], a["a"]),
        lambda c, d: at.weight_sum_backward(c, d[0]),
    ),
    "attention_weight": (
        {"hs": (N, T, H), "h": (N, H)},
        lambda a: at.attention_weight(a["hs"], a["h"]),
        lambda c, d: at.attention_weight_backward(c, d[0]),
    ),
    "attention": (
        {"hs": (N, T, H), "h": (N, H)},
        lambda a: at.attention(a["hs"], a["h"])[::2],
        lambda c, d: at.attention_backward(c, d[0]),
    ),
    "time_attention": (
        {"hs_enc": (N, T, H), "hs_dec": (N, TD, H)},
        lambda a: at.time_attention(a["hs_enc"], a["hs_dec"])[::2],
        lambda c, d: at.time_attention_backward(c, d[0]),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_attention_backward_matches_central_differences(backend, name):
    shapes, forward, backward = CASES[name]
    rng = np.random.default_rng(0)
    arrays = {k: _r(rng, *s) for k, s in shapes.items()}
    out, _ = forward(arrays)
    R = _r(rng, *out.shape)
    got = backward(
        forward({k: backend.asarray(v) for k, v in arrays.items()})[1], (backend.asarray(R),)
    )
    for key, g in zip(shapes, got, strict=True):

        def f(z: np.ndarray, key: str = key) -> float:
            return _dot(forward({**arrays, key: z})[0], R)

        numeric = numerical_gradient(f, arrays[key].copy())
        value = backend.to_numpy(g)
        assert value.dtype == np.float64, key
        assert relative_error(value, numeric) < TOL, key


def _book_attention(hs: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The book's AttentionWeight and WeightSum forward, step by step, in NumPy."""
    s = np.sum(hs * h[:, None, :], axis=2)
    e = np.exp(s - s.max(axis=1, keepdims=True))
    a = e / e.sum(axis=1, keepdims=True)
    return np.sum(hs * a[:, :, None], axis=1), a


def test_time_attention_is_the_books_loop_over_steps(backend):
    rng = np.random.default_rng(1)
    hs_enc, hs_dec, dout = _r(rng, N, T, H), _r(rng, N, TD, H), _r(rng, N, TD, H)
    layer = at.TimeAttention()
    c = backend.to_numpy(layer.forward(backend.asarray(hs_enc), backend.asarray(hs_dec)))
    denc, ddec = (backend.to_numpy(g) for g in layer.backward(backend.asarray(dout)))
    want_enc = np.zeros_like(hs_enc)
    for t in range(TD):
        ct, a = _book_attention(hs_enc, hs_dec[:, t])
        np.testing.assert_allclose(c[:, t], ct, rtol=1e-12)
        np.testing.assert_allclose(backend.to_numpy(layer.attention_weights[t]), a, rtol=1e-12)
        step = at.Attention()
        step.forward(backend.asarray(hs_enc), backend.asarray(hs_dec[:, t]))
        dhs, dh = (backend.to_numpy(g) for g in step.backward(backend.asarray(dout[:, t])))
        want_enc += dhs
        np.testing.assert_allclose(ddec[:, t], dh, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(denc, want_enc, rtol=1e-10, atol=1e-12)


def test_time_attention_gradient_takes_the_books_in_place_add(backend):
    """``ch08/attention_seq2seq.py`` adds into it: ``denc_hs[:, -1] += dh`` (JAX: a host copy)."""
    rng = np.random.default_rng(2)
    hs_enc, hs_dec, dout, dh = _r(rng, N, T, H), _r(rng, N, TD, H), _r(rng, N, TD, H), _r(rng, N, H)
    layer = at.TimeAttention()
    layer.forward(backend.asarray(hs_enc), backend.asarray(hs_dec))
    denc, _ = layer.backward(backend.asarray(dout))
    want = backend.to_numpy(denc).copy()
    want[:, -1] += dh
    denc[:, -1, :] += backend.asarray(dh)  # every axis indexed, as the array API asks
    np.testing.assert_allclose(backend.to_numpy(denc), want, rtol=1e-12)


def test_attention_equals_torch_autograd_of_the_books_formulas():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    hs_enc, hs_dec, dout = _r(rng, N, T, H), _r(rng, N, TD, H), _r(rng, N, TD, H)
    layer = at.TimeAttention()
    c = layer.forward(hs_enc, hs_dec)
    denc, ddec = layer.backward(dout)
    e, d = (torch.from_numpy(a).requires_grad_(True) for a in (hs_enc, hs_dec))
    outs = []
    for t in range(TD):  # the book's loop: AttentionWeight, then WeightSum
        a = torch.softmax(torch.sum(e * d[:, t].reshape(N, 1, H), dim=2), dim=1)
        outs.append(torch.sum(e * a.reshape(N, T, 1), dim=1))
    out = torch.stack(outs, 1)
    out.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(c, out.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(denc, e.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ddec, d.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_attention_layers_refuse_bad_shapes_naming_themselves():
    hs = np.zeros((N, T, H))
    with pytest.raises(LayerInputError, match=r"TimeAttention.forward: argument 'hs_enc'.*T >= 1"):
        at.TimeAttention().forward(np.zeros((N, 0, H)), hs)
    with pytest.raises(LayerInputError, match=r"TimeAttention.forward: argument 'hs_dec'"):
        at.TimeAttention().forward(hs, np.zeros((N + 1, TD, H)))
    with pytest.raises(LayerInputError, match=r"AttentionWeight.forward: argument 'h'"):
        at.Attention().forward(hs, np.zeros((N, H + 1)))
    with pytest.raises(LayerInputError, match=r"WeightSum.forward: argument 'a'"):
        at.WeightSum().forward(hs, np.zeros((N, T + 1)))
    with pytest.raises(LayerStateError, match=r"TimeAttention\.backward: called before"):
        at.TimeAttention().backward(hs)


# --------------------------------------------------------------------------- models

V, D, HM, TQ, TA = 5, 2, 3, 3, 3


def _data(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(N, TQ)), rng.integers(0, V, size=(N, TA))


def _model(cls: type, seed: int = 4, dtype: str = "float64") -> Any:
    return cls(V, D, HM, rng=np.random.default_rng(seed), dtype=dtype)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_model_gradients_match_central_differences(backend, cls):
    xs, ts = _data()
    model = _model(cls)
    model.forward(xs, ts)
    model.backward()
    grads = [backend.to_numpy(g) for g in model.grads]
    with xpl.use_backend("numpy"):
        host = _model(cls)
    assert len(host.params) == len(grads) == 3 * 2 + 2 + 2  # embed + LSTM, embed + LSTM + affine
    for p, g in zip(host.params, grads, strict=True):
        numeric = numerical_gradient(lambda _: float(host.forward(xs, ts)), p)
        assert g.dtype == np.float64
        assert relative_error(g, numeric) < TOL


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_generation_is_greedy_deterministic_and_batched(backend, cls):
    xs, _ = _data()
    model = _model(cls, dtype="float32")
    twin = _model(cls, dtype="float32")
    batch = model.generate_batch(xs, 1, 4)
    assert batch.shape == (N, 4)
    assert batch.dtype.kind == "i"
    np.testing.assert_array_equal(batch, twin.generate_batch(xs, 1, 4))
    for i in range(N):
        assert model.generate(xs[[i]], 1, 4) == batch[i].tolist()
    # the first id is the argmax of the decoder's scores after the start id
    memory = model.encoder.forward(xs)
    first = model.decoder.forward(np.full((N, 1), 1), memory)
    np.testing.assert_array_equal(batch[:, 0], np.argmax(backend.to_numpy(first)[:, 0], axis=-1))


def test_generate_answers_one_question_like_the_book():
    xs, _ = _data()
    model = _model(Seq2seq)
    with pytest.raises(LayerInputError, match=r"Seq2seq.generate: argument 'xs'.*generate_batch"):
        model.generate(xs, 0, 3)
    with pytest.raises(LayerInputError, match=r"Seq2seq.generate: argument 'xs'"):
        model.generate_batch(np.zeros((1, 0), dtype=int), 0, 3)
    with pytest.raises(LayerInputError, match=r"Decoder.generate: argument 'start_id'.*\[0, 5\)"):
        model.generate(xs[:1], V, 3)
    with pytest.raises(LayerInputError, match=r"argument 'sample_size'"):
        model.generate(xs[:1], 0, -1)
    assert model.generate(xs[:1], 0, 0) == []


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_optimizer_updates_reach_the_layers_on_every_backend(backend, cls):
    """``update(model.params, model.grads)`` trains, where arrays are immutable (JAX) too."""
    xs, ts = _data()
    model = _model(cls, dtype="float32")
    before = [backend.to_numpy(p).copy() for p in model.encoder.embed.params]
    optimizer = Adam(lr=0.05)
    losses = []
    # lazy arrays (Dask) recompute every earlier step at each read of the loss: fewer steps,
    # and only the first and last losses are read
    for _ in range(3 if backend.lazy else 15):
        losses.append(model.forward(xs, ts))
        model.backward()
        optimizer.update(model.params, model.grads)
    assert float(losses[-1]) < (0.95 if backend.lazy else 0.7) * float(losses[0])
    assert not np.array_equal(backend.to_numpy(model.encoder.embed.params[0]), before[0])


def test_params_item_assignment_reaches_the_owning_layer():
    model = _model(AttentionSeq2seq)
    params = model.params
    new = np.zeros_like(params[3])
    params[3] = new
    assert model.decoder.embed.params[0] is not new
    assert model.params[3] is new
    with pytest.raises(TypeError, match="one index at a time"):
        params[0:2] = [new, new]


def test_models_have_the_books_structure():
    model = AttentionSeq2seq(V, D, HM)
    assert [type(p).__name__ for p in (model.encoder, model.decoder, model.softmax)] == [
        "AttentionEncoder",
        "AttentionDecoder",
        "TimeSoftmaxWithLoss",
    ]
    shapes = [tuple(p.shape) for p in model.params]
    assert shapes == [
        (V, D), (D, 4 * HM), (HM, 4 * HM), (4 * HM,),
        (V, D), (D, 4 * HM), (HM, 4 * HM), (4 * HM,), (2 * HM, V), (V,),
    ]  # fmt: skip
    peeky = [tuple(p.shape) for p in PeekySeq2seq(V, D, HM).decoder.params]
    assert peeky[1] == (HM + D, 4 * HM)
    assert peeky[4] == (2 * HM, V)
    assert all(p.dtype == np.float32 for p in model.params)


def test_weights_are_drawn_like_the_books_from_the_global_generator():
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(7)  # noqa: NPY002
    model = Seq2seq(V, D, HM)
    np.random.seed(7)  # noqa: NPY002
    embed = (np.random.randn(V, D) / 100).astype("f")  # noqa: NPY002
    wx = (np.random.randn(D, 4 * HM) / np.sqrt(D)).astype("f")  # noqa: NPY002
    np.random.set_state(state)  # noqa: NPY002
    np.testing.assert_array_equal(model.encoder.embed.params[0], embed)
    np.testing.assert_array_equal(model.encoder.lstm.params[0], wx)


def test_save_and_load_params_round_trip_without_pickle(tmp_path):
    model, other = _model(PeekySeq2seq, 1), _model(PeekySeq2seq, 2)
    path = model.save_params(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as archive:
        assert len(archive.files) == len(model.params) + 1
    other.load_params(path)
    for a, b in zip(model.params, other.params, strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_params_refuses_another_model_before_changing_anything(tmp_path):
    path = _model(Seq2seq).save_params(tmp_path / "s.npz")
    target = _model(PeekySeq2seq, 5)
    before = [p.copy() for p in target.params]
    with pytest.raises(ModelFileError, match="holds the parameters of 'Seq2seq'"):
        target.load_params(path)
    wider = Seq2seq(V, D, HM + 1, dtype="float64")
    with pytest.raises(ModelFileError, match="parameter 1"):
        wider.load_params(path)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a readable parameter file"):
        target.load_params(tmp_path / "bad.npz")
    for a, b in zip(before, target.params, strict=True):
        np.testing.assert_array_equal(a, b)


def test_save_params_defaults_to_the_class_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _model(AttentionSeq2seq)
    assert model.save_params().name == "AttentionSeq2seq.npz"
    model.load_params()


@pytest.mark.parametrize(
    ("xs", "ts", "message"),
    [
        (np.zeros((N, 0), dtype=int), None, r"argument 'xs'.*T >= 1"),
        ([[1, 2], [3]], None, r"argument 'xs'.*ragged"),
        (np.full((N, TQ), V), None, r"argument 'xs'.*ids in \[0, 5\)"),
        (np.full((N, TQ), -1), None, r"argument 'xs'.*id -1"),
        (None, np.zeros((N, 1), dtype=int), r"argument 'ts'.*T >= 2"),
        (None, np.zeros((N + 1, TA), dtype=int), r"argument 'ts'.*2 rows"),
        (np.zeros((N, TQ)), None, r"argument 'xs'.*integer"),
    ],
)
def test_bad_batches_are_refused_naming_the_model(xs, ts, message):
    good_xs, good_ts = _data()
    model = _model(AttentionSeq2seq)
    with pytest.raises(LayerInputError, match=r"AttentionSeq2seq.forward: " + message):
        model.forward(good_xs if xs is None else xs, good_ts if ts is None else ts)


def test_bad_sizes_are_refused():
    with pytest.raises(LayerInputError, match=r"Encoder: argument 'hidden_size'"):
        Seq2seq(V, D, 0)
    with pytest.raises(LayerInputError, match=r"dtype"):
        Seq2seq(V, D, HM, dtype="int32")


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_generation_reads_the_ids_back_once(monkeypatch, cls):
    """The argmax of each step stays on the device; one transfer after the last step."""
    xs, _ = _data()
    model = _model(cls)
    calls = []
    real = seq2seq_module.to_numpy

    def counting(x):
        calls.append(tuple(x.shape))
        return real(x)

    monkeypatch.setattr(seq2seq_module, "to_numpy", counting)
    model.generate_batch(xs, 0, 6)
    assert calls == [(N, 6)]


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_the_books_trainer_trains_the_models(cls):
    """``Trainer.fit(x, t, max_grad=5.0)``, as chapters 7 and 8 call it."""
    rng = np.random.default_rng(6)
    x = rng.integers(0, V, size=(64, TQ))
    t = np.concatenate((np.zeros((64, 1), dtype=x.dtype), x[:, :2]), axis=1)  # echo the question
    model = _model(cls, dtype="float32")
    before = float(model.forward(x, t))
    trainer = Trainer(model, Adam(lr=0.02), seed=0)
    trainer.fit(x, t, max_epoch=10, batch_size=16, max_grad=5.0, eval_interval=None)
    assert float(model.forward(x, t)) < 0.9 * before
