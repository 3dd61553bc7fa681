"""Volume 2's language models, their trainer, their files and corpora (xplayers.book2.rnnlm).

Gradients are checked against central differences of the same model built
in float64 NumPy; tied weights against the sum of both uses; the trainer's
batches against the book's element-by-element ones.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.book2 import (
    SGD,
    BetterRnnlm,
    BetterRnnlmGen,
    Rnnlm,
    RnnlmGen,
    RnnlmTrainer,
    SimpleRnnlm,
    eval_perplexity,
)
from xplayers.book2._training import apply_gradients
from xplayers.book2.datasets import grammar, ptb
from xplayers.book2.rnnlm import load_model
from xplayers.errors import DatasetError, LayerInputError, ModelFileError
from xplayers.gradcheck import numerical_gradient, relative_error

V, D, N, T = 7, 3, 2, 3
MODELS = {
    "SimpleRnnlm": lambda **kw: SimpleRnnlm(V, D, D, **kw),
    "Rnnlm": lambda **kw: Rnnlm(V, D, D, **kw),
    "BetterRnnlm": lambda **kw: BetterRnnlm(V, D, D, 0.5, **kw),
}


def _ids(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, size=(N, T)), rng.integers(0, V, size=(N, T))


def _loss(model: Any, xs: Any, ts: Any) -> Any:
    """The loss from a fresh state, with the same dropout masks at every call."""
    model.reset_state()
    for k, layer in enumerate(getattr(model, "drop_layers", [])):
        layer.rng = np.random.default_rng(100 + k)
    return model.forward(xs, ts)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", list(MODELS))
def test_model_gradients_match_central_differences(backend, name):
    xs, ts = _ids(0)
    model = MODELS[name](seed=1, dtype="float64")
    _loss(model, xs, ts)
    model.backward()
    kept = model.sharing.unique(model.params)
    grads = model.sharing.summed(model.sharing.gradients(model.grads))
    with xpl.use_backend("numpy"):
        host = MODELS[name](seed=1, dtype="float64")
        host_kept = host.sharing.unique(host.params)
        assert len(host_kept) == len(kept)
        for k, p in enumerate(host_kept):
            numeric = numerical_gradient(lambda _: float(_loss(host, xs, ts)), p)
            got = backend.to_numpy(grads[k])
            assert got.dtype == np.float64
            assert relative_error(got, numeric) < 1e-6, (name, k)


def test_tied_gradient_is_the_sum_of_both_uses_once(backend):
    xs, ts = _ids(2)
    model = BetterRnnlm(V, D, D, 0.0, seed=3, dtype="float64")
    embed, affine = model.layers[0], model.layers[-1]
    assert model.sharing.merged[0] == [(7, True)]  # the output W repeats embed_W, transposed
    _loss(model, xs, ts)
    model.backward()
    d_embed = backend.to_numpy(embed.grads[0]).copy()
    d_affine = backend.to_numpy(affine.grads[0]).copy()
    params = model.sharing.unique(model.params)
    grads = model.sharing.summed(model.sharing.gradients(model.grads))
    assert len(params) == len(model.params) - 1
    want = d_embed + d_affine.T
    np.testing.assert_allclose(backend.to_numpy(grads[0]), want, rtol=1e-12, atol=1e-14)
    # and the sum is the gradient of the loss as a function of the one shared matrix
    with xpl.use_backend("numpy"):
        host = BetterRnnlm(V, D, D, 0.0, seed=3, dtype="float64")
        numeric = numerical_gradient(lambda _: float(_loss(host, xs, ts)), host.params[0])
    assert relative_error(backend.to_numpy(grads[0]), numeric) < 1e-6
    # the layers' own gradients are left as they were
    np.testing.assert_array_equal(backend.to_numpy(embed.grads[0]), d_embed)
    np.testing.assert_array_equal(backend.to_numpy(affine.grads[0]), d_affine)


def test_tied_weights_stay_tied_through_training_steps(backend):
    if backend.name == "dask":
        pytest.skip("a Dask step computes the whole model on the host: minutes for this loop")
    corpus, _, _ = grammar.load_data("valid", size=200)
    corpus = corpus % V
    model = BetterRnnlm(V, D, D, 0.5, seed=4, dtype="float64")
    trainer = RnnlmTrainer(model, SGD(lr=1.0))
    before = backend.to_numpy(model.layers[0].params[0]).copy()
    trainer.fit(corpus[:-1], corpus[1:], 1, 2, 5, max_grad=0.25, eval_interval=None)
    embed_W = backend.to_numpy(model.layers[0].params[0])
    affine_W = backend.to_numpy(model.layers[-1].params[0])
    assert not np.allclose(embed_W, before)
    np.testing.assert_array_equal(affine_W, embed_W.T)
    np.testing.assert_array_equal(backend.to_numpy(model.params[7]), embed_W.T)
    np.testing.assert_array_equal(backend.to_numpy(model.params[0]), embed_W)


def test_one_training_step_equals_the_books_update():
    """SGD on the reduced lists: the tied matrix moves by lr * (dEmbed + dAffine.T), once."""
    xs, ts = _ids(5)
    model = BetterRnnlm(V, D, D, 0.0, seed=6, dtype="float64")
    W0 = model.params[0].copy()
    _loss(model, xs, ts)
    model.backward()
    g = model.layers[0].grads[0] + model.layers[-1].grads[0].T
    trainer = RnnlmTrainer(model, SGD(lr=0.5))
    assert trainer.sharing is model.sharing
    apply_gradients(model, trainer.optimizer, model.sharing)
    np.testing.assert_allclose(model.params[0], W0 - 0.5 * g, rtol=1e-12)
    np.testing.assert_allclose(model.layers[-1].params[0], (W0 - 0.5 * g).T, rtol=1e-12)


# --------------------------------------------------------------------------- generation


def test_generation_is_deterministic_for_a_seed(backend):
    # On Dask each word's state is a graph over every earlier word, read back per word: the
    # cost grows with the square of the length, so fewer words there, still compared word for
    # word with NumPy's (the seeds' sequences differ from the third word on)
    size = 8 if backend.lazy else 20
    model = RnnlmGen(V, D, D, seed=7, dtype="float64")
    first = model.generate(1, skip_ids=[0], sample_size=size, seed=11)
    model.reset_state()
    again = model.generate(1, skip_ids=[0], sample_size=size, seed=11)
    model.reset_state()
    other = model.generate(1, skip_ids=[0], sample_size=size, seed=12)
    assert first == again != other
    assert len(first) == size
    assert first[0] == 1
    assert 0 not in first
    with xpl.use_backend("numpy"):
        host = RnnlmGen(V, D, D, seed=7, dtype="float64")
        assert host.generate(1, skip_ids=[0], sample_size=size, seed=11) == first


def test_generation_samples_the_models_softmax():
    """The book's loop: softmax of the scores, one draw per word."""
    model = BetterRnnlmGen(V, D, D, seed=8, dtype="float64")
    got = model.generate(2, sample_size=6, seed=3)
    model.reset_state()
    rs = np.random.RandomState(3)
    want, x = [2], 2
    while len(want) < 6:
        s = np.asarray(model.predict(np.array(x).reshape(1, 1))).ravel()
        p = np.exp(s - s.max())
        x = int(rs.choice(V, size=1, p=p / p.sum())[0])
        want.append(x)
    assert got == want


