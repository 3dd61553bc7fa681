"""The training loop: history, evaluation, NaN detection, checkpoints, plots, progress bar."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import io
from xplayers.datasets import BatchLoader, load_digits, train_test_split
from xplayers.errors import LayerInputError
from xplayers.network import MultiLayerNet, TwoLayerNet
from xplayers.optim import SGD, Adam
from xplayers.training import History, MissingDependencyError, TrainingError, evaluate, train


@pytest.fixture(scope="module")
def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A small, fixed subset of the shipped digits: 300 training and 100 test samples."""
    x, t = load_digits(dtype="float64")
    (x_train, t_train), (x_test, t_test) = train_test_split(x, t, test_size=0.2, seed=0)
    return (x_train[:300], t_train[:300]), (x_test[:100], t_test[:100])


def _net(dtype: str = "float64") -> TwoLayerNet:
    return TwoLayerNet(64, 20, 10, weight_init_std=0.1, seed=0, dtype=dtype)


def test_history_shapes_per_epoch(digits: Any) -> None:
    train_set, test_set = digits
    history = train(_net(), SGD(lr=0.5), train_set, test_set, epochs=3, batch_size=64)
    assert len(history) == 3
    assert history.epoch == [1.0, 2.0, 3.0]
    assert history.iteration == [5, 10, 15]  # ceil(300 / 64) = 5 updates per epoch
    for name in ("train_loss", "train_acc", "test_acc", "seconds"):
        values = getattr(history, name)
        assert len(values) == 3
        assert all(isinstance(v, float) for v in values)
    assert all(0.0 <= a <= 1.0 for a in history.train_acc + history.test_acc)
    assert history.seconds == sorted(history.seconds)
    d = history.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert History.from_dict(d) == history


def test_iterations_evaluate_each_epoch_and_at_the_end(digits: Any) -> None:
    train_set, _ = digits
    history = train(_net(), SGD(lr=0.5), train_set, iterations=12, batch_size=60)
    assert history.iteration == [5, 10, 12]
    assert history.epoch == [1.0, 2.0, 2.4]
    assert history.test_acc == [None, None, None]


def test_eval_every_iterations(digits: Any) -> None:
    train_set, test_set = digits
    history = train(
        _net(), SGD(lr=0.5), train_set, test_set, epochs=2, batch_size=100, eval_every=4
    )
    assert history.iteration == [4, 6]


def test_loss_decreases_and_accuracy_rises(digits: Any) -> None:
    train_set, test_set = digits
    history = train(_net(), Adam(lr=0.01), train_set, test_set, epochs=6, batch_size=30)
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.train_acc[-1] > history.train_acc[0]
    assert history.test_acc[-1] is not None
    assert history.test_acc[-1] > 0.8


def test_train_loss_is_the_epoch_mean(digits: Any) -> None:
    """The recorded loss is the per-sample mean of the losses of the epoch's updates."""
    train_set, _ = digits
    net_a, net_b = _net(), _net()
    history = train(net_a, SGD(lr=0.1), train_set, epochs=1, batch_size=128, seed=4)
    opt = SGD(lr=0.1)
    total, count = 0.0, 0
    for xb, tb in BatchLoader(*train_set, 128, seed=4):
        total += float(net_b.train_step(xb, tb, opt)) * xb.shape[0]
        count += xb.shape[0]
    assert history.train_loss[0] == pytest.approx(total / count, rel=1e-12)
    for k in net_a.params:
        np.testing.assert_array_equal(net_a.params[k], net_b.params[k])


def test_evaluation_accuracy_matches_full_batch(digits: Any) -> None:
    train_set, test_set = digits
    net = _net()
    history = train(
        net, SGD(lr=0.5), train_set, test_set, epochs=1, batch_size=50, eval_batch_size=7
    )
    assert history.test_acc[-1] == pytest.approx(net.accuracy(*test_set), abs=1e-12)
    result = evaluate(net, *test_set, batch_size=33)
    assert result["samples"] == 100
    assert result["accuracy"] == pytest.approx(net.accuracy(*test_set), abs=1e-12)
    assert result["loss"] == pytest.approx(float(net.loss(*test_set)), rel=1e-12)


def test_runs_on_each_backend(backend: Any, xp: Any, digits: Any) -> None:
    train_set, test_set = digits
    net = _net()
    history = train(net, SGD(lr=0.5), train_set, test_set, epochs=2, batch_size=100)
    assert len(history) == 2
    assert history.train_loss[1] < history.train_loss[0]
    for value in net.params.values():
        assert xpl.namespace(value) is xp


