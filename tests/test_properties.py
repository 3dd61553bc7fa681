"""Hypothesis properties of the layers, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xplayers as xpl

# Each property draws backend.examples cases: 25 on the eager backends, 5 on JAX and
# Dask, where every new shape compiles (JAX) or builds a graph (Dask).

finite = st.floats(-1e6, 1e6, allow_nan=False, width=64)


def logits(backend, min_n: int = 1) -> st.SearchStrategy[np.ndarray]:
    """Logit batches; of one shape on JAX and Dask, where each new shape compiles or builds a graph."""
    if backend.slow:
        shapes = st.just((4, 3))
    else:
        shapes = st.tuples(st.integers(min_n, 8), st.integers(1, 6))
    return hnp.arrays(np.float64, shapes, elements=finite)


def test_softmax_rows_sum_to_one(backend):
    @settings(max_examples=backend.examples, deadline=None)
    @given(x=logits(backend))
    def check(x):
        y = backend.to_numpy(xpl.functional.softmax(backend.asarray(x)))
        assert np.all(y >= 0)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-12)

    check()


def test_loss_is_non_negative(backend):
    @settings(max_examples=backend.examples, deadline=None)
    @given(x=logits(backend), data=st.data())
    def check(x, data):
        labels = data.draw(
            hnp.arrays(np.int64, x.shape[0], elements=st.integers(0, x.shape[1] - 1))
        )
        loss = xpl.SoftmaxWithLoss().forward(backend.asarray(x), backend.asarray(labels))
        assert float(backend.to_numpy(loss)) >= 0.0

    check()


def test_batch_split_invariance(backend):
    """The mean loss and the summed gradient of a batch equal those of its two halves."""

    @settings(max_examples=backend.examples, deadline=None)
    @given(
        x=logits(backend, min_n=2), data=st.data(), dtype=st.sampled_from(["float32", "float64"])
    )
    def check(x, data, dtype):
        x = np.clip(x, -50, 50).astype(dtype)
        labels = data.draw(
            hnp.arrays(np.int64, x.shape[0], elements=st.integers(0, x.shape[1] - 1))
        )
        k = 2 if backend.slow else data.draw(st.integers(1, x.shape[0] - 1))
        n = x.shape[0]

        def run(xs, ts):
            layer = xpl.SoftmaxWithLoss()
            loss = float(backend.to_numpy(layer.forward(backend.asarray(xs), backend.asarray(ts))))
            return loss, backend.to_numpy(layer.backward())

        full, g = run(x, labels)
        a, ga = run(x[:k], labels[:k])
        b, gb = run(x[k:], labels[k:])
        tol = 1e-10 if dtype == "float64" else 1e-4
        assert full == pytest.approx((k * a + (n - k) * b) / n, rel=tol, abs=tol)
        np.testing.assert_allclose(
            g * n, np.concatenate([ga * k, gb * (n - k)]), rtol=tol, atol=tol
        )

    check()


def test_no_mutation_and_kept_dtype_shape_namespace(backend, xp):
    @settings(max_examples=backend.examples, deadline=None)
    @given(
        x=hnp.arrays(
            np.float64,
            st.just((3, 4))
            if backend.slow
            else hnp.array_shapes(min_dims=2, max_dims=3, max_side=5),
            elements=finite,
        ),
        dtype=st.sampled_from(["float32", "float64"]),
        layer_name=st.sampled_from(["Relu", "Sigmoid", "Affine"]),
    )
    def check(x, dtype, layer_name):
        x = x.astype(dtype)
        rng = np.random.default_rng(0)
        d = int(np.prod(x.shape[1:]))
        if layer_name == "Affine":
            W, b = rng.normal(size=(d, 3)).astype(dtype), np.zeros(3, dtype)
            layer = xpl.Affine(backend.asarray(W), backend.asarray(b))
        else:
            layer = getattr(xpl, layer_name)()
        xa = backend.asarray(x)
        out = layer.forward(xa)
        dout_host = rng.normal(size=tuple(out.shape)).astype(dtype)
        dout = backend.asarray(dout_host)
        dx = layer.backward(dout)
        # nothing written into the inputs or into dout
        np.testing.assert_array_equal(backend.to_numpy(xa), x)
        np.testing.assert_array_equal(backend.to_numpy(dout), dout_host)
        for arr in (out, dx):
            assert arr.dtype == backend.dtype(dtype)
            assert xpl.namespace(arr) is xp
        assert tuple(dx.shape) == x.shape

    check()


def test_sigmoid_in_unit_interval_without_warnings(backend):
    @settings(max_examples=backend.examples, deadline=None)
    @given(
        x=hnp.arrays(
            np.float64,
            st.just(8) if backend.slow else st.integers(1, 20),
            elements=st.floats(allow_nan=False, width=64),
        )
    )
    def check(x):
        y = backend.to_numpy(xpl.functional.sigmoid(backend.asarray(x)))
        assert np.all((y >= 0) & (y <= 1))

    check()
