"""A run that ends no better than chance says so: in train()'s history, the log and the CLI."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers.cli import main
from xplayers.datasets import load_digits, train_test_split
from xplayers.training import History, check_chance, train


@pytest.fixture(scope="module")
def digits() -> Any:
    return train_test_split(*load_digits(dtype="float64"), test_size=0.2, seed=0)


def test_a_run_at_chance_is_flagged_and_logged(
    backend: Any, digits: Any, caplog: pytest.LogCaptureFixture
) -> None:
    train_set, test_set = digits
    net = xpl.TwoLayerNet(64, 20, 10, weight_init_std=0.1, seed=0)
    with caplog.at_level(logging.WARNING, logger="xplayers"):
        history = train(net, xpl.SGD(lr=50), train_set, test_set, epochs=2, batch_size=100)
    chance = np.bincount(test_set[1]).max() / len(test_set[1])
    assert history.test_acc[-1] <= chance
    assert len(history.warnings) == 1
    assert history.warnings[0].startswith(
        f"train: the final test accuracy {history.test_acc[-1]:.4f} is no better than chance "
        f"({chance:.4f}, always answering the most common class)"
    )
    assert "lower learning rate" in history.warnings[0]
    assert [r.getMessage() for r in caplog.records if r.name == "xplayers"] == history.warnings
    assert "warnings" not in history.to_dict()  # the curve alone, as checkpoints store it


def test_a_run_that_learns_has_no_warning(digits: Any, caplog: pytest.LogCaptureFixture) -> None:
    train_set, test_set = digits
    net = xpl.TwoLayerNet(64, 20, 10, weight_init_std=0.1, seed=0)
    with caplog.at_level(logging.WARNING, logger="xplayers"):
        history = train(net, xpl.SGD(lr=0.5), train_set, test_set, epochs=2, batch_size=100)
    assert history.test_acc[-1] > 0.5
    assert history.warnings == []
    assert not [r for r in caplog.records if r.name == "xplayers"]


def test_without_a_test_set_the_training_accuracy_is_compared(digits: Any) -> None:
    train_set, _ = digits
    net = xpl.TwoLayerNet(64, 20, 10, weight_init_std=0.1, seed=0)
    history = train(net, xpl.SGD(lr=50), train_set, epochs=2, batch_size=100)
    assert history.warnings
    assert history.warnings[0].startswith("train: the final train accuracy")


def test_chance_is_the_most_common_class_not_one_over_c() -> None:
    """0.30 beats 1/C = 0.25 but not a constant answer on these labels (0.40): flagged."""
    history = History([1.0], [1], [1.0], [0.3], [0.3], [0.1])
    labels = np.array([0] * 4 + [1] * 2 + [2] * 2 + [3] * 2)
    assert check_chance(history, labels) is not None
    beats = History([1.0], [1], [1.0], [0.5], [0.5], [0.1])
    assert check_chance(beats, labels) is None
    assert beats.warnings == []
    no_test = History([1.0], [1], [1.0], [0.3], [None], [0.1])
    assert check_chance(no_test, labels, "test") is None  # nothing to compare
    assert check_chance(History(), labels) is None


def test_chunked_labels_are_read_block_by_block() -> None:
    da = pytest.importorskip("dask.array")
    labels = da.from_array(np.array([0, 0, 0, 1, 2, 3, 4, 5]), chunks=3)
    history = History([1.0], [1], [1.0], [0.375], [0.375], [0.1])
    assert check_chance(history, labels) is not None  # chance 3/8


def test_cli_prints_a_warning_line_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--lr", "50", "--optimizer", "sgd", "--epochs", "3", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xplayers: warning: train: the final test accuracy ")
    assert "no better than chance" in lines[0]
    assert out.startswith("test accuracy ")
    assert not logging.getLogger("xplayers").handlers  # the CLI's handler is gone afterwards
