"""One chain of pure layer functions: every path gives the same gradients and state.

For each of the book's networks (and a Sequential), on each backend: the
layer path (``net.gradient``), the network's chain
(``Chain.loss_and_grads``), ``train_step`` (on JAX the compiled step) and
the Dask data-parallel gradient (``xplayers.parallel.chunked_gradient``)
agree on the gradients, the BatchNorm running averages and the Dropout
counts, Dropout masks included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from tests.test_book_networks import TINY_DEEP
from xplayers._pure_step import compiled_step
from xplayers.errors import BackendUnavailableError
from xplayers.network import (
    DeepConvNet,
    MultiLayerNet,
    MultiLayerNetExtend,
    Sequential,
    SimpleConvNet,
    TwoLayerNet,
)
from xplayers.network.chain import Chain
from xplayers.optim import SGD
from xplayers.parallel import chunked_gradient, full_batch_step

LR = 0.1

#: name -> (builder of a network of `dtype`, shape of a batch of 6)
NETWORKS: dict[str, tuple[Callable[[str], Any], tuple[int, ...]]] = {
    "TwoLayerNet": (lambda d: TwoLayerNet(6, 5, 3, weight_init_std=0.5, seed=0, dtype=d), (6, 6)),
    "MultiLayerNet decay": (
        lambda d: MultiLayerNet(
            6, [5, 4], 3, weight_init_std=0.5, weight_decay_lambda=0.1, seed=1, dtype=d
        ),
        (6, 6),
    ),
    "MultiLayerNetExtend": (
        lambda d: MultiLayerNetExtend(
            6,
            [5, 4],
            3,
            use_batchnorm=True,
            use_dropout=True,
            dropout_ration=0.3,
            weight_decay_lambda=0.05,
            seed=2,
            dtype=d,
        ),
        (6, 6),
    ),
    "SimpleConvNet": (
        lambda d: SimpleConvNet(
            (1, 6, 6),
            conv_param={"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1},
            hidden_size=5,
            output_size=3,
            weight_init_std=0.5,
            seed=3,
            dtype=d,
        ),
        (6, 1, 6, 6),
    ),
    "DeepConvNet": (
        lambda d: DeepConvNet(
            (1, 8, 8), **TINY_DEEP, hidden_size=5, output_size=3, seed=4, dtype=d
        ),
        (6, 1, 8, 8),
    ),
    "Sequential": (
        lambda d: Sequential(
            [
                ("Affine1", xpl.Affine(*_params((6, 5), d))),
                ("Sigmoid1", xpl.Sigmoid()),
                ("Dropout1", xpl.Dropout(0.4, seed=5)),
                ("Affine2", xpl.Affine(*_params((5, 3), d))),
            ]
        ),
        (6, 6),
    ),
}


def _params(shape: tuple[int, int], dtype: str) -> tuple[Any, Any]:
    rng = np.random.default_rng(shape)
    W = rng.normal(scale=0.5, size=shape).astype(dtype)
    return xpl.asarray(W, dtype), xpl.asarray(np.zeros(shape[1], dtype=dtype), dtype)


def _make(name: str) -> tuple[Callable[[], Any], str]:
    build = NETWORKS[name][0]
    try:
        build("float64")
    except BackendUnavailableError:  # JAX without JAX_ENABLE_X64
        return (lambda: build("float32")), "float32"
    return (lambda: build("float64")), "float64"


def _batch(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.normal(size=NETWORKS[name][1]), rng.integers(0, 3, NETWORKS[name][1][0])


def _host(a: Any) -> Any:
    return np.asarray(xpl.to_numpy(a)) if a is not None and hasattr(a, "shape") else a


def _state(net: Any) -> dict[str, Any]:
    """The layers' state on the host: running averages and Dropout counts."""
    out = {}
    for name, state in Chain.from_network(net).state_of(net).items():
        for k, v in state.items():
            if k != "seed":
                out[f"{name}.{k}"] = int(v) if k == "count" else _host(v)
    return out


