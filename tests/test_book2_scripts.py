"""The book's own training scripts, unchanged, with xplayers.book2 in place of its modules.

A copy of the book's repository (*Deep Learning from Scratch 2*,
``oreilly-japan/deep-learning-from-scratch-2``) is extracted twice into a
temporary directory: once as it is, once with ``common/layers.py``,
``common/trainer.py``, ``common/optimizer.py`` and
``ch04/negative_sampling_layer.py`` replaced by one line,
``from xplayers.book2 import *``. ``ch01/train.py`` (spiral),
``ch03/train.py`` (SimpleCBOW) and ``ch04/train.py`` (CBOW, on a small
corpus written in the PTB format, as PTB cannot be downloaded here) run
in both, with the same global NumPy seed, and their printed losses are
compared.

The book is not a dependency: the tests skip unless a git copy of it is
found at ``$XPLAYERS_BOOK2_REPO`` (or the default path below).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPO = "/work/.mirror/oreilly-japan+deep-learning-from-scratch-2/repo"
REPO = Path(os.environ.get("XPLAYERS_BOOK2_REPO", DEFAULT_REPO))
REPLACED = [
    "common/layers.py",
    "common/trainer.py",
    "common/optimizer.py",
    "ch04/negative_sampling_layer.py",
]
LOSS = re.compile(r"^\| epoch (\d+) \|  iter (\d+) / (\d+) \| time \d+\[s\] \| loss (\d+\.\d\d)$")

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / "HEAD").exists(),
    reason=f"no git copy of the book's repository at {REPO} (set XPLAYERS_BOOK2_REPO)",
)


def _extract(dest: Path) -> None:
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "HEAD"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _small_ptb(path: Path) -> None:
    """A PTB-format corpus (one sentence a line) of 40 words with a learnable structure."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    lines = []
    for _ in range(300):
        start = int(rng.integers(0, 40))
        lines.append(" " + " ".join(words[(start + 3 * k) % 40] for k in range(9)) + " ")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("book2")
    out = {}
    for name in ("book", "xplayers"):
        _extract(base / name)
        _small_ptb(base / name / "dataset" / "ptb.train.txt")
        out[name] = base / name
    for rel in REPLACED:
        (out["xplayers"] / rel).write_text("from xplayers.book2 import *\n")
    return out


def _run(root: Path, chapter: str) -> list[float]:
    """Run ``<chapter>/train.py`` in `root` with the global NumPy seed 0; its printed losses."""
    code = (
        "import runpy, sys, numpy; numpy.random.seed(0); sys.argv = ['train.py']; "
        "runpy.run_path('train.py', run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    env.pop("XPLAYERS_BACKEND", None)
    done = subprocess.run(  # noqa: PLW1510 (the return code is asserted with the output)
        [sys.executable, "-c", code],
        cwd=root / chapter,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    losses = [float(m.group(4)) for m in map(LOSS.match, done.stdout.splitlines()) if m]
    assert losses, done.stdout[-2000:]
    return losses


def test_shims_are_one_line(books: dict[str, Path]) -> None:
    for rel in REPLACED:
        assert (books["xplayers"] / rel).read_text() == "from xplayers.book2 import *\n"
        assert (books["book"] / rel).read_text() != "from xplayers.book2 import *\n"


def test_chapter1_spiral_gives_the_books_losses(books: dict[str, Path]) -> None:
    """Same data, weights and permutations (the global generator): the same losses."""
    book, ours = _run(books["book"], "ch01"), _run(books["xplayers"], "ch01")
    assert len(ours) == len(book) == 300
    np.testing.assert_allclose(ours, book, atol=0.011)  # printed with 2 decimals
    assert ours[-1] < 0.3 < ours[0]


def test_chapter3_simple_cbow_gives_the_books_losses(books: dict[str, Path]) -> None:
    book, ours = _run(books["book"], "ch03"), _run(books["xplayers"], "ch03")
    assert len(ours) == len(book) == 1000
    np.testing.assert_allclose(ours, book, atol=0.011)
    assert np.mean(ours[-50:]) < np.mean(ours[:50]) - 0.5


def test_chapter4_cbow_learns_as_the_books(books: dict[str, Path]) -> None:
    """The negative samples are drawn differently: the losses agree within noise."""
    book, ours = _run(books["book"], "ch04"), _run(books["xplayers"], "ch04")
    assert len(ours) == len(book)
    assert ours[0] == pytest.approx(book[0], abs=0.05)  # 6 log 2 = 4.16 for small weights
    tail = max(3, len(ours) // 5)
    assert np.mean(ours[-tail:]) == pytest.approx(np.mean(book[-tail:]), rel=0.1)
    assert np.mean(ours[-tail:]) < ours[0] - 0.5


def main() -> None:
    """Print the losses of each script in the book's modules and in xplayers.book2."""
    base = Path(tempfile.mkdtemp(prefix="book2-"))
    roots = {}
    for name in ("book", "xplayers"):
        _extract(base / name)
        _small_ptb(base / name / "dataset" / "ptb.train.txt")
        roots[name] = base / name
    for rel in REPLACED:
        (roots["xplayers"] / rel).write_text("from xplayers.book2 import *\n")
    print(
        "| script | reports | first loss (book, xplayers) | mean of the last fifth | largest difference |"
    )
    print("|---|---|---|---|---|")
    for chapter in ("ch01", "ch03", "ch04"):
        book, ours = _run(roots["book"], chapter), _run(roots["xplayers"], chapter)
        k = max(3, len(book) // 5)
        diff = max(abs(a - b) for a, b in zip(book, ours, strict=True))
        print(
            f"| `{chapter}/train.py` | {len(book)} | {book[0]:.2f}, {ours[0]:.2f} "
            f"| {np.mean(book[-k:]):.3f}, {np.mean(ours[-k:]):.3f} | {diff:.2f} |"
        )
    shutil.rmtree(base)


if __name__ == "__main__":
    main()
