r"""Volume 2's attention (chapter 8, ``ch08/attention_layer.py``): pure functions and layers.

Shapes: ``hs`` are the encoder's hidden states ``(N, T, H)``, ``h`` one
decoder state ``(N, H)``; :func:`time_attention` takes all ``Td`` decoder
states ``(N, Td, H)`` at once.

The pure functions follow :mod:`xplayers.sequence`: a forward returns its
outputs and a cache, a backward takes the cache and the upstream gradient
and returns the input gradients; nothing is written into an argument and
nothing is read on the host, so every backend runs them.

Forward (one decoder state)::

    s_t = sum_h hs[n, t, h] * h[n, h]      # AttentionWeight: scores (N, T)
    a   = softmax(s)                        # attention weights, rows sum to 1
    c   = sum_t a[n, t] * hs[n, t, :]      # WeightSum: context vector (N, H)

Backward (``dc`` given): ``da[n, t] = dc[n] . hs[n, t]`` and
``dhs = a[n, t] * dc[n]`` through the weighted sum; the softmax gives
``ds = a * (da - sum_t a * da)``; then ``dhs += ds[n, t] * h[n]`` and
``dh = sum_t ds[n, t] * hs[n, t]``. :func:`time_attention` does the same
for every decoder step as batched matrix products (``S = hs_dec @ hs_enc^T``,
``C = A @ hs_enc``), where the book loops over the steps.
"""

from __future__ import annotations

from typing import Any

from xplayers._validation import describe, fail, float_array
from xplayers.backend import namespace
from xplayers.book2._common import forwarded, on_layer_backend, writable
from xplayers.book2.layers import Book2Layer
from xplayers.functional import softmax
from xplayers.sequence import softmax_backward

__all__ = [
    "Attention",
    "AttentionWeight",
    "TimeAttention",
    "WeightSum",
    "attention",
    "attention_backward",
    "attention_weight",
    "attention_weight_backward",
    "time_attention",
    "time_attention_backward",
    "weight_sum",
    "weight_sum_backward",
]

Cache = tuple[Any, ...]


# --------------------------------------------------------------------------- pure functions


def weight_sum(hs: Any, a: Any, /) -> tuple[Any, Cache]:
    """The context vectors ``c[n] = sum_t a[n, t] * hs[n, t]``, shape ``(N, H)``."""
    xp = namespace(hs)
    return xp.sum(hs * a[:, :, None], axis=1), (hs, a)


def weight_sum_backward(cache: Cache, dc: Any, /) -> tuple[Any, Any]:
    """Gradients of :func:`weight_sum`: ``(dhs (N, T, H), da (N, T))``."""
    hs, a = cache
    xp = namespace(hs)
    dcr = dc[:, None, :]
    return dcr * a[:, :, None], xp.sum(dcr * hs, axis=2)


def attention_weight(hs: Any, h: Any, /) -> tuple[Any, Cache]:
    """The weights ``a = softmax(hs . h)`` over the ``T`` steps: ``(N, T)``."""
    xp = namespace(hs)
    a = softmax(xp.sum(hs * h[:, None, :], axis=2))
    return a, (hs, h, a)


def attention_weight_backward(cache: Cache, da: Any, /) -> tuple[Any, Any]:
    """Gradients of :func:`attention_weight`: ``(dhs (N, T, H), dh (N, H))``."""
    hs, h, a = cache
    xp = namespace(hs)
    ds = softmax_backward(a, da)[:, :, None]
    return ds * h[:, None, :], xp.sum(ds * hs, axis=1)


def attention(hs: Any, h: Any, /) -> tuple[Any, Any, Cache]:
    """The context vector ``(N, H)`` and the weights ``(N, T)`` of one decoder state `h`."""
    a, weight_cache = attention_weight(hs, h)
    c, sum_cache = weight_sum(hs, a)
    return c, a, (weight_cache, sum_cache)


def attention_backward(cache: Cache, dc: Any, /) -> tuple[Any, Any]:
    """Gradients of :func:`attention`: ``(dhs (N, T, H), dh (N, H))``."""
    weight_cache, sum_cache = cache
    dhs0, da = weight_sum_backward(sum_cache, dc)
    dhs1, dh = attention_weight_backward(weight_cache, da)
    return dhs0 + dhs1, dh


def _t(x: Any) -> Any:
    """Swap the last two axes of a 3-d array."""
    return namespace(x).permute_dims(x, (0, 2, 1))


def time_attention(hs_enc: Any, hs_dec: Any, /) -> tuple[Any, Any, Cache]:
    """:func:`attention` of every decoder state: contexts ``(N, Td, H)``, weights ``(N, Td, Te)``.

    ``A = softmax(hs_dec @ hs_enc^T)`` row by row, ``C = A @ hs_enc``: the
    book's per-step loop as two batched matrix products.
    """
    a = softmax(hs_dec @ _t(hs_enc))
    return a @ hs_enc, a, (hs_enc, hs_dec, a)


def time_attention_backward(cache: Cache, dc: Any, /) -> tuple[Any, Any]:
    """Gradients of :func:`time_attention`: ``(dhs_enc (N, Te, H), dhs_dec (N, Td, H))``."""
    hs_enc, hs_dec, a = cache
    ds = softmax_backward(a, dc @ _t(hs_enc))
    return _t(a) @ dc + _t(ds) @ hs_dec, ds @ hs_enc


