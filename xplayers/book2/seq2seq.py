"""Volume 2's sequence-to-sequence models (``ch07/seq2seq.py``, ``peeky_seq2seq.py``, ``ch08``).

:class:`Seq2seq`, :class:`PeekySeq2seq` and :class:`AttentionSeq2seq` keep the
book's constructors ``(vocab_size, wordvec_size, hidden_size)``, its
attributes (``encoder``, ``decoder``, ``softmax``, ``params``, ``grads``) and
methods: ``forward(xs, ts)`` (the mean loss of predicting ``ts[:, 1:]`` from
``ts[:, :-1]`` after encoding ``xs``), ``backward(dout=1)``,
``generate(xs, start_id, sample_size)`` (greedy decoding of one question,
a list of ids), ``save_params``/``load_params``. The weights are drawn as
in the book, ``np.random.randn`` scaled by ``1/100`` (embeddings) or
``1/sqrt(fan_in)``, in the book's order; ``rng=`` draws them from a
:class:`numpy.random.Generator` instead, and ``dtype=`` chooses float64.

``params`` and ``grads``
------------------------
Each access returns a list of the layers' current arrays. Assigning an item
(``model.params[i] = new``, which the optimizers of :mod:`xplayers.book2` do
where arrays are immutable, on JAX) also replaces the array in the layer
that owns it, so ``optimizer.update(model.params, model.grads)`` trains
the model on every backend, as the book's line does on NumPy.

Generation
----------
:meth:`Seq2seq.generate_batch` decodes a batch of questions at once: each
step's argmax stays on the device and is fed back as the next input, and
the ids are read back to the host once, at the end (``generate``, the
book's one-question form, reads them once too).

Parameter files
---------------
``save_params(file_name=None)`` writes ``ClassName.npz`` (the book writes
``ClassName.pkl`` with pickle, in float16): a NumPy ``.npz`` archive of the
parameters in their own dtype, written atomically
(:func:`xplayers.io.atomic_writer`), with a JSON entry naming the class and
the shapes. ``load_params`` reads it with ``allow_pickle=False`` and
checks the class, count, shapes and dtypes before any weight changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from array_api_compat import device

from xplayers._files import atomic_writer
from xplayers._validation import describe, dtype_name, fail, float_dtype, positive_int
from xplayers.backend import namespace, to_numpy
from xplayers.book2._common import as_tokens, forwarded, on_layer_backend, store
from xplayers.book2.attention import TimeAttention, time_attention_backward
from xplayers.book2.time_layers import TimeAffine, TimeEmbedding, TimeLSTM, TimeSoftmaxWithLoss
from xplayers.errors import ModelFileError
from xplayers.sequence import embedding

__all__ = [
    "PARAMS_KEY",
    "AttentionDecoder",
    "AttentionEncoder",
    "AttentionSeq2seq",
    "Decoder",
    "Encoder",
    "PeekyDecoder",
    "PeekySeq2seq",
    "Seq2seq",
]

#: The archive entry of a parameter file holding its JSON header.
PARAMS_KEY = "__xplayers_book2__"

Draw = Callable[..., npt.NDArray[Any]]


class _Slots(list[Any]):
    """A list of the layers' arrays; assigning an item also assigns it in the owning layer."""

    def __init__(self, slots: list[tuple[list[Any], int]]) -> None:
        super().__init__(owner[j] for owner, j in slots)
        self._slots = slots

    def __setitem__(self, i: Any, value: Any) -> None:
        if not isinstance(i, int):
            raise TypeError("model.params and model.grads take one index at a time")
        super().__setitem__(i, value)
        owner, j = self._slots[i]
        owner[j] = value


class _Model:
    """``params``/``grads`` linked to the layers' lists (see the module doc)."""

    def _parts(self) -> list[Any]:
        raise NotImplementedError

    def _slots(self, kind: str) -> list[tuple[list[Any], int]]:
        out: list[tuple[list[Any], int]] = []
        for part in self._parts():
            if isinstance(part, _Model):
                out += part._slots(kind)
            else:
                owner = getattr(part, kind)
                out += [(owner, j) for j in range(len(owner))]
        return out

    @property
    def params(self) -> list[Any]:
        """The parameters of every layer, in the book's order."""
        return _Slots(self._slots("params"))

    @property
    def grads(self) -> list[Any]:
        """The gradients, one per parameter."""
        return _Slots(self._slots("grads"))


def _draw(rng: np.random.Generator | None) -> Draw:
    """``np.random.randn`` (the book's global generator), or `rng`'s standard normal."""
    if rng is None:
        return np.random.randn
    return lambda *shape: rng.standard_normal(shape)


