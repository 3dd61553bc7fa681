"""The book's NumPy code (``book_numpy``): the step, each layer, large ReLU, the convnet."""

from __future__ import annotations

import pytest
from book_numpy import (
    LAYERS,
    BookNet,
    SimpleConvNet,
    init_conv_params,
    init_params,
    layer_arrays,
    make_batch,
)


def test_step(measure, hidden, dtype, batch):
    net = BookNet(init_params(hidden, dtype))
    x, t = make_batch(batch, dtype)
    measure(
        lambda: net.step(x, t),
        f"step 784-{hidden}-10 {dtype} N={batch}",
        "book",
        table=f"Training step, 784-{hidden}-10, {dtype}",
        batch=batch,
        samples=batch,
        plot=True,
        device="cpu",
    )


@pytest.mark.parametrize("phase", ["forward", "backward", "both"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer(measure, quick, layer, phase, hidden, dtype, batch):
    if layer == "softmaxwithloss" and hidden != 100:
        pytest.skip("SoftmaxWithLoss does not depend on H")
    if quick and phase != "both":
        pytest.skip("a quick run times each layer's forward+backward only")
    if hidden > 100 and batch > 2048:
        pytest.skip("one layer of 784-1000-10 above N = 2048 is most of a step; the step runs")
    a = layer_arrays(layer, batch, hidden, dtype)
    obj = LAYERS[layer](a["W"], a["b"]) if "W" in a else LAYERS[layer]()
    if layer == "softmaxwithloss":
        forward, backward = (lambda: obj.forward(a["x"], a["t"])), obj.backward
    else:
        forward, backward = (lambda: obj.forward(a["x"])), (lambda: obj.backward(a["dout"]))
    forward()  # the backward needs what the forward keeps
    run = {"forward": forward, "backward": backward, "both": lambda: (forward(), backward())}
    h = "" if layer == "softmaxwithloss" else f", H={hidden}"
    measure(
        run[phase],
        f"{layer} {phase}{h} {dtype} N={batch}",
        "book",
        table=f"Layers: {layer} {phase}{h}, {dtype}",
        batch=batch,
        samples=batch,
    )


def test_relu_large(measure, relu_large):
    relu = LAYERS["relu"]()
    run = lambda: (relu.forward(relu_large.x), relu.backward(relu_large.dout))  # noqa: E731
    measure(run, relu_large.group, "book", **relu_large.info)


def test_conv_step(measure, dtype):
    net = SimpleConvNet(init_conv_params(dtype))
    x, t = make_batch(100, dtype, shape=(1, 28, 28))
    measure(
        lambda: net.step(x, t),
        f"SimpleConvNet step {dtype} N=100",
        "book",
        table="SimpleConvNet training step, batch 100 (samples/s)",
        row=dtype,
        samples=100,
        device="cpu",
    )
