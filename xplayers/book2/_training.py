"""What volume 2's trainers share: shared weights found once, batches gathered on the device.

Shared weights
--------------
The book's models list a weight once per layer that uses it: the two
``MatMul(W_in)`` of ``SimpleCBOW``, the ``Embedding(W_out)`` of every
negative-sampling layer, the ``TimeAffine(embed_W.T, b)`` of chapter 6's
weight tying. Its ``remove_duplicate(params, grads)`` keeps one entry per
weight and adds the gradients of the others into it (transposed for a
transposed tie), searching every pair of parameters at every step, with a
comparison of values for the transposed ties.

:class:`SharedWeights` finds the ties once, from the parameter list, and
then only adds gradients at each step. A tie is the same array twice, or
one array the transpose of another: a transposed NumPy view of the same
memory, or the transpose :func:`~xplayers.book2._common.adopt` made on
another backend from a host ``W.T`` (the book's weight tying, on every
backend). A transpose taken on the device by the model itself is not
recognised. Two arrays that merely hold equal values are not
tied (the book merges them when they are square and transposes of each
other, zero-initialised matrices for instance).

Immutable arrays
----------------
Where arrays cannot be written (JAX, read-only NumPy), a layer replaces the
gradient in its own ``grads`` list, and the optimizer replaces the weight
in the list it is given. :class:`SharedWeights` therefore reads each
gradient from the list of the layer that computed it, and hands each
replaced weight back to every parameter list of the model that held the
old one (and its transpose to the lists that held the transposed tie).
The layers are found once, by walking the model's attributes for objects
with ``params`` and ``grads`` lists.

Lazy arrays
-----------
On Dask every step's weights, optimizer state and gradients are computed
together (:func:`apply_gradients`): each step writes into the arrays of
the last one, so their task graphs would otherwise grow with every step.

Batches
-------
:func:`on_data_backend` moves host data next to the model's weights once;
:func:`gather` takes the rows of a batch with one ``take`` of an index
array on the data's device.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType
from typing import Any

import array_api_compat
import numpy as np

from xplayers._validation import describe, fail
from xplayers.backend import backend_name as _backend_name
from xplayers.backend import is_lazy, materialize_all, namespace, to_backend
from xplayers.book2._cells import latest, put, transpose_source
from xplayers.book2.util import clip_grads

__all__ = [
    "SharedWeights",
    "apply_gradients",
    "gather",
    "holders",
    "index_like",
    "is_transpose_of",
    "on_data_backend",
    "remove_duplicate",
]

#: Objects whose attributes are never searched for layers (a module such as the
#: ``numpy.random`` a sampler draws from, classes, functions).
_NOT_LAYERS = (ModuleType, type, FunctionType, MethodType, BuiltinFunctionType, partial)
#: A place in a list: the list and the index.
Slot = tuple[list[Any], int]


def is_transpose_of(a: Any, b: Any) -> bool:
    """Whether 2-D `a` is ``b.T``: a NumPy view of `b`'s memory, or the move of a host ``W.T``.

    Values are not compared: two arrays that merely hold the same numbers
    are not tied.
    """
    if getattr(a, "ndim", 0) != 2 or getattr(b, "ndim", 0) != 2:
        return False
    if tuple(a.shape) != tuple(b.shape)[::-1]:
        return False
    if transpose_source(a) is b or transpose_source(b) is a:
        return True
    memory = _memory(a), _memory(b)
    return memory[0] is not None and memory[0] == memory[1]


def _memory(x: Any) -> tuple[Any, ...] | None:
    """``(address, (stride, size) pairs sorted)`` of a NumPy array, None for other arrays.

    Two 2-D arrays of swapped shapes with the same address and the same
    pairs are transposes of each other.
    """
    if not isinstance(x, np.ndarray):
        return None
    addr = x.__array_interface__["data"][0]
    strides = (s // x.itemsize for s in x.strides)
    return (addr, *sorted(zip(strides, x.shape, strict=True)))


def remove_duplicate(params: list[Any], grads: list[Any]) -> tuple[list[Any], list[Any]]:
    """The book's ``remove_duplicate``: one entry per shared weight, its gradients summed.

    Returns new lists; the arrays in `params` and `grads` are not changed
    (the book adds into ``grads[i]``). Ties are found as
    :class:`SharedWeights` finds them; a trainer keeps one
    :class:`SharedWeights` instead of calling this at every step.
    """
    plan = SharedWeights(params)
    return plan.unique([latest(p) for p in params]), plan.summed([latest(g) for g in grads])


class SharedWeights:
    """The ties of a parameter list, found once; the per-step sum of their gradients.

    Parameters
    ----------
    params : list of arrays
        A model's ``params`` list. Entry ``j`` is tied to an earlier entry
        ``i`` when it is the same array or its transpose (see
        :func:`is_transpose_of`).
    model : object, optional
        The model holding `params`; its layers (attributes with ``params``
        and ``grads`` lists) are found once, so that gradients replaced in
        a layer's list are read there and weights replaced by an optimizer
        are handed back to every list that held them (see the module doc).

    Attributes
    ----------
    keep : list of int
        Positions in `params` of the entries kept, in order.
    merged : list of list of (int, bool)
        For each kept entry, the positions tied to it and whether the tie
        is transposed.
    """

    def __init__(self, params: list[Any], model: Any = None) -> None:
        self.size = len(params)
        self.keep: list[int] = []
        self.merged: list[list[tuple[int, bool]]] = []
        owner: dict[int, int] = {}  # position -> index in keep
        for j, p in enumerate(params):
            tie = self._tie(params, j, p)
            if tie is None:
                owner[j] = len(self.keep)
                self.keep.append(j)
                self.merged.append([])
            else:
                i, transposed = tie
                self.merged[owner[i]].append((j, transposed))
                owner[j] = owner[i]
        grads = getattr(model, "grads", None) if model is not None else None
        self._grad_slots, self._param_slots = _slots(params, grads, model)
        self._model_grads = grads if isinstance(grads, list) and len(grads) == len(params) else None

    def _tie(self, params: list[Any], j: int, p: Any) -> tuple[int, bool] | None:
        for i in self.keep:
            if params[i] is p:
                return i, False
        for i in self.keep:
            if is_transpose_of(p, params[i]):
                return i, True
        return None

    def check(self, where: str, params: list[Any]) -> None:
        """Refuse a parameter list of another length than the one the ties were found in."""
        if len(params) != self.size:
            fail(where, "model.params", f"{self.size} parameters", f"{len(params)} parameters")

    def unique(self, params: list[Any]) -> list[Any]:
        """The kept entries of `params`, a new list."""
        return [params[i] for i in self.keep]

    def summed(self, grads: list[Any]) -> list[Any]:
        """One gradient per kept entry: its own plus those of its ties (transposed as tied)."""
        out = []
        for i, ties in zip(self.keep, self.merged, strict=True):
            g = grads[i]
            for j, transposed in ties:
                g = g + (_t(grads[j]) if transposed else grads[j])
            out.append(g)
        return out

    def gradients(self, model_grads: list[Any]) -> list[Any]:
        """The gradient of every position, read from the layer that stored it (see module doc)."""
        return [
            model_grads[k] if slot is None else slot[0][slot[1]]
            for k, slot in enumerate(self._grad_slots)
        ]

    def gradient_slots(self) -> list[Slot]:
        """Every list slot holding a gradient: the layers' and the model's ``grads`` entries."""
        slots = [slot for slot in self._grad_slots if slot is not None]
        if self._model_grads is not None:
            slots += [(self._model_grads, k) for k in range(len(self._model_grads))]
        return slots

    def hand_back(self, before: list[Any], after: list[Any]) -> None:
        """Put each weight the optimizer replaced where the old one was held.

        `before` and `after` are lists of kept entries (:meth:`unique`)
        before and after ``optimizer.update``; ``after[u] is not before[u]``
        marks a replaced weight. Where the optimizer wrote in
        place nothing changes.
        """
        for u, (old, new) in enumerate(zip(before, after, strict=True)):
            if new is old:
                continue
            i = self.keep[u]
            ties = [
                (lst, n, transposed, lst[n])
                for j, transposed in self.merged[u]
                for lst, n in self._param_slots[j]
            ]
            for lst, n in self._param_slots[i]:
                put(lst, n, new)
            new_t = None
            for lst, n, transposed, was in ties:
                if not transposed:
                    put(lst, n, new)
                    continue
                now = latest(was)  # the layers' cells made the new transpose already
                if now is was:
                    now = new_t = _t(new) if new_t is None else new_t
                put(lst, n, now)


def _t(x: Any) -> Any:
    return namespace(x).permute_dims(x, (1, 0))


def _slots(
    params: list[Any], grads: list[Any] | None, model: Any
) -> tuple[list[Slot | None], list[list[Slot]]]:
    """Where each position's gradient is stored and every list slot that holds its weight.

    The gradient slot of position ``k`` is the slot of a *leaf* layer (one
    holding no other layer) that holds the array ``grads[k]``; where the
    model's list no longer holds the layer's array (it was replaced, JAX),
    the ``n``-th leaf slot whose weight is ``params[k]`` for the ``n``-th
    occurrence of that weight in `params`, leaves taken in the order of the
    model's attributes. None where no layer holds it (the model's own
    ``grads[k]`` is read then).
    """
    holders = list(_holders(model)) if model is not None else []
    leaves = [h for h in holders if not _has_holders(h)]
    leaf_slots = [(h, n) for h in leaves for n in range(len(h.params))]
    by_grad = {id(h.grads[n]): (h.grads, n) for h, n in leaf_slots}
    grad_slots: list[Slot | None] = []
    seen: dict[int, int] = {}
    for k, p in enumerate(params):
        slot = by_grad.get(id(grads[k])) if grads is not None and k < len(grads) else None
        occurrence = seen.get(id(p), 0)
        seen[id(p)] = occurrence + 1
        if slot is None:
            same = [(h.grads, n) for h, n in leaf_slots if h.params[n] is p]
            slot = same[occurrence] if occurrence < len(same) else None
        grad_slots.append(slot)
    lists = {id(params): params}
    for h in holders:
        lists.setdefault(id(h.params), h.params)
    param_slots = [
        [(lst, n) for lst in lists.values() for n, q in enumerate(lst) if q is p] for p in params
    ]
    return grad_slots, param_slots


def _is_holder(obj: Any) -> bool:
    params = getattr(obj, "params", None)
    grads = getattr(obj, "grads", None)
    return isinstance(params, list) and isinstance(grads, list) and len(params) == len(grads)


def _children(obj: Any) -> Iterator[Any]:
    """The objects directly inside `obj`: its attributes, and the items of lists, tuples, dicts."""
    if isinstance(obj, (list, tuple)):
        yield from obj
    elif isinstance(obj, dict):
        yield from obj.values()
    elif hasattr(obj, "__dict__") and not isinstance(obj, _NOT_LAYERS):
        yield from vars(obj).values()


def holders(model: Any) -> list[Any]:
    """Every object with ``params`` and ``grads`` lists inside `model` (itself included).

    The model, its layers and theirs, depth first in the order of the
    attributes and list items, each once.
    """
    return list(_holders(model))


def _holders(model: Any) -> Iterator[Any]:
    """Every object with ``params`` and ``grads`` lists inside `model` (itself included)."""
    seen: set[int] = set()
    stack = [model]
    while stack:  # depth first, in the order of the attributes and items
        obj = stack.pop()
        if id(obj) in seen or array_api_compat.is_array_api_obj(obj):
            continue
        seen.add(id(obj))
        if _is_holder(obj):
            yield obj
        stack.extend(reversed(list(_children(obj))))


def _has_holders(layer: Any) -> bool:
    """Whether another object with ``params``/``grads`` lists lies inside `layer`."""
    return any(h is not layer and h.params is not layer.params for h in _holders(layer))


def on_data_backend(where: str, arg: str, data: Any, ref: Any) -> Any:
    """`data` (an array, or anything ``numpy.asarray`` takes) next to the array `ref`.

    Host data is moved to `ref`'s backend and device once; arrays of another
    backend are kept (the layers move or refuse them). Zero-dimensional data
    is refused.
    """
    if not array_api_compat.is_array_api_obj(data):
        try:
            data = np.asarray(data)
        except ValueError:
            fail(where, arg, "a rectangular array", "ragged sequences")
        if data.dtype == object:
            fail(where, arg, "a rectangular array", "ragged sequences")
    if data.ndim == 0:
        fail(where, arg, "an array with one row per sample", describe(data))
    if ref is not None and isinstance(data, np.ndarray) and namespace(ref) is not np:
        data = to_backend(data, _backend_name(ref), array_api_compat.device(ref))
    return data


def gather(data: Any, index: Any) -> Any:
    """Rows `index` of `data`, one ``take`` on the data's device (`index` already there)."""
    return namespace(data).take(data, index, axis=0)


