"""Gradient checks: small errors for every layer and network, large ones for a broken layer."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from tests import oracle
from xplayers.errors import LayerInputError
from xplayers.gradcheck import gradient_check, numerical_gradient, numerical_params, relative_error
from xplayers.network import MultiLayerNet, Sequential, TwoLayerNet

SMALL = 1e-6  # float64 errors of correct gradients stay far below this
LARGE = 1e-2  # a wrong formula scores near 1


class WrongWeightGradient(xpl.Affine):
    """An Affine whose dW is off by a factor, as a transposition or a missing 1/N would be."""

    def backward(self, dout: Any) -> Any:
        dx = super().backward(dout)
        self.dW = self.dW * 1.5
        return dx


class WrongInputGradient(xpl.Relu):
    """A Relu that lets the gradient through everywhere (forgets its mask)."""

    def backward(self, dout: Any) -> Any:
        return dout


def affine(
    backend: Any, rng: np.random.Generator, d: int, m: int, cls: type = xpl.Affine, **kw: Any
) -> Any:
    return cls(backend.asarray(rng.normal(size=(d, m))), backend.asarray(rng.normal(size=m)), **kw)


# --------------------------------------------------------------------------- numerical_gradient


def test_numerical_gradient_of_a_known_function(backend, rng):
    x = rng.normal(size=(3, 2))
    xb = backend.asarray(x)
    g = numerical_gradient(lambda z: float(np.sum(z**3)), xb)
    assert isinstance(g, np.ndarray)
    assert g.dtype == np.float64
    assert g.shape == (3, 2)
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(backend.to_numpy(xb), x)  # the argument is left as it was


def test_numerical_gradient_perturbs_float64_numpy_in_place_like_the_book(rng):
    W = rng.normal(size=(4, 3))
    before = W.copy()
    x = rng.normal(size=(2, 4))
    g = numerical_gradient(lambda _: float(np.sum((x @ W) ** 2)), W)  # the closure sees W move
    np.testing.assert_allclose(g, 2 * x.T @ (x @ before), rtol=1e-7)
    np.testing.assert_array_equal(W, before)  # restored bit for bit


def test_numerical_gradient_copies_float32_and_read_only_arrays(rng):
    x = rng.normal(size=5).astype(np.float32)
    seen = []
    g = numerical_gradient(lambda z: seen.append(z.dtype) or float(np.sum(np.sin(z))), x)
    assert set(seen) == {np.dtype(np.float64)}
    np.testing.assert_allclose(g, np.cos(x.astype(np.float64)), rtol=1e-8)
    ro = rng.normal(size=3)
    ro.setflags(write=False)
    np.testing.assert_allclose(numerical_gradient(lambda z: float(z @ z), ro), 2 * ro, rtol=1e-8)


def test_numerical_gradient_accepts_array_results(backend, xp, rng):
    x = rng.normal(size=4)
    g = numerical_gradient(lambda z: xp.sum(backend.asarray(z) ** 2), backend.asarray(x))
    np.testing.assert_allclose(g, 2 * x, rtol=1e-8)


@pytest.mark.parametrize("eps", [0, -1e-5, float("nan"), "1e-5", True])
def test_numerical_gradient_rejects_bad_steps(eps):
    with pytest.raises(
        LayerInputError,
        match="numerical_gradient: argument 'eps': expected a finite number > 0",
    ):
        numerical_gradient(lambda z: 0.0, np.zeros(2), eps=eps)


def test_numerical_gradient_needs_an_array():
    with pytest.raises(LayerInputError, match="argument 'x': expected an array"):
        numerical_gradient(lambda z: 0.0, [1.0, 2.0])


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize("shape", [(4, 5), (4, 1, 5)])
def test_gradient_check_affine(backend, rng, shape):
    layer = affine(backend, rng, 5, 3)
    errors = gradient_check(layer, backend.asarray(rng.normal(size=shape)))
    assert list(errors) == ["x", "W", "b"]
    assert max(errors.values()) < SMALL


def test_gradient_check_affine_without_input_gradient(backend, rng):
    layer = affine(backend, rng, 5, 3, input_grad=False)
    errors = gradient_check(layer, backend.asarray(rng.normal(size=(4, 5))))
    assert list(errors) == ["W", "b"]
    assert max(errors.values()) < SMALL


@pytest.mark.parametrize("cls", [xpl.Relu, xpl.Sigmoid])
def test_gradient_check_activations(backend, rng, cls):
    x = rng.normal(size=(4, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep ReLU away from its kink
    errors = gradient_check(cls(), backend.asarray(x))
    assert list(errors) == ["x"]
    assert errors["x"] < SMALL


@pytest.mark.parametrize("target", ["labels", "one_hot"])
def test_gradient_check_softmax_with_loss(backend, rng, target):
    labels = rng.integers(0, 4, 5)
    t = labels if target == "labels" else np.eye(4)[labels]
    errors = gradient_check(
        xpl.SoftmaxWithLoss(), backend.asarray(rng.normal(size=(5, 4))), backend.asarray(t)
    )
    assert list(errors) == ["x"]
    assert errors["x"] < SMALL


def test_gradient_check_float32_layer_is_judged_against_float64(backend, xp, rng):
    W = rng.normal(size=(5, 3)).astype(np.float32)
    layer = xpl.Affine(backend.asarray(W), backend.asarray(np.zeros(3, dtype=np.float32)))
    errors = gradient_check(layer, backend.asarray(rng.normal(size=(4, 5)).astype(np.float32)))
    assert max(errors.values()) < 1e-4  # float32 rounding, not a wrong formula
    assert layer.W.dtype == xp.float32


def test_gradient_check_finds_a_broken_layer(backend, rng):
    layer = affine(backend, rng, 5, 3, cls=WrongWeightGradient)
    errors = gradient_check(layer, backend.asarray(rng.normal(size=(4, 5))))
    assert errors["W"] > LARGE
    assert errors["x"] < SMALL
    assert errors["b"] < SMALL
    x = rng.normal(size=(4, 6))
    assert gradient_check(WrongInputGradient(), backend.asarray(x))["x"] > LARGE


# --------------------------------------------------------------------------- networks


NETWORKS = {
    "two_layer": lambda: TwoLayerNet(5, 6, 3, weight_init_std="he", seed=0),
    "two_layer_book_init": lambda: TwoLayerNet(5, 6, 3, seed=1),
    "multi_relu": lambda: MultiLayerNet(5, [6, 4], 3, seed=2),
    "multi_sigmoid": lambda: MultiLayerNet(
        5, [6, 4], 3, activation="sigmoid", weight_init_std="xavier", seed=3
    ),
}


@pytest.mark.parametrize("target", ["labels", "one_hot"])
@pytest.mark.parametrize("kind", list(NETWORKS))
def test_gradient_check_networks(backend, rng, kind, target):
    net = NETWORKS[kind]()
    labels = rng.integers(0, 3, 6)
    t = labels if target == "labels" else np.eye(3)[labels]
    errors = gradient_check(net, backend.asarray(rng.normal(size=(6, 5))), backend.asarray(t))
    assert list(errors) == list(net.params)
    assert max(errors.values()) < SMALL, errors


def test_gradient_check_sequential_and_its_broken_layer(backend, rng):
    def build(cls: type) -> Sequential:
        r = np.random.default_rng(5)
        return Sequential(
            {
                "Affine1": affine(backend, r, 5, 4, input_grad=False),
                "Sigmoid1": xpl.Sigmoid(),
                "Affine2": affine(backend, r, 4, 3, cls=cls),
            }
        )

    x, t = backend.asarray(rng.normal(size=(6, 5))), backend.asarray(rng.integers(0, 3, 6))
    assert max(gradient_check(build(xpl.Affine), x, t).values()) < SMALL
    errors = gradient_check(build(WrongWeightGradient), x, t)
    assert errors["W2"] > LARGE
    assert max(errors[k] for k in ("W1", "b1", "b2")) < SMALL


def test_gradient_check_network_with_a_broken_activation(backend, rng):
    r = np.random.default_rng(6)
    net = Sequential(
        [
            ("Affine1", affine(backend, r, 5, 8, input_grad=False)),
            ("Relu1", WrongInputGradient()),
            ("Affine2", affine(backend, r, 8, 3)),
        ]
    )
    errors = gradient_check(
        net, backend.asarray(rng.normal(size=(6, 5))), backend.asarray(rng.integers(0, 3, 6))
    )
    assert errors["W1"] > LARGE  # the wrong dx flows into the first layer
    assert errors["W2"] < SMALL


def test_gradient_check_float32_network(backend, xp, rng):
    net = TwoLayerNet(5, 6, 3, weight_init_std="he", seed=0, dtype="float32")
    x = backend.asarray(rng.normal(size=(6, 5)).astype(np.float32))
    errors = gradient_check(net, x, backend.asarray(rng.integers(0, 3, 6)))
    assert max(errors.values()) < 1e-3
    assert all(v.dtype == xp.float32 for v in net.params.values())


def test_gradient_check_leaves_the_model_alone(backend, rng):
    net = NETWORKS["multi_relu"]()
    arrays = dict(net.params.items())
    values = {k: backend.to_numpy(v).copy() for k, v in arrays.items()}
    x, t = backend.asarray(rng.normal(size=(6, 5))), backend.asarray(rng.integers(0, 3, 6))
    gradient_check(net, x, t, params=["W2"])
    for key, value in net.params.items():
        assert value is arrays[key]
        np.testing.assert_array_equal(backend.to_numpy(value), values[key])


def test_gradient_check_selects_parameters(backend, rng):
    net = NETWORKS["two_layer"]()
    x, t = backend.asarray(rng.normal(size=(6, 5))), backend.asarray(rng.integers(0, 3, 6))
    assert list(gradient_check(net, x, t, params=["b2", "W1"])) == ["b2", "W1"]
    assert list(gradient_check(net, x, t, params="b1")) == ["b1"]
    layer = affine(backend, rng, 5, 3)
    assert list(gradient_check(layer, backend.asarray(rng.normal(size=(2, 5))), params=["b"])) == [
        "b"
    ]


def test_numerical_params_matches_oracle(backend, rng):
    net = NETWORKS["two_layer"]()
    x, t = rng.normal(size=(6, 5)), rng.integers(0, 3, 6)
    num = numerical_params(net, backend.asarray(x), backend.asarray(t))
    p = {k: backend.to_numpy(v).astype(np.float64) for k, v in net.params.items()}

    def loss() -> float:
        return oracle.cross_entropy(oracle.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"], t)

    for key, value in p.items():
        np.testing.assert_allclose(
            num[key], oracle.numerical_gradient(loss, value), rtol=1e-6, atol=1e-9
        )


def test_gradient_check_argument_errors(backend, rng):
    net = NETWORKS["two_layer"]()
    x, t = backend.asarray(rng.normal(size=(6, 5))), backend.asarray(rng.integers(0, 3, 6))
    with pytest.raises(LayerInputError, match="gradient_check: argument 't': expected the targets"):
        gradient_check(net, x)
    with pytest.raises(
        LayerInputError,
        match=r"argument 'params': expected names among \['W1', 'b1', 'W2', 'b2'\]; got \['W3'\]",
    ):
        gradient_check(net, x, t, params=["W3"])
    with pytest.raises(LayerInputError, match="argument 'model': expected a network or a layer"):
        gradient_check(object(), x, t)
    with pytest.raises(LayerInputError, match="argument 'eps'"):
        gradient_check(net, x, t, eps=0.0)
    with pytest.raises(LayerInputError, match="argument 'tiny'"):
        gradient_check(net, x, t, tiny=-1.0)
    with pytest.raises(LayerInputError, match="numerical_params: argument 'net'"):
        numerical_params(xpl.Relu(), x, t)


def test_relative_error():
    a = np.array([1.0, -2.0, 0.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a, np.array([1.0, -2.0, 1e-9])) == pytest.approx(1e-9 / 1e-4)
    assert relative_error(np.array([1.0]), np.array([-1.0])) == 1.0
    assert relative_error(a, a[:2]) == math.inf
    assert relative_error(np.array([np.nan]), np.array([1.0])) == math.inf
    assert relative_error(np.zeros(0), np.zeros(0)) == 0.0
