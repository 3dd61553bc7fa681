"""Volume 2's ``dataset/sequence.py``: the addition and date sets of chapters 7 and 8.

The book ships two text files of 50,000 lines each, one question and its
answer per line, ``_`` starting the answer:

- ``addition.txt``: ``'16+75  _91  '``, two numbers of one to three digits
  (the question padded with spaces to 7 characters), their sum after ``_``
  (padded to 5);
- ``date.txt``: ``'september 27, 1994           _1994-09-27'``, a date
  written in one of the formats below (padded to 29 characters), the same
  date as ``YYYY-MM-DD`` after ``_``.

Here the lines are made by seeded generators, :func:`addition_lines` and
:func:`date_lines`, in the same formats and with the same characters, so
nothing is downloaded. :func:`load_data` reads a file the user names
(the book's own ``addition.txt`` or ``date.txt`` included), or, for the
names ``addition.txt`` and ``date.txt`` when no such file exists, the
generated set; as in the book it returns ``(x_train, t_train), (x_test,
t_test)``, character ids, the last tenth after a seeded shuffle held out
for testing, and :func:`get_vocab` gives ``(char_to_id, id_to_char)``.

Addition: each number has one to three digits, the count drawn uniformly,
then each digit (so ``007`` is 7); a pair already drawn, in either order,
is drawn again, as the generator the book's set comes from did
(which is why three-digit numbers dominate).

Dates: a day drawn uniformly from 1970-01-01 to 2017-12-31, written in one
of four formats, each as likely: ``M/D/YY`` (``2/10/93``); ``Mon D, YYYY``
(``Sep 30, 1981``); ``Month D, YYYY`` (``August 19, 2003``);
``Weekday, Month D, YYYY`` (``Wednesday, February 26, 1997``), the names
in English, capitalised (half of the time), lower case or upper case.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xplayers.errors import DatasetError

__all__ = [
    "ADDITION_ANSWER_LEN",
    "ADDITION_QUESTION_LEN",
    "DATE_ANSWER_LEN",
    "DATE_QUESTION_LEN",
    "GENERATED",
    "SIZE",
    "addition_lines",
    "char_to_id",
    "date_lines",
    "from_lines",
    "get_vocab",
    "id_to_char",
    "load_data",
    "read_lines",
]

#: Lines of each generated set, as in the book's files.
SIZE = 50000
#: The padded lengths of the book's questions and of its answers (``_`` included).
ADDITION_QUESTION_LEN, ADDITION_ANSWER_LEN = 7, 5
DATE_QUESTION_LEN, DATE_ANSWER_LEN = 29, 11

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_FIRST, _LAST = datetime.date(1970, 1, 1).toordinal(), datetime.date(2017, 12, 31).toordinal()

#: The vocabulary of the last :func:`load_data`, as the book's module-level dicts.
char_to_id: dict[str, int] = {}
id_to_char: dict[int, str] = {}


def addition_lines(size: int = SIZE, seed: int = 0) -> list[str]:
    """`size` lines ``'a+b'`` padded to 7, ``'_'`` and ``a + b`` padded to 5; pairs unique."""
    _check_size("addition_lines", size, 500500)  # unordered pairs of 0..999
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int]] = set()
    lines: list[str] = []
    while len(lines) < size:
        lengths = rng.integers(1, 4, size=(4096, 2))
        digits = rng.integers(0, 10, size=(4096, 2, 3))
        place = 10 ** np.arange(3)
        numbers = np.sum(digits * place * (np.arange(3) < lengths[..., None]), axis=-1)
        for a, b in numbers.tolist():
            key = (min(a, b), max(a, b))
            if key in seen:
                continue
            seen.add(key)
            q = f"{a}+{b}".ljust(ADDITION_QUESTION_LEN)
            lines.append(q + "_" + str(a + b).ljust(ADDITION_ANSWER_LEN - 1))
            if len(lines) == size:
                break
    return lines


def _date_text(day: datetime.date, style: int, case: int) -> str:
    if style == 0:
        return f"{day.month}/{day.day}/{day.year % 100:02d}"
    month = _MONTHS[day.month - 1]
    if style == 1:
        month = month[:3]
    text = f"{month} {day.day}, {day.year}"
    if style == 3:
        text = f"{_DAYS[day.weekday()]}, {text}"
    return text.lower() if case == 1 else text.upper() if case == 2 else text


def date_lines(size: int = SIZE, seed: int = 0) -> list[str]:
    """`size` lines: a date in one of the book's formats padded to 29, ``'_'``, ``YYYY-MM-DD``."""
    _check_size("date_lines", size, None)
    rng = np.random.default_rng(seed)
    days = rng.integers(_FIRST, _LAST + 1, size=size).tolist()
    styles = rng.integers(0, 4, size=size).tolist()
    cases = rng.choice(3, size=size, p=[0.5, 0.25, 0.25]).tolist()
    lines = []
    for ordinal, style, case in zip(days, styles, cases, strict=True):
        day = datetime.date.fromordinal(ordinal)
        q = _date_text(day, style, case).ljust(DATE_QUESTION_LEN)
        lines.append(q + "_" + day.isoformat())
    return lines


