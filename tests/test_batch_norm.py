"""BatchNormalization with the book's formulas: oracle, running averages, gradients, torch."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from tests import oracle, oracle_conv


def _layer(backend, rng, d, dtype="float64", **kw):
    gamma = rng.normal(size=d).astype(dtype)
    beta = rng.normal(size=d).astype(dtype)
    return xpl.BatchNormalization(backend.asarray(gamma), backend.asarray(beta), **kw), gamma, beta


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_forward_and_running_averages(backend, rng, dtype):
    layer, gamma, beta = _layer(backend, rng, 4, dtype, momentum=0.8)
    x = rng.normal(size=(6, 4)).astype(dtype)
    out = layer.forward(backend.asarray(x))
    ref, mu, var = oracle_conv.batch_norm(x.astype("float64"), gamma, beta)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else {"rtol": 1e-4, "atol": 1e-5}
    assert out.dtype == backend.dtype(dtype)
    np.testing.assert_allclose(backend.to_numpy(out), ref, **tol)
    np.testing.assert_allclose(backend.to_numpy(layer.running_mean), 0.2 * mu, **tol)
    np.testing.assert_allclose(backend.to_numpy(layer.running_var), 0.2 * var, **tol)
    x2 = rng.normal(size=(3, 4)).astype(dtype)
    test_out = layer.forward(backend.asarray(x2), train_flg=False)
    expected = gamma * (x2 - 0.2 * mu) / np.sqrt(0.2 * var + 1e-6) + beta
    np.testing.assert_allclose(backend.to_numpy(test_out), expected, **tol)


def test_four_d_input_flattened_as_the_book(backend, rng):
    layer, gamma, beta = _layer(backend, rng, 2 * 3 * 2)
    x = rng.normal(size=(5, 2, 3, 2))
    out = layer.forward(backend.asarray(x))
    ref, _, _ = oracle_conv.batch_norm(x.reshape(5, -1), gamma, beta)
    np.testing.assert_allclose(backend.to_numpy(out), ref.reshape(x.shape), rtol=1e-10)
    dx = layer.backward(backend.asarray(np.ones(x.shape)))
    assert tuple(dx.shape) == x.shape


@pytest.mark.parametrize("train", [True, False])
def test_gradients_central_differences(backend, rng, train):
    layer, gamma, beta = _layer(backend, rng, 3)
    rm, rv = rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)
    layer.running_mean, layer.running_var = backend.asarray(rm), backend.asarray(rv)
    x = rng.normal(size=(5, 3))
    r = rng.normal(size=(5, 3))
    layer.forward(backend.asarray(x), train_flg=train)
    dx = backend.to_numpy(layer.backward(backend.asarray(r)))

    def f() -> float:
        if train:
            out = oracle_conv.batch_norm(x, gamma, beta)[0]
        else:
            out = gamma * (x - rm) / np.sqrt(rv + 1e-6) + beta
        return float((out * r).sum())

    for got, wrt in ((dx, x), (layer.dgamma, gamma), (layer.dbeta, beta)):
        np.testing.assert_allclose(
            backend.to_numpy(got), oracle.numerical_gradient(f, wrt), rtol=1e-6, atol=1e-8
        )


def test_against_torch_autograd(backend, rng):
    torch = pytest.importorskip("torch", reason="torch is the autograd reference")
    layer, gamma, beta = _layer(backend, rng, 4)
    x = rng.normal(size=(6, 4))
    r = rng.normal(size=(6, 4))
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    # The book's formula (biased variance, eps 1e-6) written in torch operations.
    mu = tx.mean(0)
    var = ((tx - mu) ** 2).mean(0)
    tout = tg * (tx - mu) / torch.sqrt(var + 1e-6) + tb
    (tout * torch.tensor(r)).sum().backward()
    out = layer.forward(backend.asarray(x))
    dx = layer.backward(backend.asarray(r))
    tol = {"rtol": 1e-9, "atol": 1e-11}
    np.testing.assert_allclose(backend.to_numpy(out), tout.detach().numpy(), **tol)
    np.testing.assert_allclose(backend.to_numpy(dx), tx.grad.numpy(), **tol)
    np.testing.assert_allclose(backend.to_numpy(layer.dgamma), tg.grad.numpy(), **tol)
    np.testing.assert_allclose(backend.to_numpy(layer.dbeta), tb.grad.numpy(), **tol)
    # torch's own batch_norm agrees (training mode, same eps, biased variance)
    ref = torch.nn.functional.batch_norm(
        torch.tensor(x), None, None, torch.tensor(gamma), torch.tensor(beta), True, 0.0, 1e-6
    )
    np.testing.assert_allclose(backend.to_numpy(out), ref.numpy(), **tol)


def test_inputs_untouched(backend, rng):
    layer, gamma, _ = _layer(backend, rng, 3)
    x = rng.normal(size=(4, 3))
    xin, dout = backend.asarray(x), backend.asarray(np.ones((4, 3)))
    layer.forward(xin)
    layer.backward(dout)
    np.testing.assert_array_equal(backend.to_numpy(xin), x)
    np.testing.assert_array_equal(backend.to_numpy(dout), np.ones((4, 3)))
    np.testing.assert_array_equal(backend.to_numpy(layer.gamma), gamma)