@pytest.mark.parametrize("other", ["torch", "array_api_strict"])
def test_same_seed_same_curve_across_backends(digits: Any, other: str) -> None:
    ok, why = xpl.backend_status(other)
    if not ok:
        pytest.skip(why)
    train_set, test_set = digits
    curves = []
    for name in ("numpy", other):
        with xpl.use_backend(name):
            net = MultiLayerNet(64, [30, 20], 10, seed=7, dtype="float64")
            history = train(
                net, Adam(lr=0.01), train_set, test_set, epochs=3, batch_size=50, seed=11
            )
        curves.append(history)
    reference, other = curves
    np.testing.assert_allclose(other.train_loss, reference.train_loss, rtol=1e-10)
    assert other.train_acc == reference.train_acc
    assert other.test_acc == reference.test_acc


def test_other_seed_other_curve(digits: Any) -> None:
    train_set, _ = digits
    a = train(_net(), SGD(lr=0.5), train_set, epochs=2, batch_size=50, seed=1)
    b = train(_net(), SGD(lr=0.5), train_set, epochs=2, batch_size=50, seed=2)
    c = train(_net(), SGD(lr=0.5), train_set, epochs=2, batch_size=50, seed=1)
    assert a.train_loss == c.train_loss
    assert a.train_loss != b.train_loss


# --------------------------------------------------------------------------- NaN and infinity


def _step_with(index: int, n: int, batch_size: int, seed: int) -> int:
    """The 1-based iteration of the first epoch whose batch holds sample `index`."""
    loader = BatchLoader(np.zeros((n, 1)), np.arange(n), batch_size, seed=seed)
    for i, (_, tb) in enumerate(loader, start=1):
        if index in np.asarray(xpl.to_numpy(tb)).tolist():
            return i
    raise AssertionError("unreachable")


def test_poisoned_input_names_the_step(backend: Any, digits: Any) -> None:
    (x, t), _ = digits
    x = x.copy()
    x[123, 5] = np.nan
    expected = _step_with(123, x.shape[0], 40, seed=3)
    with pytest.raises(TrainingError, match=f"epoch 1, iteration {expected} ") as info:
        train(_net(), SGD(lr=0.1), (x, t), epochs=2, batch_size=40, seed=3)
    assert "nan" in str(info.value)
    assert isinstance(info.value, RuntimeError)


def test_huge_learning_rate_diverges(digits: Any) -> None:
    train_set, _ = digits
    net = TwoLayerNet(64, 20, 10, weight_init_std=1.0, seed=0)
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match=r"epoch \d+, iteration \d+"):
        train(net, SGD(lr=1e300), train_set, epochs=5, batch_size=50)


# --------------------------------------------------------------------------- checkpoints and plots


