"""The PyTorch eager peer, as a PyTorch user writes it, from the book's weights.

784-H-10: ``nn.Linear``, ``F.cross_entropy``, ``torch.optim.SGD``; chapter 7's
convnet with ``F.conv2d`` and ``F.max_pool2d``. On the device of
``XPLAYERS_BACKEND`` when it names torch (``torch:cuda``), else the CPU; TF32
is off. Each timed step ends with ``torch.cuda.synchronize`` on a GPU.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from book_numpy import init_conv_params, init_params, make_batch

torch = pytest.importorskip("torch")
F = torch.nn.functional
LR = 0.1


@pytest.fixture(scope="module")
def device(xb):
    with warnings.catch_warnings():  # newer releases point to fp32_precision; these still work
        warnings.simplefilter("ignore")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return xb.backend.device if xb.backend.name == "torch" else torch.device("cpu")


def _impl(device):
    return "torch eager gpu" if device.type == "cuda" else "torch eager cpu"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _tensors(device, *arrays):
    return [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]


def test_step(measure, device, hidden, dtype, batch):
    p = init_params(hidden, dtype)
    kw = {"device": device, "dtype": getattr(torch, dtype)}
    model = torch.nn.Sequential(
        torch.nn.Linear(784, hidden, **kw), torch.nn.ReLU(), torch.nn.Linear(hidden, 10, **kw)
    )
    with torch.no_grad():
        for layer, W, b in ((model[0], p["W1"], p["b1"]), (model[2], p["W2"], p["b2"])):
            layer.weight.copy_(torch.from_numpy(W.T.copy()))
            layer.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, t = _tensors(device, *make_batch(batch, dtype))

    def run():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), t).backward()
        opt.step()
        _sync(device)

    measure(
        run,
        f"step 784-{hidden}-10 {dtype} N={batch}",
        _impl(device),
        table=f"Training step, 784-{hidden}-10, {dtype}",
        batch=batch,
        samples=batch,
        plot=True,
        device="gpu" if device.type == "cuda" else "cpu",
    )


def test_conv_step(measure, device, dtype):
    params = _tensors(device, *init_conv_params(dtype).values())
    for p in params:
        p.requires_grad_(True)
    W1, b1, W2, b2, W3, b3 = params
    opt = torch.optim.SGD(params, lr=LR)
    x, t = _tensors(device, *make_batch(100, dtype, shape=(1, 28, 28)))

    def run():
        opt.zero_grad(set_to_none=True)
        h = F.max_pool2d(F.relu(F.conv2d(x, W1, b1)), 2, 2).flatten(1)
        y = F.relu(h @ W2 + b2) @ W3 + b3
        F.cross_entropy(y, t).backward()
        opt.step()
        _sync(device)

    measure(
        run,
        f"SimpleConvNet step {dtype} N=100",
        _impl(device),
        table="SimpleConvNet training step, batch 100 (samples/s)",
        row=dtype,
        samples=100,
        device="gpu" if device.type == "cuda" else "cpu",
    )


def test_extend_step(measure, device, dtype):
    """784-100x5-10, BatchNorm and Dropout 0.2 after each hidden ReLU (MultiLayerNetExtend)."""
    torch_dtype = getattr(torch, dtype)
    sizes = [784, *[100] * 5, 10]
    layers = []
    for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if k < len(sizes) - 2:
            layers += [torch.nn.BatchNorm1d(n_out), torch.nn.ReLU(), torch.nn.Dropout(0.2)]
    model = torch.nn.Sequential(*layers).to(device=device, dtype=torch_dtype).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, t = _tensors(device, *make_batch(100, dtype))

    def run():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), t).backward()
        opt.step()
        _sync(device)

    measure(
        run,
        f"MultiLayerNetExtend step {dtype} N=100",
        _impl(device),
        table="MultiLayerNetExtend (BatchNorm, Dropout) training step, batch 100 (samples/s)",
        row=dtype,
        samples=100,
        device="gpu" if device.type == "cuda" else "cpu",
    )
