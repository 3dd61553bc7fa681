r"""Data-parallel gradients: one task per chunk on Dask workers, summed in a tree.

For large-batch and full-batch training on data larger than one machine's
memory, :func:`chunked_gradient` computes the loss and gradient of a network
over all rows of a chunked dataset as the row-weighted sum of per-chunk
gradients:

.. math::
    L = \sum_i \frac{n_i}{N} L_i, \qquad
    \partial L = \sum_i \frac{n_i}{N}\,\partial L_i

where chunk :math:`i` holds :math:`n_i` of the :math:`N` rows. The task graph
has one task per chunk, which reads the chunk and computes its weighted
gradient with :meth:`xplayers.stateless.Stateless.grad` (Dask fuses the read
into it), then a tree reduction (``split_every`` gradients per node, so the
depth grows as :math:`\log B`). With a ``dask.distributed.Client`` the
parameters are scattered once per call (broadcast to every worker), and
each chunk's task runs where its chunk is read; only gradient vectors (one
per task, :math:`4 + 8P` bytes for :math:`P` parameters) travel between
workers. The scheduler queues the chunk tasks, so a worker holds about as
many chunks as it has threads, and never more than it works on.

Chunks are computed on the array library they are read into: CuPy chunks
(``dask.config.set({"array.backend": "cupy"})``, or ``map_blocks(cupy.asarray)``)
compute on the GPU of their worker; the result is always host (NumPy)
float64, summed in float64, and cast back to the parameters' dtype.

:func:`full_batch_step` is one optimizer step from it, with the model held
in memory on the client.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, MutableMapping
from typing import Any

import array_api_compat
import numpy as np
import numpy.typing as npt

from xplayers._backend import RECORDS, is_lazy, namespace, to_numpy
from xplayers._validation import describe, fail, positive_int
from xplayers.datasets.streaming import Rows, is_chunked, open_pair, open_rows, pair_cuts
from xplayers.errors import ClusterError
from xplayers.stateless import Stateless, stateless

__all__ = ["chunked_gradient", "full_batch_step", "to_chunked"]


def _chunked_xp() -> Any:
    """The namespace of the lazy, chunked backend (Dask's array module), from its record."""
    lazy = next(r for r in RECORDS.values() if r.lazy)
    return lazy.namespace()


def to_chunked(a: Any, rows: int | tuple[int, ...] | None = None) -> Any:
    """`a` as a Dask array chunked by rows only (a path, zarr array or Dask array).

    Parameters
    ----------
    a : Dask array, zarr array, path of a zarr array or of a folder of ``.npy`` files
    rows : int or tuple of int, optional
        Rows per chunk (or each chunk's rows); default: the dataset's own blocks.
    """
    da = _chunked_xp()
    x: Any
    if is_lazy(a):
        x = a
    elif is_chunked(a):
        source = open_rows(a, where="to_chunked", arg="a")
        sizes = tuple(int(b - c) for c, b in itertools.pairwise(source.cuts))
        chunks = (sizes, *((s,) for s in source.shape[1:]))
        x = da.from_array(source, chunks=chunks, asarray=False, lock=False, meta=np.empty(0))
    else:
        host = np.asarray(a)
        x = da.from_array(host, chunks=(rows or -1, *(-1,) * (host.ndim - 1)))
    one: dict[int, Any] = dict.fromkeys(range(1, x.ndim), -1)
    if rows is not None:
        one[0] = rows
    return x.rechunk(one) if one else x


def _flat(loss: Any, grads: Mapping[str, Any], keys: tuple[str, ...]) -> npt.NDArray[np.float64]:
    parts = [np.reshape(to_numpy(loss), (1,))]
    parts += [np.reshape(to_numpy(grads[k]), (-1,)) for k in keys]
    return np.concatenate([p.astype(np.float64, copy=False) for p in parts])[None, :]


def _chunk_grad(
    xb: Any, tb: Any, params: Mapping[str, Any], f: Stateless, n_total: int
) -> npt.NDArray[np.float64]:
    """One chunk's weighted loss and gradient, flattened: shape ``(1, 1 + P)``, float64."""
    n = int(xb.shape[0])
    if n == 0:
        return np.zeros((1, 1 + sum(int(np.size(params[k])) for k in f.keys)))
    xp = namespace(xb)
    dev = array_api_compat.device(xb)
    local = {k: v if namespace(v) is xp else xp.asarray(v, device=dev) for k, v in params.items()}
    if not isinstance(tb, type(xb)) and namespace(tb) is not xp:
        tb = xp.asarray(tb, device=dev)
    loss, grads = f.grad(local, xb, tb, weight=n / n_total)
    return _flat(loss, grads, f.keys)


def chunked_gradient(
    network: Any,
    x: Any,
    t: Any,
    *,
    client: Any = None,
    split_every: int = 8,
    params: Mapping[str, Any] | None = None,
    retries: int = 1,
) -> tuple[float, dict[str, npt.NDArray[Any]]]:
    """The mean loss over all rows of ``(x, t)`` and its gradient, chunk by chunk on Dask.

    Parameters
    ----------
    network : TwoLayerNet, MultiLayerNet or Sequential
        Described with :func:`xplayers.stateless.stateless`; its parameters
        (of any backend) are copied to the host once per call.
    x, t : Dask array, zarr array, or path of a zarr array or ``.npy`` folder
        Inputs and labels with the same rows; `t` is re-chunked to `x`'s rows.
    client : dask.distributed.Client, optional
        Compute on its cluster (the parameters are scattered once, to every
        worker). Default: the current Dask scheduler (a client made current
        by ``Client(...)``, else local threads).
    split_every : int, default 8
        Gradients summed per node of the reduction tree.
    params : mapping of str to array, optional
        Use these parameters instead of the network's own.
    retries : int, default 1
        On a cluster, run the whole computation again this many times when
        it fails as a whole (every worker holding the parameters lost). A
        lost worker alone is handled by the scheduler, which runs its tasks
        again elsewhere (up to ``distributed.scheduler.allowed-failures``
        times per task).

    Raises
    ------
    xplayers.errors.ClusterError
        The cluster could not finish (workers lost beyond the retries); the
        message says why. Nothing is changed.

    Returns
    -------
    (loss, grads) : float and dict of str to numpy.ndarray
        The gradients have the parameters' shapes and dtype.

    Examples
    --------
    >>> import dask.array as da  # doctest: +SKIP
    >>> x, t = da.from_zarr("x.zarr"), da.from_zarr("t.zarr")  # doctest: +SKIP
    >>> loss, grads = chunked_gradient(net, x, t)  # doctest: +SKIP
    """
    where = "chunked_gradient"
    f = stateless(network)
    split = positive_int(where, "split_every", split_every)
    host = {k: to_numpy(v) for k, v in (params if params is not None else network.params).items()}
    size = _size(host)
    lazy = is_lazy(x)
    pair = None if lazy else _rows_pair(where, x, t)
    if client is None:
        parts = (
            _dask_parts(x, t, host, f, size)
            if pair is None
            else _rows_parts(pair, host, f, pair, size)
        )
        flat = parts.sum(axis=0, split_every=split).compute()
    else:
        flat = _on_cluster(client, host, pair, x, t, f, size, split, retries)
    return _unflat(np.asarray(flat), f, host)


def _on_cluster(
    client: Any,
    host: Mapping[str, Any],
    pair: tuple[Rows, Rows] | None,
    x: Any,
    t: Any,
    f: Stateless,
    size: int,
    split: int,
    retries: int,
) -> Any:
    """Scatter the parameters (and the sources) once to every worker, compute, clean up."""
    for attempt in range(retries + 1):
        shared: list[Any] = []
        try:
            shared = client.scatter([host, pair], broadcast=True, hash=False)
            params, source = shared
            if pair is None:
                parts = _dask_parts(x, t, params, f, size)
            else:
                parts = _rows_parts(source, params, f, pair, size)
            return client.compute(parts.sum(axis=0, split_every=split)).result()
        except Exception as exc:  # the cluster's own error types, whatever they are
            if not type(exc).__module__.startswith("distributed") or attempt == retries:
                if type(exc).__module__.startswith("distributed"):
                    raise ClusterError(
                        f"chunked_gradient: the cluster did not finish the gradient after "
                        f"{attempt + 1} attempt(s), so nothing was updated: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                raise
        finally:
            if shared:
                client.cancel(shared)
    raise AssertionError("unreachable")  # pragma: no cover


def _size(host: Mapping[str, Any]) -> int:
    return 1 + sum(int(np.size(v)) for v in host.values())


def _dask_parts(x: Any, t: Any, params: Any, f: Stateless, size: int) -> Any:
    """Per-chunk gradients of a Dask array: a task on each of its row chunks."""
    da = _chunked_xp()
    xs = to_chunked(x)
    if xs.shape[0] == 0:
        fail("chunked_gradient", "x", "at least one row", describe(x))
    rows = xs.chunks[0]
    if int(np.shape(t)[0]) != xs.shape[0]:
        fail("chunked_gradient", "t", f"{xs.shape[0]} rows like x", describe(t))
    ts = to_chunked(t, rows)
    n_total = int(xs.shape[0])
    parts = da.blockwise(
        _chunk_grad,
        "iz",
        xs,
        "i" + "abcdefgh"[: xs.ndim - 1],
        ts,
        "i" + "pqrs"[: ts.ndim - 1],
        params,
        None,
        f,
        None,
        n_total,
        None,
        new_axes={"z": size},
        adjust_chunks={"i": 1},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0)),
        token="xplayers-chunk-grad",
    )
    return parts