def test_checkpoint_written_every_epoch(tmp_path: Path, digits: Any) -> None:
    train_set, test_set = digits
    path = tmp_path / "ckpt.npz"
    seen: list[int] = []

    def check(history: History) -> None:
        meta = io.read_metadata(path)["metadata"]
        assert meta["checkpoint"]["iteration"] == history.iteration[-1]
        assert meta["history"] == history.to_dict()
        seen.append(history.iteration[-1])

    net = _net()
    train(
        net,
        SGD(lr=0.5),
        train_set,
        test_set,
        epochs=3,
        batch_size=100,
        checkpoint=path,
        callback=check,
    )
    assert seen == [3, 6, 9]
    restored = io.load(path)
    for k in net.params:
        np.testing.assert_array_equal(restored.params[k], net.params[k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


def test_plot_written(tmp_path: Path, digits: Any) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    train_set, test_set = digits
    path = tmp_path / "curve.png"
    history = train(_net(), SGD(lr=0.5), train_set, test_set, epochs=2, plot=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history.plot(tmp_path / "again.png", title="digits")
    assert (tmp_path / "again.png").stat().st_size > 1000


def test_plot_without_matplotlib_fails_before_training(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, digits: Any
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    net = _net()
    before = np.array(net.params["W1"], copy=True)
    with pytest.raises(MissingDependencyError, match=r'pip install "xplayers\[plot\]"'):
        train(net, SGD(lr=0.5), digits[0], epochs=1, plot=tmp_path / "c.png")
    np.testing.assert_array_equal(net.params["W1"], before)
    assert not (tmp_path / "c.png").exists()


# --------------------------------------------------------------------------- progress bar


def test_progress_bar_quiet_when_not_a_terminal(
    capsys: pytest.CaptureFixture[str], digits: Any
) -> None:
    assert not sys.stderr.isatty()
    train(_net(), SGD(lr=0.5), digits[0], epochs=2, batch_size=50)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ""


def test_progress_bar_on_request(capsys: pytest.CaptureFixture[str], digits: Any) -> None:
    train(_net(), SGD(lr=0.5), digits[0], epochs=2, batch_size=50, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "\r[" in err
    assert "it/s" in err
    assert "\n" not in err  # one line, redrawn in place and cleared at the end
    assert err.endswith("\r")


def test_progress_false_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], digits: Any
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    train(_net(), SGD(lr=0.5), digits[0], epochs=1, batch_size=50, progress=False)
    assert capsys.readouterr().err == ""
    train(_net(), SGD(lr=0.5), digits[0], epochs=1, batch_size=50)
    assert "it/s" in capsys.readouterr().err


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of epochs= or iterations="),
        ({"epochs": 1, "iterations": 5}, "exactly one of epochs= or iterations="),
        ({"epochs": 0}, "'epochs': expected an integer >= 1"),
        ({"epochs": 1.5}, "'epochs': expected an integer >= 1"),
        ({"iterations": True}, "'iterations': expected an integer >= 1"),
        ({"epochs": 1, "batch_size": 0}, "batch_size"),
        ({"epochs": 1, "eval_every": "batch"}, "'eval_every': expected an integer >= 1"),
        ({"epochs": 1, "eval_batch_size": -1}, "eval_batch_size"),
        ({"epochs": 1, "checkpoint": "/no/such/dir/ckpt.npz"}, "existing directory"),
    ],
)
def test_bad_arguments(digits: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LayerInputError, match=message):
        train(_net(), SGD(), digits[0], **kwargs)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((5, 64)), "a pair"),
        ((np.zeros((5, 64)), np.zeros(4, int)), "same number"),
        ((np.zeros((0, 64)), np.zeros(0, int)), "same number"),
    ],
)
def test_bad_data(data: Any, message: str) -> None:
    with pytest.raises(LayerInputError, match=message):
        train(_net(), SGD(), data, epochs=1)
    with pytest.raises(LayerInputError, match=message):
        train(_net(), SGD(), (np.zeros((5, 64)), np.zeros(5, int)), data, epochs=1)


def test_history_from_dict_needs_every_key() -> None:
    with pytest.raises(LayerInputError, match="test_acc"):
        History.from_dict({"epoch": [], "iteration": [], "train_loss": [], "train_acc": []})


# --------------------------------------------------------------------------- hardening


def test_a_huge_but_finite_loss_is_divergence(digits: Any) -> None:
    """lr 1e6 keeps the loss finite (about 1e20 on MNIST) with accuracy at chance: an error."""
    train_set, test_set = digits
    net = MultiLayerNet(64, [100], 10, seed=0)
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match="diverged") as info:
        train(net, SGD(lr=1e6), train_set, test_set, epochs=10, batch_size=50)
    message = str(info.value)
    assert "starting value" in message
    assert "epoch 1, iteration " in message


def test_divergence_at_the_last_evaluation_is_an_error(digits: Any) -> None:
    train_set, _ = digits
    net = MultiLayerNet(64, [100], 10, seed=0)
    with np.errstate(all="ignore"), pytest.raises(TrainingError, match="diverged"):
        train(net, SGD(lr=1e6), train_set, epochs=1, batch_size=50)


def test_a_good_run_is_not_divergence(digits: Any) -> None:
    train_set, _ = digits
    history = train(_net(), SGD(lr=0.5), train_set, epochs=4, batch_size=50)
    assert len(history) == 4


