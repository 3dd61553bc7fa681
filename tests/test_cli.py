"""The ``xplayers`` command line: train, evaluate, info, and every way to call it wrongly."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import _files, io
from xplayers.cli import main

TINY = ["--epochs", "2", "--hidden", "16", "--seed", "1"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(err: str) -> None:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xplayers: error: "), err
    assert "Traceback" not in err


def _write_mnist(directory: Path, n_train: int = 200, n_test: int = 50) -> Path:
    """Write a small MNIST look-alike: 28x28 images whose bright row is the label."""
    rng = np.random.default_rng(0)
    directory.mkdir()
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        images[np.arange(n), labels * 2 + 4, :] = 255
        for name, a, magic in (
            (f"{prefix}-images-idx3-ubyte", images, 0x0803),
            (f"{prefix}-labels-idx1-ubyte", labels, 0x0801),
        ):
            header = struct.pack(f">{a.ndim + 1}I", magic, *a.shape)
            (directory / name).write_bytes(header + a.tobytes())
    return directory


# --------------------------------------------------------------------------- train and evaluate


def test_train_then_evaluate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "model.npz"
    code, out, err = _run(capsys, "train", *TINY, "--output", str(model))
    assert code == 0, err
    assert err == ""  # no progress bar: stderr is not a terminal
    lines = out.splitlines()
    assert lines[0].startswith("training MultiLayerNet 64-16-10, adam lr=0.005")
    assert sum(line.startswith("epoch") for line in lines) == 2
    assert any(line.startswith("test accuracy ") for line in lines)
    assert f"model saved to {model}" in out
    meta = io.read_metadata(model)["metadata"]
    assert meta["dataset"] == {"name": "digits", "test_size": 0.2, "seed": 1}
    assert len(meta["history"]["epoch"]) == 2

    code, out, err = _run(capsys, "evaluate", str(model))
    assert code == 0, err
    assert "on digits (test, 359 samples)" in out
    accuracy = float(out.split("accuracy ")[1].split()[0])
    trained = float(next(line for line in lines if line.startswith("test accuracy")).split()[2])
    assert accuracy == pytest.approx(trained, abs=1e-4)  # the same split as in training

    code, out, err = _run(
        capsys, "evaluate", str(model), "--split", "all", "--backend", "array_api_strict"
    )
    assert code == 0, err
    assert "(all, 1797 samples)" in out
    assert "array_api_strict" in out


def test_train_quiet_two_layer_with_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt.npz"
    code, out, err = _run(
        capsys,
        "train", "--network", "two-layer", "--hidden", "30", "--optimizer", "sgd",
        "--lr", "0.5", "--init", "0.1", "--iterations", "20", "--batch-size", "50",
        "--dtype", "float64", "--checkpoint", str(ckpt), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert err == ""
    assert len(out.splitlines()) == 1
    assert out.startswith("test accuracy ")
    assert "after 0.689655 epochs (20 iterations)" in out  # 29 updates per epoch
    assert "TwoLayerNet 64-30-10, sgd lr=0.5, batch 50, float64" in out
    net = io.load(ckpt)
    assert type(net).__name__ == "TwoLayerNet"
    assert io.read_metadata(ckpt)["metadata"]["checkpoint"]["iteration"] == 20
    assert io.read_metadata(ckpt)["params"][0]["dtype"] == "float64"


def test_train_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    plot = tmp_path / "curve.png"
    code, out, err = _run(capsys, "train", *TINY, "--plot", str(plot))
    assert code == 0, err
    assert f"plot saved to {plot}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_on_other_backend(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys, "train", *TINY, "--backend", "array_api_strict", "--device", "device1"
    )
    assert code == 0, err
    assert "array_api_strict:" in out
    assert "device1" in out
    assert xpl.get_backend().name == "numpy"  # the command's choice does not leak


def test_book_chapter5_command_on_mnist(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    mnist = _write_mnist(tmp_path / "mnist")
    model = tmp_path / "m.npz"
    code, out, err = _run(
        capsys,
        "train", "--dataset", "mnist", "--mnist-dir", str(mnist), "--network", "two-layer",
        "--hidden", "50", "--optimizer", "sgd", "--lr", "0.1", "--batch-size", "100",
        "--iterations", "5", "--output", str(model),
    )  # fmt: skip
    assert code == 0, err
    assert "TwoLayerNet 784-50-10, sgd lr=0.1, batch 100" in out
    assert "200 training, 50 test samples" in out
    assert [line.split()[3] for line in out.splitlines() if line.startswith("epoch")] == [
        "2", "4", "5"
    ]  # fmt: skip
    config = io.read_metadata(model)["config"]
    assert config["weight_init_std"] == 0.01  # the book's scale
    code, out, err = _run(capsys, "evaluate", str(model), "--mnist-dir", str(mnist))
    assert code == 0, err
    assert "on mnist (test, 50 samples)" in out


def test_info(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "info")
    assert code == 0, err
    assert out.startswith(f"xplayers {xpl.__version__}\n")
    assert f"numpy {np.__version__}" in out
    assert "array-api-compat" in out
    for name in xpl.BACKENDS:
        assert f"\n  {name} " in out
    assert "  numpy             " in out
    assert "usable; devices: cpu" in out
    assert "BLAS:" in out


@pytest.mark.slow
def test_defaults_reach_95_percent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "train", "--quiet")
    assert code == 0, err
    accuracy = float(out.split()[2])
    assert accuracy >= 0.95, out


# --------------------------------------------------------------------------- errors


BAD_ARGUMENTS = [
    [],
    ["bogus"],
    ["train", "--epochs", "0"],
    ["train", "--epochs", "two"],
    ["train", "--epochs", "2", "--iterations", "5"],
    ["train", "--lr", "-1"],
    ["train", "--lr", "nan"],
    ["train", "--hidden", "a,b"],
    ["train", "--hidden", "10,0"],
    ["train", "--optimizer", "lbfgs"],
    ["train", "--network", "resnet"],
    ["train", "--network", "two-layer", "--hidden", "10,10"],
    ["train", "--network", "two-layer", "--activation", "relu"],
    ["train", "--network", "two-layer", "--init", "he"],
    ["train", "--init", "-0.5"],
    ["train", "--init", "bogus"],
    ["train", "--init", "1e300"],  # the float32 weights would be infinite
    ["train", "--init", "1e300", "--network", "conv", "--filters", "2", "--hidden", "4"],
    ["train", "--scheduler", "garbage"],
    ["train", "--scheduler", "inproc://x"],
    ["train", "--scheduler", "tcp://host:99999"],
    ["train", "--test-size", "1.5"],
    ["train", "--dataset", "mnist", "--test-size", "0.3"],
    ["train", "--dtype", "float16"],
    ["train", "--backend", "tensorflow"],
    ["train", "--batch-size", "0"],
    ["train", "--unknown-option"],
    ["train", "--output", "/no/such/directory/model.npz"],
    ["evaluate"],
    ["evaluate", "model.npz", "--split", "valid"],
]


@pytest.mark.parametrize("argv", BAD_ARGUMENTS, ids=lambda a: " ".join(a) or "no-arguments")
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    _assert_one_line_error(err)


def test_failures_exit_1_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = [
        ["evaluate", str(tmp_path / "missing.npz")],
        ["train", "--dataset", "mnist", "--mnist-dir", str(tmp_path / "nowhere")],
    ]
    (tmp_path / "junk.npz").write_bytes(b"junk")
    cases.append(["evaluate", str(tmp_path / "junk.npz")])
    for argv in cases:
        code, _, err = _run(capsys, *argv)
        assert code == 1, argv
        _assert_one_line_error(err)


def test_unusable_backend_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    ok, _ = xpl.backend_status("cupy")
    if ok:
        pytest.skip("CuPy is usable here")
    code, _, err = _run(capsys, "train", *TINY, "--backend", "cupy")
    assert code == 1
    _assert_one_line_error(err)
    assert "cupy" in err


def test_model_for_other_data_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "m.npz"
    io.save(xpl.network.TwoLayerNet(784, 5, 10, seed=0), model)
    code, _, err = _run(capsys, "evaluate", str(model), "--dataset", "digits")
    assert code == 1
    _assert_one_line_error(err)
    assert "784" in err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    assert "train" in out
    assert "evaluate" in out
    code, out, _ = _run(capsys, "train", "--help")
    assert code == 0
    assert "--mnist-dir" in out
    code, out, _ = _run(capsys, "--version")
    assert code == 0
    assert xpl.__version__ in out


def test_python_dash_m_help() -> None:
    env = {**os.environ, "XPLAYERS_BACKEND": "numpy"}
    result = subprocess.run(
        [sys.executable, "-m", "xplayers", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: xplayers" in result.stdout
    assert result.stderr == ""


def test_python_dash_m_error_has_no_traceback() -> None:
    env = {**os.environ, "XPLAYERS_BACKEND": "numpy"}
    result = subprocess.run(
        [sys.executable, "-m", "xplayers", "evaluate", "/no/such/model.npz"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    _assert_one_line_error(result.stderr)


def test_closed_pipe_is_quiet(monkeypatch, capsys, tmp_path) -> None:
    """`xplayers info | head -1`: a reader that goes away ends the command quietly."""
    import sys

    import xplayers.cli as cli

    def closed(args):
        raise BrokenPipeError(32, "Broken pipe")

    with (tmp_path / "out").open("w") as out:
        monkeypatch.setattr(sys, "stdout", out)  # its descriptor is what gets redirected
        monkeypatch.setattr(cli.info, "run", closed)
        assert cli.main(["info"]) == 141
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- tables


def test_choices_come_from_the_library_tables() -> None:
    import argparse

    from xplayers._validation import FLOAT_DTYPES
    from xplayers.cli import build_parser
    from xplayers.layers import ACTIVATIONS
    from xplayers.optim import OPTIMIZERS

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = {a.dest: a for a in sub.choices["train"]._actions}
    assert list(train["optimizer"].choices) == list(OPTIMIZERS)
    assert list(train["dtype"].choices) == list(FLOAT_DTYPES)
    assert list(train["activation"].choices) == list(ACTIVATIONS)
    assert list(train["backend"].choices) == list(xpl.BACKENDS)


def test_every_optimizer_has_a_learning_rate() -> None:
    from xplayers.cli.train import default_lr
    from xplayers.optim import OPTIMIZERS

    assert all(default_lr(name) > 0 for name in OPTIMIZERS)


def test_evaluate_refuses_an_unknown_dataset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A model whose metadata name another dataset is not silently evaluated on the digits."""
    model = tmp_path / "m.npz"
    io.save(
        xpl.network.TwoLayerNet(64, 5, 10, seed=0),
        model,
        metadata={"dataset": {"name": "cifar10", "seed": 0, "test_size": 0.2}},
    )
    code, out, err = _run(capsys, "evaluate", str(model))
    assert code == 1
    assert out == ""
    _assert_one_line_error(err)
    assert "'cifar10'" in err


