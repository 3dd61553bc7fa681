"""Resuming training from a checkpoint: bit for bit as if the run had never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import io
from xplayers.datasets import load_digits, train_test_split
from xplayers.errors import LayerInputError
from xplayers.network import MultiLayerNet, TwoLayerNet
from xplayers.optim import SGD, Adam, get_optimizer
from xplayers.training import History, train

from .limits import ROOT, reaped


@pytest.fixture(scope="module")
def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """300 training and 100 test samples of the shipped digits."""
    x, t = load_digits(dtype="float64")
    (x_train, t_train), (x_test, t_test) = train_test_split(x, t, test_size=0.2, seed=0)
    return (x_train[:300], t_train[:300]), (x_test[:100], t_test[:100])


def _net() -> TwoLayerNet:
    return TwoLayerNet(64, 20, 10, weight_init_std=0.1, seed=0)


def _host(net: Any) -> dict[str, bytes]:
    return {k: np.asarray(xpl.to_numpy(v)).tobytes() for k, v in net.params.items()}


class _StopError(Exception):
    """Raised by a callback to interrupt training right after a checkpoint."""


def _stop_after(evaluations: int) -> Any:
    def callback(history: History) -> None:
        if len(history) == evaluations:
            raise _StopError

    return callback


def _curve(history: History) -> dict[str, list[Any]]:
    d = history.to_dict()
    del d["seconds"]  # wall time is the only thing that may differ
    return d


_ON_SLOW = {("adam", 4), ("sgd", "epoch")}


# 300 samples in batches of 64: 5 updates per epoch, 15 in all. Evaluating
# every 4 updates checkpoints mid-epoch (4, 8, 12) and at the end (15);
# every 5 (the epoch) checkpoints at epoch boundaries.
@pytest.mark.parametrize(
    ("optimizer", "eval_every", "stop"),
    [
        ("adam", 4, 2),  # mid-epoch: iteration 8, 3 batches into the second epoch
        ("adam", "epoch", 1),  # at the end of the first epoch
        ("momentum", 4, 1),
        ("nesterov", "epoch", 2),
        ("adagrad", 4, 3),
        ("rmsprop", 4, 2),
        ("sgd", "epoch", 2),
    ],
)
def test_resume_is_bit_identical_to_an_uninterrupted_run(
    backend: Any, digits: Any, tmp_path: Path, optimizer: str, eval_every: Any, stop: int
) -> None:
    if (backend.lazy or backend.name == "jax") and (optimizer, eval_every) not in _ON_SLOW:
        pytest.skip("on Dask and JAX (10-30 s a case) two cases cover mid-epoch and epoch end")
    train_set, test_set = digits
    kwargs: dict[str, Any] = {"epochs": 3, "batch_size": 64, "eval_every": eval_every, "seed": 7}
    lr = {"sgd": 0.5, "adagrad": 0.1}.get(optimizer, 0.01)
    whole = _net()
    expected = train(whole, get_optimizer(optimizer, lr=lr), train_set, test_set, **kwargs)

    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(_StopError):
        train(
            _net(),
            get_optimizer(optimizer, lr=lr),
            train_set,
            test_set,
            checkpoint=ckpt,
            callback=_stop_after(stop),
            **kwargs,
        )
    fresh = TwoLayerNet(64, 20, 10, weight_init_std=0.1, seed=99)  # other weights: replaced
    resumed = train(
        fresh, get_optimizer(optimizer, lr=lr), train_set, test_set, resume=ckpt, **kwargs
    )
    assert _host(fresh) == _host(whole)
    assert _curve(resumed) == _curve(expected)


def test_resumed_run_checkpoints_and_resumes_again(digits: Any, tmp_path: Path) -> None:
    train_set, _ = digits
    kwargs: dict[str, Any] = {"iterations": 14, "batch_size": 64, "eval_every": 3}
    whole = _net()
    train(whole, Adam(lr=0.01), train_set, **kwargs)
    ckpt = tmp_path / "ckpt.npz"
    net = _net()
    for stop in (1, 3):  # iterations 3, then 9 of the resumed run
        with pytest.raises(_StopError):
            train(
                net,
                Adam(lr=0.01),
                train_set,
                checkpoint=ckpt,
                callback=_stop_after(stop),
                resume=ckpt if ckpt.exists() else None,
                **kwargs,
            )
    train(net, Adam(lr=0.01), train_set, resume=ckpt, **kwargs)
    assert _host(net) == _host(whole)


def test_checkpoint_holds_the_training_state(digits: Any, tmp_path: Path) -> None:
    train_set, _ = digits
    ckpt = tmp_path / "ckpt.npz"
    train(_net(), Adam(lr=0.01), train_set, iterations=7, batch_size=64, checkpoint=ckpt)
    header = io.read_metadata(ckpt)
    assert header["format_version"] == 2
    run = header["state"]["data"]["train"]
    assert run["iteration"] == 7
    assert run["skip"] == 2  # 7 = one epoch of 5, then 2 batches
    assert run["optimizer"] == {
        "class": "Adam",
        "hyper": {"lr": 0.01, "beta1": 0.9, "beta2": 0.999},
        "counters": {"iter": 7},
    }
    assert run["batches"] == {"batch_size": 64, "rows": 300, "batches": 5}
    names = sorted(e["name"] for e in header["state"]["arrays"])
    assert names == sorted(f"optimizer.{s}.{p}" for s in "mv" for p in ("W1", "b1", "W2", "b2"))
    assert type(io.load(ckpt)) is TwoLayerNet  # still a model file


@pytest.fixture
def checkpoint(digits: Any, tmp_path: Path) -> Path:
    ckpt = tmp_path / "ckpt.npz"
    train(_net(), Adam(lr=0.01), digits[0], iterations=5, batch_size=64, checkpoint=ckpt)
    return ckpt


@pytest.mark.parametrize(
    ("make", "changes", "message"),
    [
        (
            lambda: MultiLayerNet(64, [20], 10, seed=0),
            {},
            r"expected a checkpoint of this network \(MultiLayerNet",
        ),
        (lambda: TwoLayerNet(64, 30, 10, seed=0), {}, r"a TwoLayerNet with \{'W1': \(\(64, 20\)"),
        (_net, {"optimizer": SGD(lr=0.01)}, r"Resume with the optimizer .* state was saved with"),
        (_net, {"optimizer": Adam(lr=0.1)}, r"got the state of Adam\(.*lr=0\.01"),
        (_net, {"batch_size": 32}, "the same data and batches"),
    ],
    ids=["class", "architecture", "optimizer", "hyper-parameters", "batch size"],
)
def test_resume_refuses_another_run(
    digits: Any, checkpoint: Path, make: Any, changes: dict[str, Any], message: str
) -> None:
    net = make()
    before = _host(net)
    optimizer = changes.pop("optimizer", Adam(lr=0.01))
    kwargs: dict[str, Any] = {"iterations": 10, "batch_size": 64, **changes}
    with pytest.raises(LayerInputError, match=message):
        train(net, optimizer, digits[0], resume=checkpoint, **kwargs)
    assert _host(net) == before  # refused before anything changed


def test_resume_from_a_plain_model_file_is_refused(digits: Any, tmp_path: Path) -> None:
    path = io.save(_net(), tmp_path / "model.npz")
    with pytest.raises(LayerInputError, match="holds no training state"):
        train(_net(), Adam(), digits[0], iterations=5, resume=path)
    with pytest.raises(io.ModelFileError, match="no such file"):
        train(_net(), Adam(), digits[0], iterations=5, resume=tmp_path / "absent.npz")


# --------------------------------------------------------------------------- a killed run

_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from xplayers import to_numpy
    from xplayers.datasets import load_digits
    from xplayers.network import TwoLayerNet
    from xplayers.optim import Adam
    from xplayers.training import train

    mode, ckpt, out = sys.argv[1:]
    x, t = load_digits(dtype="float64")

    def callback(history):
        print("checkpoint", history.iteration[-1], flush=True)
        if mode == "kill" and history.iteration[-1] == 16:
            time.sleep(60)  # killed here, mid-run, after a checkpoint

    net = TwoLayerNet(64, 30, 10, weight_init_std=0.1, seed=0)
    train(net, Adam(lr=0.01), (x, t), iterations=24, batch_size=100, eval_every=8,
          checkpoint=None if mode == "whole" else ckpt, callback=callback,
          resume=ckpt if mode == "resume" else None)
    np.savez(out, **{k: to_numpy(v) for k, v in net.params.items()})
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_run_killed_after_a_checkpoint_resumes_bit_identically(
    backend: Any, tmp_path: Path
) -> None:
    if backend.readonly:
        pytest.skip("the child processes create their own arrays: same as numpy")
    if backend.lazy:
        pytest.skip("three Dask child processes take a minute; Dask resumes in-process above")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XPLAYERS_BACKEND": backend.id,
        "JAX_ENABLE_X64": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    ckpt, whole, resumed = tmp_path / "ckpt.npz", tmp_path / "whole.npz", tmp_path / "res.npz"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _CHILD, *map(str, args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    # 1437 samples in batches of 100: 15 per epoch; checkpoint 16 is mid-epoch
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "kill", str(ckpt), str(tmp_path / "never.npz")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    with reaped(child):
        assert child.stdout is not None
        assert child.stdout.readline().split() == ["checkpoint", "8"]
        assert child.stdout.readline().split() == ["checkpoint", "16"]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert io.read_metadata(ckpt)["state"]["data"]["train"]["iteration"] == 16
    done = run("resume", ckpt, resumed)
    assert done.stdout.split("\n")[:2] == ["checkpoint 24", ""]
    run("whole", tmp_path / "unused.npz", whole)
    with np.load(whole) as a, np.load(resumed) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            assert a[k].tobytes() == b[k].tobytes(), k


def test_cli_train_resume_continues_bit_identically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xplayers.cli import main

    common = [
        "train",
        "--dataset",
        "digits",
        "--optimizer",
        "adam",
        "--quiet",
        "--backend",
        "numpy",
    ]
    ckpt, whole, resumed = tmp_path / "ckpt.npz", tmp_path / "whole.npz", tmp_path / "res.npz"
    assert main([*common, "--iterations", "10", "--checkpoint", str(ckpt)]) == 0
    assert (
        main([*common, "--iterations", "30", "--resume", str(ckpt), "--output", str(resumed)]) == 0
    )
    assert main([*common, "--iterations", "30", "--output", str(whole)]) == 0
    assert _host(io.load(resumed)) == _host(io.load(whole))
    # another optimizer: one clean line, no traceback
    code = main([*common, "--optimizer", "sgd", "--iterations", "30", "--resume", str(ckpt)])
    err = capsys.readouterr().err
    assert code != 0
    assert "Resume with the optimizer" in err
    assert "Traceback" not in err


def test_resume_with_dropout_is_bit_identical(digits: Any, tmp_path: Path) -> None:
    """Dropout's mask generators are in the checkpoint, so its masks go on where they were."""
    from xplayers.network import MultiLayerNetExtend
    from xplayers.optim import SGD

    train_set, test_set = digits

    def net() -> Any:
        return MultiLayerNetExtend(64, [20, 20], 10, use_dropout=True, dropout_ration=0.3, seed=3)

    kwargs: dict[str, Any] = {"epochs": 3, "batch_size": 64, "eval_every": 4, "seed": 7}
    whole = net()
    expected = train(whole, SGD(lr=0.1), train_set, test_set, **kwargs)
    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(_StopError):
        train(
            net(),
            SGD(lr=0.1),
            train_set,
            test_set,
            checkpoint=ckpt,
            callback=_stop_after(3),
            **kwargs,
        )
    fresh = net()
    for layer in fresh.layers.values():  # other masks from here on: replaced by the checkpoint's
        if hasattr(layer, "reseed"):
            layer.reseed(12345)
    resumed = train(fresh, SGD(lr=0.1), train_set, test_set, resume=ckpt, **kwargs)
    assert _host(fresh) == _host(whole)
    assert _curve(resumed) == _curve(expected)
    without = MultiLayerNetExtend(64, [20, 20], 10, use_dropout=False, seed=3)
    with pytest.raises(LayerInputError, match="use_dropout True in the checkpoint, False here"):
        train(without, SGD(lr=0.1), train_set, test_set, resume=ckpt, **kwargs)
