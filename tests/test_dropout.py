"""Dropout: the book's non-inverted form, seeded masks equal on every backend, torch."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from xplayers.functional import dropout_seed


def _host_mask(seed, count, shape, ratio):
    """Mask `count` of a seed: the host generator of ``[*dropout_seed(seed), count]``."""
    return np.random.default_rng([*dropout_seed(seed), count]).random(shape) > ratio


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_seeded_mask_is_the_host_generators(backend, rng, dtype):
    x = rng.normal(size=(4, 5)).astype(dtype)
    layer = xpl.Dropout(0.3, seed=7)
    out = layer.forward(backend.asarray(x))
    expected_mask = _host_mask(7, 0, (4, 5), 0.3)
    assert out.dtype == backend.dtype(dtype)
    np.testing.assert_array_equal(backend.to_numpy(out), x * expected_mask)
    dout = rng.normal(size=(4, 5)).astype(dtype)
    dx = layer.backward(backend.asarray(dout))
    np.testing.assert_array_equal(backend.to_numpy(dx), dout * expected_mask)
    second = backend.to_numpy(layer.forward(backend.asarray(x)))  # the sequence goes on
    layer.reseed(7)
    np.testing.assert_array_equal(
        backend.to_numpy(layer.forward(backend.asarray(x))), x * expected_mask
    )
    assert not np.array_equal(second, x * expected_mask)
    np.testing.assert_array_equal(second, x * _host_mask(7, 1, (4, 5), 0.3))
    assert layer.count == 1


def test_test_time_scales_and_backward(backend, rng):
    x = rng.normal(size=(3, 2))
    layer = xpl.Dropout(0.25, seed=0)
    out = layer.forward(backend.asarray(x), train_flg=False)
    np.testing.assert_allclose(backend.to_numpy(out), x * 0.75, rtol=1e-15)
    dx = layer.backward(backend.asarray(np.ones((3, 2))))
    np.testing.assert_allclose(backend.to_numpy(dx), np.full((3, 2), 0.75))


def test_against_torch_autograd_with_the_same_mask(backend, rng):
    torch = pytest.importorskip("torch", reason="torch is the autograd reference")
    x = rng.normal(size=(2, 3, 4))
    r = rng.normal(size=(2, 3, 4))
    layer = xpl.Dropout(0.5, seed=3)
    out = layer.forward(backend.asarray(x))
    dx = layer.backward(backend.asarray(r))
    mask = torch.tensor(_host_mask(3, 0, (2, 3, 4), 0.5))
    tx = torch.tensor(x, requires_grad=True)
    tout = tx * mask
    (tout * torch.tensor(r)).sum().backward()
    np.testing.assert_array_equal(backend.to_numpy(out), tout.detach().numpy())
    np.testing.assert_array_equal(backend.to_numpy(dx), tx.grad.numpy())


def test_ratio_extremes(backend, rng):
    x = rng.normal(size=(3, 3))
    np.testing.assert_array_equal(
        backend.to_numpy(xpl.Dropout(0.0, seed=1).forward(backend.asarray(x))), x
    )
    np.testing.assert_array_equal(
        backend.to_numpy(xpl.Dropout(1.0, seed=1).forward(backend.asarray(x))), 0 * x
    )


def test_a_copy_does_not_advance_the_original(backend, rng):
    import copy

    x = backend.asarray(rng.normal(size=(3, 4)))
    layer = xpl.Dropout(0.5, seed=11)
    clone = copy.copy(layer)
    np.testing.assert_array_equal(
        backend.to_numpy(clone.forward(x)), backend.to_numpy(layer.forward(x))
    )