# --------------------------------------------------------------------------- hardening


def test_a_diverging_run_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """--lr 1e6 keeps the loss finite but huge: named, and a failure."""
    code, _, err = _run(capsys, "train", "--optimizer", "sgd", "--lr", "1e6", "--epochs", "4")
    assert code == 1
    _assert_one_line_error(err)
    assert "diverged" in err
    assert "iteration" in err


@pytest.mark.parametrize("seed", ["-1", "1.5"])
def test_a_negative_seed_is_a_usage_error(capsys: pytest.CaptureFixture[str], seed: str) -> None:
    code, out, err = _run(capsys, "train", "--seed", seed)
    assert code == 2
    assert out == ""
    _assert_one_line_error(err)


def test_a_model_with_a_negative_seed_is_refused_cleanly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = tmp_path / "m.npz"
    io.save(
        xpl.network.TwoLayerNet(64, 5, 10, seed=0),
        model,
        metadata={"dataset": {"name": "digits", "seed": -5, "test_size": 0.2}},
    )
    code, _, err = _run(capsys, "evaluate", str(model))
    assert code == 2
    _assert_one_line_error(err)
    assert "--seed" in err


@pytest.mark.parametrize("where", ["directory", "read-only"])
def test_output_is_checked_writable_before_training(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str
) -> None:
    if where == "read-only" and not Path("/proc").is_dir():
        pytest.skip("needs /proc, a place no one can write")
    path = str(tmp_path) if where == "directory" else "/proc/xplayers-model.npz"
    code, out, err = _run(capsys, "train", *TINY, "--output", path)
    assert code == 2
    assert out == ""  # nothing was trained
    _assert_one_line_error(err)
    assert "--output" in err


