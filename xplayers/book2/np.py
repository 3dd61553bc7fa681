"""The book's ``np`` (``common/np.py``): NumPy on the host, the arrays' own library on a backend.

The book's model files get the name ``np`` from ``from common.time_layers
import *`` (or ``from common.np import *``): NumPy, or CuPy when
``config.GPU`` is set. They use it in two ways. In their constructors
they build weights on the host (``np.random.randn``, ``np.sqrt(D)``,
``np.zeros(V).astype('f')``), which the layers move to the current backend
(:mod:`xplayers.book2._common`). In ``forward``, ``backward`` and
``generate`` they call it on the layers' outputs (``np.concatenate``,
``np.repeat``, ``np.sum``, ``np.argmax``), which live on the backend.

So this module is NumPy, except that a function called with an array of
another library (directly, or inside the sequence given to
``np.concatenate``) runs the function of the same name in that array's
array-API namespace (:func:`xplayers.namespace`): ``np.concatenate`` of
torch tensors is ``torch.cat``, of Dask arrays a lazy Dask concatenation.
``concatenate`` is the array API's ``concat`` there and ``array`` its
``asarray``. JAX arrays cannot be written, so ``np.zeros_like`` (and
``ones_like``, ``empty_like``, ``full_like``) of a JAX array is a NumPy
array of its shape and dtype, for the book's ``dhs[:, -1, :] = dh``; JAX
takes NumPy operands where it takes its own. Everything that is not a function (``np.random``,
``np.float32``, ``np.ndarray``) is NumPy's.

``from xplayers.book2 import *`` exports this module as ``np``.

Examples
--------
>>> import numpy
>>> from xplayers.book2 import np
>>> np.random is numpy.random
True
>>> np.concatenate((numpy.ones(2), numpy.zeros(1))).tolist()
[1.0, 1.0, 0.0]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy

from xplayers.backend import namespace

#: NumPy names whose array-API counterpart has another name.
RENAMED = {"concatenate": "concat", "array": "asarray"}
#: Functions whose result the book writes into (``dhs[:, -1, :] = dh`` in ch07/seq2seq.py).
WRITTEN = frozenset({"zeros_like", "ones_like", "empty_like", "full_like"})


def _is_backend_array(x: Any) -> bool:
    """Whether `x` is an array of a library other than NumPy."""
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, numpy.ndarray | numpy.generic)


def _backend_array(args: tuple[Any, ...]) -> Any:
    """The first non-NumPy array among `args` or the items of a list or tuple among them."""
    for a in args:
        items = a if isinstance(a, list | tuple) else (a,)
        for x in items:
            if _is_backend_array(x):
                return x
    return None


def _immutable(x: Any) -> bool:
    """Whether `x` is of a library whose arrays are updated through ``x.at[...]`` only (JAX)."""
    return hasattr(type(x), "at")


def _dispatching(name: str, host: Callable[..., Any]) -> Callable[..., Any]:
    """NumPy's `host` function, or the same function of the arrays' own library."""

    @functools.wraps(host)
    def call(*args: Any, **kwargs: Any) -> Any:
        found = _backend_array(args)
        if found is None:
            return host(*args, **kwargs)
        if name in WRITTEN and _immutable(found):
            # JAX arrays cannot be written: a host array of the same shape and dtype
            # takes the book's item assignments; the layers take it as they take JAX's.
            like = numpy.empty(tuple(found.shape), dtype=numpy.dtype(found.dtype))
            return host(like, *args[1:], **kwargs)
        return getattr(namespace(found), RENAMED.get(name, name))(*args, **kwargs)

    return call


def __getattr__(name: str) -> Any:
    value = getattr(numpy, name)
    if callable(value) and not isinstance(value, type):
        return _dispatching(name, value)
    return value
