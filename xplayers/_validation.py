"""Argument checks shared by the layers; every failure names where, what and why."""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any, NoReturn

import array_api_compat

from xplayers._backend import backend_name, namespace
from xplayers.errors import LayerInputError

__all__ = ["describe", "dtype_name", "fail", "float_array", "positive_int", "same_backend"]


def dtype_name(dtype: Any) -> str:
    """``"float32"`` for the float32 dtype of any library (``torch.float32``, ...)."""
    return str(dtype).rsplit(".", 1)[-1]


def describe(x: Any) -> str:
    """Describe a value for an error message: library, dtype, shape, device."""
    if not array_api_compat.is_array_api_obj(x):
        return f"{type(x).__name__} {x!r}" if isinstance(x, (int, float)) else type(x).__name__
    return (
        f"a {backend_name(x)} {dtype_name(x.dtype)} array of shape {tuple(x.shape)}"
        f" on {array_api_compat.device(x)}"
    )


def fail(where: str, arg: str, expected: str, got: str, hint: str = "") -> NoReturn:
    """Raise :class:`LayerInputError` with the project's message layout."""
    msg = f"{where}: argument '{arg}': expected {expected}; got {got}"
    raise LayerInputError(msg + (f". {hint}" if hint else ""))


_REAL_FLOATING: dict[Any, bool] = {}


def positive_int(where: str, arg: str, value: object) -> int:
    """Check `value` is an integer >= 1 (not a bool); return it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        fail(where, arg, "an integer >= 1", repr(value))
    return int(value)


def float_array(where: str, arg: str, x: Any, *, ndim_min: int = 0) -> ModuleType:
    """Check `x` is an array of a real floating dtype; return its namespace."""
    if not array_api_compat.is_array_api_obj(x):
        fail(where, arg, "an array", describe(x), "Create one with xplayers.asarray(...)")
    xp = namespace(x)
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
    if x.ndim < ndim_min:
        fail(where, arg, f"at least {ndim_min} dimensions", describe(x))
    return xp


def same_backend(where: str, arg: str, x: Any, owner: str, ref: Any) -> None:
    """Check array `x` lives on the same backend and device as `ref`."""
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
        if dx != dref:
            fail(
                where,
                arg,
                f"an array on the device of {owner} ({dref})",
                describe(x),
                "Move one of them with xplayers.to_backend(...)",
            )