@pytest.mark.parametrize("option", ["--output", "--checkpoint", "--plot"])
def test_an_output_that_cannot_be_replaced_is_refused_before_training(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    option: str,
) -> None:
    path = tmp_path / "taken.npz"
    path.write_bytes(b"keep me")
    monkeypatch.setattr(_files, "_replace_problem", lambda target: "it is immutable or append-only")
    code, out, err = _run(capsys, "train", *TINY, option, str(path))
    assert code == 2
    assert out == ""  # nothing was trained
    _assert_one_line_error(err)
    assert f"argument '{option}': expected a file that can be replaced" in err
    assert path.read_bytes() == b"keep me"


@pytest.mark.skipif(not hasattr(os, "pathconf"), reason="needs the file system's name limit")
def test_a_file_name_up_to_the_limit_is_saved(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = "m" * (os.pathconf(tmp_path, "PC_NAME_MAX") - 4) + ".npz"
    code, _, err = _run(capsys, "train", *TINY, "--quiet", "--output", str(tmp_path / name))
    assert code == 0, err
    assert io.read_metadata(tmp_path / name)["metadata"]["batch_size"] == 100


def test_mnist_files_declaring_no_images(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    directory = _write_mnist(tmp_path / "mnist", n_train=0, n_test=0)
    code, _, err = _run(capsys, "train", "--dataset", "mnist", "--mnist-dir", str(directory))
    assert code != 0
    _assert_one_line_error(err)


def _command(argv: list[str], env: dict[str, str], limit_bytes: int | None = None) -> Any:
    """Run ``python -m xplayers ARGV``, under an address-space limit if given."""
    code = "import runpy, sys\n"
    if limit_bytes is not None:
        code += f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({limit_bytes},) * 2)\n"
    code += (
        f"sys.argv = ['xplayers', *{argv!r}]\nrunpy.run_module('xplayers', run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="resource limits are POSIX")
def test_out_of_memory_is_one_line() -> None:
    """--hidden 100000000 needs 51 GB for its weights: a clean error, not a MemoryError trace."""
    result = _command(
        ["train", "--hidden", "100000000", "--epochs", "1"],
        {"XPLAYERS_BACKEND": "numpy"},
        limit_bytes=4 * 2**30,
    )
    assert result.returncode == 1, result.stderr
    _assert_one_line_error(result.stderr)
    assert "memory" in result.stderr


@pytest.mark.parametrize("command", ["info", "train", "evaluate"])
def test_a_bad_backend_variable_is_one_line(tmp_path: Path, command: str) -> None:
    model = tmp_path / "m.npz"
    io.save(xpl.network.TwoLayerNet(64, 5, 10, seed=0), model)
    argv = {"info": ["info"], "train": ["train", *TINY], "evaluate": ["evaluate", str(model)]}
    result = _command(argv[command], {"XPLAYERS_BACKEND": "tensorflow"})
    if command == "info":
        assert result.returncode == 0, result.stderr
        assert "unusable" in result.stdout
        assert "Traceback" not in result.stderr
    else:
        assert result.returncode != 0
        _assert_one_line_error(result.stderr)
        assert "tensorflow" in result.stderr


def test_install_hints_work_from_a_checkout() -> None:
    """xplayers is not on PyPI yet: every extra's hint also shows the checkout form."""
    from xplayers import training

    root = Path(__file__).resolve().parents[1]
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    started = (root / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert 'pip install ".[torch]"' in readme
    for extra in ("cuda12", "cuda13", "torch", "jax", "dask", "strict", "plot"):
        if f"\n{extra} = [" in pyproject:
            assert f'".[{extra}]"' in started, extra
    assert 'pip install ".[plot]"' in training._PLOT_INSTALL


# --------------------------------------------------------------------------- --data, and failures from other libraries


def _write_data(root: Path, n: int = 120, width: int = 12, classes: int = 3, seed: int = 0) -> Path:
    """A --data folder: inputs x/ in blocks of 40 rows, labels t.npy; a class shifts one column."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) % classes
    x = rng.normal(size=(n, width)).astype(np.float32)
    x[np.arange(n), t] += 4
    (root / "x").mkdir(parents=True)
    for i in range(0, n, 40):
        np.save(root / "x" / f"{i:04d}.npy", x[i : i + 40])
    np.save(root / "t.npy", t)
    return root


def _accuracy(out: str) -> float:
    return float(out.split("accuracy ")[1].split(maxsplit=1)[0])


def test_evaluate_uses_the_data_a_model_was_trained_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    train_dir = _write_data(tmp_path / "train")
    test_dir = _write_data(tmp_path / "test", n=60, seed=1)
    model = tmp_path / "model.npz"
    argv = ["train", "--data", str(train_dir), "--test-data", str(test_dir), "--epochs", "3"]
    code, out, err = _run(capsys, *argv, "--quiet", "--output", str(model))
    assert code == 0, err
    header = io.read_metadata(model)
    assert header["config"]["output_size"] == 3  # counted from the labels, not 10
    assert header["metadata"]["dataset"] == {
        "name": "data",
        "data": str(train_dir),
        "test_data": str(test_dir),
    }
    trained = float(out.split("test accuracy ")[1].split()[0])

    code, out, err = _run(capsys, "evaluate", str(model))
    assert code == 0, err
    assert f"on {test_dir} (test, 60 samples)" in out
    assert _accuracy(out) == pytest.approx(trained, abs=1e-4)
    code, out, err = _run(capsys, "evaluate", str(model), "--split", "all")
    assert code == 0, err
    assert "(all, 180 samples)" in out
    code, out, err = _run(capsys, "evaluate", str(model), "--data", str(test_dir))
    assert code == 0, err
    assert _accuracy(out) == pytest.approx(trained, abs=1e-4)

    code, out, err = _run(capsys, "evaluate", str(model), "--dataset", "digits")
    assert code == 1
    _assert_one_line_error(err)
    assert "takes 12 values per sample, digits has 64" in err


def test_evaluate_without_recorded_test_data_asks_for_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = tmp_path / "model.npz"
    data = _write_data(tmp_path / "d", classes=4)
    code, _, err = _run(capsys, "train", "--data", str(data), *TINY, "--output", str(model))
    assert code == 0, err
    assert io.read_metadata(model)["config"]["output_size"] == 4
    code, out, err = _run(capsys, "evaluate", str(model))
    assert code == 2
    _assert_one_line_error(err)
    assert "no --test-data" in err
    code, out, err = _run(capsys, "evaluate", str(model), "--split", "train")
    assert code == 0, err
    assert "(train, 120 samples)" in out


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.linspace(0, 2, 120), "integer class indices"),
        (np.zeros(120, dtype=np.int64), "at least two classes"),
        (np.arange(120) - 1, "class indices >= 0"),
    ],
    ids=["float", "one-class", "negative"],
)
def test_data_labels_that_name_no_classes_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, labels: np.ndarray, message: str
) -> None:
    data = _write_data(tmp_path / "d")
    np.save(data / "t.npy", labels)
    code, out, err = _run(capsys, "train", "--data", str(data), *TINY)
    assert code == 1
    assert out == ""  # refused before training
    _assert_one_line_error(err)
    assert message in err


@pytest.mark.parametrize(
    "dataset",
    [["digits"], {"name": ["digits"]}, {"name": {"a": 1}}, 7],
    ids=["list", "dict-of-list", "dict-of-dict", "number"],
)
def test_evaluate_of_a_model_whose_dataset_is_no_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: Any
) -> None:
    model = tmp_path / "model.npz"
    io.save(xpl.network.MultiLayerNet(64, [8], 10, seed=0), model, metadata={"dataset": dataset})
    code, out, err = _run(capsys, "evaluate", str(model))
    assert code == 2
    assert out == ""
    _assert_one_line_error(err)
    assert "give --dataset" in err
    code, out, err = _run(capsys, "evaluate", str(model), "--dataset", "digits")
    assert code == 0, err


def test_a_dataset_named_by_a_string_is_its_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = tmp_path / "model.npz"
    io.save(xpl.network.MultiLayerNet(64, [8], 10, seed=0), model, metadata={"dataset": "mnist"})
    code, _, err = _run(capsys, "evaluate", str(model), "--mnist-dir", str(tmp_path / "none"))
    assert code == 1
    _assert_one_line_error(err)
    assert "MNIST" in err or "mnist" in err


def _damage_labels(data: Path, how: str) -> None:
    t = data / "t.npy"
    if how == "truncated":
        t.write_bytes(t.read_bytes()[:-5])
    elif how == "object":
        np.save(t, np.array([{}] * 120, dtype=object), allow_pickle=True)
    elif how == "garbage":
        t.write_bytes(b"garbage, not an array\n")
    elif how == "strings":
        np.save(t, np.array(["a"] * 120))


@pytest.mark.parametrize("how", ["truncated", "object", "garbage", "strings"])
def test_damaged_labels_file_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, how: str
) -> None:
    data = _write_data(tmp_path / "d")
    _damage_labels(data, how)
    code, out, err = _run(capsys, "train", "--data", str(data), *TINY)
    assert code == 1
    assert out == ""
    _assert_one_line_error(err)
    assert "t.npy" in err or "dtype <U1" in err
    assert "allow_pickle" not in err  # never advised to unpickle


def _write_zarr(data: Path, how: str) -> None:
    zarr = pytest.importorskip("zarr")
    np.save(data / "t.npy", np.arange(20) % 2)
    store = str(data / "x.zarr")
    if how == "group":
        zarr.open_group(store, mode="w")
        return
    if how == "strings":
        zarr.create_array(store, shape=(20, 4), dtype=str, chunks=(10, 4))
        return
    z = zarr.create_array(store, shape=(20, 4), dtype="float32", chunks=(10, 4))
    z[:] = np.ones((20, 4), dtype=np.float32)
    if how == "not-json":
        (data / "x.zarr" / "zarr.json").write_text("{not json")
    elif how == "corrupt-chunk":
        for chunk in (data / "x.zarr").rglob("*"):
            if chunk.is_file() and chunk.name != "zarr.json":
                chunk.write_bytes(b"garbage")


@pytest.mark.parametrize("how", ["group", "not-json", "strings", "corrupt-chunk"])
def test_unreadable_zarr_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, how: str
) -> None:
    data = tmp_path / "d"
    data.mkdir()
    _write_zarr(data, how)
    code, _, err = _run(capsys, "train", "--data", str(data), *TINY, "--quiet")
    assert code == 1
    _assert_one_line_error(err)
    assert "x.zarr" in err or "x in" in err
    assert "unexpected" not in err  # reported as what it is, not by the last resort


def test_an_unforeseen_error_is_still_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from xplayers.cli import train

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a library's own failure")

    monkeypatch.setattr(train, "training_data", broken)
    code, _, err = _run(capsys, *["train", *TINY])
    assert code == 1
    _assert_one_line_error(err)
    assert "unexpected KeyError" in err


def test_the_scheduler_failing_during_a_full_batch_run_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    distributed = pytest.importorskip("distributed")

    class Client:  # a client whose scheduler goes away at the first step
        def __init__(self, address: str, timeout: float) -> None:
            pass

        def __enter__(self) -> Client:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def lost(*args: Any, **kwargs: Any) -> float:
        raise distributed.client.FutureCancelledError(
            "finalize-1", reason="scheduler-connection-lost", msg="Client lost the connection"
        )

    monkeypatch.setattr(distributed, "Client", Client)
    monkeypatch.setattr("xplayers.training.full_batch_step", lost)
    argv = ["train", *TINY, "--full-batch", "--scheduler", "tcp://127.0.0.1:8786"]
    code, _, err = _run(capsys, *argv)
    assert code == 1
    _assert_one_line_error(err)
    assert "--scheduler tcp://127.0.0.1:8786: the cluster failed during the run" in err
    assert "FutureCancelledError" in err


def test_file_names_that_are_not_utf8_are_printed_escaped(tmp_path: Path) -> None:
    if sys.platform == "win32" or os.fsencode("\udcff") != b"\xff":
        pytest.skip("needs byte file names (POSIX, UTF-8 file system encoding)")
    name = os.fsdecode(b"model-\xff.npz")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(
        [sys.executable, "-m", "xplayers", "train", *TINY, "--output", name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b"model saved to model-\\udcff.npz" in result.stdout
    assert (tmp_path / name).is_file()
    result = subprocess.run(
        [sys.executable, "-m", "xplayers", "evaluate", name + "x"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    assert result.stderr.count(b"\n") == 1


def test_initial_weights_too_large_are_not_blamed_on_the_learning_rate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["train", *TINY, "--init", "1e30"]
    code, _, err = _run(capsys, *argv)
    assert code == 1
    _assert_one_line_error(err)
    assert "before any update, so not the learning rate" in err
    assert "lower the learning rate" not in err


def test_a_data_path_json_cannot_hold_is_not_recorded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if sys.platform == "win32" or os.fsencode("\udcff") != b"\xff":
        pytest.skip("needs byte file names (POSIX, UTF-8 file system encoding)")
    data = _write_data(tmp_path / os.fsdecode(b"data-\xff"))
    model = tmp_path / "model.npz"
    code, _, err = _run(capsys, "train", "--data", str(data), *TINY, "--output", str(model))
    assert code == 0, err  # not refused by save after training: JSON cannot hold the path
    assert io.read_metadata(model)["metadata"]["dataset"]["data"] is None
    code, _, err = _run(capsys, "evaluate", str(model), "--split", "train")
    assert code == 2
    _assert_one_line_error(err)
    assert "give --data" in err
    code, out, err = _run(capsys, "evaluate", str(model), "--data", str(data))
    assert code == 0, err
    assert "(all, 120 samples)" in out


@pytest.mark.filterwarnings("default")
def test_python_warnings_are_one_line_on_stderr(capsys):
    """A warning of the warnings module (an older model file's note) reads as the CLI's own."""
    import warnings

    from xplayers.cli import _warnings_on_stderr
    from xplayers.errors import ModelFileWarning

    with _warnings_on_stderr():
        warnings.warn(
            ModelFileWarning("model 'old.npz': format version 1,\n lacks x"), stacklevel=1
        )
    err = capsys.readouterr().err
    assert err == "xplayers: warning: model 'old.npz': format version 1, lacks x\n"
    assert warnings.showwarning is not None  # restored outside the block
