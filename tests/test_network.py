"""Networks: gradients against a float64 oracle, live parameters, seeds, configs, training."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from tests import oracle
from xplayers.backend import backend_name
from xplayers.errors import LayerInputError, LayerStateError
from xplayers.gradcheck import host_copy, numerical_gradient
from xplayers.network import (
    MultiLayerNet,
    Parameters,
    Sequential,
    TwoLayerNet,
    from_config,
)
from xplayers.network import config as network_config
from xplayers.optim import SGD

ACT = {"relu": oracle.relu, "sigmoid": oracle.sigmoid}


def oracle_loss(params: dict[str, np.ndarray], x: np.ndarray, t: np.ndarray, act: str) -> float:
    """The network's loss written independently in float64 NumPy."""
    n = len(params) // 2
    h = x
    for k in range(1, n + 1):
        h = h @ params[f"W{k}"] + params[f"b{k}"]
        if k < n:
            h = ACT[act](h)
    return oracle.cross_entropy(h, t)


def host_params(net: Any) -> dict[str, np.ndarray]:
    return {k: np.array(xpl.to_numpy(v), dtype=np.float64) for k, v in net.params.items()}


def one_hot(t: np.ndarray, c: int) -> np.ndarray:
    return np.eye(c)[t]


def data(rng: np.random.Generator, n: int = 6, d: int = 5, c: int = 3) -> tuple[Any, Any]:
    return rng.normal(size=(n, d)), rng.integers(0, c, n)


def learnable(rng: np.random.Generator, n: int = 30) -> tuple[Any, Any]:
    """Inputs (n, 5) whose label is the index of the largest of their first three values."""
    x = rng.normal(size=(n, 5))
    return x, np.argmax(x[:, :3], axis=1)


NETS = {
    "two_layer": lambda dtype: TwoLayerNet(5, 4, 3, weight_init_std=0.5, seed=1, dtype=dtype),
    "multi_relu": lambda dtype: MultiLayerNet(5, [4, 3], 3, seed=2, dtype=dtype),
    "multi_sigmoid": lambda dtype: MultiLayerNet(
        5, [4, 3], 3, activation="sigmoid", weight_init_std="xavier", seed=3, dtype=dtype
    ),
}
ACTIVATION = {"two_layer": "relu", "multi_relu": "relu", "multi_sigmoid": "sigmoid"}


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("target", ["labels", "one_hot"])
@pytest.mark.parametrize("kind", list(NETS))
def test_gradient_matches_central_differences(backend, rng, kind, target):
    net = NETS[kind]("float64")
    x, labels = data(rng)
    t = labels if target == "labels" else one_hot(labels, 3)
    grads = net.gradient(backend.asarray(x), backend.asarray(t))
    params = host_params(net)
    assert (
        list(grads)
        == list(params)
        == [k for i in (1, 2, 3)[: len(params) // 2] for k in (f"W{i}", f"b{i}")]
    )
    for key, value in params.items():
        num = oracle.numerical_gradient(lambda: oracle_loss(params, x, t, ACTIVATION[kind]), value)
        got = backend.to_numpy(grads[key])
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(NETS))
def test_predict_and_loss_match_oracle(backend, rng, kind, dtype):
    net = NETS[kind](dtype)
    x, t = data(rng)
    params = host_params(net)
    y = net.predict(backend.asarray(x.astype(dtype)))
    assert y.dtype == backend.dtype(dtype)
    loss = net.loss(backend.asarray(x.astype(dtype)), backend.asarray(t))
    assert loss.shape == ()
    tol = oracle.tolerance(dtype)
    np.testing.assert_allclose(
        float(backend.to_numpy(loss)), oracle_loss(params, x, t, ACTIVATION[kind]), **tol
    )


def test_first_affine_skips_input_gradient(backend, rng):
    net = MultiLayerNet(5, [4, 3], 3, seed=0)
    affines = [layer for name, layer in net.layers.items() if name.startswith("Affine")]
    assert [a.input_grad for a in affines] == [False, True, True]
    assert net.layers["Affine1"].input_grad is False
    x, t = data(rng)
    net.gradient(backend.asarray(x), backend.asarray(t))
    first = net.layers["Affine1"]
    assert first.backward(backend.asarray(rng.normal(size=(6, 4)))) is None
    assert first.dW is not None
    two = TwoLayerNet(5, 4, 3, seed=0)
    assert two.layers["Affine1"].input_grad is False
    assert two.layers["Affine2"].input_grad is True


def test_float32_network_stays_float32(backend, xp, rng):
    net = TwoLayerNet(5, 4, 3, seed=0, dtype="float32")
    x, t = data(rng)
    grads = net.gradient(backend.asarray(x), backend.asarray(t))  # float64 input is cast
    for key in net.params:
        assert net.params[key].dtype == xp.float32, key
        assert grads[key].dtype == xp.float32, key
    ref = TwoLayerNet(5, 4, 3, seed=0, dtype="float64")
    ref_grads = ref.gradient(backend.asarray(x), backend.asarray(t))
    for key in grads:
        np.testing.assert_allclose(
            backend.to_numpy(grads[key]), backend.to_numpy(ref_grads[key]), rtol=1e-3, atol=1e-5
        )


def test_numerical_gradient_method_agrees_with_backprop(backend, xp, rng):
    net = TwoLayerNet(5, 4, 3, weight_init_std=0.5, seed=4, dtype="float32")
    x, t = data(rng)
    num = net.numerical_gradient(backend.asarray(x), backend.asarray(t))
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in num.values())
    ref = oracle_loss(host_params(net), x, t, "relu")
    host = host_params(net)
    expected = oracle.numerical_gradient(lambda: oracle_loss(host, x, t, "relu"), host["W2"])
    np.testing.assert_allclose(num["W2"], expected, rtol=1e-6, atol=1e-9)
    assert ref == pytest.approx(
        float(backend.to_numpy(net.loss(backend.asarray(x), backend.asarray(t)))), rel=1e-6
    )
    assert net.params["W2"].dtype == xp.float32  # the network is not touched


