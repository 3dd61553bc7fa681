"""The compiled training step (xplayers/_pure_step.py): traced once per shape, equal to the layers.

On JAX, ``Sequential.train_step`` runs one ``jax.jit`` function of the
parameters, the optimizer state and the batch. These tests compare it with
the layer path (``net.gradient`` then ``optimizer.update``, which never
compiles a step) on JAX itself, count its traces, and check what falls back
to the layer path.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import xplayers as xpl
from xplayers._pure_step import compiled_step, optimizer_formulas
from xplayers.errors import LayerInputError
from xplayers.network import MultiLayerNet, Sequential, TwoLayerNet
from xplayers.optim import OPTIMIZERS, SGD, Adam, get_optimizer

pytestmark = pytest.mark.backends("jax")

HYPER = {"lr": 0.05}


@pytest.fixture
def jax_backend():
    """JAX selected as the current backend; float64 when the session enables it."""
    pytest.importorskip("jax")
    ok, why = xpl.backend_status("jax")
    if not ok:
        pytest.skip(f"backend jax not usable: {why}")
    with xpl.use_backend("jax"):
        yield xpl.get_backend()


def _x64():
    import jax

    return bool(jax.config.jax_enable_x64)


def _widest():
    return "float64" if _x64() else "float32"


def _dtype_or_skip(dtype):
    if dtype == "float64" and not _x64():
        pytest.skip("float64 on JAX needs JAX_ENABLE_X64=1 (set in the jax test session)")
    return dtype


def _batch(rng, n=12, d=6, c=3, dtype="float64", onehot=False):
    x = xpl.asarray(rng.normal(size=(n, d)).astype(dtype))
    labels = rng.integers(0, c, size=n)
    t = np.eye(c, dtype=dtype)[labels] if onehot else labels
    return x, xpl.asarray(t)


def _net(dtype, activation="relu", **kwargs):
    return MultiLayerNet(
        6, [5, 4], 3, activation=activation, weight_init_std=0.5, seed=3, dtype=dtype, **kwargs
    )


def _host(a):
    return np.asarray(xpl.to_numpy(a))


def _layer_state(net):
    """Every array a step leaves in the layers: grads and the kept forward values."""
    out = {f"grad {k}": v for k, v in net.grads.items()}
    for name, layer in [*net.layers.items(), ("loss", net.last_layer)]:
        for attr in ("x", "out", "y", "t", "loss", "dW", "db"):
            value = getattr(layer, attr, None)
            if value is not None:
                out[f"{name}.{attr}"] = value
    return {k: _host(v) for k, v in out.items()}


def _tolerance(dtype):
    return {"rtol": 1e-12, "atol": 1e-14} if dtype == "float64" else {"rtol": 2e-5, "atol": 2e-6}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_compiled_step_equals_the_layer_path(jax_backend, rng, name, dtype):
    """Losses, parameters, optimizer state and layer state after 3 steps, every optimizer."""
    dtype = _dtype_or_skip(dtype)
    batches = [_batch(rng, dtype=dtype) for _ in range(3)]
    a, b = _net(dtype), _net(dtype)
    opt_a, opt_b = get_optimizer(name, **HYPER), get_optimizer(name, **HYPER)
    assert compiled_step(a, opt_a) is not None
    fast = [_host(a.train_step(x, t, opt_a)) for x, t in batches]
    slow = []
    for x, t in batches:
        slow.append(_host(b.loss(x, t, train_flg=True)))
        opt_b.update(b.params, b.gradient(x, t))
    tol = _tolerance(dtype)
    np.testing.assert_allclose(fast, slow, **tol)
    for key in a.params:
        assert a.params[key].dtype == b.params[key].dtype
        np.testing.assert_allclose(_host(a.params[key]), _host(b.params[key]), **tol, err_msg=key)
    (info_a, arrays_a), (info_b, arrays_b) = opt_a.state(), opt_b.state()
    assert info_a == info_b  # Adam's step count included
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        np.testing.assert_allclose(arrays_a[key], arrays_b[key], **tol, err_msg=key)
    got, want = _layer_state(a), _layer_state(b)
    assert sorted(got) == sorted(want)
    for key in got:
        np.testing.assert_allclose(got[key], want[key], **tol, err_msg=key)


@pytest.mark.parametrize(
    "case", ["sigmoid", "onehot", "weight decay", "images", "column labels", "sequential"]
)
def test_compiled_step_equals_the_layer_path_for_other_networks(jax_backend, rng, case):
    dtype = _widest()
    x, t = _batch(rng, dtype=dtype, onehot=case == "onehot")
    kwargs = {"weight_decay_lambda": 0.1} if case == "weight decay" else {}

    def make():
        if case == "sequential":  # two Affine layers in a row, the first with input_grad
            p = _net(dtype).params
            return Sequential(
                [
                    ("A", xpl.Affine(p["W1"], p["b1"])),
                    ("B", xpl.Affine(p["W2"], p["b2"])),
                    ("C", xpl.Relu()),
                    ("D", xpl.Affine(p["W3"], p["b3"])),
                ]
            )
        return _net(dtype, "sigmoid" if case == "sigmoid" else "relu", **kwargs)

    if case == "images":
        x = xpl.asarray(rng.normal(size=(12, 1, 2, 3)).astype(dtype))
    if case == "column labels":
        t = xpl.asarray(rng.integers(0, 3, size=(12, 1)))
    a, b = make(), make()
    opt_a, opt_b = Adam(lr=0.01), Adam(lr=0.01)
    assert compiled_step(a, opt_a) is not None
    fast = [_host(a.train_step(x, t, opt_a)) for _ in range(2)]
    slow = []
    for _ in range(2):
        slow.append(_host(b.loss(x, t, train_flg=True)))
        opt_b.update(b.params, b.gradient(x, t))
    tol = _tolerance(dtype)
    np.testing.assert_allclose(fast, slow, **tol)
    for key in a.params:
        np.testing.assert_allclose(_host(a.params[key]), _host(b.params[key]), **tol, err_msg=key)
    got, want = _layer_state(a), _layer_state(b)
    assert sorted(got) == sorted(want)
    for key in got:
        np.testing.assert_allclose(got[key], want[key], **tol, err_msg=key)
    first = next(iter(a.layers.values()))
    assert first.original_x_shape == tuple(x.shape)
    # the layers can run backward from what the compiled step left, as after gradient()
    dout = a.last_layer.backward()
    for layer in reversed(list(a.layers.values())[1:]):
        dout = layer.backward(dout)
    assert first.backward(dout) is None or first.backward(dout).shape == x.shape


def test_one_trace_per_shape_not_per_step(jax_backend, rng):
    """Repeated steps of one shape trace once; a new batch size, once more; new rates, never."""
    net = TwoLayerNet(7, 6, 5, seed=0, dtype=_widest())  # a structure no other test compiles
    opt = Adam(lr=0.01)
    step = compiled_step(net, opt)
    assert step is not None
    before = step.traces
    x, t = _batch(rng, n=8, d=7, c=5, dtype=str(net.params["W1"].dtype))
    for _ in range(5):
        net.train_step(x, t, opt)
    assert step.traces == before + 1
    assert opt.iter == 5  # the step count is an input, counted on the host
    opt.lr = 0.001
    net.train_step(x, t, opt)
    assert step.traces == before + 1
    x2, t2 = _batch(rng, n=3, d=7, c=5, dtype=str(net.params["W1"].dtype))
    for _ in range(3):
        net.train_step(x2, t2, opt)
        net.train_step(x, t, opt)
    assert step.traces == before + 2
    other = TwoLayerNet(7, 6, 5, seed=1, dtype=_widest())  # another of the structure shares it
    assert compiled_step(other, Adam(lr=0.5)) is step
    other.train_step(x, t, Adam(lr=0.5))
    assert step.traces == before + 2


def test_checkpoint_state_resumes_on_the_compiled_step(jax_backend, rng):
    """optimizer.state() after compiled steps restores into a new optimizer that continues alike."""
    x, t = _batch(rng, dtype=str(_net("float32").params["W1"].dtype))
    a, b = _net("float32"), _net("float32")
    opt_a = Adam(lr=0.01)
    for _ in range(2):
        a.train_step(x, t, opt_a)
    b.load_params({k: _host(v) for k, v in a.params.items()})
    opt_b = Adam(lr=0.01)
    info, arrays = opt_a.state()
    opt_b.set_state(info, arrays, b.params)
    assert opt_b.iter == 2
    a.train_step(x, t, opt_a)
    b.train_step(x, t, opt_b)
    for key in a.params:
        np.testing.assert_array_equal(_host(a.params[key]), _host(b.params[key]))


def test_the_compiled_step_does_not_read_dropouts_count_back(jax_backend, rng, monkeypatch):
    """Dropout's new count stays a device array after a step; it is read when asked, not per step.

    Every read of a JAX array's value on the host goes through its ``_value``
    property (``int()``, ``float()``, ``numpy.asarray``); it is watched here
    during the steps.
    """
    from jax._src import array as jax_array

    from xplayers.network import MultiLayerNetExtend
    from xplayers.training import _layer_generators

    if not isinstance(getattr(jax_array.ArrayImpl, "_value", None), property):
        pytest.skip("this JAX reads arrays on the host otherwise than through ArrayImpl._value")
    net = MultiLayerNetExtend(
        6, [5], 3, use_dropout=True, use_batchnorm=True, seed=0, dtype=_widest()
    )
    opt = Adam(lr=0.01)
    step = compiled_step(net, opt)
    assert step is not None
    before = step.traces
    x, t = _batch(rng, dtype=_widest())
    net.train_step(x, t, opt)  # the first step: the count goes in as the int 0
    value = jax_array.ArrayImpl._value
    reads = []

    def watched(array):
        reads.append(array.shape)
        return value.fget(array)

    monkeypatch.setattr(jax_array.ArrayImpl, "_value", property(watched))
    for _ in range(3):
        net.train_step(x, t, opt)
    monkeypatch.setattr(jax_array.ArrayImpl, "_value", value)
    assert reads == []
    assert step.traces == before + 1  # the count as an array traces as the int did
    assert net.layers["Dropout1"].count == 4
    assert _layer_generators(net)["Dropout1"]["count"] == 4


class _OwnStep(SGD):
    calls = 0

    @staticmethod
    def step(g, state, *, lr):
        _OwnStep.calls += 1
        return 2.0 * lr * g, {}


class _UpdateOnly:
    calls = 0

    def update(self, params, grads):
        type(self).calls += 1
        for key in params:
            params[key] = params[key] - 0.1 * grads[key]


def test_what_the_compiled_step_does_not_cover_runs_the_layers(jax_backend, rng):
    x, t = _batch(rng, dtype=str(_net("float32").params["W1"].dtype))
    assert optimizer_formulas(_OwnStep()) is None
    assert optimizer_formulas(_UpdateOnly()) is None
    for opt, cls in [(_OwnStep(lr=0.1), _OwnStep), (_UpdateOnly(), _UpdateOnly)]:
        net = _net("float32")
        assert compiled_step(net, opt) is None
        net.train_step(x, t, opt)
        assert cls.calls > 0
        assert net.grads["W1"] is net.layers["Affine1"].dW is not None

    class Double:  # a layer of the user's own, without a pure pair
        def forward(self, x):
            return 2.0 * x

        def backward(self, dout):
            return 2.0 * dout

    p = _net("float32").params
    net = Sequential([("A", xpl.Affine(p["W1"], p["b1"])), ("D", Double())])
    assert compiled_step(net, SGD()) is None
    assert np.isfinite(_host(net.train_step(x, t, SGD())))


def test_other_backends_never_compile(backend):
    net = TwoLayerNet(6, 5, 3, seed=0)
    if backend.backend.record.jit(lambda a: a) is None:
        assert compiled_step(net, SGD()) is None
    else:
        assert compiled_step(net, SGD()) is not None


def test_bad_inputs_are_refused_as_the_layers_refuse_them(jax_backend, rng):
    """Checked when traced: the layers' errors, and nothing changed (Adam's count included)."""
    net, opt = _net("float32"), Adam()
    dtype = str(net.params["W1"].dtype)
    x, t = _batch(rng, dtype=dtype)
    W1 = net.params["W1"]
    with pytest.raises(LayerInputError, match=r"Affine\.forward: .*'x'.*6 values per sample"):
        net.train_step(xpl.asarray(np.ones((12, 5), dtype=dtype)), t, opt)
    with pytest.raises(LayerInputError, match=r"SoftmaxWithLoss\.forward: .*'t'"):
        net.train_step(x, xpl.asarray(np.ones((12, 2), dtype=dtype)), opt)
    with pytest.raises(LayerInputError, match=r"SoftmaxWithLoss\.forward: .*integer dtype"):
        net.train_step(x, xpl.asarray(np.zeros(12, dtype=dtype)), opt)
    assert opt.iter == 0
    assert net.params["W1"] is W1
    net.train_step(x, t, opt)
    assert opt.iter == 1


def test_labels_are_checked_once_by_train_not_by_the_compiled_step(jax_backend, rng):
    """Reading label values would stop the compiled function; train() checks the dataset."""
    from xplayers.training import train

    net, opt = _net("float32"), SGD(lr=0.1)
    x, _ = _batch(rng, dtype=str(net.params["W1"].dtype))
    bad = xpl.asarray(np.array([0, 1, 2, 3] * 3))  # 3 is out of [0, 3)
    loss = net.train_step(x, bad, opt)  # documented: no check inside the compiled step
    assert np.isfinite(_host(loss))
    with pytest.raises(LayerInputError, match="labels"):
        train(net, opt, (_host(x), _host(bad)), epochs=1, batch_size=4, progress=False)


_DROPOUT_WITHOUT_X64 = """
import numpy as np
import jax
import xplayers as xpl
from xplayers._pure_step import compiled_step
from xplayers.network import MultiLayerNetExtend

