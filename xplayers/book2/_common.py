"""What the volume 2 classes share: weights moved from the host once, gradients stored, checks.

Weights from the host
---------------------
The book's models build their weights with NumPy (``np.random.randn``) and
hand them to the layers. A layer given a NumPy array while the current
backend (``XPLAYERS_BACKEND``, :func:`xplayers.use_backend`) is another
one moves it there once, when the layer is built (:func:`adopt`). The move
is remembered per host array (by its ``id``, for as long as the host array
lives) and per backend, so the same NumPy array given to two layers
becomes the *same* backend array: tied weights stay tied. A transposed
view of a host matrix (``TimeAffine(embed_W.T, b)``, the book's weight
tying) becomes the transpose of the moved matrix, a view of it where the
library has views (torch, CuPy), so in-place updates reach both layers.
Other views of a host array are moved as arrays of their own.

This replaces the book's ``config.GPU`` switch: there, ``common/np.py``
imports CuPy as ``np`` so the model files create their weights on the GPU
directly; here the model files stay unchanged and the backend selector
decides where their weights live.

Gradients
---------
``grads[i][...] = g``, as in the book, where the gradient array accepts
item assignment (NumPy, CuPy, torch, array-api-strict), so a list holding
``layer.grads[i]`` sees the new values. Where arrays are immutable (JAX),
read-only, or lazy (Dask: writing into a task graph walks the whole graph),
``grads[i]`` is replaced by the new array instead, and so is a weight an
optimizer updates.

Where arrays are replaced, every list slot holding the old array gets the
new one: see :mod:`xplayers.book2._cells`.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from xplayers._validation import describe, fail, float_array, traced
from xplayers.backend import (
    backend_name,
    get_backend,
    is_lazy,
    namespace,
    record_of,
    to_backend,
    to_numpy,
)
from xplayers.book2._cells import moved_from, put, transposed_from
from xplayers.errors import LayerStateError

__all__ = [
    "GLOBAL_RANDOM",
    "GlobalRandom",
    "IdCheck",
    "adopt",
    "as_tokens",
    "check_ids",
    "check_state",
    "check_time_input",
    "deferred_id_checks",
    "forwarded",
    "mask_source",
    "on_layer_backend",
    "store",
    "writable",
    "zeros_like_all",
]

#: Moved host arrays by (id of the host array, backend); an entry lives as long as its host array.
_MOVED: dict[tuple[int, str], Any] = {}
#: Array types that refuse item assignment (JAX): their gradients are replaced, not written.
_IMMUTABLE: set[type] = set()


class GlobalRandom:
    """NumPy's global generator (``np.random.seed``) as a dropout mask source.

    The book's ``Dropout`` and ``TimeDropout`` draw their masks with
    ``np.random.rand(*x.shape) > dropout_ratio``: from the global generator,
    at each forward. A layer made without a seed draws from here, the same
    numbers in the same order, so a script that calls ``np.random.seed``
    gets the book's masks (on every backend: they are drawn on the host).
    """

    def random(self, size: Any) -> Any:
        """``np.random.random_sample(size)``, the draws of ``np.random.rand(*size)``."""
        return np.random.random_sample(size)  # noqa: NPY002 - the book's global generator


#: The one :class:`GlobalRandom`.
GLOBAL_RANDOM = GlobalRandom()


def mask_source(seed: Any) -> Any:
    """The dropout masks' generator: the global one for None (the book's), else its own."""
    return GLOBAL_RANDOM if seed is None else np.random.default_rng(seed)


def adopt(where: str, arg: str, w: Any) -> Any:
    """Check `w` is a floating array; move it to the current backend if it is a host array there.

    See the module docstring: a NumPy array is moved once per backend, tied
    arrays stay tied; arrays of any other kind are kept as they are.
    """
    if isinstance(w, np.ndarray) and w.dtype.kind == "f":
        target = get_backend()
        if target.xp is not namespace(w):
            return _moved(w, target)
    float_array(where, arg, w)
    return w


def _moved(w: np.ndarray[Any, Any], target: Any) -> Any:
    base = w.base
    if isinstance(base, np.ndarray) and base.ndim == 2 and _is_transpose(w, base):
        source = _moved(base, target)
        moved = target.xp.permute_dims(source, (1, 0))
        transposed_from(moved, source)
        return moved
    key = (id(w), str(target))
    hit = _MOVED.get(key)
    if hit is None:
        hit = _MOVED[key] = target.asarray(w)
        moved_from(hit, w)
        weakref.finalize(w, _MOVED.pop, key, None)
    return hit


def _is_transpose(w: np.ndarray[Any, Any], base: np.ndarray[Any, Any]) -> bool:
    """Whether `w` is exactly ``base.T`` (same memory, axes swapped)."""
    return (
        w.shape == base.shape[::-1]
        and w.strides == base.strides[::-1]
        and w.__array_interface__["data"][0] == base.__array_interface__["data"][0]
    )


def on_layer_backend(x: Any, ref: Any) -> Any:
    """`x` on `ref`'s backend and device: host (NumPy) inputs are moved, others kept."""
    if isinstance(x, np.ndarray) and namespace(ref) is not namespace(x):
        return to_backend(x, backend_name(ref), array_api_compat.device(ref))
    return x