# --------------------------------------------------------------------------- live params


def test_params_is_a_live_mapping(backend, rng):
    net = TwoLayerNet(5, 4, 3, seed=0)
    params = net.params
    assert isinstance(params, Parameters)
    assert params is net.params
    assert list(params) == ["W1", "b1", "W2", "b2"]
    assert len(params) == 4
    assert params["W1"] is net.layers["Affine1"].W
    assert params["b2"] is net.layers["Affine2"].b
    new = backend.asarray(rng.normal(size=(4, 3)))
    params["W2"] = new
    assert net.layers["Affine2"].W is new
    assert net.params["W2"] is new
    x = rng.normal(size=(2, 5))
    h = oracle.relu(x @ backend.to_numpy(params["W1"]))
    np.testing.assert_allclose(
        backend.to_numpy(net.predict(backend.asarray(x))), h @ backend.to_numpy(new), rtol=1e-12
    )


def test_params_rejects_unfit_values(backend):
    net = TwoLayerNet(5, 4, 3, seed=0)
    with pytest.raises(
        LayerInputError, match=r"TwoLayerNet\.params: argument 'W1': expected an array like"
    ):
        net.params["W1"] = backend.asarray(np.zeros((4, 5)))
    with pytest.raises(LayerInputError, match=r"argument 'b1': expected an array like"):
        net.params["b1"] = backend.asarray(np.zeros(4, dtype=np.float32))
    with pytest.raises(LayerInputError, match=r"argument 'key': expected one of \['W1'"):
        net.params["W9"] = backend.asarray(np.zeros(3))
    with pytest.raises(LayerInputError, match="cannot delete 'W1'"):
        del net.params["W1"]
    with pytest.raises(KeyError):
        net.params["W9"]
    with pytest.raises(LayerInputError, match="expected an array"):
        net.params["b1"] = [0.0, 0.0, 0.0, 0.0]
    if backend.name != "numpy":
        with pytest.raises(LayerInputError, match="same backend"):
            net.params["b1"] = np.zeros(4)


def test_book_style_in_place_sgd_trains_on_numpy(rng):
    net = TwoLayerNet(5, 8, 3, weight_init_std=0.3, seed=0)
    x, t = learnable(rng)
    arrays = {k: net.params[k] for k in net.params}
    first = float(net.loss(x, t))
    for _ in range(30):
        grads = net.gradient(x, t)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= 0.5 * grads[key]
    assert float(net.loss(x, t)) < 0.7 * first
    for key, array in arrays.items():  # updated in place: the layers hold the same arrays
        assert net.params[key] is array


def test_rebinding_updates_train(backend, rng):
    net = TwoLayerNet(5, 8, 3, weight_init_std=0.3, seed=0)
    xh, th = learnable(rng)
    x, t = backend.asarray(xh), backend.asarray(th)
    first = float(backend.to_numpy(net.loss(x, t)))
    for _ in range(30):
        grads = net.gradient(x, t)
        for key in net.params:
            net.params[key] = net.params[key] - 0.5 * grads[key]
    assert float(backend.to_numpy(net.loss(x, t))) < 0.7 * first


