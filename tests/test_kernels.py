"""Every backend kernel against the generic array-API version, on one table of inputs.

Extreme inputs included (logits of +-1e308, +-inf, NaN, empty batches); the
suite runs with warnings as errors, so a kernel that warns where the generic
code does not fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from xplayers import functional as fn

DTYPES = ["float32", "float64"]


def _logits() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "normal": rng.normal(scale=3.0, size=(9, 4)),
        "one row": rng.normal(size=(1, 4)),
        "one class": rng.normal(size=(5, 1)),
        "empty batch": np.zeros((0, 4)),
        "huge gap": np.array([[1e308, -1e308, 0.0], [-1e308, 1e308, 1.0]]),
        "huge equal": np.array([[1e308, 1e308, -1e308]]),
        "inf": np.array([[np.inf, 1.0, -np.inf], [np.inf, np.inf, 0.0], [-np.inf, 2.0, 0.0]]),
        "all -inf": np.array([[-np.inf, -np.inf], [0.0, 1.0]]),
        "nan": np.array([[np.nan, 1.0, 0.0], [0.0, 1.0, 2.0]]),
        # 256 rows and more: the NumPy row maximum goes column by column
        "many rows": rng.normal(size=(300, 10)),
        "many rows, inf and nan": np.concatenate(
            [rng.normal(size=(256, 3)), [[np.inf, 0.0, 1.0], [np.nan, 0.0, -np.inf]]]
        ),
    }


def _elementwise() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(8)
    return {
        "normal": rng.normal(scale=3.0, size=(6, 5)),
        "empty": np.zeros((0, 5)),
        "extreme": np.array([[1e308, -1e308, np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-310]]),
    }


def _labels(x: np.ndarray, seed: int = 9) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, x.shape[1], size=x.shape[0])


def _fit(a: np.ndarray, dtype: str) -> np.ndarray:
    """`a` in `dtype`, its huge finite values (1e308) brought to 0.9 of the dtype's maximum."""
    if a.dtype.kind != "f":
        return a
    big = 0.9 * float(np.finfo(dtype).max)
    with np.errstate(invalid="ignore"):
        huge = np.isfinite(a) & (np.abs(a) > big)
    return np.where(huge, np.sign(a) * big, a).astype(dtype)


def _cases() -> list[tuple[str, str, Callable[[Any, str], tuple[Any, ...]]]]:
    """(function name, input name, builder(backend, dtype) -> positional arguments)."""
    cases: list[tuple[str, str, Callable[[Any, str], tuple[Any, ...]]]] = []

    def on(backend: Any, dtype: str, *arrays: Any) -> tuple[Any, ...]:
        return tuple(backend.asarray(_fit(a, dtype)) for a in arrays)

    for key, x in _elementwise().items():
        dout = np.random.default_rng(1).normal(size=x.shape)
        cases.extend((name, key, lambda b, d, x=x: on(b, d, x)) for name in ("relu", "sigmoid"))
        # relu_backward: the kernel multiplies by the mask, so dout is finite (see its doc)
        cases.append(
            ("relu_backward", key, lambda b, d, x=x, g=dout: on(b, d, g, np.maximum(x, 0)))
        )
        y = np.clip(np.nan_to_num(x), 0.0, 1.0)
        cases.append(("sigmoid_backward", key, lambda b, d, y=y, g=dout: on(b, d, g, y)))
    for key, x in _logits().items():
        t = _labels(x)
        p = np.eye(x.shape[1])[t]
        cases.extend(
            (name, key, lambda b, d, x=x: on(b, d, x)) for name in ("softmax", "log_softmax")
        )
        for name in ("cross_entropy", "softmax_cross_entropy"):
            cases.append((name, key + " labels", lambda b, d, x=x, t=t: on(b, d, x, t)))
            cases.append((name, key + " one-hot", lambda b, d, x=x, p=p: on(b, d, x, p)))
        with np.errstate(all="ignore"):
            y = np.nan_to_num(np.exp(x - x.max(axis=1, keepdims=True)), nan=0.5)
        y = y / np.maximum(y.sum(axis=1, keepdims=True), 1e-300)
        cases.append(
            ("cross_entropy_backward", key + " labels", lambda b, d, y=y, t=t: on(b, d, y, t))
        )
        cases.append(
            ("cross_entropy_backward", key + " one-hot", lambda b, d, y=y, p=p: on(b, d, y, p))
        )
    for key, t in {
        "in range": np.array([0, 2, 1]),
        "negative": np.array([0, -1]),
        "too big": np.array([3, 0]),
        "empty": np.zeros(0, np.int64),
        "uint8 of 300 classes": np.array([5, 255], np.uint8),
        "int8": np.array([-3, 1], np.int8),
    }.items():
        c = 300 if t.dtype == np.uint8 else 3
        cases.append(("labels_in_range", key, lambda b, d, t=t, c=c: (b.asarray(t), c)))
    rng = np.random.default_rng(10)
    for n in (0, 1, 7):
        x, W, b = rng.normal(size=(n, 5)), rng.normal(size=(5, 3)), rng.normal(size=3)
        dout = rng.normal(size=(n, 3))
        cases.append(("affine", f"N={n}", lambda b_, d, x=x, W=W, b=b: on(b_, d, x, W, b)))
        cases.append(
            ("affine_backward", f"N={n}", lambda b_, d, g=dout, x=x, W=W: on(b_, d, g, x, W))
        )
    return cases


