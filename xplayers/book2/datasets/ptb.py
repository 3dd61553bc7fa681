"""The Penn Treebank of the book's ``dataset/ptb.py``, read from files the user provides.

``load_data(data_type, data_dir=...)`` reads ``ptb.train.txt``,
``ptb.valid.txt`` or ``ptb.test.txt`` and returns ``(corpus,
word_to_id, id_to_word)`` as the book does: every line break becomes the
word ``<eos>``, words are split on white space, ids are given in order of
first appearance. Nothing is downloaded; the files are at :data:`URL`
(the book downloads them from there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from xplayers.errors import DatasetError

__all__ = ["ENV", "FILES", "URL", "load_data", "read_words"]

#: Where the book downloads the three files from.
URL = "https://raw.githubusercontent.com/tomsercu/lstm/master/data/"
#: The file of each split.
FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
#: The environment variable naming the directory when `data_dir` is not given.
ENV = "XPLAYERS_PTB_DIR"

Corpus = tuple[npt.NDArray[np.int64], dict[str, int], dict[int, str]]


def read_words(path: Path) -> list[str]:
    """The words of a text file, each line break read as the word ``<eos>`` (the book's rule)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(
            f"ptb.load_data: no file {str(path)!r}; download {path.name} from {URL}{path.name} "
            "into that directory"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"ptb.load_data: cannot read {str(path)!r} ({exc})") from None
    return text.replace("\n", " <eos> ").split()


def _directory(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is None:
        data_dir = os.environ.get(ENV)
    if not data_dir:
        raise DatasetError(
            f"ptb.load_data: no data directory; give data_dir (or set ${ENV}) naming a "
            f"directory holding {', '.join(FILES.values())}, downloaded from {URL}"
        )
    path = Path(data_dir)
    if not path.is_dir():
        raise DatasetError(
            f"ptb.load_data: data_dir {str(path)!r} is not a directory; it should hold "
            f"{', '.join(FILES.values())} (from {URL})"
        )
    return path


def load_data(data_type: str = "train", data_dir: str | os.PathLike[str] | None = None) -> Corpus:
    """``(corpus, word_to_id, id_to_word)`` of one split, as the book's ``ptb.load_data``.

    Parameters
    ----------
    data_type : {"train", "valid", "val", "test"}
        The split (``"val"`` is ``"valid"``, as in the book).
    data_dir : str or os.PathLike, optional
        The directory holding the ``ptb.*.txt`` files (default:
        ``$XPLAYERS_PTB_DIR``).

    Returns
    -------
    corpus : numpy.ndarray
        The word ids of the split, ``int64``.
    word_to_id, id_to_word : dict
        The vocabulary, shared by the three splits: the words of the
        training file in order of first appearance (the book's), then those
        of the validation and test files (present) that it lacks.

    Raises
    ------
    xplayers.errors.DatasetError
        No directory, or the training file or the requested one missing;
        the message says where to download them.
    """
    split = "valid" if data_type == "val" else data_type
    if split not in FILES:
        raise DatasetError(
            f"ptb.load_data: argument 'data_type': expected one of train, valid, val, test; "
            f"got {data_type!r}"
        )
    directory = _directory(data_dir)
    word_to_id: dict[str, int] = {}
    corpus: list[str] = []
    for name, file in FILES.items():
        path = directory / file
        if name not in ("train", split) and not path.exists():
            continue
        words = read_words(path)
        for w in words:
            word_to_id.setdefault(w, len(word_to_id))
        if name == split:
            corpus = words
    id_to_word = {i: w for w, i in word_to_id.items()}
    ids: npt.NDArray[np.int64] = np.array([word_to_id[w] for w in corpus], dtype=np.int64)
    return ids, word_to_id, id_to_word
