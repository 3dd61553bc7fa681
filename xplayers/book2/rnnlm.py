"""Volume 2's language models: chapter 5's ``SimpleRnnlm`` to chapter 7's generators.

Each class has the book's constructor arguments, layers, attributes
(``layers``, ``loss_layer``, ``params``, ``grads``, ``rnn_layer`` /
``lstm_layer`` / ``lstm_layers`` / ``drop_layers``) and methods
(``predict``, ``forward``, ``backward``, ``reset_state``; ``save_params``
and ``load_params`` from :class:`BaseModel`; ``generate``, ``get_state``
and ``set_state`` for the generators). The weights are drawn on the host
as the book draws them, ``randn(...) / sqrt(fan_in)``, in the book's
order, from the global ``numpy.random`` (so ``np.random.seed(s)`` gives
the book's initial weights) or, with ``seed=s``, from
``numpy.random.RandomState(s)``, the same numbers; the layers move them
to the current backend once (:mod:`xplayers.book2`).

Additions to the book's signatures, all keyword-only: ``seed`` and
``dtype`` (``"float32"``, the book's ``'f'``, or ``"float64"``) for the
constructors, ``seed`` for ``generate`` and ``metadata`` for
``save_params``.

Weight tying
------------
``BetterRnnlm`` gives its output layer ``TimeAffine(embed_W.T, b)``: the
same matrix as the embedding, transposed. Its ``params`` list holds both
(as the book's does); ``model.sharing``
(:class:`xplayers.book2._training.SharedWeights`) says which entries
repeat another, found once when the model is built, and the trainer sums
their gradients with it at every step (the book searches for them at
every step, ``remove_duplicate``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xplayers._validation import fail, float_dtype, number_in, positive_int, seed_or_none
from xplayers.backend import to_numpy
from xplayers.book2._cells import hold
from xplayers.book2._common import on_layer_backend
from xplayers.book2._params_file import npz_path, read_params, write_params
from xplayers.book2._training import SharedWeights
from xplayers.book2.time_layers import (
    TimeAffine,
    TimeDropout,
    TimeEmbedding,
    TimeLSTM,
    TimeRNN,
    TimeSoftmaxWithLoss,
)
from xplayers.errors import ModelFileError

__all__ = [
    "MODELS",
    "BaseModel",
    "BetterRnnlm",
    "BetterRnnlmGen",
    "Rnnlm",
    "RnnlmGen",
    "SimpleRnnlm",
    "load_model",
]


def _normal(seed: int | None) -> Any:
    """The book's ``np.random.randn``: the global generator, or ``RandomState(seed)``'s."""
    return np.random.randn if seed is None else np.random.RandomState(seed).randn


class BaseModel:
    """The book's ``common/base_model.py``: ``params``/``grads`` lists and their files.

    Subclasses set ``layers``, ``loss_layer``, ``params`` and ``grads`` and
    call :meth:`_collect`. A subclass that sets ``params`` and ``grads``
    itself, as the book's model files do (``ch06/rnnlm.py`` on
    ``common/base_model.py`` replaced by ``from xplayers.book2 import *``),
    gets its shared weights found from ``params`` when they are first needed
    and an empty :meth:`config`.
    """

    params: list[Any]
    grads: list[Any]
    layers: list[Any]
    loss_layer: Any

    def _collect(self, config: dict[str, Any]) -> None:
        """Gather the layers' ``params`` and ``grads`` as the book does; find shared weights."""
        self._config = config
        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads
        hold(self)
        self._sharing = SharedWeights(self.params, self)

    @property
    def sharing(self) -> SharedWeights:
        """The weights that several layers share (ties), found once from ``params``."""
        found: SharedWeights | None = self.__dict__.get("_sharing")
        if found is None:
            found = self._sharing = SharedWeights(self.params, self)
        return found

    def reset_state(self) -> None:
        """Forget the recurrent layers' states (each model names its own layers)."""

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this model (its class: ``type(model)``)."""
        return dict(self.__dict__.get("_config", {}))

    def forward(self, xs: Any, ts: Any) -> Any:
        """The mean loss of the scores of ``xs (N, T)`` against the labels ``ts (N, T)``."""
        return self.loss_layer.forward(self.predict(xs), ts)

    def predict(self, xs: Any) -> Any:
        """The scores ``(N, T, V)`` of the word ids ``xs (N, T)``."""
        for layer in self.layers:
            xs = layer.forward(xs)
        return xs

    def backward(self, dout: Any = 1) -> Any:
        """Fill every layer's ``grads``; return the gradient reaching the first layer."""
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        self.grads[:] = [g for layer in self.layers for g in layer.grads]
        return dout

    def save_params(
        self,
        file_name: str | os.PathLike[str] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Path:
        """Save the weights to an ``.npz`` file (never a pickle); return its path.

        The default name is ``CLASS.npz`` (the book: ``CLASS.pkl``); a name
        ending in ``.pkl`` is written as the same name ending in ``.npz``.
        A tied weight is stored once; the values keep their dtype (the book
        stores float16). `metadata` (JSON) is stored beside them. The save
        is atomic: a failure leaves an existing file as it was.
        """
        name = type(self).__name__
        path = npz_path(file_name, name)
        arrays = [np.ascontiguousarray(to_numpy(p)) for p in self.sharing.unique(self.params)]
        return write_params(path, name, self.config(), arrays, metadata)

    def load_params(self, file_name: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Load weights saved by :meth:`save_params` (names as there); return the file's metadata.

        The file is checked before any weight changes: its arrays must
        match this model's distinct weights in number and shape and be
        finite; they are converted to the model's dtype and moved to its
        backend. Pickles are never read: a ``.pkl`` name means the ``.npz``
        of the same name.

        Raises
        ------
        xplayers.errors.ModelFileError
            A missing, damaged or foreign file, or weights of other shapes.
        """
        name = type(self).__name__
        path = npz_path(file_name, name)
        doc, arrays = read_params(path)
        kept = self.sharing.unique(self.params)
        shapes = [tuple(int(n) for n in p.shape) for p in kept]
        got = [tuple(a.shape) for a in arrays]
        if got != shapes:
            raise ModelFileError(
                f"{name}.load_params: model file {str(path)!r} holds weights of shapes {got} "
                f"(a {doc.get('class')} with {doc.get('config')}); this {name} has {shapes}"
            )
        for a, e in zip(arrays, doc["params"], strict=True):
            if not np.all(np.isfinite(a)):
                raise ModelFileError(
                    f"{name}.load_params: model file {str(path)!r}: weight {e['name']!r} holds "
                    "NaN or infinite values (a diverged model; refused)"
                )
        dtype = to_numpy(kept[0]).dtype if kept else np.float32
        values = [
            on_layer_backend(np.array(a, dtype=dtype), p) for a, p in zip(arrays, kept, strict=True)
        ]
        self.sharing.hand_back(kept, values)  # every list holding a weight, ties included
        meta = doc.get("metadata", {})
        return dict(meta) if isinstance(meta, dict) else {}


def _sizes(where: str, vocab_size: Any, wordvec_size: Any, hidden_size: Any) -> tuple[int, ...]:
    return (
        positive_int(where, "vocab_size", vocab_size),
        positive_int(where, "wordvec_size", wordvec_size),
        positive_int(where, "hidden_size", hidden_size),
    )


class SimpleRnnlm(BaseModel):
    """Chapter 5: ``TimeEmbedding`` - ``TimeRNN`` (stateful) - ``TimeAffine``, softmax loss."""

    def __init__(
        self,
        vocab_size: int,
        wordvec_size: int,
        hidden_size: int,
        *,
        seed: int | None = None,
        dtype: str = "float32",
    ) -> None:
        V, D, H = _sizes("SimpleRnnlm", vocab_size, wordvec_size, hidden_size)
        dtype = float_dtype("SimpleRnnlm", dtype)
        rn = _normal(seed_or_none("SimpleRnnlm", "seed", seed))
        embed_W = (rn(V, D) / 100).astype(dtype)
        rnn_Wx = (rn(D, H) / np.sqrt(D)).astype(dtype)
        rnn_Wh = (rn(H, H) / np.sqrt(H)).astype(dtype)
        rnn_b = np.zeros(H, dtype=dtype)
        affine_W = (rn(H, V) / np.sqrt(H)).astype(dtype)
        affine_b = np.zeros(V, dtype=dtype)
        self.layers = [
            TimeEmbedding(embed_W),
            TimeRNN(rnn_Wx, rnn_Wh, rnn_b, stateful=True),
            TimeAffine(affine_W, affine_b),
        ]
        self.loss_layer = TimeSoftmaxWithLoss()
        self.rnn_layer = self.layers[1]
        self._collect({"vocab_size": V, "wordvec_size": D, "hidden_size": H, "dtype": dtype})

    def reset_state(self) -> None:
        """Forget the RNN's hidden state."""
        self.rnn_layer.reset_state()


class Rnnlm(BaseModel):
    """Chapter 6: ``TimeEmbedding`` - ``TimeLSTM`` (stateful) - ``TimeAffine``."""

    def __init__(
        self,
        vocab_size: int = 10000,
        wordvec_size: int = 100,
        hidden_size: int = 100,
        *,
        seed: int | None = None,
        dtype: str = "float32",
    ) -> None:
        where = type(self).__name__
        V, D, H = _sizes(where, vocab_size, wordvec_size, hidden_size)
        dtype = float_dtype(where, dtype)
        rn = _normal(seed_or_none(where, "seed", seed))
        embed_W = (rn(V, D) / 100).astype(dtype)
        lstm_Wx = (rn(D, 4 * H) / np.sqrt(D)).astype(dtype)
        lstm_Wh = (rn(H, 4 * H) / np.sqrt(H)).astype(dtype)
        lstm_b = np.zeros(4 * H, dtype=dtype)
        affine_W = (rn(H, V) / np.sqrt(H)).astype(dtype)
        affine_b = np.zeros(V, dtype=dtype)
        self.layers = [
            TimeEmbedding(embed_W),
            TimeLSTM(lstm_Wx, lstm_Wh, lstm_b, stateful=True),
            TimeAffine(affine_W, affine_b),
        ]
        self.loss_layer = TimeSoftmaxWithLoss()
        self.lstm_layer = self.layers[1]
        self._collect({"vocab_size": V, "wordvec_size": D, "hidden_size": H, "dtype": dtype})

    def reset_state(self) -> None:
        """Forget the LSTM's hidden and cell states."""
        self.lstm_layer.reset_state()


class BetterRnnlm(BaseModel):
    """Chapter 6's better model: two LSTM layers, dropout after each layer, tied weights.

    Layers: ``TimeEmbedding(embed_W)``, ``TimeDropout``, ``TimeLSTM``,
    ``TimeDropout``, ``TimeLSTM``, ``TimeDropout``,
    ``TimeAffine(embed_W.T, b)`` (Zaremba et al. 2014; Press and Wolf
    2016; Inan et al. 2016). With a `seed`, the dropout masks come from
    each layer's own generator, seeded from it; without one, from the
    global ``numpy.random`` as the book draws them, so after the same
    ``np.random.seed`` the weights and the masks are the book's.
    """

    def __init__(
        self,
        vocab_size: int = 10000,
        wordvec_size: int = 650,
        hidden_size: int = 650,
        dropout_ratio: float = 0.5,
        *,
        seed: int | None = None,
        dtype: str = "float32",
    ) -> None:
        where = type(self).__name__
        V, D, H = _sizes(where, vocab_size, wordvec_size, hidden_size)
        ratio = number_in(where, "dropout_ratio", dropout_ratio, low=0.0, high=1.0, low_open=False)
        dtype = float_dtype(where, dtype)
        seed = seed_or_none(where, "seed", seed)
        if D != H:
            fail(where, "wordvec_size", f"hidden_size ({H}) for weight tying", str(D))
        rs = np.random if seed is None else np.random.RandomState(seed)
        rn = rs.randn
        embed_W = (rn(V, D) / 100).astype(dtype)
        lstm_Wx1 = (rn(D, 4 * H) / np.sqrt(D)).astype(dtype)
        lstm_Wh1 = (rn(H, 4 * H) / np.sqrt(H)).astype(dtype)
        lstm_b1 = np.zeros(4 * H, dtype=dtype)
        lstm_Wx2 = (rn(H, 4 * H) / np.sqrt(H)).astype(dtype)
        lstm_Wh2 = (rn(H, 4 * H) / np.sqrt(H)).astype(dtype)
        lstm_b2 = np.zeros(4 * H, dtype=dtype)
        affine_b = np.zeros(V, dtype=dtype)
        drop_seeds: list[int | None] = (
            [None] * 3 if seed is None else [int(s) for s in rs.randint(0, 2**31 - 1, size=3)]
        )
        self.layers = [
            TimeEmbedding(embed_W),
            TimeDropout(ratio, seed=drop_seeds[0]),
            TimeLSTM(lstm_Wx1, lstm_Wh1, lstm_b1, stateful=True),
            TimeDropout(ratio, seed=drop_seeds[1]),
            TimeLSTM(lstm_Wx2, lstm_Wh2, lstm_b2, stateful=True),
            TimeDropout(ratio, seed=drop_seeds[2]),
            TimeAffine(embed_W.T, affine_b),  # weight tying
        ]
        self.loss_layer = TimeSoftmaxWithLoss()
        self.lstm_layers = [self.layers[2], self.layers[4]]
        self.drop_layers = [self.layers[1], self.layers[3], self.layers[5]]
        self._collect(
            {
                "vocab_size": V,
                "wordvec_size": D,
                "hidden_size": H,
                "dropout_ratio": ratio,
                "dtype": dtype,
            }
        )

    def predict(self, xs: Any, train_flg: bool = False) -> Any:
        """The scores ``(N, T, V)``; dropout only with `train_flg`."""
        for layer in self.drop_layers:
            layer.train_flg = bool(train_flg)
        return super().predict(xs)

    def forward(self, xs: Any, ts: Any, train_flg: bool = True) -> Any:
        """The mean loss; dropout on unless `train_flg` is False (evaluation)."""
        return self.loss_layer.forward(self.predict(xs, train_flg), ts)

    def reset_state(self) -> None:
        """Forget both LSTM layers' states."""
        for layer in self.lstm_layers:
            layer.reset_state()


def _softmax_host(score: Any) -> npt.NDArray[np.float64]:
    s = np.asarray(to_numpy(score), dtype=np.float64).ravel()
    e = np.exp(s - s.max())
    p: npt.NDArray[np.float64] = e / e.sum()
    return p


class _Generator:
    """The book's ``generate`` (chapter 7): sample word after word from the model's softmax."""

    params: list[Any]

    def generate(
        self,
        start_id: int,
        skip_ids: Iterable[int] | None = None,
        sample_size: int = 100,
        *,
        seed: int | None = None,
    ) -> list[int]:
        """`sample_size` word ids starting with `start_id`, each sampled given the ones before.

        The scores are turned into probabilities and sampled on the host,
        as the book does, from the global ``numpy.random`` or, with `seed`,
        from ``numpy.random.RandomState(seed)``. A sampled id in `skip_ids`
        is drawn again. The model's state carries over between calls; call
        ``reset_state`` to start afresh.
        """
        where = f"{type(self).__name__}.generate"
        V = int(self.params[0].shape[0])
        if isinstance(start_id, bool) or not isinstance(start_id, (int, np.integer)):
            fail(where, "start_id", "an integer word id", repr(start_id))
        if not 0 <= int(start_id) < V:
            fail(where, "start_id", f"an id in [0, {V})", repr(start_id))
        sample_size = positive_int(where, "sample_size", sample_size)
        skip = set() if skip_ids is None else {int(i) for i in skip_ids}
        if set(range(V)) <= skip:
            fail(where, "skip_ids", "at least one id that may be sampled", f"all {V} ids")
        rs = np.random if seed_or_none(where, "seed", seed) is None else np.random.RandomState(seed)
        model: Any = self  # a model class: predict comes from there
        word_ids = [int(start_id)]
        x = int(start_id)
        while len(word_ids) < sample_size:
            p = _softmax_host(model.predict(np.array(x).reshape(1, 1)))
            sampled = int(rs.choice(len(p), size=1, p=p)[0])
            if sampled not in skip:
                x = sampled
                word_ids.append(x)
        return word_ids


class RnnlmGen(_Generator, Rnnlm):
    """:class:`Rnnlm` that writes text: ``generate``, ``get_state``, ``set_state``."""

    def get_state(self) -> tuple[Any, Any]:
        """The LSTM's ``(h, c)``."""
        return self.lstm_layer.h, self.lstm_layer.c

    def set_state(self, state: tuple[Any, Any]) -> None:
        """Set the LSTM's ``(h, c)``."""
        self.lstm_layer.set_state(*state)


class BetterRnnlmGen(_Generator, BetterRnnlm):
    """:class:`BetterRnnlm` that writes text, without dropout: ``generate``, ``get_state``..."""

    def get_state(self) -> list[tuple[Any, Any]]:
        """Each LSTM layer's ``(h, c)``."""
        return [(layer.h, layer.c) for layer in self.lstm_layers]

    def set_state(self, states: list[tuple[Any, Any]]) -> None:
        """Set each LSTM layer's ``(h, c)``."""
        for layer, state in zip(self.lstm_layers, states, strict=True):
            layer.set_state(*state)


#: The model classes a ``save_params`` file may name, by class name.
MODELS: dict[str, type[BaseModel]] = {
    c.__name__: c for c in (SimpleRnnlm, Rnnlm, BetterRnnlm, RnnlmGen, BetterRnnlmGen)
}


def load_model(
    file_name: str | os.PathLike[str], *, generator: bool = False
) -> tuple[BaseModel, dict[str, Any]]:
    """Build the model a ``save_params`` file describes and load it; return it and its metadata.

    With `generator`, an ``Rnnlm`` or ``BetterRnnlm`` file gives the
    matching ``RnnlmGen`` or ``BetterRnnlmGen``. The model is built on the
    current backend.
    """
    path = npz_path(file_name, "")
    doc, _ = read_params(path)
    name = str(doc.get("class"))
    if generator:
        name = {"Rnnlm": "RnnlmGen", "BetterRnnlm": "BetterRnnlmGen"}.get(name, name)
    cls = MODELS.get(name)
    if cls is None or (generator and not issubclass(cls, _Generator)):
        what = "a text generator" if generator else "an xplayers.book2 model"
        raise ModelFileError(f"model file {str(path)!r}: holds a {doc.get('class')!r}, not {what}")
    try:
        model = cls(**doc["config"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"model file {str(path)!r}: config {doc['config']} ({exc})") from None
    meta = model.load_params(path)
    return model, meta