# --------------------------------------------------------------------------- seeds


@pytest.mark.backends("torch")
def test_same_seed_gives_identical_params_on_every_backend():
    pytest.importorskip("torch")
    nets = {}
    for name in ("numpy", "array_api_strict", "torch"):
        with xpl.use_backend(name):
            nets[name] = MultiLayerNet(6, [5, 4], 3, seed=7, dtype="float32")
    ref = {k: xpl.to_numpy(v) for k, v in nets["numpy"].params.items()}
    for name, net in nets.items():
        assert backend_name(net.params["W1"]) == name
        for key, value in net.params.items():
            np.testing.assert_array_equal(xpl.to_numpy(value), ref[key], err_msg=f"{name} {key}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("weight_init_std", "scale"),
    [
        ("relu", lambda n: np.sqrt(2.0 / n)),
        ("He", lambda n: np.sqrt(2.0 / n)),
        ("sigmoid", lambda n: np.sqrt(1.0 / n)),
        ("xavier", lambda n: np.sqrt(1.0 / n)),
        (0.05, lambda n: 0.05),
    ],
)
def test_initial_weights_follow_the_book(backend, xp, dtype, weight_init_std, scale):
    net = MultiLayerNet(6, [5, 4], 3, weight_init_std=weight_init_std, seed=11, dtype=dtype)
    draw = np.random.default_rng(11)
    sizes = [6, 5, 4, 3]
    for k in range(1, 4):
        W = (scale(sizes[k - 1]) * draw.standard_normal((sizes[k - 1], sizes[k]))).astype(dtype)
        got = net.params[f"W{k}"]
        assert xpl.namespace(got) is xp
        assert got.dtype == backend.dtype(dtype)
        np.testing.assert_array_equal(backend.to_numpy(got), W)
        np.testing.assert_array_equal(
            backend.to_numpy(net.params[f"b{k}"]), np.zeros(sizes[k], dtype)
        )


def test_two_layer_net_init_matches_book_formula(backend):
    net = TwoLayerNet(6, 5, 3, weight_init_std=0.01, seed=3)
    draw = np.random.default_rng(3)
    W1 = 0.01 * draw.standard_normal((6, 5))
    W2 = 0.01 * draw.standard_normal((5, 3))
    np.testing.assert_array_equal(backend.to_numpy(net.params["W1"]), W1)
    np.testing.assert_array_equal(backend.to_numpy(net.params["W2"]), W2)


def test_seeds_differ_and_none_is_fresh():
    a, b = TwoLayerNet(4, 3, 2, seed=0), TwoLayerNet(4, 3, 2, seed=1)
    assert not np.array_equal(a.params["W1"], b.params["W1"])
    c, d = TwoLayerNet(4, 3, 2), TwoLayerNet(4, 3, 2)
    assert not np.array_equal(c.params["W1"], d.params["W1"])


# --------------------------------------------------------------------------- accuracy


def test_accuracy_with_labels_and_one_hot(backend, rng):
    net = TwoLayerNet(5, 6, 3, weight_init_std=1.0, seed=0)
    x, t = data(rng, n=40)
    pred = np.argmax(backend.to_numpy(net.predict(backend.asarray(x))), axis=1)
    expected = float(np.mean(pred == t))
    assert 0.0 < expected < 1.0  # a meaningful mix of right and wrong answers
    acc = net.accuracy(backend.asarray(x), backend.asarray(t))
    assert type(acc) is float
    assert acc == pytest.approx(expected)
    assert net.accuracy(backend.asarray(x), backend.asarray(one_hot(t, 3))) == pytest.approx(
        expected
    )
    assert net.accuracy(backend.asarray(x), backend.asarray(t.astype(np.int32))) == pytest.approx(
        expected
    )
    assert net.accuracy(backend.asarray(x), backend.asarray(pred)) == 1.0


def test_accuracy_rejects_bad_targets(backend, rng):
    net = TwoLayerNet(5, 6, 3, seed=0)
    x, t = data(rng)
    with pytest.raises(
        LayerInputError,
        match=r"TwoLayerNet\.accuracy: argument 't': expected integer class labels of shape \(6,\)",
    ):
        net.accuracy(backend.asarray(x), backend.asarray(t[:4]))
    with pytest.raises(LayerInputError, match="argument 't'"):
        net.accuracy(backend.asarray(x), backend.asarray(t.astype(np.float64)))
    with pytest.raises(LayerInputError, match="argument 't'"):
        net.accuracy(backend.asarray(x), [0, 1, 2, 0, 1, 2])
    with pytest.raises(LayerInputError, match="expected a non-empty batch"):
        net.accuracy(
            backend.asarray(np.zeros((0, 5))), backend.asarray(np.zeros(0, dtype=np.int64))
        )


