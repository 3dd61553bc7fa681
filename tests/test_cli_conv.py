"""``xplayers train --network conv``: the chapter-7 SimpleConvNet from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import _assert_one_line_error, _run, _write_mnist
from xplayers import io


def test_conv_on_digits_then_evaluate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "conv.npz"
    code, out, err = _run(
        capsys, "train", "--network", "conv", "--filters", "8", "--hidden", "32",
        "--epochs", "2", "--seed", "0", "--output", str(model),
    )  # fmt: skip
    assert code == 0, err
    assert "SimpleConvNet" in out
    config = io.read_metadata(model)["config"]
    assert config["conv_param"] == {"filter_num": 8, "filter_size": 3, "pad": 0, "stride": 1}
    assert config["input_dim"] == [1, 8, 8]
    code, out, err = _run(capsys, "evaluate", str(model))
    assert code == 0, err


def test_conv_on_mnist_uses_the_books_filter(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mnist = _write_mnist(tmp_path / "mnist", n_train=60, n_test=20)
    model = tmp_path / "m.npz"
    code, _, err = _run(
        capsys, "train", "--dataset", "mnist", "--mnist-dir", str(mnist), "--network", "conv",
        "--filters", "4", "--hidden", "16", "--iterations", "2", "--batch-size", "30",
        "--output", str(model),
    )  # fmt: skip
    assert code == 0, err
    config = io.read_metadata(model)["config"]
    assert config["conv_param"]["filter_size"] == 5
    assert config["input_dim"] == [1, 28, 28]


@pytest.mark.parametrize(
    "argv",
    [
        ["--network", "conv", "--filter-size", "9"],
        ["--network", "multi", "--filters", "4"],
        ["--network", "conv", "--hidden", "10,10"],
    ],
)
def test_conv_option_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = _run(capsys, "train", *argv)
    assert code == 2
    assert out == ""
    _assert_one_line_error(err)
