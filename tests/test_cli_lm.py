"""``xplayers lm-train`` and ``xplayers lm-generate``: volume 2's language models on the command line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from xplayers.book2 import Rnnlm
from xplayers.book2.datasets import grammar
from xplayers.book2.rnnlm import load_model
from xplayers.cli import main

TINY = ["--epochs", "2", "--hidden-size", "16", "--batch-size", "10", "--time-size", "20"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xplayers: error: "), err
    return lines[0]


def _ptb_dir(tmp_path: Path) -> Path:
    """PTB-format files written from the grammar corpus: one sentence a line."""
    d = tmp_path / "ptb"
    d.mkdir()
    for split, size in (("train", 3000), ("valid", 800), ("test", 800)):
        ids, _, id_to_word = grammar.load_data(split, size=size)
        text = " ".join(id_to_word[int(i)] for i in ids).replace(" <eos>", " \n")
        (d / f"ptb.{split}.txt").write_text(" " + text.replace("\n ", "\n "))
    return d


def test_train_then_generate(capsys, tmp_path):
    model = tmp_path / "lm.npz"
    code, out, err = _run(capsys, "lm-train", *TINY, "--output", str(model))
    assert code == 0, err
    assert err == ""  # no progress bar: stderr is not a terminal
    lines = out.splitlines()
    assert lines[0].startswith("training Rnnlm V=62 H=16, SGD lr=20, batch 10x20, float32")
    assert re.fullmatch(r"epoch 1/2: valid perplexity \d+\.\d\d, lr 20", lines[1])
    valid = float(re.search(r"valid perplexity (\d+\.\d\d), test", lines[3]).group(1))
    test = float(re.search(r"test perplexity (\d+\.\d\d)$", lines[3]).group(1))
    assert valid < 62 / 3
    assert test < 62 / 3
    assert lines[4] == f"model saved to {model}"
    code, text, err = _run(capsys, "lm-generate", str(model), "--start", "the", "--seed", "3")
    assert code == 0, err
    words = text.split()
    assert words[0] == "the"
    assert len(words) + text.count(".") == 100  # each <eos> ends a line with "."
    assert {w.rstrip(".") for w in words} <= set(grammar.WORDS)
    again = _run(capsys, "lm-generate", str(model), "--start", "the", "--seed", "3")[1]
    assert again == text


def test_train_reads_ptb_files_and_trains_the_better_model(capsys, tmp_path):
    code, out, err = _run(
        capsys,
        "lm-train",
        "--data",
        str(_ptb_dir(tmp_path)),
        "--model",
        "better",
        *TINY,
        "--quiet",
    )
    assert code == 0, err
    assert out.startswith("BetterRnnlm V=62 H=16")
    assert len(out.splitlines()) == 1


def test_resume_continues_bit_for_bit(capsys, tmp_path):
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    common = ["--model", "better", "--hidden-size", "8", "--batch-size", "10", "--time-size", "20"]
    assert _run(capsys, "lm-train", *common, "--epochs", "2", "--output", str(whole))[0] == 0
    ck = tmp_path / "ck.npz"
    assert _run(capsys, "lm-train", *common, "--epochs", "1", "--checkpoint", str(ck))[0] == 0
    code, _, err = _run(
        capsys, "lm-train", *common, "--epochs", "2", "--resume", str(ck), "--output", str(part)
    )
    assert code == 0, err
    m1, meta1 = load_model(whole)
    m2, meta2 = load_model(part)
    for p, q in zip(m1.params, m2.params, strict=True):
        np.testing.assert_array_equal(p, q)
    assert meta1["history"] == meta2["history"]


def test_resume_with_other_options_is_refused(capsys, tmp_path):
    ck = tmp_path / "ck.npz"
    assert _run(capsys, "lm-train", *TINY, "--epochs", "1", "--checkpoint", str(ck))[0] == 0
    code, _, err = _run(capsys, "lm-train", *TINY, "--lr", "5", "--resume", str(ck))
    assert code == 1
    assert "other options" in _one_line_error(err)


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["lm-train", "--model", "gru"], 2, "invalid choice: 'gru'"),
        (["lm-train", "--epochs", "0"], 2, "expected an integer >= 1"),
        (["lm-train", "--data", "/nonexistent"], 1, "is not a directory"),
        (["lm-train", "--batch-size", "500"], 2, "fewer than one batch"),
        (["lm-generate", "missing.npz", "--start", "the"], 1, "no such file"),
        (["lm-generate"], 2, "required"),
    ],
)
def test_bad_calls_are_one_line(capsys, argv, code, message):
    got, _, err = _run(capsys, *argv)
    assert got == code
    assert message in _one_line_error(err)


def test_generate_refuses_unknown_words_and_other_files(capsys, tmp_path):
    model = tmp_path / "lm.npz"
    assert _run(capsys, "lm-train", *TINY, "--epochs", "1", "--output", str(model))[0] == 0
    code, _, err = _run(capsys, "lm-generate", str(model), "--start", "zebra")
    assert code == 2
    assert "'zebra' is not a word" in _one_line_error(err)
    code, _, err = _run(capsys, "lm-generate", str(model), "--start", "the", "--skip", "zebra")
    assert code == 2
    assert "--skip 'zebra'" in _one_line_error(err)
    bare = tmp_path / "bare.npz"
    Rnnlm(62, 4, 4, seed=0).save_params(bare)
    code, _, err = _run(capsys, "lm-generate", str(bare), "--start", "the")
    assert code == 1
    assert "has no vocabulary" in _one_line_error(err)
    pickled = tmp_path / "p.npz"
    pickled.write_bytes(b"\x80\x04K\x01.")
    code, _, err = _run(capsys, "lm-generate", str(pickled), "--start", "the")
    assert code == 1
    assert "not a .npz archive" in _one_line_error(err)