# --------------------------------------------------------------------------- train_step


def test_train_step_returns_loss_and_trains(backend, xp, rng):
    net = MultiLayerNet(5, [8], 3, seed=0, dtype="float32")
    xh, th = learnable(rng)
    x, t = backend.asarray(xh.astype(np.float32)), backend.asarray(th)
    before = float(backend.to_numpy(net.loss(x, t)))
    W1 = backend.to_numpy(net.params["W1"]).copy()
    opt = SGD(lr=0.3)
    loss = net.train_step(x, t, opt)
    assert loss.shape == ()
    assert loss.dtype == xp.float32
    assert float(backend.to_numpy(loss)) == pytest.approx(before, rel=1e-6)
    assert not np.array_equal(backend.to_numpy(net.params["W1"]), W1)
    for _ in range(40):
        loss = net.train_step(x, t, opt)  # not read back: lazy backends stay lazy
    assert float(backend.to_numpy(loss)) < 0.7 * before
    assert all(v.dtype == xp.float32 for v in net.params.values())


def test_train_step_accepts_any_update_object(rng):
    class BookSGD:
        def __init__(self, lr: float = 0.01) -> None:
            self.lr = lr

        def update(self, params, grads):
            for key in params:
                params[key] -= self.lr * grads[key]

    net = TwoLayerNet(5, 4, 3, seed=0)
    x, t = data(rng)
    before = net.params["W2"].copy()
    net.train_step(x, t, BookSGD(0.1))
    assert not np.array_equal(net.params["W2"], before)
    with pytest.raises(
        LayerInputError, match=r"train_step: argument 'optimizer': expected an object with update"
    ):
        net.train_step(x, t, "sgd")


# --------------------------------------------------------------------------- Sequential


def test_sequential_numbers_parameters_like_the_book(backend, rng):
    W1, b1 = backend.asarray(rng.normal(size=(5, 4))), backend.asarray(np.zeros(4))
    W2, b2 = backend.asarray(rng.normal(size=(4, 3))), backend.asarray(np.zeros(3))
    net = Sequential(
        [
            ("Affine1", xpl.Affine(W1, b1, input_grad=False)),
            ("Sigmoid1", xpl.Sigmoid()),
            ("Affine2", xpl.Affine(W2, b2)),
        ]
    )
    assert list(net.layers) == ["Affine1", "Sigmoid1", "Affine2"]
    assert isinstance(net.last_layer, xpl.SoftmaxWithLoss)
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    assert net.params["W2"] is W2
    assert all(v is None for v in net.grads.values())
    x, t = data(rng)
    grads = net.gradient(backend.asarray(x), backend.asarray(t))
    params = host_params(net)
    num = oracle.numerical_gradient(lambda: oracle_loss(params, x, t, "sigmoid"), params["W1"])
    np.testing.assert_allclose(backend.to_numpy(grads["W1"]), num, rtol=1e-6, atol=1e-9)
    with pytest.raises(TypeError):
        net.layers["Relu9"] = xpl.Relu()  # the structure is fixed


def test_sequential_rejects_bad_layers(backend):
    affine = xpl.Affine(backend.asarray(np.ones((2, 2))), backend.asarray(np.zeros(2)))
    with pytest.raises(LayerInputError, match="expected at least one layer"):
        Sequential({})
    with pytest.raises(LayerInputError, match="expected unique layer names"):
        Sequential([("A", affine), ("A", xpl.Relu())])
    with pytest.raises(
        LayerInputError,
        match=r"argument 'layers\['x'\]': expected a layer with forward and backward",
    ):
        Sequential({"x": 3})
    with pytest.raises(LayerInputError, match="argument 'last_layer'"):
        Sequential({"A": affine}, last_layer=object())


def test_input_grad_false_in_the_middle_is_reported(backend, rng):
    net = Sequential(
        {
            "Affine1": xpl.Affine(
                backend.asarray(rng.normal(size=(5, 4))), backend.asarray(np.zeros(4))
            ),
            "Affine2": xpl.Affine(
                backend.asarray(rng.normal(size=(4, 3))),
                backend.asarray(np.zeros(3)),
                input_grad=False,
            ),
        }
    )
    x, t = data(rng)
    with pytest.raises(
        LayerStateError, match="build only the first Affine layer with input_grad=False"
    ):
        net.gradient(backend.asarray(x), backend.asarray(t))


