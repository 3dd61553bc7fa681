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
gradient with the network's chain of pure layer functions
(:meth:`xplayers.network.chain.Chain.loss_and_grads`; Dask fuses the read
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
import math
import numbers
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
import numpy.typing as npt
from array_api_compat import is_array_api_obj

from xplayers._validation import describe, fail, positive_int, positive_ints
from xplayers.backend import RECORDS, is_lazy, namespace, to_numpy
from xplayers.datasets.streaming import (
    Rows,
    check_label_block,
    is_chunked,
    is_cluster_error,
    open_pair,
    open_rows,
    pair_cuts,
    read_rows,
)
from xplayers.errors import ClusterError, TrainingError
from xplayers.network.chain import Chain

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
    if rows is not None:
        if isinstance(rows, tuple):
            rows = tuple(positive_ints("to_chunked", "rows", rows))
        else:
            rows = positive_int("to_chunked", "rows", rows)
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


@dataclass(frozen=True, eq=False)
class _Work:
    """What every chunk's task needs besides the parameters: the chain and the layers' state.

    `summed` names the floating state entries (BatchNorm's running averages)
    whose new values are summed over the chunks, weighted by their rows.
    """

    chain: Chain
    state: dict[str, dict[str, Any]]
    summed: tuple[tuple[str, str], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """The parameter keys, in forward order."""
        return tuple(key for keys in self.chain.keys for _, key in keys)


def _host_state(chain: Chain, network: Any) -> dict[str, dict[str, Any]]:
    """The layers' state as host values (NumPy arrays, Python numbers)."""
    return {
        name: {k: to_numpy(v) if is_array_api_obj(v) else v for k, v in state.items()}
        for name, state in chain.state_of(network).items()
    }


def _summed(state: Mapping[str, Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name, k)
        for name, entries in state.items()
        for k, v in entries.items()
        if isinstance(v, np.ndarray) and v.dtype.kind == "f"
    )


def _flat(
    loss: Any,
    grads: Mapping[str, Any],
    keys: tuple[str, ...],
    state: Mapping[str, Mapping[str, Any]] = {},
    summed: tuple[tuple[str, str], ...] = (),
    weight: float = 1.0,
) -> npt.NDArray[np.float64]:
    parts = [np.reshape(to_numpy(loss), (1,))]
    parts += [np.reshape(to_numpy(grads[k]), (-1,)) for k in keys]
    parts += [np.reshape(to_numpy(state[name][k]), (-1,)) * weight for name, k in summed]
    return np.concatenate([p.astype(np.float64, copy=False) for p in parts])[None, :]


def _chunk_grad(
    xb: Any,
    tb: Any,
    params: Mapping[str, Any],
    f: _Work,
    n_total: int,
    classes: int,
    rows: tuple[str, int],
) -> npt.NDArray[np.float64]:
    """One chunk's weighted loss, gradient and new state, flattened: ``(1, size)``, float64.

    Integer labels are checked to lie in ``0..classes-1`` first, as
    ``SoftmaxWithLoss`` checks them; `rows` names the chunk in the message
    and gives its first row. Each layer's state holds ``skip``, the rows
    before this chunk: Dropout draws its rows of the whole batch's mask.
    """
    n = int(xb.shape[0])
    if n == 0:
        size = sum(int(np.size(params[k])) for k in f.keys)
        size += sum(int(np.size(f.state[name][k])) for name, k in f.summed)
        return np.zeros((1, 1 + size))
    xp = namespace(xb)
    dev = array_api_compat.device(xb)

    def local(v: Any) -> Any:
        return v if namespace(v) is xp else xp.asarray(v, device=dev)

    own = {k: local(v) for k, v in params.items()}
    state = {
        name: {
            **{k: local(v) if (name, k) in f.summed else v for k, v in entries.items()},
            "skip": rows[1],
        }
        for name, entries in f.state.items()
    }
    if not isinstance(tb, type(xb)) and namespace(tb) is not xp:
        tb = xp.asarray(tb, device=dev)
    if tb.ndim == 1:
        check_label_block("chunked_gradient", "t", tb, classes, *rows)
    weight = n / n_total
    loss, grads, new_state = f.chain.loss_and_grads(own, state, xb, tb, weight=weight)
    return _flat(loss, grads, f.keys, new_state, f.summed, weight)


def chunked_gradient(
    network: Any,
    x: Any,
    t: Any,
    *,
    client: Any = None,
    split_every: int = 8,
    params: Mapping[str, Any] | None = None,
    retries: int = 1,
    with_state: bool = False,
) -> Any:
    """The mean loss over all rows of ``(x, t)`` and its gradient, chunk by chunk on Dask.

    Parameters
    ----------
    network : Sequential
        Any network of the library's layers (its
        :class:`~xplayers.network.chain.Chain`); its parameters and layer
        state (of any backend) are copied to the host once per call.
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
    with_state : bool, default False
        Also return the layers' new state (see Notes).

    Raises
    ------
    xplayers.errors.LayerInputError
        An argument does not fit: inputs not of a real floating dtype or
        not of the first layer's width, labels neither integers ``(N,)``
        nor rows ``(N, C)`` (checked before the graph is built), integer
        labels outside ``0..C-1`` (checked in each chunk's task, naming the
        chunk's rows, block and file), `retries` not an integer >= 0,
        `client` not a client, `params` not of the network's shapes.
    xplayers.errors.ClusterError
        The cluster could not finish (workers lost beyond the retries, or
        the client's scheduler lost or closed); the message says why.
        Nothing is changed.
    xplayers.errors.DatasetError
        A block no longer holds the rows it held when the data were opened.

    Returns
    -------
    (loss, grads) : float and dict of str to numpy.ndarray
        The network's loss and gradient, the book's L2 weight decay
        included (as ``network.loss`` and ``network.gradient``).
        The gradients have the parameters' shapes and dtype; with
        `with_state`, ``(loss, grads, state)``, the layers' new state by
        layer name (host values).

    Notes
    -----
    Dropout masks are those of one forward over all rows: each chunk draws
    its own rows of the whole batch's mask
    (:func:`~xplayers.functional.dropout_draw` with ``skip``), so the
    gradient is the one ``network.gradient`` computes on all rows at once
    and every Dropout layer's count goes up by one. BatchNorm normalises
    each chunk with its own statistics, as data-parallel batch
    normalisation does without synchronised statistics: with one chunk the
    gradient is the layer path's; with several it is the row-weighted sum
    of each chunk's. The new running averages are the row-weighted mean of
    each chunk's (the running mean is then exactly the full batch's).

    Examples
    --------
    >>> import dask.array as da  # doctest: +SKIP
    >>> x, t = da.from_zarr("x.zarr"), da.from_zarr("t.zarr")  # doctest: +SKIP
    >>> loss, grads = chunked_gradient(net, x, t)  # doctest: +SKIP
    """
    where = "chunked_gradient"
    chain = Chain.from_network(network)
    split = positive_int(where, "split_every", split_every)
    tries = _non_negative_int(where, "retries", retries)
    _check_client(where, client)
    state = _host_state(chain, network)
    f = _Work(chain, state, _summed(state))
    host = _host_params(where, network, params, f)
    size = _size(host) + sum(int(np.size(state[name][k])) for name, k in f.summed)
    pair = None if is_lazy(x) else _rows_pair(where, x, t)
    xs, ts = _dask_pair(where, x, t) if pair is None else pair
    classes, probed = _check_shapes(where, f, host, (xs.shape, xs.dtype), (ts.shape, ts.dtype))
    if client is None:
        parts = (
            _dask_parts(xs, ts, host, f, size, classes)
            if pair is None
            else _rows_parts(pair, host, f, pair, size, classes)
        )
        flat = _local(parts.sum(axis=0, split_every=split))
    else:
        flat = _on_cluster(client, host, pair, (xs, ts), f, (size, classes), split, tries)
    loss, grads, summed = _unflat(np.asarray(flat), f, host)
    loss, grads = _decayed(loss, grads, host, chain, float(network.weight_decay_lambda))
    if not with_state:
        return loss, grads
    new_state = {name: {**entries, **summed.get(name, {})} for name, entries in probed.items()}
    return loss, grads, new_state


def _decayed(
    loss: float,
    grads: dict[str, npt.NDArray[Any]],
    host: Mapping[str, npt.NDArray[Any]],
    chain: Chain,
    lam: float,
) -> tuple[float, dict[str, npt.NDArray[Any]]]:
    """The book's L2 weight decay, added once to the summed loss and gradients."""
    if not (lam and chain.decayed):
        return loss, grads
    for key in chain.decayed:
        W = host[key]
        loss += 0.5 * lam * float(np.sum(W.astype(np.float64) ** 2))
        grads[key] = (grads[key] + lam * W).astype(W.dtype)
    return loss, grads


def _host_params(
    where: str, network: Any, params: Mapping[str, Any] | None, f: _Work
) -> dict[str, npt.NDArray[Any]]:
    """The parameters on the host: the network's, or `params` if they fit its shapes."""
    own = {k: to_numpy(v) for k, v in network.params.items()}
    if params is None:
        return own
    if not isinstance(params, Mapping):
        fail(where, "params", "a mapping of parameter names to arrays", describe(params))
    host = {k: to_numpy(v) for k, v in params.items()}
    if any(k not in host or host[k].shape != own[k].shape for k in f.keys):
        fail(
            where,
            "params",
            "the network's parameters " + ", ".join(f"{k} {own[k].shape}" for k in f.keys),
            ", ".join(f"{k} {v.shape}" for k, v in host.items()),
        )
    return host


def _non_negative_int(where: str, arg: str, value: object) -> int:
    """Check `value` is an integer >= 0 (not a bool); return it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        fail(where, arg, "an integer >= 0", describe(value))
    return int(value)


def _check_client(where: str, client: Any) -> None:
    """Refuse what is not a dask.distributed client, and a client whose scheduler is gone."""
    if client is None:
        return
    if not all(callable(getattr(client, name, None)) for name in ("scatter", "compute")):
        fail(where, "client", "a dask.distributed.Client or None", describe(client))
    status = getattr(client, "status", "running")
    if status in ("closing", "closed"):
        raise ClusterError(
            f"{where}: the client is {status} (its scheduler is gone or was shut down), so "
            "nothing was computed or updated; connect a new Client"
        )


def _check_shapes(
    where: str,
    f: _Work,
    host: Mapping[str, npt.NDArray[Any]],
    x: tuple[tuple[int, ...], Any],
    t: tuple[tuple[int, ...], Any],
) -> tuple[int, dict[str, dict[str, Any]]]:
    """Check inputs and labels fit the network, as its layers would.

    The inputs must be real floating and fit the first layer (checked by
    the chain on one row of zeros, on the host); the labels integers
    ``(N,)`` or rows ``(N, C)``. Label values are checked chunk by chunk,
    in the tasks that read them. Returns the number of classes ``C`` and
    the layers' state after that one-row forward (Dropout's counts moved on).
    """
    (x_shape, x_dtype), (t_shape, t_dtype) = x, t
    if np.dtype(x_dtype).kind != "f":
        fail(
            where,
            "x",
            "inputs of a real floating dtype (float32 or float64)",
            f"dtype {x_dtype}",
            "Convert them, e.g. x.astype(np.float32)",
        )
    zero = np.zeros((), dtype=x_dtype)
    f.chain.check(host, np.broadcast_to(zero, x_shape))  # reads the shape only
    probe = np.broadcast_to(zero, (1, *x_shape[1:]))
    logits, _, probed = f.chain.forward(host, f.state, probe, train=True)
    classes = int(logits.shape[-1])
    rows = len(t_shape) == 2 and t_shape[1] == classes and np.dtype(t_dtype).kind in "fbiu"
    if not rows and (len(t_shape) != 1 or np.dtype(t_dtype).kind not in "iu"):
        fail(
            where,
            "t",
            f"integer labels (N,) or one-hot rows (N, {classes}) for the network's "
            f"{classes} classes",
            f"labels of shape {tuple(t_shape)} and dtype {t_dtype}",
        )
    return classes, probed


def _local(total: Any) -> Any:
    """Compute `total` on the current scheduler; a failed cluster becomes a ClusterError."""
    try:
        return total.compute()
    except Exception as exc:
        if not is_cluster_error(exc):
            raise
        raise ClusterError(
            f"chunked_gradient: the cluster did not finish the gradient, so nothing was "
            f"updated: {type(exc).__name__}: {exc}"
        ) from exc


def _on_cluster(
    client: Any,
    host: Mapping[str, Any],
    pair: tuple[Rows, Rows] | None,
    data: tuple[Any, Any],
    f: _Work,
    sizes: tuple[int, int],
    split: int,
    retries: int,
) -> Any:
    """Scatter the parameters (and the sources) once to every worker, compute, clean up.

    A failure of the cluster (dask.distributed's own errors) is tried again
    `retries` times, then raised as a ClusterError; so is any error once the
    client has lost its scheduler, at once (no scheduler to try again on).
    Other errors (bad data) are raised as they are.
    """
    size, classes = sizes
    attempt = 0
    while True:
        shared: list[Any] = []
        try:
            shared = client.scatter([host, pair], broadcast=True, hash=False)
            params, source = shared
            if pair is None:
                parts = _dask_parts(*data, params, f, size, classes)
            else:
                parts = _rows_parts(source, params, f, pair, size, classes)
            return client.compute(parts.sum(axis=0, split_every=split)).result()
        except Exception as exc:  # the cluster's own error types, whatever they are
            gone = _client_gone(client)
            if not (gone or is_cluster_error(exc)):
                raise
            if gone or attempt == retries:
                why = "the client lost its scheduler; " if gone else ""
                raise ClusterError(
                    f"chunked_gradient: the cluster did not finish the gradient after "
                    f"{attempt + 1} attempt(s), so nothing was updated: {why}"
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        finally:
            if shared and not _client_gone(client):
                client.cancel(shared)
        attempt += 1


def _client_gone(client: Any) -> bool:
    """Whether `client` has lost its scheduler: closed, closing, or trying to reconnect."""
    return getattr(client, "status", "running") != "running"


def _size(host: Mapping[str, Any]) -> int:
    return 1 + sum(int(np.size(v)) for v in host.values())


def _dask_pair(where: str, x: Any, t: Any) -> tuple[Any, Any]:
    """`x` and `t` as Dask arrays chunked alike by rows (`t` re-chunked to `x`'s rows)."""
    xs = to_chunked(x)
    if xs.ndim == 0 or xs.shape[0] == 0:
        fail(where, "x", "at least one row", describe(x))
    if not (is_lazy(t) or is_chunked(t)) and np.ndim(t) == 0:
        fail(where, "t", f"{xs.shape[0]} rows like x", describe(t))
    ts = to_chunked(t)
    if ts.shape[0] != xs.shape[0]:
        fail(where, "t", f"{xs.shape[0]} rows like x", f"{ts.shape[0]} rows")
    return xs, ts.rechunk({0: xs.chunks[0]})


def _dask_parts(xs: Any, ts: Any, params: Any, f: _Work, size: int, classes: int) -> Any:
    """Per-chunk gradients of Dask arrays: a task on each of their row chunks."""
    da = _chunked_xp()
    cuts = tuple(int(c) for c in np.cumsum((0, *xs.chunks[0])))
    blocks = da.arange(len(cuts) - 1, chunks=1)
    return da.blockwise(
        _dask_chunk_grad,
        "iz",
        xs,
        "i" + "abcdefgh"[: xs.ndim - 1],
        ts,
        "i" + "pqrs"[: ts.ndim - 1],
        blocks,
        "i",
        params,
        None,
        f,
        None,
        (int(xs.shape[0]), classes),
        None,
        cuts,
        None,
        new_axes={"z": size},
        adjust_chunks={"i": 1},
        align_arrays=False,  # `blocks` has one row per chunk of xs and ts
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0)),
        token="xplayers-chunk-grad",
    )


def _dask_chunk_grad(
    xb: Any,
    tb: Any,
    block: Any,
    params: Mapping[str, Any],
    f: _Work,
    totals: tuple[int, int],
    cuts: tuple[int, ...],
) -> npt.NDArray[np.float64]:
    """:func:`_chunk_grad` of Dask chunk `block` (a one-element array), named by its rows."""
    i = int(np.asarray(block).reshape(-1)[0])
    start, stop = cuts[i], cuts[i + 1]
    rows = f"rows {start} to {stop - 1} (block {i + 1} of {len(cuts) - 1}, a Dask array)"
    return _chunk_grad(xb, tb, params, f, totals[0], totals[1], (rows, start))


def _rows_pair(where: str, x: Any, t: Any) -> tuple[Rows, Rows]:
    pair = open_pair(where, "x, t", (x, t))
    if pair is None:
        fail(where, "x", "a Dask array, a zarr array, or a folder of .npy files", describe(x))
    return pair


def _span_grad(
    params: Mapping[str, Any],
    source: tuple[Rows, Rows],
    f: _Work,
    totals: tuple[int, int],
    block_id: tuple[int, int] | None = None,
) -> npt.NDArray[np.float64]:
    """Read one block of `source` and return its weighted gradient (one task per block).

    Each read is checked to hold the rows it held when opened (a file
    rewritten since is named), and the labels to lie in range.
    """
    x, t = source
    cuts = pair_cuts(x, t)
    i = 0 if block_id is None else block_id[0]
    start, stop = cuts[i], cuts[i + 1]
    xb, tb = read_rows(x, start, stop), read_rows(t, start, stop)
    rows = (t.name_rows(start, stop), start)
    return _chunk_grad(xb, tb, params, f, totals[0], totals[1], rows)


def _rows_parts(
    source: Any, params: Any, f: _Work, pair: tuple[Rows, Rows], size: int, classes: int
) -> Any:
    """Per-block gradients of chunked rows: one task per block, which reads it."""
    da = _chunked_xp()
    blocks = len(pair_cuts(*pair)) - 1
    return da.map_blocks(
        _span_grad,
        params,
        source,
        f,
        (int(pair[0].shape[0]), classes),
        chunks=((1,) * blocks, (size,)),
        dtype=np.float64,
        meta=np.empty((0, 0)),
        token="xplayers-chunk-grad",
    )


def _unflat(
    flat: npt.NDArray[np.float64], f: _Work, host: Mapping[str, npt.NDArray[Any]]
) -> tuple[float, dict[str, npt.NDArray[Any]], dict[str, dict[str, npt.NDArray[Any]]]]:
    grads: dict[str, npt.NDArray[Any]] = {}
    start = 1
    for k in f.keys:
        ref = host[k]
        grads[k] = flat[start : start + ref.size].reshape(ref.shape).astype(ref.dtype)
        start += ref.size
    summed: dict[str, dict[str, npt.NDArray[Any]]] = {}
    for name, k in f.summed:
        ref = f.state[name][k]
        value = flat[start : start + ref.size].reshape(ref.shape).astype(ref.dtype)
        summed.setdefault(name, {})[k] = value
        start += ref.size
    return float(flat[0]), grads, summed


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

    The layers then take their new state (BatchNorm's running averages,
    Dropout's count), as after a step of the layers.

    The gradient is complete before the update starts, so a step that fails
    (bad labels or inputs, a worker lost more often than the scheduler
    retries, a read error) raises and leaves the network and optimizer as
    they were. So does a loss or gradient that is not finite (NaN or
    infinite inputs, or a learning rate too high): it is refused before the
    update, not written into the weights.

    Returns
    -------
    float
        The loss before the update.

    Raises
    ------
    xplayers.errors.TrainingError
        The loss or the gradient is NaN or infinite; nothing was updated.
    xplayers.errors.ClusterError
        As :func:`chunked_gradient`.
    xplayers.errors.LayerInputError
        As :func:`chunked_gradient`.
    """
    loss, grads, state = chunked_gradient(
        network, x, t, client=client, split_every=split_every, retries=retries, with_state=True
    )
    finite = all(bool(np.isfinite(g).all()) for g in grads.values())
    if not (finite and math.isfinite(loss)):
        raise TrainingError(
            f"full_batch_step: the loss over all rows is {loss}"
            f"{'' if finite else ' and the gradient is not finite'}, so nothing was updated; "
            "check the inputs for NaN or infinite values, or lower the learning rate"
        )
    params: MutableMapping[str, Any] = network.params
    optimizer.update(params, {k: _like(g, params[k]) for k, g in grads.items()})
    for name, entries in state.items():
        layer = network.layers[name]
        now = layer.fn_state()
        layer.take(
            state={
                k: _like(v, now[k]) if isinstance(v, np.ndarray) and is_array_api_obj(now[k]) else v
                for k, v in entries.items()
            }
        )
    return float(loss)


def _like(host: npt.NDArray[Any], ref: Any) -> Any:
    """`host` on the backend and device of the parameter `ref`."""
    if isinstance(ref, np.ndarray):
        return host
    return namespace(ref).asarray(host, device=array_api_compat.device(ref))
