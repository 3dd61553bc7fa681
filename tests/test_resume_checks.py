"""What resume checks: the run (network config, data, length) and every saved value."""

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
from xplayers.network import MultiLayerNet, MultiLayerNetExtend
from xplayers.optim import Adam
from xplayers.training import data_fingerprint, train

Pair = tuple[np.ndarray, np.ndarray]


def _split(seed: int) -> Pair:
    x, t = load_digits(dtype="float64")
    (x_train, t_train), _ = train_test_split(x, t, test_size=0.2, seed=seed)
    return x_train[:300], t_train[:300]


@pytest.fixture(scope="module")
def data() -> Pair:
    return _split(0)


def _net(activation: str = "relu", seed: int = 0) -> MultiLayerNet:
    return MultiLayerNet(64, [20], 10, activation=activation, weight_init_std=0.1, seed=seed)


def _snapshot(net: Any, optimizer: Adam) -> tuple[dict[str, bytes], Any]:
    info, arrays = optimizer.state()
    host = {k: np.asarray(xpl.to_numpy(v)).tobytes() for k, v in net.params.items()}
    return host, (info, {k: v.tobytes() for k, v in arrays.items()})


_RUN: dict[str, Any] = {"iterations": 10, "batch_size": 64, "eval_every": 3}


@pytest.fixture
def checkpoint(data: Pair, tmp_path: Path) -> Path:
    """A checkpoint after 9 of 10 updates (5 per epoch): 4 batches into the second epoch."""
    ckpt = tmp_path / "ckpt.npz"

    def stop(history: Any) -> None:
        if history.iteration[-1] == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_net(), Adam(lr=0.01), data, checkpoint=ckpt, callback=stop, **_RUN)
    return ckpt


def _refused(data: Pair, ckpt: Path, error: type[Exception], message: str, **changes: Any) -> None:
    """Resuming is refused with `message`, and neither network nor optimizer changed."""
    net, optimizer = changes.pop("net", None) or _net(), Adam(lr=0.01)
    before = _snapshot(net, optimizer)
    with pytest.raises(error, match=message) as info:
        train(net, optimizer, changes.pop("other", data), resume=ckpt, **{**_RUN, **changes})
    assert "\n" not in str(info.value)
    assert _snapshot(net, optimizer) == before


# --------------------------------------------------------------------------- the run


def test_another_activation_of_the_same_shapes_is_refused(data: Pair, checkpoint: Path) -> None:
    _refused(
        data,
        checkpoint,
        LayerInputError,
        "activation 'relu' in the checkpoint, 'sigmoid' here",
        net=_net("sigmoid"),
    )


def test_other_initial_weights_are_not_a_reason_to_refuse(data: Pair, checkpoint: Path) -> None:
    net = MultiLayerNet(64, [20], 10, weight_init_std="he", seed=5)  # weights replaced
    history = train(net, Adam(lr=0.01), data, resume=checkpoint, **_RUN)
    assert history.iteration == [3, 6, 9, 10]


def test_another_split_of_the_same_size_is_refused(data: Pair, checkpoint: Path) -> None:
    other = _split(1)
    assert other[0].shape == data[0].shape
    _refused(
        data, checkpoint, LayerInputError, "same training samples in the same order", other=other
    )


def test_reordered_samples_are_refused(data: Pair, checkpoint: Path) -> None:
    x, t = data
    order = np.arange(len(t))[::-1]
    _refused(data, checkpoint, LayerInputError, "other data", other=(x[order], t[order]))


def test_data_fingerprint_follows_the_samples_and_their_order(data: Pair) -> None:
    from xplayers.datasets import BatchLoader

    x, t = data
    base = data_fingerprint(BatchLoader(x, t, 64))
    assert base == data_fingerprint(BatchLoader(x.copy(), t.copy(), 64))
    edited = x.copy()
    edited[123, 4] += 1.0
    assert data_fingerprint(BatchLoader(edited, t, 64)) != base
    assert data_fingerprint(BatchLoader(x[::-1], t[::-1], 64)) != base


def test_fewer_iterations_than_the_checkpoint_are_refused(data: Pair, checkpoint: Path) -> None:
    _refused(
        data, checkpoint, LayerInputError, r"saved after 9 updates.*iterations >= 9", iterations=5
    )


def test_resuming_a_finished_run_returns_its_history(data: Pair, checkpoint: Path) -> None:
    net = _net()
    history = train(net, Adam(lr=0.01), data, resume=checkpoint, **{**_RUN, "iterations": 9})
    assert history.iteration == [3, 6, 9]
    saved = io.read_checkpoint(checkpoint).params
    assert all(np.array_equal(xpl.to_numpy(net.params[k]), saved[k]) for k in saved)


def _cli(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--dataset",
        "digits",
        "--network",
        "multi",
        "--hidden",
        "20",
        "--quiet",
        "--backend",
        "numpy",
        "--checkpoint",
        str(tmp_path / "ckpt.npz"),
        *extra,
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--activation", "sigmoid"], "activation 'relu' in the checkpoint, 'sigmoid' here"),
        (["--seed", "1"], "same training samples in the same order"),
        (["--iterations", "5"], "saved after 30 updates"),
    ],
    ids=["activation", "seed", "iterations"],
)
def test_cli_resume_of_another_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    from xplayers.cli import main

    assert main(_cli(tmp_path, "--iterations", "30")) == 0
    saved = (tmp_path / "ckpt.npz").read_bytes()
    capsys.readouterr()
    args = _cli(tmp_path, "--iterations", "60", "--resume", str(tmp_path / "ckpt.npz"))
    code = main([*args, *extra])  # a later --iterations wins
    err = capsys.readouterr().err
    assert code == 1
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert (tmp_path / "ckpt.npz").read_bytes() == saved


