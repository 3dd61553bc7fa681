"""Optimizers: descent on a quadratic, the book's formulas in float64, dtypes, in place or not."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.errors import LayerInputError, LayerStateError
from xplayers.network import MultiLayerNet
from xplayers.optim import (
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    Optimizer,
    RMSprop,
    get_optimizer,
)

# --------------------------------------------------------------------------- the book's code


class BookSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params:
            params[key] -= self.lr * grads[key]


class BookMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookNesterov:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr, self.momentum, self.v = lr, momentum, None

    def update(self, params, grads):
        if self.v is None:
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class BookAdaGrad:
    def __init__(self, lr=0.01):
        self.lr, self.h = lr, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr, self.decay_rate, self.h = lr, decay_rate, None

    def update(self, params, grads):
        if self.h is None:
            self.h = {key: np.zeros_like(val) for key, val in params.items()}
        for key in params:
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookAdam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2 = lr, beta1, beta2
        self.iter, self.m, self.v = 0, None, None

    def update(self, params, grads):
        if self.m is None:
            self.m = {key: np.zeros_like(val) for key, val in params.items()}
            self.v = {key: np.zeros_like(val) for key, val in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params:
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


BOOK = {
    "sgd": BookSGD,
    "momentum": BookMomentum,
    "nesterov": BookNesterov,
    "adagrad": BookAdaGrad,
    "rmsprop": BookRMSprop,
    "adam": BookAdam,
}
# A learning rate per optimizer that makes 60 steps on the quadratic below converge well.
LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.5, "rmsprop": 0.05, "adam": 0.1}

A = np.array([[1.0, 2.0, 0.5], [3.0, 1.0, 1.5]])  # curvatures
C = np.array([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]])  # the minimum


def quadratic_grad(w: Any, a: Any, c: Any) -> Any:
    """Gradient of ``sum(a * (w - c)**2) / 2``."""
    return a * (w - c)


# --------------------------------------------------------------------------- descent


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_descends_a_quadratic(backend, name, dtype):
    w0 = np.zeros((2, 3), dtype=dtype)
    a, c = backend.asarray(A.astype(dtype)), backend.asarray(C.astype(dtype))
    bias0 = np.ones(3, dtype=dtype)
    params = {"W": backend.asarray(w0), "b": backend.asarray(bias0)}
    original = dict(params)
    opt = get_optimizer(name, lr=LR[name])
    start = np.abs(w0 - C).sum()
    for _ in range(60):
        grads = {"W": quadratic_grad(params["W"], a, c), "b": params["b"] * 1.0}
        opt.update(params, grads)
    w = backend.to_numpy(params["W"])
    assert params["W"].dtype == backend.dtype(dtype)
    assert params["b"].dtype == backend.dtype(dtype)
    assert xpl.namespace(params["W"]) is xpl.namespace(original["W"])
    assert np.abs(w - C).sum() < 0.25 * start
    assert np.abs(backend.to_numpy(params["b"])).max() < 1.0  # b -> 0
    in_place = params["W"] is original["W"]
    if backend.readonly or backend.name == "jax":
        assert not in_place
        np.testing.assert_array_equal(backend.to_numpy(original["W"]), w0)  # nothing written
    elif backend.name in ("numpy", "torch", "cupy", "array_api_strict"):
        assert in_place


def test_nesterov_uses_the_old_velocity_as_the_book_does(backend):
    """The book's ``common/optimizer.py`` (oreilly-japan/deep-learning-from-scratch,
    commit 07b1161) moves the parameter with the *old* velocity first, then updates
    ``v``: one step from p=1, g=0.5, lr=0.01, m=0.9 (v=0) gives
    1 - 1.9 * 0.005 = 0.9905; the older order (new velocity first) gave 0.98645."""
    params = {"w": backend.asarray(np.array([1.0]))}
    opt = Nesterov(lr=0.01, momentum=0.9)
    opt.update(params, {"w": backend.asarray(np.array([0.5]))})
    np.testing.assert_allclose(backend.to_numpy(params["w"]), [0.9905], rtol=1e-14)
    v = -0.005  # 0.9 * 0 - 0.01 * 0.5
    np.testing.assert_allclose(backend.to_numpy(opt.v["w"]), [v], rtol=1e-14)
    opt.update(params, {"w": backend.asarray(np.array([0.5]))})
    np.testing.assert_allclose(
        backend.to_numpy(params["w"]), [0.9905 + 0.81 * v - 1.9 * 0.005], rtol=1e-14
    )
    np.testing.assert_allclose(backend.to_numpy(opt.v["w"]), [0.9 * v - 0.005], rtol=1e-14)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_the_book_in_float64(backend, xp, rng, name):
    kwargs = {"lr": 0.05}
    if name in ("momentum", "nesterov"):
        kwargs["momentum"] = 0.8
    elif name == "rmsprop":
        kwargs["decay_rate"] = 0.9
    elif name == "adam":
        kwargs.update(beta1=0.8, beta2=0.95)
    start = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    ref = {k: v.copy() for k, v in start.items()}
    params = {k: backend.asarray(v) for k, v in start.items()}
    mine, book = get_optimizer(name, **kwargs), BOOK[name](**kwargs)
    for _ in range(5):
        g = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
        book.update(ref, g)
        mine.update(params, {k: backend.asarray(v) for k, v in g.items()})
    for key, value in ref.items():
        assert params[key].dtype == xp.float64
        np.testing.assert_allclose(backend.to_numpy(params[key]), value, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float32_parameters_stay_float32_and_close_to_float64(backend, xp, rng, name):
    start = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(4)]
    ref = {"W": start.copy()}
    book = BOOK[name](lr=0.05)
    params = {"W": backend.asarray(start.astype(np.float32))}
    opt = get_optimizer(name, lr=0.05)
    for g in grads:
        book.update(ref, {"W": g})
        opt.update(params, {"W": backend.asarray(g.astype(np.float32))})
        assert params["W"].dtype == xp.float32
        for state in vars(opt).values():
            if isinstance(state, dict):
                assert all(s.dtype == xp.float32 for s in state.values())
    np.testing.assert_allclose(backend.to_numpy(params["W"]), ref["W"], rtol=1e-5, atol=1e-6)


def test_float64_gradient_does_not_promote_float32_parameter(backend, xp, rng):
    params = {"W": backend.asarray(np.ones((2, 2), dtype=np.float32))}
    Adam(lr=0.1).update(params, {"W": backend.asarray(rng.normal(size=(2, 2)))})
    assert params["W"].dtype == xp.float32


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_trains_a_network_through_its_live_params(backend, rng, name):
    net = MultiLayerNet(4, [6], 3, seed=0)
    x = rng.normal(size=(24, 4))
    t = np.argmax(x[:, :3], axis=1)
    xb, tb = backend.asarray(x), backend.asarray(t)
    opt = get_optimizer(name, lr=LR[name] / 2)
    first = float(backend.to_numpy(net.train_step(xb, tb, opt)))
    for _ in range(15):
        net.train_step(xb, tb, opt)
    assert float(backend.to_numpy(net.loss(xb, tb))) < 0.8 * first
    assert net.params["W1"] is net.layers["Affine1"].W


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SGD(lr=0), r"SGD: argument 'lr': expected a finite number > 0; got int 0"),
        (lambda: SGD(lr=-0.1), "argument 'lr': expected a finite number > 0"),
        (lambda: SGD(lr=float("inf")), "argument 'lr'"),
        (lambda: SGD(lr=float("nan")), "argument 'lr'"),
        (lambda: SGD(lr=True), "argument 'lr'"),
        (lambda: SGD(lr="0.1"), "argument 'lr'"),
        (
            lambda: Momentum(momentum=1.0),
            r"Momentum: argument 'momentum': expected a number in \[0, 1\)",
        ),
        (
            lambda: Nesterov(momentum=-0.1),
            r"Nesterov: argument 'momentum': expected a number in \[0, 1\)",
        ),
        (lambda: AdaGrad(lr=0.0), "AdaGrad: argument 'lr'"),
        (
            lambda: RMSprop(decay_rate=1.5),
            r"RMSprop: argument 'decay_rate': expected a number in \[0, 1\)",
        ),
        (lambda: Adam(beta1=1.0), "Adam: argument 'beta1'"),
        (lambda: Adam(beta2=-1e-3), "Adam: argument 'beta2'"),
        (
            lambda: get_optimizer("adamw"),
            r"get_optimizer: argument 'name': expected one of \['sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam'\]; got 'adamw'",
        ),
        (
            lambda: get_optimizer("sgd", momentum=0.9),
            r"argument 'kwargs': expected hyper-parameters of SGD: \['lr'\]; got \['momentum'\]",
        ),
        (lambda: get_optimizer("adam", lr=-1.0), "Adam: argument 'lr'"),
    ],
)
def test_invalid_hyper_parameters(make, message):
    with pytest.raises(LayerInputError, match=message):
        make()


def test_update_checks_gradients_and_changes_nothing_on_error(backend):
    params = {"W": backend.asarray(np.ones((2, 2))), "b": backend.asarray(np.ones(2))}
    keep = dict(params)
    good = backend.asarray(np.ones((2, 2)))
    opt = Adam()
    with pytest.raises(
        LayerInputError, match=r"Adam\.update: argument 'grads': expected a gradient for 'b'"
    ):
        opt.update(params, {"W": good})
    with pytest.raises(LayerStateError, match="the gradient of 'b' is None; run the backward pass"):
        opt.update(params, {"W": good, "b": None})
    with pytest.raises(LayerInputError, match=r"argument 'grads\['b'\]': expected shape \(2,\)"):
        opt.update(params, {"W": good, "b": backend.asarray(np.ones(3))})
    with pytest.raises(LayerInputError, match=r"argument 'grads\['b'\]': expected an array"):
        opt.update(params, {"W": good, "b": [1.0, 1.0]})
    if backend.name != "numpy":
        with pytest.raises(LayerInputError, match="same backend"):
            opt.update(params, {"W": good, "b": np.ones(2)})
    assert opt.iter == 0
    assert opt.m == {}
    for key, value in params.items():
        assert value is keep[key]
        np.testing.assert_array_equal(backend.to_numpy(value), 1.0)


def test_state_belongs_to_one_set_of_parameters(backend):
    opt = Momentum()
    opt.update({"W": backend.asarray(np.ones((2, 2)))}, {"W": backend.asarray(np.ones((2, 2)))})
    with pytest.raises(LayerInputError, match="Use a new optimizer for each network"):
        opt.update({"W": backend.asarray(np.ones((3, 2)))}, {"W": backend.asarray(np.ones((3, 2)))})


def test_get_optimizer_and_defaults():
    assert type(get_optimizer("SGD")) is SGD
    assert {name: type(get_optimizer(name)).__name__ for name in OPTIMIZERS} == {
        "sgd": "SGD",
        "momentum": "Momentum",
        "nesterov": "Nesterov",
        "adagrad": "AdaGrad",
        "rmsprop": "RMSprop",
        "adam": "Adam",
    }
    assert repr(get_optimizer("momentum", lr=0.5)) == "Momentum(lr=0.5, momentum=0.9)"
    assert repr(SGD()) == "SGD(lr=0.01)"
    assert repr(Nesterov()) == "Nesterov(lr=0.01, momentum=0.9)"
    assert repr(AdaGrad()) == "AdaGrad(lr=0.01)"
    assert repr(RMSprop()) == "RMSprop(lr=0.01, decay_rate=0.99)"
    assert repr(Adam()) == "Adam(lr=0.001, beta1=0.9, beta2=0.999)"
    assert all(issubclass(cls, Optimizer) for cls in OPTIMIZERS.values())
    assert isinstance(get_optimizer("rmsprop", lr=1, decay_rate=0).lr, float)


# --------------------------------------------------------------------------- state for checkpoints


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_round_trip_continues_bit_for_bit(backend, rng, name):
    start = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    grads = [{k: rng.normal(size=v.shape) for k, v in start.items()} for _ in range(4)]
    a = {k: backend.asarray(v) for k, v in start.items()}
    opt_a = get_optimizer(name)
    for g in grads:
        opt_a.update(a, {k: backend.asarray(v) for k, v in g.items()})
    b = {k: backend.asarray(v) for k, v in start.items()}
    opt_b = get_optimizer(name)
    for g in grads[:2]:
        opt_b.update(b, {k: backend.asarray(v) for k, v in g.items()})
    info, arrays = opt_b.state()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    opt_c = get_optimizer(name)
    opt_c.set_state(json.loads(json.dumps(info)), arrays, b)
    for g in grads[2:]:
        opt_c.update(b, {k: backend.asarray(v) for k, v in g.items()})
    for k in start:
        assert backend.to_numpy(a[k]).tobytes() == backend.to_numpy(b[k]).tobytes()


def test_set_state_refuses_another_optimizer_or_parameters():
    params = {"W": np.ones((2, 3))}
    opt = Adam(lr=0.01)
    opt.update(params, {"W": np.ones((2, 3))})
    info, arrays = opt.state()
    with pytest.raises(LayerInputError, match=r"expected the state of Momentum\(lr=0\.01"):
        Momentum(lr=0.01).set_state(info, arrays, params)
    with pytest.raises(LayerInputError, match="Resume with the optimizer"):
        Adam(lr=0.02).set_state(info, arrays, params)
    fresh = Adam(lr=0.01)
    with pytest.raises(LayerInputError, match=r"arrays\['m.W'\]"):
        fresh.set_state(info, arrays, {"W": np.ones((3, 2))})
    with pytest.raises(LayerInputError, match=r"'x\.W'"):
        fresh.set_state(info, {**arrays, "x.W": arrays["m.W"]}, params)
    assert fresh.iter == 0  # nothing changed
    assert fresh.m == {}


def test_numpy_sgd_kernel_updates_writable_parameters_only():
    from xplayers.backend import kernels_numpy as k

    rng = np.random.default_rng(4)
    p0, g = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    p = p0.copy()
    assert k.subtract_scaled_(p, g, 0.1) is True
    np.testing.assert_array_equal(p, p0 - 0.1 * g)
    assert k.subtract_scaled_(p, g.astype(np.float32), 0.1) is False  # the optimizer casts
    assert k.subtract_scaled_(p, g[:2], 0.1) is False
    frozen = p0.copy()
    frozen.setflags(write=False)
    assert k.subtract_scaled_(frozen, g, 0.1) is False  # the optimizer rebinds
    np.testing.assert_array_equal(frozen, p0)
