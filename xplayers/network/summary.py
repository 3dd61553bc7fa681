"""A network's summary as Keras prints it: layers, output shapes, parameter counts, dtype, device.

:func:`summarize` is what :meth:`Sequential.summary
<xplayers.network.Sequential.summary>` returns. The output shapes come from
one sample of zeros sent through shallow copies of the layers on the
network's own backend and device (in inference mode), so the network's own
layers keep their state: no cached input, no running average, no Dropout
mask changes.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import array_api_compat
import numpy as np

from xplayers._validation import dtype_name, fail, positive_ints
from xplayers.backend import asarray, backend_name
from xplayers.layers import Affine, BatchNormalization, Convolution
from xplayers.network.parameters import layer_params

__all__ = ["Summary", "summarize"]


class Summary(str):
    """The text of a summary; shown as the table itself at the prompt (not as a quoted string)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _sample_shape(net: Any, where: str, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    """The shape of one input sample: given, the network's ``input_dim``, or its first Affine's."""
    if input_shape is not None:
        if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
            fail(where, "input_shape", "the shape of one sample, e.g. (784,)", repr(input_shape))
        return tuple(positive_ints(where, "input_shape", input_shape))
    input_dim = getattr(net, "input_dim", None)
    if input_dim is not None:
        return tuple(int(n) for n in input_dim)
    first = next(iter(net.layers.values()))
    if isinstance(first, Affine):
        return (int(first.W.shape[0]),)
    hint = " (C, H, W) of the images" if isinstance(first, Convolution) else ""
    return fail(
        where,
        "input_shape",
        f"the shape of one sample{hint}: the first layer does not fix it",
        "None",
    )


def _running_averages(layer: Any) -> int:
    """Values of the running mean and variance a batch-norm layer keeps (Keras: non-trainable).

    Counted from ``gamma``: the averages themselves appear at the first forward pass.
    """
    if not isinstance(layer, BatchNormalization):
        return 0
    return 2 * _size(layer.gamma.shape)


def _size(shape: Sequence[int]) -> int:
    return math.prod(int(n) for n in shape)


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(["None", *map(str, shape)]) + ")"


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def summarize(net: Any, input_shape: Sequence[int] | None = None) -> Summary:
    """The summary of `net`; see :meth:`xplayers.network.Sequential.summary`."""
    where = f"{type(net).__name__}.summary"
    sample = _sample_shape(net, where, input_shape)
    slots = net.params.slots
    names = {(id(layer), attr): key for key, (layer, attr) in slots.items()}
    if slots:
        layer, attr = next(iter(slots.values()))
        ref = getattr(layer, attr)
        x = net.to_own(np.zeros((1, *sample), dtype=dtype_name(ref.dtype)))
    else:
        ref = x = asarray(np.zeros((1, *sample)))
    dtype = dtype_name(ref.dtype)
    itemsize = np.dtype(dtype).itemsize
    rows = [["Layer (type)", "Output shape", "Param #", "Parameters"]]
    trainable = buffers = 0
    for name, layer in net.layers.items():
        shadow = copy.copy(layer)  # forward writes its cache here, not on the network's layer
        if getattr(layer, "takes_train_flg", False):
            x = shadow.forward(x, False)
        else:
            x = shadow.forward(x)
        params = layer_params(layer)
        count = sum(_size(v.shape) for v in params.values())
        trainable += count
        buffers += _running_averages(layer)
        described = ", ".join(
            f"{names[(id(layer), attr)]} {tuple(int(n) for n in v.shape)}"
            for attr, v in params.items()
        )
        rows.append(
            [f"{name} ({type(layer).__name__})", _shape(x.shape[1:]), f"{count:,}", described]
        )
    rows.append([f"last_layer ({type(net.last_layer).__name__})", "()", "0", "the loss, a scalar"])
    body = _table(rows, right={2})
    rule = max(len(line) for line in body)
    device = array_api_compat.device(ref)
    lines = [
        f"{type(net).__name__}: {dtype} on {backend_name(ref)} ({device})",
        f"Input: {_shape(sample)}",
        "_" * rule,
        body[0],
        "=" * rule,
        *body[1:],
        "=" * rule,
        f"Total params: {trainable + buffers:,} ({_bytes((trainable + buffers) * itemsize)})",
        f"Trainable params: {trainable:,} ({_bytes(trainable * itemsize)})",
        f"Non-trainable params: {buffers:,} ({_bytes(buffers * itemsize)})"
        + ("  (batch-norm running averages)" if buffers else ""),
    ]
    return Summary("\n".join(lines))
