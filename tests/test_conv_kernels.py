"""The native convolution and max-pooling kernels (torch, JAX) against the generic im2col code.

``tests/test_kernels.py`` compares each kernel with the generic version on
its table of inputs and layouts; here: the forward and backward as a pair,
the forms of the values the forwards keep (``col``, ``col_W``, ``arg_max``),
the tie rule of max pooling, central differences, and JAX under ``jax.jit``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import functional as fn

TOL = {"float64": {"rtol": 1e-12, "atol": 1e-12}, "float32": {"rtol": 2e-5, "atol": 2e-5}}

# (x shape, W shape, stride, pad): stride and pad combinations, non-square filters, batch 1.
CONV_CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 0),
    ((1, 2, 6, 5), (3, 2, 3, 2), 2, 1),
    ((2, 1, 9, 8), (2, 1, 2, 4), 3, 2),
    ((1, 1, 28, 28), (30, 1, 5, 5), 1, 0),  # the book's chapter-7 convolution, one image
]
# (x shape, pool_h, pool_w, stride, pad)
POOL_CASES = [
    ((2, 3, 6, 6), 2, 2, 2, 0),  # the book's 2x2 windows, stride 2
    ((1, 2, 5, 7), 3, 2, 1, 1),  # overlapping, non-square, padded
    ((2, 2, 7, 5), 3, 3, 2, 2),
]


def _native(backend: Any, name: str) -> None:
    if name not in fn.kernels_of(backend.asarray(np.zeros(1))):
        pytest.skip(f"{backend.name} has no kernel for {name}")


def _on(backend: Any, a: np.ndarray, dtype: str) -> Any:
    return backend.asarray(np.asarray(a, dtype=dtype))


def _close(got: Any, want: Any, backend: Any, dtype: str) -> None:
    np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(want), **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("xs", "ws", "stride", "pad"), CONV_CASES)
@pytest.mark.parametrize("input_grad", [True, False])
def test_convolution_pair_equals_im2col(backend, dtype, xs, ws, stride, pad, input_grad):
    _native(backend, "convolution")
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x, W, b = (_on(backend, rng.normal(size=s), dtype) for s in (xs, ws, ws[:1]))
    out, col, col_W = fn.convolution(x, W, b, stride, pad)
    want, wcol, wcol_W = fn.convolution.generic(x, W, b, stride, pad)
    _close(out, want, backend, dtype)
    assert out.dtype == x.dtype
    dout = _on(backend, rng.normal(size=tuple(out.shape)), dtype)
    grads = fn.convolution_backward(dout, col, col_W, xs, ws, stride, pad, input_grad=input_grad)
    wants = fn.convolution_backward.generic(
        dout, wcol, wcol_W, xs, ws, stride, pad, input_grad=input_grad
    )
    assert (grads[0] is None) == (not input_grad)
    for g, w in zip(grads, wants, strict=True):
        if w is not None:
            assert tuple(g.shape) == tuple(w.shape)
            assert g.dtype == w.dtype
            _close(g, w, backend, dtype)


def test_native_convolution_keeps_input_and_filters(backend):
    """``col`` and ``col_W`` of the native kernels are `x` and `W` themselves, not copies."""
    _native(backend, "convolution")
    rng = np.random.default_rng(0)
    x, W, b = (backend.asarray(rng.normal(size=s)) for s in ((2, 1, 5, 5), (3, 1, 3, 3), (3,)))
    _, col, col_W = fn.convolution(x, W, b)
    assert col is x
    assert col_W is W
    layer = xpl.Convolution(W, b)
    layer.forward(x)
    assert layer.col is x
    assert layer.col_W is W


@pytest.mark.parametrize("kind", ["im2col", "native"])
def test_generic_backward_takes_both_saved_forms(kind):
    """The generic backward accepts the im2col matrices and the 4-d input and filters alike."""
    rng = np.random.default_rng(1)
    x, W, b = rng.normal(size=(2, 2, 6, 5)), rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)
    out, col, col_W = fn.convolution.generic(x, W, b, 2, 1)
    dout = rng.normal(size=out.shape)
    saved = (col, col_W) if kind == "im2col" else (x, W)
    got = fn.convolution_backward.generic(dout, *saved, x.shape, W.shape, 2, 1)
    want = fn.convolution_backward.generic(dout, col, col_W, x.shape, W.shape, 2, 1)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-13)
    pooled, arg_max = fn.max_pooling.generic(x, 3, 2, 1, 1)
    d = rng.normal(size=pooled.shape)
    np.testing.assert_array_equal(
        fn.max_pooling_backward.generic(d, x, x.shape, 3, 2, 1, 1),
        fn.max_pooling_backward.generic(d, arg_max, x.shape, 3, 2, 1, 1),
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("xs", "ph", "pw", "stride", "pad"), POOL_CASES)
@pytest.mark.parametrize("values", ["random", "ties", "negative"])
def test_max_pooling_pair_equals_generic(backend, dtype, xs, ph, pw, stride, pad, values):
    _native(backend, "max_pooling")
    rng = np.random.default_rng(sum(xs) + ph * pw)
    host = {
        "random": rng.normal(size=xs),
        "ties": rng.integers(0, 2, size=xs).astype(float),  # most windows tie
        "negative": -rng.random(size=xs) - 1.0,  # the zero padding wins at the border
    }[values]
    x = _on(backend, host, dtype)
    out, arg_max = fn.max_pooling(x, ph, pw, stride, pad)
    want, warg = fn.max_pooling.generic(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(backend.to_numpy(out), backend.to_numpy(want))
    dout = _on(backend, rng.normal(size=tuple(out.shape)), dtype)
    dx = fn.max_pooling_backward(dout, arg_max, xs, ph, pw, stride, pad)
    wdx = fn.max_pooling_backward.generic(dout, warg, xs, ph, pw, stride, pad)
    assert tuple(dx.shape) == xs
    assert dx.dtype == x.dtype
    _close(dx, wdx, backend, dtype)
    if stride == ph == pw and not pad:  # each dout value lands once: the sums agree
        total = float(np.sum(backend.to_numpy(dout), dtype=np.float64))
        assert float(np.sum(backend.to_numpy(dx), dtype=np.float64)) == pytest.approx(total)


def test_pooling_ties_go_to_the_first_maximum(backend):
    """Equal maxima: the gradient goes to the first in row-major order, as ``argmax``."""
    _native(backend, "max_pooling")
    x = backend.asarray(np.array([[[[1.0, 3.0, 2.0, 2.0], [3.0, 0.0, 2.0, 2.0]]]]))
    out, arg_max = fn.max_pooling(x, 2, 2, 2)
    np.testing.assert_array_equal(backend.to_numpy(out), [[[[3.0, 2.0]]]])
    dx = fn.max_pooling_backward(backend.asarray(np.ones((1, 1, 1, 2))), arg_max, x.shape, 2, 2, 2)
    np.testing.assert_array_equal(backend.to_numpy(dx), [[[[0, 1, 1, 0], [0, 0, 0, 0]]]])


@pytest.mark.backends("torch")
def test_torch_pooling_keeps_the_books_arg_max():
    """torch's ``arg_max`` is the book's: window positions, ``(N, OH, OW, C)``, as the generic."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.integers(0, 3, size=(2, 3, 7, 6)).astype(np.float64))
    for args in ((2, 2, 2, 0), (3, 2, 1, 1), (3, 3, 2, 2)):
        _, arg_max = fn.max_pooling(x, *args)
        _, want = fn.max_pooling.generic(x, *args)
        assert arg_max.shape == want.shape
        np.testing.assert_array_equal(arg_max.numpy(), want.numpy())


