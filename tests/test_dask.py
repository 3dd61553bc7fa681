"""The Dask paths: one persist per optimizer step, quiet on a dask.distributed cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.network import TwoLayerNet
from xplayers.optim import Adam, Momentum, get_optimizer
from xplayers.training import train

pytestmark = pytest.mark.backends("dask")

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")


@pytest.fixture(autouse=True)
def _dask_selected(request: pytest.FixtureRequest) -> None:
    raw = request.config.getoption("--backends")
    if raw and "dask" not in [s.strip() for s in raw.split(",")]:
        pytest.skip("the dask backend is not among --backends")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A small in-process cluster (threads), started once for this module."""
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def _data(n: int = 64, d: int = 12, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, c, n)


def test_one_persist_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    x, t = _data()
    calls: list[int] = []
    persist = dask.persist

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args))
        return persist(*args, **kwargs)

    monkeypatch.setattr(dask, "persist", counting)
    with xpl.use_backend("dask"):
        net = TwoLayerNet(12, 8, 3, weight_init_std=0.3, seed=0, dtype="float32")
        opt = Adam(lr=0.01)
        for _ in range(3):
            net.train_step(xpl.asarray(x), xpl.asarray(t), opt)
    # parameters (4) and Adam's two moments (4 + 4) together, once per step
    assert calls == [12, 12, 12]


def test_dask_training_equals_numpy_and_is_quiet_on_a_cluster(
    client: Any, distributed_warnings: list[str]
) -> None:
    x, t = _data()
    results = {}
    for name in ("numpy", "dask"):
        with xpl.use_backend(name):
            net = TwoLayerNet(12, 8, 3, weight_init_std=0.3, seed=0, dtype="float32")
            history = train(net, Momentum(lr=0.1), (x, t), epochs=2, batch_size=16)
            results[name] = ({k: xpl.to_numpy(v) for k, v in net.params.items()}, history)
    for key, value in results["numpy"][0].items():
        np.testing.assert_allclose(results["dask"][0][key], value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        results["dask"][1].train_loss, results["numpy"][1].train_loss, rtol=1e-5
    )
    assert not [m for m in distributed_warnings if "run_spec" in m]


STEPS = 15  # without persisting lazy updates, the graph grows by about 60 layers a step


def _layers(arrays: Any) -> int:
    """The most layers in the task graph of any of `arrays`."""
    return max(len(a.dask.layers) for a in arrays)


def test_book_loop_keeps_the_graph_bounded() -> None:
    """``params[key] -= lr * grad[key]``, the book's update, rebinds lazy arrays: each is persisted."""
    x, t = _data()
    layers, results = [], {}
    for name in ("dask", "numpy"):
        with xpl.use_backend(name):
            net = TwoLayerNet(12, 8, 3, weight_init_std=0.3, seed=0)
            xb, tb = xpl.asarray(x), xpl.asarray(t)
            for _ in range(STEPS):
                grad = net.gradient(xb, tb)
                for key in ("W1", "b1", "W2", "b2"):
                    net.params[key] -= 0.1 * grad[key]
                if name == "dask":
                    layers.append(_layers(net.params.values()))
            results[name] = {k: xpl.to_numpy(v) for k, v in net.params.items()}
    assert max(layers) <= 2, layers
    for key, value in results["numpy"].items():
        np.testing.assert_allclose(results["dask"][key], value, rtol=1e-12)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_update_keeps_the_graph_bounded(name: str) -> None:
    """``opt.update(net.params, net.gradient(x, t))``: parameters and state persisted each step."""
    x, t = _data()
    layers = []
    with xpl.use_backend("dask"):
        net = TwoLayerNet(12, 8, 3, weight_init_std=0.3, seed=0)
        opt = get_optimizer(name, lr=0.01)
        xb, tb = xpl.asarray(x), xpl.asarray(t)
        for _ in range(STEPS):
            opt.update(net.params, net.gradient(xb, tb))
            state = [
                a for store in vars(opt).values() if isinstance(store, dict) for a in store.values()
            ]
            layers.append(_layers([*net.params.values(), *state]))
    assert max(layers) <= 2, layers


def test_optimizer_update_of_a_plain_dict_keeps_the_graph_bounded() -> None:
    """The book's plain ``params`` dict of arrays, updated by an optimizer, is persisted too."""
    rng = np.random.default_rng(0)
    with xpl.use_backend("dask"):
        params = {"w": xpl.asarray(rng.normal(size=(4, 3)))}
        opt = Momentum(lr=0.1)
        for _ in range(STEPS):
            opt.update(params, {"w": params["w"] * 2.0})
    assert _layers([params["w"], *opt.v.values()]) <= 2


def test_parameters_persist_an_assigned_array_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An array persisted already is taken as it is: no second scheduler run."""
    calls: list[int] = []
    persist = dask.persist

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args))
        return persist(*args, **kwargs)

    monkeypatch.setattr(dask, "persist", counting)
    with xpl.use_backend("dask"):
        net = TwoLayerNet(4, 3, 2, seed=0)
        new = net.params["b2"] + 1.0
        net.params["b2"] = new
        assert calls == [1]
        assert net.params["b2"] is not new
        assert _layers([net.params["b2"]]) == 1
        done = net.params["b2"]
        net.params["b2"] = done
        assert calls == [1]
        assert net.layers["Affine2"].b is done
        np.testing.assert_array_equal(xpl.to_numpy(done), xpl.to_numpy(new))
