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

import xplayers as xpl
from xplayers import functional as fn
from xplayers.backend import RECORDS

DTYPES = ["float32", "float64"]

#: The table runs on the backends with a module of kernels; on the others (Dask,
#: array-api-strict) every case would be skipped, so there it is deselected.
WITH_KERNELS = pytest.mark.backends(*(name for name, rec in RECORDS.items() if rec.kernels))

#: How the inputs of a case are laid out in memory, beside the plain C-order array:
#: transposed strides, reversed (negative) strides, read-only memory, and float16.
LAYOUTS = ["C", "fortran", "negative strides", "read-only", "float16"]


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
        "0-d": np.asarray(-1.5),
        "0-d positive": np.asarray(0.5),
        "1-d": rng.normal(size=7),
        "1-d empty": np.zeros(0),
        "3-d": rng.normal(size=(2, 3, 4)),
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


def _place(backend: Any, a: np.ndarray, layout: str) -> Any:
    """`a` on `backend` in `layout` (same values, other strides or flags)."""
    xp = backend.xp
    if layout == "fortran" and a.ndim >= 2:  # the transpose of a C-order array
        axes = tuple(reversed(range(a.ndim)))
        return xp.permute_dims(backend.asarray(np.ascontiguousarray(a.transpose(axes))), axes)
    if layout == "negative strides" and a.ndim >= 1:
        flipped = backend.asarray(np.ascontiguousarray(a[::-1, ...]))
        if isinstance(flipped, np.ndarray):
            return flipped[::-1, ...]  # a view with a negative stride
        return xp.flip(flipped, axis=0)  # libraries without negative strides: the values
    if layout == "read-only" and backend.name == "numpy":
        host = np.array(a)
        host.setflags(write=False)
        return host
    return backend.asarray(a)


Builder = Callable[[Any, str, str], tuple[Any, ...]]