def index_like(index: Any, data: Any) -> Any:
    """A host index array on `data`'s backend and device (one transfer), for :func:`gather`."""
    if isinstance(data, np.ndarray):
        return index
    return to_backend(np.asarray(index), _backend_name(data), array_api_compat.device(data))


def apply_gradients(
    model: Any, optimizer: Any, shared: SharedWeights, max_grad: float | None = None
) -> None:
    """One update after ``model.backward()``: the book's trainers' step, ties found once.

    The gradients of tied weights are summed (:meth:`SharedWeights.summed`),
    clipped to a global norm of `max_grad` when given
    (:func:`~xplayers.book2.clip_grads`), and ``optimizer.update`` is called
    on the weights kept; weights it replaced (JAX) are handed back to every
    list that held them, and lazy (Dask) weights, optimizer state and
    gradients are computed (see the module doc).
    """
    params = shared.unique(model.params)
    grads = shared.summed(shared.gradients(model.grads))
    if max_grad is not None:
        clip_grads(grads, max_grad)
    before = list(params)
    optimizer.update(params, grads)
    if params and is_lazy(params[0]):
        params = _materialized(params, optimizer, shared, _carried_states(model))
    shared.hand_back(before, params)


def _carried_states(model: Any) -> list[tuple[Any, str]]:
    """The lazy states a model's stateful layers carry to the next batch, as (layer, name)."""
    return [
        (layer, name)
        for layer in getattr(model, "layers", [])
        if getattr(layer, "stateful", False)
        for name in ("h", "c")
        if is_lazy(getattr(layer, name, None))
    ]


def _materialized(
    params: list[Any],
    optimizer: Any,
    shared: SharedWeights,
    carried: list[tuple[Any, str]],
) -> list[Any]:
    """Lazy (Dask) weights, optimizer state, gradients and carried states computed now, in one run.

    Each step writes into the arrays of the last one; without this, their
    task graphs would grow with every step (and each step would compute
    all the earlier ones again). The same holds for the hidden states a
    stateful layer carries from one batch to the next (``h`` and ``c``,
    `carried`): the next forward starts from them. The optimizer's state
    lists, every gradient slot and the carried states get the computed
    arrays; the new weights are returned (for :meth:`SharedWeights.hand_back`).
    """
    state = [
        (lst, i)
        for lst in vars(optimizer).values()
        if isinstance(lst, list)
        for i in range(len(lst))
    ]
    slots = state + shared.gradient_slots()
    done = materialize_all(
        list(params) + [lst[i] for lst, i in slots] + [getattr(o, n) for o, n in carried]
    )
    rest = done[len(params) :]
    for (lst, i), value in zip(slots, rest[: len(slots)], strict=True):
        put(lst, i, value)
    for (layer, name), value in zip(carried, rest[len(slots) :], strict=True):
        setattr(layer, name, value)
    return done[: len(params)]
