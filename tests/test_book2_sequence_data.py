"""The addition and date sets of volume 2 (xplayers.book2.datasets.sequence).

The formats are those of the book's ``dataset/addition.txt`` and
``dataset/date.txt``; where the book's repository snapshot is on this
machine, its files are read too (and the test says so when it is not).
"""

from __future__ import annotations

import collections
import datetime
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from xplayers.book2.datasets import sequence
from xplayers.errors import DatasetError

BOOK = Path("/work/.mirror/oreilly-japan+deep-learning-from-scratch-2/repo")
#: The characters of the book's files.
ADDITION_CHARS = set(" +0123456789_")
DATE_CHARS = set(" ,-/0123456789ABCDEFGHIJLMNOPRSTUVWY_abcdefghijlmnoprstuvwy")
MONTHS = [datetime.date(2000, m, 1).strftime("%B") for m in range(1, 13)]


def _book_file(name: str) -> list[str]:
    if not (BOOK / "HEAD").exists() and not (BOOK / ".git").exists():
        pytest.skip(f"the book's repository snapshot is not at {BOOK}")
    out = subprocess.run(
        ["git", "-C", str(BOOK), "show", f"HEAD:dataset/{name}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def test_addition_lines_have_the_books_format_and_sums():
    lines = sequence.addition_lines(3000, seed=1)
    assert {len(line) for line in lines} == {12}
    assert set("".join(lines)) == ADDITION_CHARS
    pairs = set()
    for line in lines:
        q, a = line[:7], line[7:]
        assert re.fullmatch(r"\d{1,3}\+\d{1,3} *", q), line
        assert re.fullmatch(r"_\d{1,4} *", a), line
        x, y = (int(v) for v in q.split("+"))
        assert int(a[1:]) == x + y
        pairs.add((min(x, y), max(x, y)))
    assert len(pairs) == len(lines)  # no pair twice, in either order


def test_addition_digit_counts_follow_the_books_distribution():
    """Uniform digit counts, repeats redrawn: the book's file has 58 % / 32 % / 10 %."""
    counts = collections.Counter(len(line.split("+")[0]) for line in sequence.addition_lines())
    assert counts[3] / sum(counts.values()) == pytest.approx(0.578, abs=0.01)
    assert counts[1] / sum(counts.values()) == pytest.approx(0.097, abs=0.01)


def test_date_lines_have_the_books_formats_and_dates():
    lines = sequence.date_lines(4000, seed=2)
    assert {len(line) for line in lines} == {40}
    assert set("".join(sequence.date_lines())) == DATE_CHARS
    styles = collections.Counter()
    for line in lines:
        q, a = line[:29].rstrip(), line[29:]
        assert a[0] == "_"
        day = datetime.date.fromisoformat(a[1:])
        assert datetime.date(1970, 1, 1) <= day <= datetime.date(2017, 12, 31)
        if "/" in q:
            assert q == f"{day.month}/{day.day}/{day.year % 100:02d}"
            styles["numeric"] += 1
            continue
        month = MONTHS[day.month - 1]
        forms = {
            f"{month} {day.day}, {day.year}": "full",
            f"{month[:3]} {day.day}, {day.year}": "short",
            f"{day.strftime('%A')}, {month} {day.day}, {day.year}": "weekday",
        }
        variants = {f(k): v for k, v in forms.items() for f in (str, str.lower, str.upper)}
        assert q in variants, q
        styles[variants[q]] += 1
    assert min(styles.values()) > 0.2 * len(lines)


@pytest.mark.parametrize("make", [sequence.addition_lines, sequence.date_lines])
def test_generators_are_seeded(make):
    assert make(200, seed=5) == make(200, seed=5)
    assert make(200, seed=5) != make(200, seed=6)


def test_generated_formats_equal_the_books_files():
    for name, make in sequence.GENERATED.items():
        book = _book_file(name)
        ours = make()
        assert len(ours) == len(book) == sequence.SIZE
        assert {len(line) for line in ours} == {len(line) for line in book}
        assert {line.index("_") for line in ours} == {line.index("_") for line in book}
        assert set("".join(ours)) == set("".join(book))


def test_load_data_reads_the_books_file_into_the_books_split(tmp_path):
    lines = _book_file("addition.txt")
    path = tmp_path / "addition.txt"
    path.write_text("\n".join(lines) + "\n")
    (x_train, t_train), (_x_test, t_test) = sequence.load_data(path)
    char_to_id, id_to_char = sequence.get_vocab()
    assert x_train.shape == (45000, 7)
    assert t_test.shape == (5000, 5)
    # the book's shuffle: numpy.random.seed(1984); numpy.random.shuffle(arange(50000))
    order = np.arange(50000)
    np.random.RandomState(1984).shuffle(order)
    first = lines[order[0]]
    assert "".join(id_to_char[int(i)] for i in x_train[0]) == first[:7]
    assert "".join(id_to_char[int(i)] for i in t_train[0]) == first[7:]
    assert char_to_id == {c: i for i, c in id_to_char.items()}
    assert list(char_to_id)[:3] == ["1", "6", "+"]  # order of first appearance: '16+75  _91  '


def test_load_data_generates_the_named_sets_and_splits_ninety_ten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no date.txt here: the generated set
    (x_train, t_train), (x_test, _t_test) = sequence.load_data("date.txt", seed=3)
    assert x_train.shape == (45000, 29)
    assert t_train.shape == (45000, 11)
    assert x_test.shape == (5000, 29)
    char_to_id, _id_to_char = sequence.get_vocab()
    assert set(char_to_id) == DATE_CHARS
    assert (t_train[:, 0] == char_to_id["_"]).all()
    again = sequence.load_data("date.txt", seed=3)
    np.testing.assert_array_equal(again[0][0], x_train)
    other = sequence.load_data("date.txt", seed=4)
    assert not np.array_equal(other[0][0], x_train)


def test_load_data_refuses_missing_files_and_bad_lines(tmp_path):
    with pytest.raises(DatasetError, match=r"no file 'nothing.txt'.*'addition.txt', 'date.txt'"):
        sequence.load_data("nothing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1+1 _2\n2+2\n")
    with pytest.raises(DatasetError, match=r"line 2: expected 'question_answer'"):
        sequence.load_data(bad)
    bad.write_text("1+1  _2\n10+1 _11\n1+1 _2\n")
    with pytest.raises(DatasetError, match=r"line 3: expected a question of 5 characters"):
        sequence.load_data(bad)
    with pytest.raises(DatasetError, match=r"argument 'size'"):
        sequence.addition_lines(0)
    with pytest.raises(DatasetError, match=r"at most 500500"):
        sequence.addition_lines(500501)
