"""xplayers on the backend of ``XPLAYERS_BACKEND``, on the peers' weights and batches.

The three ways a reader of the book trains (``train_step``, the book's loop
``net.gradient`` + ``SGD.update``, the four layers wired by hand), each layer
alone, ReLU on arrays larger than the caches, SoftmaxWithLoss's peak memory,
and chapter 7's SimpleConvNet. Every timed call ends with ``xb.done(...)``.
"""

from __future__ import annotations

import tracemalloc

import pytest
from book_numpy import (
    LAYERS,
    SoftmaxWithLoss,
    init_conv_params,
    init_params,
    layer_arrays,
    make_batch,
)

import xplayers as xpl
from xplayers.backend import materialize_all

LR = 0.1
SLOW = ("dask", "array_api_strict")  # neither is a performance target
LIMITS = ("numpy", "torch", "cupy")  # backends whose GEMMs and bandwidth test_limits measures


def _skip_slow(xb, batch):
    if xb.backend.name in SLOW and batch > (1 if xb.quick else 2048):
        pytest.skip(f"{xb.backend.name} is not benchmarked above batch 2048 (1 in a quick run)")


def _device(xb):
    return "gpu" if xb.gpu else "cpu"


def _limits(xb):
    return xb.label if xb.backend.name in LIMITS else "numpy"


def _net(hidden, dtype):
    net = xpl.TwoLayerNet(784, hidden, 10, dtype=dtype, seed=0)
    net.load_params(init_params(hidden, dtype))
    return net


def step_goals(xb, path, hidden, dtype, batch):
    """The goals of issue 10 for one training path on this backend."""
    eager = "torch eager gpu" if xb.gpu else "torch eager cpu"
    name = xb.backend.name
    goals = []
    if name == "numpy" and hidden == 100:
        goals.append({"goal": f"NumPy {path} ≥ 1.5× the book's code", "vs": "book", "min": 1.5})
        goals.append(
            {
                "goal": f"NumPy {path} ≥ 2× PyTorch eager CPU at N ≤ 128, ≥ 1.25× above",
                "vs": "torch eager cpu",
                "min": 2.0 if batch <= 128 else 1.25,
            }
        )
    if name == "numpy" and path == "train_step" and batch >= 2048:
        goal = "NumPy train_step ≤ 1.15× its GEMMs timed alone, N ≥ 2048"
        goals.append({"goal": goal, "vs": "GEMMs numpy", "measure": "time", "max": 1.15})
    if name == "numpy" and path == "train_step" and batch == 32768:
        goal = "NumPy train_step samples/s at N = 32768 ≥ at N = 8192"
        group = step_group(hidden, dtype, 8192)
        goals.append({"goal": goal, "vs": f"{path} numpy", "vs_group": group, "min": 1.0})
    if name == "torch" or (name in ("cupy", "jax") and path == "train_step"):
        where = "GPU" if xb.gpu else "CPU"
        goal = f"{path} on {xb.backend.name} {where} ≥ 1.0× PyTorch eager {where}"
        goals.append({"goal": goal, "vs": eager, "min": 1.0})
    if name == "jax" and path == "train_step":
        goals.append(
            {
                "goal": "JAX train_step vs a hand-written jax.jit step",
                "vs": f"jax.jit {_device(xb)}",
            }
        )
    if name in LIMITS and name != "numpy" and path == "train_step" and batch >= 2048:
        goal = f"{xb.label} train_step / its GEMMs timed alone, N ≥ 2048"
        goals.append({"goal": goal, "vs": f"GEMMs {xb.label}", "measure": "time"})
    return goals


def step_group(hidden, dtype, batch):
    return f"step 784-{hidden}-10 {dtype} N={batch}"


def _measure_step(measure, xb, path, run, hidden, dtype, batch):
    measure(
        run,
        step_group(hidden, dtype, batch),
        f"{path} {xb.label}",
        table=f"Training step, 784-{hidden}-10, {dtype}",
        batch=batch,
        samples=batch,
        plot=path == "train_step",
        device=_device(xb),
        goals=step_goals(xb, path, hidden, dtype, batch),
    )


def test_train_step(measure, xb, hidden, dtype, batch):
    _skip_slow(xb, batch)
    net, opt = _net(hidden, dtype), xpl.SGD(lr=LR)
    x, t = (xpl.asarray(a) for a in make_batch(batch, dtype))

    def run():
        loss = net.train_step(x, t, opt)
        xb.done(loss, *net.params.values())

    _measure_step(measure, xb, "train_step", run, hidden, dtype, batch)


