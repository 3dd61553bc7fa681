"""Where arrays are replaced rather than written: every list holding one kept in step.

Lists kept in step
------------------
The book's models gather their layers' lists once (``self.params +=
layer.params``), and its loops call ``optimizer.update(model.params,
model.grads)``: on NumPy the arrays are written in place, so the model's
lists and the layers' see the same values. Where arrays are replaced
instead, each array a layer holds belongs to a *cell* (:func:`hold`): the
slots of the layers' lists that hold it (several for a tied weight) and the
array they hold now. Replacing one (:func:`~xplayers.book2._common.store`,
:func:`replaced`) puts
the new array in every slot of its cell, and the transposes of a tied
``W.T`` follow; :func:`latest` gives the cell's array for any array it has
held, so ``optimizer.update`` and :func:`~xplayers.book2.clip_grads` read
the current gradient from the model's stale list and the layers see the
updated weights. Nothing of this runs inside ``jax.jit`` (a traced value
is never kept).

Host arrays
-----------
The NumPy arrays a model file built are not the weights that train where
the backend keeps its own memory (JAX, Dask, CuPy, torch on a GPU): the
book's ``model.word_vecs`` (``ch03``, ``ch04``) would keep the initial
values. :func:`sync_host` writes the trained weights back into them; the
trainers call it at the end of every ``fit``.

Moved arrays
------------
:func:`moved_from` and :func:`transposed_from` are told by
:func:`~xplayers.book2._common.adopt` which host array a moved array was
made from, and which moved array a moved ``W.T`` is the transpose of
(:func:`transpose_source`: a trainer finds such a tie by it).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from xplayers._validation import traced
from xplayers.backend import namespace, to_numpy

__all__ = [
    "hold",
    "latest",
    "moved_from",
    "put",
    "refresh",
    "replaced",
    "sync_host",
    "transpose_source",
    "transposed_from",
]

#: Moved transposes by id: the moved array each is the transpose of (for as long as it lives).
_TRANSPOSES: dict[int, Any] = {}
#: The host array each moved array was made from, by id of the moved array (while both live).
_ORIGINS: dict[int, weakref.ref[np.ndarray[Any, Any]]] = {}


def moved_from(moved: Any, host: np.ndarray[Any, Any]) -> None:
    """Remember that `moved` was made from the NumPy array `host` (for :func:`sync_host`)."""
    key = id(moved)
    _ORIGINS[key] = weakref.ref(host)
    weakref.finalize(host, _ORIGINS.pop, key, None)


def transposed_from(moved: Any, source: Any) -> None:
    """Remember that the moved array `moved` is the transpose of the moved array `source`."""
    _TRANSPOSES[id(moved)] = source
    weakref.finalize(moved, _TRANSPOSES.pop, id(moved), None)


def transpose_source(w: Any) -> Any:
    """For `w` moved from a host ``W.T``: the moved ``W`` it is the transpose of; else None.

    Libraries without views (JAX, Dask) give the transpose an array of its
    own; this is how a trainer finds such a tie (see
    :mod:`xplayers.book2._training`).
    """
    return _TRANSPOSES.get(id(w))


def put(lst: list[Any], i: int, new: Any) -> None:
    """``lst[i] = new``, and in every other slot holding the same array (:func:`replaced`)."""
    old = lst[i]
    lst[i] = new
    replaced(old, new)


class _Cell:
    """The list slots holding one array of the layers, the array they hold now, its host origin.

    ``slots`` are ``(weak reference to the holder, "params" or "grads",
    index)``; ``keys`` the ids under which :data:`_CELLS` finds the cell,
    one for every array it has held that is still alive (a model's list
    gathered once may hold any of them); ``transposes`` the cells of moved
    ``W.T`` arrays of this one.
    """

    __slots__ = ("keys", "origin", "slots", "transposes", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.keys: set[int] = set()
        self.slots: list[tuple[weakref.ref[Any], str, int]] = []
        self.transposes: list[_Cell] = []
        self.origin = _ORIGINS.get(id(value))
        _enter(self, value)


#: Cells by the id of each live array they have held (with a weak reference to the array).
_CELLS: dict[int, tuple[weakref.ref[Any], _Cell]] = {}


def _enter(cell: _Cell, value: Any) -> None:
    key = id(value)
    ref = weakref.ref(value)
    _CELLS[key] = (ref, cell)
    cell.keys.add(key)
    weakref.finalize(value, _leave, key, ref)


def _leave(key: int, ref: weakref.ref[Any]) -> None:
    hit = _CELLS.get(key)
    if hit is not None and hit[0] is ref:
        del _CELLS[key]
        hit[1].keys.discard(key)


def _cell(x: Any) -> _Cell | None:
    hit = _CELLS.get(id(x))
    return hit[1] if hit is not None and hit[0]() is x else None


def hold(layer: Any) -> None:
    """Enter the slots of ``layer.params`` and ``layer.grads`` in their arrays' cells.

    Called by every layer of :mod:`xplayers.book2` once its lists are built
    (see the module doc); the slots leave the cells when the layer dies.
    """
    ref = weakref.ref(layer)
    cells = []
    for attr in ("params", "grads"):
        for n, a in enumerate(getattr(layer, attr)):
            cell = _cell(a)
            if cell is None:
                cell = _Cell(a)
                source = transpose_source(a)
                if source is not None:
                    (_cell(source) or _Cell(source)).transposes.append(cell)
            cell.slots.append((ref, attr, n))
            cells.append(cell)
    weakref.finalize(layer, _release, ref, cells)


def _release(ref: weakref.ref[Any], cells: list[_Cell]) -> None:
    for cell in cells:
        cell.slots = [s for s in cell.slots if s[0] is not ref]
        if not cell.slots:
            for key in list(cell.keys):
                hit = _CELLS.get(key)
                if hit is not None and hit[1] is cell:
                    del _CELLS[key]
            cell.keys.clear()
            cell.value = None


def latest(x: Any) -> Any:
    """The array the layers hold now in place of `x` (`x` itself where nothing replaced it)."""
    cell = _cell(x)
    return x if cell is None else cell.value


def refresh(lst: list[Any]) -> None:
    """Replace each item of `lst` by :func:`latest` of it: a model's list gathered once.

    Where arrays are replaced rather than written (JAX, Dask), the lists a
    model gathered from its layers still hold the first arrays.
    """
    for i, a in enumerate(lst):
        now = latest(a)
        if now is not a:
            lst[i] = now


def replaced(old: Any, new: Any) -> None:
    """`new` takes `old`'s place in every layer slot of its cell, and transposes follow.

    Traced values (inside ``jax.jit``) are never entered.
    """
    if new is old or traced(new):
        return
    cell = _cell(old)
    if cell is not None:
        _push(cell, new)


def _push(cell: _Cell, new: Any) -> None:
    prev = cell.value
    for ref, attr, n in cell.slots:
        holder = ref()
        lst = getattr(holder, attr, None) if holder is not None else None
        if type(lst) is list and n < len(lst) and lst[n] is prev:
            lst[n] = new
    cell.value = new
    if _cell(new) is not cell:
        _enter(cell, new)
    for t in cell.transposes:
        _push(t, namespace(new).permute_dims(new, (1, 0)))


def sync_host(model: Any) -> None:
    """Write a model's trained weights into the NumPy arrays its model file built them from.

    Where the backend keeps its own memory (JAX, Dask, CuPy, torch on a
    GPU), the host arrays given to the layers (``W_in`` in the book's
    ``CBOW``, kept as ``model.word_vecs``) are copied once, when the layers
    are built, and keep their initial values while the copies train. This
    writes each weight's current values back into its host array (nothing
    where they share memory, as NumPy and torch on the CPU do). The book's
    trainers call it at the end of every ``fit``; call it after a loop of
    your own before reading those arrays. `model` is anything with a
    ``params`` list, or the list itself.
    """
    params = model if isinstance(model, list) else getattr(model, "params", [])
    for p in params:
        cell = _cell(p)
        if cell is None or cell.origin is None:
            continue
        host = cell.origin()
        if host is None or not host.flags.writeable:
            continue
        value = to_numpy(cell.value)
        if not np.shares_memory(host, value):
            host[...] = value
