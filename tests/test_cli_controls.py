"""``xplayers train`` with validation, early stopping, learning-rate schedules and clipping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import io
from xplayers.cli import main

COMMON = ["train", "--hidden", "16", "--seed", "1", "--backend", "numpy"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*COMMON, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _host(net: Any) -> dict[str, bytes]:
    return {k: np.asarray(xpl.to_numpy(v)).tobytes() for k, v in net.params.items()}


def test_validation_split_and_schedule_in_the_epoch_lines(capsys: Any) -> None:
    code, out, _ = _run(
        capsys, "--epochs", "3", "--validation-split", "0.25", "--lr-schedule", "step",
        "--lr-step-size", "1", "--lr-factor", "0.5", "--lr", "0.01",
    )  # fmt: skip
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 3
    assert all("val loss" in line and "val acc" in line for line in lines)
    assert [line.split("lr ")[1].split()[0] for line in lines] == ["0.01", "0.005", "0.0025"]
    assert "1438 training (360 of them held out for validation)" in out  # 1438 - int(1438 * 0.75)


def test_early_stopping_keeps_the_best_weights(capsys: Any, tmp_path: Path) -> None:
    model = tmp_path / "model.npz"
    code, out, _ = _run(
        capsys, "--epochs", "20", "--patience", "1", "--monitor", "train_acc",
        "--min-delta", "0.9", "--output", str(model),
    )  # fmt: skip
    assert code == 0
    assert "stopped early at iteration 30: train_acc had not improved by more than 0.9" in out
    assert "kept the weights of iteration 15" in out
    history = io.read_metadata(model)["metadata"]["history"]
    assert history["best_iteration"] == 15
    assert history["stopped_iteration"] == 30
    summary = next(line for line in out.splitlines() if line.startswith("test accuracy"))
    assert f"test accuracy {history['test_acc'][0]:.4f}" in summary  # the kept weights'


def test_resume_with_a_schedule_and_early_stopping_is_bit_identical(
    capsys: Any, tmp_path: Path
) -> None:
    options = [
        "--validation-split", "0.2", "--lr-schedule", "plateau", "--lr-patience", "1",
        "--min-delta", "0.05", "--patience", "4", "--clip-norm", "2", "--quiet",
    ]  # fmt: skip
    ckpt, whole, resumed = tmp_path / "ckpt.npz", tmp_path / "whole.npz", tmp_path / "res.npz"
    assert _run(capsys, *options, "--iterations", "24", "--checkpoint", str(ckpt))[0] == 0
    code, _, _ = _run(capsys, *options, "--iterations", "60", "--resume", str(ckpt))
    assert code == 0
    # a checkpoint stops at 24 iterations; continuing it to 60 equals a run of 60 from the start
    assert _run(capsys, *options, "--iterations", "60", "--output", str(whole))[0] == 0
    assert _run(capsys, *options, "--iterations", "60", "--resume", str(ckpt), "--output",
                str(resumed))[0] == 0  # fmt: skip
    assert _host(io.load(resumed)) == _host(io.load(whole))
    code, _, err = _run(
        capsys, *options, "--lr-patience", "2", "--iterations", "60", "--resume", str(ckpt)
    )
    assert code == 1
    assert "the same schedule, early stopping" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--patience", "2"],  # monitors val_loss without validation data
        ["--lr-schedule", "plateau"],
        ["--restore-best"],
        ["--validation-split", "1.5"],
        ["--patience", "0"],
        ["--min-delta", "-1"],
        ["--lr-schedule", "linear"],
        ["--lr-factor", "0"],
        ["--clip-norm", "0"],
        ["--monitor", "test_acc"],
        ["--full-batch", "--iterations", "3"],
    ],
    ids=" ".join,
)
def test_bad_control_options_exit_2_with_one_line(capsys: Any, argv: list[str]) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("xplayers: error: ")


def test_help_lists_the_control_options(capsys: Any) -> None:
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--validation-split", "--patience", "--monitor", "--min-delta", "--restore-best",
        "--lr-schedule", "--lr-step-size", "--lr-factor", "--lr-patience", "--lr-min",
        "--clip-norm",
    ):  # fmt: skip
        assert option in out
