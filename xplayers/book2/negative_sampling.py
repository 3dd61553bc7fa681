"""Volume 2's ``ch04/negative_sampling_layer.py``: the negative-sampling layers of word2vec.

``EmbeddingDot``, ``UnigramSampler`` and ``NegativeSamplingLoss``, with
the book's names and arguments.
The math is :func:`xplayers.sequence.embedding_dot` and
:func:`xplayers.sequence.negative_sampling_loss`. Negative samples are
drawn on the host, from each sampler's own generator (or the global
``numpy.random``, as the book, when no seed is given), and excluding each
row's target, as the book does on the CPU (its GPU variant does not
exclude it).
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from xplayers._validation import describe, fail, number_in, positive_int
from xplayers.backend import namespace, to_numpy
from xplayers.book2._common import as_tokens, forwarded, on_layer_backend, store
from xplayers.book2.layers import Book2Layer
from xplayers.sequence import (
    embedding_dot,
    embedding_dot_backward,
    negative_sampling_loss,
    negative_sampling_loss_backward,
)

__all__ = ["EmbeddingDot", "NegativeSamplingLoss", "UnigramSampler"]

#: Sampling keys (rows times vocabulary) drawn at once: 32 MiB of float64.
_KEYS_AT_ONCE = 1 << 22


def generator(seed: Any) -> Any:
    """The random source of `seed`: global ``numpy.random`` for None, else ``default_rng(seed)``.

    None (or the module ``numpy.random`` itself) keeps the book's
    behaviour (a script's ``np.random.seed`` repeats its runs); an int or a
    :class:`numpy.random.Generator` gives the object its own stream (a
    Generator is used as it is, so objects given the same one share it).
    """
    if seed is None or seed is np.random:
        return np.random
    return np.random.default_rng(seed)


class EmbeddingDot(Book2Layer):
    """Scores of the rows of ``W`` ``(V, H)`` named by ids against ``h``.

    ``out = sum(W[idx] * h, axis=1)``; the backward is one scatter-add.
    """

    def __init__(self, W: Any) -> None:
        self._take("W", W)
        self.cache: Any = None

    def forward(self, h: Any, idx: Any) -> Any:
        """Return ``out[n] = W[idx[n]] . h[n]`` for ``h`` ``(N, H)`` and ids `idx` ``(N,)``."""
        where = "EmbeddingDot.forward"
        W = self.params[0]
        h = _hidden(where, h, W)
        idx = as_tokens(where, "idx", idx, W, int(W.shape[0]), ndim=1)
        _same_rows(where, "idx", idx, h)
        out, self.cache = embedding_dot(W, h, idx)
        return out

    def backward(self, dout: Any) -> Any:
        """Store ``dW`` (one scatter-add); return ``dh``."""
        dh, dW = embedding_dot_backward(forwarded(self, self.cache), dout)
        store(self.grads, 0, dW)
        return dh


def _hidden(where: str, h: Any, W: Any) -> Any:
    h = on_layer_backend(h, W)
    namespace_ok = array_api_compat.is_array_api_obj(h)
    if not namespace_ok or h.ndim != 2 or int(h.shape[1]) != int(W.shape[1]):
        fail(where, "h", f"a floating array of shape (N, {int(W.shape[1])})", describe(h))
    if not namespace(h).isdtype(h.dtype, "real floating"):
        fail(where, "h", f"a floating array of shape (N, {int(W.shape[1])})", describe(h))
    return h


def _same_rows(where: str, arg: str, idx: Any, h: Any) -> None:
    if int(idx.shape[0]) != int(h.shape[0]):
        fail(where, arg, f"{int(h.shape[0])} rows, one per row of h", describe(idx))


class UnigramSampler:
    """Negative samples from the unigram distribution raised to `power`, as the book's.

    Word ``w`` is drawn with probability ``count(w) ** power`` over the sum
    of them, ``count`` taken from `corpus`. Each row of samples has
    `sample_size` different words, none of them the row's target (the
    book's ``np.random.choice(..., replace=False, p=p)`` with the target's
    probability set to 0).

    Parameters
    ----------
    corpus : 1-D integer array of word ids
    power : float
        The book uses 0.75.
    sample_size : int
        Words per target; fewer than the number of distinct words in `corpus`.
    seed : int, numpy.random.Generator or None, keyword-only
        See :func:`generator`: None draws from the global ``numpy.random``
        as the book does.

    Attributes
    ----------
    vocab_size : int
        ``max(corpus) + 1``; ids that never occur get probability 0.
    word_p : numpy.ndarray
        The sampling distribution, float64 ``(vocab_size,)``.
    """

    def __init__(self, corpus: Any, power: float, sample_size: int, *, seed: Any = None) -> None:
        where = "UnigramSampler"
        ids = _host_ids(where, "corpus", corpus, ndim=1)
        if ids.size == 0:
            fail(where, "corpus", "at least one word id", describe(ids))
        if int(ids.min()) < 0:
            fail(where, "corpus", "word ids >= 0", f"id {int(ids.min())}")
        self.power = number_in(where, "power", power, low=0.0, low_open=False)
        self.sample_size = positive_int(where, "sample_size", sample_size)
        counts = np.bincount(ids)
        self.vocab_size = len(counts)
        distinct = int(np.count_nonzero(counts))
        if self.sample_size >= distinct:
            fail(
                where,
                "sample_size",
                f"fewer than the {distinct} distinct words of the corpus "
                "(each row draws sample_size different words other than its target)",
                repr(self.sample_size),
            )
        p = np.where(counts > 0, counts.astype(np.float64) ** self.power, 0.0)
        self.word_p = p / p.sum()
        self._log_p = np.log(np.where(self.word_p > 0, self.word_p, 1.0))
        self._log_p[self.word_p == 0] = -np.inf
        self.rng = generator(seed)

    def get_negative_sample(self, target: Any) -> np.ndarray[Any, Any]:
        """``target.shape + (sample_size,)`` int32 ids drawn for each target, on the host.

        Drawn without replacement and without the target itself, all rows at
        once: each row keeps the `sample_size` largest of
        ``log(word_p) + Gumbel noise`` with the target left out, which
        draws the same sets as drawing one word at a time with
        probabilities ``word_p`` renormalised after each draw (the book's
        ``np.random.choice(replace=False, p=p)``).
        """
        where = "UnigramSampler.get_negative_sample"
        t = _host_ids(where, "target", target, ndim=None)
        if t.size and (int(t.min()) < 0 or int(t.max()) >= self.vocab_size):
            bad = int(t.min()) if int(t.min()) < 0 else int(t.max())
            fail(where, "target", f"ids in [0, {self.vocab_size})", f"id {bad}")
        flat = t.reshape(-1)
        k = self.sample_size
        out = np.empty((flat.size, k), dtype=np.int32)
        step = max(1, _KEYS_AT_ONCE // self.vocab_size)  # rows of keys held at once
        for start in range(0, flat.size, step):
            rows = flat[start : start + step]
            keys = self._log_p + self.rng.gumbel(size=(rows.size, self.vocab_size))
            keys[np.arange(rows.size), rows] = -np.inf
            out[start : start + rows.size] = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        return out.reshape(*t.shape, k)


def _host_ids(where: str, arg: str, ids: Any, *, ndim: int | None) -> np.ndarray[Any, Any]:
    """`ids` as a host integer array (read back from the device if needed)."""
    try:
        host = np.asarray(to_numpy(ids) if array_api_compat.is_array_api_obj(ids) else ids)
    except ValueError:
        fail(where, arg, "a rectangular array of integer ids", "ragged sequences")
    if host.dtype.kind not in "iu":
        fail(where, arg, "an integer array of word ids", describe(host))
    if ndim is not None and host.ndim != ndim:
        fail(where, arg, f"a {ndim}-D array of word ids", describe(host))
    return host


class NegativeSamplingLoss(Book2Layer):
    """The book's negative-sampling loss: the target word against `sample_size` sampled words.

    ``forward(h, target)`` returns the sum over the target and its negative
    samples of the mean binary cross-entropy of their scores
    ``W[w] . h`` (:func:`xplayers.sequence.negative_sampling_loss`);
    ``backward(dout=1)`` stores ``dW`` and returns ``dh``.

    The book builds ``sample_size + 1`` ``EmbeddingDot`` and
    ``SigmoidWithLoss`` layers sharing ``W`` (so its ``params`` lists ``W``
    ``sample_size + 1`` times, merged again by the trainer); here one
    gather scores all the words and one scatter-add makes ``dW``, and
    ``params`` is ``[W]``. Targets of shape ``(N, C)`` give the sum of the
    ``C`` losses (skip-gram's context words).

    Parameters
    ----------
    W : array, shape (V, H)
    corpus : 1-D integer array of word ids (for the :class:`UnigramSampler`)
    power : float, default 0.75
    sample_size : int, default 5
    seed : int, numpy.random.Generator or None, keyword-only
        The sampler's random source (:func:`generator`).
    """

    def __init__(
        self,
        W: Any,
        corpus: Any,
        power: float = 0.75,
        sample_size: int = 5,
        *,
        seed: Any = None,
    ) -> None:
        self._take("W", W)
        self.sample_size = positive_int("NegativeSamplingLoss", "sample_size", sample_size)
        self.sampler = UnigramSampler(corpus, power, sample_size, seed=seed)
        rows = int(self.params[0].shape[0])
        if self.sampler.vocab_size > rows:
            fail(
                "NegativeSamplingLoss",
                "corpus",
                f"word ids below the {rows} rows of W",
                f"id {self.sampler.vocab_size - 1}",
            )
        self.cache: Any = None

    def forward(self, h: Any, target: Any) -> Any:
        """Return the loss of `target` ``(N,)`` or ``(N, C)`` given ``h`` ``(N, H)``.

        The targets are read back to the host for the sampler (one small
        transfer per call where they live on a device).
        """
        where = "NegativeSamplingLoss.forward"
        W = self.params[0]
        h = _hidden(where, h, W)
        target = as_tokens(where, "target", target, W, self.sampler.vocab_size, ndim=None)
        if target.ndim not in (1, 2):
            fail(where, "target", "ids of shape (N,) or (N, C)", describe(target))
        _same_rows(where, "target", target, h)
        negatives = on_layer_backend(self.sampler.get_negative_sample(target), W)
        negatives = namespace(negatives).astype(negatives, target.dtype)
        loss, self.cache = negative_sampling_loss(W, h, target, negatives)
        return loss

    def backward(self, dout: Any = 1) -> Any:
        """Store ``dW`` (one scatter-add of all the scored words); return ``dh``."""
        dh, dW = negative_sampling_loss_backward(forwarded(self, self.cache), dout)
        store(self.grads, 0, dW)
        return dh
