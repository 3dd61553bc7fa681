"""Streaming training from chunked datasets: block order, memory bound, refusals, out of memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.datasets import BatchLoader, iterate_batches
from xplayers.datasets.streaming import NpyFolder, Rows, StreamLoader, is_chunked, open_rows
from xplayers.errors import LayerInputError
from xplayers.network import TwoLayerNet
from xplayers.optim import SGD
from xplayers.training import evaluate, train

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.backends("numpy", "dask")


def _folder(path: Path, sizes: list[int], d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Write blocks of rows numbered 0..N-1 (x[:, 0] is the row id) and their labels."""
    path.mkdir()
    start, xs, ts = 0, [], []
    for i, n in enumerate(sizes):
        x = np.repeat(np.arange(start, start + n, dtype=np.float64)[:, None], d, axis=1)
        np.save(path / f"part-{i:04d}.npy", x)
        xs.append(x)
        ts.append(np.arange(start, start + n) % 4)
        start += n
    return np.concatenate(xs), np.concatenate(ts)


def _ids(batches: list[tuple[Any, Any]]) -> list[int]:
    return [int(v) for xb, _ in batches for v in xpl.to_numpy(xb)[:, 0]]


def test_npy_folder_opens_as_one_array(tmp_path: Path) -> None:
    x, _ = _folder(tmp_path / "x", [5, 3, 4])
    rows = open_rows(tmp_path / "x")
    assert isinstance(rows, NpyFolder)
    assert is_chunked(str(tmp_path / "x"))
    assert rows.shape == (12, 3)
    assert rows.cuts == (0, 5, 8, 12)
    np.testing.assert_array_equal(rows[5:8], x[5:8])


