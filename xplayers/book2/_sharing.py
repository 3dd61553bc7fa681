"""Weights shared between layers: found once, gradients summed once, tied copies kept in step.

The book's ``remove_duplicate`` (``common/trainer.py``) searches a model's
``params`` at every training step for arrays that are the same object, or
2-D arrays equal to another's transpose (weight tying: the output layer's
``W`` is ``embed_W.T``), and adds their gradients. Here the search runs
once (:func:`find_sharing`) and gives a :class:`Sharing`, which each step
uses to sum the gradients (:meth:`Sharing.reduce`) and, after the update,
to give every layer the new values (:meth:`Sharing.write_back`): on JAX,
whose arrays are immutable, the optimizer replaces the updated arrays in
its list and the layers' own lists have to be told; a tied transpose is
derived again from the updated matrix on every backend, so it follows
even where the backend keeps no views (JAX, Dask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from xplayers.backend import is_lazy, namespace

__all__ = ["Sharing", "find_sharing", "remove_duplicate"]


@dataclass(frozen=True)
class Sharing:
    """Which entries of a model's ``params`` are kept and which repeat a kept one.

    Attributes
    ----------
    kept : tuple of int
        Indices into ``params`` of the distinct arrays, in order.
    ties : tuple of (int, int, bool)
        ``(j, k, transposed)``: ``params[j]`` is ``params[kept[k]]``, or its
        transpose when `transposed`.
    """

    kept: tuple[int, ...]
    ties: tuple[tuple[int, int, bool], ...]

    def reduce(self, params: list[Any], grads: list[Any]) -> tuple[list[Any], list[Any]]:
        """The distinct parameters and their gradients, each tie's gradient added once."""
        uniq = [params[i] for i in self.kept]
        summed = [grads[i] for i in self.kept]
        for j, k, transposed in self.ties:
            g = grads[j]
            if transposed:
                g = namespace(g).permute_dims(g, (1, 0))
            summed[k] = summed[k] + g  # a new array: the layer's own gradient is left alone
        return uniq, summed

    def write_back(self, model: Any, values: list[Any]) -> None:
        """Put the updated distinct parameters `values` into `model` and its layers.

        ``model.params`` and each layer's ``params`` get the new arrays where
        the optimizer replaced them (JAX), and every tie gets the new array
        or its transpose.
        """
        params = model.params
        new = list(params)
        for k, i in enumerate(self.kept):
            new[i] = values[k]
        for j, k, transposed in self.ties:
            v = values[k]
            new[j] = namespace(v).permute_dims(v, (1, 0)) if transposed else v
        changed = [i for i in range(len(params)) if new[i] is not params[i]]
        if not changed:
            return
        for i in changed:
            params[i] = new[i]
        _rebind_layers(model, params)


def _rebind_layers(model: Any, params: list[Any]) -> None:
    """Give each layer of `model` (``model.layers``, in order) its entries of `params`."""
    layers = list(getattr(model, "layers", []))
    if sum(len(layer.params) for layer in layers) != len(params):
        return  # not the book's layout: the model reads its weights from ``params`` itself
    at = 0
    for layer in layers:
        for n in range(len(layer.params)):
            if layer.params[n] is not params[at]:
                layer.params[n] = params[at]
            at += 1


def find_sharing(params: list[Any]) -> Sharing:
    """Find the entries of `params` that repeat another: the same object, or its transpose.

    A 2-D entry counts as the transpose of another when it is a transposed
    view of it (NumPy, CuPy, torch), or, where arrays have no views (JAX,
    array-api-strict), when its values equal the other's transpose, the
    book's test, made here once. Lazy (Dask) entries are compared by
    identity and views only, so that nothing is computed.
    """
    kept: list[int] = []
    ties: list[tuple[int, int, bool]] = []
    for j, p in enumerate(params):
        for k, i in enumerate(kept):
            q = params[i]
            if p is q:
                ties.append((j, k, False))
                break
            if _transposed(p, q):
                ties.append((j, k, True))
                break
        else:
            kept.append(j)
    return Sharing(tuple(kept), tuple(ties))


def _transposed(a: Any, b: Any) -> bool:
    """Whether 2-D `a` is `b` transposed: a view of it, or (no views) equal values."""
    if a.ndim != 2 or b.ndim != 2 or tuple(a.shape) != tuple(b.shape)[::-1]:
        return False
    if namespace(a) is not namespace(b) or a.dtype != b.dtype:
        return False
    view = _view_of_transpose(a, b)
    if view is not None:
        return view
    if is_lazy(a) or is_lazy(b):
        return False
    xp = namespace(a)
    if int(a.shape[0]) == 0 or int(a.shape[1]) == 0:
        return False
    equal = xp.all(xp.permute_dims(b, (1, 0)) == a)
    nonzero = xp.any(a != 0)  # all-zero matrices are equal by chance, not tied
    return bool(equal) and bool(nonzero)


def _view_of_transpose(a: Any, b: Any) -> bool | None:
    """For libraries with views: whether `a` is `b` transposed in memory; None elsewhere."""
    if isinstance(a, np.ndarray):
        return _same_start(a, b) and a.strides == b.strides[::-1]
    if array_api_compat.is_torch_array(a):
        return bool(a.data_ptr() == b.data_ptr() and tuple(a.stride()) == tuple(b.stride())[::-1])
    if array_api_compat.is_cupy_array(a):
        return bool(a.data.ptr == b.data.ptr and a.strides == b.strides[::-1])
    return None


def _same_start(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return bool(a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def remove_duplicate(params: list[Any], grads: list[Any]) -> tuple[list[Any], list[Any]]:
    """The book's ``remove_duplicate``: the distinct params, shared ones' gradients added.

    Returns new lists; the gradients of shared arrays are summed (a tied
    transpose's gradient transposed first) without writing into the
    layers' gradient arrays.
    """
    return find_sharing(params).reduce(params, grads)
