"""Benchmarks of xplayers itself, on every backend, beside the peers of ``test_peers.py``.

* ``test_step``: one ``TwoLayerNet(784, H, 10).train_step(x, t, SGD(lr))`` --
  forward, loss, backward and the SGD update -- from the same weights and batch
  as the peers (:func:`book_numpy.init_params`, :func:`book_numpy.make_batch`).
  Group ``step H=<H> N=<N> <dtype>``, the peers' group, so xplayers and the
  peers sit side by side.
* ``test_layer``: each layer alone (``Relu``, ``Sigmoid``, ``Affine`` 784->H
  and H->10, ``SoftmaxWithLoss``), forward / backward / both, on the arrays of
  :func:`book_numpy.layer_arrays`. Group ``<layer> <phase> H=<H> N=<N> <dtype>``,
  shared with the book's layers. Both Affine layers compute ``dx``, as the
  book's do.
* ``test_relu_large`` (and ``test_relu_large_book`` for the book's ReLU): ReLU
  forward+backward on arrays as large as the bandwidth kernels' (larger than
  the caches), for the comparison with the memory-bandwidth bound. Group
  ``relu both large <MiB> MiB <dtype>``.
* ``test_xplayers_matches_book``: not a benchmark; three training steps on each
  backend land on the book's weights, so every timed step does the same work.

The step bound ("sum of GEMMs timed alone") is not timed here: it is the
``test_gemm`` rows of the limits target named in each row's
``extra_info.limits_backend`` (``limits:numpy`` for NumPy-based backends); the
report divides the two.

Timing protocol, per backend: two untimed warm-up calls, then every timed call
ends with the results being ready -- ``cupy.cuda.Device().synchronize()``,
``torch.cuda.synchronize()``, ``jax.block_until_ready``, and for Dask
``dask.persist`` of the results (the step's new parameters are rebound to the
persisted arrays, so the task graph does not grow from step to step). TF32 is
off: torch's switches are cleared, and a CuPy run with ``CUPY_TF32`` set to
anything but ``0`` is skipped. JAX runs with ``jax_enable_x64`` so float64 is
float64.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from book_numpy import BookNet, book_layer, init_params, layer_arrays, make_batch
from limits import bandwidth_elements, elementwise_bytes, step_flops
from test_peers import LR, WARMUP_CALLS, layer_group, layer_work, step_group

#: xplayers backend name and device of each benchmark backend.
BACKEND_SPECS: dict[str, tuple[str, str | None]] = {
    "numpy": ("numpy", None),
    "array-api-strict": ("array_api_strict", None),
    "dask": ("dask", None),
    "jax-cpu": ("jax", "cpu"),
    "torch-cpu": ("torch", "cpu"),
    "cupy": ("cupy", None),
    "jax-gpu": ("jax", "gpu"),
    "torch-cuda": ("torch", "cuda"),
}

#: The limits backend whose GEMMs and bandwidth bound each xplayers backend.
LIMITS_OF: dict[str, str] = {
    "numpy": "numpy",
    "array-api-strict": "numpy",
    "dask": "numpy",
    "jax-cpu": "numpy",
    "torch-cpu": "torch-cpu",
    "cupy": "cupy",
    "jax-gpu": "cupy",
    "torch-cuda": "torch-cuda",
}

#: Width of the arrays of the large-ReLU case (rows follow from the byte size).
LARGE_RELU_COLUMNS = 1000


class Runtime:
    """One xplayers backend as the benchmarks use it: array creation and waiting for results."""

    def __init__(self, name: str) -> None:
        import xplayers as xpl

        self.name = name
        self.xpl_name, self.device = BACKEND_SPECS[name]
        if name == "cupy" and os.environ.get("CUPY_TF32", "0") not in ("", "0"):
            pytest.skip("CUPY_TF32 is set: CuPy float32 products would use TF32")
        if self.xpl_name == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
        if name == "torch-cuda":
            from torch_peer import disable_tf32

            disable_tf32()
        ok, why = xpl.backend_status(self.xpl_name, self.device)
        if not ok:
            pytest.skip(f"{name}: {why}")
        with xpl.use_backend(self.xpl_name, self.device) as backend:
            self.backend = backend
        self.lazy = name == "dask"
        self._wait = self._waiter()

    def _waiter(self) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        if self.name == "cupy":
            import cupy

            def wait(arrays: tuple[Any, ...]) -> tuple[Any, ...]:
                cupy.cuda.Device().synchronize()
                return arrays

        elif self.name == "torch-cuda":
            import torch

            def wait(arrays: tuple[Any, ...]) -> tuple[Any, ...]:
                torch.cuda.synchronize()
                return arrays

        elif self.xpl_name == "jax":
            import jax

            def wait(arrays: tuple[Any, ...]) -> tuple[Any, ...]:
                return tuple(jax.block_until_ready(arrays))

        elif self.lazy:
            import dask

            def wait(arrays: tuple[Any, ...]) -> tuple[Any, ...]:
                return tuple(dask.persist(*arrays))

        else:

            def wait(arrays: tuple[Any, ...]) -> tuple[Any, ...]:
                return arrays

        return wait

    def use(self) -> Any:
        """``with runtime.use():`` selects this backend for new arrays."""
        import xplayers as xpl

        return xpl.use_backend(self.xpl_name, self.device)

    def asarray(self, host: np.ndarray) -> Any:
        """Copy a host array onto this backend and device."""
        return self.backend.asarray(host)

    def finish(self, *arrays: Any) -> tuple[Any, ...]:
        """Return ``arrays`` once their values exist (computed, on the device, synchronised)."""
        return self._wait(arrays)


@functools.lru_cache(maxsize=2)
def host_batch(batch: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`book_numpy.make_batch`, kept for the next test (xplayers never writes its inputs)."""
    return make_batch(batch, dtype)


