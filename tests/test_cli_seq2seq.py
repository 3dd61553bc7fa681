"""``xplayers seq2seq``: volume 2's seq2seq models from the command line, at tiny sizes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from xplayers.book2.seq2seq import AttentionSeq2seq
from xplayers.cli import main

TINY = ["seq2seq", "--size", "300", "--hidden", "8", "--wordvec-size", "4", "--batch-size", "32"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xplayers: error: "), err
    return lines[0]


def _losses(out: str) -> list[str]:
    return re.findall(r"epoch +\d+  loss (\S+)  test acc (\S+)", out)


def test_trains_and_reports_each_epoch_and_the_accuracy(capsys):
    code, out, err = _run(capsys, *TINY, "--epochs", "3", "--lr", "0.01")
    assert code == 0, err
    assert "training Seq2seq D=4 H=8, adam lr=0.01, batch 32, float32, numpy" in out
    assert "on addition: 270 training, 30 test questions" in out
    losses = [float(loss) for loss, _ in _losses(out)]
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    assert re.search(r"^test accuracy \d\.\d{4} after 3 epochs in ", out, re.MULTILINE)


@pytest.mark.parametrize("model", ["peeky", "attention"])
def test_date_task_with_reversed_questions(capsys, model):
    code, out, err = _run(
        capsys, *TINY, "--task", "date", "--model", model, "--reverse", "--epochs", "1",
        "--examples", "2",
    )  # fmt: skip
    assert code == 0, err
    cls = {"peeky": "PeekySeq2seq", "attention": "AttentionSeq2seq"}[model]
    assert f"training {cls} D=4 H=8 reversed" in out
    questions = re.findall(r"^Q (.*)$", out, re.MULTILINE)
    answers = re.findall(r"^T (.*)$", out, re.MULTILINE)
    assert len(questions) == len(answers) == 2
    for answer in answers:  # the question reads forwards again when shown
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", answer)
    assert all(re.search(r"\d", q) for q in questions)
    assert re.search(r"^[OX] ", out, re.MULTILINE)


def test_a_file_of_the_books_format_is_read(capsys, tmp_path):
    path = tmp_path / "addition.txt"
    rows = [f"{a}+{b}".ljust(7) + "_" + str(a + b).ljust(4) for a in range(20) for b in range(20)]
    path.write_text("\n".join(rows) + "\n")
    code, out, err = _run(capsys, *TINY, "--data", str(path), "--epochs", "1")
    assert code == 0, err
    assert f"on {path}: 270 training, 30 test questions" in out


def test_checkpoint_and_resume_continue_bit_for_bit(capsys, tmp_path):
    ck, whole, resumed = tmp_path / "ck.npz", tmp_path / "whole.npz", tmp_path / "resumed.npz"
    args = [*TINY, "--model", "attention", "--seed", "3"]
    code, out_whole, err = _run(capsys, *args, "--epochs", "3", "--output", str(whole))
    assert code == 0, err
    code, _, err = _run(capsys, *args, "--epochs", "2", "--checkpoint", str(ck))
    assert code == 0, err
    code, out, err = _run(
        capsys, *args, "--epochs", "3", "--resume", str(ck), "--output", str(resumed)
    )
    assert code == 0, err
    assert _losses(out) == _losses(out_whole)[2:]
    a, b = AttentionSeq2seq(13, 4, 8), AttentionSeq2seq(13, 4, 8)
    a.load_params(whole)
    b.load_params(resumed)
    for p, q in zip(a.params, b.params, strict=True):
        np.testing.assert_array_equal(p, q)


def test_resume_refuses_another_run_and_other_files(capsys, tmp_path):
    ck = tmp_path / "ck.npz"
    assert _run(capsys, *TINY, "--epochs", "1", "--checkpoint", str(ck))[0] == 0
    code, _, err = _run(capsys, *TINY, "--epochs", "2", "--model", "peeky", "--resume", str(ck))
    assert code == 2
    assert "the checkpoint's run has --model 'plain', not 'peeky'" in _one_line_error(err)
    params = tmp_path / "params.npz"
    AttentionSeq2seq(13, 4, 8).save_params(params)
    code, _, err = _run(capsys, *TINY, "--epochs", "2", "--resume", str(params))
    assert code == 1
    assert "not a checkpoint of xplayers seq2seq" in _one_line_error(err)
    header = np.frombuffer(b'{"epoch": 1}', dtype=np.uint8)
    np.savez(tmp_path / "partial.npz", __xplayers_seq2seq__=header)
    code, _, err = _run(capsys, *TINY, "--resume", str(tmp_path / "partial.npz"))
    assert code == 1
    assert "an incomplete checkpoint" in _one_line_error(err)
    other = tmp_path / "other.npz"
    other.write_bytes(b"PK not really")
    code, _, err = _run(capsys, *TINY, "--epochs", "2", "--resume", str(other))
    assert code == 1
    assert "not a readable checkpoint" in _one_line_error(err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hidden", "0"], "argument --hidden: expected an integer >= 1"),
        (["--task", "poetry"], "argument --task: invalid choice"),
        (["--batch-size", "1000"], "--batch-size 1000 exceeds the 270 training questions"),
        (["--data", "/nonexistent/addition.txt"], "--data '/nonexistent/addition.txt': no such"),
        (["--size", "5"], "5 questions: need at least 10"),
        (["--examples", "-1"], "--examples takes an integer >= 0"),
    ],
)
def test_bad_options_are_one_line_usage_errors(capsys, argv, message):
    code, _, err = _run(capsys, *TINY, *argv)
    assert code == 2
    assert message in _one_line_error(err)


def test_a_malformed_data_file_is_one_line_error(capsys, tmp_path: Path):
    path = tmp_path / "bad.txt"
    path.write_text("1+1_2\n" * 20 + "no answer here\n")
    code, _, err = _run(capsys, *TINY, "--data", str(path))
    assert code == 1
    assert "line 21: expected 'question_answer'" in _one_line_error(err)


def test_runs_on_another_backend(capsys):
    pytest.importorskip("torch")
    code, out, err = _run(capsys, *TINY, "--backend", "torch", "--epochs", "1", "--quiet")
    assert code == 0, err
    assert out.count("\n") == 1
    assert "torch:cpu" in out