def test_repr_shows_the_structure():
    text = repr(MultiLayerNet(4, [3], 2, activation="sigmoid", seed=0))
    assert text.splitlines() == [
        "MultiLayerNet(",
        "  (Affine1): Affine(4 -> 3, dtype=float64)",
        "  (Activation_function1): Sigmoid()",
        "  (Affine2): Affine(3 -> 2, dtype=float64)",
        "  (last_layer): SoftmaxWithLoss()",
        ")",
    ]
    net = TwoLayerNet(4, 3, 2, seed=0)
    assert net.lastLayer is net.last_layer


# --------------------------------------------------------------------------- constructors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 0}, r"TwoLayerNet: argument 'sizes': expected positive integer sizes"),
        ({"hidden_size": 2.0}, "expected positive integer sizes"),
        ({"input_size": True}, "expected positive integer sizes"),
        (
            {"weight_init_std": -0.1},
            "argument 'weight_init_std': expected a positive finite number",
        ),
        ({"weight_init_std": float("nan")}, "argument 'weight_init_std'"),
        (
            {"weight_init_std": "tanh"},
            r"argument 'weight_init_std': expected a positive number or one of",
        ),
        ({"seed": -1}, "argument 'seed': expected None or a non-negative int"),
        ({"seed": "0"}, "argument 'seed'"),
        ({"dtype": "int32"}, r"argument 'dtype': expected 'float32' or 'float64'; got 'int32'"),
        ({"dtype": "float16"}, "argument 'dtype'"),
    ],
)
def test_two_layer_net_validates_arguments(kwargs, message):
    args = {"input_size": 4, "hidden_size": 3, "output_size": 2, **kwargs}
    with pytest.raises(LayerInputError, match=message):
        TwoLayerNet(**args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size_list": 5}, "argument 'hidden_size_list': expected a list of positive ints"),
        (
            {"hidden_size_list": [5, 0]},
            "argument 'hidden_size_list': expected positive integer sizes",
        ),
        ({"activation": "tanh"}, r"argument 'activation': expected one of \['relu', 'sigmoid'\]"),
        ({"output_size": 0}, "argument 'sizes'"),
    ],
)
def test_multi_layer_net_validates_arguments(kwargs, message):
    args = {"input_size": 4, "hidden_size_list": [3], "output_size": 2, **kwargs}
    with pytest.raises(LayerInputError, match=rf"MultiLayerNet: {message}"):
        MultiLayerNet(**args)