def zeros_like_all(params: list[Any]) -> list[Any]:
    """The book's ``[np.zeros_like(p) for p in params]`` on each parameter's backend."""
    return [namespace(p).zeros_like(p) for p in params]


def store(grads: list[Any], i: int, g: Any) -> None:
    """``grads[i][...] = g`` where the array allows it, else ``grads[i] = g`` (see module doc).

    A replaced array is replaced in every list slot of its cell (:func:`replaced`).
    """
    old = grads[i]
    if type(old) not in _IMMUTABLE and not is_lazy(old):
        try:
            old[...] = g
            return
        except (TypeError, ValueError):  # immutable (JAX) or read-only
            if not (isinstance(old, np.ndarray) and not old.flags.writeable):
                _IMMUTABLE.add(type(old))
    put(grads, i, g)


def writable(x: Any) -> Any:
    """`x`, or a NumPy copy of it where its library's arrays cannot be written (JAX).

    For a result the book writes into. A traced value (inside ``jax.jit``)
    is returned as it is: the compiled step's trace then fails on the
    write and the layers run that model (:mod:`xplayers.book2._compiled`).
    """
    rec = record_of(x)
    if rec is not None and rec.immutable and not traced(x):
        return np.array(to_numpy(x))
    return x


def forwarded(layer: Any, value: Any) -> Any:
    """`value` kept by `layer`'s forward, or :class:`LayerStateError` before any forward."""
    if value is None:
        name = type(layer).__name__
        raise LayerStateError(
            f"{name}.backward: called before {name}.forward; run forward first "
            "(backward needs the values forward keeps)"
        )
    return value


def as_tokens(
    where: str,
    arg: str,
    idx: Any,
    ref: Any,
    num_rows: int,
    *,
    ndim: int | None,
    ignore_label: int | None = None,
) -> Any:
    """Token ids or labels as an integer array on `ref`'s backend, each in ``[0, num_rows)``.

    Python lists are accepted (ragged ones refused); `ignore_label` is also
    allowed when given. Values are checked unless the array is lazy
    (reading them would compute it) or traced (inside ``jax.jit``: the check
    is listed for :func:`deferred_id_checks`).
    """
    if not array_api_compat.is_array_api_obj(idx):
        try:
            idx = np.asarray(idx)
        except ValueError:
            fail(where, arg, "a rectangular array of integer ids", "ragged sequences")
        if idx.dtype == object:
            fail(where, arg, "a rectangular array of integer ids", "ragged sequences")
    idx = on_layer_backend(idx, ref)
    xp = namespace(idx)
    if not xp.isdtype(idx.dtype, "integral"):
        fail(where, arg, "an integer array of ids", describe(idx))
    if ndim is not None and idx.ndim != ndim:
        fail(where, arg, f"{ndim} dimensions", describe(idx))
    if _size(idx) and traced(idx):
        if _DEFERRED is not None:
            _DEFERRED.append(IdCheck(idx, where, arg, num_rows, ignore_label))
    elif _size(idx) and not is_lazy(idx):
        check_ids(where, arg, idx, num_rows, ignore_label)
    return idx


