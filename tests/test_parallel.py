"""Data-parallel gradients on Dask: equal to NumPy's, one task per chunk, pickling, lost workers."""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.datasets.streaming import NpyFolder
from xplayers.errors import ClusterError
from xplayers.network import MultiLayerNet, Sequential, TwoLayerNet
from xplayers.optim import SGD, Adam
from xplayers.stateless import stateless

pytestmark = pytest.mark.backends("dask")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _dask_selected(request: pytest.FixtureRequest) -> None:
    raw = request.config.getoption("--backends")
    if raw and "dask" not in [s.strip() for s in raw.split(",")]:
        pytest.skip("the dask backend is not among --backends")


def _data(n: int = 600, d: int = 20, c: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, c, n)


def _close(got: dict[str, np.ndarray], want: dict[str, Any], rtol: float = 2e-5) -> None:
    assert list(got) == list(want)
    for k, g in got.items():
        w = xpl.to_numpy(want[k])
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * float(np.abs(w).max()))


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_stateless_grad_equals_the_layers(activation: str) -> None:
    x, t = _data(50)
    net = MultiLayerNet(20, [8, 6], 4, activation=activation, seed=0, dtype="float32")
    loss, grads = stateless(net).grad(dict(net.params), x, t)
    _close({k: np.asarray(v) for k, v in grads.items()}, net.gradient(x, t), 1e-6)
    assert float(loss) == pytest.approx(float(net.loss(x, t)), rel=1e-6)


def test_stateless_refuses_other_layers() -> None:
    net = Sequential({"Relu": xpl.Relu()})
    with pytest.raises(xpl.LayerInputError, match="first layer is Affine"):
        stateless(net)


def test_networks_optimizers_and_backends_pickle() -> None:
    x, _ = _data(5)
    net = TwoLayerNet(20, 7, 4, seed=0, dtype="float32")
    opt = Adam()
    opt.update(net.params, net.gradient(x, np.zeros(5, dtype=int)))
    copy, opt2, backend = pickle.loads(pickle.dumps((net, opt, xpl.get_backend())))
    np.testing.assert_array_equal(copy.predict(x), net.predict(x))
    assert copy.params["W1"] is copy.layers["Affine1"].W  # still live
    assert opt2.iter == 1
    np.testing.assert_array_equal(opt2.m["W1"], opt.m["W1"])
    assert backend == xpl.get_backend()


def test_chunked_gradient_equals_numpy_without_a_cluster() -> None:
    da = pytest.importorskip("dask.array")
    from xplayers.parallel import chunked_gradient

    x, t = _data()
    net = TwoLayerNet(20, 16, 4, weight_init_std=0.3, seed=0, dtype="float32")
    loss, grads = chunked_gradient(
        net, da.from_array(x, chunks=(70, 7)), da.from_array(t, chunks=100), split_every=3
    )
    _close(grads, net.gradient(x, t))
    assert loss == pytest.approx(float(net.loss(x, t)), rel=1e-6)