@functools.lru_cache(maxsize=2)
def host_layer_arrays(layer: str, batch: int, hidden: int, dtype: str) -> dict[str, np.ndarray]:
    """:func:`book_numpy.layer_arrays`, kept for the other phases of the same case."""
    return layer_arrays(layer, batch, hidden, dtype)


@functools.cache
def runtime(name: str) -> Runtime:
    """The :class:`Runtime` of benchmark backend ``name`` (one per process)."""
    return Runtime(name)


# --------------------------------------------------------------------------- training step


def xplayers_step(
    backend: str, hidden: int, dtype: str, batch: int, *, params: dict | None = None
) -> tuple[Callable[[], Any], Any]:
    """``(run, net)``: ``run()`` does one synchronised ``train_step`` of a 784-H-10 net."""
    from xplayers.network import TwoLayerNet
    from xplayers.optim import SGD

    rt = runtime(backend)
    params = init_params(hidden, dtype) if params is None else params
    x, t = host_batch(batch, dtype)
    with rt.use():
        net = TwoLayerNet(784, hidden, 10, dtype=dtype, seed=0)
        net.load_params(params)
        xb, tb = rt.asarray(x), rt.asarray(t)
    optimizer = SGD(lr=LR)
    keys = list(net.params)

    def run() -> Any:
        loss = net.train_step(xb, tb, optimizer)
        loss, *new = rt.finish(loss, *(net.params[k] for k in keys))
        if rt.lazy:  # keep the persisted parameters, so the graph does not grow
            for key, value in zip(keys, new, strict=True):
                net.params[key] = value
        return loss

    return run, net


def test_step(benchmark, bench_report, backend, hidden, dtype, batch):
    run, _ = xplayers_step(backend, hidden, dtype, batch)
    for _ in range(WARMUP_CALLS):
        run()
    benchmark.group = step_group(hidden, batch, dtype)
    benchmark(run)
    bench_report(
        samples=batch,
        flops=step_flops(batch, hidden),
        kind="step",
        name=backend,
        limits_backend=LIMITS_OF[backend],
    )


# --------------------------------------------------------------------------- layers

#: Attributes a layer keeps from ``forward`` for ``backward``.
_STATE = ("out", "x", "y", "t", "loss")


def _persist_state(layer: Any, rt: Runtime) -> None:
    """On Dask, compute what ``forward`` kept, so a timed backward does not redo the forward."""
    if not rt.lazy:
        return
    names = [n for n in _STATE if getattr(layer, n, None) is not None]
    values = rt.finish(*(getattr(layer, n) for n in names))
    for n, v in zip(names, values, strict=True):
        setattr(layer, n, v)


def xplayers_layer_call(
    rt: Runtime, layer: str, phase: str, arrays: dict[str, np.ndarray]
) -> Callable[[], Any]:
    """A zero-argument callable running xplayers' ``layer`` in ``phase``, results ready."""
    import xplayers as xpl

    a = {k: rt.asarray(v) for k, v in arrays.items()}
    if layer == "relu":
        obj = xpl.Relu()
    elif layer == "sigmoid":
        obj = xpl.Sigmoid()
    elif layer in ("affine1", "affine2"):
        obj = xpl.Affine(a["W"], a["b"])  # computes dx like the book's Affine
    else:
        obj = xpl.SoftmaxWithLoss()
    x, dout = a["x"], a.get("dout")
    if layer == "softmaxwithloss":
        t = a["t"]

        def forward() -> tuple[Any, ...]:
            return (obj.forward(x, t),)

        def backward() -> tuple[Any, ...]:
            return (obj.backward(),)

    else:

        def forward() -> tuple[Any, ...]:
            return (obj.forward(x),)

        def backward() -> tuple[Any, ...]:
            dx = obj.backward(dout)
            return (dx, obj.dW, obj.db) if isinstance(obj, xpl.Affine) else (dx,)

    if phase == "forward":
        return lambda: rt.finish(*forward())
    rt.finish(*forward())  # the backward needs the state the forward leaves
    _persist_state(obj, rt)
    if phase == "backward":
        return lambda: rt.finish(*backward())
    return lambda: rt.finish(*forward(), *backward())