def test_npy_folder_refuses_mismatched_files(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    np.save(tmp_path / "x" / "a.npy", np.zeros((2, 3)))
    np.save(tmp_path / "x" / "b.npy", np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"b\.npy.*shape \(2, 4\)"):
        NpyFolder(tmp_path / "x")


def test_every_row_once_per_epoch_in_block_local_order(tmp_path: Path) -> None:
    sizes = [7, 5, 9, 3]
    _, t = _folder(tmp_path / "x", sizes)
    loader = StreamLoader(tmp_path / "x", t, batch_size=4, seed=0)
    assert len(loader) == 6
    cuts = np.cumsum([0, *sizes])
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [int(tb.shape[0]) for _, tb in batches] == [4, 4, 4, 4, 4, 4]
        ids = _ids(batches)
        assert sorted(ids) == list(range(24))
        for xb, tb in batches:  # labels travel with their rows
            np.testing.assert_array_equal(xpl.to_numpy(tb), xpl.to_numpy(xb)[:, 0] % 4)
        blocks = np.searchsorted(cuts, ids, side="right") - 1
        # each block is visited as one run: the block index changes only B - 1 times
        assert int(np.count_nonzero(np.diff(blocks))) == len(sizes) - 1
        epochs.append(ids)
    assert epochs[0] != epochs[1]  # a new order every epoch
    again = StreamLoader(tmp_path / "x", t, batch_size=4, seed=0)
    assert _ids(list(again)) == epochs[0]  # and the same sequence for the same seed


def test_stored_order_and_drop_last(tmp_path: Path) -> None:
    _, t = _folder(tmp_path / "x", [3, 3, 4])
    loader = StreamLoader(tmp_path / "x", t, batch_size=4, shuffle=False, drop_last=True)
    assert len(loader) == 2
    assert _ids(list(loader)) == list(range(8))


def test_dask_and_zarr_sources(tmp_path: Path) -> None:
    da = pytest.importorskip("dask.array")
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    z = zarr.open_array(
        str(tmp_path / "x.zarr"), mode="w", shape=x.shape, chunks=(16, 4), dtype=x.dtype
    )
    z[:] = x
    sources = [
        (da.from_array(x, chunks=(12, 2)), da.from_array(t, chunks=20)),
        (z, t),
        (str(tmp_path / "x.zarr"), t),
    ]
    for xs, ts in sources:
        loader = StreamLoader(xs, ts, batch_size=8, seed=1)
        got = [(xpl.to_numpy(xb), xpl.to_numpy(tb)) for xb, tb in loader]
        rows = np.concatenate([g[0] for g in got])
        labels = np.concatenate([g[1] for g in got])
        order = np.lexsort(rows.T[::-1])
        expect = np.lexsort(x.T[::-1])
        np.testing.assert_array_equal(rows[order], x[expect])
        np.testing.assert_array_equal(labels[order], t[expect])


class _Counting(Rows):
    """Blocks of a host array, counting how many are alive at once."""

    def __init__(self, a: np.ndarray, step: int) -> None:
        self.a, self.shape, self.dtype = a, a.shape, a.dtype
        self.cuts = (*range(0, a.shape[0], step), a.shape[0])
        self.alive = 0
        self.most = 0
        self.lock = threading.Lock()

    def read(self, start: int, stop: int) -> Any:
        import weakref

        out = np.array(self.a[start:stop])
        with self.lock:
            self.alive += 1
            self.most = max(self.most, self.alive)
        weakref.finalize(out, self._gone)
        return out

    def _gone(self) -> None:
        with self.lock:
            self.alive -= 1


@pytest.mark.parametrize("prefetch", [1, 2])
def test_at_most_prefetch_plus_one_blocks_held(prefetch: int) -> None:
    x = _Counting(np.arange(400.0).reshape(200, 2), 10)
    t = _Counting(np.arange(200) % 3, 10)
    loader = StreamLoader(x, t, batch_size=7, seed=0, prefetch=prefetch)
    net = TwoLayerNet(2, 4, 3, seed=0)
    for xb, tb in loader:
        net.loss(xb, tb)
    assert 1 <= x.most <= prefetch + 1
    assert t.most <= prefetch + 1
    assert x.alive == 0


def test_a_read_error_reaches_the_training_loop() -> None:
    class Broken(_Counting):
        def read(self, start: int, stop: int) -> Any:
            if start >= 20:
                raise OSError("disk gone")
            return super().read(start, stop)

    x = Broken(np.zeros((40, 2)), 10)
    with pytest.raises(OSError, match="disk gone"):
        list(StreamLoader(x, np.zeros(40, dtype=int), batch_size=5, shuffle=False))


def test_random_rows_of_a_dask_array_are_refused() -> None:
    da = pytest.importorskip("dask.array")
    x, t = da.zeros((10, 2), chunks=5), da.zeros(10, dtype=int, chunks=5)
    for call in (
        lambda: BatchLoader(x, t, 2),
        lambda: iterate_batches(x, np.zeros(10), 2),
    ):
        with pytest.raises(LayerInputError, match=r"lazy array.*streams it block by block"):
            call()


def test_train_and_evaluate_stream_a_chunked_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    t = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    (tmp_path / "x").mkdir()
    for i in range(0, 300, 64):
        np.save(tmp_path / "x" / f"{i:05d}.npy", x[i : i + 64])
    net = TwoLayerNet(6, 16, 3, weight_init_std=0.3, seed=0, dtype="float32")
    history = train(net, SGD(lr=0.5), (tmp_path / "x", t), (x, t), epochs=4, batch_size=20)
    assert history.iteration[-1] == 4 * 15
    assert history.train_acc[-1] > 0.8
    result = evaluate(net, tmp_path / "x", t)
    assert result["samples"] == 300
    assert result["accuracy"] == pytest.approx(history.train_acc[-1])
    in_memory = evaluate(net, x, t)
    assert result["accuracy"] == in_memory["accuracy"]
    assert result["loss"] == pytest.approx(in_memory["loss"], rel=1e-6)


OUT_OF_MEMORY = """
import json, resource, sys
import numpy as np
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from xplayers.network import TwoLayerNet
from xplayers.optim import SGD
from xplayers.training import train
folder = sys.argv[1]
t = np.load(folder + "/t.npy")
try:
    np.ones(limit // 8)  # the cap is real: the whole dataset could never be held
    sys.exit("the address-space limit did not hold")
except MemoryError:
    pass
def high_water():  # bytes; ru_maxrss may still hold the parent's peak from before exec
    with open("/proc/self/status") as f:
        return 1024 * int(next(l for l in f if l.startswith("VmHWM")).split()[1])
import time
before = high_water()
start = time.perf_counter()
net = TwoLayerNet(int(sys.argv[3]), 32, 10, weight_init_std=0.05, seed=0, dtype="float32")
history = train(net, SGD(lr=0.1), (folder + "/x", t), epochs=1, batch_size=1000)
peak = high_water()
print(json.dumps({"iterations": history.iteration[-1], "acc": history.train_acc[-1],
                  "grown": peak - before, "seconds": time.perf_counter() - start}))
"""


def test_trains_on_a_dataset_three_times_the_memory_limit(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The process may address 320 MiB; the dataset on disk is 3x that (960 MiB)."""
    pytest.importorskip("resource")
    raw = request.config.getoption("--backends")
    if raw and "dask" not in raw.split(","):
        pytest.skip("runs once, in the dask session (--backends without dask)")
    limit = 320 * 2**20
    d, rows_per_block = 256, 8192  # 8 MiB blocks of float32
    block_bytes = rows_per_block * d * 4
    blocks = 3 * limit // block_bytes
    (tmp_path / "x").mkdir()
    rng = np.random.default_rng(0)
    labels = []
    for i in range(blocks):
        t = rng.integers(0, 10, rows_per_block)
        x = rng.standard_normal((rows_per_block, d), dtype=np.float32)
        x[np.arange(rows_per_block), t] += 3.0  # learnable: the label's column stands out
        np.save(tmp_path / "x" / f"{i:05d}.npy", x)
        labels.append(t)
    np.save(tmp_path / "t.npy", np.concatenate(labels))
    assert sum(f.stat().st_size for f in (tmp_path / "x").iterdir()) >= 3 * limit
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("XPLAYERS_BACKEND", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(OUT_OF_MEMORY), str(tmp_path), str(limit), str(d)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    print(result)
    assert result["iterations"] == blocks * rows_per_block // 1000 + 1
    assert result["acc"] > 0.5
    # prefetch 1: two blocks, plus the batches in flight and the model (a few MiB)
    assert result["grown"] <= 2 * block_bytes + 48 * 2**20, result


def test_cli_trains_from_a_dataset_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xplayers.cli import main

    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        (tmp_path / part / "x").mkdir(parents=True)
        t = rng.integers(0, 10, 200)
        x = rng.normal(size=(200, 64)).astype(np.float32)
        x[np.arange(200), t] += 4.0
        for i in range(0, 200, 64):
            np.save(tmp_path / part / "x" / f"{i:04d}.npy", x[i : i + 64])
        np.save(tmp_path / part / "t.npy", t)
    argv = ["train", "--data", str(tmp_path / "train"), "--epochs", "3", "--quiet"]
    assert main([*argv, "--test-data", str(tmp_path / "test")]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(argv) == 0  # no test set: the training accuracy only
    assert capsys.readouterr().out.startswith("(train ")
    assert main(["train", "--data", str(tmp_path), "--epochs", "1"]) == 1
    assert "has no 'x'" in capsys.readouterr().err


def test_cli_backend_dask_streams_into_a_numpy_model(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("dask.array")
    from xplayers.cli import main

    assert main(["train", "--backend", "dask", "--epochs", "1", "--hidden", "8"]) == 0
    out, err = capsys.readouterr()
    assert "trains on NumPy in memory" in err
    assert "numpy:cpu" in out


class _StopError(Exception):
    pass


def test_resume_from_a_checkpoint_while_streaming(tmp_path: Path) -> None:
    from xplayers.optim import Adam

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    t = (x[:, 0] > 0).astype(np.int64)
    (tmp_path / "x").mkdir()
    for i in range(0, 300, 70):
        np.save(tmp_path / "x" / f"{i:05d}.npy", x[i : i + 70])
    data = (tmp_path / "x", t)
    kwargs: dict[str, Any] = {"epochs": 3, "batch_size": 32, "eval_every": 4, "seed": 3}

    def net() -> TwoLayerNet:
        return TwoLayerNet(6, 8, 2, weight_init_std=0.3, seed=0, dtype="float32")

    whole = net()
    expected = train(whole, Adam(lr=0.01), data, **kwargs)

    def stop(history: Any) -> None:
        if len(history) == 4:  # iteration 16: six batches into the second epoch
            raise _StopError

    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(_StopError):
        train(net(), Adam(lr=0.01), data, checkpoint=ckpt, callback=stop, **kwargs)
    resumed_net = net()
    resumed = train(resumed_net, Adam(lr=0.01), data, resume=ckpt, **kwargs)
    for k, v in whole.params.items():
        np.testing.assert_array_equal(resumed_net.params[k], v)
    assert resumed.train_loss == expected.train_loss


# --------------------------------------------------------------------------- checked before the first update


def _labelled_blocks(path: Path, blocks: int, rows: int, bad: int | None) -> np.ndarray:
    """Write `blocks` files of inputs to `path`/x and their labels (0..9) to `path`/t.

    The labels of the last block get the value `bad` in one row, when given.
    """
    rng = np.random.default_rng(0)
    (path / "x").mkdir()
    (path / "t").mkdir()
    labels = []
    for i in range(blocks):
        t = rng.integers(0, 10, rows)
        if bad is not None and i == blocks - 1:
            t[rows // 2] = bad
        np.save(path / "x" / f"part-{i:04d}.npy", rng.normal(size=(rows, 4)).astype(np.float32))
        np.save(path / "t" / f"part-{i:04d}.npy", t)
        labels.append(t)
    return np.concatenate(labels)


@pytest.mark.backends("numpy", "torch", "jax", "dask", "array_api_strict")
@pytest.mark.parametrize("bad", [10, -1])
@pytest.mark.parametrize("stored", ["folder", "memory"])
def test_a_bad_label_in_the_last_block_is_refused_before_any_update(
    backend: Any, tmp_path: Path, bad: int, stored: str
) -> None:
    t = _labelled_blocks(tmp_path, 40, 20, bad)
    labels: Any = tmp_path / "t" if stored == "folder" else t
    net = TwoLayerNet(4, 8, 10, seed=0, dtype="float32")
    before = {k: backend.to_numpy(v).copy() for k, v in net.params.items()}
    opt = SGD(lr=0.1)
    with pytest.raises(LayerInputError) as caught:
        train(net, opt, (tmp_path / "x", labels), epochs=2, batch_size=16)
    message = str(caught.value)
    assert f"labels from {min(bad, 0)} to {max(bad, 9)}" in message
    assert f"the first out of range is {bad}, at row 790" in message
    if stored == "folder":
        assert "rows 780 to 799 (block 40 of 40, file" in message
        assert "part-0039.npy" in message
    for k, v in before.items():  # not one update
        np.testing.assert_array_equal(backend.to_numpy(net.params[k]), v)


def test_float_labels_of_streamed_data_are_refused(tmp_path: Path) -> None:
    t = _labelled_blocks(tmp_path, 3, 10, None)
    net = TwoLayerNet(4, 8, 10, seed=0, dtype="float32")
    with pytest.raises(LayerInputError, match=r"integer labels.*dtype float64"):
        train(net, SGD(lr=0.1), (tmp_path / "x", t.astype(np.float64)), epochs=1)
    test_set = (tmp_path / "x", t + 5)  # a streamed test set is checked as well
    with pytest.raises(LayerInputError, match=r"'test_data'.*labels from 5 to 14"):
        train(net, SGD(lr=0.1), (tmp_path / "x", t), test_set, epochs=1)


def test_a_block_rewritten_with_more_rows_is_named(tmp_path: Path) -> None:
    _, t = _folder(tmp_path / "x", [6, 6, 6])
    files = sorted((tmp_path / "x").glob("*.npy"))

    def grow(history: Any) -> None:  # every file gets more rows once training has started
        for f in files:
            np.save(f, np.zeros((9, 3)))

    net = TwoLayerNet(3, 4, 4, seed=0)
    with pytest.raises(xpl.DatasetError, match=r"part-000\d\.npy' changed after the folder"):
        train(net, SGD(lr=0.1), (tmp_path / "x", t), epochs=3, batch_size=6, callback=grow)
    rows = NpyFolder(tmp_path / "x")
    np.save(files[1], np.zeros((2, 3)))  # fewer rows: the partial read (a mapping) too
    with pytest.raises(xpl.DatasetError, match=r"part-0001\.npy' changed.*shape \(2, 3\)"):
        rows.read(10, 12)


def test_a_read_of_another_shape_is_named() -> None:
    class Short(_Counting):
        def read(self, start: int, stop: int) -> Any:
            return super().read(start, stop)[:-1]  # one row short

    x = Short(np.zeros((20, 2)), 10)
    with pytest.raises(xpl.DatasetError, match=r"rows 0 to 9 \(block 1 of 2\): read \(9, 2\)"):
        list(StreamLoader(x, np.zeros(20, dtype=int), batch_size=5, shuffle=False))


def _prefetching() -> list[threading.Thread]:
    return [th for th in threading.enumerate() if th.name == "xplayers-prefetch"]


def test_kept_errors_hold_no_thread_and_no_block() -> None:
    """Errors kept by the caller (their tracebacks keep the frames) release the epoch's reads."""
    import gc

    class Blocks(_Counting):  # counts whole blocks: not the row train() predicts to learn C
        def read(self, start: int, stop: int) -> Any:
            return np.array(self.a[start:stop]) if stop - start == 1 else super().read(start, stop)

    class Broken(Blocks):
        def read(self, start: int, stop: int) -> Any:
            if start >= 40:
                raise OSError("disk gone")
            return super().read(start, stop)

    data = np.full((80, 2), np.nan)  # the first loss is NaN: TrainingError, the epoch under way
    kept: list[BaseException] = []
    sources = []
    for source in (Blocks(data, 10), Broken(np.ones((80, 2)), 10)):
        labels = Blocks(np.arange(80) % 3, 10)
        sources += [source, labels]
        for _ in range(3):
            net = TwoLayerNet(2, 4, 3, seed=0)
            with pytest.raises((xpl.TrainingError, OSError)) as caught:
                train(net, SGD(lr=0.1), (source, labels), epochs=2, batch_size=5, seed=None)
            kept.append(caught.value)
    gc.collect()
    assert len(kept) == 6
    assert not _prefetching()
    assert [s.alive for s in sources] == [0, 0, 0, 0]
