"""The Dropout layer (the book's chapter 6)."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np

from xplayers._validation import float_array
from xplayers.functional import dropout_mask
from xplayers.layers._base import Layer
from xplayers.layers._window import check_dout, unit_interval

__all__ = ["Dropout"]


class Dropout(Layer):
    r"""The book's (non-inverted) dropout.

    ``forward(x, train_flg=True)`` keeps each value with probability
    ``1 - dropout_ratio`` and sets the others to 0 (kept values are *not*
    scaled up); ``forward(x, train_flg=False)`` returns
    ``x * (1 - dropout_ratio)``. ``backward`` multiplies by the same mask
    (by ``1 - dropout_ratio`` after a test-time forward).

    Seeds: the keep-mask is drawn on the host from this layer's own
    :class:`numpy.random.Generator`, ``numpy.random.default_rng(seed)``, as
    ``rng.random(x.shape) > dropout_ratio``, then copied to the input's
    backend and device (one transfer of ``x.size`` values per training
    forward). The same seed therefore gives the same masks, in the same
    order, on every backend. ``seed=None`` draws fresh entropy (the book's
    global ``np.random`` is not used). :meth:`reseed` restarts the sequence.
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

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers import Dropout
    >>> drop = Dropout(0.5, seed=0)
    >>> drop.forward(xp.ones(4))
    Array([1., 0., 0., 0.], dtype=array_api_strict.float64)
    >>> drop.backward(xp.full(4, 2.0))
    Array([2., 0., 0., 0.], dtype=array_api_strict.float64)
    >>> drop.forward(xp.ones(2), train_flg=False)
    Array([0.5, 0.5], dtype=array_api_strict.float64)
    """

    #: ``forward`` takes ``train_flg`` (networks pass theirs on).
    takes_train_flg: ClassVar[bool] = True

    def __init__(self, dropout_ratio: float = 0.5, *, seed: Any = None) -> None:
        self.dropout_ratio = unit_interval("Dropout", "dropout_ratio", dropout_ratio)
        self.mask: Any = None
        self.reseed(seed)
        self._train: bool | None = None
        self._shape: tuple[int, ...] = ()
        self._ref: Any = None

    def reseed(self, seed: Any = None) -> None:
        """Restart the mask sequence from `seed` (an int, a Generator or None)."""
        self.rng = np.random.default_rng(seed)

    def forward(self, x: Any, train_flg: bool = True) -> Any:
        """Return ``x * mask`` (training) or ``x * (1 - dropout_ratio)``; shape of `x`."""
        float_array("Dropout.forward", "x", x)
        self._train = bool(train_flg)
        self._shape, self._ref = tuple(x.shape), x
        if not train_flg:
            return x * (1.0 - self.dropout_ratio)
        self.mask = dropout_mask(self.rng, x, self.dropout_ratio)
        return x * self.mask

    def backward(self, dout: Any) -> Any:
        """Return ``dout * mask`` (``dout * (1 - dropout_ratio)`` after a test-time forward)."""
        train = self._forward_state(self._train)
        ref = self.mask if train else self._ref
        dout = check_dout("Dropout.backward", dout, self._shape, self._ref, ref.dtype)
        return dout * self.mask if train else dout * (1.0 - self.dropout_ratio)

    def __copy__(self) -> Dropout:
        """A copy with its own generator in the same state (copies never advance the original)."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.rng = copy.deepcopy(self.rng)
        return clone

    def __repr__(self) -> str:
        return f"Dropout({self.dropout_ratio})"
