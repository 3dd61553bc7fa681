"""Argument checks shared by the window layers (Convolution, Pooling) and the chapter-6 layers."""

from __future__ import annotations

import numbers
from types import ModuleType
from typing import Any

from xplayers._validation import describe, fail, float_array, positive_int, same_backend

__all__ = [
    "check_dout",
    "check_fits",
    "image_batch",
    "non_negative_int",
    "positive_int",
    "unit_interval",
]


def non_negative_int(where: str, arg: str, value: object) -> int:
    """Check `value` is an integer >= 0 (not a bool); return it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        fail(where, arg, "an integer >= 0", repr(value))
    return int(value)


def unit_interval(where: str, arg: str, value: object) -> float:
    """Check `value` is a real number in [0, 1] (not a bool); return it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) <= 1:
        fail(where, arg, "a number in [0, 1]", repr(value))
    return float(value)


def image_batch(where: str, x: Any) -> ModuleType:
    """Check `x` is a real floating ``(N, C, H, W)`` array; return its namespace."""
    xp = float_array(where, "x", x)
    if x.ndim != 4:
        fail(where, "x", "images of shape (N, C, H, W) (4 dimensions)", describe(x))
    return xp


def check_fits(where: str, x: Any, fh: int, fw: int, pad: int, what: str) -> None:
    """Check the ``fh x fw`` window fits inside the padded images `x`."""
    h, w = int(x.shape[2]) + 2 * pad, int(x.shape[3]) + 2 * pad
    if fh > h or fw > w:
        fail(
            where,
            "x",
            f"images of at least {fh}x{fw} after padding (pad={pad}) to fit the {what}",
            f"{describe(x)}, {h}x{w} after padding",
        )


def check_dout(where: str, dout: Any, shape: tuple[int, ...], ref: Any, dtype: Any) -> Any:
    """Check the upstream gradient's shape and backend against `ref`; cast it to `dtype`."""
    xp = float_array(where, "dout", dout)
    same_backend(where, "dout", dout, "the forward input", ref)
    if tuple(dout.shape) != tuple(shape):
        fail(where, "dout", f"the shape of the forward output {tuple(shape)}", describe(dout))
    return dout if dout.dtype == dtype else xp.astype(dout, dtype)
