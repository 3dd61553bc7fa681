"""One rule for targets, in every function that takes them.

Integer labels ``(N,)`` in ``[0, C)``, the same labels as a column ``(N, 1)``
(when ``C > 1``: the book's scripts pass those), or one-hot / probability
rows ``(N, C)``. Layers, networks' ``loss``/``accuracy``/``gradient``/
``train_step``, the pure functions, ``train``, ``evaluate`` and the gradient
checks all take the same targets and refuse the same ones.
"""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from xplayers import functional as fn
from xplayers.datasets import train_test_split
from xplayers.errors import LayerInputError
from xplayers.gradcheck import gradient_check
from xplayers.network import SimpleConvNet, TwoLayerNet
from xplayers.network.chain import Chain
from xplayers.optim import SGD
from xplayers.training import evaluate, train

C = 3


def _data(rng, n=12):
    x = rng.normal(size=(n, 4))
    t = rng.integers(0, C, n)
    t[:C] = np.arange(C)  # every class present
    return x, t


def _host(backend, a):
    return np.asarray(backend.to_numpy(a), dtype=np.float64)


# --------------------------------------------------------------------------- label range


@pytest.mark.parametrize("bad", [-1, C])
def test_accuracy_refuses_labels_outside_the_classes_as_loss_does(backend, rng, bad):
    net = TwoLayerNet(4, 5, C, seed=0)
    x, t = _data(rng)
    t[-1] = bad
    xb, tb = backend.asarray(x), backend.asarray(t)
    lo, hi = min(bad, 0), max(bad, C - 1)
    message = (
        rf"accuracy: argument 't': expected labels in \[0, {C}\); got labels from {lo} to {hi}"
    )
    with pytest.raises(LayerInputError, match=message):
        net.accuracy(xb, tb)
    with pytest.raises(LayerInputError, match=message):  # the label column too
        net.accuracy(xb, backend.asarray(t[:, None]))
    if not backend.lazy:  # the loss reads no values of a lazy array (see SoftmaxWithLoss)
        with pytest.raises(LayerInputError, match="labels in"):
            net.loss(xb, tb)
        with pytest.raises(LayerInputError, match="labels in"):
            net.gradient(xb, tb)


@pytest.mark.parametrize("bad", [-1, C])
def test_batched_accuracy_refuses_labels_outside_the_classes(backend, rng, bad):
    if backend.slow:
        pytest.skip("one convolution network on the eager backends is enough")
    net = SimpleConvNet(
        (1, 6, 6), {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1}, 4, C, seed=0
    )
    x = rng.normal(size=(5, 1, 6, 6))
    t = np.array([0, 1, 2, 0, bad])
    with pytest.raises(LayerInputError, match=r"SimpleConvNet\.accuracy: argument 't'"):
        net.accuracy(backend.asarray(x), backend.asarray(t), batch_size=2)


# --------------------------------------------------------------------------- label columns


def test_label_column_is_the_labels_for_every_network_method(backend, rng):
    net = TwoLayerNet(4, 5, C, weight_init_std=1.0, seed=0)
    x, t = _data(rng)
    xb, tb, tc = backend.asarray(x), backend.asarray(t), backend.asarray(t[:, None])
    assert _host(backend, net.loss(xb, tc)) == pytest.approx(_host(backend, net.loss(xb, tb)))
    assert net.accuracy(xb, tc) == net.accuracy(xb, tb)
    one_hot = backend.asarray(np.eye(C)[t])
    assert net.accuracy(xb, one_hot) == net.accuracy(xb, tb)
    g_col, g_lab = net.gradient(xb, tc), net.gradient(xb, tb)
    for key in g_lab:
        np.testing.assert_allclose(_host(backend, g_col[key]), _host(backend, g_lab[key]))
    twin = TwoLayerNet(4, 5, C, weight_init_std=1.0, seed=0)
    for a, b in ((net, tc), (twin, tb)):
        a.train_step(xb, b, SGD(lr=0.1))
    for key in net.params:
        np.testing.assert_allclose(
            _host(backend, net.params[key]), _host(backend, twin.params[key]), rtol=1e-12
        )


