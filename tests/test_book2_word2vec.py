"""Volume 2's word2vec: negative sampling and the chapter 3 and 4 models, on every backend.

Gradients are checked against central differences of the same classes run
on float64 NumPy copies; the losses against NumPy transcriptions of the
book's formulas written here (the book's code is not a test dependency).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import sequence as sq
from xplayers.book2 import (
    CBOW,
    Adam,
    EmbeddingDot,
    NegativeSamplingLoss,
    SimpleCBOW,
    SimpleSkipGram,
    SkipGram,
    Trainer,
    UnigramSampler,
    convert_one_hot,
    create_contexts_target,
    negative_sampling,
    preprocess,
)
from xplayers.book2 import word2vec as w2v
from xplayers.book2._training import SharedWeights
from xplayers.errors import LayerInputError

TOL = 1e-6
TEXT = "You say goodbye and I say hello. you say hello and I say goodbye."


def _sig(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _book_ns_loss(W: np.ndarray, h: np.ndarray, target: np.ndarray, neg: np.ndarray) -> float:
    """The book's S + 1 EmbeddingDot + SigmoidWithLoss pairs, one column at a time."""
    loss = 0.0
    for k in range(neg.shape[1] + 1):
        ids = target if k == 0 else neg[:, k - 1]
        y = _sig(np.sum(W[ids] * h, axis=1))
        p = y if k == 0 else 1 - y
        loss += -np.sum(np.log(p)) / len(ids)
    return loss


def _central(f: Callable[[], float], a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of `f` with respect to every entry of `a` (changed in place)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        keep = a[i]
        a[i] = keep + eps
        up = f()
        a[i] = keep - eps
        down = f()
        a[i] = keep
        g[i] = (up - down) / (2 * eps)
    return g


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a) + np.abs(b))))


# --------------------------------------------------------------------------- layers


def test_embedding_dot_gradients(backend):
    rng = np.random.default_rng(0)
    W, h = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    idx = np.array([1, 5, 1, 0])
    R = rng.normal(size=4)
    layer = EmbeddingDot(backend.asarray(W))
    out = layer.forward(backend.asarray(h), backend.asarray(idx))
    np.testing.assert_allclose(backend.to_numpy(out), np.sum(W[idx] * h, axis=1), rtol=1e-12)
    dh = backend.to_numpy(layer.backward(backend.asarray(R)))
    dW = backend.to_numpy(layer.grads[0])

    def f() -> float:
        return float(np.sum(np.sum(W[idx] * h, axis=1) * R))

    assert _rel(dh, _central(f, h)) < TOL
    assert _rel(dW, _central(f, W)) < TOL


def test_negative_sampling_loss_is_the_books_and_its_gradients(backend):
    rng = np.random.default_rng(1)
    V, H, N, S = 7, 3, 4, 3
    W, h = rng.normal(size=(V, H)), rng.normal(size=(N, H))
    target = np.array([0, 3, 3, 6])
    neg = np.array([[1, 2, 3], [0, 1, 2], [4, 5, 6], [0, 1, 5]])
    loss, cache = sq.negative_sampling_loss(*(backend.asarray(a) for a in (W, h, target, neg)))
    want = _book_ns_loss(W, h, target, neg)
    assert float(backend.to_numpy(loss)) == pytest.approx(want, rel=1e-12)
    dh, dW = sq.negative_sampling_loss_backward(cache, 1.0)

    def f() -> float:
        return 1.0 * _book_ns_loss(W, h, target, neg)

    assert _rel(backend.to_numpy(dh), _central(f, h)) < TOL
    assert _rel(backend.to_numpy(dW), _central(f, W)) < TOL
    assert neg.shape[1] == S


