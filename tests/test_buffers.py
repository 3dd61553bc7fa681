"""Buffers (BatchNormalization's running averages) in model files and checkpoints."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import io
from xplayers.datasets import load_digits, train_test_split
from xplayers.errors import LayerInputError, ModelFileError, ModelFileWarning
from xplayers.network import MultiLayerNetExtend, buffer_shapes
from xplayers.optim import Adam
from xplayers.training import History, train


@pytest.fixture(scope="module")
def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    x, t = load_digits(dtype="float64")
    (x_train, t_train), (x_test, t_test) = train_test_split(x, t, test_size=0.2, seed=0)
    return (x_train[:300], t_train[:300]), (x_test[:100], t_test[:100])


def _net(seed: int = 0) -> MultiLayerNetExtend:
    return MultiLayerNetExtend(64, [20, 16], 10, use_batchnorm=True, seed=seed)


def _host(arrays: Any) -> dict[str, bytes]:
    return {k: np.asarray(xpl.to_numpy(v)).tobytes() for k, v in arrays.items()}


def _trained(digits: Any) -> MultiLayerNetExtend:
    net = _net()
    train(net, Adam(lr=0.01), digits[0], iterations=10, batch_size=64)
    return net


def _rewrite(
    src: Path, dst: Path, change: Callable[[dict[str, Any]], None], drop: tuple[str, ...] = ()
) -> Path:
    """Copy a model file, changing its JSON header and leaving out the arrays `drop`."""
    with zipfile.ZipFile(src) as zf:
        members = {n.removesuffix(".npy"): zf.read(n) for n in zf.namelist()}
    header = np.lib.format.read_array(BytesIO(members.pop(io.METADATA_KEY)), allow_pickle=False)
    doc = json.loads(header.tobytes())
    change(doc)
    blob = np.frombuffer(json.dumps(doc).encode(), np.uint8)
    with zipfile.ZipFile(dst, "w") as zf:
        with zf.open(f"{io.METADATA_KEY}.npy", "w") as f:
            np.lib.format.write_array(f, blob)
        for name, data in members.items():
            if name not in drop:
                zf.writestr(f"{name}.npy", data)
    return dst


_BUFFERS = ("running_mean1", "running_var1", "running_mean2", "running_var2")


def _as_older(doc: dict[str, Any]) -> None:
    """What a file written before buffers were stored looks like."""
    del doc["buffers"]
    doc["format_version"] = 2 if "state" in doc else 1


def test_running_averages_survive_save_and_load(backend: Any, digits: Any, tmp_path: Path) -> None:
    net = _trained(digits)
    x_test = digits[1][0]
    before = xpl.to_numpy(net.predict(x_test))
    path = io.save(net, tmp_path / "bn.npz")
    again = io.load(path)
    assert np.array_equal(xpl.to_numpy(again.predict(x_test)), before)
    assert _host(again.buffers) == _host(net.buffers)
    header = io.read_metadata(path)
    assert header["format_version"] == 3
    assert [e["name"] for e in header["buffers"]] == list(_BUFFERS)


def test_network_without_buffers_is_still_written_as_version_1(tmp_path: Path) -> None:
    plain = MultiLayerNetExtend(4, [5], 3, seed=0)  # no batch norm: nothing to add
    assert plain.buffers == {}
    assert io.read_metadata(io.save(plain, tmp_path / "p.npz"))["format_version"] == 1


def test_buffers_exist_before_any_forward() -> None:
    net = _net()
    assert set(net.buffers) == set(buffer_shapes(net.config()))
    for key, value in net.buffers.items():
        assert tuple(value.shape) == buffer_shapes(net.config())[key]
        assert not np.any(xpl.to_numpy(value))


def test_older_file_loads_with_a_note_of_what_it_lacks(digits: Any, tmp_path: Path) -> None:
    net = _trained(digits)
    old = _rewrite(io.save(net, tmp_path / "new.npz"), tmp_path / "old.npz", _as_older, _BUFFERS)
    with pytest.warns(ModelFileWarning, match=r"old\.npz.*format version 1.*'running_mean1'"):
        again = io.load(old)
    assert _host(again.params) == _host(net.params)
    assert not any(np.any(xpl.to_numpy(v)) for v in again.buffers.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda doc: doc.__setitem__("buffers", doc["buffers"][:2]),
            "buffers do not fit the stored network config",
        ),
        (lambda doc: doc.__setitem__("format_version", 2), "'buffers' needs format_version 3"),
        (lambda doc: doc.__setitem__("buffers", {}), "'buffers' must be a JSON list"),
    ],
)
def test_inconsistent_buffers_are_refused(
    digits: Any, tmp_path: Path, change: Any, message: str
) -> None:
    path = io.save(_trained(digits), tmp_path / "bn.npz")
    bad = _rewrite(path, tmp_path / "bad.npz", change, ("running_mean2", "running_var2"))
    with pytest.raises(ModelFileError, match=rf"model file '.*bad\.npz': .*{message}"):
        io.load(bad)


def test_negative_running_variance_is_refused(digits: Any, tmp_path: Path) -> None:
    net = _trained(digits)
    net.layers["BatchNorm2"].running_var = xpl.asarray(-np.ones(16))
    with pytest.raises(LayerInputError, match="running_var"):
        net.load_buffers({k: xpl.to_numpy(v) for k, v in net.buffers.items()})
    path = io.save(net, tmp_path / "neg.npz")
    with pytest.raises(ModelFileError, match=r"neg\.npz.*running variances >= 0"):
        io.load(path)


def test_load_buffers_changes_nothing_when_refused(digits: Any) -> None:
    net = _trained(digits)
    before = _host(net.buffers)
    values = {k: xpl.to_numpy(v) + 1 for k, v in net.buffers.items()}
    values["running_var2"] = values["running_var2"][:3]
    with pytest.raises(LayerInputError, match=r"running_var2.*shape \(16,\)"):
        net.load_buffers(values)
    assert _host(net.buffers) == before


def test_book_save_params_keeps_the_running_averages(digits: Any, tmp_path: Path) -> None:
    net = _trained(digits)
    path = net.save_params(tmp_path / "params.npz")
    again = _net(seed=1)
    again.load_params(path)
    assert _host(again.params) == _host(net.params)
    assert _host(again.buffers) == _host(net.buffers)
    # the book's own files hold only the parameters: the buffers stay as they are
    np.savez(tmp_path / "book.npz", **{k: xpl.to_numpy(v) for k, v in net.params.items()})
    fresh = _net(seed=1)
    fresh.load_params(tmp_path / "book.npz")
    assert _host(fresh.params) == _host(net.params)
    assert not any(np.any(xpl.to_numpy(v)) for v in fresh.buffers.values())


class _StopError(Exception):
    pass


def _stop_after(evaluations: int) -> Callable[[History], None]:
    def callback(history: History) -> None:
        if len(history) == evaluations:
            raise _StopError

    return callback


def _curve(history: History) -> dict[str, list[Any]]:
    d = history.to_dict()
    del d["seconds"]
    return d


def test_resume_with_batch_norm_is_bit_identical(backend: Any, digits: Any, tmp_path: Path) -> None:
    if backend.lazy or backend.name == "jax":
        pytest.skip("slow on Dask and JAX; the NumPy-like backends cover the same code")
    train_set, test_set = digits
    kwargs: dict[str, Any] = {"epochs": 3, "batch_size": 64, "eval_every": 4, "seed": 7}
    whole = _net()
    expected = train(whole, Adam(lr=0.01), train_set, test_set, **kwargs)
    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(_StopError):
        train(_net(), Adam(lr=0.01), train_set, test_set, checkpoint=ckpt,
              callback=_stop_after(2), **kwargs)  # fmt: skip
    resumed_net = _net()
    resumed = train(resumed_net, Adam(lr=0.01), train_set, test_set, resume=ckpt, **kwargs)
    assert _curve(resumed) == _curve(expected)
    assert _host(resumed_net.params) == _host(whole.params)
    assert _host(resumed_net.buffers) == _host(whole.buffers)


def test_resume_from_an_older_checkpoint_notes_what_it_lacks(digits: Any, tmp_path: Path) -> None:
    train_set, _ = digits
    kwargs: dict[str, Any] = {"iterations": 10, "batch_size": 64, "eval_every": 4}
    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(_StopError):
        train(_net(), Adam(lr=0.01), train_set, checkpoint=ckpt, callback=_stop_after(1), **kwargs)
    old = _rewrite(ckpt, tmp_path / "old.npz", _as_older, _BUFFERS)
    net = _net()
    with pytest.warns(ModelFileWarning, match=r"old\.npz.*'running_mean1'"):
        history = train(net, Adam(lr=0.01), train_set, resume=old, **kwargs)
    assert history.iteration == [4, 8, 10]