def _sizes(where: str, vocab_size: int, wordvec_size: int, hidden_size: int) -> tuple[int, ...]:
    return tuple(
        positive_int(where, name, value)
        for name, value in (
            ("vocab_size", vocab_size),
            ("wordvec_size", wordvec_size),
            ("hidden_size", hidden_size),
        )
    )


class _Coder(_Model):
    """An embedding and an LSTM (and an affine layer for decoders), weights drawn as the book."""

    embed: TimeEmbedding
    lstm: TimeLSTM

    def __init__(
        self,
        vocab_size: int,
        wordvec_size: int,
        hidden_size: int,
        *,
        rng: np.random.Generator | None = None,
        dtype: str = "float32",
    ) -> None:
        V, D, H = _sizes(type(self).__name__, vocab_size, wordvec_size, hidden_size)
        self._dtype = float_dtype(type(self).__name__, dtype)
        self._rn = _draw(rng)
        self._build(V, D, H)
        del self._rn  # the generator is needed only while the weights are drawn

    def _lstm_weights(self, D: int, H: int) -> tuple[Any, Any, Any]:
        """The book's ``lstm_Wx, lstm_Wh, lstm_b`` for inputs of size `D`."""
        Wx = (self._rn(D, 4 * H) / np.sqrt(D)).astype(self._dtype)
        Wh = (self._rn(H, 4 * H) / np.sqrt(H)).astype(self._dtype)
        return Wx, Wh, np.zeros(4 * H, dtype=self._dtype)

    def _build(self, V: int, D: int, H: int) -> None:
        raise NotImplementedError

    @property
    def _vocab(self) -> int:
        return int(self.embed.params[0].shape[0])

    @property
    def _hidden(self) -> int:
        return int(self.lstm.params[1].shape[0])


class Encoder(_Coder):
    """Chapter 7's encoder: ``forward(xs (N, T)) -> h (N, H)``, the last hidden state."""

    def _build(self, V: int, D: int, H: int) -> None:
        embed_W = (self._rn(V, D) / 100).astype(self._dtype)
        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(*self._lstm_weights(D, H), stateful=False)
        self.hs: Any = None

    def _parts(self) -> list[Any]:
        return [self.embed, self.lstm]

    def forward(self, xs: Any) -> Any:
        """Return the last hidden state ``(N, H)`` after reading the ids ``xs (N, T)``."""
        hs = self.lstm.forward(self.embed.forward(xs))
        self.hs = hs
        return hs[:, -1, :]

    def backward(self, dh: Any) -> None:
        """Back-propagate ``dh (N, H)`` of the last state; store the gradients."""
        hs = self.hs
        xp = namespace(hs)
        n, t, h = (int(s) for s in hs.shape)
        zeros = xp.zeros((n, t - 1, h), dtype=hs.dtype, device=device(hs))
        dhs = xp.concat((zeros, xp.reshape(dh, (n, 1, h))), axis=1)
        self.embed.backward(self.lstm.backward(dhs))


class AttentionEncoder(Encoder):
    """Chapter 8's encoder: ``forward(xs) -> hs (N, T, H)``, every hidden state."""

    def forward(self, xs: Any) -> Any:
        """Return the hidden states ``(N, T, H)``."""
        return self.lstm.forward(self.embed.forward(xs))

    def backward(self, dhs: Any) -> None:
        """Back-propagate ``dhs (N, T, H)``; store the gradients."""
        self.embed.backward(self.lstm.backward(dhs))


