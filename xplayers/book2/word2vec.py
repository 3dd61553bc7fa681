"""Volume 2's word2vec models.

``SimpleCBOW`` and ``SimpleSkipGram`` (chapter 3), ``CBOW`` and
``SkipGram`` (chapter 4), with the book's constructor arguments,
``params``, ``grads`` and ``word_vecs``, ``forward(contexts, target)``
returning the loss and ``backward(dout=1)``.
The weights are drawn with NumPy, as the book's, and moved once to the
current backend (:mod:`xplayers.book2`); ``word_vecs`` is the input-side
weight of the layer, on that backend.

The chapter 3 models take one-hot rows: ``contexts`` ``(N, 2, V)`` and
``target`` ``(N, V)`` (``convert_one_hot``). The chapter 4 models take ids:
``contexts`` ``(N, 2 * window_size)`` and ``target`` ``(N,)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xplayers._validation import describe, fail, positive_int
from xplayers.backend import namespace
from xplayers.book2._cells import hold
from xplayers.book2._common import on_layer_backend
from xplayers.book2.layers import Embedding, MatMul, SoftmaxWithLoss
from xplayers.book2.negative_sampling import NegativeSamplingLoss, generator

__all__ = ["CBOW", "SimpleCBOW", "SimpleSkipGram", "SkipGram"]


def _weight(rng: Any, rows: int, cols: int) -> np.ndarray[Any, Any]:
    """The book's ``0.01 * np.random.randn(rows, cols).astype('f')`` from `rng`."""
    w = rng.randn(rows, cols) if rng is np.random else rng.standard_normal((rows, cols))
    out: np.ndarray[Any, Any] = (0.01 * w).astype("f")
    return out


def _sizes(where: str, vocab_size: int, hidden_size: int) -> tuple[int, int]:
    return positive_int(where, "vocab_size", vocab_size), positive_int(
        where, "hidden_size", hidden_size
    )


def _contexts(where: str, contexts: Any, ref: Any, width: int, one_hot: int | None) -> Any:
    """`contexts` on `ref`'s backend, ``(N, width)`` ids or ``(N, width, V)`` one-hot rows."""
    contexts = on_layer_backend(
        np.asarray(contexts) if isinstance(contexts, list) else contexts, ref
    )
    want = (width,) if one_hot is None else (width, one_hot)
    shape = tuple(int(s) for s in getattr(contexts, "shape", ()))
    if len(shape) != 1 + len(want) or shape[1:] != want:
        what = "ids" if one_hot is None else "one-hot rows"
        fail(
            where,
            "contexts",
            f"{what} of shape (N, {', '.join(map(str, want))})",
            describe(contexts),
        )
    return contexts


class _Word2Vec:
    """``params``/``grads`` lists of the layers, ``word_vecs`` from the input layer."""

    params: list[Any]
    grads: list[Any]
    _in_layer: Any

    def _collect(self, layers: list[Any]) -> None:
        self.params, self.grads = [], []
        for layer in layers:
            self.params += layer.params
            self.grads += layer.grads
        hold(self)

    @property
    def word_vecs(self) -> Any:
        """The input-side word vectors ``W_in`` ``(V, H)``, the current array of the layer."""
        return self._in_layer.params[0]


class SimpleCBOW(_Word2Vec):
    """Chapter 3's CBOW: the mean of two context words' ``W_in`` rows, a softmax over the words.

    Parameters
    ----------
    vocab_size, hidden_size : int
    seed : int, numpy.random.Generator or None, keyword-only
        Where the weights come from; None: the global ``numpy.random``, as the book.
    """

    def __init__(self, vocab_size: int, hidden_size: int, *, seed: Any = None) -> None:
        V, H = _sizes("SimpleCBOW", vocab_size, hidden_size)
        rng = generator(seed)
        W_in, W_out = _weight(rng, V, H), _weight(rng, H, V)
        self.in_layer0 = MatMul(W_in)
        self.in_layer1 = MatMul(W_in)
        self.out_layer = MatMul(W_out)
        self.loss_layer = SoftmaxWithLoss()
        self._in_layer = self.in_layer0
        self._collect([self.in_layer0, self.in_layer1, self.out_layer])
        self.vocab_size = V

    def forward(self, contexts: Any, target: Any) -> Any:
        """The loss of one-hot `target` ``(N, V)`` (or ids) given `contexts` ``(N, 2, V)``."""
        contexts = _contexts("SimpleCBOW.forward", contexts, self.params[0], 2, self.vocab_size)
        h0 = self.in_layer0.forward(contexts[:, 0, :])
        h1 = self.in_layer1.forward(contexts[:, 1, :])
        score = self.out_layer.forward((h0 + h1) * 0.5)
        return self.loss_layer.forward(score, target)

    def backward(self, dout: Any = 1) -> None:
        """Store the gradients of both weights (``W_in``'s twice, one per context word)."""
        da = self.out_layer.backward(self.loss_layer.backward(dout)) * 0.5
        self.in_layer1.backward(da)
        self.in_layer0.backward(da)


