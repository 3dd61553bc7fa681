"""Benchmarks of the peers xplayers is compared with.

* ``test_step``: one training step (forward, loss, backward, SGD) of a 784-H-10
  net for each peer: ``book-numpy`` (the book's code, :mod:`book_numpy`),
  ``torch-eager-cpu`` and ``torch-eager-cuda`` (:mod:`torch_peer`).
  Group ``step H=<H> N=<N> <dtype>``.
* ``test_layer``: each of the book's layers alone, forward / backward / both.
  Group ``<layer> <phase> H=<H> N=<N> <dtype>`` (``softmaxwithloss`` has no H).
* ``test_peer_matches_book``: not a benchmark; checks every step peer trains
  exactly like the book from the same weights.

Every benchmark does two untimed warm-up calls; GPU peers synchronise inside
the timed call, so the clock stops after the GPU finished.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from book_numpy import BookNet, book_layer, init_params, layer_arrays, make_batch
from limits import affine_gemm_shapes, elementwise_bytes, step_flops

LR = 0.1
WARMUP_CALLS = 2


def step_group(hidden: int, batch: int, dtype: str) -> str:
    """pytest-benchmark group of a training step; peers and xplayers backends share it."""
    return f"step H={hidden} N={batch} {dtype}"


def layer_group(layer: str, phase: str, hidden: int, batch: int, dtype: str) -> str:
    """pytest-benchmark group of one layer in one phase."""
    h = "" if layer == "softmaxwithloss" else f" H={hidden}"
    return f"{layer} {phase}{h} N={batch} {dtype}"


def peer_step(peer: str, hidden: int, dtype: str, batch: int) -> Callable[[], object]:
    """A zero-argument callable doing one synchronised training step of ``peer``."""
    params = init_params(hidden, dtype)
    x, t = make_batch(batch, dtype)
    if peer == "book-numpy":
        net = BookNet(params=params, lr=LR)
        return lambda: net.step(x, t)
    pytest.importorskip("torch")
    from torch_peer import TorchNet, cuda_available

    device = peer.removeprefix("torch-eager-")
    if device == "cuda" and not cuda_available():
        pytest.skip("no CUDA device")
    tnet = TorchNet(params, device=device, lr=LR)
    xt, tt = tnet.tensors(x, t)

    def run() -> None:
        tnet.step(xt, tt)
        tnet.sync()

    return run


def test_step(benchmark, bench_report, peer, hidden, dtype, batch):
    run = peer_step(peer, hidden, dtype, batch)
    for _ in range(WARMUP_CALLS):
        run()
    benchmark.group = step_group(hidden, batch, dtype)
    benchmark(run)
    bench_report(samples=batch, flops=step_flops(batch, hidden), kind="step", name=peer)


def book_layer_call(layer: str, phase: str, arrays: dict[str, np.ndarray]) -> Callable[[], object]:
    """A zero-argument callable running the book's ``layer`` in ``phase`` on ``arrays``."""
    obj = book_layer(layer, arrays)
    x, dout = arrays["x"], arrays.get("dout")
    if layer == "softmaxwithloss":
        t = arrays["t"]
        forward = lambda: obj.forward(x, t)  # noqa: E731
        backward = lambda: obj.backward(1)  # noqa: E731
    else:
        forward = lambda: obj.forward(x)  # noqa: E731
        backward = lambda: obj.backward(dout)  # noqa: E731
    if phase == "forward":
        return forward
    forward()  # the backward needs the state the forward leaves
    if phase == "backward":
        return backward
    return lambda: (forward(), backward())


def layer_work(layer: str, phase: str, batch: int, hidden: int, dtype: str) -> dict[str, int]:
    """Work of a layer case for ``bench_report``.

    GEMM flops for Affine layers, minimal bytes moved for ReLU and Sigmoid.
    """
    itemsize = np.dtype(dtype).itemsize
    if layer in ("relu", "sigmoid"):
        return {"nbytes": elementwise_bytes(layer, phase, batch * hidden, itemsize)}
    if layer in ("affine1", "affine2"):
        fan_in, fan_out = (784, hidden) if layer == "affine1" else (hidden, 10)
        return {"flops": sum(g.flops for g in affine_gemm_shapes(batch, fan_in, fan_out, phase))}
    return {}


def test_layer(benchmark, bench_report, layer_peer, layer_case, phase, dtype, batch):
    layer, hidden = layer_case
    arrays = layer_arrays(layer, batch, hidden, dtype)
    run = book_layer_call(layer, phase, arrays)
    for _ in range(WARMUP_CALLS):
        run()
    benchmark.group = layer_group(layer, phase, hidden, batch, dtype)
    benchmark(run)
    bench_report(
        samples=batch,
        kind="layer",
        name=layer_peer,
        **layer_work(layer, phase, batch, hidden, dtype),
    )


@pytest.mark.parametrize("check_dtype", ["float64", "float32"])
def test_peer_matches_book(peer, check_dtype):
    """Three steps of every peer from the same weights land on the book's weights."""
    if peer == "book-numpy":
        pytest.skip("the reference itself")
    pytest.importorskip("torch")
    from torch_peer import TorchNet, cuda_available

    device = peer.removeprefix("torch-eager-")
    if device == "cuda" and not cuda_available():
        pytest.skip("no CUDA device")
    params = init_params(32, check_dtype, seed=5)
    x, t = make_batch(16, check_dtype, seed=6)
    book, tnet = BookNet(params=params, lr=LR), TorchNet(params, device=device, lr=LR)
    xt, tt = tnet.tensors(x, t)
    for _ in range(3):
        book_loss = book.step(x, t)
        torch_loss = float(tnet.step(xt, tt))
    rtol = 1e-10 if check_dtype == "float64" else 1e-4
    # The book adds 1e-7 inside the log; the gradient is unaffected.
    assert torch_loss == pytest.approx(book_loss, rel=1e-5, abs=1e-6)
    got = tnet.params_numpy()
    for key, want in book.params.items():
        assert got[key].dtype == want.dtype
        np.testing.assert_allclose(got[key], want, rtol=rtol, atol=rtol * 1e-2)