def _unchanged(net: Any) -> dict[str, np.ndarray]:
    return {k: np.array(xpl.to_numpy(v)) for k, v in net.params.items()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, t: (x[:, :32], t), r"'test_data': expected inputs of shape \(N, 64\)"),
        (lambda x, t: (x, t + 10), r"'test_data': expected labels from 0 to 9.*got labels from 10"),
        (lambda x, t: (x, -t - 1), "'test_data': expected labels from 0 to 9"),
        (lambda x, t: (x, t.astype(np.float64)), "'test_data': expected integer labels"),
    ],
)
def test_test_data_are_checked_before_the_first_step(
    digits: Any, change: Any, message: str
) -> None:
    (x, t), (xt, tt) = digits
    net = _net()
    before = _unchanged(net)
    with pytest.raises(LayerInputError, match=message):
        train(net, SGD(lr=0.5), (x, t), change(xt, tt), epochs=1, batch_size=50)
    after = _unchanged(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_training_labels_are_checked_too(digits: Any) -> None:
    (x, t), _ = digits
    with pytest.raises(LayerInputError, match="'train_data': expected labels from 0 to 9"):
        train(_net(), SGD(lr=0.5), (x, t * 2), epochs=1, batch_size=50)


def test_one_hot_labels_are_accepted(digits: Any) -> None:
    (x, t), (xt, tt) = digits
    eye = np.eye(10)
    history = train(_net(), SGD(lr=0.5), (x, eye[t]), (xt, eye[tt]), epochs=1, batch_size=50)
    assert history.test_acc[-1] is not None


@pytest.mark.parametrize("where", ["directory", "read-only"])
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc, a place no one can write")
def test_outputs_are_checked_writable_before_training(
    tmp_path: Path, digits: Any, where: str
) -> None:
    train_set, _ = digits
    path = tmp_path if where == "directory" else Path("/proc/xplayers-checkpoint.npz")
    net = _net()
    before = _unchanged(net)
    with pytest.raises(LayerInputError, match="'checkpoint'"):
        train(net, SGD(lr=0.5), train_set, epochs=1, batch_size=50, checkpoint=path)
    assert all(np.array_equal(v, xpl.to_numpy(net.params[k])) for k, v in before.items())


# --------------------------------------------------------------------------- no host reads per step


@pytest.fixture
def device_losses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Treat every loss as one whose reading waits for a device (as on a GPU); count the reads."""
    import xplayers.training as training

    reads: list[int] = []

    class DeviceLoss:
        """A 0-d loss that counts its host reads, like a CuPy or CUDA scalar."""

        def __init__(self, value: Any) -> None:
            self.value = np.asarray(value)

        def __float__(self) -> float:
            reads.append(1)
            return float(self.value)

    monkeypatch.setattr(training, "reading_waits", lambda loss: isinstance(loss, DeviceLoss))
    monkeypatch.setattr(training, "is_lazy", lambda loss: False)
    monkeypatch.setattr(training, "namespace", lambda loss: np)
    monkeypatch.setattr(training, "materialize_all", lambda losses: [x.value for x in losses])
    step = TwoLayerNet.train_step
    monkeypatch.setattr(
        TwoLayerNet, "train_step", lambda self, x, t, opt: DeviceLoss(step(self, x, t, opt))
    )
    return reads


def test_device_losses_are_read_at_evaluations_only(digits: Any, device_losses: list[int]) -> None:
    train_set, test_set = digits
    history = train(_net(), SGD(lr=0.5), train_set, test_set, epochs=3, batch_size=50)
    assert device_losses == []  # 18 steps, no loss read one by one: one stacked read per epoch
    assert len(history) == 3


def test_deferred_losses_give_the_same_history(
    digits: Any, device_losses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    train_set, test_set = digits
    deferred = train(_net(), SGD(lr=0.5), train_set, test_set, epochs=3, batch_size=50)
    monkeypatch.undo()  # each loss read after its step
    eager = train(_net(), SGD(lr=0.5), train_set, test_set, epochs=3, batch_size=50)
    np.testing.assert_allclose(deferred.train_loss, eager.train_loss, rtol=1e-12)
    assert deferred.train_acc == eager.train_acc
    assert device_losses == []


def test_a_deferred_nan_loss_still_names_its_step(digits: Any, device_losses: list[int]) -> None:
    (x, t), _ = digits
    x = x.copy()
    x[123, 5] = np.nan
    expected = _step_with(123, x.shape[0], 40, seed=3)
    with pytest.raises(TrainingError, match=f"epoch 1, iteration {expected} "):
        train(_net(), SGD(lr=0.1), (x, t), epochs=2, batch_size=40, seed=3)


def test_the_progress_bar_reads_a_deferred_loss_only_when_it_redraws(
    capsys: pytest.CaptureFixture[str], digits: Any, device_losses: list[int]
) -> None:
    train(_net(), SGD(lr=0.5), digits[0], epochs=4, batch_size=10, progress=True)
    err = capsys.readouterr().err
    redraws = err.count("\r[")
    assert " loss " in err
    assert 1 <= len(device_losses) <= redraws < 120  # 120 steps, fewer reads