@pytest.mark.backends("torch")
def test_torch_pooling_defers_nan_windows_to_the_generic_code():
    """A window of several NaN: torch's index is its last NaN, argmax's the first."""
    torch = pytest.importorskip("torch")
    from xplayers.backend import kernels_torch

    x = torch.tensor([[[[1.0, np.nan, 0.0, 2.0], [np.nan, 0.0, 2.0, np.nan]]]])
    assert kernels_torch.max_pooling(x, 2, 2, 2) is NotImplemented
    out, arg_max = fn.max_pooling(x, 2, 2, 2)
    assert torch.isnan(out).all()
    np.testing.assert_array_equal(arg_max.flatten().numpy(), [1, 3])


@pytest.mark.parametrize("layer", ["Convolution", "Pooling"])
def test_native_layers_match_central_differences(backend, layer):
    """``dx`` (and ``dW``, ``db``) of the layers on their native kernels, by central differences."""
    _native(backend, "convolution")
    if backend.name == "numpy":
        pytest.skip("numpy runs the im2col code")
    rng = np.random.default_rng(4)
    x0 = rng.normal(size=(1, 2, 5, 6))
    W0, b0 = rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)
    w = rng.normal(size=(1, 3, 3, 4) if layer == "Convolution" else (1, 2, 4, 5))

    def host_loss(x, W, b):
        if layer == "Convolution":
            out = fn.convolution.generic(x, W, b, 2, 1)[0]
        else:
            out = fn.max_pooling.generic(x, 2, 2, 1, 0)[0]
        return float(np.sum(out * w))

    f = xpl.Convolution(backend.asarray(W0), backend.asarray(b0), 2, 1)
    f = f if layer == "Convolution" else xpl.Pooling(2, 2)
    f.forward(backend.asarray(x0))
    grads = {"x": backend.to_numpy(f.backward(backend.asarray(w)))}
    if layer == "Convolution":
        grads |= {"W": backend.to_numpy(f.dW), "b": backend.to_numpy(f.db)}
    values = {"x": x0, "W": W0, "b": b0}
    h = 1e-6
    for key, got in grads.items():
        numeric = np.zeros_like(values[key])
        for i in np.ndindex(numeric.shape):
            up = {k: v.copy() for k, v in values.items()}
            down = {k: v.copy() for k, v in values.items()}
            up[key][i] += h
            down[key][i] -= h
            numeric[i] = (host_loss(**up) - host_loss(**down)) / (2 * h)
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.backends("jax")
def test_jax_kernels_trace_under_jit():
    """The JAX kernels run inside ``jax.jit`` and give their eager values there."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(2, 1, 8, 8)), dtype=jnp.float32)
    W = jnp.asarray(rng.normal(size=(3, 1, 3, 3)), dtype=jnp.float32)
    b = jnp.asarray(rng.normal(size=3), dtype=jnp.float32)

    def step(x, W, b):
        h, col, col_W = fn.convolution(x, W, b, 1, 1)
        y, arg_max = fn.max_pooling(h, 2, 2, 2)
        dh = fn.max_pooling_backward(jnp.ones_like(y), arg_max, h.shape, 2, 2, 2)
        return y, *fn.convolution_backward(dh, col, col_W, x.shape, W.shape, 1, 1)

    for got, want in zip(jax.jit(step)(x, W, b), step(x, W, b), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
