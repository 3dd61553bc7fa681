"""The functional core under ``jax.jit`` and on Dask without computing, as it claims.

array-api-extra's :func:`~array_api_extra.testing.lazy_xp_function` tags the
functions below; the fixture ``lazy`` then runs each call through a smart
``jax.jit`` on the JAX backend (non-array arguments static), and on Dask
makes any ``compute()``/``persist()`` inside them an error. On the eager
backends the functions run as they are, so the same tests hold everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests import oracle
from xplayers.functional import (
    affine,
    affine_backward,
    cross_entropy,
    cross_entropy_backward,
    log_softmax,
    one_hot,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_cross_entropy,
)

testing = pytest.importorskip("array_api_extra.testing")

for _f in (
    affine,
    affine_backward,
    cross_entropy,
    cross_entropy_backward,
    log_softmax,
    one_hot,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_cross_entropy,
):
    testing.lazy_xp_function(_f)


@pytest.fixture(autouse=True)
def lazy(request: pytest.FixtureRequest, xp: Any) -> Iterator[None]:
    """Jit the tagged functions on JAX, forbid computing inside them on Dask."""
    with testing.patch_lazy_xp_functions(request, xp=xp):
        yield


X = np.random.default_rng(7).normal(size=(5, 4)) * 3
T = np.array([0, 3, 1, 2, 3])


def test_activations(backend):
    x = backend.asarray(X)
    np.testing.assert_allclose(backend.to_numpy(relu(x)), oracle.relu(X))
    np.testing.assert_allclose(backend.to_numpy(sigmoid(x)), oracle.sigmoid(X), rtol=1e-12)
    dout = backend.asarray(np.ones_like(X) * 0.5)
    out = relu(x)
    np.testing.assert_allclose(backend.to_numpy(relu_backward(dout, out)), 0.5 * (X > 0))
    s = sigmoid(x)
    want = 0.5 * oracle.sigmoid(X) * (1 - oracle.sigmoid(X))
    np.testing.assert_allclose(backend.to_numpy(sigmoid_backward(dout, s)), want, rtol=1e-10)


def test_softmax_and_log_softmax(backend):
    x = backend.asarray(X)
    np.testing.assert_allclose(backend.to_numpy(softmax(x)), oracle.softmax(X), rtol=1e-12)
    np.testing.assert_allclose(
        backend.to_numpy(log_softmax(x)), np.log(oracle.softmax(X)), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("onehot", [False, True])
def test_cross_entropy_and_its_gradient(backend, onehot):
    x = backend.asarray(X)
    t = backend.asarray(np.eye(4)[T] if onehot else T)
    want = oracle.cross_entropy(X, T)
    np.testing.assert_allclose(float(backend.to_numpy(cross_entropy(x, t))), want, rtol=1e-12)
    loss, y = softmax_cross_entropy(x, t)
    np.testing.assert_allclose(float(backend.to_numpy(loss)), want, rtol=1e-12)
    dx = backend.to_numpy(cross_entropy_backward(y, t))
    np.testing.assert_allclose(dx, (oracle.softmax(X) - np.eye(4)[T]) / len(T), atol=1e-12)


def test_one_hot(backend, xp):
    got = one_hot(backend.asarray(T), 4, dtype=xp.float64)
    np.testing.assert_array_equal(backend.to_numpy(got), np.eye(4)[T])


def test_affine_and_its_gradient(backend):
    rng = np.random.default_rng(3)
    W, b = rng.normal(size=(4, 3)), rng.normal(size=3)
    x, Wb, bb = backend.asarray(X), backend.asarray(W), backend.asarray(b)
    np.testing.assert_allclose(backend.to_numpy(affine(x, Wb, bb)), X @ W + b, rtol=1e-12)
    dout = rng.normal(size=(5, 3))
    dx, dW, db = affine_backward(backend.asarray(dout), x, Wb)
    np.testing.assert_allclose(backend.to_numpy(dx), dout @ W.T, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dW), X.T @ dout, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(db), dout.sum(axis=0), rtol=1e-12)


def _computes(x: Any) -> float:
    return float(x[0])  # reads a value: computes a Dask graph, fails under jax.jit


testing.lazy_xp_function(_computes)


def test_the_functions_really_run_lazily(backend):
    """The tags take effect: jitted on JAX, computing forbidden on Dask."""
    import xplayers.functional as fn

    x = backend.asarray(X[0])
    if backend.name in ("jax", "dask"):
        assert relu is not fn.relu  # replaced for the duration of the test
        with pytest.raises(Exception, match=r"(?i)concret|tracer|compute|persist"):
            _computes(x)
    else:
        assert relu is fn.relu
        assert _computes(x) == X[0, 0]
