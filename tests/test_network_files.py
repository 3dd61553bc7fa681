"""``save_params``/``load_params``: one signature for every network, files or mappings."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.errors import LayerInputError
from xplayers.network import Sequential

SMALL_CONV = {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1}
TINY_DEEP = {
    f"conv_param_{k}": {"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1}
    for k in range(1, 7)
}


def _sequential(seed: int, dtype: str) -> Sequential:
    rng = np.random.default_rng(seed)
    return Sequential(
        {
            "Affine1": xpl.Affine(
                xpl.asarray(rng.normal(size=(6, 4)).astype(dtype)), xpl.asarray(np.zeros(4, dtype))
            ),
            "Sigmoid1": xpl.Sigmoid(),
            "Affine2": xpl.Affine(
                xpl.asarray(rng.normal(size=(4, 3)).astype(dtype)), xpl.asarray(np.zeros(3, dtype))
            ),
        }
    )


#: One small network of every class, built from a seed in a dtype.
NETWORKS: dict[str, Callable[[int, str], Any]] = {
    "TwoLayerNet": lambda seed, dtype: xpl.TwoLayerNet(6, 4, 3, seed=seed, dtype=dtype),
    "MultiLayerNet": lambda seed, dtype: xpl.MultiLayerNet(6, [4, 5], 3, seed=seed, dtype=dtype),
    "MultiLayerNetExtend": lambda seed, dtype: xpl.MultiLayerNetExtend(
        6, [4], 3, use_batchnorm=True, use_dropout=True, seed=seed, dtype=dtype
    ),
    "SimpleConvNet": lambda seed, dtype: xpl.SimpleConvNet(
        (1, 6, 6), SMALL_CONV, hidden_size=4, output_size=3, seed=seed, dtype=dtype
    ),
    "DeepConvNet": lambda seed, dtype: xpl.DeepConvNet(
        (1, 8, 8), **TINY_DEEP, hidden_size=4, output_size=3, seed=seed, dtype=dtype
    ),
    "Sequential": _sequential,
}


def _host(net: Any) -> dict[str, np.ndarray]:
    return {k: np.asarray(xpl.to_numpy(v)) for k, v in net.params.items()}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_network_loads_a_path_or_a_mapping(backend, tmp_path, name):
    make = NETWORKS[name]
    source, target = make(0, "float64"), make(1, "float64")
    want = _host(source)
    path = source.save_params(tmp_path / "params.npz")
    target.load_params(path)  # a Path
    assert all(np.array_equal(_host(target)[k], want[k]) for k in want)
    target = make(1, "float64")
    target.load_params(str(path))  # a str
    assert all(np.array_equal(_host(target)[k], want[k]) for k in want)
    target = make(1, "float64")
    target.load_params(want)  # a mapping, as before
    assert all(np.array_equal(_host(target)[k], want[k]) for k in want)
    if name != "Sequential":  # a model file written by xplayers.save (Sequential: no config)
        target = make(1, "float64")
        target.load_params(xpl.save(source, tmp_path / "model.npz"))
        assert all(np.array_equal(_host(target)[k], want[k]) for k in want)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_a_float32_file_in_a_float64_network_names_the_dtype_to_build(backend, tmp_path, name):
    make = NETWORKS[name]
    path = make(0, "float32").save_params(tmp_path / "params.npz")
    target = make(1, "float64")
    before = _host(target)
    with pytest.raises(
        LayerInputError,
        match=rf"{name}\.load_params: argument 'params\['W1'\]': expected shape .* dtype "
        r"float64; got .* dtype float32\. The values are float32: build the network with "
        r"dtype='float32', or rebuild it as saved: xplayers\.load\(path\)",
    ):
        target.load_params(path)
    after = _host(target)
    assert all(np.array_equal(after[k], before[k]) for k in before)  # nothing changed
    same = make(1, "float32")
    same.load_params(path)  # the dtype the message names works
    assert all(np.array_equal(_host(same)[k], _host(make(0, "float32"))[k]) for k in before)


def test_a_cli_model_loads_into_a_network_built_with_its_dtype(tmp_path):
    """The CLI saves float32 models; the message says how to load one into a Python network."""
    from xplayers.cli import main

    model = tmp_path / "model.npz"
    args = ["train", "--network", "two-layer", "--hidden", "8", "--epochs", "1", "--quiet"]
    assert main([*args, "--output", str(model)]) == 0
    with pytest.raises(LayerInputError, match=r"dtype='float32'"):
        xpl.TwoLayerNet(64, 8, 10, seed=0).load_params(model)
    net = xpl.TwoLayerNet(64, 8, 10, seed=0, dtype="float32")
    net.load_params(model)
    loaded = xpl.load(model)
    assert all(np.array_equal(_host(net)[k], _host(loaded)[k]) for k in net.params)


@pytest.mark.parametrize("name", ["TwoLayerNet", "Sequential", "SimpleConvNet"])
def test_load_params_refuses_pickles_and_other_objects_pointing_to_xplayers_load(tmp_path, name):
    net = NETWORKS[name](0, "float64")
    before = _host(net)
    pkl = tmp_path / "params.pkl"
    pkl.write_bytes(pickle.dumps(before))
    with pytest.raises(LayerInputError, match=r"never unpickles.*np\.savez.*xplayers\.load"):
        net.load_params(pkl)
    with pytest.raises(
        LayerInputError,
        match=rf"{name}\.load_params: argument 'file_name': expected a path to a \.npz file or "
        r"a mapping .*; got int 3\. To rebuild a saved network, use xplayers\.load\(path\)",
    ):
        net.load_params(3)  # type: ignore[arg-type]
    text = tmp_path / "params.txt"
    text.write_text("W1 = 1\n")
    with pytest.raises(LayerInputError, match=r"expected a \.npz archive.*xplayers\.load"):
        net.load_params(text)
    with pytest.raises(FileNotFoundError):
        net.load_params(tmp_path / "missing.npz")
    after = _host(net)
    assert all(np.array_equal(after[k], before[k]) for k in before)