def test_generation_refuses_bad_arguments():
    model = RnnlmGen(V, D, D, seed=0)
    with pytest.raises(LayerInputError, match=r"start_id.*\[0, 7\)"):
        model.generate(7)
    with pytest.raises(LayerInputError, match="skip_ids"):
        model.generate(0, skip_ids=range(V))
    with pytest.raises(LayerInputError, match="sample_size"):
        model.generate(0, sample_size=0)


def test_state_round_trips():
    model = BetterRnnlmGen(V, D, D, seed=0)
    model.predict(np.array([[1, 2]]))
    state = model.get_state()
    model.reset_state()
    model.set_state(state)
    assert all(
        np.array_equal(a[0], layer.h) for a, layer in zip(state, model.lstm_layers, strict=True)
    )


# --------------------------------------------------------------------------- trainer


def _book_get_batch(x, t, batch_size, time_size, time_idx):
    """The book's get_batch: element by element."""
    batch_x = np.empty((batch_size, time_size), dtype="i")
    batch_t = np.empty((batch_size, time_size), dtype="i")
    jump = len(x) // batch_size
    offsets = [i * jump for i in range(batch_size)]
    for time in range(time_size):
        for i, offset in enumerate(offsets):
            batch_x[i, time] = x[(offset + time_idx) % len(x)]
            batch_t[i, time] = t[(offset + time_idx) % len(x)]
        time_idx += 1
    return batch_x, batch_t, time_idx