def _cases() -> list[tuple[str, str, Builder]]:
    """(function name, input name, builder(backend, dtype, layout) -> positional arguments)."""
    cases: list[tuple[str, str, Builder]] = []

    def on(backend: Any, dtype: str, layout: str, *arrays: Any) -> tuple[Any, ...]:
        return tuple(_place(backend, _fit(a, dtype), layout) for a in arrays)

    for key, x in _elementwise().items():
        dout = np.asarray(np.random.default_rng(1).normal(size=x.shape))
        cases.extend(
            (name, key, lambda b, d, lay, x=x: on(b, d, lay, x)) for name in ("relu", "sigmoid")
        )
        # relu_backward: the kernel multiplies by the mask, so dout is finite (see its doc)
        cases.append(
            (
                "relu_backward",
                key,
                lambda b, d, lay, x=x, g=dout: on(b, d, lay, g, np.maximum(x, 0)),
            )
        )
        y = np.clip(np.nan_to_num(x), 0.0, 1.0)
        cases.append(("sigmoid_backward", key, lambda b, d, lay, y=y, g=dout: on(b, d, lay, g, y)))
    rng = np.random.default_rng(11)
    for key, x in {"1-d": rng.normal(size=5), "1-d inf": np.array([np.inf, 0.0])}.items():
        cases.extend(
            (name, key, lambda b, d, lay, x=x: on(b, d, lay, x))
            for name in ("softmax", "log_softmax")
        )
    for key, x in _logits().items():
        t = _labels(x)
        p = np.eye(x.shape[1])[t]
        cases.extend(
            (name, key, lambda b, d, lay, x=x: on(b, d, lay, x))
            for name in ("softmax", "log_softmax")
        )
        for name in ("cross_entropy", "softmax_cross_entropy"):
            cases.append((name, key + " labels", lambda b, d, lay, x=x, t=t: on(b, d, lay, x, t)))
            cases.append((name, key + " one-hot", lambda b, d, lay, x=x, p=p: on(b, d, lay, x, p)))
        with np.errstate(all="ignore"):
            y = np.nan_to_num(np.exp(x - x.max(axis=1, keepdims=True)), nan=0.5)
        y = y / np.maximum(y.sum(axis=1, keepdims=True), 1e-300)
        for targets, kind in ((t, " labels"), (p, " one-hot")):
            cases.append(
                (
                    "cross_entropy_backward",
                    key + kind,
                    lambda b, d, lay, y=y, t=targets: on(b, d, lay, y, t),
                )
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
        cases.append(("labels_in_range", key, lambda b, d, lay, t=t, c=c: (*on(b, d, lay, t), c)))
    for n in (0, 1, 7):
        x, W, b = rng.normal(size=(n, 5)), rng.normal(size=(5, 3)), rng.normal(size=3)
        dout = rng.normal(size=(n, 3))
        cases.append(
            ("affine", f"N={n}", lambda b_, d, lay, x=x, W=W, b=b: on(b_, d, lay, x, W, b))
        )
        cases.append(
            (
                "affine_backward",
                f"N={n}",
                lambda b_, d, lay, g=dout, x=x, W=W: on(b_, d, lay, g, x, W),
            )
        )
    x1, W1, b1 = rng.normal(size=5), rng.normal(size=(5, 3)), rng.normal(size=3)
    cases.append(("affine", "1-d", lambda b_, d, lay: on(b_, d, lay, x1, W1, b1)))
    for key, (shape, f, stride, pad) in {
        "3x3 stride 1": ((2, 3, 5, 5), 3, 1, 0),
        "3x3 stride 2 pad 1": ((2, 1, 6, 5), 3, 2, 1),
        "2x2 tiles": ((2, 3, 4, 6), 2, 2, 0),
        "2x2 tiles, odd size": ((1, 2, 5, 5), 2, 2, 0),
        "2x2 tiles pad 1": ((2, 2, 4, 5), 2, 2, 1),
        "3x3 stride 2 pad 3": ((1, 2, 5, 4), 3, 2, 3),
        "empty batch": ((0, 2, 4, 4), 2, 2, 0),
        "ties": ((2, 3, 6, 6), 2, 2, 0),
        "ties, overlapping": ((2, 2, 6, 5), 3, 1, 1),
        "-inf and huge": ((1, 2, 4, 4), 2, 1, 0),
    }.items():
        img = rng.normal(size=shape)
        if key.startswith("ties"):  # few distinct values: most windows hold equal maxima
            img = rng.integers(-1, 2, size=shape).astype(float)
        elif key == "-inf and huge":
            img = np.where(rng.random(shape) < 0.5, -np.inf, np.sign(img) * 1e308)
            img[0, 0] = -np.inf  # windows of -inf only
        n, c, h, w = shape
        filters, bias = rng.normal(size=(3, c, f, f + 1)), rng.normal(size=3)
        if key != "-inf and huge":  # a convolution of infinities gives NaN (inf - inf)
            cases.append(
                (
                    "convolution",
                    key,
                    lambda b_, d, lay, x=img, W=filters, b=bias, s=stride, p=pad: (
                        *on(b_, d, lay, x, W, b),
                        s,
                        p,
                    ),
                )
            )
        oh, ow = (h + 2 * pad - f) // stride + 1, (w + 2 * pad - f) // stride + 1
        win = rng.normal(size=(n, oh, ow, c, f * f))
        cases.append(
            (
                "windows",
                key,
                lambda b, d, lay, x=img, f=f, s=stride, p=pad: (*on(b, d, lay, x), f, f, s, p),
            )
        )
        cases.append(
            (
                "fold",
                key,
                lambda b, d, lay, t=win, sh=shape, f=f, s=stride, p=pad: (
                    *on(b, d, lay, t),
                    sh,
                    f,
                    f,
                    s,
                    p,
                ),
            )
        )
        cases.append(
            (
                "max_pooling",
                key,
                lambda b, d, lay, x=img, f=f, s=stride, p=pad: (*on(b, d, lay, x), f, f, s, p),
            )
        )
        arg = rng.integers(0, f * f, size=(n, oh, ow, c))
        dout = rng.normal(size=(n, c, oh, ow))
        cases.append(
            (
                "max_pooling_backward",
                key,
                lambda b, d, lay, g=dout, a=arg, sh=shape, f=f, s=stride, p=pad: (
                    *on(b, d, lay, g, a),
                    sh,
                    f,
                    f,
                    s,
                    p,
                ),
            )
        )
    return cases


CASES = _cases()


def _host(value: Any, backend: Any) -> list[np.ndarray | None]:
    items = value if isinstance(value, tuple) else (value,)
    return [
        None if v is None else np.asarray(v if isinstance(v, bool) else backend.to_numpy(v), float)
        for v in items
    ]


def _tolerance(dtype: str) -> dict[str, float]:
    if dtype == "float64":
        return {"rtol": 1e-12, "atol": 1e-300}
    if dtype == "float32":
        return {"rtol": 2e-6, "atol": 1e-37}
    return {"rtol": 4e-3, "atol": 1e-6}  # float16: a few units in the last place


#: The functions whose saved values may have a kernel's own form (the input itself, for
#: torch's and JAX's convolution; torch's pooling indices), by their backward: compared
#: through the gradients the backward computes from them.
SAVED: dict[str, Callable[..., Any]] = {
    "convolution": fn.convolution_backward,
    "max_pooling": fn.max_pooling_backward,
}


def _through_backward(
    backend: Any, name: str, args: tuple[Any, ...], result: tuple[Any, ...], backward: Any
) -> tuple[Any, ...]:
    """`result` with its saved values replaced by the gradients `backward` gives from them."""
    out = result[0]
    host = np.random.default_rng(5).normal(size=tuple(out.shape))
    dout = backend.xp.astype(backend.asarray(host), out.dtype)
    if name == "convolution":
        x, W, _, stride, pad = args
        shapes = (tuple(x.shape), tuple(W.shape), stride, pad)
        return (out, *backward(dout, result[1], result[2], *shapes))
    x, ph, pw, stride, pad = args
    return out, backward(dout, result[1], tuple(x.shape), ph, pw, stride, pad)


def _check_kernel(backend: Any, name: str, build: Builder, dtype: str, layout: str) -> None:
    """The kernel of `name` equals the generic version on the arguments `build` makes."""
    public = getattr(fn, name)
    if name not in fn.kernels_of(backend.asarray(np.zeros(1))):
        pytest.skip(f"{backend.name} has no kernel for {name}")
    args = build(backend, dtype, layout)
    impl = fn.kernels_of(args[0])[name]
    before = [backend.to_numpy(a).copy() for a in args if hasattr(a, "shape")]
    got = impl(*args)
    want = public.generic(*args)
    if got is NotImplemented:  # the kernel defers these inputs; the public function runs generic
        got = public(*args)
    if name in SAVED:
        got = _through_backward(backend, name, args, got, SAVED[name])
        want = _through_backward(backend, name, args, want, SAVED[name].generic)
    after = [backend.to_numpy(a) for a in args if hasattr(a, "shape")]
    for a, b in zip(before, after, strict=True):  # nothing written into the arguments
        np.testing.assert_array_equal(a, b)
    gh, wh = _host(got, backend), _host(want, backend)
    assert len(gh) == len(wh)
    for g, w in zip(gh, wh, strict=True):
        assert (g is None) == (w is None)
        if g is not None:
            assert g.shape == w.shape
            tol = _tolerance(dtype)
            finite = np.abs(w[np.isfinite(w)])
            if finite.size:  # rounding relative to the largest value (log_softmax: z - log s)
                tol["atol"] = max(tol["atol"], tol["rtol"] * float(finite.max()))
            np.testing.assert_allclose(g, w, equal_nan=True, **tol)
    if name == "labels_in_range":
        return
    wants = want if isinstance(want, tuple) else (want,)
    for i, out in enumerate(got if isinstance(got, tuple) else (got,)):
        if out is None:
            continue
        # An array of the input's kind, also for 0-d inputs (NumPy's ufuncs give a scalar
        # there); a 0-d result may be what the generic code gives (a NumPy scalar loss).
        kinds = {type(args[0])} if name in ELEMENTWISE else {type(args[0]), type(wants[i])}
        assert type(out) in kinds, f"{name} returned {type(out).__name__}"
        if name == "max_pooling" and i == 1:
            continue  # the argmax positions: an index dtype
        assert out.dtype == args[0].dtype


#: The kernels whose result has the shape of their input.
ELEMENTWISE = ("relu", "relu_backward", "sigmoid", "sigmoid_backward")


@WITH_KERNELS
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "case", "build"), CASES, ids=[f"{n}-{c}" for n, c, _ in CASES])
def test_kernel_equals_generic(backend, name, case, build, dtype):
    _check_kernel(backend, name, build, dtype, "C")


