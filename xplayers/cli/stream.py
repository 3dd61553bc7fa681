"""``xplayers train`` on data larger than memory: --data, --test-data, --scheduler, --full-batch.

Dask-array parameters cost a scheduler run per step (far more than a NumPy
step of the book's networks, see ``docs/performance.md``), so
``--backend dask`` keeps the model on NumPy in memory and streams the data
from Dask arrays block by block (:mod:`xplayers.datasets.streaming`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, cast

from xplayers.backend import record
from xplayers.cli._common import PROG, load_data, scheduler_address, usage
from xplayers.datasets.streaming import open_dataset
from xplayers.errors import ClusterError, MissingDependencyError, XplayersError
from xplayers.parallel import to_chunked

__all__ = ["add_stream_options", "cluster", "route_backend", "training_data"]

#: Rows per block when --backend dask streams a data set loaded in memory.
BLOCK_ROWS = 512


def add_stream_options(t: argparse.ArgumentParser) -> None:
    """Add --data, --test-data and --scheduler to the ``train`` parser `t`."""
    t.add_argument(
        "--data",
        metavar="DIR",
        help="stream the training set from DIR instead of --dataset: inputs x (x.zarr or a "
        "folder x/ of .npy files) and labels t (t.zarr, t/ or t.npy), read block by block",
    )
    t.add_argument("--test-data", metavar="DIR", help="with --data: a test set laid out the same")
    t.add_argument(
        "--scheduler",
        type=scheduler_address,
        metavar="ADDRESS",
        help="read the data on this dask.distributed scheduler (e.g. tcp://host:8786); with "
        "--full-batch, compute the gradients on its workers",
    )
    t.add_argument(
        "--full-batch",
        action="store_true",
        help="one update per epoch on the gradient of all training rows, computed chunk by "
        "chunk on Dask (on the --scheduler cluster when given, else local threads)",
    )


def route_backend(args: argparse.Namespace, name: str, device: Any) -> tuple[str, Any]:
    """The backend the model trains on: NumPy instead of Dask, the data then streamed."""
    if args.test_data is not None and args.data is None:
        usage(args, "--test-data needs --data")
    if args.full_batch and args.iterations is not None:
        usage(args, "--iterations does not apply to --full-batch (one update per epoch)")
    args.stream = record(name).lazy  # Dask: train in memory, stream the data
    if not args.stream:
        return name, device
    if not args.quiet:
        print(
            f"{PROG}: --backend dask: the model trains on NumPy in memory and the data are "
            "streamed from Dask arrays block by block (Dask-array parameters cost a "
            "scheduler run per step); see docs/larger-than-memory.md",
            file=sys.stderr,
        )
    return "numpy", None


def training_data(args: argparse.Namespace, test_size: float) -> tuple[Any, Any]:
    """The training and test sets: streamed from --data, else loaded (and streamed for dask)."""
    if args.data is not None:
        test = None if args.test_data is None else open_dataset(args.test_data)
        return open_dataset(args.data), test
    train_set, test_set = load_data(args.dataset, args.mnist_dir, test_size, args.seed, args.dtype)
    if getattr(args, "stream", False):
        train_set = (to_chunked(train_set[0], BLOCK_ROWS), to_chunked(train_set[1], BLOCK_ROWS))
    return train_set, test_set


@contextlib.contextmanager
def cluster(address: str | None) -> Iterator[Any]:
    """A dask.distributed client of the scheduler at `address`, current in the block (or None)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError as exc:
        raise MissingDependencyError(
            f"--scheduler needs dask.distributed ({exc}); install it with: "
            'pip install "xplayers[dask]" (from a checkout: pip install ".[dask]")'
        ) from exc
    with _client_errors_unlogged():
        try:
            client = cast(Any, Client)(address, timeout=10)  # untyped
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"--scheduler {address}: cannot connect ({exc})") from exc
        except ValueError as exc:  # dask.distributed's word for an address it cannot parse
            raise ClusterError(f"--scheduler {address!r}: not a scheduler address ({exc})") from exc
        with client:
            try:
                yield client
            except Exception as exc:
                if isinstance(exc, XplayersError) or not _from_distributed(exc):
                    raise
                raise ClusterError(
                    f"--scheduler {address}: the cluster failed during the run "
                    f"({type(exc).__name__}: {exc})"
                ) from exc


@contextlib.contextmanager
def _client_errors_unlogged() -> Iterator[None]:
    """Keep dask.distributed's client from logging its connection errors, with tracebacks.

    When the scheduler goes away, the client logs each failed reconnection
    on standard error; the command reports the failure itself, on one line.
    """
    logger = logging.getLogger("distributed.client")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _from_distributed(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, is dask.distributed's own."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__module__.split(".")[0] == "distributed":
            return True
        seen = seen.__cause__ or seen.__context__
    return False
