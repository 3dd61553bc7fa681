"""Argument checks shared by the whole package; every failure names where, what and why.

Each checker takes ``where`` (the function or class, as users call it), ``arg``
(the argument's name) and the value, and returns the value normalised (an
``int``, a ``float``, a dtype name) or raises
:class:`~xplayers.errors.LayerInputError` through :func:`fail`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from types import ModuleType
from typing import Any, NoReturn

import array_api_compat
import numpy as np

from xplayers.backend import backend_name, namespace, record_of
from xplayers.errors import LayerInputError

__all__ = [
    "FLOAT_DTYPES",
    "choice",
    "describe",
    "dtype_name",
    "fail",
    "float_array",
    "float_dtype",
    "like",
    "number_in",
    "positive_int",
    "positive_ints",
    "positive_number",
    "same_backend",
    "seed_or_none",
    "traced",
]

#: Parameter and data dtypes a network can be built in, by name.
FLOAT_DTYPES: tuple[str, ...] = ("float32", "float64")


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for the float32 dtype of any library (``torch.float32``, ...)."""
    return str(dtype).rsplit(".", 1)[-1]


def describe(x: Any) -> str:
    """Describe a value for an error message: library, dtype, shape, device."""
    if not array_api_compat.is_array_api_obj(x):
        return f"{type(x).__name__} {x!r}" if isinstance(x, (int, float)) else type(x).__name__
    dev = array_api_compat.device(x)
    return f"a {backend_name(x)} {dtype_name(x.dtype)} array of shape {tuple(x.shape)}" + (
        " (traced)" if dev is None else f" on {dev}"
    )


def fail(where: str, arg: str, expected: str, got: str, hint: str = "") -> NoReturn:
    """Raise :class:`LayerInputError` with the project's message layout."""
    msg = f"{where}: argument '{arg}': expected {expected}; got {got}"
    raise LayerInputError(msg + (f". {hint}" if hint else ""))


_REAL_FLOATING: dict[Any, bool] = {}

#: Array types with one device only (NumPy): no device comparison needed.
_ONE_DEVICE: dict[type, bool] = {}
#: Array types whose ``.device`` is their device, cheap to compare (the record's
#: ``device_attribute``: torch).
_DEVICE_ATTRIBUTE: dict[type, bool] = {}


def positive_int(where: str, arg: str, value: object) -> int:
    """Check `value` is an integer >= 1 (not a bool); return it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        fail(where, arg, "an integer >= 1", repr(value))
    return int(value)


def positive_ints(where: str, arg: str, values: Iterable[object]) -> list[int]:
    """Check every entry of `values` is an integer >= 1 (not a bool); return them as ints."""
    items = list(values)
    if any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in items):
        fail(where, arg, "positive integer sizes", repr(items))
    return [int(n) for n in items]  # type: ignore[call-overload]


def number_in(
    where: str,
    arg: str,
    value: object,
    *,
    low: float = 0.0,
    high: float | None = None,
    low_open: bool = True,
) -> float:
    """Check `value` is a real number in an interval; return it as a float.

    The interval is ``(low, inf)``, or ``(low, high)``, with ``low_open=False``
    ``[low, inf)`` or ``[low, high)``. Bools, NaN and infinities are refused.
    """
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if real else math.nan  # type: ignore[arg-type]
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and (high is None or v < high)
    if not ok:
        if high is None:
            expected = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            expected = f"a number in {'(' if low_open else '['}{low:g}, {high:g})"
        fail(where, arg, expected, describe(value))
    return v


def positive_number(where: str, arg: str, value: object) -> float:
    """Check `value` is a finite real number > 0 (not a bool); return it as a float."""
    return number_in(where, arg, value, low=0.0)


def seed_or_none(where: str, arg: str, value: object) -> int | None:
    """Check `value` is None or an integer >= 0 (not a bool), as NumPy's seeds are."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        fail(where, arg, "None or a non-negative int", describe(value))
    return int(value)


def choice(where: str, arg: str, value: object, choices: Iterable[str]) -> str:
    """Check `value` is one of the strings `choices` (case-insensitive); return it lower-case."""
    options = list(choices)
    if not isinstance(value, str) or value.lower() not in options:
        fail(where, arg, f"one of {options}", repr(value))
    return value.lower()


def float_dtype(where: str, value: object, arg: str = "dtype") -> str:
    """Return ``"float32"`` or ``"float64"`` for a dtype given by name or as a NumPy dtype."""
    try:
        name = np.dtype(value).name if not isinstance(value, bool) else ""  # type: ignore[call-overload]
    except TypeError:
        name = ""
    if name not in FLOAT_DTYPES:
        fail(where, arg, " or ".join(map(repr, FLOAT_DTYPES)), repr(value))
    return str(name)


