"""Max pooling: float64 oracle, the book's tie-breaking, central differences, torch.autograd."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from tests import oracle, oracle_conv
from xplayers import functional as fn


def _slow_backend_subset(backend, dtype: str, case: int) -> None:
    """JAX and Dask pay per call (compilation, graph building): one dtype, two cases there."""
    if (backend.lazy or backend.name == "jax") and (dtype == "float32" or case > 1):
        pytest.skip("covered on the eager backends; JAX and Dask run a subset to stay fast")


# (x shape, pool_h, pool_w, stride, pad)
CASES = [
    ((2, 3, 4, 6), 2, 2, 2, 0),  # the book's networks
    ((1, 2, 5, 5), 3, 2, 1, 0),  # overlapping windows
    ((2, 1, 5, 4), 2, 2, 2, 1),  # padding (zeros, as the book's im2col)
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("xs", "ph", "pw", "stride", "pad"), CASES)
def test_forward_backward_against_oracle(backend, rng, dtype, xs, ph, pw, stride, pad):
    _slow_backend_subset(backend, dtype, CASES.index((xs, ph, pw, stride, pad)))
    x = rng.normal(size=xs).astype(dtype)
    layer = xpl.Pooling(ph, pw, stride=stride, pad=pad)
    out = layer.forward(backend.asarray(x))
    x64 = x.astype("float64")
    ref = oracle_conv.max_pool(x64, ph, pw, stride, pad)
    assert out.dtype == backend.dtype(dtype)
    np.testing.assert_array_equal(backend.to_numpy(out), ref.astype(dtype))
    dout = rng.normal(size=ref.shape).astype(dtype)
    dx = layer.backward(backend.asarray(dout))
    assert dx.dtype == backend.dtype(dtype)
    expected = oracle_conv.max_pool_grad(x64, dout.astype("float64"), ph, pw, stride, pad)
    np.testing.assert_allclose(backend.to_numpy(dx), expected, rtol=1e-6, atol=1e-6)


def test_ties_go_to_the_first_maximum(backend):
    x = np.array([[[[1.0, 1.0], [1.0, 1.0]]]])  # one window, all equal
    layer = xpl.Pooling(2, 2, stride=2)
    layer.forward(backend.asarray(x))
    dx = backend.to_numpy(layer.backward(backend.asarray(np.full((1, 1, 1, 1), 5.0))))
    np.testing.assert_array_equal(dx, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_gradient_central_differences(backend, rng):
    x = rng.normal(size=(1, 2, 5, 5))  # distinct values: no ties, no kinks
    layer = xpl.Pooling(3, 3, stride=1)
    out = layer.forward(backend.asarray(x))
    r = rng.normal(size=tuple(out.shape))
    dx = backend.to_numpy(layer.backward(backend.asarray(r)))

    def f() -> float:
        return float((oracle_conv.max_pool(x, 3, 3, 1, 0) * r).sum())

    np.testing.assert_allclose(dx, oracle.numerical_gradient(f, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("xs", "ph", "pw", "stride", "pad"), CASES[:2])
def test_against_torch_autograd(backend, rng, xs, ph, pw, stride, pad):
    torch = pytest.importorskip("torch", reason="torch is the autograd reference")
    x = rng.normal(size=xs)
    tx = torch.tensor(x, requires_grad=True)
    tout = torch.nn.functional.max_pool2d(tx, (ph, pw), stride=stride, padding=pad)
    r = rng.normal(size=tuple(tout.shape))
    (tout * torch.tensor(r)).sum().backward()
    layer = xpl.Pooling(ph, pw, stride=stride, pad=pad)
    out = layer.forward(backend.asarray(x))
    dx = layer.backward(backend.asarray(r))
    np.testing.assert_array_equal(backend.to_numpy(out), tout.detach().numpy())
    np.testing.assert_allclose(backend.to_numpy(dx), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_book_default_stride_is_one(backend, rng):
    layer = xpl.Pooling(2, 2)
    out = layer.forward(backend.asarray(rng.normal(size=(1, 1, 4, 4))))
    assert tuple(out.shape) == (1, 1, 3, 3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc memory", "ties", "odd size"])
def test_numpy_pooling_kernels_equal_generic(rng, dtype, layout):
    """The NumPy max-pooling kernels against the generic bodies, on the same arrays."""
    shape = (2, 3, 5, 7) if layout == "odd size" else (2, 3, 4, 6)
    x = rng.normal(size=shape).astype(dtype)
    if layout == "nhwc memory":  # what a convolution leaves: an (N, C, H, W) view of NHWC
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "ties":
        x = np.round(x).astype(dtype)
    x.setflags(write=False)
    assert {"max_pooling", "max_pooling_backward"} <= set(fn.kernels_of(x))
    out, arg = fn.max_pooling(x, 2, 2, 2)
    out_g, arg_g = fn.max_pooling.generic(x, 2, 2, 2)
    np.testing.assert_array_equal(out, out_g)
    np.testing.assert_array_equal(arg, arg_g)
    dout = rng.normal(size=out.shape).astype(dtype)
    dx = fn.max_pooling_backward(dout, arg, x.shape, 2, 2, 2)
    assert dx.dtype == x.dtype
    np.testing.assert_array_equal(dx, fn.max_pooling_backward.generic(dout, arg, x.shape, 2, 2, 2))