CASES = _cases()


def _host(value: Any, backend: Any) -> list[np.ndarray | None]:
    items = value if isinstance(value, tuple) else (value,)
    return [
        None if v is None else np.asarray(v if isinstance(v, bool) else backend.to_numpy(v), float)
        for v in items
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "case", "build"), CASES, ids=[f"{n}-{c}" for n, c, _ in CASES])
def test_kernel_equals_generic(backend, name, case, build, dtype):
    public = getattr(fn, name)
    args = build(backend, dtype)
    impl = fn.kernels_of(args[0]).get(name)
    if impl is None:
        pytest.skip(f"{backend.name} has no kernel for {name}")
    got = impl(*args)
    want = public.generic(*args)
    if got is NotImplemented:  # the kernel defers these inputs; the public function runs generic
        got = public(*args)
    tol = {"rtol": 1e-12, "atol": 1e-300} if dtype == "float64" else {"rtol": 2e-6, "atol": 1e-37}
    gh, wh = _host(got, backend), _host(want, backend)
    assert len(gh) == len(wh)
    for g, w in zip(gh, wh, strict=True):
        assert (g is None) == (w is None)
        if g is not None:
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, equal_nan=True, **tol)
    outs = got if isinstance(got, tuple) else (got,)
    for out in outs:
        if out is not None and name != "labels_in_range":
            assert out.dtype == args[0].dtype


def test_kernels_cover_the_hot_path_on_numpy():
    """The NumPy kernels run (not the generic fallback) on ordinary inputs."""
    x = np.random.default_rng(0).normal(size=(4, 3))
    kernels = fn.kernels_of(x)
    assert {"affine", "affine_backward", "relu", "relu_backward", "softmax_cross_entropy"} <= set(
        kernels
    )
    assert kernels["softmax_cross_entropy"](x, np.array([0, 1, 2, 0])) is not NotImplemented


def test_array_api_strict_has_no_kernels():
    xp = pytest.importorskip("array_api_strict")
    assert fn.kernels_of(xp.asarray([1.0])) == {}


def test_cupy_kernels_are_declared_without_a_gpu():
    """The CuPy kernels build (compilation waits for a GPU); their values are tested above on one."""
    pytest.importorskip("cupy")
    from xplayers.backend import kernels_cupy

    assert kernels_cupy._relu_backward() is kernels_cupy._relu_backward()
    assert kernels_cupy._ce_backward().name == "xplayers_ce_backward"


