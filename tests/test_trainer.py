# ruff: noqa: NPY002 - the book seeds and draws from NumPy's global generator
"""The book's Trainer: a chapter 6-8 style program run against xplayers on every backend.

The reference below is a loop written the way the book's chapter 6 scripts
write theirs (the global ``np.random.choice``, the gradient, the optimizer's
update, the loss after the update, accuracies once per epoch); the Trainer
must give the same numbers on NumPy, bit for bit, and the same curve within
rounding on every other backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.datasets import load_digits
from xplayers.errors import LayerInputError
from xplayers.network import MultiLayerNet, SimpleConvNet
from xplayers.optim import get_optimizer
from xplayers.trainer import Trainer


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, t = load_digits(dtype="float64")
    return x[:300], t[:300], x[300:420], t[300:420]


def _net(dtype: str = "float64") -> MultiLayerNet:
    return MultiLayerNet(64, [20, 20], 10, seed=0, dtype=dtype)


def book_style_loop(network: Any, data: Any, epochs: int, batch: int, opt: Any) -> tuple:
    """A chapter 6 style loop, with NumPy's global generator."""
    x_train, t_train, x_test, t_test = data
    train_size = x_train.shape[0]
    iter_per_epoch = max(train_size / batch, 1)
    losses, train_acc, test_acc = [], [], []
    for i in range(int(epochs * iter_per_epoch)):
        mask = np.random.choice(train_size, batch)
        grads = network.gradient(x_train[mask], t_train[mask])
        opt.update(network.params, grads)
        losses.append(float(network.loss(x_train[mask], t_train[mask])))
        if i % iter_per_epoch == 0:
            train_acc.append(network.accuracy(x_train, t_train))
            test_acc.append(network.accuracy(x_test, t_test))
    return losses, train_acc, test_acc


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "adam"])
def test_matches_the_book_loop_bit_for_bit(split: Any, name: str) -> None:
    np.random.seed(7)
    expected = book_style_loop(_net(), split, 3, 64, get_optimizer(name, lr=0.05))
    np.random.seed(7)
    trainer = Trainer(
        _net(), *split, epochs=3, mini_batch_size=64, optimizer=name.upper(),
        optimizer_param={"lr": 0.05}, verbose=False,
    )  # fmt: skip
    trainer.train()
    assert trainer.max_iter == int(3 * 300 / 64) == 14
    assert (trainer.train_loss_list, trainer.train_acc_list, trainer.test_acc_list) == expected


def test_seed_gives_the_global_seeds_batches_and_leaves_it_alone(split: Any) -> None:
    np.random.seed(5)
    a = Trainer(_net(), *split, epochs=2, verbose=False)
    a.train()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    b = Trainer(_net(), *split, epochs=2, verbose=False, seed=5)
    b.train()
    assert np.array_equal(np.random.get_state()[1], before)
    assert b.train_loss_list == a.train_loss_list
    assert b.test_acc_list == a.test_acc_list


def test_prints_as_the_book(split: Any, capsys: Any) -> None:
    trainer = Trainer(_net(), *split, epochs=1, mini_batch_size=150, seed=0)
    trainer.train()
    lines = capsys.readouterr().out.splitlines()
    losses = trainer.train_loss_list
    assert lines == [
        f"train loss:{losses[0]}",
        f"=== epoch:1, train acc:{trainer.train_acc_list[0]}, test acc:"
        f"{trainer.test_acc_list[0]} ===",
        f"train loss:{losses[1]}",
        "=============== Final Test Accuracy ===============",
        f"test acc:{_net_accuracy(trainer)}",
    ]


def _net_accuracy(trainer: Trainer) -> float:
    return float(trainer.network.accuracy(trainer.x_test, trainer.t_test))


def test_evaluate_sample_num_per_epoch(split: Any) -> None:
    x, t, xt, tt = split
    trainer = Trainer(
        _net(), x, t, xt, tt, epochs=1, evaluate_sample_num_per_epoch=7, verbose=False, seed=0
    )
    trainer.train_step()
    net = trainer.network
    assert trainer.train_acc_list == [net.accuracy(x[:7], t[:7])]
    assert trainer.test_acc_list == [net.accuracy(xt[:7], tt[:7])]
    assert round(trainer.train_acc_list[0] * 7) == trainer.train_acc_list[0] * 7


