"""Convolution and im2col/col2im: float64 oracle, central differences, torch.autograd."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from tests import oracle, oracle_conv
from xplayers import functional as fn
from xplayers.functional import col2im, conv_output_size, im2col


def _slow_backend_subset(backend, dtype: str, case: int) -> None:
    """JAX and Dask pay per call (compilation, graph building): one dtype, two cases there."""
    if (backend.lazy or backend.name == "jax") and (dtype == "float32" or case > 1):
        pytest.skip("covered on the eager backends; JAX and Dask run a subset to stay fast")


# (x shape, W shape, stride, pad): small, so the matrix stays fast on JAX and Dask.
CASES = [
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 0),
    ((2, 2, 6, 5), (3, 2, 3, 2), 2, 1),
    ((1, 1, 4, 4), (2, 1, 2, 2), 2, 0),  # windows that tile the input
]
TOL = {"float64": {"rtol": 1e-10, "atol": 1e-12}, "float32": {"rtol": 1e-4, "atol": 1e-5}}


def _data(rng, xs, ws, dtype="float64"):
    x = rng.normal(size=xs).astype(dtype)
    W = rng.normal(size=ws).astype(dtype)
    b = rng.normal(size=ws[0]).astype(dtype)
    return x, W, b


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("xs", "ws", "stride", "pad"), CASES)
def test_forward_backward_against_oracle(backend, rng, dtype, xs, ws, stride, pad):
    _slow_backend_subset(backend, dtype, CASES.index((xs, ws, stride, pad)))
    x, W, b = _data(rng, xs, ws, dtype)
    layer = xpl.Convolution(backend.asarray(W), backend.asarray(b), stride, pad)
    out = layer.forward(backend.asarray(x))
    x64, W64, b64 = (a.astype("float64") for a in (x, W, b))
    ref = oracle_conv.conv2d(x64, W64, b64, stride, pad)
    assert out.dtype == backend.dtype(dtype)
    np.testing.assert_allclose(backend.to_numpy(out), ref, **TOL[dtype])
    dout = rng.normal(size=ref.shape).astype(dtype)
    dx = layer.backward(backend.asarray(dout))
    assert dx.dtype == backend.dtype(dtype)
    assert layer.dW.dtype == backend.dtype(dtype)
    # dx = col2im(dcol) and dW = col^T dout, from the oracle's own im2col
    col = oracle_conv.im2col(x64, ws[2], ws[3], stride, pad)
    d = dout.astype("float64").transpose(0, 2, 3, 1).reshape(-1, ws[0])
    np.testing.assert_allclose(backend.to_numpy(layer.dW), (col.T @ d).T.reshape(ws), **TOL[dtype])
    np.testing.assert_allclose(backend.to_numpy(layer.db), d.sum(axis=0), **TOL[dtype])
    assert tuple(dx.shape) == xs


@pytest.mark.parametrize(("xs", "ws", "stride", "pad"), CASES[:2])
def test_gradients_central_differences(backend, rng, xs, ws, stride, pad):
    x, W, b = _data(rng, xs, ws)
    layer = xpl.Convolution(backend.asarray(W), backend.asarray(b), stride, pad)
    out = layer.forward(backend.asarray(x))
    r = rng.normal(size=tuple(out.shape))
    dx = backend.to_numpy(layer.backward(backend.asarray(r)))

    def f() -> float:
        return float((oracle_conv.conv2d(x, W, b, stride, pad) * r).sum())

    for got, wrt in ((dx, x), (layer.dW, W), (layer.db, b)):
        np.testing.assert_allclose(
            backend.to_numpy(got), oracle.numerical_gradient(f, wrt), rtol=1e-6, atol=1e-8
        )


@pytest.mark.parametrize(("xs", "ws", "stride", "pad"), CASES)
def test_against_torch_autograd(backend, rng, xs, ws, stride, pad):
    _slow_backend_subset(backend, "float64", 2 * CASES.index((xs, ws, stride, pad)))
    torch = pytest.importorskip("torch", reason="torch is the autograd reference")
    x, W, b = _data(rng, xs, ws)
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    tout = torch.nn.functional.conv2d(tx, tW, tb, stride=stride, padding=pad)
    r = rng.normal(size=tuple(tout.shape))
    (tout * torch.tensor(r)).sum().backward()
    layer = xpl.Convolution(backend.asarray(W), backend.asarray(b), stride, pad)
    out = layer.forward(backend.asarray(x))
    dx = layer.backward(backend.asarray(r))
    tol = {"rtol": 1e-10, "atol": 1e-12}
    np.testing.assert_allclose(backend.to_numpy(out), tout.detach().numpy(), **tol)
    np.testing.assert_allclose(backend.to_numpy(dx), tx.grad.numpy(), **tol)
    np.testing.assert_allclose(backend.to_numpy(layer.dW), tW.grad.numpy(), **tol)
    np.testing.assert_allclose(backend.to_numpy(layer.db), tb.grad.numpy(), **tol)


def test_inputs_and_dout_untouched_and_dtype_rule(backend, rng):
    x, W, b = _data(rng, (2, 2, 5, 5), (3, 2, 3, 3), "float32")
    layer = xpl.Convolution(backend.asarray(W), backend.asarray(b), pad=1)
    xin = backend.asarray(x.astype("float64"))  # float64 input, float32 parameters
    out = layer.forward(xin)
    assert out.dtype == backend.dtype("float32")
    dout = rng.normal(size=tuple(out.shape))
    dx = layer.backward(backend.asarray(dout))
    assert dx.dtype == backend.dtype("float64")
    np.testing.assert_array_equal(backend.to_numpy(xin), x.astype("float64"))
    np.testing.assert_array_equal(backend.to_numpy(layer.W), W)


def test_input_grad_false(backend, rng):
    x, W, b = _data(rng, (2, 1, 4, 4), (2, 1, 3, 3))
    layer = xpl.Convolution(backend.asarray(W), backend.asarray(b), input_grad=False)
    out = layer.forward(backend.asarray(x))
    assert layer.backward(backend.asarray(np.ones(tuple(out.shape)))) is None
    assert tuple(layer.dW.shape) == (2, 1, 3, 3)


@pytest.mark.parametrize(
    ("xs", "k", "stride", "pad"), [((2, 3, 5, 4), 3, 1, 1), ((1, 2, 6, 6), 2, 2, 0)]
)
def test_im2col_col2im(backend, rng, xs, k, stride, pad):
    """im2col against the oracle; col2im is its adjoint: <col2im(c), x> == <c, im2col(x)>."""
    x = rng.normal(size=xs)
    col = im2col(backend.asarray(x), k, k, stride, pad)
    ref = oracle_conv.im2col(x, k, k, stride, pad)
    np.testing.assert_array_equal(backend.to_numpy(col), ref)
    c = rng.normal(size=ref.shape)
    img = backend.to_numpy(col2im(backend.asarray(c), xs, k, k, stride, pad))
    assert img.shape == xs
    np.testing.assert_allclose((img * x).sum(), (c * ref).sum(), rtol=1e-12)


@pytest.mark.parametrize(("k", "stride", "pad"), [(3, 1, 0), (3, 2, 1), (2, 2, 0), (2, 2, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_kernels_equal_generic(rng, k, stride, pad, dtype):
    """The NumPy kernels of windows/fold against their generic bodies, on the same arrays."""
    x = rng.normal(size=(2, 3, 7, 6)).astype(dtype)
    x.setflags(write=False)
    assert set(fn.kernels_of(x)) >= {"windows", "fold"}
    t = fn.windows(x, k, k, stride, pad)
    t_generic = fn.windows.generic(x, k, k, stride, pad)
    assert t.dtype == x.dtype
    np.testing.assert_array_equal(t, t_generic)
    g = rng.normal(size=t.shape).astype(dtype)
    g.setflags(write=False)
    img = fn.fold(g, x.shape, k, k, stride, pad)
    assert img.dtype == x.dtype
    np.testing.assert_allclose(img, fn.fold.generic(g, x.shape, k, k, stride, pad), rtol=1e-6)


def test_conv_output_size():
    assert conv_output_size(28, 5) == 24
    assert conv_output_size(7, 3, 2, 1) == 4
