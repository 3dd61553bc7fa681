"""``xplayers evaluate --top-k K --confusion`` and ``xplayers train --summary``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import xplayers as xpl
from xplayers.cli import main
from xplayers.datasets import load_digits, train_test_split

TINY = ["--epochs", "1", "--hidden", "16", "--seed", "1", "--quiet"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "model.npz"
    assert main(["train", *TINY, "--output", str(path)]) == 0
    return path


def test_evaluate_prints_top_k_and_the_confusion_matrix(
    capsys: pytest.CaptureFixture[str], model: Path
) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(model), "--top-k", "3", "--confusion"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert "top-3 accuracy " in lines[0]
    assert lines[1] == "confusion matrix (rows: true class, columns: predicted class)"
    assert lines[2].split() == ["true/pred", *map(str, range(10))]
    printed = np.array([[int(v) for v in line.split()[1:]] for line in lines[3:13]])
    # the same split the model was trained with (the digits, seed 1, test size 0.2)
    _, (x, t) = train_test_split(
        *load_digits(dtype="float32"), test_size=0.2, seed=1, stratify=True
    )
    net = xpl.load(model)
    expected = xpl.evaluate(net, x, t, top_k=3, confusion=True)
    np.testing.assert_array_equal(printed, expected["confusion_matrix"])
    assert float(lines[0].split("top-3 accuracy ")[1].split()[0]) == pytest.approx(
        expected["top_k_accuracy"], abs=1e-4
    )


def test_evaluate_without_the_options_prints_one_line(
    capsys: pytest.CaptureFixture[str], model: Path
) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(model)]) == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == 1
    assert "top-" not in out


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_evaluate_refuses_a_bad_top_k(
    capsys: pytest.CaptureFixture[str], model: Path, value: str
) -> None:
    assert main(["evaluate", str(model), "--top-k", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xplayers: error: argument --top-k")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("network", ["two-layer", "multi", "conv"])
def test_train_summary_prints_the_network_before_training(
    capsys: pytest.CaptureFixture[str], network: str
) -> None:
    assert main(["train", *TINY, "--network", network, "--summary"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    name = {"two-layer": "TwoLayerNet", "multi": "MultiLayerNet", "conv": "SimpleConvNet"}
    assert lines[0] == f"{name[network]}: float32 on numpy (cpu)"
    assert lines[1] == ("Input: (None, 1, 8, 8)" if network == "conv" else "Input: (None, 64)")
    assert any(line.startswith("Trainable params: ") for line in lines)
    assert lines[-1].startswith("test accuracy ")  # then the run, as without --summary


def test_train_summary_on_another_backend(capsys: pytest.CaptureFixture[str]) -> None:
    ok, why = xpl.backend_status("array_api_strict")
    if not ok:
        pytest.skip(why)
    argv = ["train", *TINY, "--summary", "--backend", "array_api_strict"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("MultiLayerNet: float32 on array_api_strict (")


def test_train_without_summary_prints_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *TINY]) == 0
    assert "Trainable params" not in capsys.readouterr().out
