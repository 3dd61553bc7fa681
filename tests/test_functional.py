"""The functional core: labels, dtypes and batch sizes at the edges, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from tests import oracle
from xplayers import functional as fn

HALF_DTYPES = ["float16", "bfloat16"]


def _half(xp, backend, name, host):
    """`host` (float32) on the backend in the 16-bit dtype `name`; skip where it is missing."""
    dtype = getattr(xp, name, None)
    if dtype is None:
        pytest.skip(f"{backend.name} has no {name}")
    return xp.astype(backend.asarray(host.astype(np.float32)), dtype), dtype


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_dtypes_in_are_dtypes_out(xp, backend, rng, dtype):
    host = rng.normal(size=(5, 4))
    x, want = _half(xp, backend, dtype, host)
    t = backend.asarray(np.array([0, 3, 1, 2, 0]))
    onehot = xp.astype(backend.asarray(np.eye(4)[[0, 3, 1, 2, 0]]), want)
    outs = {
        "softmax": fn.softmax(x),
        "log_softmax": fn.log_softmax(x),
        "cross_entropy": fn.cross_entropy(x, t),
        "cross_entropy onehot": fn.cross_entropy(x, onehot),
        "relu": fn.relu(x),
        "sigmoid": fn.sigmoid(x),
        "SoftmaxWithLoss": xpl.SoftmaxWithLoss().forward(x, t),
    }
    for name, out in outs.items():
        assert out.dtype == want, name
    y = outs["softmax"]
    assert fn.cross_entropy_backward(y, t).dtype == want
    ref = oracle.softmax(np.asarray(backend.to_numpy(xp.astype(x, xp.float32)), np.float64))
    np.testing.assert_allclose(
        np.asarray(backend.to_numpy(xp.astype(y, xp.float32))), ref, rtol=2e-2, atol=1e-2
    )


def test_float16_mean_loss_of_a_huge_batch(xp, backend):
    """N = 65,520 does not fit in float16; the mean must not become -0 (or warn)."""
    if getattr(xp, "float16", None) is None:
        pytest.skip(f"{backend.name} has no float16")
    n = 65_520
    x = backend.asarray(np.zeros((n, 2), np.float16))
    t = backend.asarray(np.zeros(n, np.int64))
    for loss in (fn.cross_entropy(x, t), xpl.SoftmaxWithLoss().forward(x, t)):
        assert loss.dtype == xp.float16
        assert float(backend.to_numpy(loss)) == pytest.approx(np.log(2.0), rel=1e-3)


def test_uint8_labels_with_more_classes_than_uint8_holds(backend, rng):
    """arange(300, dtype=uint8) wraps: label 5 would also mark class 261."""
    c = 300
    host = rng.normal(size=(4, c))
    labels = np.array([5, 0, 255, 17], np.uint8)
    x = backend.asarray(host)
    t = backend.asarray(labels)
    ref = oracle.cross_entropy(host, labels.astype(np.int64))
    layer = xpl.SoftmaxWithLoss()
    for loss in (fn.cross_entropy(x, t), layer.forward(x, t)):
        assert float(backend.to_numpy(loss)) == pytest.approx(ref, rel=1e-12)
    grad = backend.to_numpy(layer.backward())
    want = (oracle.softmax(host) - np.eye(c)[labels]) / 4
    np.testing.assert_allclose(grad, want, rtol=1e-10, atol=1e-14)
    mask = backend.to_numpy(fn.one_hot(t, c))
    assert mask.sum() == 4
    np.testing.assert_array_equal(mask.argmax(axis=1), labels)


def test_uint8_label_range_is_checked_in_the_labels_type(backend):
    x = backend.asarray(np.zeros((2, 300)))
    assert (
        xpl.SoftmaxWithLoss().forward(x, backend.asarray(np.array([0, 255], np.uint8))) is not None
    )
    if backend.lazy:
        pytest.skip("label values of lazy arrays are not read")
    with pytest.raises(xpl.LayerInputError, match=r"labels in \[0, 10\).*labels from 0 to 12"):
        xpl.SoftmaxWithLoss().forward(
            backend.asarray(np.zeros((2, 10))), backend.asarray(np.array([0, 12], np.uint8))
        )
