"""PyTorch kernels of the functional core: torch's own fused primitives, same formulas.

Each function has the name and signature of a function of
:mod:`xplayers.functional` marked ``@kernel`` and computes the same formula
(``tests/test_kernels.py`` compares them): ``addmm`` for ``x @ W + b``, the
matrix products of the affine backward without array-api-compat's wrappers,
``relu``/``sigmoid`` and the softmax cross-entropy backward in torch's own
operations. None of them reads array values on the host, so none waits for
a GPU.
"""

from __future__ import annotations

from typing import Any

import torch

Tensor = Any  # torch.Tensor; Any keeps mypy working where torch is not installed


def affine(x: Tensor, W: Tensor, b: Tensor, /) -> Any:
    """``b + x @ W`` in one ``addmm``."""
    if x.ndim != 2 or not (x.dtype == W.dtype == b.dtype):
        return NotImplemented
    return torch.addmm(b, x, W)


def affine_backward(
    dout: Tensor,
    x: Tensor,
    W: Tensor,
    /,
    *,
    input_grad: bool = True,
) -> Any:
    """``(dout @ W.T, x.T @ dout, sum(dout, 0))`` with ``mm``."""
    if dout.ndim != 2 or x.ndim != 2 or not (dout.dtype == x.dtype == W.dtype):
        return NotImplemented
    dx = torch.mm(dout, W.T) if input_grad else None
    return dx, torch.mm(x.T, dout), torch.sum(dout, 0)


def relu(x: Tensor, /) -> Tensor:
    """``max(x, 0)`` (NaN stays NaN)."""
    return torch.relu(x)


def relu_backward(dout: Tensor, out: Tensor, /) -> Tensor:
    """``dout`` where ``out > 0``, else 0."""
    return torch.where(out > 0, dout, 0.0)


def sigmoid(x: Tensor, /) -> Tensor:
    """The logistic function (torch's, which never overflows either)."""
    return torch.sigmoid(x)


def sigmoid_backward(dout: Tensor, out: Tensor, /) -> Any:
    """``dout * (1 - out) * out`` in one new tensor."""
    if dout.dtype != out.dtype:
        return NotImplemented
    return torch.rsub(out, 1.0).mul_(out).mul_(dout)


def cross_entropy_backward(y: Tensor, t: Tensor, dout: Any = 1.0, /) -> Any:
    """``(y - onehot(t)) * dout / N``: the label entries are indexed, no mask is built."""
    if y.ndim != 2 or t.ndim != 1:
        return NotImplemented
    n = y.shape[0]
    scale = dout / max(n, 1)
    dx = torch.mul(y, scale)
    rows = torch.arange(n, device=y.device)
    labels = t.long()
    dx[rows, labels] = (y[rows, labels] - 1.0) * scale
    return dx
