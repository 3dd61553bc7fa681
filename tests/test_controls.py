"""train's validation data, early stopping, learning-rate schedules and gradient clipping.

Resuming with any of them must be bit for bit as if the run had never
stopped: the schedule's state, the early-stopping counters and the best
parameters travel in the checkpoint, and crafted values are refused
before anything changes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import io
from xplayers.backend import backend_name
from xplayers.datasets import load_digits, train_test_split
from xplayers.errors import LayerInputError, ModelFileError
from xplayers.monitoring import EarlyStopping, improved
from xplayers.network import TwoLayerNet
from xplayers.optim import SGD, Adam, ClipGradNorm, clip_grad_norm
from xplayers.schedules import CosineDecay, ReduceOnPlateau, StepDecay, get_schedule
from xplayers.training import History, evaluate, train


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


def _curve(history: History) -> dict[str, Any]:
    d = history.to_dict()
    del d["seconds"]
    return d


class _StopError(Exception):
    """Raised by a callback to interrupt training right after a checkpoint."""


def _stop_after(evaluations: int) -> Any:
    def callback(history: History) -> None:
        if len(history) == evaluations:
            raise _StopError

    return callback


# --------------------------------------------------------------------------- schedules


def test_step_and_cosine_rates() -> None:
    step = StepDecay(step_size=2, gamma=0.5)
    assert [step.rate(1.0, k, 3, 30, {}) for k in (0, 5, 6, 11, 12)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cosine = CosineDecay(min_lr=0.1)
    assert cosine.rate(1.0, 0, 3, 10, {}) == 1.0
    assert cosine.rate(1.0, 5, 3, 10, {}) == pytest.approx(0.55)
    assert cosine.rate(1.0, 10, 3, 10, {}) == pytest.approx(0.1)
    assert CosineDecay(min_lr=5.0).rate(1.0, 3, 3, 10, {}) == 1.0  # never above the base


def test_reduce_on_plateau_counts_evaluations_without_improvement() -> None:
    s = ReduceOnPlateau(monitor="val_acc", factor=0.5, patience=2, min_delta=0.01, min_lr=0.2)
    state = s.initial_state()
    for acc in (0.5, 0.505, 0.51, 0.6, 0.6, 0.6, 0.6):
        state = s.observe(state, {"val_acc": acc})
    assert state == {"best": 0.6, "wait": 1, "reductions": 2}
    assert s.rate(1.0, 0, 1, 1, state) == 0.25
    state["reductions"] = 5
    assert s.rate(1.0, 0, 1, 1, state) == 0.2  # min_lr


def test_improved_directions() -> None:
    assert improved("val_loss", 1.0, 1.5, 0.4)
    assert not improved("val_loss", 1.2, 1.5, 0.4)
    assert improved("train_acc", 0.8, 0.7, 0.05)
    assert not improved("train_acc", 0.7, 0.8, 0.0)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: StepDecay(step_size=0), "StepDecay: argument 'step_size'"),
        (lambda: StepDecay(step_size=1, gamma=1.5), "StepDecay: argument 'gamma'"),
        (lambda: CosineDecay(min_lr=-1.0), "CosineDecay: argument 'min_lr'"),
        (lambda: ReduceOnPlateau(factor=1.0), "ReduceOnPlateau: argument 'factor'"),
        (lambda: ReduceOnPlateau(monitor="test_acc"), "ReduceOnPlateau: argument 'monitor'"),
        (lambda: EarlyStopping(patience=0), "EarlyStopping: argument 'patience'"),
        (lambda: EarlyStopping(min_delta=math.nan), "EarlyStopping: argument 'min_delta'"),
        (lambda: EarlyStopping(restore_best=1), "EarlyStopping: argument 'restore_best'"),
        (lambda: get_schedule("linear"), "get_schedule: argument 'name'"),
        (lambda: clip_grad_norm({}, 0.0), "clip_grad_norm: argument 'max_norm'"),
        (lambda: ClipGradNorm(object(), 1.0), "ClipGradNorm: argument 'optimizer'"),
    ],
)
def test_bad_settings(make: Any, needle: str) -> None:
    with pytest.raises(LayerInputError, match=needle):
        make()


# --------------------------------------------------------------------------- train


def test_schedule_sets_the_rate_of_each_update_and_gives_it_back(digits: Any) -> None:
    train_set, _ = digits
    opt = SGD(lr=0.4)
    seen: list[float] = []

    class Watching(TwoLayerNet):
        def train_step(self, x: Any, t: Any, optimizer: Any) -> Any:
            seen.append(optimizer.lr)
            return super().train_step(x, t, optimizer)

    net = Watching(64, 20, 10, weight_init_std=0.1, seed=0)
    history = train(
        net, opt, train_set, epochs=4, batch_size=100, schedule=StepDecay(step_size=2, gamma=0.5)
    )
    assert seen == [0.4] * 6 + [0.2] * 6
    assert history.lr == [0.4, 0.4, 0.2, 0.2]
    assert opt.lr == 0.4
    cosine = train(_net(), opt, train_set, iterations=7, batch_size=100, schedule=CosineDecay())
    assert cosine.lr[-1] == pytest.approx(0.4 * (1 + math.cos(math.pi * 6 / 7)) / 2)


def test_plateau_lowers_the_rate_in_train(digits: Any) -> None:
    train_set, _ = digits
    schedule = ReduceOnPlateau(monitor="train_loss", factor=0.5, patience=1, min_delta=100.0)
    history = train(_net(), Adam(lr=0.01), train_set, epochs=4, batch_size=100, schedule=schedule)
    # the first evaluation sets the best; each later one misses by min_delta: one reduction each
    assert history.lr == [0.01, 0.01, 0.005, 0.0025]


def test_validation_split_holds_out_the_last_rows(digits: Any) -> None:
    (x, t), _ = digits
    net = _net()
    history = train(net, Adam(lr=0.01), (x, t), epochs=2, batch_size=50, validation_split=0.2)
    assert history.iteration == [5, 10]  # 240 training samples in batches of 50
    result = evaluate(net, x[240:], t[240:])
    assert history.val_loss[-1] == pytest.approx(result["loss"], rel=1e-12)
    assert history.val_acc[-1] == pytest.approx(result["accuracy"], rel=1e-12)
    plain = train(_net(), Adam(lr=0.01), (x[:240], t[:240]), epochs=2, batch_size=50)
    assert plain.train_loss == history.train_loss  # the same updates, on the first 240 rows
    assert plain.val_loss == [None, None]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"validation_split": 0.0}, "argument 'validation_split'"),
        ({"validation_split": 1e-17}, "at least one sample on each side"),
        ({"validation_split": 0.2, "validation_data": "x"}, "not both"),
        ({"early_stopping": EarlyStopping()}, "validation data for monitor='val_loss'"),
        ({"schedule": ReduceOnPlateau(monitor="val_acc")}, "validation data for monitor"),
        ({"schedule": "cosine"}, "argument 'schedule'"),
        ({"early_stopping": 3}, "argument 'early_stopping'"),
        ({"clip_norm": -1.0}, "argument 'clip_norm'"),
    ],
)
def test_bad_train_arguments_change_nothing(
    digits: Any, kwargs: dict[str, Any], needle: str
) -> None:
    net = _net()
    before = _host(net)
    with pytest.raises(LayerInputError, match=needle):
        train(net, SGD(lr=0.1), digits[0], epochs=1, **kwargs)
    assert _host(net) == before


def test_validation_data_of_another_width_is_refused(digits: Any) -> None:
    (x, t), _ = digits
    with pytest.raises(LayerInputError, match="argument 'validation_data'"):
        train(_net(), SGD(lr=0.1), (x, t), epochs=1, validation_data=(x[:, :10], t))
    with pytest.raises(LayerInputError, match=r"argument 'validation_data'.*labels from 0 to 9"):
        train(_net(), SGD(lr=0.1), (x, t), epochs=1, validation_data=(x, t + 5))


def test_early_stopping_stops_and_restores_the_best(backend: Any, digits: Any) -> None:
    train_set, test_set = digits
    snapshots: dict[int, dict[str, bytes]] = {}
    net = _net()

    def keep(history: History) -> None:
        snapshots[history.iteration[-1]] = _host(net)

    stopping = EarlyStopping(monitor="train_acc", patience=2, min_delta=0.5)
    history = train(
        net, SGD(lr=0.3), train_set, test_set, epochs=10, batch_size=100,
        early_stopping=stopping, callback=keep,
    )  # fmt: skip
    # the first evaluation is the best; no later one beats it by 0.5: stop at the third
    assert history.iteration == [3, 6, 9]
    assert (history.best_iteration, history.stopped_iteration) == (3, 9)
    assert _host(net) == snapshots[3]
    for p in net.params.values():
        assert backend_name(p) == backend.name


def test_early_stopping_without_patience_keeps_the_best_to_the_end(digits: Any) -> None:
    train_set, _ = digits
    net = _net()
    history = train(
        net, SGD(lr=0.3), train_set, epochs=4, batch_size=100, validation_split=0.25,
        early_stopping=EarlyStopping(monitor="val_acc", patience=None),
    )  # fmt: skip
    assert history.stopped_iteration is None
    assert len(history) == 4
    best = history.val_acc.index(max(history.val_acc))
    assert history.best_iteration == history.iteration[best]
    assert evaluate(net, *[a[225:] for a in train_set])["accuracy"] == max(history.val_acc)


def test_clip_grad_norm_scales_on_the_device(backend: Any, xp: Any) -> None:
    grads = {"a": xpl.asarray(np.array([3.0, 0.0])), "b": xpl.asarray(np.array([[4.0]]))}
    clipped, norm = clip_grad_norm(grads, 2.5)
    assert backend_name(norm) == backend.name  # a 0-d array of the backend, never read back
    assert float(xpl.to_numpy(norm)) == 5.0
    np.testing.assert_allclose(xpl.to_numpy(clipped["a"]), [1.5, 0.0], rtol=1e-15)
    np.testing.assert_allclose(xpl.to_numpy(clipped["b"]), [[2.0]], rtol=1e-15)
    same, _ = clip_grad_norm(grads, 5.0)  # at the limit: multiplied by exactly one
    assert np.array_equal(xpl.to_numpy(same["a"]), xpl.to_numpy(grads["a"]))


def test_clip_grad_norm_keeps_dtypes_and_sums_float16_in_float32() -> None:
    grads = {"h": np.full(4, 300.0, dtype=np.float16), "s": np.ones(1, dtype=np.float32)}
    clipped, norm = clip_grad_norm(grads, 1.0)
    assert norm.dtype == np.float32
    assert float(norm) == pytest.approx(math.sqrt(4 * 300**2 + 1))
    assert clipped["h"].dtype == np.float16
    assert clipped["s"].dtype == np.float32


def test_clipped_training_on_each_backend_matches_numpy(backend: Any, digits: Any) -> None:
    train_set, _ = digits
    net = _net()
    history = train(net, SGD(lr=0.5), train_set, epochs=2, batch_size=100, clip_norm=0.05)
    with xpl.use_backend("numpy"):
        ref_net = _net()
        reference = train(ref_net, SGD(lr=0.5), train_set, epochs=2, batch_size=100, clip_norm=0.05)
        unclipped = train(_net(), SGD(lr=0.5), train_set, epochs=2, batch_size=100)
        loose = train(_net(), SGD(lr=0.5), train_set, epochs=2, batch_size=100, clip_norm=1e9)
    np.testing.assert_allclose(history.train_loss, reference.train_loss, rtol=1e-10)
    assert reference.train_loss != unclipped.train_loss
    assert loose.train_loss == unclipped.train_loss  # a factor of exactly one
    for key, p in net.params.items():
        np.testing.assert_allclose(xpl.to_numpy(p), xpl.to_numpy(ref_net.params[key]), rtol=1e-9)


# --------------------------------------------------------------------------- resume

_RESUME_CASES = {
    "cosine": {"schedule": CosineDecay(min_lr=0.001)},
    "step": {"schedule": StepDecay(step_size=1, gamma=0.7)},
    "plateau": {
        "schedule": ReduceOnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.3),
        "validation_split": 0.2,
    },
    "early-stopping": {
        "early_stopping": EarlyStopping(monitor="val_acc", patience=3, min_delta=0.02),
        "validation_split": 0.2,
        "clip_norm": 1.0,
    },
}


@pytest.mark.parametrize("case", list(_RESUME_CASES))
def test_resume_with_controls_is_bit_identical(
    backend: Any, digits: Any, tmp_path: Path, case: str
) -> None:
    slow = {"jax": ("plateau", "early-stopping"), "dask": ("early-stopping",)}
    if case not in slow.get(backend.name, _RESUME_CASES):
        pytest.skip("on Dask and JAX (20-50 s a case) the stateful controls only")
    train_set, test_set = digits
    kwargs: dict[str, Any] = {
        "epochs": 6, "batch_size": 64, "eval_every": 4, "seed": 3, **_RESUME_CASES[case],
    }  # fmt: skip
    whole = _net()
    expected = train(whole, Adam(lr=0.02), train_set, test_set, **kwargs)
    ckpt = tmp_path / "ckpt.npz"
    with pytest.raises(_StopError):
        train(
            _net(), Adam(lr=0.02), train_set, test_set,
            checkpoint=ckpt, callback=_stop_after(3), **kwargs,
        )  # fmt: skip
    saved = io.read_metadata(ckpt)["state"]["data"]["train"]
    assert saved["optimizer"]["hyper"]["lr"] == 0.02  # the optimizer's own rate
    fresh = TwoLayerNet(64, 20, 10, weight_init_std=0.1, seed=99)
    resumed = train(fresh, Adam(lr=0.02), train_set, test_set, resume=ckpt, **kwargs)
    assert _host(fresh) == _host(whole)
    assert _curve(resumed) == _curve(expected)
    if case == "plateau":
        assert len(set(expected.lr)) > 1  # the rate did change before and after the stop
    if case == "early-stopping":
        assert expected.best_iteration is not None


def test_resume_of_a_stopped_run_only_restores_the_best(digits: Any, tmp_path: Path) -> None:
    train_set, _ = digits
    kwargs: dict[str, Any] = {
        "epochs": 10, "batch_size": 100, "validation_split": 0.2,
        "early_stopping": EarlyStopping(monitor="val_acc", patience=1, min_delta=1.0),
    }  # fmt: skip
    ckpt = tmp_path / "ckpt.npz"
    whole = _net()
    expected = train(whole, SGD(lr=0.3), train_set, checkpoint=ckpt, **kwargs)
    assert expected.stopped_iteration == 6
    fresh = TwoLayerNet(64, 20, 10, weight_init_std=0.1, seed=99)
    resumed = train(fresh, SGD(lr=0.3), train_set, resume=ckpt, **kwargs)
    assert _curve(resumed) == _curve(expected)
    assert _host(fresh) == _host(whole)


@pytest.fixture
def controlled(digits: Any, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "iterations": 6, "batch_size": 64, "validation_split": 0.2,
        "schedule": ReduceOnPlateau(patience=2), "early_stopping": EarlyStopping(patience=4),
    }  # fmt: skip
    ckpt = tmp_path / "ckpt.npz"
    train(_net(), Adam(lr=0.01), digits[0], checkpoint=ckpt, eval_every=3, **kwargs)
    return ckpt, kwargs


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedule": ReduceOnPlateau(patience=3)}, "the same schedule, early stopping"),
        ({"schedule": None}, "the same schedule, early stopping"),
        ({"early_stopping": EarlyStopping(patience=5)}, "the same schedule, early stopping"),
        ({"clip_norm": 1.0}, "the same schedule, early stopping"),
        ({"validation_split": 0.3}, "the same"),
    ],
)
def test_resume_refuses_other_controls(
    digits: Any, controlled: Any, changes: dict[str, Any], message: str
) -> None:
    ckpt, kwargs = controlled
    net = _net()
    before = _host(net)
    with pytest.raises(LayerInputError, match=message):
        train(net, Adam(lr=0.01), digits[0], resume=ckpt, **{**kwargs, **changes})
    assert _host(net) == before


def _craft(path: Path, edit: Any) -> None:
    """Rewrite the checkpoint at `path` with its training state changed by `edit`."""
    saved = io.read_checkpoint(path)
    state = dict(saved.state)
    arrays = dict(saved.arrays)
    edit(state["train"]["controls"], arrays)
    io.save_checkpoint(
        io.load(path), path, state=state, arrays=arrays, metadata=saved.header["metadata"]
    )


def _set(section: str, key: str, value: Any) -> Any:
    def edit(controls: dict[str, Any], arrays: dict[str, Any]) -> None:
        controls[section][key] = value

    return edit


def _drop_best(controls: dict[str, Any], arrays: dict[str, Any]) -> None:
    for name in [n for n in arrays if n.startswith("best.")]:
        del arrays[name]


def _bad_best(controls: dict[str, Any], arrays: dict[str, Any]) -> None:
    arrays["best.W1"] = arrays["best.W1"].astype(np.float32)


def _short_best(controls: dict[str, Any], arrays: dict[str, Any]) -> None:
    arrays["best.b1"] = arrays["best.b1"][:3]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("schedule_state", "wait", -1), "its learning-rate schedule state"),
        (_set("schedule_state", "wait", 7), "its learning-rate schedule state"),
        (_set("schedule_state", "reductions", 1.5), "its learning-rate schedule state"),
        (_set("schedule_state", "best", "low"), "its learning-rate schedule state"),
        (_set("early_stopping_state", "wait", True), "its early-stopping state"),
        (_set("early_stopping_state", "best", None), "its early-stopping state"),
        (_set("early_stopping_state", "stopped", 1), "its early-stopping state"),
        (_set("early_stopping_state", "extra", 1), "its early-stopping state"),
        (_drop_best, "the best parameters do not match the best evaluation"),
        (_bad_best, "best parameter 'W1' is float32"),
        (_short_best, r"best parameter 'b1' is float64 \(3,\)"),
    ],
)
def test_crafted_control_state_is_refused_naming_the_file(
    digits: Any, controlled: Any, edit: Any, message: str
) -> None:
    ckpt, kwargs = controlled
    _craft(ckpt, edit)
    net = _net()
    opt = Adam(lr=0.01)
    before = _host(net)
    with pytest.raises(ModelFileError, match=message) as info:
        train(net, opt, digits[0], resume=ckpt, **kwargs)
    message_text = str(info.value)
    assert str(ckpt) in message_text
    assert "\n" not in message_text
    assert _host(net) == before
    assert opt.state()[1] == {}


def test_history_without_the_new_entries_still_loads() -> None:
    old = {
        "epoch": [1.0], "iteration": [5], "train_loss": [0.5], "train_acc": [0.9],
        "test_acc": [None], "seconds": [0.1],
    }  # fmt: skip
    history = History.from_dict(old)
    assert (history.val_loss, history.val_acc, history.lr) == ([None], [None], [None])
    assert history.best_iteration is None


@pytest.mark.backends("jax")
def test_a_schedule_compiles_the_jax_step_once(backend: Any, digits: Any) -> None:
    """The scheduled rate is a traced value: a new rate every update traces nothing again."""
    from xplayers._pure_step import compiled_step

    if backend.name != "jax":
        pytest.skip("the compiled step is JAX's")
    net = TwoLayerNet(64, 13, 10, weight_init_std=0.1, seed=0)  # a structure of its own
    opt = Adam(lr=0.01)
    step = compiled_step(net, opt)
    assert step is not None
    before = step.traces
    history = train(net, opt, digits[0], epochs=3, batch_size=100, schedule=CosineDecay())
    assert len(set(history.lr)) == 3
    assert step.traces - before <= 1  # one batch shape: at most one trace


@pytest.mark.parametrize(
    ("entry", "value", "message"),
    [
        ("best_iteration", 10**9, "history 'best_iteration' is 1000000000"),
        ("val_acc", [1.5, 0.5], "history 'val_acc' holds 1.5"),
        ("lr", [-1.0, 0.01], "history 'lr' holds -1.0"),
    ],
)
def test_crafted_history_entries_are_refused(
    digits: Any, controlled: Any, entry: str, value: Any, message: str
) -> None:
    ckpt, kwargs = controlled
    saved = io.read_checkpoint(ckpt)
    metadata = dict(saved.header["metadata"])
    metadata["history"] = {**metadata["history"], entry: value}
    io.save_checkpoint(
        io.load(ckpt), ckpt, state=saved.state, arrays=saved.arrays, metadata=metadata
    )
    net = _net()
    before = _host(net)
    with pytest.raises(ModelFileError, match=message):
        train(net, Adam(lr=0.01), digits[0], resume=ckpt, **kwargs)
    assert _host(net) == before
