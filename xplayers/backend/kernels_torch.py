"""PyTorch kernels of the functional core: torch's own fused primitives, same formulas.

Each function has the name and signature of a function of
:mod:`xplayers.functional` marked ``@kernel`` and computes the same formula
(``tests/test_kernels.py`` compares them): ``addmm`` for ``x @ W + b``, the
matrix products of the affine backward without array-api-compat's wrappers,
``relu``/``sigmoid`` in torch's own operations, the ReLU backward as
``threshold_backward`` (the operation autograd runs; ``where`` with a scalar
is much slower on the CPU), ``softmax``/``log_softmax`` and the
cross-entropy as torch's fused ``softmax``, ``log_softmax`` and ``nll_loss``,
the cross-entropy backward as one ``scatter_add_`` of ``-1`` into a copy
of the probabilities, the convolution as ``conv2d`` and its backward as
``convolution_backward`` (the operations autograd runs for ``F.conv2d``),
and max pooling as ``max_pool2d`` with its indices.

Saved values: :func:`convolution` keeps the input and the filters
themselves (``col`` is `x`, ``col_W`` is `W`; no im2col matrix is built).
:func:`max_pooling` returns the book's ``arg_max``, the position of each
maximum inside its window, shape ``(N, OH, OW, C)`` (a permuted view),
translated from torch's indices into the zero-padded image; its backward
translates them back and adds ``dout`` at them with one ``scatter_add_``
(overlapping windows add up). Ties go to the first maximum in row-major
order, as ``argmax``: ``max_pool2d`` keeps the first of equal values. A
window holding several NaN gives its last NaN in ``max_pool2d`` but its
first in ``argmax``: on the CPU a NaN in the output (found from its sum)
defers to the generic code; on a GPU, where nothing is read on the host,
the gradient of such a window may go to another of its NaN.

Rows whose maximum is not finite (``+inf``, all ``-inf``, NaN) are defined by
the generic code; torch's fused softmax gives NaN there. On the CPU the
kernels read one scalar (the loss, or a sum of the result) and return
``NotImplemented`` when it is not finite, so the generic code runs; on a GPU
they read nothing on the host (no synchronisation) and replace those rows by
their definition with ``where`` instead (:func:`_special_rows`). Labels
outside ``[0, C)`` count 0 in the generic loss: the CPU kernels defer them to
the generic code (torch raises on them), the GPU kernels compare labels with
the class numbers, as the generic code does, and never index with them.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import torch

Tensor = Any  # torch.Tensor; Any keeps mypy working where torch is not installed

_FLOATS = (torch.float32, torch.float64)
#: The batch size from which ``dW`` is computed as ``(dout.T @ x).T`` (see affine_backward).
_DW_TRANSPOSED_FROM = 2048
#: The float64 batch size from which ``affine`` multiplies by ``W`` in ``nn.Linear``'s layout.
_W_COPY_FROM = 2048
_INTS = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
_nll_loss = torch.nn.functional.nll_loss
_threshold_backward = torch.ops.aten.threshold_backward.default
_conv_backward = torch.ops.aten.convolution_backward.default
_conv2d = torch.nn.functional.conv2d
_max_pool2d = torch.nn.functional.max_pool2d
_zero_pad = torch.nn.functional.pad


def affine(x: Tensor, W: Tensor, b: Tensor, /) -> Any:
    """``b + x @ W`` in one ``addmm``.

    From a batch of 2048 in float64, ``W`` is first copied into
    ``nn.Linear``'s weight layout (``W.T`` contiguous, viewed back as
    ``(D, M)``), where the same sums take less time, the copy included
    (see ``docs/performance.md``).
    """
    if x.ndim != 2 or not (x.dtype == W.dtype == b.dtype):
        return NotImplemented
    if x.shape[0] >= _W_COPY_FROM and x.dtype == torch.float64:
        W = W.T.contiguous().T
    return torch.addmm(b, x, W)


def affine_backward(
    dout: Tensor,
    x: Tensor,
    W: Tensor,
    /,
    *,
    input_grad: bool = True,
) -> Any:
    """``(dout @ W.T, x.T @ dout, sum(dout, 0))`` with ``mm``.

    From a batch of 2048, ``dW`` is computed as ``(dout.T @ x).T``, the
    product autograd computes for ``nn.Linear`` (whose weight is stored
    transposed): the same sums, returned as a transposed view. That product
    plus the optimizer's ``add_`` of the view takes less time than
    ``x.T @ dout`` at large batches but longer at small ones, where the
    strided update dominates (see ``docs/performance.md``).
    """
    if dout.ndim != 2 or x.ndim != 2 or not (dout.dtype == x.dtype == W.dtype):
        return NotImplemented
    dx = torch.mm(dout, W.T) if input_grad else None
    big = x.shape[0] >= _DW_TRANSPOSED_FROM  # then nn.Linear's backward GEMM: (dout.T @ x).T
    dW = torch.mm(dout.T, x).T if big else torch.mm(x.T, dout)
    return dx, dW, torch.sum(dout, 0)


def relu(x: Tensor, /) -> Tensor:
    """``max(x, 0)`` (NaN stays NaN)."""
    return torch.relu(x)


def relu_backward(dout: Tensor, out: Tensor, /) -> Any:
    """``dout`` where ``out > 0``, else 0, as ``threshold_backward``.

    ``threshold_backward`` keeps ``dout`` where ``not (out <= 0)``, which
    includes NaN, so a NaN in `out` must be read as 0 first (``nan_to_num``)
    to give 0, as ``out > 0`` does. On the CPU that pass is made only when
    the sum of `out` is NaN (a sum reads `out` once and writes nothing); on
    a GPU, where reading the sum would wait for the device, always.
    """
    if dout.shape != out.shape or dout.dtype != out.dtype or dout.dtype not in _FLOATS:
        return NotImplemented
    if not _on_cpu(out) or math.isnan(torch.sum(out).item()):
        out = torch.nan_to_num(out, nan=0.0)
    return _threshold_backward(dout, out, 0)


def sigmoid(x: Tensor, /) -> Tensor:
    """The logistic function (torch's, which never overflows either)."""
    return torch.sigmoid(x)


def sigmoid_backward(dout: Tensor, out: Tensor, /) -> Any:
    """``dout * (1 - out) * out`` in one new tensor."""
    if dout.dtype != out.dtype:
        return NotImplemented
    return torch.rsub(out, 1.0).mul_(out).mul_(dout)


# --------------------------------------------------------------------------- softmax


def _special_rows(x: Tensor, value: Tensor, *, log: bool) -> Tensor:
    """`value` (softmax or log-softmax of `x`) with the rows of a non-finite maximum defined.

    Those rows follow the generic shift: ``z = 0`` where ``x == max`` and
    ``-inf`` elsewhere (NaN in a row holding NaN), so the softmax is
    ``[x == max] / count`` and the log-softmax ``z - log(count)``. Nothing
    is read on the host.
    """
    m = torch.amax(x, dim=-1, keepdim=True)
    hit = x == m
    count = torch.sum(hit, dim=-1, keepdim=True, dtype=x.dtype)
    special = torch.where(hit, -torch.log(count), -math.inf) if log else hit / count
    special = torch.where(torch.isnan(m), m, special)
    return torch.where(torch.isfinite(m), value, special)


def _on_cpu(x: Tensor) -> bool:
    return bool(x.device.type == "cpu")


def softmax(x: Tensor, /) -> Any:
    """``exp(x - max) / sum`` as torch's fused ``softmax``."""
    if x.ndim == 0 or x.numel() == 0 or x.dtype not in _FLOATS:
        return NotImplemented
    y = torch.softmax(x, -1)
    if not _on_cpu(x):
        return _special_rows(x, y, log=False)
    if math.isnan(torch.sum(y).item()):  # a row maximum was not finite
        return NotImplemented
    return y


def log_softmax(x: Tensor, /) -> Any:
    """``x - max - log(sum(exp(x - max)))`` as torch's fused ``log_softmax``."""
    if x.ndim == 0 or x.numel() == 0 or x.dtype not in _FLOATS:
        return NotImplemented
    z = torch.log_softmax(x, -1)
    if not _on_cpu(x):
        return _special_rows(x, z, log=True)
    if math.isnan(torch.sum(z).item()):  # -inf entries sum to -inf; NaN only from a bad row
        return NotImplemented
    return z


def _loss(x: Tensor, logp: Tensor, t: Tensor, cpu: bool) -> Any:
    """``-sum_n (sum_c picked_nc) / N`` from the log-softmax; NotImplemented to defer."""
    n = x.shape[0]
    if t.ndim == 1:
        if t.dtype not in _INTS:
            return NotImplemented
        if cpu:  # out-of-range labels raise here (-100 is ignored: 0, as the generic code)
            try:
                return _nll_loss(logp, t.long(), reduction="sum") / n
            except (IndexError, RuntimeError):
                return NotImplemented
        classes = torch.arange(x.shape[1], device=x.device, dtype=torch.int64)
        picked = torch.where(t.long()[:, None] == classes, logp, 0.0)
    elif t.ndim == 2 and t.dtype.is_floating_point:
        p = t if t.dtype == x.dtype else t.to(x.dtype)
        # where() keeps 0 * -inf from turning into NaN for impossible classes
        picked = p * torch.where(p != 0, logp, 0.0)
    else:
        return NotImplemented
    return -torch.sum(torch.sum(picked, dim=-1) / n)


def _softmax_loss(x: Tensor, t: Tensor, with_softmax: bool) -> Any:
    if x.ndim != 2 or x.shape[0] == 0 or x.dtype not in _FLOATS:
        return NotImplemented
    cpu = _on_cpu(x)
    logp = torch.log_softmax(x, -1)
    if not cpu:
        logp = _special_rows(x, logp, log=True)
    loss = _loss(x, logp, t, cpu)
    if loss is NotImplemented:
        return NotImplemented
    if cpu and not math.isfinite(loss.item()):  # a bad row, or a loss the generic code sums apart
        return NotImplemented
    if not with_softmax:
        return loss
    y = torch.softmax(x, -1)
    return loss, y if cpu else _special_rows(x, y, log=False)


def softmax_cross_entropy(x: Tensor, t: Tensor, /) -> Any:
    """Mean loss through ``log_softmax`` and ``nll_loss``; ``y`` from torch's ``softmax``."""
    return _softmax_loss(x, t, True)


def cross_entropy(x: Tensor, t: Tensor, /) -> Any:
    """The loss of :func:`softmax_cross_entropy`."""
    return _softmax_loss(x, t, False)


def cross_entropy_backward(y: Tensor, t: Tensor, dout: Any = 1.0, /) -> Any:
    """``(y - onehot(t)) * dout / N``: ``-1`` added at the label entries, no mask built."""
    if y.ndim != 2 or y.dtype not in _FLOATS:
        return NotImplemented
    n = y.shape[0]
    scale = dout / max(n, 1)
    if t.ndim == 2 and t.dtype.is_floating_point:
        p = t if t.dtype == y.dtype else t.to(y.dtype)
        return torch.mul(y, torch.sum(p, dim=-1, keepdim=True)).sub_(p).mul_(scale)
    if t.ndim != 1 or t.dtype not in _INTS or t.shape[0] != n:
        return NotImplemented
    if not _on_cpu(y):  # never index with labels that may be out of range on a GPU
        classes = torch.arange(y.shape[1], device=y.device, dtype=torch.int64)
        return torch.where(t.long()[:, None] == classes, y - 1.0, y).mul_(scale)
    dx = y.clone()
    minus_one = torch.full((n, 1), -1.0, dtype=y.dtype)
    try:  # labels outside [0, C) raise: the generic code defines them
        dx.scatter_add_(1, t.long().view(n, 1), minus_one)
    except RuntimeError:
        return NotImplemented
    return dx.mul_(scale)


def labels_in_range(t: Tensor, num_classes: int, /) -> Any:
    """``0 <= min(t)`` and ``max(t) < C`` from one ``aminmax``; a Python bool on the CPU."""
    if t.ndim != 1 or t.shape[0] == 0 or t.dtype not in _INTS:
        return NotImplemented
    low, high = torch.aminmax(t)
    if _on_cpu(t):
        return bool(low.item() >= 0 and high.item() < num_classes)
    if num_classes > torch.iinfo(t.dtype).max:
        return low >= 0
    return (low >= 0) & (high < num_classes)


def subtract_scaled_(p: Tensor, g: Tensor, lr: float, /) -> bool:
    """``p.add_(g, alpha=-lr)``: the update of ``torch.optim.SGD``, without ``lr * g``.

    Only for a plain tensor and gradient of one dtype, shape and device
    (outside autograd); anything else is left to the optimizer.
    """
    if (
        type(g) is not type(p)
        or g.dtype != p.dtype
        or g.shape != p.shape
        or g.device != p.device
        or p.requires_grad
        or g.requires_grad
    ):
        return False
    p.add_(g, alpha=-lr)
    return True


def scatter_add(values: Tensor, indices: Tensor, num_rows: int, /) -> Any:
    """``index_add`` of the rows of `values` into a new zero tensor (repeated indices add up).

    Torch refuses indices outside ``[0, num_rows)`` (the generic form skips
    them); on the CPU they go to the generic form, on a GPU nothing is read
    on the host and the layers' own checks keep them out.
    """
    if values.ndim != 2 or indices.ndim != 1 or indices.dtype not in _INTS:
        return NotImplemented
    if _on_cpu(values) and indices.numel():
        low, high = torch.stack(torch.aminmax(indices)).tolist()  # one pass, one read
        if low < 0 or high >= num_rows:
            return NotImplemented
    out = torch.zeros((num_rows, values.shape[1]), dtype=values.dtype, device=values.device)
    return out.index_add_(0, indices.to(torch.int64), values)


def _label_index(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(valid, index)``: labels in ``[0, C)``, and the labels with the others set to 0."""
    if x.ndim != 2 or t.ndim != 1 or t.dtype not in _INTS or t.shape[0] != x.shape[0]:
        return None
    if x.shape[1] == 0 or x.dtype not in _FLOATS or t.device != x.device:
        return None
    valid = (t >= 0) & (t < x.shape[1])
    return valid, torch.where(valid, t, 0).long().view(-1, 1)


def at_labels(x: Tensor, t: Tensor, /) -> Any:
    """``x[m, t[m]]`` as one ``gather``; labels outside ``[0, C)`` read column 0 and give 0.

    Nothing is read on the host, and no label indexes outside the row.
    """
    found = _label_index(x, t)
    if found is None:
        return NotImplemented
    valid, index = found
    return torch.where(valid, torch.gather(x, 1, index).view(-1), 0.0)


def softmax_label_gradient(y: Tensor, t: Tensor, weight: Tensor, /) -> Any:
    """``y * weight[:, None]``, then ``-weight`` added at the labels with one ``scatter_add_``.

    A label outside ``[0, C)`` adds 0 at column 0 (its one-hot row is zero).
    """
    found = _label_index(y, t)
    if found is None or not isinstance(weight, torch.Tensor):
        return NotImplemented
    if weight.shape != t.shape or weight.dtype != y.dtype:
        return NotImplemented
    valid, index = found
    out = torch.mul(y, weight.view(-1, 1))
    return out.scatter_add_(1, index, torch.where(valid, -weight, 0.0).view(-1, 1))


# --------------------------------------------------------------------------- LSTM over time


class LstmGraph(NamedTuple):
    """What the native :func:`time_lstm` keeps: its autograd graph's outputs and leaves."""

    outputs: tuple[Tensor, Tensor, Tensor]  # hs (N, T, H), h_last (1, N, H), c_last (1, N, H)
    leaves: tuple[Tensor, ...]  # xs, h0, c0, Wx, Wh, b


def _torch_gates(w: Tensor) -> Tensor:
    """Gate blocks along the last axis from the book's f, g, i, o to torch's i, f, g, o.

    One ``index_select`` of the four blocks, whose backward is one ``index_add``.
    """
    H = w.shape[-1] // 4
    order = torch.tensor([2, 0, 1, 3], device=w.device)
    blocks = w.reshape(*w.shape[:-1], 4, H)
    return blocks.index_select(w.ndim - 1, order).reshape(w.shape)


def _native_lstm(Wx: Tensor, Wh: Tensor, b: Tensor, xs: Tensor, *states: Tensor | None) -> bool:
    """Whether ``torch.lstm`` takes these arrays: CPU float tensors of one dtype, no autograd."""
    arrays = (Wx, Wh, b, xs, *(s for s in states if s is not None))
    if not all(isinstance(a, torch.Tensor) for a in arrays) or torch.is_inference_mode_enabled():
        return False
    H = Wh.shape[0] if Wh.ndim == 2 else -1
    return (
        xs.ndim == 3
        and xs.shape[1] > 0
        and Wx.shape == (xs.shape[2], 4 * H)
        and Wh.shape == (H, 4 * H)
        and b.shape == (4 * H,)
        and all(s is None or s.shape == (xs.shape[0], H) for s in states)
        and _floats(*arrays)
        and all(a.device.type == "cpu" and not a.requires_grad for a in arrays)
    )


def time_lstm(
    Wx: Tensor, Wh: Tensor, b: Tensor, xs: Tensor, h: Any = None, c: Any = None, /
) -> Any:
    """The book's LSTM over time as one ``torch.lstm`` (oneDNN's on the CPU), gates reordered.

    The weights enter as leaves of an autograd graph, reordered and
    transposed into ``nn.LSTM``'s layout inside it, so the backward
    (:func:`lstm_through_time_backward`) gives their gradients in the
    book's layout. The second bias is zero. On the CPU only: a GPU keeps
    the generic loop (cuDNN wants weights in one flat buffer).
    """
    if not _native_lstm(Wx, Wh, b, xs, h, c):
        return NotImplemented
    zeros = xs.new_zeros((xs.shape[0], Wh.shape[0]))
    h, c = (zeros if s is None else s for s in (h, c))
    leaves = tuple(a.detach().requires_grad_() for a in (xs, h, c, Wx, Wh, b))
    x_, h_, c_, wx, wh, bb = leaves
    with torch.enable_grad():
        weights = [
            _torch_gates(wx).T.contiguous(),
            _torch_gates(wh).T.contiguous(),
            _torch_gates(bb),
            torch.zeros_like(bb),
        ]
        hs, hn, cn = torch.lstm(x_, (h_[None], c_[None]), weights, True, 1, 0.0, True, False, True)
    graph = LstmGraph((hs, hn, cn), leaves)
    return hs.detach(), graph, (hn[0].detach(), cn[0].detach())


def lstm_through_time_backward(
    dhs: Tensor, cache: Any, dh: Tensor | None = None, dc: Tensor | None = None, /
) -> Any:
    """Gradients of the native :func:`time_lstm` from its graph (kept for another backward)."""
    if not isinstance(cache, LstmGraph):
        return NotImplemented
    hs, hn, cn = cache.outputs
    outputs, grads = [hs], [dhs.to(hs.dtype)]
    for out, g in ((hn, dh), (cn, dc)):
        if g is not None:
            outputs.append(out)
            grads.append(g.to(hs.dtype)[None])
    with torch.enable_grad():
        dxs, dh0, dc0, dWx, dWh, db = torch.autograd.grad(
            outputs, cache.leaves, grads, retain_graph=True
        )
    return dxs, (dh0, dc0), (dWx, dWh, db)


# --------------------------------------------------------------------------- convolution


def _floats(*tensors: Tensor) -> bool:
    """Whether the tensors share one dtype, float32 or float64."""
    dtype = tensors[0].dtype
    return dtype in _FLOATS and all(t.dtype == dtype for t in tensors)


def convolution(x: Tensor, W: Tensor, b: Tensor, stride: int = 1, pad: int = 0) -> Any:
    """``conv2d(x, W, b)``; keeps `x` and `W` themselves as ``col`` and ``col_W``."""
    if x.ndim != 4 or W.ndim != 4 or b.ndim != 1 or not _floats(x, W, b):
        return NotImplemented
    return _conv2d(x, W, b, stride, pad), x, W


def convolution_backward(
    dout: Tensor,
    col: Tensor,
    col_W: Tensor,
    input_shape: tuple[int, int, int, int],
    filter_shape: tuple[int, int, int, int],
    stride: int = 1,
    pad: int = 0,
    *,
    input_grad: bool = True,
) -> Any:
    """``dx``, ``dW``, ``db`` from aten's ``convolution_backward`` (autograd's for ``conv2d``).

    Takes the input and filters that :func:`convolution` keeps; the im2col
    matrices of the generic forward go to the generic backward.
    """
    if col.ndim != 4 or col_W.ndim != 4 or dout.ndim != 4 or not _floats(dout, col, col_W):
        return NotImplemented
    if col.shape[0] == 0:  # nothing to sum: the generic code gives the zeros
        return NotImplemented
    dx, dW, db = _conv_backward(
        dout,
        col,
        col_W,
        [int(filter_shape[0])],
        [stride, stride],
        [pad, pad],
        [1, 1],
        False,
        [0, 0],
        1,
        [input_grad, True, True],
    )
    return dx, dW, db


# --------------------------------------------------------------------------- max pooling


@functools.lru_cache(maxsize=16)
def _window_maps(
    oh: int, ow: int, width: int, ph: int, pw: int, stride: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """``(corner, position, offset)``: torch's pooling indices to window positions and back.

    In a padded image `width` wide, the window at output ``(oy, ox)``
    starts at the flat index ``corner[oy, ox]``; the element ``r`` past the
    corner is at window position ``position[r]`` (row-major in the window),
    and window position ``p`` is ``offset[p]`` past the corner.
    """
    rows = torch.arange(oh, device=device) * (stride * width)
    corner = rows[:, None] + torch.arange(ow, device=device) * stride
    r = torch.arange((ph - 1) * width + pw, device=device)
    position = torch.div(r, width, rounding_mode="floor") * pw + r % width
    p = torch.arange(ph * pw, device=device)
    offset = torch.div(p, pw, rounding_mode="floor") * width + p % pw
    return corner, position, offset


def max_pooling(x: Tensor, ph: int, pw: int, stride: int = 1, pad: int = 0, /) -> Any:
    """``max_pool2d`` of the zero-padded input; torch's indices become the book's ``arg_max``."""
    if x.ndim != 4 or x.numel() == 0 or x.dtype not in _FLOATS:
        return NotImplemented
    img = _zero_pad(x, (pad, pad, pad, pad)) if pad else x  # the book pads with zeros
    out, indices = _max_pool2d(img, (ph, pw), stride, return_indices=True)
    if _on_cpu(x) and math.isnan(torch.sum(out).item()):  # a NaN: argmax takes the first
        return NotImplemented
    oh, ow, width = out.shape[2], out.shape[3], img.shape[3]
    corner, position, _ = _window_maps(oh, ow, width, ph, pw, stride, x.device)
    arg_max = torch.take(position, indices - corner)  # (N, C, OH, OW)
    return out, arg_max.permute(0, 2, 3, 1)


def max_pooling_backward(
    dout: Tensor,
    arg_max: Tensor,
    input_shape: tuple[int, int, int, int],
    ph: int,
    pw: int,
    stride: int = 1,
    pad: int = 0,
    /,
) -> Any:
    """``dout`` added at each window's maximum with one ``scatter_add_`` (overlaps add up)."""
    if dout.ndim != 4 or dout.dtype not in _FLOATS or arg_max.dtype not in _INTS:
        return NotImplemented
    n, c, h, w = (int(s) for s in input_shape)
    if n * c == 0:
        return NotImplemented
    oh, ow = int(dout.shape[2]), int(dout.shape[3])
    height, width = h + 2 * pad, w + 2 * pad
    corner, _, offset = _window_maps(oh, ow, width, ph, pw, stride, dout.device)
    positions = arg_max.permute(0, 3, 1, 2).to(torch.int64)
    indices = torch.take(offset, positions).add_(corner)  # (N, C, OH, OW)
    dx = torch.zeros((n * c, height * width), dtype=dout.dtype, device=dout.device)
    dx.scatter_add_(1, indices.reshape(n * c, oh * ow), dout.reshape(n * c, oh * ow))
    dx = dx.view(n, c, height, width)
    if pad:
        dx = dx[:, :, pad : pad + h, pad : pad + w]
    return dx
