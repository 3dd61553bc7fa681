"""The Dropout layer (the book's chapter 6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from xplayers._validation import float_array
from xplayers.functional import dropout_draw, dropout_seed
from xplayers.layers._base import NO_STATE, Layer, LayerFn
from xplayers.layers._window import check_dout, unit_interval

__all__ = ["Dropout", "DropoutFn"]


@dataclass(frozen=True)
class DropoutFn(LayerFn):
    """The pure pair of :class:`Dropout` (the book's non-inverted dropout).

    State: ``seed`` (the words of :func:`~xplayers.functional.dropout_seed`)
    and ``count`` (masks drawn so far). A training forward draws mask number
    ``count`` (:func:`~xplayers.functional.dropout_draw`) and returns the
    state with ``count + 1``; a test-time forward scales by ``1 - ratio``
    and returns the state as it was. A state may also hold ``skip``: the
    rows of a larger batch before this one (a data-parallel chunk draws its
    rows of the whole batch's mask; the new state leaves ``skip`` out).
    """

    ratio: float = 0.5

    state_names: ClassVar[tuple[str, ...]] = ("seed", "count")

    def forward(
        self, params: Mapping[str, Any], x: Any, state: Mapping[str, Any], *, train: bool = True
    ) -> tuple[Any, dict[str, Any], Mapping[str, Any]]:
        """``(x * mask, {"mask", "train"}, state with count + 1)``; ``x * (1 - ratio)`` at test."""
        if not train:
            return x * (1.0 - self.ratio), {"mask": None, "train": False}, state
        seed, count = state["seed"], state["count"]
        mask = dropout_draw(x, seed, count, self.ratio, skip=state.get("skip", 0))
        return x * mask, {"mask": mask, "train": True}, {"seed": seed, "count": count + 1}

    def backward(
        self,
        params: Mapping[str, Any],
        saved: Mapping[str, Any],
        dy: Any,
        *,
        input_grad: bool = True,
    ) -> tuple[Any, dict[str, Any]]:
        """``(dy * mask, {})`` (``dy * (1 - ratio)`` after a test-time forward)."""
        if saved["train"]:
            return dy * saved["mask"], {}
        return dy * (1.0 - self.ratio), {}


class Dropout(Layer):
    r"""The book's (non-inverted) dropout.

    ``forward(x, train_flg=True)`` keeps each value with probability
    ``1 - dropout_ratio`` and sets the others to 0 (kept values are *not*
    scaled up); ``forward(x, train_flg=False)`` returns
    ``x * (1 - dropout_ratio)``. ``backward`` multiplies by the same mask
    (by ``1 - dropout_ratio`` after a test-time forward).

    Seeds: the layer's state is its seed's words (:attr:`seed_words`) and
    the number of masks drawn (:attr:`count`); a training forward draws
    mask number ``count`` on the host with
    :func:`~xplayers.functional.dropout_draw`
    (``numpy.random.default_rng([*seed_words, count]).random(x.shape) >
    dropout_ratio``) and copies it to the input's backend and device (one
    transfer of ``x.size`` values per training forward). The same seed
    therefore gives the same masks, in the same order, on every backend,
    in the compiled JAX step too. ``seed=None`` draws fresh entropy (the
    book's global ``np.random`` is not used). :meth:`reseed` restarts the
    sequence.
    Networks seed their Dropout layers from their own seed (see
    :class:`~xplayers.network.MultiLayerNetExtend`).

    Parameters
    ----------
    dropout_ratio : float in [0, 1], default 0.5
        The probability of dropping a value.
    seed : int, numpy.random.Generator or None, keyword-only

    Attributes
    ----------
    mask : array or None
        The last training mask, 0.0/1.0 in the input's dtype (the book's is
        boolean).
    seed_words : tuple of int
        The seed's words (:func:`~xplayers.functional.dropout_seed`).
    count : int
        The masks drawn since the seed was set.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers import Dropout
    >>> drop = Dropout(0.5, seed=0)
    >>> drop.forward(xp.ones(4))
    Array([0., 1., 0., 1.], dtype=array_api_strict.float64)
    >>> drop.backward(xp.full(4, 2.0))
    Array([0., 2., 0., 2.], dtype=array_api_strict.float64)
    >>> drop.forward(xp.ones(2), train_flg=False)
    Array([0.5, 0.5], dtype=array_api_strict.float64)
    """

    #: ``forward`` takes ``train_flg`` (networks pass theirs on).
    takes_train_flg: ClassVar[bool] = True

    #: The count as last taken: an int, or a compiled step's 0-d array, not yet read.
    _count: Any

    def __init__(self, dropout_ratio: float = 0.5, *, seed: Any = None) -> None:
        self.dropout_ratio = unit_interval("Dropout", "dropout_ratio", dropout_ratio)
        self.mask: Any = None
        self.reseed(seed)
        self._train: bool | None = None
        self._shape: tuple[int, ...] = ()
        self._ref: Any = None

    def reseed(self, seed: Any = None) -> None:
        """Restart the masks from `seed` (an int, a sequence of int, a Generator or None)."""
        self.seed_words = dropout_seed(seed)
        self.count = 0

    @property
    def count(self) -> int:
        """The masks drawn since the seed was set.

        After a compiled step (JAX) the new count is a 0-d array on the
        device, kept as it is, so that no step waits to read it back; it is
        read (once) here, when asked for (a checkpoint asks).
        """
        if not isinstance(self._count, int):
            self._count = int(self._count)
        return self._count

    @count.setter
    def count(self, value: Any) -> None:
        self._count = value

    def fn_state(self) -> dict[str, Any]:
        """``{"seed": seed_words, "count": count}``, the words as a uint32 array.

        An array rather than Python integers: a compiled step (``jax.jit``)
        would turn the integers into int32, which cannot hold words above
        ``2**31`` unless JAX runs with 64-bit integers. The count is given
        as the layer holds it: after a compiled step, that step's array,
        which the next step takes without a read.
        """
        return {"seed": np.asarray(self.seed_words, dtype=np.uint32), "count": self._count}

    @property
    def fn(self) -> DropoutFn:
        """The layer's pure pair, of its current hyper-parameters."""
        return DropoutFn(self.dropout_ratio)

    def take(
        self,
        saved: Mapping[str, Any] | None = None,
        grads: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep a forward's ``mask`` (training) and a new state's ``count``, as it is.

        A compiled step's count, an array on the device, is not read here
        (:attr:`count` reads it when asked), so the step does not wait.
        """
        if saved is not None:
            self._train = bool(saved["train"])
            if saved["train"]:
                self.mask = saved["mask"]
        if state is not None:
            self._count = state["count"]

    def forward(self, x: Any, train_flg: bool = True) -> Any:
        """Return ``x * mask`` (training) or ``x * (1 - dropout_ratio)``; shape of `x`."""
        float_array("Dropout.forward", "x", x)
        self._shape, self._ref = tuple(x.shape), x
        y, saved, state = self.fn.forward(NO_STATE, x, self.fn_state(), train=bool(train_flg))
        self.take(saved, state=state)
        return y

    def backward(self, dout: Any) -> Any:
        """Return ``dout * mask`` (``dout * (1 - dropout_ratio)`` after a test-time forward)."""
        train = self._forward_state(self._train)
        ref = self.mask if train else self._ref
        dout = check_dout("Dropout.backward", dout, self._shape, self._ref, ref.dtype)
        return self.fn.backward(NO_STATE, {"mask": self.mask, "train": train}, dout)[0]

    def __repr__(self) -> str:
        return f"Dropout({self.dropout_ratio})"