def test_accuracy_in_chunks_equals_one_pass(split: Any, monkeypatch: Any) -> None:
    x, t, xt, tt = split
    trainer = Trainer(_net(), x, t, xt, tt, epochs=1, verbose=False, seed=0)
    whole = trainer.network.accuracy(x, t)
    monkeypatch.setattr("xplayers.trainer.EVAL_CHUNK", 7)
    assert trainer._accuracy(x, t, None) == whole


@pytest.mark.parametrize("data_on", ["host", "backend"])
def test_runs_on_each_backend_like_numpy(backend: Any, split: Any, data_on: str) -> None:
    """Host data or data on the backend: the curve of the NumPy run, within rounding."""
    data = split if data_on == "host" else tuple(xpl.asarray(a) for a in split)
    trainer = Trainer(
        _net(), *data, epochs=3, mini_batch_size=50, optimizer="Adam",
        optimizer_param={"lr": 0.01}, verbose=False, seed=1,
    )  # fmt: skip
    trainer.train()
    assert trainer.optimizer.__class__.__name__ == "Adam"
    with xpl.use_backend("numpy"):
        reference = Trainer(
            _net(), *split, epochs=3, mini_batch_size=50, optimizer="adam",
            optimizer_param={"lr": 0.01}, verbose=False, seed=1,
        )  # fmt: skip
        reference.train()
    np.testing.assert_allclose(trainer.train_loss_list, reference.train_loss_list, rtol=1e-9)
    assert trainer.test_acc_list == reference.test_acc_list
    assert trainer.train_loss_list[-1] < trainer.train_loss_list[0]
    for p in trainer.network.params.values():
        assert xpl.backend.backend_name(p) == backend.name


def test_convnet_chapter7_style(split: Any) -> None:
    x, t, xt, tt = (a.reshape(-1, 1, 8, 8) if a.ndim == 2 else a for a in split)
    net = SimpleConvNet(
        input_dim=(1, 8, 8),
        conv_param={"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1},
        hidden_size=20,
        output_size=10,
        weight_init_std=0.1,
        seed=0,
    )
    trainer = Trainer(
        net, x, t, xt, tt, epochs=4, mini_batch_size=30, optimizer="Adam",
        optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=100, verbose=False, seed=0,
    )  # fmt: skip
    trainer.train()
    assert len(trainer.test_acc_list) == 4
    assert trainer.test_acc_list[-1] > trainer.test_acc_list[0]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"optimizer": "adamw"}, "argument 'name'"),
        ({"optimizer": 3}, "argument 'optimizer'"),
        ({"optimizer_param": {"lr": -1.0}}, "argument 'lr'"),
        ({"optimizer_param": {"beta1": 0.5}}, "argument 'kwargs'"),
        ({"epochs": 0}, "argument 'epochs'"),
        ({"mini_batch_size": 1.5}, "argument 'mini_batch_size'"),
        ({"evaluate_sample_num_per_epoch": 0}, "argument 'evaluate_sample_num_per_epoch'"),
        ({"seed": -1}, "argument 'seed'"),
    ],
)
def test_bad_arguments(split: Any, kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(LayerInputError, match=needle):
        Trainer(_net(), *split, **kwargs)


def test_bad_data_and_network(split: Any) -> None:
    x, t, xt, tt = split
    with pytest.raises(LayerInputError, match=r"Trainer: argument 'x_train, t_train'"):
        Trainer(_net(), x, t[:-1], xt, tt)
    with pytest.raises(LayerInputError, match=r"Trainer: argument 'x_test, t_test'"):
        Trainer(_net(), x, t, xt[:0], tt[:0])
    with pytest.raises(LayerInputError, match=r"Trainer: argument 'network'"):
        Trainer(object(), x, t, xt, tt)