def test_layer(benchmark, bench_report, backend, layer_case, phase, dtype, batch):
    layer, hidden = layer_case
    rt = runtime(backend)
    run = xplayers_layer_call(rt, layer, phase, host_layer_arrays(layer, batch, hidden, dtype))
    for _ in range(WARMUP_CALLS):
        run()
    benchmark.group = layer_group(layer, phase, hidden, batch, dtype)
    benchmark(run)
    bench_report(
        samples=batch,
        kind="layer",
        name=backend,
        limits_backend=LIMITS_OF[backend],
        **layer_work(layer, phase, batch, hidden, dtype),
    )


# --------------------------------------------------------------------------- ReLU on large arrays


def large_relu_arrays(dtype: str, mib: int | None) -> dict[str, np.ndarray]:
    """``x`` and ``dout`` of shape ``(rows, 1000)``, each as large as a bandwidth-kernel array.

    ``mib`` is ``--bench-bw-mib`` (None: 4x the caches, at least 64 MiB, as
    :func:`limits.bandwidth_elements`), so the bound and the layer see the same sizes.
    """
    n = bandwidth_elements(dtype, None if mib is None else mib << 20)
    rows = max(1, n // LARGE_RELU_COLUMNS)
    rng = np.random.default_rng(3)
    shape = (rows, LARGE_RELU_COLUMNS)
    return {
        "x": rng.standard_normal(shape, dtype=np.dtype(dtype)),
        "dout": rng.standard_normal(shape, dtype=np.dtype(dtype)),
    }


def relu_large_group(arrays: dict[str, np.ndarray], dtype: str) -> str:
    """Group of the large-ReLU case: ``relu both large <MiB> MiB <dtype>``."""
    return f"relu both large {round(arrays['x'].nbytes / 2**20)} MiB {dtype}"


def _report_large(bench_report: Any, arrays: dict[str, np.ndarray], name: str, limits: str) -> None:
    x = arrays["x"]
    bench_report(
        samples=x.shape[0],
        nbytes=elementwise_bytes("relu", "both", x.size, x.itemsize),
        kind="relu_large",
        name=name,
        layer="relu",
        phase="both",
        limits_backend=limits,
        elements=x.size,
        array_bytes=x.nbytes,
    )


def test_relu_large(benchmark, bench_report, bench_selection, backend, dtype):
    arrays = large_relu_arrays(dtype, bench_selection.bw_mib)
    rt = runtime(backend)
    run = xplayers_layer_call(rt, "relu", "both", arrays)
    for _ in range(WARMUP_CALLS):
        run()
    benchmark.group = relu_large_group(arrays, dtype)
    benchmark(run)
    _report_large(bench_report, arrays, backend, LIMITS_OF[backend])


def test_relu_large_book(benchmark, bench_report, bench_selection, layer_peer, dtype):
    arrays = large_relu_arrays(dtype, bench_selection.bw_mib)
    relu = book_layer("relu", arrays)
    x, dout = arrays["x"], arrays["dout"]

    def run() -> None:
        relu.forward(x)
        relu.backward(dout)

    for _ in range(WARMUP_CALLS):
        run()
    benchmark.group = relu_large_group(arrays, dtype)
    benchmark(run)
    _report_large(bench_report, arrays, layer_peer, "numpy")


# --------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("check_dtype", ["float64", "float32"])
def test_xplayers_matches_book(backend, check_dtype):
    """Three steps on every backend from the same weights land on the book's weights."""
    import xplayers as xpl

    params = init_params(32, check_dtype, seed=5)
    x, t = make_batch(16, check_dtype, seed=6)
    book = BookNet(params=params, lr=LR)
    rt = runtime(backend)
    with rt.use():
        from xplayers.network import TwoLayerNet
        from xplayers.optim import SGD

        net = TwoLayerNet(784, 32, 10, dtype=check_dtype, seed=0)
        net.load_params(params)
        xb, tb = rt.asarray(x), rt.asarray(t)
    optimizer = SGD(lr=LR)
    for _ in range(3):
        book_loss = book.step(x, t)
        loss = float(xpl.to_numpy(net.train_step(xb, tb, optimizer)))
    rtol = 1e-10 if check_dtype == "float64" else 1e-4
    # The book adds 1e-7 inside the log; the gradient is unaffected.
    assert loss == pytest.approx(book_loss, rel=1e-5, abs=1e-6)
    for key, want in book.params.items():
        got = xpl.to_numpy(net.params[key])
        assert got.dtype == want.dtype, key
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-2, err_msg=key)
