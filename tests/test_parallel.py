"""Data-parallel gradients on Dask: equal to NumPy's, one task per chunk, pickling, lost workers."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from tests.limits import reaped
from xplayers.datasets.streaming import NpyFolder
from xplayers.errors import ClusterError
from xplayers.network import MultiLayerNet, Sequential, TwoLayerNet
from xplayers.network.chain import Chain
from xplayers.optim import SGD, Adam

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
def test_chain_grad_equals_the_layers(activation: str) -> None:
    x, t = _data(50)
    net = MultiLayerNet(20, [8, 6], 4, activation=activation, seed=0, dtype="float32")
    loss, grads, _ = Chain.from_network(net).loss_and_grads(dict(net.params), {}, x, t)
    _close({k: np.asarray(v) for k, v in grads.items()}, net.gradient(x, t), 1e-6)
    assert float(loss) == pytest.approx(float(net.loss(x, t)), rel=1e-6)


def test_chain_refuses_layers_without_a_pure_pair() -> None:
    class Double:
        def forward(self, x: Any) -> Any:
            return 2.0 * x

        def backward(self, dout: Any) -> Any:
            return 2.0 * dout

    net = Sequential({"Double": Double()})
    with pytest.raises(xpl.LayerInputError, match="a layer with a pure pair"):
        Chain.from_network(net)


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
    from xplayers.backend import backend_status

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


def test_cli_full_batch_refuses_iterations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xplayers.cli import main

    argv = [a for a in _FULL if a not in ("--epochs", "3")]
    assert main([*argv, "--full-batch", "--iterations", "3"]) == 2
    assert "--iterations does not apply to --full-batch" in capsys.readouterr().err


def test_cli_full_batch_resumes_bit_for_bit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xplayers.io import read_metadata

    argv = [a for a in _FULL if a not in ("--epochs", "3")]
    argv += ["--full-batch", "--lr-schedule", "step", "--lr-step-size", "1", "--patience", "5"]
    argv += ["--monitor", "train_loss"]
    ckpt = tmp_path / "ckpt.npz"
    _cli_params([*argv, "--epochs", "2", "--checkpoint", str(ckpt)], tmp_path / "two.npz")
    resumed = _cli_params([*argv, "--epochs", "3", "--resume", str(ckpt)], tmp_path / "r.npz")
    whole = _cli_params([*argv, "--epochs", "3"], tmp_path / "whole.npz")
    for key, value in whole.items():
        np.testing.assert_array_equal(resumed[key], value)
    history = read_metadata(tmp_path / "r.npz")["metadata"]["history"]
    assert history["iteration"] == [1, 2, 3]
    assert history["lr"] == pytest.approx([0.5, 0.05, 0.005])  # the schedule went on


def _extend(dtype: str = "float64") -> Any:
    from xplayers.network import MultiLayerNetExtend

    return MultiLayerNetExtend(
        20, [16], 4, use_batchnorm=True, use_dropout=True, seed=0, dtype=dtype
    )


def test_train_full_batch_equals_a_loop_of_full_batch_steps() -> None:
    """train(full_batch=True): per epoch one full_batch_step over chunks of eval_batch_size."""
    from xplayers.parallel import full_batch_step, to_chunked
    from xplayers.training import train

    x, t = _data(300)
    net, ref = _extend(), _extend()
    history = train(
        net, Adam(lr=0.01), (x, t), epochs=3, full_batch=True, eval_batch_size=70, progress=False
    )
    opt = Adam(lr=0.01)
    losses = [full_batch_step(ref, opt, to_chunked(x, 70), to_chunked(t, 70)) for _ in range(3)]
    assert history.iteration == [1, 2, 3]
    assert history.epoch == [1.0, 2.0, 3.0]
    assert history.train_loss == losses
    for key, value in ref.params.items():
        np.testing.assert_array_equal(net.params[key], value)
    for name, layer in ref.layers.items():  # Dropout's count, BatchNorm's running averages
        for attr in ("count", "running_mean", "running_var"):
            if hasattr(layer, attr):
                np.testing.assert_array_equal(getattr(net.layers[name], attr), getattr(layer, attr))
    assert ref.layers["Dropout1"].count == 3


def test_train_full_batch_resumes_from_a_checkpoint_bit_for_bit(tmp_path: Path) -> None:
    from xplayers.training import train

    x, t = _data(300)
    test = _data(90)
    run = {"epochs": 4, "full_batch": True, "eval_batch_size": 100, "progress": False}
    whole_net, whole_opt = _extend(), Adam(lr=0.01)
    whole = train(whole_net, whole_opt, (x, t), test, **run)
    ckpt = tmp_path / "ckpt.npz"
    train(_extend(), Adam(lr=0.01), (x, t), test, **{**run, "epochs": 2}, checkpoint=ckpt)
    net, opt = _extend(), Adam(lr=0.01)
    resumed = train(net, opt, (x, t), test, **run, resume=ckpt)
    for key, value in whole_net.params.items():
        np.testing.assert_array_equal(net.params[key], value)
    for key, value in whole_opt.m.items():
        np.testing.assert_array_equal(opt.m[key], value)
    assert net.layers["Dropout1"].count == whole_net.layers["Dropout1"].count == 4
    np.testing.assert_array_equal(
        net.layers["BatchNorm1"].running_mean, whole_net.layers["BatchNorm1"].running_mean
    )
    for name in ("iteration", "train_loss", "train_acc", "test_acc"):
        assert getattr(resumed, name) == getattr(whole, name)


def test_train_client_needs_full_batch() -> None:
    from xplayers.training import train

    with pytest.raises(xpl.LayerInputError, match=r"train: argument 'client'"):
        train(TwoLayerNet(20, 8, 4, seed=0), SGD(), _data(50), epochs=1, client=object())


# --------------------------------------------------------------------------- checked before anything changes


def _unchanged(net: Any, opt: Any, before: dict[str, np.ndarray]) -> None:
    for k, v in before.items():
        np.testing.assert_array_equal(xpl.to_numpy(net.params[k]), v)
    assert opt.iter == 0
    assert not opt.m


def _start(net: Any) -> tuple[Adam, dict[str, np.ndarray]]:
    return Adam(), {k: np.array(xpl.to_numpy(v)) for k, v in net.params.items()}


@pytest.mark.parametrize("bad", [-1, 4])
def test_labels_out_of_range_are_refused_naming_the_chunk(bad: int, tmp_path: Path) -> None:
    da = pytest.importorskip("dask.array")
    from xplayers.parallel import chunked_gradient, full_batch_step

    x, t = _data(300)
    t[250] = bad
    net = TwoLayerNet(20, 16, 4, seed=0, dtype="float32")
    opt, before = _start(net)
    with pytest.raises(xpl.LayerInputError, match=r"rows 200 to 299 \(block 3 of 3, a Dask") as e:
        full_batch_step(net, opt, da.from_array(x, chunks=100), da.from_array(t, chunks=100))
    assert f"the first out of range is {bad}, at row 250" in str(e.value)
    _unchanged(net, opt, before)
    for name, a in (("x", x), ("t", t)):  # in files: the labels' file is named
        (tmp_path / name).mkdir()
        for i in range(0, 300, 100):
            np.save(tmp_path / name / f"{i:04d}.npy", a[i : i + 100])
    with pytest.raises(xpl.LayerInputError, match=r"block 3 of 3, file '.*t.0200\.npy'"):
        chunked_gradient(net, tmp_path / "x", tmp_path / "t")
    with pytest.raises(xpl.LayerInputError, match=r"rows 200 to 299"):  # Dask inputs, files
        chunked_gradient(net, da.from_array(x, chunks=100), tmp_path / "t")


def test_labels_of_another_kind_and_bad_inputs_are_refused() -> None:
    da = pytest.importorskip("dask.array")
    from xplayers.parallel import full_batch_step

    x, t = _data(60)
    net = TwoLayerNet(20, 16, 4, seed=0, dtype="float32")
    opt, before = _start(net)
    cases = [
        (x, t.astype(np.float64), r"'t': expected integer labels .* dtype float64"),
        (x, np.zeros((60, 3)), r"'t': expected integer labels .* shape \(60, 3\)"),
        (x[:, :19], t, r"'x': expected 20 values per sample.*shape \(60, 19\)"),
        (x.astype(np.int64), t, r"'x': expected inputs of a real floating dtype.*int64"),
    ]
    for xs, ts, match in cases:
        with pytest.raises(xpl.LayerInputError, match=match):
            full_batch_step(net, opt, da.from_array(xs, chunks=20), da.from_array(ts, chunks=20))
    _unchanged(net, opt, before)
    onehot = np.eye(4, dtype=np.float32)[t]  # one-hot rows are labels too
    full_batch_step(net, opt, da.from_array(x, chunks=20), da.from_array(onehot, chunks=20))
    assert opt.iter == 1


def test_a_nan_input_row_updates_nothing() -> None:
    da = pytest.importorskip("dask.array")
    from xplayers.parallel import full_batch_step

    x, t = _data(60)
    x[7] = np.nan
    net = TwoLayerNet(20, 16, 4, seed=0, dtype="float32")
    opt, before = _start(net)
    with pytest.raises(xpl.TrainingError, match=r"loss over all rows is nan.*nothing was updated"):
        full_batch_step(net, opt, da.from_array(x, chunks=20), da.from_array(t, chunks=20))
    _unchanged(net, opt, before)


@pytest.mark.parametrize("retries", [-1, 1.5, "2", True, None])
def test_retries_must_be_a_count(retries: Any, cluster: Any) -> None:
    da = pytest.importorskip("dask.array")
    from xplayers.parallel import chunked_gradient

    x, t = _data(60)
    net = TwoLayerNet(20, 16, 4, seed=0, dtype="float32")
    with pytest.raises(xpl.LayerInputError, match=r"'retries': expected an integer >= 0"):
        chunked_gradient(net, da.from_array(x, chunks=20), t, client=cluster, retries=retries)


def test_a_closed_cluster_or_no_client_is_refused() -> None:
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    from xplayers.parallel import full_batch_step

    x, t = _data(60)
    net = TwoLayerNet(20, 16, 4, seed=0, dtype="float32")
    opt, before = _start(net)
    xs = da.from_array(x, chunks=20)
    with pytest.raises(xpl.LayerInputError, match=r"'client': expected a dask.distributed.Client"):
        full_batch_step(net, opt, xs, t, client="tcp://127.0.0.1:8786")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as c,
        distributed.Client(c) as client,
    ):
        c.close()  # the cluster goes, the client object stays
        with pytest.raises(ClusterError, match="the client is closed"):
            full_batch_step(net, opt, xs, t, client=client)
    _unchanged(net, opt, before)


def test_a_block_rewritten_during_training_is_named(tmp_path: Path) -> None:
    pytest.importorskip("dask.array")
    from xplayers.parallel import chunked_gradient

    x, t = _data(300)
    (tmp_path / "x").mkdir()
    for i in range(0, 300, 100):
        np.save(tmp_path / "x" / f"{i:04d}.npy", x[i : i + 100])
    source = NpyFolder(tmp_path / "x")
    net = TwoLayerNet(20, 16, 4, seed=0, dtype="float32")
    chunked_gradient(net, source, t)
    np.save(tmp_path / "x" / "0100.npy", x[:150])  # 150 rows where 100 were
    with pytest.raises(xpl.DatasetError, match=r"0100\.npy' changed after the folder was opened"):
        chunked_gradient(net, source, t)


@pytest.mark.parametrize("address", ["garbage", "tcp://", "foo://host:1", "tcp://[::1"])
def test_cli_refuses_a_garbage_scheduler_address(
    address: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from xplayers.cli import main

    assert main([*_FULL, "--full-batch", "--scheduler", address]) == 2  # refused when parsed
    err = capfd.readouterr().err
    assert err.startswith("xplayers: error: argument --scheduler: expected a scheduler address")
    assert f"got {address!r}" in err
    assert err.count("\n") == 1


SCHEDULER = """
import time, distributed
with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                              protocol="tcp", dashboard_address=":0") as cluster:
    print(cluster.scheduler.address, flush=True)
    time.sleep(300)
