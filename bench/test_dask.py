"""Data larger than memory: streaming training and data-parallel gradients (issue 12's rows).

All on one dataset written once per session: a folder of ``.npy`` blocks of
784 float32 features (10,000 rows each; 40 blocks, 1.25 GB, or 2 blocks of
5,000 in a quick run) with labels in memory.

- ``streaming`` against ``in memory``: one epoch of ``TwoLayerNet(784, 100, 10)``
  SGD steps at batch 100 and 1000, fed by
  :class:`~xplayers.datasets.streaming.StreamLoader` from the files or by
  :class:`~xplayers.datasets.BatchLoader` from the same rows held in memory
  (goal: streaming at least 0.8x in memory);
- the data-parallel gradient (:func:`xplayers.parallel.chunked_gradient`)
  over all rows on a ``LocalCluster`` of 1 and 2 worker processes, in GB/s
  of input read, against ``np.load`` of the same files and against one
  block's gradient computed in memory (goal: at least 0.8x the smaller of
  the read bandwidth and the per-block rate times the workers).

Each row's ``extra_info`` also holds ``peak_mib``: the peak of traced host
allocations (``tracemalloc``, which NumPy reports to) during one untimed call,
for the client process.
"""

from __future__ import annotations

import itertools
import tracemalloc
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

QUICK_BLOCKS, FULL_BLOCKS = (2, 5_000), (40, 10_000)
TABLE_STREAM = "Streaming training from .npy blocks vs the same rows in memory (samples/s)"
TABLE_GRAD = "Data-parallel gradient over all rows vs reading the files (GB/s of input)"


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory, quick: bool) -> SimpleNamespace:
    blocks, rows = QUICK_BLOCKS if quick else FULL_BLOCKS
    root = tmp_path_factory.mktemp("dask-bench")
    (root / "x").mkdir()
    rng = np.random.default_rng(0)
    labels = []
    for i in range(blocks):
        t = rng.integers(0, 10, rows)
        x = rng.random((rows, 784), dtype=np.float32)
        np.save(root / "x" / f"{i:05d}.npy", x)
        labels.append(t)
    t = np.concatenate(labels)
    nbytes = blocks * rows * 784 * 4
    return SimpleNamespace(folder=root / "x", t=t, n=blocks * rows, rows=rows, nbytes=nbytes)


def _peak_mib(fn: Any) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _net() -> Any:
    from xplayers.network import TwoLayerNet

    return TwoLayerNet(784, 100, 10, weight_init_std=0.01, seed=0, dtype="float32")


@pytest.mark.parametrize("size", [100, 1000], ids=["N100", "N1000"])
@pytest.mark.parametrize("source", ["in memory", "streaming"])
def test_streaming_epoch(measure: Any, dataset: SimpleNamespace, size: int, source: str) -> None:
    import xplayers as xpl
    from xplayers.datasets import BatchLoader
    from xplayers.datasets.streaming import NpyFolder, StreamLoader
    from xplayers.optim import SGD

    with xpl.use_backend("numpy"):
        if source == "in memory":
            rows = NpyFolder(dataset.folder)
            x = np.concatenate([rows.read(a, b) for a, b in itertools.pairwise(rows.cuts)])
            loader: Any = BatchLoader(x, dataset.t, size, seed=0)
        else:
            loader = StreamLoader(dataset.folder, dataset.t, size, seed=0, prefetch=1)
        net, opt = _net(), SGD(lr=0.1)

        def epoch() -> None:
            for xb, tb in loader:
                net.train_step(xb, tb, opt)

        peak = _peak_mib(epoch)
        goals = []
        if source == "streaming":
            goal = f"streaming training at least 0.8x in memory (batch {size})"
            goals = [{"goal": goal, "vs": "in memory", "measure": "speed", "min": 0.8}]
        measure(
            epoch,
            f"streaming epoch N{size}",
            source,
            rounds=1,
            warmup=1,
            table=TABLE_STREAM,
            row=f"batch {size}",
            samples=dataset.n,
            peak_mib=peak,
            block_mib=dataset.rows * 784 * 4 / 2**20,
            goals=goals,
        )


def test_read_bandwidth(measure: Any, dataset: SimpleNamespace) -> None:
    files = sorted(dataset.folder.glob("*.npy"))

    def read() -> None:
        for f in files:
            np.load(f)

    measure(
        read,
        "dask gradient",
        "np.load read",
        rounds=1,
        warmup=1,
        table=TABLE_GRAD,
        row="np.load of every block",
        bytes=dataset.nbytes,
        peak_mib=_peak_mib(read),
    )


def test_one_block_gradient(measure: Any, dataset: SimpleNamespace) -> None:
    from threadpoolctl import threadpool_limits

    from xplayers.network.chain import Chain

    x = np.load(sorted(dataset.folder.glob("*.npy"))[0])
    t = dataset.t[: x.shape[0]]
    net = _net()
    f, params = Chain.from_network(net), dict(net.params)
    # one BLAS thread, as in a worker process (dask.distributed's nanny sets
    # OPENBLAS_NUM_THREADS=1 for the workers it starts): the rate of one worker
    with threadpool_limits(1, user_api="blas"):
        measure(
            lambda: f.loss_and_grads(params, {}, x, t),
            "dask gradient",
            "one block's gradient in memory",
            table=TABLE_GRAD,
            row="one block's gradient on one thread (compute rate)",
            bytes=x.nbytes,
        )


@pytest.mark.parametrize("workers", [1, 2], ids=["1 worker", "2 workers"])
def test_chunked_gradient(
    measure: Any, dataset: SimpleNamespace, workers: int, quick: bool
) -> None:
    distributed = pytest.importorskip("distributed")
    from xplayers.parallel import chunked_gradient

    net = _net()
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):

        def grad() -> None:
            chunked_gradient(net, dataset.folder, dataset.t, client=client)

        goal = (
            "data-parallel gradient at least 0.8x min(read bandwidth, one block's rate x workers)"
        )
        measure(
            grad,
            "dask gradient",
            f"data-parallel gradient, {workers} worker{'s' * (workers > 1)}",
            rounds=1 if quick else 3,
            warmup=1,
            table=TABLE_GRAD,
            row=f"chunked_gradient on {workers} worker process{'es' * (workers > 1)}",
            bytes=dataset.nbytes,
            workers=workers,
            peak_mib=_peak_mib(grad),
            goals=[
                {
                    "goal": goal,
                    "vs_min": [["np.load read", 1], ["one block's gradient in memory", workers]],
                    "min": 0.8,
                }
            ],
        )
