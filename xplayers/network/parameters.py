"""The live parameter mapping of a network, and what makes an object a layer.

A layer is any object with ``forward`` and ``backward``; a trainable one also
has ``params`` and ``grads`` dictionaries keyed by the names of its parameter
attributes (``Affine``: ``W``, ``b``). :class:`Parameters` maps the book's
names ``W1, b1, W2, ...`` to those attributes, so reading and writing it reads
and writes the layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

from xplayers._validation import describe, fail, float_array, same_backend
from xplayers.backend import is_lazy, materialize
from xplayers.errors import LayerInputError

__all__ = ["Parameters", "is_layer", "layer_grads", "layer_params"]


def is_layer(obj: Any) -> bool:
    """Whether `obj` has callable ``forward`` and ``backward`` methods."""
    return callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None))


def layer_params(layer: Any) -> dict[str, Any]:
    """A copy of the layer's ``params`` dictionary (empty for a layer without parameters)."""
    params = getattr(layer, "params", None)
    return dict(params) if params else {}


def layer_grads(layer: Any) -> dict[str, Any]:
    """A copy of the layer's ``grads`` dictionary (empty for a layer without parameters)."""
    grads = getattr(layer, "grads", None)
    return dict(grads) if grads else {}


class Parameters(MutableMapping[str, Any]):
    """A live mapping from the book's parameter names to the layers' arrays.

    Reading ``params["W1"]`` returns the very array the first ``Affine`` layer
    computes with, so ``params["W1"] -= lr * grads["W1"]`` (the book's update)
    changes the layer in place. Assigning ``params["W1"] = new`` rebinds the
    layer's attribute, which is how parameters are updated on libraries whose
    arrays cannot be written in place (JAX). On a lazy backend (Dask), where
    ``params["W1"] -= ...`` rebinds too, an assigned array is computed and kept
    (persisted) before the layer takes it: otherwise each update would hold
    the task graph of every step before it, and a training loop would slow
    down step by step. The keys are fixed by the layers: they cannot be added
    or deleted.

    Parameters
    ----------
    slots : dict of str to (layer, str)
        For each key, the layer and the name of its attribute.
    owner : str
        The network's name, used in error messages.

    Examples
    --------
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> from xplayers.network import TwoLayerNet
    >>> net = TwoLayerNet(4, 3, 2, seed=0)
    >>> list(net.params)
    ['W1', 'b1', 'W2', 'b2']
    >>> net.params["W1"] is net.layers["Affine1"].W
    True
    >>> net.params["b2"] = xpl.asarray(np.ones(2))
    >>> xpl.to_numpy(net.layers["Affine2"].b)
    array([1., 1.])
    """

    def __init__(self, slots: Mapping[str, tuple[Any, str]], owner: str) -> None:
        self._slots = dict(slots)
        self._owner = owner

    @property
    def slots(self) -> Mapping[str, tuple[Any, str]]:
        """For each key, the layer holding the parameter and the attribute's name (read-only)."""
        return MappingProxyType(self._slots)

    def __getitem__(self, key: str) -> Any:
        layer, attr = self._slots[key]
        return getattr(layer, attr)

    def __setitem__(self, key: str, value: Any) -> None:
        slot = self._slots.get(key)
        where = f"{self._owner}.params"
        if slot is None:
            fail(where, "key", f"one of {list(self._slots)}", repr(key))
        layer, attr = slot
        current = getattr(layer, attr)
        if value is current:  # ``params[key] -= ...`` on a writable array ends here
            return
        float_array(where, key, value)
        same_backend(where, key, value, f"the current {key!r}", current)
        if tuple(value.shape) != tuple(current.shape) or value.dtype != current.dtype:
            fail(
                where, key, f"an array like the current one ({describe(current)})", describe(value)
            )
        if is_lazy(value):
            value = materialize(value)
        setattr(layer, attr, value)

    def __delitem__(self, key: str) -> None:
        raise LayerInputError(
            f"{self._owner}.params: cannot delete {key!r}; the parameters are fixed by the layers"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        items = ", ".join(f"{k!r}: {describe(v)}" for k, v in self.items())
        return f"Parameters({{{items}}})"