#: The namespace of each (array type, real floating dtype) seen: checked once, then looked up.
_FLOAT_ARRAYS: dict[tuple[type, Any], ModuleType] = {}


def float_array(where: str, arg: str, x: Any, *, ndim_min: int = 0) -> ModuleType:
    """Check `x` is an array of a real floating dtype; return its namespace.

    The answer is cached per array type and dtype (the checks run once per
    kind of array, not per call: layers call this several times a step).
    """
    key = (
        type(x),
        getattr(x, "dtype", None),
    )  # the type first: never compares two libraries' dtypes
    try:
        xp = _FLOAT_ARRAYS[key]
    except (KeyError, TypeError):  # TypeError: an unhashable dtype attribute
        xp = _float_array(where, arg, x)
        if key[1] is not None:
            _FLOAT_ARRAYS[key] = xp
    if x.ndim < ndim_min:
        fail(where, arg, f"at least {ndim_min} dimensions", describe(x))
    return xp


def _float_array(where: str, arg: str, x: Any) -> ModuleType:
    if not array_api_compat.is_array_api_obj(x):
        fail(where, arg, "an array", describe(x), "Create one with xplayers.asarray(...)")
    xp = namespace(x)
    if type(x) not in _ONE_DEVICE:
        _ONE_DEVICE[type(x)] = bool(array_api_compat.is_numpy_array(x))
        _DEVICE_ATTRIBUTE[type(x)] = bool(getattr(record_of(x), "device_attribute", False))
    dtype = x.dtype
    key = (type(dtype), dtype)  # never compares dtypes of two libraries (strict warns)
    real = _REAL_FLOATING.get(key)
    if real is None:  # isdtype costs about a microsecond; dtypes are few
        real = _REAL_FLOATING[key] = bool(xp.isdtype(dtype, "real floating"))
    if not real:
        fail(
            where,
            arg,
            "a real floating dtype (float32 or float64)",
            describe(x),
            "Convert it, e.g. xp.astype(x, xp.float32)",
        )
    return xp


def like(x: Any, ref: Any) -> bool:
    """Whether `x` is an array of `ref`'s type, dtype and device, known without a library call.

    That is: a library with one device, or one whose ``.device`` attribute
    is the device (the record's ``device_attribute``: torch).

    Then every per-call check a layer makes of `x` against `ref` (an array,
    a real floating dtype, the same backend and device) passes, and only the
    shape is left to check: the fast path of the common case (NumPy arrays
    of the parameters' dtype). A False answer means "check in full", never
    "wrong": the full checks decide. `ref` must be an array whose dtype has
    been checked (a layer's parameter or kept forward value).
    """
    cls = type(x)
    if cls is not type(ref):
        return False
    if not _ONE_DEVICE.get(cls, False) and not (
        _DEVICE_ATTRIBUTE.get(cls, False) and x.device == ref.device
    ):
        return False
    return bool(x.dtype == ref.dtype)


def same_backend(where: str, arg: str, x: Any, owner: str, ref: Any) -> None:
    """Check array `x` lives on the same backend and device as `ref`."""
    cls = type(ref)
    if type(x) is cls:
        one = _ONE_DEVICE.get(cls)
        if one is None:
            one = _ONE_DEVICE[cls] = bool(array_api_compat.is_numpy_array(ref))
        if one or (_DEVICE_ATTRIBUTE.get(cls, False) and x.device == ref.device):
            return
    if namespace(ref) is not namespace(x):
        fail(
            where,
            arg,
            f"an array of the same backend as {owner} ({describe(ref)})",
            describe(x),
            "Move one of them with xplayers.to_backend(...)",
        )
    if not array_api_compat.is_numpy_array(ref):
        dx, dref = array_api_compat.device(x), array_api_compat.device(ref)
        # A traced array (inside jax.jit, jax.grad, jax.vmap) has no device (None):
        # where it runs is the tracer's to decide, so there is nothing to compare.
        if dx is not None and dref is not None and dx != dref:
            fail(
                where,
                arg,
                f"an array on the device of {owner} ({dref})",
                describe(x),
                "Move one of them with xplayers.to_backend(...)",
            )


def traced(x: Any) -> bool:
    """Whether `x` is an abstract value of a compiling library's transformation.

    That is a JAX tracer, met inside the user's ``jax.jit``, ``jax.grad`` or
    ``jax.vmap``: it has a shape and a dtype but no values to read and no
    device, and what a layer keeps of it must not outlive the transformation.
    Dask arrays are lazy but not traced (their values can be computed).
    """
    found = record_of(x)
    return found is not None and found.compiles and found.is_lazy(x)