def test_book_loop(measure, xb, dtype, batch):
    _skip_slow(xb, batch)
    net, opt = _net(100, dtype), xpl.SGD(lr=LR)
    x, t = (xpl.asarray(a) for a in make_batch(batch, dtype))

    def run():
        grads = net.gradient(x, t)
        opt.update(net.params, grads)
        xb.done(*net.params.values())

    _measure_step(measure, xb, "book loop", run, 100, dtype, batch)


def test_by_hand(measure, xb, dtype, batch):
    _skip_slow(xb, batch)
    p = {k: xpl.asarray(v) for k, v in init_params(100, dtype).items()}
    a1, relu, a2 = xpl.Affine(p["W1"], p["b1"]), xpl.Relu(), xpl.Affine(p["W2"], p["b2"])
    last = xpl.SoftmaxWithLoss()
    x, t = (xpl.asarray(a) for a in make_batch(batch, dtype))

    def run():
        loss = last.forward(a2.forward(relu.forward(a1.forward(x))), t)
        a1.backward(relu.backward(a2.backward(last.backward())))
        for layer in (a1, a2):
            layer.W -= LR * layer.dW
            layer.b -= LR * layer.db
        if xb.lazy:  # compute the new weights once, so the graph does not grow step by step
            a1.W, a1.b, a2.W, a2.b = materialize_all([a1.W, a1.b, a2.W, a2.b])
        xb.done(loss, a1.W, a1.b, a2.W, a2.b)

    _measure_step(measure, xb, "by hand", run, 100, dtype, batch)