# --------------------------------------------------------------------------- checks


def _states(where: str, hs: Any, arg: str = "hs") -> Any:
    """`hs` as a floating ``(N, T, H)`` array with ``T >= 1``."""
    float_array(where, arg, hs)
    if hs.ndim != 3:
        fail(where, arg, "shape (N, T, H)", describe(hs))
    if int(hs.shape[1]) == 0:
        fail(where, arg, "at least one time step (T >= 1)", describe(hs))
    return hs


def _matching(where: str, arg: str, x: Any, hs: Any, ndim: int, hs_name: str = "hs") -> Any:
    """`x` on `hs`'s backend with ``N`` and ``H`` of `hs` (2-d ``(N, H)`` or 3-d ``(N, T', H)``)."""
    x = on_layer_backend(x, hs)
    float_array(where, arg, x)
    n, h = int(hs.shape[0]), int(hs.shape[2])
    want = f"({n}, {h})" if ndim == 2 else f"({n}, T, {h}) with T >= 1"
    if x.ndim != ndim or int(x.shape[0]) != n or int(x.shape[-1]) != h:
        fail(where, arg, f"shape {want}, matching {hs_name}", describe(x))
    if ndim == 3 and int(x.shape[1]) == 0:
        fail(where, arg, f"shape {want}, matching {hs_name}", describe(x))
    return x


# --------------------------------------------------------------------------- layers


class WeightSum(Book2Layer):
    """The weighted sum of the encoder states: ``forward(hs, a) -> c``."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.cache: Any = None

    def forward(self, hs: Any, a: Any) -> Any:
        """Return the context vectors ``(N, H)`` of the weights ``a (N, T)``."""
        hs = _states("WeightSum.forward", hs)
        a = on_layer_backend(a, hs)
        float_array("WeightSum.forward", "a", a)
        if tuple(a.shape) != tuple(hs.shape[:2]):
            fail("WeightSum.forward", "a", f"shape (N, T) = {tuple(hs.shape[:2])}", describe(a))
        c, self.cache = weight_sum(hs, a)
        return c

    def backward(self, dc: Any) -> tuple[Any, Any]:
        """Return ``(dhs, da)``."""
        return weight_sum_backward(forwarded(self, self.cache), dc)


class AttentionWeight(Book2Layer):
    """The attention weights ``softmax(hs . h)``: ``forward(hs, h) -> a (N, T)``."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.cache: Any = None

    def forward(self, hs: Any, h: Any) -> Any:
        """Return the weights ``(N, T)`` of the decoder state ``h (N, H)`` over `hs`."""
        hs = _states("AttentionWeight.forward", hs)
        h = _matching("AttentionWeight.forward", "h", h, hs, 2)
        a, self.cache = attention_weight(hs, h)
        return a

    def backward(self, da: Any) -> tuple[Any, Any]:
        """Return ``(dhs, dh)``."""
        return attention_weight_backward(forwarded(self, self.cache), da)


class Attention(Book2Layer):
    """:class:`AttentionWeight` then :class:`WeightSum`; the weights kept in ``attention_weight``.

    ``forward(hs, h)`` returns the context vector of the decoder state `h`.
    """

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.attention_weight_layer = AttentionWeight()
        self.weight_sum_layer = WeightSum()
        self.attention_weight: Any = None

    def forward(self, hs: Any, h: Any) -> Any:
        """Return the context vector ``(N, H)`` of the decoder state ``h (N, H)``."""
        a = self.attention_weight_layer.forward(hs, h)
        out = self.weight_sum_layer.forward(hs, a)
        self.attention_weight = a
        return out

    def backward(self, dout: Any) -> tuple[Any, Any]:
        """Return ``(dhs, dh)``."""
        dhs0, da = self.weight_sum_layer.backward(dout)
        dhs1, dh = self.attention_weight_layer.backward(da)
        return dhs0 + dhs1, dh


class TimeAttention(Book2Layer):
    """Attention of every decoder state: ``forward(hs_enc, hs_dec) -> (N, Td, H)``.

    ``attention_weights`` is the list of the ``Td`` weight arrays ``(N, Te)``,
    one per decoder step, as in the book.
    """

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.cache: Any = None
        self.attention_weights: Any = None

    def forward(self, hs_enc: Any, hs_dec: Any) -> Any:
        """Return the context vectors ``(N, Td, H)`` of the decoder states ``hs_dec``."""
        where = "TimeAttention.forward"
        hs_enc = _states(where, hs_enc, "hs_enc")
        hs_dec = _matching(where, "hs_dec", hs_dec, hs_enc, 3, "hs_enc")
        c, a, self.cache = time_attention(hs_enc, hs_dec)
        self.attention_weights = [a[:, t, :] for t in range(int(a.shape[1]))]
        return c

    def backward(self, dout: Any) -> tuple[Any, Any]:
        """Return ``(dhs_enc, dhs_dec)``.

        The book's ``AttentionDecoder.backward`` adds into ``dhs_enc``
        (``denc_hs[:, -1] += dh``): on JAX, whose arrays cannot be written,
        ``dhs_enc`` is a NumPy copy (:func:`~xplayers.book2._common.writable`);
        the encoder's layers take it back.
        """
        dhs_enc, dhs_dec = time_attention_backward(forwarded(self, self.cache), dout)
        return writable(dhs_enc), dhs_dec