def test_negative_sampling_layer_takes_its_samples_from_the_sampler(backend):
    rng = np.random.default_rng(2)
    corpus = np.array([0, 1, 2, 3, 4, 1, 5, 6, 1, 2])
    W, h = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    target = np.array([1, 2, 0, 6, 1])
    layer = NegativeSamplingLoss(backend.asarray(W), corpus, sample_size=2, seed=3)
    twin = UnigramSampler(corpus, 0.75, 2, seed=3)
    loss = layer.forward(backend.asarray(h), target)
    neg = twin.get_negative_sample(target)
    assert float(backend.to_numpy(loss)) == pytest.approx(_book_ns_loss(W, h, target, neg), 1e-12)
    assert layer.params == [layer.params[0]]
    assert len(layer.grads) == 1
    dh = layer.backward()
    assert tuple(dh.shape) == (5, 3)


# --------------------------------------------------------------------------- sampler


def test_sampler_probabilities_are_the_books():
    corpus = np.array([0, 1, 1, 2, 2, 2, 2, 3])
    sampler = UnigramSampler(corpus, 0.75, 2)
    want = np.array([1, 2, 4, 1]) ** 0.75
    np.testing.assert_allclose(sampler.word_p, want / want.sum(), rtol=1e-12)
    assert sampler.vocab_size == 4


def test_samples_exclude_their_target_and_repeat_no_word():
    corpus = np.repeat(np.arange(6), [1, 2, 3, 4, 5, 6])
    sampler = UnigramSampler(corpus, 0.75, 4, seed=0)
    target = np.tile(np.arange(6), 200)
    neg = sampler.get_negative_sample(target)
    assert neg.shape == (1200, 4)
    assert neg.dtype == np.int32
    assert not np.any(neg == target[:, None])
    assert all(len(set(row)) == 4 for row in neg.tolist())
    again = UnigramSampler(corpus, 0.75, 4, seed=0).get_negative_sample(target)
    np.testing.assert_array_equal(neg, again)  # seeded


def test_samples_follow_the_books_draw_without_replacement():
    """Inclusion frequencies equal those of np.random.choice(replace=False, p) with p[target] = 0."""
    corpus = np.repeat(np.arange(5), [1, 3, 6, 10, 20])
    sampler = UnigramSampler(corpus, 0.75, 2, seed=1)
    target = np.full(20000, 3)
    ours = np.bincount(sampler.get_negative_sample(target).ravel(), minlength=5) / 20000
    p = sampler.word_p.copy()
    p[3] = 0
    p /= p.sum()
    book_rng = np.random.RandomState(2)
    book = np.zeros(5)
    for _ in range(20000):
        book[book_rng.choice(5, size=2, replace=False, p=p)] += 1
    book /= 20000
    assert ours[3] == 0
    np.testing.assert_allclose(ours, book, atol=0.015)  # a few standard errors of 20000 rows


def test_sample_size_one_is_the_renormalised_unigram():
    corpus = np.repeat(np.arange(4), [2, 4, 8, 16])
    sampler = UnigramSampler(corpus, 1.0, 1, seed=4)
    neg = sampler.get_negative_sample(np.zeros(40000, dtype=np.int64))
    freq = np.bincount(neg.ravel(), minlength=4) / 40000
    want = np.array([0, 4, 8, 16]) / 28
    np.testing.assert_allclose(freq, want, atol=0.01)


def test_sampler_with_no_seed_uses_the_global_generator_like_the_book():
    corpus = np.arange(10)
    np.random.seed(5)  # noqa: NPY002 (the global generator, as the book)
    a = UnigramSampler(corpus, 0.75, 3).get_negative_sample(np.arange(10))
    np.random.seed(5)  # noqa: NPY002 (the global generator, as the book)
    b = UnigramSampler(corpus, 0.75, 3).get_negative_sample(np.arange(10))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.array([0, 1, 1]), 0.75, 2), r"UnigramSampler: argument 'sample_size': expected fewer"),
        (
            (np.array([0.0, 1.0]), 0.75, 1),
            r"UnigramSampler: argument 'corpus': expected an integer",
        ),
        ((np.array([0, -1, 2]), 0.75, 1), r"UnigramSampler: argument 'corpus': expected word ids"),
        ((np.arange(5), -1.0, 1), r"UnigramSampler: argument 'power'"),
    ],
)
def test_sampler_refuses_bad_arguments(args, message):
    with pytest.raises(LayerInputError, match=message):
        UnigramSampler(*args)