def _rows_pair(where: str, x: Any, t: Any) -> tuple[Rows, Rows]:
    pair = open_pair(where, "x, t", (x, t))
    if pair is None:
        fail(where, "x", "a Dask array, a zarr array, or a folder of .npy files", describe(x))
    return pair


def _span_grad(
    params: Mapping[str, Any],
    source: tuple[Rows, Rows],
    f: Stateless,
    n_total: int,
    block_id: tuple[int, int] | None = None,
) -> npt.NDArray[np.float64]:
    """Read one block of `source` and return its weighted gradient (one task per block)."""
    x, t = source
    cuts = pair_cuts(x, t)
    i = 0 if block_id is None else block_id[0]
    start, stop = cuts[i], cuts[i + 1]
    return _chunk_grad(x.read(start, stop), t.read(start, stop), params, f, n_total)


def _rows_parts(source: Any, params: Any, f: Stateless, pair: tuple[Rows, Rows], size: int) -> Any:
    """Per-block gradients of chunked rows: one task per block, which reads it."""
    da = _chunked_xp()
    blocks = len(pair_cuts(*pair)) - 1
    return da.map_blocks(
        _span_grad,
        params,
        source,
        f,
        int(pair[0].shape[0]),
        chunks=((1,) * blocks, (size,)),
        dtype=np.float64,
        meta=np.empty((0, 0)),
        token="xplayers-chunk-grad",
    )