def test_multi_layer_net_without_hidden_layers_is_softmax_regression(backend, rng):
    net = MultiLayerNet(5, [], 3, weight_init_std=0.5, seed=0)
    assert list(net.layers) == ["Affine1"]
    x, t = data(rng)
    grads = net.gradient(backend.asarray(x), backend.asarray(t))
    params = host_params(net)
    num = oracle.numerical_gradient(lambda: oracle_loss(params, x, t, "relu"), params["W1"])
    np.testing.assert_allclose(backend.to_numpy(grads["W1"]), num, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- config


CONFIG_NETS = {
    "two_layer": lambda: TwoLayerNet(5, 4, 3, weight_init_std="he", seed=5, dtype="float32"),
    "multi": lambda: MultiLayerNet(5, [4, 3], 3, activation="sigmoid", weight_init_std=0.2, seed=6),
    "sequential": lambda: Sequential(
        {
            "Affine1": xpl.Affine(
                xpl.asarray(np.arange(20.0).reshape(5, 4) / 20),
                xpl.asarray(np.ones(4)),
                input_grad=False,
            ),
            "Relu1": xpl.Relu(),
            "Affine2": xpl.Affine(xpl.asarray(np.eye(4, 3)), xpl.asarray(np.zeros(3))),
            "Sigmoid1": xpl.Sigmoid(),
        }
    ),
}


@pytest.mark.parametrize("kind", list(CONFIG_NETS))
def test_from_config_round_trip(backend, xp, rng, kind):
    with xpl.use_backend("numpy"):
        net = CONFIG_NETS[kind]()
    config = json.loads(json.dumps(net.config()))
    assert config == net.config()
    params = {k: xpl.to_numpy(v) for k, v in net.params.items()}
    copy = from_config(config, params)
    assert type(copy) is type(net)
    assert copy.config() == config
    assert list(copy.layers) == list(net.layers)
    assert [type(v) for v in copy.layers.values()] == [type(v) for v in net.layers.values()]
    for key, value in copy.params.items():
        assert xpl.namespace(value) is xp
        np.testing.assert_array_equal(backend.to_numpy(value), params[key])
    assert [getattr(layer, "input_grad", None) for layer in copy.layers.values()] == [
        getattr(layer, "input_grad", None) for layer in net.layers.values()
    ]
    x, _ = data(rng)
    dtype = params["W1"].dtype.name
    x = x.astype(dtype)
    np.testing.assert_allclose(
        backend.to_numpy(copy.predict(backend.asarray(x))),
        xpl.to_numpy(net.predict(x)),
        **oracle.tolerance(dtype),
    )
    # the loaded values are copies: training the copy leaves the given arrays alone
    saved = {k: v.copy() for k, v in params.items()}
    copy.params["W1"] = copy.params["W1"] * 2.0
    if backend.name == "numpy":
        copy.params["b1"] -= 1.0
    for key, value in params.items():
        np.testing.assert_array_equal(value, saved[key])


def test_from_config_without_params_uses_the_seed(backend):
    net = MultiLayerNet(5, [4], 3, seed=9)
    again = from_config(net.config())
    for key in net.params:
        np.testing.assert_array_equal(
            backend.to_numpy(again.params[key]), backend.to_numpy(net.params[key])
        )


def test_config_contents():
    assert TwoLayerNet(5, 4, 3, seed=1).config() == {
        "class": "TwoLayerNet",
        "input_size": 5,
        "hidden_size": 4,
        "output_size": 3,
        "weight_init_std": 0.01,
        "seed": 1,
        "dtype": "float64",
    }
    assert MultiLayerNet(5, (4, 2), 3, activation="Sigmoid", weight_init_std="HE").config() == {
        "class": "MultiLayerNet",
        "input_size": 5,
        "hidden_size_list": [4, 2],
        "output_size": 3,
        "activation": "sigmoid",
        "weight_init_std": "he",
        "weight_decay_lambda": 0.0,
        "seed": None,
        "dtype": "float64",
    }


def _params(net: Any) -> dict[str, np.ndarray]:
    return {k: np.array(xpl.to_numpy(v)) for k, v in net.params.items()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c, p: ([], p), r"from_config: argument 'config': expected a mapping"),
        (
            lambda c, p: ({**c, "class": "ResNet"}, p),
            r"argument 'config\['class'\]': expected one of \['TwoLayerNet'",
        ),
        (
            lambda c, p: ({k: v for k, v in c.items() if k != "hidden_size"}, p),
            r"missing \['hidden_size'\], unknown \[\]",
        ),
        (lambda c, p: ({**c, "hiden_size": 3}, p), r"missing \[\], unknown \['hiden_size'\]"),
        (lambda c, p: ({**c, "dtype": "int8"}, p), "argument 'dtype'"),
        (
            lambda c, p: (c, {k: v for k, v in p.items() if k != "b2"}),
            r"argument 'params': expected exactly the names \['W1', 'b1', 'W2', 'b2'\]; got missing \['b2'\], unknown \[\]",
        ),
        (lambda c, p: (c, {**p, "W3": p["W2"]}), r"missing \[\], unknown \['W3'\]"),
        (
            lambda c, p: (c, {**p, "W1": p["W1"].T}),
            r"argument 'params\['W1'\]': expected shape \(5, 4\) and dtype float64; got shape \(4, 5\) and dtype float64",
        ),
        (
            lambda c, p: (c, {**p, "b1": p["b1"].astype(np.float32)}),
            r"params\['b1'\]': expected shape \(4,\) and dtype float64; got shape \(4,\) and dtype float32",
        ),
        (lambda c, p: (c, [1, 2]), r"argument 'params': expected a mapping"),
    ],
)
def test_from_config_errors(change, message):
    net = TwoLayerNet(5, 4, 3, seed=0)
    config, params = change(net.config(), _params(net))
    with pytest.raises(LayerInputError, match=message):
        from_config(config, params)


def test_sequential_config_needs_params_and_known_layers():
    net = CONFIG_NETS["sequential"]()
    with pytest.raises(
        LayerInputError, match="argument 'params': expected the parameters of a Sequential"
    ):
        from_config(net.config())

    class Tanh(xpl.Relu):
        pass

    odd = Sequential({"A": net.layers["Affine1"], "T": Tanh()})
    with pytest.raises(
        LayerInputError,
        match=r"Sequential\.config: argument 'layers\['T'\]': expected Affine, Relu or Sigmoid",
    ):
        odd.config()
    with pytest.raises(LayerInputError, match=r"config\['layers'\]"):
        from_config({"class": "Sequential", "layers": [{"name": "T", "type": "Tanh"}]}, {})