def test_softmax_with_loss_memory_stays_below_the_books():
    """The book's SoftmaxWithLoss.forward peaks at 3.1x its input; ours must not exceed that."""
    import tracemalloc

    import xplayers as xpl

    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(200_000, 10)), rng.integers(0, 10, 200_000)
    layer = xpl.SoftmaxWithLoss()
    tracemalloc.start()
    try:
        layer.forward(x, t)
        forward = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        layer.backward()
        backward = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert forward <= 3.1 * x.nbytes
    assert backward <= 2.0 * x.nbytes


def test_numpy_kernels_are_safe_on_many_threads():
    # The stateless gradient runs on worker threads; the kernels' small caches of
    # ones and row indices see more than their 8 entries' worth of batch sizes.
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    batches = [rng.normal(size=(n, 5)) for n in range(1, 41)]
    labels = [rng.integers(0, 3, n) for n in range(1, 41)]

    def step(i: int) -> tuple[Any, Any]:
        x, t = batches[i % 40], labels[i % 40]
        y = fn.affine(x, W, b)
        loss, p = fn.softmax_cross_entropy(y, t)
        _, _, db = fn.affine_backward(fn.cross_entropy_backward(p, t), x, W)
        return loss, db

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(step, range(800)))
    for i, (loss, db) in enumerate(results[:40]):
        x, t = batches[i], labels[i]
        y = x @ W + b
        z = y - y.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        expected = -np.mean(np.log(p[np.arange(len(t)), t]))
        np.testing.assert_allclose(float(loss), expected, rtol=1e-10)
        np.testing.assert_allclose(results[i + 40][1], db, rtol=0, atol=0)


@pytest.mark.backends("torch")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "case", "build"), CASES, ids=[f"{n}-{c}" for n, c, _ in CASES])
def test_torch_gpu_form_equals_generic(backend, monkeypatch, name, case, build, dtype):
    """The torch kernels' other forms on the CPU: the GPU one (no host read, labels compared,
    not indexed) and the large-batch affine products."""
    from xplayers.backend import kernels_torch

    monkeypatch.setattr(kernels_torch, "_on_cpu", lambda x: False)
    monkeypatch.setattr(kernels_torch, "_DW_TRANSPOSED_FROM", 1)  # the large-batch dW
    monkeypatch.setattr(kernels_torch, "_W_COPY_FROM", 1)  # and forward
    test_kernel_equals_generic(backend, name, case, build, dtype)


def test_torch_kernels_take_the_hot_path():
    """On ordinary inputs the torch kernels answer themselves (no generic fallback)."""
    torch = pytest.importorskip("torch")
    from xplayers.backend import kernels_torch as k

    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 0])
    for out in (
        k.softmax_cross_entropy(x, t),
        k.cross_entropy(x, t),
        k.softmax(x),
        k.log_softmax(x),
        k.cross_entropy_backward(torch.softmax(x, 1), t),
        k.relu_backward(x, torch.relu(x)),
        k.labels_in_range(t, 3),
    ):
        assert out is not NotImplemented
    assert k.labels_in_range(torch.tensor([3]), 3) is False
    assert k.softmax_cross_entropy(x, torch.tensor([0, 1, 3, 0])) is NotImplemented


def test_torch_sgd_update_is_fused_and_equal():
    """SGD on torch subtracts ``lr * g`` with one ``add_``, to rounding the generic values."""
    torch = pytest.importorskip("torch")
    from xplayers.backend import kernels_torch as k
    from xplayers.optim import SGD

    rng = np.random.default_rng(3)
    p0, g0 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    p, g = torch.from_numpy(p0.copy()), torch.from_numpy(g0)
    assert fn.subtract_scaled_.generic(p, g, 0.1) is False
    params = {"w": p}
    SGD(lr=0.1).update(params, {"w": g})
    assert params["w"] is p
    np.testing.assert_allclose(p.numpy(), p0 - 0.1 * g0, rtol=1e-15, atol=1e-16)
    assert k.subtract_scaled_(p, g.float(), 0.1) is False  # another dtype: the optimizer casts
    assert k.subtract_scaled_(p.requires_grad_(), g, 0.1) is False