def _same_as_c_order(backend: Any, layout: str) -> bool:
    """Whether `_place` gives the C-order array itself for `layout` on `backend`.

    Read-only memory is NumPy's alone (elsewhere ``_place`` copies the values, as for "C");
    JAX arrays have no strides: a transposed or reversed placement is a new array of the same
    values in JAX's one layout, the C-order array again.
    """
    if layout == "read-only":
        return backend.name != "numpy"
    return layout in ("fortran", "negative strides") and backend.name == "jax"


@WITH_KERNELS
@pytest.mark.parametrize("layout", LAYOUTS[1:])
@pytest.mark.parametrize(("name", "case", "build"), CASES, ids=[f"{n}-{c}" for n, c, _ in CASES])
def test_kernel_equals_generic_on_every_layout(backend, name, case, build, layout):
    """Transposed, reversed and read-only arrays, and float16, give the generic values too."""
    dtype = "float16" if layout == "float16" else "float32"
    if _same_as_c_order(backend, layout):
        pytest.skip(f"{layout} arrays on {backend.name} are the C-order float32 case's arrays")
    if dtype == "float16" and "huge" in case and name in ("affine", "affine_backward"):
        pytest.skip("products of 0.9 * float16 max overflow in both versions")
    _check_kernel(backend, name, build, dtype, layout)


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
    # The chain gradient (xplayers.parallel) runs on worker threads; the kernels' small caches of
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
    _check_kernel(backend, name, build, dtype, "C")


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


@pytest.mark.parametrize("layer", ["Relu", "Sigmoid"])
@pytest.mark.parametrize("shape", [(), (3,), (0,), (2, 0, 3)])
def test_activation_layers_return_arrays_of_the_input_kind(backend, layer, shape):
    """0-d, 1-d and empty inputs give arrays of the input's kind and shape, both ways."""
    x = backend.asarray(np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape))
    f = getattr(xpl, layer)()
    out = f.forward(x)
    dx = f.backward(backend.asarray(np.ones(shape)))
    for a in (out, dx):
        assert type(a) is type(x)
        assert tuple(a.shape) == shape
        assert a.dtype == x.dtype
    want = np.maximum(backend.to_numpy(x), 0) if layer == "Relu" else None
    if want is not None:
        np.testing.assert_array_equal(backend.to_numpy(out), want)