# --------------------------------------------------------------------------- crafted values


def _craft(src: Path, dst: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """Copy a checkpoint with its JSON header changed (the file checks still pass)."""
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    key = f"{io.METADATA_KEY}.npy"
    doc = json.loads(np.lib.format.read_array(BytesIO(members[key])).tobytes())
    change(doc)
    out = BytesIO()
    np.lib.format.write_array(out, np.frombuffer(json.dumps(doc).encode(), np.uint8))
    members[key] = out.getvalue()
    with zipfile.ZipFile(dst, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return dst


def _train_state(**values: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["state"]["data"]["train"].update(values)

    return change


def _counter(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["state"]["data"]["train"]["optimizer"]["counters"]["iter"] = value

    return change


def _history(name: str, transform: Callable[[list[Any]], list[Any]]) -> Any:
    def change(doc: dict[str, Any]) -> None:
        history = doc["metadata"]["history"]
        history[name] = transform(history[name])

    return change


def _rng(**values: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["state"]["data"]["train"]["rng"].update(values)

    return change


CRAFTED = {
    "skip past the epoch": (_train_state(skip=99), ModelFileError, r"skip .* is 99"),
    "skip off the iteration": (_train_state(skip=1), ModelFileError, r"it is 4"),
    "iteration negative": (_train_state(iteration=-3000), ModelFileError, "iteration is -3000"),
    "iteration a string": (_train_state(iteration="9"), ModelFileError, "iteration is '9'"),
    "iteration a float": (_train_state(iteration=9.0), ModelFileError, "iteration is 9.0"),
    "adam step a string": (_counter("x"), LayerInputError, r"'iter'.*integer >= 0; got 'x'"),
    "adam step negative": (_counter(-1), LayerInputError, r"'iter'.*integer >= 0; got -1"),
    "adam step a bool": (_counter(True), LayerInputError, r"'iter'.*got True"),
    "seconds strings": (
        _history("seconds", lambda v: [str(s) for s in v]),
        ModelFileError,
        r"history 'seconds' holds '",
    ),
    "accuracy above 1": (
        _history("train_acc", lambda v: [*v[:-1], 1.5]),
        ModelFileError,
        "history 'train_acc' holds 1.5",
    ),
    "history shorter": (
        _history("train_loss", lambda v: v[:-1]),
        ModelFileError,
        "differ in length",
    ),
    "history ends elsewhere": (
        _history("iteration", lambda v: [*v[:-1], 8]),
        ModelFileError,
        "do not increase to the checkpoint's 9",
    ),
    "history missing": (
        lambda doc: doc["metadata"].pop("history"),
        ModelFileError,
        "history is not a JSON object",
    ),
    "rng state negative": (
        _rng(state={"state": -5, "inc": 3}),
        ModelFileError,
        "rng is not a generator's state",
    ),
    "rng state rounded": (
        _rng(state={"state": 1.5, "inc": 3}),
        ModelFileError,
        "rng is not a generator's state",
    ),
    "rng spare word": (_rng(has_uint32=7), ModelFileError, "rng is not a generator's state"),
    "optimizer missing": (
        lambda doc: doc["state"]["data"]["train"].pop("optimizer"),
        ModelFileError,
        "optimizer state is not a JSON object",
    ),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_training_state_is_refused_before_anything_changes(
    data: Pair, checkpoint: Path, tmp_path: Path, case: str
) -> None:
    change, error, message = CRAFTED[case]
    bad = _craft(checkpoint, tmp_path / "bad.npz", change)
    _refused(data, bad, error, rf"bad\.npz.*{message}" if error is ModelFileError else message)


def test_crafted_optimizer_state_names_the_checkpoint(
    data: Pair, checkpoint: Path, tmp_path: Path
) -> None:
    bad = _craft(checkpoint, tmp_path / "bad.npz", _counter(-1))
    _refused(data, bad, LayerInputError, r"resume.*bad\.npz.*Adam\.set_state")


def test_negative_second_moments_are_refused(data: Pair, checkpoint: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(checkpoint) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    name = "optimizer.v.W1.npy"
    v = np.lib.format.read_array(BytesIO(members[name]))
    out = BytesIO()
    np.lib.format.write_array(out, -np.abs(v) - 1.0)
    members[name] = out.getvalue()
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as zf:
        for key, blob in members.items():
            zf.writestr(key, blob)
    _refused(data, bad, LayerInputError, r"arrays\['v\.W1'\].*values >= 0")


def test_crafted_running_variance_is_refused(data: Pair, tmp_path: Path) -> None:
    ckpt = tmp_path / "bn.npz"

    def net() -> MultiLayerNetExtend:
        return MultiLayerNetExtend(64, [20], 10, use_batchnorm=True, seed=0)

    train(net(), Adam(lr=0.01), data, checkpoint=ckpt, **{**_RUN, "iterations": 3})
    with zipfile.ZipFile(ckpt) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    out = BytesIO()
    np.lib.format.write_array(out, -np.ones(20))
    members["running_var1.npy"] = out.getvalue()
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w") as zf:
        for key, blob in members.items():
            zf.writestr(key, blob)
    _refused(data, bad, ModelFileError, r"bad\.npz.*running variances >= 0", net=net())


def test_checkpoint_without_a_data_fingerprint_resumes_with_a_note(
    data: Pair, checkpoint: Path, tmp_path: Path
) -> None:
    old = _craft(
        checkpoint, tmp_path / "old.npz", lambda d: d["state"]["data"]["train"].pop("data")
    )
    with pytest.warns(ModelFileWarning, match=r"old\.npz.*fingerprint"):
        history = train(_net(), Adam(lr=0.01), data, resume=old, **_RUN)
    assert history.iteration == [3, 6, 9, 10]