assert not jax.config.jax_enable_x64
rng = np.random.default_rng(0)
x, t = rng.random((8, 6), dtype=np.float32), rng.integers(0, 3, 8)
nets = {}
for name in ("numpy", "jax"):
    with xpl.use_backend(name):
        net = MultiLayerNetExtend(6, [5], 3, use_dropout=True, seed=7, dtype="float32")
        net.layers["Dropout1"].reseed([2**32 - 1, 2**31 + 5])  # words above int32's range
        opt = xpl.SGD(lr=0.1)
        if name == "jax":
            assert compiled_step(net, opt) is not None
        for _ in range(2):
            net.train_step(xpl.asarray(x), xpl.asarray(t), opt)
        nets[name] = net
for key in nets["numpy"].params:
    np.testing.assert_allclose(
        xpl.to_numpy(nets["jax"].params[key]), nets["numpy"].params[key], rtol=1e-5, atol=1e-6
    )
print("ok")
"""


def test_dropout_seed_words_above_int32_compile_without_x64(jax_backend):
    """JAX's default 32-bit integers hold every seed word: the compiled step draws NumPy's masks."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XPLAYERS_BACKEND")}
    r = subprocess.run(
        [sys.executable, "-c", _DROPOUT_WITHOUT_X64],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok"
