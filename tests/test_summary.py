"""``net.summary()``: layers, output shapes, parameter counts, dtype and device, state untouched."""

from __future__ import annotations

import re
from typing import Any

import array_api_compat
import numpy as np
import pytest

import xplayers as xpl
from tests.test_network_files import NETWORKS
from xplayers.backend import backend_name
from xplayers.errors import LayerInputError
from xplayers.network import Sequential


def _rows(text: str) -> dict[str, list[str]]:
    """The table rows by layer name: [output shape, param #, parameters]."""
    lines = text.splitlines()
    body = lines[lines.index(next(x for x in lines if x.startswith("="))) + 1 :]
    body = body[: body.index(next(x for x in body if x.startswith("=")))]
    rows = {}
    for line in body:
        m = re.match(r"(\S+) \((\w+)\)\s+(\(.*?\))\s+([\d,]+)\s*(.*)$", line)
        assert m, line
        rows[m.group(1)] = [m.group(3), m.group(4), m.group(5)]
    return rows


def _state(net: Any) -> list[tuple[str, dict[str, int]]]:
    """Each layer's attributes by identity (what a forward pass would replace)."""
    return [
        (name, {k: id(v) for k, v in vars(layer).items()}) for name, layer in net.layers.items()
    ]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_summary_shows_every_layer_its_output_shape_and_parameters(backend, rng, name):
    net = NETWORKS[name](0, "float32")
    before = _state(net)
    text = net.summary()
    assert isinstance(text, str)
    assert repr(text) == str(text)  # shown as the table at the prompt
    assert _state(net) == before  # no cached input, no running average, no new mask
    first = text.splitlines()[0]
    w1 = net.params["W1"]
    assert first == f"{name}: float32 on {backend_name(w1)} ({array_api_compat.device(w1)})"
    rows = _rows(text)
    assert list(rows) == [*net.layers, "last_layer"]
    # the shapes a real batch of 3 takes through the network's own layers
    sample = tuple(net.input_dim) if hasattr(net, "input_dim") else (6,)
    x = net.to_own(rng.normal(size=(3, *sample)).astype(np.float32))
    slots = {id(layer): [] for layer in net.layers.values()}
    for key, (layer, _) in net.params.slots.items():
        slots[id(layer)].append(key)
    total = 0
    for layer_name, layer in net.layers.items():
        x = (
            layer.forward(x, False)
            if getattr(layer, "takes_train_flg", False)
            else layer.forward(x)
        )
        shape, count, described = rows[layer_name]
        assert shape == "(" + ", ".join(["None", *map(str, x.shape[1:])]) + ")"
        sizes = {k: tuple(net.params[k].shape) for k in slots[id(layer)]}
        assert int(count.replace(",", "")) == sum(int(np.prod(s)) for s in sizes.values())
        assert described == ", ".join(f"{k} {s}" for k, s in sizes.items())
        total += int(count.replace(",", ""))
    assert total == sum(int(np.prod(p.shape)) for p in net.params.values())
    assert f"Trainable params: {total:,} ({total * 4} B)" in text  # float32: 4 bytes each


def test_batch_norm_running_averages_are_non_trainable():
    net = xpl.MultiLayerNetExtend(6, [4, 5], 3, use_batchnorm=True, seed=0)
    text = net.summary()
    assert "Non-trainable params: 18 (144 B)  (batch-norm running averages)" in text
    trainable = sum(int(np.prod(p.shape)) for p in net.params.values())
    assert f"Total params: {trainable + 18:,}" in text


def test_a_sequential_without_an_affine_first_needs_the_input_shape(rng):
    conv = xpl.Convolution(xpl.asarray(rng.normal(size=(2, 1, 3, 3))), xpl.asarray(np.zeros(2)))
    net = Sequential({"Conv": conv, "Relu": xpl.Relu()})
    with pytest.raises(
        LayerInputError,
        match=r"Sequential\.summary: argument 'input_shape': expected the shape of one sample "
        r"\(C, H, W\) of the images",
    ):
        net.summary()
    assert _rows(net.summary((1, 5, 5)))["Conv"][0] == "(None, 2, 3, 3)"
    with pytest.raises(LayerInputError, match=r"argument 'input_shape'"):
        net.summary("1, 5, 5")  # type: ignore[arg-type]
    with pytest.raises(LayerInputError, match=r"argument 'input_shape'"):
        net.summary((1, 0, 5))


def test_a_wrong_input_shape_is_the_layer_s_own_error():
    net = xpl.TwoLayerNet(6, 4, 3, seed=0)
    with pytest.raises(LayerInputError, match=r"Affine"):
        net.summary((7,))
