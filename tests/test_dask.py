"""The Dask paths: one persist per optimizer step, quiet on a dask.distributed cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.network import TwoLayerNet
from xplayers.optim import Adam, Momentum
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