class SimpleSkipGram(_Word2Vec):
    """Chapter 3's skip-gram: the target's ``W_in`` row predicts both context words.

    Parameters as :class:`SimpleCBOW`.
    """

    def __init__(self, vocab_size: int, hidden_size: int, *, seed: Any = None) -> None:
        V, H = _sizes("SimpleSkipGram", vocab_size, hidden_size)
        rng = generator(seed)
        W_in, W_out = _weight(rng, V, H), _weight(rng, H, V)
        self.in_layer = MatMul(W_in)
        self.out_layer = MatMul(W_out)
        self.loss_layer1 = SoftmaxWithLoss()
        self.loss_layer2 = SoftmaxWithLoss()
        self._in_layer = self.in_layer
        self._collect([self.in_layer, self.out_layer])
        self.vocab_size = V

    def forward(self, contexts: Any, target: Any) -> Any:
        """The summed loss of both one-hot context words `contexts` ``(N, 2, V)`` given `target`."""
        contexts = _contexts("SimpleSkipGram.forward", contexts, self.params[0], 2, self.vocab_size)
        s = self.out_layer.forward(self.in_layer.forward(target))
        l1 = self.loss_layer1.forward(s, contexts[:, 0, :])
        l2 = self.loss_layer2.forward(s, contexts[:, 1, :])
        return l1 + l2

    def backward(self, dout: Any = 1) -> None:
        """Store the gradients of both weights."""
        ds = self.loss_layer1.backward(dout) + self.loss_layer2.backward(dout)
        self.in_layer.backward(self.out_layer.backward(ds))


class _Sampled(_Word2Vec):
    """Chapter 4's models: an ``Embedding`` of ``W_in``, a ``NegativeSamplingLoss`` of ``W_out``."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        window_size: int,
        corpus: Any,
        *,
        seed: Any = None,
    ) -> None:
        V, H = _sizes(type(self).__name__, vocab_size, hidden_size)
        self.window_size = positive_int(type(self).__name__, "window_size", window_size)
        rng = generator(seed)
        W_in, W_out = _weight(rng, V, H), _weight(rng, V, H)
        self.in_layer = Embedding(W_in)
        self.ns_loss = NegativeSamplingLoss(W_out, corpus, power=0.75, sample_size=5, seed=rng)
        self._in_layer = self.in_layer
        self._collect([self.in_layer, self.ns_loss])
        self._width = 2 * self.window_size


class CBOW(_Sampled):
    """Chapter 4's CBOW: the mean of the context words' vectors, negative sampling.

    Parameters
    ----------
    vocab_size, hidden_size, window_size : int
    corpus : 1-D integer array of word ids (the negative sampler's counts)
    seed : int, numpy.random.Generator or None, keyword-only
        The weights' and the sampler's random source; None: the global
        ``numpy.random``, as the book.

    Notes
    -----
    The book makes one ``Embedding(W_in)`` per context word; here one
    ``Embedding`` takes all ``2 * window_size`` columns at once (one gather,
    one scatter-add), so ``params`` is ``[W_in, W_out]``.
    """

    def forward(self, contexts: Any, target: Any) -> Any:
        """The loss of `target` ``(N,)`` given the ids `contexts` ``(N, 2 * window_size)``."""
        contexts = _contexts("CBOW.forward", contexts, self.params[0], self._width, None)
        vecs = self.in_layer.forward(contexts)
        h = namespace(vecs).mean(vecs, axis=1)
        return self.ns_loss.forward(h, target)

    def backward(self, dout: Any = 1) -> None:
        """Store the gradients of ``W_in`` and ``W_out``."""
        dh = self.ns_loss.backward(dout) * (1.0 / self._width)
        xp = namespace(dh)
        self.in_layer.backward(
            xp.broadcast_to(xp.expand_dims(dh, axis=1), (dh.shape[0], self._width, dh.shape[1]))
        )


class SkipGram(_Sampled):
    """Chapter 4's skip-gram: the target's vector against each context word, negative sampling.

    Parameters as :class:`CBOW`.

    Notes
    -----
    The book makes one ``NegativeSamplingLoss(W_out, ...)`` per context
    word, each with its own sampler; here one layer takes the
    ``(N, 2 * window_size)`` context ids at once (the sum of the same
    losses, samples drawn independently per word), so ``params`` is
    ``[W_in, W_out]``.
    """

    def forward(self, contexts: Any, target: Any) -> Any:
        """The summed loss of the context ids `contexts` ``(N, 2 * window_size)`` given `target`."""
        contexts = _contexts("SkipGram.forward", contexts, self.params[0], self._width, None)
        h = self.in_layer.forward(target)
        if h.ndim != 2:
            fail("SkipGram.forward", "target", "ids of shape (N,)", describe(target))
        return self.ns_loss.forward(h, contexts)

    def backward(self, dout: Any = 1) -> None:
        """Store the gradients of ``W_in`` and ``W_out``."""
        self.in_layer.backward(self.ns_loss.backward(dout))