def test_one_task_per_chunk_then_a_tree(tmp_path: Path) -> None:
    pytest.importorskip("dask.array")
    import dask

    from xplayers import parallel

    x, t = _data()
    folder = tmp_path / "x"
    folder.mkdir()
    for i in range(0, 600, 50):
        np.save(folder / f"{i:04d}.npy", x[i : i + 50])
    net = TwoLayerNet(20, 16, 4, seed=0, dtype="float32")
    seen: list[int] = []
    compute = dask.array.Array.compute

    def spy(self: Any, **kwargs: Any) -> Any:
        (opt,) = dask.optimize(self)
        seen.append(len(opt.__dask_graph__()))
        return compute(self, **kwargs)

    dask.array.Array.compute = spy  # type: ignore[method-assign]
    try:
        _, grads = parallel.chunked_gradient(net, folder, t, split_every=4)
    finally:
        dask.array.Array.compute = compute  # type: ignore[method-assign]
    _close(grads, net.gradient(x, t))
    # 12 blocks: one task each that reads and computes, then sums of 4: 3 partial, 1 total
    assert seen == [12 + 3 + 1]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two worker processes (a worker can be killed), one thread each."""
    distributed = pytest.importorskip("distributed")
    import dask

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), old) if p)
    try:
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 1}),
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as c,
            distributed.Client(c, timeout=30) as client,
        ):
            yield client
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def test_full_batch_steps_on_a_cluster_equal_numpy(
    cluster: Any, distributed_warnings: list[str]
) -> None:
    from xplayers.parallel import full_batch_step

    da = pytest.importorskip("dask.array")
    x, t = _data()
    net = TwoLayerNet(20, 16, 4, weight_init_std=0.3, seed=0, dtype="float32")
    ref = TwoLayerNet(20, 16, 4, weight_init_std=0.3, seed=0, dtype="float32")
    opt, ref_opt = SGD(lr=0.5), SGD(lr=0.5)
    xs, ts = da.from_array(x, chunks=100), da.from_array(t, chunks=100)
    for _ in range(3):
        loss = full_batch_step(net, opt, xs, ts, client=cluster)
        assert loss == pytest.approx(float(ref.loss(x, t)), rel=1e-5)
        ref_opt.update(ref.params, ref.gradient(x, t))
    _close(dict(net.params), dict(ref.params), 1e-5)
    assert not [m for m in distributed_warnings if "run_spec" in m]


class Deadly(NpyFolder):
    """Rows whose first read of block 0 kills the worker process (or every read, if `always`)."""

    def __init__(self, path: Path, marker: Path, always: bool) -> None:
        super().__init__(path)
        self.marker, self.always = marker, always

    def read(self, start: int, stop: int) -> Any:
        if start == 0 and (self.always or not self.marker.exists()):
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().read(start, stop)


def _deadly(tmp_path: Path, always: bool) -> tuple[Deadly, np.ndarray, np.ndarray]:
    x, t = _data(300)
    (tmp_path / "x").mkdir()
    for i in range(0, 300, 100):
        np.save(tmp_path / "x" / f"{i:04d}.npy", x[i : i + 100])
    return Deadly(tmp_path / "x", tmp_path / "killed", always), x, t


def test_a_worker_killed_mid_step_is_retried(cluster: Any, tmp_path: Path) -> None:
    from xplayers.parallel import full_batch_step

    source, x, t = _deadly(tmp_path, always=False)
    net = TwoLayerNet(20, 16, 4, weight_init_std=0.3, seed=0, dtype="float32")
    ref = TwoLayerNet(20, 16, 4, weight_init_std=0.3, seed=0, dtype="float32")
    full_batch_step(net, SGD(lr=0.5), source, t, client=cluster)
    assert (tmp_path / "killed").exists()  # a worker did die
    SGD(lr=0.5).update(ref.params, ref.gradient(x, t))
    _close(dict(net.params), dict(ref.params), 1e-5)


def test_a_step_that_keeps_losing_workers_fails_cleanly(cluster: Any, tmp_path: Path) -> None:
    from xplayers.parallel import full_batch_step

    source, _, t = _deadly(tmp_path, always=True)
    net = TwoLayerNet(20, 16, 4, weight_init_std=0.3, seed=0, dtype="float32")
    before = {k: np.array(v) for k, v in net.params.items()}
    opt = Adam()
    with pytest.raises(ClusterError, match="nothing was updated"):
        full_batch_step(net, opt, source, t, client=cluster)
    for k, v in before.items():  # the model and the optimizer are as they were
        np.testing.assert_array_equal(net.params[k], v)
    assert opt.iter == 0
    assert not opt.m


def test_cupy_chunks_compute_on_the_gpu() -> None:
    from xplayers._backend import backend_status

    ok, why = backend_status("cupy")
    if not ok:
        pytest.skip(f"CuPy chunks need a GPU: {why}")
    da = pytest.importorskip("dask.array")
    from xplayers.parallel import chunked_gradient

    cp = xpl.resolve("cupy").xp
    x, t = _data()
    net = TwoLayerNet(20, 16, 4, weight_init_std=0.3, seed=0, dtype="float32")
    xs = da.from_array(x, chunks=100).map_blocks(cp.asarray)
    ts = da.from_array(t, chunks=100).map_blocks(cp.asarray)
    _, grads = chunked_gradient(net, xs, ts)
    _close(grads, net.gradient(x, t))


class _Tally:
    """Blocks alive at once, across the threads of an in-process cluster."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.alive = self.most = self.reads = 0


