"""Forward values against the float64 oracle and gradients against central differences."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from tests import oracle
from tests.matrix import COLUMNS

DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_forward_backward(backend, rng, dtype):
    x = rng.normal(size=(5, 7)).astype(dtype)
    dout = rng.normal(size=(5, 7)).astype(dtype)
    layer = xpl.Relu()
    out = layer.forward(backend.asarray(x))
    np.testing.assert_allclose(
        backend.to_numpy(out), oracle.relu(x.astype("float64")), **oracle.tolerance(dtype)
    )
    dx = layer.backward(backend.asarray(dout))
    np.testing.assert_allclose(backend.to_numpy(dx), dout * (x > 0), **oracle.tolerance(dtype))
    assert out.dtype == backend.dtype(dtype)
    assert dx.dtype == backend.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_forward_backward(backend, rng, dtype):
    x = rng.normal(scale=3, size=(4, 6)).astype(dtype)
    dout = rng.normal(size=(4, 6)).astype(dtype)
    layer = xpl.Sigmoid()
    y = layer.forward(backend.asarray(x))
    ref = oracle.sigmoid(x.astype("float64"))
    np.testing.assert_allclose(backend.to_numpy(y), ref, **oracle.tolerance(dtype))
    dx = layer.backward(backend.asarray(dout))
    np.testing.assert_allclose(
        backend.to_numpy(dx), dout * (1 - ref) * ref, **oracle.tolerance(dtype)
    )
    assert dx.dtype == backend.dtype(dtype)


def test_sigmoid_gradient_numerical(backend, rng):
    x = rng.normal(size=(3, 4))
    r = rng.normal(size=(3, 4))
    layer = xpl.Sigmoid()
    layer.forward(backend.asarray(x))
    dx = backend.to_numpy(layer.backward(backend.asarray(r)))
    num = oracle.numerical_gradient(lambda: float((oracle.sigmoid(x) * r).sum()), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)


def test_relu_gradient_numerical(backend, rng):
    x = rng.normal(size=(3, 4))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    r = rng.normal(size=(3, 4))
    layer = xpl.Relu()
    layer.forward(backend.asarray(x))
    dx = backend.to_numpy(layer.backward(backend.asarray(r)))
    num = oracle.numerical_gradient(lambda: float((oracle.relu(x) * r).sum()), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shape", [(4, 6), (4, 2, 3), (4, 1, 2, 3)])
def test_affine_gradients_numerical(backend, rng, shape):
    x = rng.normal(size=shape)
    W = rng.normal(size=(6, 5))
    b = rng.normal(size=5)
    r = rng.normal(size=(4, 5))
    layer = xpl.Affine(backend.asarray(W), backend.asarray(b))
    out = layer.forward(backend.asarray(x))
    np.testing.assert_allclose(backend.to_numpy(out), x.reshape(4, 6) @ W + b, rtol=1e-12)
    dx = layer.backward(backend.asarray(r))
    assert tuple(dx.shape) == shape

    def f() -> float:
        return float(((x.reshape(4, 6) @ W + b) * r).sum())

    np.testing.assert_allclose(
        backend.to_numpy(dx), oracle.numerical_gradient(f, x), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        backend.to_numpy(layer.dW), oracle.numerical_gradient(f, W), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        backend.to_numpy(layer.db), oracle.numerical_gradient(f, b), rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_float_dtypes(backend, rng, dtype):
    x = rng.normal(size=(3, 4)).astype(dtype)
    W = rng.normal(size=(4, 2)).astype(dtype)
    b = rng.normal(size=2).astype(dtype)
    layer = xpl.Affine(backend.asarray(W), backend.asarray(b))
    out = layer.forward(backend.asarray(x))
    assert out.dtype == backend.dtype(dtype)
    ref = x.astype("float64") @ W.astype("float64") + b
    np.testing.assert_allclose(backend.to_numpy(out), ref, **oracle.tolerance(dtype))
    layer.backward(backend.asarray(np.ones((3, 2), dtype)))
    assert layer.dW.dtype == backend.dtype(dtype)
    assert layer.db.dtype == backend.dtype(dtype)


def test_affine_casts_input_to_parameter_dtype(backend, xp, rng):
    """Documented rule: compute in the parameters' dtype, return dx in the input's dtype."""
    W = backend.asarray(rng.normal(size=(4, 2)).astype("float32"))
    b = backend.asarray(np.zeros(2, "float32"))
    layer = xpl.Affine(W, b)
    out = layer.forward(backend.asarray(rng.normal(size=(3, 4))))  # float64 input
    assert out.dtype == xp.float32
    dx = layer.backward(backend.asarray(np.ones((3, 2))))  # float64 dout
    assert dx.dtype == xp.float64
    assert layer.dW.dtype == xp.float32


def test_affine_skips_input_gradient(backend, rng):
    layer = xpl.Affine(
        backend.asarray(rng.normal(size=(3, 2))), backend.asarray(np.zeros(2)), input_grad=False
    )
    x = rng.normal(size=(5, 3))
    layer.forward(backend.asarray(x))
    dout = rng.normal(size=(5, 2))
    assert layer.backward(backend.asarray(dout)) is None
    np.testing.assert_allclose(backend.to_numpy(layer.dW), x.T @ dout, rtol=1e-12)


def test_affine_keeps_parameter_arrays(backend, rng):
    W = backend.asarray(rng.normal(size=(3, 2)))
    b = backend.asarray(np.zeros(2))
    layer = xpl.Affine(W, b)
    assert layer.W is W
    assert layer.b is b
    assert layer.params["W"] is W


@pytest.mark.parametrize("target", ["labels", "onehot", "probs"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_with_loss(backend, rng, target, dtype):
    n, c = 6, 4
    x = rng.normal(scale=2, size=(n, c))
    labels = rng.integers(0, c, size=n)
    if target == "labels":
        t = labels
    elif target == "onehot":
        t = np.eye(c)[labels]
    else:
        t = rng.dirichlet(np.ones(c), size=n)
    layer = xpl.SoftmaxWithLoss()
    tt = backend.asarray(t.astype(dtype) if t.dtype.kind == "f" else t)
    loss = layer.forward(backend.asarray(x.astype(dtype)), tt)
    assert loss.ndim == 0
    assert loss.dtype == backend.dtype(dtype)
    xd = x.astype(dtype).astype("float64")
    np.testing.assert_allclose(
        float(backend.to_numpy(loss)), oracle.cross_entropy(xd, t), **oracle.tolerance(dtype)
    )
    np.testing.assert_allclose(
        backend.to_numpy(layer.y), oracle.softmax(xd), **oracle.tolerance(dtype)
    )
    dx = layer.backward()
    assert dx.dtype == backend.dtype(dtype)
    if dtype == "float64":
        num = oracle.numerical_gradient(lambda: oracle.cross_entropy(x, t), x)
        np.testing.assert_allclose(backend.to_numpy(dx), num, rtol=1e-6, atol=1e-9)


def test_softmax_with_loss_honours_dout(backend, rng):
    x = backend.asarray(rng.normal(size=(3, 5)))
    t = backend.asarray(np.array([0, 4, 2]))
    layer = xpl.SoftmaxWithLoss()
    layer.forward(x, t)
    d1 = backend.to_numpy(layer.backward())
    d3 = backend.to_numpy(layer.backward(3.0))
    d3a = backend.to_numpy(layer.backward(backend.asarray(np.asarray(3.0))))
    np.testing.assert_allclose(d3, 3 * d1, rtol=1e-12)
    np.testing.assert_allclose(d3a, 3 * d1, rtol=1e-12)


def test_labels_when_batch_equals_classes(backend):
    """Labels are told apart from one-hot rows by shape and dtype, also when N == C."""
    x = np.zeros((3, 3))
    layer = xpl.SoftmaxWithLoss()
    loss = layer.forward(backend.asarray(x), backend.asarray(np.array([0, 1, 2])))
    np.testing.assert_allclose(float(backend.to_numpy(loss)), np.log(3), rtol=1e-12)


@pytest.mark.parametrize("gap", [1000.0, 1e30])
def test_loss_for_huge_logit_gap(backend, gap):
    layer = xpl.SoftmaxWithLoss()
    loss = layer.forward(backend.asarray(np.array([[0.0, gap]])), backend.asarray(np.array([0])))
    assert float(backend.to_numpy(loss)) == gap
    good = layer.forward(backend.asarray(np.array([[0.0, gap]])), backend.asarray(np.array([1])))
    assert float(backend.to_numpy(good)) == 0.0


def test_infinite_logits_without_warnings(backend):
    inf = np.inf
    x = np.array([[inf, 0.0, inf], [-inf, -inf, -inf], [-inf, 2.0, 0.0], [1e308, -1e308, 0.0]])
    y = backend.to_numpy(xpl.functional.softmax(backend.asarray(x)))
    np.testing.assert_allclose(y[0], [0.5, 0.0, 0.5])
    np.testing.assert_allclose(y[1], [1 / 3] * 3)
    np.testing.assert_allclose(y[2], oracle.softmax(np.array([[-inf, 2.0, 0.0]]))[0])
    np.testing.assert_allclose(y[3], [1.0, 0.0, 0.0])
    logp = backend.to_numpy(xpl.functional.log_softmax(backend.asarray(x)))
    assert logp[2, 0] == -inf
    np.testing.assert_allclose(logp[3], [0.0, -inf, -1e308])
    loss = xpl.functional.cross_entropy(backend.asarray(x), backend.asarray(np.array([0, 1, 1, 0])))
    assert np.isfinite(float(backend.to_numpy(loss)))
    s = backend.to_numpy(
        xpl.functional.sigmoid(backend.asarray(np.array([-inf, -1e308, 1e308, inf])))
    )
    np.testing.assert_array_equal(s, [0.0, 0.0, 1.0, 1.0])


def test_nan_propagates(backend):
    x = np.array([[np.nan, 0.0], [1.0, 0.0]])
    y = backend.to_numpy(xpl.functional.softmax(backend.asarray(x)))
    assert np.isnan(y[0]).all()
    assert np.isfinite(y[1]).all()


def test_empty_batch(backend):
    """N = 0: outputs are empty, the mean loss is 0 and every gradient is zero-filled."""
    W = backend.asarray(np.ones((3, 2)))
    affine = xpl.Affine(W, backend.asarray(np.zeros(2)))
    relu, loss = xpl.Relu(), xpl.SoftmaxWithLoss()
    x = backend.asarray(np.zeros((0, 3)))
    h = relu.forward(affine.forward(x))
    assert tuple(h.shape) == (0, 2)
    L = loss.forward(h, backend.asarray(np.zeros(0, dtype=np.int64)))
    assert float(backend.to_numpy(L)) == 0.0
    dx = affine.backward(relu.backward(loss.backward()))
    assert tuple(dx.shape) == (0, 3)
    np.testing.assert_array_equal(backend.to_numpy(affine.dW), np.zeros((3, 2)))
    np.testing.assert_array_equal(backend.to_numpy(affine.db), np.zeros(2))


def test_outputs_on_input_device(backend, rng):
    import array_api_compat

    x = backend.asarray(rng.normal(size=(2, 3)))
    for out in (xpl.Relu().forward(x), xpl.Sigmoid().forward(x)):
        assert array_api_compat.device(out) == array_api_compat.device(x)
        assert xpl.namespace(out) is xpl.namespace(x)


def test_book_network_chain(backend, rng):
    """The chain from the issue: affine -> relu -> affine2 -> loss, and back."""
    W1, b1 = rng.normal(size=(8, 5)) * 0.1, np.zeros(5)
    W2, b2 = rng.normal(size=(5, 3)) * 0.1, np.zeros(3)
    x, t = rng.normal(size=(4, 8)), np.array([0, 2, 1, 2])
    affine, relu = xpl.Affine(backend.asarray(W1), backend.asarray(b1)), xpl.Relu()
    affine2, loss = xpl.Affine(backend.asarray(W2), backend.asarray(b2)), xpl.SoftmaxWithLoss()
    L = loss.forward(
        affine2.forward(relu.forward(affine.forward(backend.asarray(x)))), backend.asarray(t)
    )
    dx = affine.backward(relu.backward(affine2.backward(loss.backward())))

    def f() -> float:
        return oracle.cross_entropy(oracle.relu(x @ W1 + b1) @ W2 + b2, t)

    assert float(backend.to_numpy(L)) == pytest.approx(f(), rel=1e-12)
    np.testing.assert_allclose(
        backend.to_numpy(dx), oracle.numerical_gradient(f, x), rtol=1e-5, atol=1e-9
    )
    np.testing.assert_allclose(
        backend.to_numpy(affine.dW), oracle.numerical_gradient(f, W1), rtol=1e-5, atol=1e-9
    )


def test_relu_backward_numpy_path_equals_generic(rng):
    """The NumPy multiply path of relu_backward equals the array-API where path."""
    strict = pytest.importorskip("array_api_strict")
    for dtype in ("float32", "float64"):
        x = rng.normal(size=(64, 33)).astype(dtype)
        x[::3] = 0.0
        dout = rng.normal(size=(64, 33)).astype(dtype)
        out = xpl.functional.relu(x)
        fast = xpl.functional.relu_backward(dout, out)
        generic = xpl.functional.relu_backward(
            strict.asarray(dout), xpl.functional.relu(strict.asarray(x))
        )
        assert fast.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(fast, xpl.to_numpy(generic))


def _on_gpu(backend) -> bool:
    return any(tid.gpu for tid in COLUMNS[backend.name] if tid.id == backend.id)


@pytest.mark.parametrize("check_labels", [None, True, False])
def test_check_labels_reads_the_labels_as_told(backend, monkeypatch, check_labels):
    """None: read on eager host arrays only; True: wherever readable; False: never."""
    import xplayers.layers.softmax_with_loss as module

    reads = []
    real = module.labels_in_range

    def spy(t, c):
        reads.append(c)
        return real(t, c)

    monkeypatch.setattr(module, "labels_in_range", spy)
    layer = xpl.SoftmaxWithLoss(check_labels=check_labels)
    layer.forward(backend.asarray(np.zeros((2, 3))), backend.asarray(np.array([0, 2])))
    if check_labels is None:
        expected = not backend.lazy and not _on_gpu(backend)
    else:
        expected = check_labels and not backend.lazy
    assert reads == ([3] if expected else [])


@pytest.mark.parametrize("check_labels", [None, True])
def test_check_labels_refuses_labels_out_of_range(backend, check_labels):
    if backend.lazy:
        pytest.skip(
            "label values are not read from lazy Dask arrays (that would compute the graph)"
        )
    if check_labels is None and _on_gpu(backend):
        pytest.skip("the default reads no labels on a GPU (a device synchronisation)")
    layer = xpl.SoftmaxWithLoss(check_labels=check_labels)
    with pytest.raises(xpl.LayerInputError, match=r"expected labels in \[0, 3\); got labels from"):
        layer.forward(backend.asarray(np.zeros((2, 3))), backend.asarray(np.array([0, 3])))


@pytest.mark.parametrize("bad", [1, "yes", np.bool_(True)])
def test_check_labels_must_be_a_bool_or_none(bad):
    with pytest.raises(
        xpl.LayerInputError, match=r"SoftmaxWithLoss: argument 'check_labels': expected True"
    ):
        xpl.SoftmaxWithLoss(check_labels=bad)


def test_check_labels_survives_pickle_and_shows_in_repr():
    import pickle

    layer = pickle.loads(pickle.dumps(xpl.SoftmaxWithLoss(check_labels=False)))
    assert layer.check_labels is False
    assert repr(layer) == "SoftmaxWithLoss(check_labels=False)"
    assert repr(xpl.SoftmaxWithLoss()) == "SoftmaxWithLoss()"
    old = xpl.SoftmaxWithLoss()
    del old.__dict__["check_labels"]  # a layer pickled before the option existed
    assert old.check_labels is None
    old.forward(np.zeros((1, 2)), np.array([1]))