def _unflat(
    flat: npt.NDArray[np.float64], f: Stateless, host: Mapping[str, npt.NDArray[Any]]
) -> tuple[float, dict[str, npt.NDArray[Any]]]:
    grads: dict[str, npt.NDArray[Any]] = {}
    start = 1
    for k in f.keys:
        ref = host[k]
        grads[k] = flat[start : start + ref.size].reshape(ref.shape).astype(ref.dtype)
        start += ref.size
    return float(flat[0]), grads


def full_batch_step(
    network: Any,
    optimizer: Any,
    x: Any,
    t: Any,
    *,
    client: Any = None,
    split_every: int = 8,
    retries: int = 1,
) -> float:
    """One optimizer step on the gradient of all rows (:func:`chunked_gradient`).

    The gradient is complete before the update starts, so a step that fails
    (a worker lost more often than the scheduler retries, a read error)
    raises and leaves the network and optimizer as they were.

    Returns
    -------
    float
        The loss before the update.
    """
    loss, grads = chunked_gradient(
        network, x, t, client=client, split_every=split_every, retries=retries
    )
    params: MutableMapping[str, Any] = network.params
    optimizer.update(params, {k: _like(g, params[k]) for k, g in grads.items()})
    return loss


def _like(host: npt.NDArray[Any], ref: Any) -> Any:
    """`host` on the backend and device of the parameter `ref`."""
    if isinstance(ref, np.ndarray):
        return host
    return namespace(ref).asarray(host, device=array_api_compat.device(ref))