def _close(got: dict[str, Any], want: dict[str, Any], dtype: str) -> None:
    tol = {"rtol": 1e-9, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-4, "atol": 1e-5}
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        np.testing.assert_allclose(_host(got[key]), _host(value), **tol, err_msg=key)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_path_runs_the_same_chain(backend: Any, name: str) -> None:
    if backend.lazy and name == "DeepConvNet":
        pytest.skip(
            "DeepConvNet's layers on Dask are SimpleConvNet's and MultiLayerNetExtend's, checked"
            " here; its depth, a minute-long Dask graph, is the chain's logic of every backend"
        )
    make, dtype = _make(name)
    x_host, t_host = _batch(name)
    x, t = backend.asarray(x_host.astype(dtype)), backend.asarray(t_host)

    layers = make()  # the layer path
    start = {k: _host(v) for k, v in layers.params.items()}
    grads = layers.gradient(x, t)
    state = _state(layers)
    assert any(state) == (name in ("MultiLayerNetExtend", "DeepConvNet", "Sequential"))

    net = make()  # the chain, as a pure function
    chain = Chain.from_network(net)
    _, chain_grads, new_state = chain.loss_and_grads(
        dict(net.params), chain.state_of(net), x, t, weight_decay=net.weight_decay_lambda
    )
    _close(chain_grads, grads, dtype)
    _close(
        {
            f"{n}.{k}": int(v) if k == "count" else v
            for n, s in new_state.items()
            for k, v in s.items()
            if k != "seed"
        },
        state,
        dtype,
    )
    _close(_state(net), _state(make()), dtype)  # pure: the network's own state unchanged

    stepped = make()  # train_step: on JAX, the compiled step
    opt = SGD(lr=LR)
    assert (compiled_step(stepped, opt) is not None) == (backend.name == "jax")
    stepped.train_step(x, t, opt)
    want = {k: start[k] - LR * _host(g) for k, g in grads.items()}
    _close(dict(stepped.params), want, dtype)
    _close(_state(stepped), state, dtype)
    _close(stepped.grads, layers.grads, dtype)  # the layers took their gradients


@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_data_parallel_gradient_is_the_layer_paths(name: str) -> None:
    """Several chunks (one for BatchNorm, which normalises each chunk on its own)."""
    da = pytest.importorskip("dask.array")
    make, dtype = _make(name)
    x, t = _batch(name)
    x = x.astype(dtype)
    layers = make()
    grads = layers.gradient(x, t)
    want_state = _state(layers)
    loss = float(layers.last_layer.loss)
    rows = 6 if name == "MultiLayerNetExtend" else 2
    chunks = (rows, *x.shape[1:])
    net = make()
    got_loss, got, state = chunked_gradient(
        net, da.from_array(x, chunks=chunks), da.from_array(t, chunks=rows), with_state=True
    )
    _close(got, {k: _host(v) for k, v in grads.items()}, dtype)
    if not layers.weight_decay_lambda:
        assert got_loss == pytest.approx(loss, rel=1e-6)
    flat = {
        f"{n}.{k}": int(v) if k == "count" else v
        for n, s in state.items()
        for k, v in s.items()
        if k != "seed"
    }
    _close(flat, want_state, dtype)


def test_batch_norm_chunks_are_each_a_layer_path_batch() -> None:
    """With several chunks, BatchNorm's gradient is the row-weighted sum of each chunk's."""
    da = pytest.importorskip("dask.array")
    make = NETWORKS["MultiLayerNetExtend"][0]
    x, t = _batch("MultiLayerNetExtend")
    net = make("float64")
    for layer in net.layers.values():
        if isinstance(layer, xpl.Dropout):
            layer.dropout_ratio = 0.0
    _, got = chunked_gradient(net, da.from_array(x, chunks=(3, 6)), da.from_array(t, chunks=3))
    want: dict[str, Any] = {}
    for part in (slice(0, 3), slice(3, 6)):
        ref = make("float64")
        for layer in ref.layers.values():
            if isinstance(layer, xpl.Dropout):
                layer.dropout_ratio = 0.0
        for k, g in ref.gradient(x[part], t[part]).items():
            decay = ref.weight_decay_lambda * _host(ref.params[k]) if k[0] == "W" else 0.0
            want[k] = want.get(k, 0.0) + 0.5 * (_host(g) - decay)
    for k, value in want.items():
        if k[0] == "W":
            want[k] = value + net.weight_decay_lambda * _host(net.params[k])
    _close(got, want, "float64")


def test_full_batch_step_on_a_local_cluster_moves_the_layers_state() -> None:
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    make = NETWORKS["MultiLayerNetExtend"][0]
    x, t = _batch("MultiLayerNetExtend")
    net, ref = make("float64"), make("float64")
    grads = ref.gradient(x, t)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        full_batch_step(
            net, SGD(lr=LR), da.from_array(x, chunks=6), da.from_array(t, chunks=6), client=client
        )
    start = {k: _host(v) for k, v in make("float64").params.items()}
    _close(dict(net.params), {k: start[k] - LR * _host(g) for k, g in grads.items()}, "float64")
    _close(_state(net), _state(ref), "float64")