@pytest.mark.parametrize("phase", ["forward", "backward", "both"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer(measure, xb, quick, layer, phase, hidden, dtype, batch):
    _skip_slow(xb, batch)
    if layer == "softmaxwithloss" and hidden != 100:
        pytest.skip("SoftmaxWithLoss does not depend on H")
    if quick and phase != "both":
        pytest.skip("a quick run times each layer's forward+backward only")
    if phase != "both" and xb.backend.name != "numpy":
        pytest.skip("layers' forward and backward apart are timed on NumPy only (the book's peer)")
    if hidden > 100 and batch > 2048:
        pytest.skip("one layer of 784-1000-10 above N = 2048 is most of a step; the step runs")
    a = {k: xpl.asarray(v) for k, v in layer_arrays(layer, batch, hidden, dtype).items()}
    if layer == "softmaxwithloss":
        obj = xpl.SoftmaxWithLoss()
        forward, backward = (lambda: obj.forward(a["x"], a["t"])), obj.backward
    else:
        cls = {"relu": xpl.Relu, "sigmoid": xpl.Sigmoid}.get(layer)
        obj = cls() if cls else xpl.Affine(a["W"], a["b"])
        forward, backward = (lambda: obj.forward(a["x"])), (lambda: obj.backward(a["dout"]))
    xb.done(forward())  # the backward needs what the forward keeps
    run = {
        "forward": lambda: xb.done(forward()),
        "backward": lambda: xb.done(backward()),
        "both": lambda: xb.done(forward(), backward()),
    }[phase]
    h = "" if layer == "softmaxwithloss" else f", H={hidden}"
    measure(
        run,
        f"{layer} {phase}{h} {dtype} N={batch}",
        xb.label,
        table=f"Layers: {layer} {phase}{h}, {dtype}",
        batch=batch,
        samples=batch,
        relative_to="book",
    )


def test_relu_large(measure, xb, relu_large):
    x, dout = xpl.asarray(relu_large.x), xpl.asarray(relu_large.dout)
    relu = xpl.Relu()
    bound = f"bandwidth bound {_limits(xb)}"
    goal = {"goal": relu_large.goal, "vs": bound, "measure": "time"}
    if xb.backend.name == "numpy":
        goal["max"] = 2.0
    run = lambda: xb.done(relu.forward(x), relu.backward(dout))  # noqa: E731
    measure(run, relu_large.group, xb.label, goals=[goal], **relu_large.info)


def test_softmax_memory(measure, xb, dtype):
    """Peak memory of SoftmaxWithLoss forward+backward over the book's (tracemalloc, NumPy only)."""
    if xb.backend.name != "numpy":
        pytest.skip("tracemalloc sees NumPy's allocations only")
    rows = 200_000 if xb.quick else 2_000_000
    arrays = layer_arrays("softmaxwithloss", rows, 100, dtype)

    def peak(layer, x, t):
        tracemalloc.start()
        layer.forward(x, t)
        layer.backward()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    x, t = xpl.asarray(arrays["x"]), xpl.asarray(arrays["t"])
    ours, book = peak(xpl.SoftmaxWithLoss(), x, t), peak(SoftmaxWithLoss(), *arrays.values())
    last = xpl.SoftmaxWithLoss()
    size = arrays["x"].nbytes
    measure(
        lambda: (last.forward(x, t), last.backward()),
        f"softmaxwithloss memory {dtype} N={rows}",
        xb.label,
        rounds=1,
        peak_bytes=ours,
        book_peak_bytes=book,
        goals=[
            {
                "goal": f"SoftmaxWithLoss peak memory on {rows:,} × 10 logits ≤ the book's",
                "value": ours / book,
                "unit": f"× the book's ({ours / size:.1f}× vs {book / size:.1f}× the input)",
                "max": 1.0,
            }
        ],
    )


def _network_step(net, x, t, path, xb):
    """One training step of `net` by `path`: ``train_step``, or the book's loop."""
    opt = xpl.SGD(lr=LR)

    def run():
        if path == "train_step":
            net.train_step(x, t, opt)
        else:
            opt.update(net.params, net.gradient(x, t))
        xb.done(*net.params.values())

    return run


@pytest.mark.parametrize("path", ["book loop", "train_step"])
def test_conv_step(measure, xb, dtype, path):
    net = xpl.SimpleConvNet(input_dim=(1, 28, 28), hidden_size=100, output_size=10, dtype=dtype)
    for key, value in init_conv_params(dtype).items():
        net.params[key] = xpl.asarray(value)
    x, t = (xpl.asarray(a) for a in make_batch(100, dtype, shape=(1, 28, 28)))
    measure(
        _network_step(net, x, t, path, xb),
        f"SimpleConvNet step {dtype} N=100",
        f"{path} {xb.label}",
        table="SimpleConvNet training step, batch 100 (samples/s)",
        row=dtype,
        samples=100,
        device=_device(xb),
        goals=conv_goals(xb, path),
    )


def conv_goals(xb, path):
    """The goals of SimpleConvNet's step on this backend."""
    eager = "torch eager gpu" if xb.gpu else "torch eager cpu"
    where = "GPU" if xb.gpu else "CPU"
    name = xb.backend.name
    if name == "numpy":
        return [{"goal": f"NumPy SimpleConvNet {path} ≥ 3× the book's", "vs": "book", "min": 3.0}]
    if name == "torch":
        goal = f"torch SimpleConvNet {path} on the {where} ≥ 1.0× PyTorch eager {where}"
        return [{"goal": goal, "vs": eager, "min": 1.0}]
    if name == "jax" and path == "train_step":
        goal = f"JAX SimpleConvNet compiled train_step ≥ 1.0× PyTorch eager {where}"
        jit = "JAX SimpleConvNet train_step vs a hand-written jax.jit step"
        return [
            {"goal": goal, "vs": eager, "min": 1.0},
            {"goal": jit, "vs": f"jax.jit {_device(xb)}"},
        ]
    return [{"goal": f"SimpleConvNet {path} on {xb.label} vs PyTorch eager", "vs": eager}]


@pytest.mark.parametrize("path", ["book loop", "train_step"])
def test_extend_step(measure, xb, dtype, path):
    """MultiLayerNetExtend 784-100x5-10 with BatchNorm and Dropout 0.2 (chapter 6), batch 100."""
    net = xpl.MultiLayerNetExtend(
        784, [100] * 5, 10, use_dropout=True, dropout_ration=0.2, use_batchnorm=True,
        seed=0, dtype=dtype,
    )  # fmt: skip
    x, t = (xpl.asarray(a) for a in make_batch(100, dtype))
    measure(
        _network_step(net, x, t, path, xb),
        f"MultiLayerNetExtend step {dtype} N=100",
        f"{path} {xb.label}",
        table="MultiLayerNetExtend (BatchNorm, Dropout) training step, batch 100 (samples/s)",
        row=dtype,
        samples=100,
        device=_device(xb),
        goals=extend_goals(xb, path),
    )


def extend_goals(xb, path):
    """The goals of MultiLayerNetExtend's step on this backend."""
    where = "GPU" if xb.gpu else "CPU"
    eager = f"torch eager {where.lower()}"
    if xb.backend.name == "jax" and path == "train_step":
        goal = f"JAX MultiLayerNetExtend compiled train_step ≥ 1.0× PyTorch eager {where}"
        return [{"goal": goal, "vs": eager, "min": 1.0}]
    return [{"goal": f"MultiLayerNetExtend {path} on {xb.label} vs PyTorch eager", "vs": eager}]