class IdCheck(NamedTuple):
    """A check of id values that a trace could not make: :func:`check_ids`'s arguments."""

    ids: Any
    where: str
    arg: str
    num_rows: int
    ignore_label: int | None


#: While :func:`deferred_id_checks` runs: the checks of traced ids, made later on the values.
_DEFERRED: list[IdCheck] | None = None


@contextmanager
def deferred_id_checks() -> Iterator[list[IdCheck]]:
    """Collect the id checks :func:`as_tokens` meets on traced arrays (inside ``jax.jit``).

    A traced array has no values to read: its check is listed, for the
    caller to make on the concrete ids (:func:`check_ids`).
    """
    global _DEFERRED
    outer, _DEFERRED = _DEFERRED, []
    try:
        yield _DEFERRED
    finally:
        _DEFERRED = outer


def _id_range(idx: Any, xp: Any) -> tuple[int, int]:
    """The smallest and largest id, read from the device together (one synchronisation)."""
    lo, hi = to_numpy(xp.stack((xp.min(idx), xp.max(idx)))).tolist()
    return int(lo), int(hi)


def check_ids(where: str, arg: str, idx: Any, num_rows: int, ignore_label: int | None) -> None:
    """Refuse ids outside ``[0, num_rows)`` (`ignore_label` allowed when given); reads values."""
    xp = namespace(idx)
    lo, hi = _id_range(idx, xp)
    allowed = "" if ignore_label is None else f" or {ignore_label} (ignore_label)"
    if hi >= num_rows or (lo < 0 and lo != ignore_label):
        bad = hi if hi >= num_rows else lo
        fail(where, arg, f"ids in [0, {num_rows}){allowed}", f"id {bad} in {describe(idx)}")
    if ignore_label is not None and lo < 0:
        others = xp.where(idx == ignore_label, 0, idx)
        if int(xp.min(others)) < 0:
            fail(
                where,
                arg,
                f"ids in [0, {num_rows}){allowed}",
                f"id {int(xp.min(others))} in {describe(idx)}",
            )


def _size(x: Any) -> int:
    n = 1
    for s in x.shape:
        n *= int(s)
    return n


def check_time_input(where: str, xs: Any, ref: Any, size: int) -> Any:
    """`xs` as a floating ``(N, T, size)`` array on `ref`'s backend with ``T >= 1``."""
    xs = on_layer_backend(xs, ref)
    float_array(where, "xs", xs)
    if xs.ndim != 3 or int(xs.shape[2]) != size:
        fail(where, "xs", f"shape (N, T, {size})", describe(xs))
    if int(xs.shape[1]) == 0:
        fail(where, "xs", "at least one time step (T >= 1)", describe(xs))
    return xs


def check_state(where: str, arg: str, h: Any, ref: Any, hidden: int, batch: int | None) -> Any:
    """A hidden state: ``(N, hidden)`` floating on `ref`'s backend (``N`` = `batch` when given)."""
    if h is None:
        return None
    h = on_layer_backend(h, ref)
    float_array(where, arg, h)
    n = "N" if batch is None else str(batch)
    if h.ndim != 2 or int(h.shape[1]) != hidden or (batch is not None and h.shape[0] != batch):
        fail(where, arg, f"shape ({n}, {hidden})", describe(h))
    return h