def test_load_params_is_all_or_nothing(backend):
    net = TwoLayerNet(5, 4, 3, seed=0)
    before = {k: net.params[k] for k in net.params}
    bad = _params(TwoLayerNet(5, 4, 3, seed=1))
    bad["b2"] = bad["b2"][:2]
    with pytest.raises(
        LayerInputError, match=r"TwoLayerNet\.load_params: argument 'params\['b2'\]'"
    ):
        net.load_params(bad)
    assert all(net.params[k] is before[k] for k in before)


def test_host_copy_is_float64_numpy_and_independent(backend, xp):
    net = TwoLayerNet(5, 4, 3, seed=0, dtype="float32")
    host = host_copy(net)
    assert type(host) is TwoLayerNet
    for key, value in host.params.items():
        assert isinstance(value, np.ndarray)
        assert value.dtype == np.float64
        np.testing.assert_array_equal(value, backend.to_numpy(net.params[key]).astype(np.float64))
        host.params[key] += 1.0
    assert net.params["W1"].dtype == xp.float32
    assert float(backend.to_numpy(net.params["b1"]).max()) == 0.0


# --------------------------------------------------------------------------- the book, unchanged


class BookTwoLayerNet:
    """ch05/two_layer_net.py, with the book's layers replaced by xplayers' (nothing else changed)."""

    def __init__(self, input_size, hidden_size, output_size, weight_init_std=0.01):
        # initialise the weights
        self.params = {}
        self.params["W1"] = weight_init_std * np.random.randn(input_size, hidden_size)  # noqa: NPY002
        self.params["b1"] = np.zeros(hidden_size)
        self.params["W2"] = weight_init_std * np.random.randn(hidden_size, output_size)  # noqa: NPY002
        self.params["b2"] = np.zeros(output_size)

        # build the layers
        self.layers = OrderedDict()
        self.layers["Affine1"] = xpl.Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = xpl.Relu()
        self.layers["Affine2"] = xpl.Affine(self.params["W2"], self.params["b2"])

        self.lastLayer = xpl.SoftmaxWithLoss()

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)

        return x

    # x: input data, t: labels
    def loss(self, x, t):
        y = self.predict(x)
        return self.lastLayer.forward(y, t)

    def accuracy(self, x, t):
        y = self.predict(x)
        y = np.argmax(y, axis=1)
        if t.ndim != 1:
            t = np.argmax(t, axis=1)

        accuracy = np.sum(y == t) / float(x.shape[0])
        return accuracy

    # x: input data, t: labels
    def numerical_gradient(self, x, t):
        loss_W = lambda W: self.loss(x, t)  # noqa: E731

        grads = {}
        grads["W1"] = numerical_gradient(loss_W, self.params["W1"])
        grads["b1"] = numerical_gradient(loss_W, self.params["b1"])
        grads["W2"] = numerical_gradient(loss_W, self.params["W2"])
        grads["b2"] = numerical_gradient(loss_W, self.params["b2"])

        return grads

    def gradient(self, x, t):
        # forward
        self.loss(x, t)

        # backward
        dout = 1
        dout = self.lastLayer.backward(dout)

        layers = list(self.layers.values())
        layers.reverse()
        for layer in layers:
            dout = layer.backward(dout)

        # settings
        grads = {}
        grads["W1"], grads["b1"] = self.layers["Affine1"].dW, self.layers["Affine1"].db
        grads["W2"], grads["b2"] = self.layers["Affine2"].dW, self.layers["Affine2"].db

        return grads


@pytest.fixture
def book_random_state():
    """Seed NumPy's global generator as the book's scripts use it, and restore it after."""
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002
    yield
    np.random.set_state(state)  # noqa: NPY002


def blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Three separable clouds in 4-D with one-hot labels, like a tiny MNIST."""
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    labels = rng.integers(0, 3, n)
    x = centers[labels] + 0.7 * rng.normal(size=(n, 4))
    return x, np.eye(3)[labels]


@pytest.mark.usefixtures("book_random_state")
def test_book_chapter5_two_layer_net_runs_unchanged_and_learns(rng):
    x_train, t_train = blobs(rng, 300)
    x_test, t_test = blobs(rng, 100)
    network = BookTwoLayerNet(input_size=4, hidden_size=10, output_size=3)

    # ch05/gradient_check.py
    x_batch, t_batch = x_train[:3], t_train[:3]
    grad_numerical = network.numerical_gradient(x_batch, t_batch)
    grad_backprop = network.gradient(x_batch, t_batch)
    for key in grad_numerical:
        diff = np.average(np.abs(grad_backprop[key] - grad_numerical[key]))
        assert diff < 1e-9, key

    # ch05/train_neuralnet.py
    start = network.accuracy(x_test, t_test)
    learning_rate, batch_size = 0.1, 20
    W1 = network.params["W1"]
    for _ in range(300):
        batch_mask = rng.choice(x_train.shape[0], batch_size)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        grad = network.gradient(x_batch, t_batch)
        for key in ("W1", "b1", "W2", "b2"):
            network.params[key] -= learning_rate * grad[key]
    assert network.params["W1"] is W1 is network.layers["Affine1"].W
    end = network.accuracy(x_test, t_test)
    assert start < 0.6
    assert end > 0.9
    assert network.accuracy(x_train, np.argmax(t_train, axis=1)) > 0.9


@pytest.mark.parametrize("kind", list(CONFIG_NETS))
def test_param_shapes_match_the_built_network(kind):
    net = CONFIG_NETS[kind]()
    shapes = network_config.param_shapes(net.config())
    assert shapes == {k: tuple(v.shape) for k, v in net.params.items()}
    assert list(shapes) == list(net.params)


def test_param_shapes_allocate_nothing():
    """A config bomb is sized, not built: 20000 x 20000 float64 would be 3.2 GB."""
    import tracemalloc

    config = TwoLayerNet(3, 2, 2).config() | {"input_size": 20000, "hidden_size": 20000}
    tracemalloc.start()
    try:
        shapes = network_config.param_shapes(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert shapes["W1"] == (20000, 20000)
    assert peak < 1_000_000


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"class": "TwoLayerNet", "input_size": 3}, r"missing \['hidden_size', 'output_size'\]"),
        ({"class": "TwoLayerNet", "input_size": 0, "hidden_size": 1, "output_size": 1}, "sizes"),
        ({"class": "Nope"}, r"config\['class'\]"),
        (
            {
                "class": "Sequential",
                "layers": [
                    {"name": "A1", "type": "Affine", "input_size": 4, "output_size": 3},
                    {"name": "R1", "type": "Relu"},
                    {"name": "A2", "type": "Affine", "input_size": 5, "output_size": 2},
                ],
            },
            r"config 'A2'': expected input_size 3",
        ),
    ],
)
def test_param_shapes_check_like_from_config(config, message):
    with pytest.raises(LayerInputError, match=message):
        network_config.param_shapes(config)
    with pytest.raises(LayerInputError, match=message):
        from_config(config, {})


def test_from_config_compares_shapes_before_building(monkeypatch):
    """Parameters that do not fit the config are refused before any weight is drawn."""
    config = TwoLayerNet(3, 2, 2).config() | {"input_size": 20000, "hidden_size": 20000}
    params = _params(TwoLayerNet(3, 2, 2, seed=0))

    def no_init(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the network was built")

    monkeypatch.setattr("xplayers.network.book.init_params", no_init)
    with pytest.raises(LayerInputError, match=r"params\['W1'\]': expected shape \(20000, 20000\)"):
        from_config(config, params)


def test_constructor_table_keys_follow_the_signatures():
    keys = {name: entry.keys() for name, entry in network_config.NETWORKS.items()}
    assert keys["TwoLayerNet"] == (
        {"class", "input_size", "hidden_size", "output_size"},
        {"weight_init_std", "seed", "dtype"},
    )
    assert keys["MultiLayerNet"][1] == {
        "activation",
        "weight_init_std",
        "weight_decay_lambda",
        "seed",
        "dtype",
    }
    assert keys["Sequential"] == ({"class", "layers"}, {"dtype"})


@pytest.mark.parametrize(
    ("dtype", "scale"), [("float32", 1e300), ("float32", 1e40), ("float64", 1e308)]
)
def test_a_scale_whose_weights_overflow_the_dtype_is_refused(dtype: str, scale: float) -> None:
    from xplayers.errors import LayerInputError
    from xplayers.network import SimpleConvNet

    for build in (
        lambda: TwoLayerNet(5, 4, 3, weight_init_std=scale, seed=0, dtype=dtype),
        lambda: MultiLayerNet(5, [4], 3, weight_init_std=scale, seed=0, dtype=dtype),
        lambda: SimpleConvNet(
            (1, 4, 4),
            {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1},
            hidden_size=3,
            output_size=2,
            weight_init_std=scale,
            seed=0,
            dtype=dtype,
        ),
    ):
        with pytest.raises(LayerInputError, match=f"finite in {dtype}"):
            build()
    huge = {"float32": 1e30, "float64": 1e300}[dtype]  # finite weights: allowed
    net = TwoLayerNet(5, 4, 3, weight_init_std=huge, seed=0, dtype=dtype)
    assert all(np.isfinite(xpl.to_numpy(p)).all() for p in net.params.values())