def test_sampler_refuses_targets_outside_the_vocabulary():
    sampler = UnigramSampler(np.arange(5), 0.75, 2)
    with pytest.raises(LayerInputError, match=r"get_negative_sample: argument 'target'.*got id 5"):
        sampler.get_negative_sample(np.array([0, 5]))
    with pytest.raises(LayerInputError, match=r"argument 'target': expected an integer array"):
        sampler.get_negative_sample(np.array([0.0]))


# --------------------------------------------------------------------------- models


def _float64_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the models' weights in float64 (the book's are float32) for central differences."""

    def weight(rng: Any, rows: int, cols: int) -> np.ndarray:
        w = rng.randn(rows, cols) if rng is np.random else rng.standard_normal((rows, cols))
        return 0.5 * w

    monkeypatch.setattr(w2v, "_weight", weight)


def _data(kind: str) -> tuple[np.ndarray, Any, Any, int]:
    corpus, word_to_id, _ = preprocess(TEXT)
    V = len(word_to_id)
    window = 1 if kind.startswith("Simple") else 2
    contexts, target = create_contexts_target(corpus, window)
    contexts, target = contexts[:5], target[:5]
    if kind.startswith("Simple"):
        return corpus, convert_one_hot(contexts, V), convert_one_hot(target, V), V
    return corpus, contexts, target, V


def _build(kind: str, corpus: np.ndarray, V: int) -> Any:
    cls = {"SimpleCBOW": SimpleCBOW, "SimpleSkipGram": SimpleSkipGram, "CBOW": CBOW}.get(kind)
    if cls is not None and kind.startswith("Simple"):
        return cls(V, 3, seed=7)
    return (CBOW if kind == "CBOW" else SkipGram)(V, 3, 2, corpus, seed=7)


def _fix_negatives(model: Any, target: Any) -> None:
    """Make the sampler give the same samples on every call (the loss a function of the weights)."""
    sampler = model.ns_loss.sampler
    fixed = sampler.get_negative_sample(target)
    sampler.get_negative_sample = lambda t: fixed


@pytest.mark.parametrize("kind", ["SimpleCBOW", "SimpleSkipGram", "CBOW", "SkipGram"])
def test_model_gradients_equal_central_differences(backend, monkeypatch, kind):
    _float64_weights(monkeypatch)
    corpus, contexts, target, V = _data(kind)
    model = _build(kind, corpus, V)
    with xpl.use_backend("numpy"):
        host = _build(kind, corpus, V)
    if not kind.startswith("Simple"):
        ns_in = target if kind == "CBOW" else contexts
        _fix_negatives(model, ns_in)
        host.ns_loss.sampler.get_negative_sample = model.ns_loss.sampler.get_negative_sample
    loss = model.forward(contexts, target)
    model.backward()
    shared = SharedWeights(model.params, model)
    grads = shared.summed(shared.gradients(model.grads))
    want_loss = float(host.forward(contexts, target))
    assert float(backend.to_numpy(loss)) == pytest.approx(want_loss, rel=1e-10)
    host_shared = SharedWeights(host.params, host)
    for g, p in zip(grads, host_shared.unique(host.params), strict=True):
        num = _central(lambda: float(host.forward(contexts, target)), p)
        assert _rel(backend.to_numpy(g), num) < TOL


def test_word_vecs_are_the_layers_current_weights(backend):
    corpus, _contexts, _target, V = _data("CBOW")
    model = CBOW(V, 4, 2, corpus, seed=0)
    assert model.word_vecs is model.in_layer.params[0]
    assert xpl.backend.backend_name(model.word_vecs) == backend.name
    assert model.word_vecs.dtype == backend.dtype("float32")  # the book's 'f'
    assert len(model.params) == 2


def test_models_are_seeded_or_follow_the_global_generator():
    corpus, contexts, target, V = _data("CBOW")
    a, b = SkipGram(V, 4, 2, corpus, seed=3), SkipGram(V, 4, 2, corpus, seed=3)
    assert float(a.forward(contexts, target)) == float(b.forward(contexts, target))
    np.random.seed(11)  # noqa: NPY002 (the global generator, as the book)
    c = SimpleCBOW(V, 4)
    np.random.seed(11)  # noqa: NPY002 (the global generator, as the book)
    want = (0.01 * np.random.randn(V, 4)).astype("f")  # noqa: NPY002
    np.testing.assert_array_equal(c.word_vecs, want)


# --------------------------------------------------------------------------- errors


def test_bad_ids_name_the_layer():
    W = np.ones((5, 2))
    with pytest.raises(LayerInputError, match=r"EmbeddingDot.forward: argument 'idx'.*\[0, 5\)"):
        EmbeddingDot(W).forward(np.ones((2, 2)), np.array([0, 5]))
    with pytest.raises(LayerInputError, match=r"EmbeddingDot.forward: argument 'idx'.*integer"):
        EmbeddingDot(W).forward(np.ones((2, 2)), np.array([0.0, 1.0]))
    with pytest.raises(LayerInputError, match=r"EmbeddingDot.forward: argument 'h'.*\(N, 2\)"):
        EmbeddingDot(W).forward(np.ones((2, 3)), np.array([0, 1]))
    with pytest.raises(
        LayerInputError, match=r"EmbeddingDot.forward: argument 'idx': expected 2 rows"
    ):
        EmbeddingDot(W).forward(np.ones((2, 2)), np.array([0, 1, 2]))
    layer = NegativeSamplingLoss(W, np.arange(5), sample_size=2)
    with pytest.raises(
        LayerInputError, match=r"NegativeSamplingLoss.forward: argument 'target'.*ragged"
    ):
        layer.forward(np.ones((2, 2)), [[0, 1], [2]])
    with pytest.raises(
        LayerInputError, match=r"NegativeSamplingLoss: argument 'corpus'.*rows of W"
    ):
        NegativeSamplingLoss(W, np.arange(7), sample_size=2)


def test_models_refuse_contexts_of_the_wrong_shape():
    corpus, contexts, target, V = _data("CBOW")
    model = CBOW(V, 4, 2, corpus, seed=0)
    with pytest.raises(LayerInputError, match=r"CBOW.forward: argument 'contexts'.*\(N, 4\)"):
        model.forward(contexts[:, :2], target)
    with pytest.raises(LayerInputError, match=r"CBOW.forward: argument 'xs'|Embedding.forward"):
        model.forward(contexts.astype(float), target)
    simple = SimpleCBOW(V, 4)
    with pytest.raises(LayerInputError, match=r"SimpleCBOW.forward: argument 'contexts'.*one-hot"):
        simple.forward(contexts, target)
    with pytest.raises(LayerInputError, match=r"Embedding.forward: argument 'idx'.*\[0, 7\)"):
        model.forward(np.full_like(contexts, V), target)


@pytest.mark.parametrize("cls", [CBOW, SkipGram])
def test_trainer_trains_the_chapter4_models(cls):
    """With no seed the sampler draws from the module numpy.random, which the trainer skips."""
    corpus, _ = preprocess(TEXT)[:2]
    contexts, target = create_contexts_target(corpus, 2)
    np.random.seed(0)  # noqa: NPY002 (the book's global generator)
    model = cls(int(corpus.max()) + 1, 5, 2, corpus)
    tr = Trainer(model, Adam(lr=0.05))
    tr.fit(contexts, target, max_epoch=60, batch_size=4, eval_interval=1)
    assert np.mean(tr.loss_list[-6:]) < np.mean(tr.loss_list[:6]) - 1.0


def test_samples_drawn_in_chunks_are_the_same(monkeypatch):
    """Large batches draw their keys a few rows at a time; the samples do not change."""
    target = np.arange(50).repeat(4)
    whole = UnigramSampler(np.arange(50), 0.75, 3, seed=0).get_negative_sample(target)
    monkeypatch.setattr(negative_sampling, "_KEYS_AT_ONCE", 120)  # two rows at a time
    parts = UnigramSampler(np.arange(50), 0.75, 3, seed=0).get_negative_sample(target)
    np.testing.assert_array_equal(parts, whole)
    assert not np.any(parts == target[:, None])