class Decoder(_Coder):
    """Chapter 7's decoder: an LSTM started from the encoder's state, an affine layer to scores."""

    affine: TimeAffine
    #: The size of the LSTM's input and of the affine layer's, as multiples: (D + k*H, m*H).
    lstm_extra = 0
    affine_width = 1

    def _build(self, V: int, D: int, H: int) -> None:
        embed_W = (self._rn(V, D) / 100).astype(self._dtype)
        lstm = self._lstm_weights(D + self.lstm_extra * H, H)
        W = self.affine_width * H
        affine_W = (self._rn(W, V) / np.sqrt(W)).astype(self._dtype)
        affine_b = np.zeros(V, dtype=self._dtype)
        self.embed = TimeEmbedding(embed_W)
        self.lstm = TimeLSTM(*lstm, stateful=True)
        self.affine = TimeAffine(affine_W, affine_b)

    def _parts(self) -> list[Any]:
        return [self.embed, self.lstm, self.affine]

    def forward(self, xs: Any, h: Any) -> Any:
        """Return the scores ``(N, T, V)`` of the ids ``xs (N, T)`` from the state ``h (N, H)``."""
        self.lstm.set_state(h)
        return self.affine.forward(self.lstm.forward(self.embed.forward(xs)))

    def backward(self, dscore: Any) -> Any:
        """Store the gradients; return ``dh (N, H)``, that of the state given to ``forward``."""
        self.embed.backward(self.lstm.backward(self.affine.backward(dscore)))
        return self.lstm.dh

    def _start(self, h: Any) -> None:
        self.lstm.set_state(h)

    def _step(self, ids: Any, memory: Any) -> Any:
        """The scores ``(N, 1, V)`` of one step; `ids` ``(N, 1)`` on the device, unchecked."""
        out = embedding(self.embed.params[0], ids)
        return self.affine.forward(self.lstm.forward(out))

    def sample_ids(self, memory: Any, start_id: int, sample_size: int) -> Any:
        """Greedy decoding of the whole batch: ``(N, sample_size)`` ids on the device.

        `memory` is what :meth:`forward` takes besides ``xs`` (``h`` here).
        Nothing is read on the host.
        """
        where = f"{type(self).__name__}.generate"
        start = _start_id(where, start_id, self._vocab)
        sample_size = _sample_size(where, sample_size)
        memory = on_layer_backend(memory, self.lstm.params[0])
        self._start(_last(memory))
        xp = namespace(memory)
        n = int(memory.shape[0])
        ids = xp.full((n, 1), start, dtype=xp.int64, device=device(memory))
        sampled = []
        for _ in range(sample_size):
            score = self._step(ids, memory)
            ids = xp.reshape(xp.argmax(score[:, 0, :], axis=-1), (n, 1))
            sampled.append(ids)
        if not sampled:
            return xp.zeros((n, 0), dtype=xp.int64, device=device(memory))
        return xp.concat(sampled, axis=1)

    def generate(self, h: Any, start_id: int, sample_size: int) -> list[int]:
        """The book's greedy decoding of one sequence: `sample_size` ids after `start_id`."""
        if int(h.shape[0]) != 1:
            fail(
                f"{type(self).__name__}.generate",
                "h",
                "the state of one sequence, N = 1 (sample_ids decodes a batch)",
                describe(h),
            )
        return [int(i) for i in to_numpy(self.sample_ids(h, start_id, sample_size))[0]]


def _last(memory: Any) -> Any:
    """The decoder's first state: `memory` itself, or the last step of the encoder's ``hs``."""
    return memory[:, -1, :] if memory.ndim == 3 else memory


def _start_id(where: str, start_id: object, vocab: int) -> int:
    if isinstance(start_id, bool) or not isinstance(start_id, (int, np.integer)):
        try:
            start_id = int(to_numpy(start_id).reshape(()))
        except (TypeError, ValueError, AttributeError):
            fail(where, "start_id", f"an integer id in [0, {vocab})", describe(start_id))
    if not 0 <= int(start_id) < vocab:
        fail(where, "start_id", f"an integer id in [0, {vocab})", repr(int(start_id)))
    return int(start_id)


def _sample_size(where: str, sample_size: object) -> int:
    if isinstance(sample_size, bool) or not isinstance(sample_size, (int, np.integer)):
        fail(where, "sample_size", "an integer >= 0", describe(sample_size))
    if int(sample_size) < 0:
        fail(where, "sample_size", "an integer >= 0", repr(int(sample_size)))
    return int(sample_size)