def test_label_column_in_the_loss_layer_and_the_pure_functions(backend, rng):
    x, t = _data(rng)
    x = x[:, :C]
    xb, tb, tc = backend.asarray(x), backend.asarray(t), backend.asarray(t[:, None])
    want = _host(backend, fn.cross_entropy(xb, tb))
    layer = xpl.SoftmaxWithLoss()
    assert _host(backend, layer.forward(xb, tc)) == pytest.approx(want)
    dx = _host(backend, layer.backward())
    for f in (fn.cross_entropy, fn.cross_entropy.generic):
        assert _host(backend, f(xb, tc)) == pytest.approx(want)
    for f in (fn.softmax_cross_entropy, fn.softmax_cross_entropy.generic):
        loss, y = f(xb, tc)
        assert _host(backend, loss) == pytest.approx(want)
        for g in (fn.cross_entropy_backward, fn.cross_entropy_backward.generic):
            np.testing.assert_allclose(_host(backend, g(y, tc)), dx, rtol=1e-12, atol=1e-15)


def test_label_column_in_the_chain_gradient(backend, rng):
    net = TwoLayerNet(4, 5, C, weight_init_std=1.0, seed=0)
    x, t = _data(rng)
    f = Chain.from_network(net)
    params = dict(net.params)
    xb = backend.asarray(x)
    loss_c, grads_c, _ = f.loss_and_grads(params, {}, xb, backend.asarray(t[:, None]))
    loss_l, grads_l, _ = f.loss_and_grads(params, {}, xb, backend.asarray(t))
    assert _host(backend, loss_c) == pytest.approx(_host(backend, loss_l))
    for key in grads_l:
        np.testing.assert_allclose(_host(backend, grads_c[key]), _host(backend, grads_l[key]))


def test_one_class_column_is_one_hot_rows(backend):
    """With one class, an integer (N, 1) is one-hot rows (all ones): the loss is 0."""
    layer = xpl.SoftmaxWithLoss()
    x = backend.asarray(np.array([[2.0], [-1.0]]))
    assert _host(backend, layer.forward(x, backend.asarray(np.ones((2, 1), np.int64)))) == 0.0


def test_targets_of_another_shape_are_refused_with_the_rule(backend, rng):
    net = TwoLayerNet(4, 5, C, seed=0)
    x, t = _data(rng, n=6)
    wide = backend.asarray(np.stack([t, t], axis=1))
    rule = r"expected integer class labels of shape \(6,\) \(or a column \(6, 1\) of them\)"
    for f in (net.loss, net.accuracy, net.gradient):
        with pytest.raises(LayerInputError, match=rule):
            f(backend.asarray(x), wide)


def test_train_evaluate_gradcheck_and_split_take_label_columns(rng):
    x, t = _data(rng, n=30)
    tc = t[:, None]
    net = TwoLayerNet(4, 5, C, seed=0)
    assert evaluate(net, x, tc) == evaluate(net, x, t)
    errors = gradient_check(net, x[:4], tc[:4])
    assert max(errors.values()) < 1e-6
    history = train(
        TwoLayerNet(4, 5, C, seed=0),
        SGD(),
        (x, tc),
        (x, tc),
        epochs=1,
        batch_size=10,
        progress=False,
    )
    expected = train(
        TwoLayerNet(4, 5, C, seed=0),
        SGD(),
        (x, t),
        (x, t),
        epochs=1,
        batch_size=10,
        progress=False,
    )
    assert history.train_loss == pytest.approx(expected.train_loss)
    assert history.test_acc == expected.test_acc
    bad = tc.copy()
    bad[0, 0] = C
    with pytest.raises(LayerInputError, match=r"train: argument 'train_data': expected labels"):
        train(TwoLayerNet(4, 5, C, seed=0), SGD(), (x, bad), epochs=1, progress=False)
    (_, t_train), (_, t_test) = train_test_split(x, tc, test_size=0.5, stratify=True)
    (_, u_train), (_, u_test) = train_test_split(x, t, test_size=0.5, stratify=True)
    np.testing.assert_array_equal(t_train[:, 0], u_train)
    np.testing.assert_array_equal(t_test[:, 0], u_test)