def test_get_batch_gives_the_books_batches(backend):
    corpus = np.arange(103) % 17
    trainer = RnnlmTrainer(Rnnlm(17, 2, 2, seed=0), SGD())
    x, t = backend.asarray(corpus[:-1]), backend.asarray(corpus[1:])
    time_idx = 0
    for _ in range(4):  # past the end: the book wraps around
        bx, bt = trainer.get_batch(x, t, 4, 9)
        want_x, want_t, time_idx = _book_get_batch(corpus[:-1], corpus[1:], 4, 9, time_idx)
        np.testing.assert_array_equal(backend.to_numpy(bx), want_x)
        np.testing.assert_array_equal(backend.to_numpy(bt), want_t)
        assert trainer.time_idx == time_idx


def test_trainer_lowers_perplexity_on_the_grammar_corpus(backend, capsys):
    if backend.name == "dask":
        pytest.skip("a Dask step computes the whole model on the host: minutes for this loop")
    train, word_to_id, _ = grammar.load_data("train", size=2000)
    valid, _, _ = grammar.load_data("valid", size=400)
    vocab = len(word_to_id)
    model = Rnnlm(vocab, 16, 16, seed=0)
    trainer = RnnlmTrainer(model, SGD(lr=20.0))
    model.reset_state()
    before = eval_perplexity(model, valid, 5, 20)
    model.reset_state()
    trainer.fit(train[:-1], train[1:], 4, 10, 20, max_grad=0.25, eval_interval=5)
    model.reset_state()
    after = eval_perplexity(model, valid, 5, 20)
    out = capsys.readouterr().out
    assert re.search(
        r"^\| epoch 1 \|  iter 1 / 10 \| time \d+\[s\] \| perplexity \d+\.\d\d$", out, re.M
    )
    assert trainer.current_epoch == 4
    assert len(trainer.ppl_list) == 8
    assert before > vocab * 0.8
    assert after < vocab / 5
    assert trainer.ppl_list[-1] < trainer.ppl_list[0] / 4


def test_fit_refuses_a_corpus_shorter_than_a_batch():
    trainer = RnnlmTrainer(Rnnlm(5, 2, 2, seed=0), SGD())
    with pytest.raises(LayerInputError, match=r"RnnlmTrainer.fit: argument 'xs'.*= 70 ids"):
        trainer.fit(np.zeros(50, int), np.zeros(50, int), 1, 2, 35)
    with pytest.raises(LayerInputError, match="argument 'ts'"):
        trainer.fit(np.zeros(80, int), np.zeros(79, int), 1, 2, 35)


# --------------------------------------------------------------------------- files


def test_save_and_load_round_trip_without_pickle(backend, tmp_path, monkeypatch):
    def no_pickle(*_: Any, **__: Any) -> None:
        raise AssertionError("pickle used")

    if backend.name != "dask":  # Dask pickles its own graphs to name them
        monkeypatch.setattr(pickle, "load", no_pickle)
        monkeypatch.setattr(pickle, "loads", no_pickle)
    xs, ts = _ids(9)
    model = BetterRnnlm(V, D, D, seed=1)
    path = model.save_params(tmp_path / "m.npz", metadata={"vocab": ["a"]})
    with zipfile.ZipFile(path) as zf:  # the tied matrix is stored once
        assert len(zf.namelist()) == 1 + len(model.params) - 1
    other = BetterRnnlm(V, D, D, seed=2)
    assert other.load_params(path) == {"vocab": ["a"]}
    for a, b in zip(model.params, other.params, strict=True):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    np.testing.assert_array_equal(
        backend.to_numpy(other.layers[-1].params[0]), backend.to_numpy(other.params[0]).T
    )
    assert float(_loss(model, xs, ts)) == float(_loss(other, xs, ts))