class PeekyDecoder(Decoder):
    """Chapter 7's peeky decoder: the encoder's state joins the LSTM's and the affine's inputs."""

    lstm_extra = 1
    affine_width = 2

    def __init__(
        self,
        vocab_size: int,
        wordvec_size: int,
        hidden_size: int,
        *,
        rng: np.random.Generator | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__(vocab_size, wordvec_size, hidden_size, rng=rng, dtype=dtype)
        self.cache: Any = None

    def _peek(self, h: Any, out: Any) -> Any:
        """``concat(h repeated over the steps of out, out)`` on the last axis."""
        xp = namespace(out)
        n, t = int(out.shape[0]), int(out.shape[1])
        hs = xp.broadcast_to(xp.reshape(h, (n, 1, int(h.shape[1]))), (n, t, int(h.shape[1])))
        return xp.concat((hs, out), axis=2)

    def forward(self, xs: Any, h: Any) -> Any:
        """Return the scores ``(N, T, V)``; `h` enters every step."""
        self.lstm.set_state(h)
        h = self.lstm.h
        out = self._peek(h, self.embed.forward(xs))
        out = self._peek(h, self.lstm.forward(out))
        self.cache = int(h.shape[1])
        return self.affine.forward(out)

    def backward(self, dscore: Any) -> Any:
        """Store the gradients; return ``dh``: the LSTM's plus every step's peek."""
        H = self.cache
        xp = namespace(dscore)
        dout = self.affine.backward(dscore)
        dout, dhs0 = dout[:, :, H:], dout[:, :, :H]
        dout = self.lstm.backward(dout)
        dembed, dhs1 = dout[:, :, H:], dout[:, :, :H]
        self.embed.backward(dembed)
        return self.lstm.dh + xp.sum(dhs0 + dhs1, axis=1)

    def _step(self, ids: Any, memory: Any) -> Any:
        out = self._peek(memory, embedding(self.embed.params[0], ids))
        return self.affine.forward(self._peek(memory, self.lstm.forward(out)))


class AttentionDecoder(Decoder):
    """Chapter 8's decoder: attention over the encoder's states joins the affine layer's input."""

    affine_width = 2

    def _build(self, V: int, D: int, H: int) -> None:
        super()._build(V, D, H)
        self.attention = TimeAttention()

    def _parts(self) -> list[Any]:
        return [self.embed, self.lstm, self.attention, self.affine]

    def forward(self, xs: Any, enc_hs: Any) -> Any:
        """Return the scores ``(N, T, V)``; the state starts at ``enc_hs[:, -1]``."""
        enc_hs = on_layer_backend(enc_hs, self.lstm.params[0])
        self.lstm.set_state(enc_hs[:, -1, :])
        dec_hs = self.lstm.forward(self.embed.forward(xs))
        c = self.attention.forward(enc_hs, dec_hs)
        return self.affine.forward(namespace(c).concat((c, dec_hs), axis=2))

    def backward(self, dscore: Any) -> Any:
        """Store the gradients; return ``denc_hs (N, Te, H)``."""
        dout = self.affine.backward(dscore)
        xp = namespace(dout)
        H = int(dout.shape[2]) // 2
        dc, ddec_hs0 = dout[:, :, :H], dout[:, :, H:]
        # the pure backward: TimeAttention.backward gives a writable host copy on JAX
        denc_hs, ddec_hs1 = time_attention_backward(
            forwarded(self.attention, self.attention.cache), dc
        )
        self.embed.backward(self.lstm.backward(ddec_hs0 + ddec_hs1))
        n, t = int(denc_hs.shape[0]), int(denc_hs.shape[1])
        zeros = xp.zeros((n, t - 1, H), dtype=denc_hs.dtype, device=device(denc_hs))
        return denc_hs + xp.concat((zeros, xp.reshape(self.lstm.dh, (n, 1, H))), axis=1)

    def _step(self, ids: Any, memory: Any) -> Any:
        dec_hs = self.lstm.forward(embedding(self.embed.params[0], ids))
        c = self.attention.forward(memory, dec_hs)
        return self.affine.forward(namespace(c).concat((c, dec_hs), axis=2))


class Seq2seq(_Model):
    """Chapter 7's sequence-to-sequence model: :class:`Encoder`, :class:`Decoder`, softmax loss."""

    encoder_class: type[Encoder] = Encoder
    decoder_class: type[Decoder] = Decoder

    def __init__(
        self,
        vocab_size: int,
        wordvec_size: int,
        hidden_size: int,
        *,
        rng: np.random.Generator | None = None,
        dtype: str = "float32",
    ) -> None:
        args = (vocab_size, wordvec_size, hidden_size)
        self.encoder = self.encoder_class(*args, rng=rng, dtype=dtype)
        self.decoder = self.decoder_class(*args, rng=rng, dtype=dtype)
        self.softmax = TimeSoftmaxWithLoss()

    def _parts(self) -> list[Any]:
        return [self.encoder, self.decoder]

    def _ids(self, method: str, arg: str, ids: Any) -> Any:
        W = self.encoder.embed.params[0]
        where = f"{type(self).__name__}.{method}"
        ids = as_tokens(where, arg, ids, W, int(W.shape[0]), ndim=2)
        if int(ids.shape[1]) == 0:
            fail(where, arg, "at least one time step (T >= 1)", describe(ids))
        return ids

    def forward(self, xs: Any, ts: Any) -> Any:
        """The mean loss of predicting ``ts[:, 1:]`` from ``ts[:, :-1]`` given the questions `xs`.

        ``xs (N, T)`` are the question's ids, ``ts (N, T')`` the answer's
        with its start id first (``T' >= 2``).
        """
        where = f"{type(self).__name__}.forward"
        xs = self._ids("forward", "xs", xs)
        ts = self._ids("forward", "ts", ts)
        if int(ts.shape[1]) < 2:
            fail(where, "ts", "a start id and at least one more (T >= 2)", describe(ts))
        if int(ts.shape[0]) != int(xs.shape[0]):
            fail(where, "ts", f"{int(xs.shape[0])} rows, as xs", describe(ts))
        decoder_xs, decoder_ts = ts[:, :-1], ts[:, 1:]
        h = self.encoder.forward(xs)
        score = self.decoder.forward(decoder_xs, h)
        return self.softmax.forward(score, decoder_ts)

    def backward(self, dout: Any = 1) -> None:
        """Store every layer's gradients; returns None (the book returns the encoder's)."""
        dh = self.decoder.backward(self.softmax.backward(dout))
        self.encoder.backward(dh)

    def generate_batch(self, xs: Any, start_id: int, sample_size: int) -> npt.NDArray[Any]:
        """Greedy answers to the questions ``xs (N, T)``: an ``(N, sample_size)`` NumPy array.

        Every step's argmax stays on the device; the ids are read back once.
        """
        memory = self.encoder.forward(self._ids("generate", "xs", xs))
        return np.asarray(to_numpy(self.decoder.sample_ids(memory, start_id, sample_size)))

    def generate(self, xs: Any, start_id: int, sample_size: int) -> list[int]:
        """The book's ``generate``: the answer to one question ``xs (1, T)``, a list of ids."""
        xs = self._ids("generate", "xs", xs)
        if int(xs.shape[0]) != 1:
            fail(
                f"{type(self).__name__}.generate",
                "xs",
                "one question, shape (1, T) (generate_batch answers several)",
                describe(xs),
            )
        return [int(i) for i in self.generate_batch(xs, start_id, sample_size)[0]]

    def save_params(self, file_name: str | os.PathLike[str] | None = None) -> Path:
        """Write the parameters to `file_name` (``ClassName.npz``) atomically, without pickle."""
        target = Path(f"{type(self).__name__}.npz" if file_name is None else file_name)
        arrays = {f"p{i}": np.asarray(to_numpy(p)) for i, p in enumerate(self.params)}
        header = {
            "class": type(self).__name__,
            "params": [[list(a.shape), str(a.dtype)] for a in arrays.values()],
        }
        members: dict[str, Any] = {
            PARAMS_KEY: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            **arrays,
        }
        with atomic_writer(target) as f:
            np.savez(f, **members)
        return target

    def load_params(self, file_name: str | os.PathLike[str] | None = None) -> None:
        """Read parameters written by :meth:`save_params`; all are checked before any is set."""
        path = Path(f"{type(self).__name__}.npz" if file_name is None else file_name)
        values = _read_params(path, type(self).__name__, self.params)
        params = self.params
        for i, value in enumerate(values):
            store(params, i, on_layer_backend(value, params[i]))


def _read_params(path: Path, cls: str, params: list[Any]) -> list[npt.NDArray[Any]]:
    """The arrays of a parameter file, checked against the model's `params`."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            files = set(archive.files)
            if PARAMS_KEY not in files:
                raise ModelFileError(f"{path}: not a parameter file of xplayers.book2 (no header)")
            header = json.loads(bytes(archive[PARAMS_KEY]).decode())
            values = [archive[f"p{i}"] for i in range(len(params)) if f"p{i}" in files]
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        if isinstance(exc, FileNotFoundError):
            raise
        raise ModelFileError(f"{path}: not a readable parameter file ({exc})") from None
    if header.get("class") != cls:
        raise ModelFileError(f"{path}: holds the parameters of {header.get('class')!r}, not {cls}")
    if len(values) != len(params) or len(files) != len(params) + 1:
        raise ModelFileError(f"{path}: holds {len(files) - 1} parameters; {cls} has {len(params)}")
    for i, (value, p) in enumerate(zip(values, params, strict=True)):
        want = tuple(int(s) for s in p.shape)
        if value.shape != want or value.dtype.kind != "f":
            raise ModelFileError(
                f"{path}: parameter {i} is {value.dtype} of shape {value.shape}; "
                f"{cls} needs a floating array of shape {want}"
            )
    return [v.astype(dtype_name(p.dtype)) for v, p in zip(values, params, strict=True)]


class PeekySeq2seq(Seq2seq):
    """:class:`Seq2seq` with the :class:`PeekyDecoder`."""

    decoder_class = PeekyDecoder


class AttentionSeq2seq(Seq2seq):
    """Chapter 8's model: :class:`AttentionEncoder` and :class:`AttentionDecoder`."""

    encoder_class = AttentionEncoder
    decoder_class = AttentionDecoder