"""


@pytest.mark.parametrize("mode", ["--full-batch", "--backend=dask"])
def test_cli_scheduler_killed_mid_run_is_one_line(
    mode: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The scheduler process is killed while training uses it: one clean line, exit 1."""
    pytest.importorskip("distributed")
    from xplayers import training
    from xplayers.cli import main
    from xplayers.datasets import streaming

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", SCHEDULER], stdout=subprocess.PIPE, text=True, env=env
    )
    with reaped(child):
        assert child.stdout is not None
        address = child.stdout.readline().strip()
        calls: list[int] = []
        step, read = training.full_batch_step, streaming._LazyRows.read

        def kill_at_the_second_call(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 2:
                child.kill()
                child.wait()
            return (step if mode == "--full-batch" else read)(*args, **kwargs)

        if mode == "--full-batch":
            monkeypatch.setattr(training, "full_batch_step", kill_at_the_second_call)
        else:
            monkeypatch.setattr(streaming._LazyRows, "read", kill_at_the_second_call)
        assert main([*_FULL, mode, "--scheduler", address]) == 1
    assert len(calls) >= 2  # the scheduler did go away mid-run
    err = capfd.readouterr().err
    assert err.startswith("xplayers: error: "), err
    assert "cluster" in err  # it says what failed
    assert "Traceback" not in err
    assert err.count("\n") == 1, err


def test_params_and_chunk_sizes_are_checked() -> None:
    da = pytest.importorskip("dask.array")
    from xplayers.parallel import chunked_gradient, to_chunked

    x, t = _data(60)
    xs = da.from_array(x, chunks=20)
    net = TwoLayerNet(20, 16, 4, seed=0, dtype="float32")
    other = TwoLayerNet(20, 8, 4, seed=0, dtype="float32").params
    for params in ({"W1": net.params["W1"]}, other):
        with pytest.raises(xpl.LayerInputError, match=r"'params': expected the network's param"):
            chunked_gradient(net, xs, t, params=params)
    for rows in (0, -3, 1.5, (20, 0, 40)):
        with pytest.raises(xpl.LayerInputError, match=r"to_chunked: argument 'rows'"):
            to_chunked(x, rows)  # type: ignore[arg-type]
    with pytest.raises(
        xpl.LayerInputError, match=r"Affine.forward: argument 'x': expected at least 2"
    ):
        chunked_gradient(net, da.from_array(x[:, 0], chunks=20), t)