TALLY = _Tally()


class Counted(NpyFolder):
    def read(self, start: int, stop: int) -> Any:
        import weakref

        out = super().read(start, stop)
        with TALLY.lock:
            TALLY.alive += 1
            TALLY.reads += 1
            TALLY.most = max(TALLY.most, TALLY.alive)
        weakref.finalize(out, _gone)
        return out


def _gone() -> None:
    with TALLY.lock:
        TALLY.alive -= 1


def test_a_worker_holds_at_most_three_chunks(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from xplayers.parallel import chunked_gradient

    x, t = _data(2000)
    (tmp_path / "x").mkdir()
    for i in range(0, 2000, 100):
        np.save(tmp_path / "x" / f"{i:04d}.npy", x[i : i + 100])
    net = TwoLayerNet(20, 16, 4, weight_init_std=0.3, seed=0, dtype="float32")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as c,
        distributed.Client(c) as client,
    ):
        _, grads = chunked_gradient(net, Counted(tmp_path / "x"), t, client=client)
    _close(grads, net.gradient(x, t))
    assert TALLY.reads == 20
    assert 1 <= TALLY.most <= 3


# --------------------------------------------------------------------------- xplayers train --full-batch

_FULL = ["train", "--network", "two-layer", "--hidden", "16", "--optimizer", "sgd", "--lr", "0.5"]
_FULL += ["--dtype", "float64", "--epochs", "3", "--quiet"]
_DIGITS_TRAIN_ROWS = 1438  # the shipped digits' training split at the default --test-size


def _cli_params(argv: list[str], path: Path) -> dict[str, np.ndarray]:
    from xplayers.cli import main
    from xplayers.io import load

    assert main([*argv, "--output", str(path)]) == 0
    return {k: xpl.to_numpy(v) for k, v in load(path).params.items()}


def test_cli_full_batch_equals_one_batch_of_every_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = _cli_params([*_FULL, "--full-batch"], tmp_path / "full.npz")
    assert "full batch" in capsys.readouterr().out
    one = _cli_params([*_FULL, "--batch-size", str(_DIGITS_TRAIN_ROWS)], tmp_path / "one.npz")
    assert "1 iterations" not in capsys.readouterr().out
    for key, value in full.items():  # the mean gradient of all rows, in another summation order
        np.testing.assert_allclose(value, one[key], rtol=1e-9, atol=1e-12)
    start = TwoLayerNet(64, 16, 10, weight_init_std=0.01, seed=0)
    assert not np.allclose(full["W1"], xpl.to_numpy(start.params["W1"]))  # it did train


def test_cli_full_batch_on_a_scheduler(
    cluster: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = cluster.scheduler.address
    remote = _cli_params([*_FULL, "--full-batch", "--scheduler", address], tmp_path / "r.npz")
    local = _cli_params([*_FULL, "--full-batch"], tmp_path / "l.npz")
    for key, value in remote.items():
        np.testing.assert_allclose(value, local[key], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("option", ["--checkpoint", "--resume", "--plot", "--iterations"])
def test_cli_full_batch_refuses_per_step_options(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xplayers.cli import main

    value = "3" if option == "--iterations" else str(tmp_path / "x.npz")
    argv = [a for a in _FULL if a not in ("--epochs", "3")]
    assert main([*argv, "--full-batch", option, value]) == 2
    assert f"{option} does not apply to --full-batch" in capsys.readouterr().err