def test_book_file_names_mean_npz(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = Rnnlm(V, D, D, seed=0)
    assert str(model.save_params()) == "Rnnlm.npz"
    assert str(model.save_params("ch06.pkl")) == "ch06.npz"
    assert not (tmp_path / "ch06.pkl").exists()
    model.load_params("ch06.pkl")  # reads ch06.npz
    built, _ = load_model("Rnnlm.npz", generator=True)
    assert type(built) is RnnlmGen


def test_a_pickle_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "Rnnlm.npz"
    path.write_bytes(pickle.dumps([np.zeros(3)]))
    monkeypatch.setattr(pickle, "loads", lambda *_: pytest.fail("unpickled"))
    with pytest.raises(ModelFileError, match=r"not a \.npz archive"):
        Rnnlm(V, D, D).load_params(path)


def test_load_of_other_shapes_changes_nothing(tmp_path):
    Rnnlm(V + 1, D, D, seed=0).save_params(tmp_path / "big.npz")
    model = Rnnlm(V, D, D, seed=1)
    before = [p.copy() for p in model.params]
    with pytest.raises(ModelFileError, match=r"Rnnlm.load_params: .*shapes"):
        model.load_params(tmp_path / "big.npz")
    for a, b in zip(before, model.params, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_non_finite_file_is_refused(tmp_path):
    model = Rnnlm(V, D, D, seed=0)
    model.params[1][0, 0] = np.nan
    model.save_params(tmp_path / "nan.npz")
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        Rnnlm(V, D, D).load_params(tmp_path / "nan.npz")


def test_models_refuse_bad_sizes():
    with pytest.raises(LayerInputError, match="Rnnlm: argument 'vocab_size'"):
        Rnnlm(0)
    with pytest.raises(LayerInputError, match="BetterRnnlm: argument 'wordvec_size'"):
        BetterRnnlm(10, 4, 5)
    with pytest.raises(LayerInputError, match="dropout_ratio"):
        BetterRnnlm(10, 4, 4, 1.5)


def test_global_seed_gives_the_books_initial_weights():
    np.random.seed(0)  # noqa: NPY002 - the book's global generator
    model = Rnnlm(V, D, D)
    np.random.seed(0)  # noqa: NPY002
    embed = (np.random.randn(V, D) / 100).astype("f")  # noqa: NPY002
    np.testing.assert_array_equal(model.params[0], embed)
    np.testing.assert_array_equal(Rnnlm(V, D, D, seed=0).params[0], embed)


# --------------------------------------------------------------------------- corpora


def test_ptb_reads_the_books_format(tmp_path):
    (tmp_path / "ptb.train.txt").write_text(" a b c \n b d \n")
    (tmp_path / "ptb.valid.txt").write_text(" d e \n")
    (tmp_path / "ptb.test.txt").write_text(" a \n")
    corpus, w2i, i2w = ptb.load_data("train", data_dir=tmp_path)
    assert [i2w[int(i)] for i in corpus] == ["a", "b", "c", "<eos>", "b", "d", "<eos>"]
    val, w2i_val, _ = ptb.load_data("val", data_dir=tmp_path)
    assert w2i_val == w2i == {"a": 0, "b": 1, "c": 2, "<eos>": 3, "d": 4, "e": 5}
    assert val.tolist() == [4, 5, 3]


def test_ptb_says_where_to_get_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv(ptb.ENV, raising=False)
    with pytest.raises(DatasetError, match=r"tomsercu/lstm/master/data/ptb\.train\.txt"):
        ptb.load_data("train", data_dir=tmp_path)
    with pytest.raises(DatasetError, match="no data directory"):
        ptb.load_data("train")
    with pytest.raises(DatasetError, match="data_type"):
        ptb.load_data("dev", data_dir=tmp_path)


def test_grammar_corpus_is_seeded_and_shares_its_vocabulary():
    a, w2i, i2w = grammar.load_data("train")
    b, w2i_b, _ = grammar.load_data("train")
    c, _, _ = grammar.load_data("train", seed=1)
    v, w2i_v, _ = grammar.load_data("valid")
    assert np.array_equal(a, b)
    assert not np.array_equal(a[:100], c[:100])
    assert w2i == w2i_b == w2i_v
    assert len(w2i) == grammar.VOCAB_SIZE
    assert 8000 <= len(a) < 8030
    assert 1000 <= len(v) < 1030
    assert not np.array_equal(a[:100], v[:100])
    assert i2w[int(a[np.flatnonzero(a == w2i["<eos>"])[0]])] == "<eos>"
    assert set(np.unique(a).tolist()) == set(range(grammar.VOCAB_SIZE))


@pytest.mark.backends("dask")
def test_carried_states_are_computed_after_each_dask_step(backend):
    """The state a stateful LSTM hands to the next batch holds no task graph of earlier batches."""
    corpus = np.arange(60) % V
    model = Rnnlm(V, D, D, seed=0, dtype="float64")
    trainer = RnnlmTrainer(model, SGD(lr=0.1))
    trainer.fit(corpus[:-1], corpus[1:], 1, 2, 5, eval_interval=None)
    lstm = model.lstm_layer
    for state in (lstm.h, lstm.c):
        assert backend.name == "dask"
        assert len(dict(state.__dask_graph__())) == len(state.__dask_keys__())