def _check_size(where: str, size: object, most: int | None) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise DatasetError(f"{where}: argument 'size': expected an integer >= 1; got {size!r}")
    if most is not None and size > most:
        raise DatasetError(
            f"{where}: argument 'size': expected at most {most} (the distinct pairs); got {size}"
        )


#: The generators behind the names ``load_data`` accepts without a file.
GENERATED = {"addition.txt": addition_lines, "date.txt": date_lines}


def read_lines(file_name: str | os.PathLike[str]) -> list[str]:
    """The lines of `file_name` if it exists, else the generated set of that name."""
    path = Path(file_name)
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip("\n")]
    if str(file_name) in GENERATED:
        return GENERATED[str(file_name)]()
    raise DatasetError(
        f"load_data: no file {str(file_name)!r}; name an existing file of 'question_answer' "
        f"lines, or one of {', '.join(map(repr, GENERATED))} for the generated sets"
    )


def _split_lines(name: str, lines: list[str]) -> tuple[list[str], list[str]]:
    if not lines:
        raise DatasetError(f"load_data: {name!r} holds no lines")
    questions, answers = [], []
    for number, line in enumerate(lines, 1):
        idx = line.find("_")
        if idx < 1 or idx == len(line) - 1:
            raise DatasetError(
                f"load_data: {name!r} line {number}: expected 'question_answer' with a non-empty "
                f"question and answer; got {line!r}"
            )
        questions.append(line[:idx])
        answers.append(line[idx:])
    for what, texts in (("question", questions), ("answer", answers)):
        width = len(texts[0])
        for number, text in enumerate(texts, 1):
            if len(text) != width:
                raise DatasetError(
                    f"load_data: {name!r} line {number}: expected a {what} of {width} "
                    f"characters, as line 1 (padded with spaces); got {len(text)}: {text!r}"
                )
    return questions, answers


def load_data(
    file_name: str | os.PathLike[str] = "addition.txt", seed: int | None = 1984
) -> tuple[tuple[npt.NDArray[Any], npt.NDArray[Any]], tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
    """The book's ``load_data``: ``(x_train, t_train), (x_test, t_test)`` of character ids.

    Parameters
    ----------
    file_name : str or os.PathLike
        A file of ``question_answer`` lines (questions of one length,
        answers of one length), or ``'addition.txt'``/``'date.txt'`` for the
        generated sets when no such file exists.
    seed : int or None
        Seed of the shuffle before the split, NumPy's legacy generator as
        the book's ``numpy.random.seed(seed)`` (so a file gives the book's
        split); None shuffles with the global generator.

    Returns
    -------
    tuple
        Integer arrays ``(N, question length)`` and ``(N, answer length)``,
        the answers starting with the id of ``_``; the last ``N // 10`` rows
        after the shuffle are the test set. The ids are those of
        :func:`get_vocab`, in order of first appearance.

    Raises
    ------
    xplayers.errors.DatasetError
        No such file (and not a generated name), or a line without ``_``
        or of another length than the first.
    """
    return from_lines(read_lines(file_name), seed, name=str(file_name))


def from_lines(
    lines: list[str], seed: int | None = 1984, *, name: str = "lines"
) -> tuple[tuple[npt.NDArray[Any], npt.NDArray[Any]], tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
    """:func:`load_data` of the given ``question_answer`` lines (`name` names them in errors)."""
    questions, answers = _split_lines(name, lines)
    char_to_id.clear()
    id_to_char.clear()
    for q, a in zip(questions, answers, strict=True):
        for char in q + a:
            if char not in char_to_id:
                id_to_char[len(char_to_id)] = char
                char_to_id[char] = len(char_to_id)
    x = np.array([[char_to_id[c] for c in q] for q in questions], dtype=int)
    t = np.array([[char_to_id[c] for c in a] for a in answers], dtype=int)
    indices = np.arange(len(x))
    if seed is not None:
        np.random.RandomState(seed).shuffle(indices)
    else:
        np.random.shuffle(indices)  # noqa: NPY002 - the book shuffles with the global generator
    x, t = x[indices], t[indices]
    split_at = len(x) - len(x) // 10
    return (x[:split_at], t[:split_at]), (x[split_at:], t[split_at:])


def get_vocab() -> tuple[dict[str, int], dict[int, str]]:
    """``(char_to_id, id_to_char)`` of the last :func:`load_data`."""
    return char_to_id, id_to_char
