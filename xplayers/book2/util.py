"""Volume 2's ``common/util.py``: gradient clipping and the book's text and evaluation helpers.

Names, arguments and return values are the book's. Arrays are computed
with the library of the arrays given (NumPy, CuPy, torch, JAX, Dask,
array-api-strict); the text helpers work on the host, as the book's do.
"""

from __future__ import annotations

import inspect
import math
import os
import sys
from typing import Any

import numpy as np

from xplayers._validation import describe, fail, positive_int, positive_number
from xplayers.backend import get_backend, namespace, to_numpy
from xplayers.book2._cells import refresh
from xplayers.book2._common import store

__all__ = [
    "analogy",
    "clip_grads",
    "convert_one_hot",
    "cos_similarity",
    "create_co_matrix",
    "create_contexts_target",
    "eval_perplexity",
    "eval_seq2seq",
    "most_similar",
    "normalize",
    "ppmi",
    "preprocess",
    "to_cpu",
    "to_gpu",
]


def clip_grads(grads: list[Any], max_norm: float) -> None:
    """Scale every gradient by ``max_norm / (norm + 1e-6)`` when that is below 1.

    ``norm`` is the global norm, ``sqrt`` of the sum of the squares of all
    entries of all `grads`. The book tests ``rate < 1`` on the host; here the
    factor ``minimum(1, max_norm / (norm + 1e-6))`` stays an array and every
    gradient is multiplied by it, so nothing is read back from the device
    (no synchronisation on a GPU, nothing computed on a lazy Dask array).
    The products are written into ``grads[i]`` where the array allows it and
    replace ``grads[i]`` where arrays are immutable (JAX), as the layers'
    gradients are stored (:mod:`xplayers.book2`).
    """
    max_norm = positive_number("clip_grads", "max_norm", max_norm)
    if not grads:
        return
    refresh(grads)  # the layers' current arrays, where they were replaced
    xp = namespace(grads[0])
    total = xp.sum(grads[0] * grads[0])
    for g in grads[1:]:
        total = total + xp.sum(g * g)
    rate = max_norm / (xp.sqrt(total) + 1e-6)
    rate = xp.minimum(rate, xp.ones_like(rate))
    for i in range(len(grads)):
        store(grads, i, grads[i] * rate)


def preprocess(text: str) -> tuple[np.ndarray[Any, Any], dict[str, int], dict[int, str]]:
    """Split `text` into words; return ``(corpus, word_to_id, id_to_word)``.

    As the book: lower case, ``"."`` split off as a word of its own, words
    split on single spaces, ids given in order of first appearance;
    ``corpus`` is a NumPy array of the ids.
    """
    words = text.lower().replace(".", " .").split(" ")
    word_to_id: dict[str, int] = {}
    for word in words:
        word_to_id.setdefault(word, len(word_to_id))
    id_to_word = {i: w for w, i in word_to_id.items()}
    return np.array([word_to_id[w] for w in words]), word_to_id, id_to_word


def _ids(where: str, corpus: Any, ndims: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """`corpus` as a host integer array with one of `ndims` dimensions."""
    ids = np.asarray(to_numpy(corpus) if hasattr(corpus, "shape") else corpus)
    if ids.dtype.kind not in "iu" or ids.ndim not in ndims:
        dims = " or ".join(f"{n}-D" for n in ndims)
        fail(where, "corpus", f"a {dims} integer array of word ids", describe(ids))
    return ids


def create_co_matrix(corpus: Any, vocab_size: int, window_size: int = 1) -> np.ndarray[Any, Any]:
    """The co-occurrence matrix: ``C[w, c]`` counts `c` within `window_size` words of `w`.

    A NumPy ``int32`` array of shape ``(vocab_size, vocab_size)``, as the
    book's; the counts are added with one ``np.add.at`` per offset.
    """
    ids = _ids("create_co_matrix", corpus, (1,))
    vocab_size = positive_int("create_co_matrix", "vocab_size", vocab_size)
    window_size = positive_int("create_co_matrix", "window_size", window_size)
    co = np.zeros((vocab_size, vocab_size), dtype=np.int32)
    for i in range(1, min(window_size, len(ids) - 1) + 1):
        np.add.at(co, (ids[i:], ids[:-i]), 1)  # left neighbour at distance i
        np.add.at(co, (ids[:-i], ids[i:]), 1)  # right neighbour at distance i
    return co


def cos_similarity(x: Any, y: Any, eps: float = 1e-8) -> Any:
    """Cosine similarity of two vectors, each divided by ``norm + eps`` (the book's form)."""
    xp = namespace(x)
    nx = x / (xp.sqrt(xp.sum(x**2)) + eps)
    ny = y / (xp.sqrt(xp.sum(y**2)) + eps)
    return xp.sum(nx * ny)


def most_similar(
    query: str,
    word_to_id: dict[str, int],
    id_to_word: dict[int, str],
    word_matrix: Any,
    top: int = 5,
) -> None:
    """Print the `top` words most similar to `query` by cosine similarity, as the book does.

    Prints ``"<query> is not found"`` for an unknown word; otherwise a
    ``[query]`` line and one ``word: similarity`` line per word, the query
    itself left out. The similarities are computed on the host.
    """
    if query not in word_to_id:
        print(f"{query} is not found")
        return
    print("\n[query] " + query)
    matrix = to_numpy(word_matrix)
    query_vec = matrix[word_to_id[query]]
    similarity = np.zeros(len(id_to_word))
    for i in range(len(id_to_word)):
        similarity[i] = cos_similarity(matrix[i], query_vec)
    count = 0
    for i in (-1 * similarity).argsort():
        if id_to_word[int(i)] == query:
            continue
        print(f" {id_to_word[int(i)]}: {similarity[i]}")
        count += 1
        if count >= top:
            return


def analogy(
    a: str,
    b: str,
    c: str,
    word_to_id: dict[str, int],
    id_to_word: dict[int, str],
    word_matrix: Any,
    top: int = 5,
    answer: str | None = None,
) -> None:
    """Print the `top` words ``d`` for "`a` is to `b` as `c` is to ``d``", as the book does.

    The query is ``normalize(b - a + c)`` and each word scores the dot
    product of its row of `word_matrix` with it (rows are not normalised,
    as in the book: normalise the matrix first for cosine similarities).
    Prints ``"<word> is not found"`` for the first unknown word; otherwise an
    ``[analogy]`` line, the score of `answer` when given, and one
    ``word: score`` line per word, `a`, `b` and `c` left out. Computed on
    the host.
    """
    for word in (a, b, c):
        if word not in word_to_id:
            print(f"{word} is not found")
            return
    print("\n[analogy] " + a + ":" + b + " = " + c + ":?")
    matrix = to_numpy(word_matrix)
    a_vec, b_vec, c_vec = (matrix[word_to_id[w]] for w in (a, b, c))
    query_vec = normalize(b_vec - a_vec + c_vec)
    similarity = matrix @ query_vec
    if answer is not None:
        print("==>" + answer + ":" + str(np.dot(matrix[word_to_id[answer]], query_vec)))
    count = 0
    for i in (-1 * similarity).argsort():
        if np.isnan(similarity[i]) or id_to_word[int(i)] in (a, b, c):
            continue
        print(f" {id_to_word[int(i)]}: {similarity[i]}")
        count += 1
        if count >= top:
            return


def normalize(x: Any) -> Any:
    """Each row of 2-D `x` (or 1-D `x` itself) divided by its Euclidean norm.

    As the book, a NumPy array is divided in place and returned; arrays of
    other backends get a new array (JAX arrays cannot be written).
    """
    xp = namespace(x)
    if x.ndim not in (1, 2):
        fail("normalize", "x", "a 1-D or 2-D array", describe(x))
    s = xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))
    if isinstance(x, np.ndarray) and x.flags.writeable:
        x /= s
        return x
    return x / s


def ppmi(C: Any, verbose: bool = False, eps: float = 1e-8) -> Any:
    """Positive pointwise mutual information of a co-occurrence matrix, as ``float32``.

    ``M[i, j] = max(0, log2(C[i, j] * N / (S[i] * S[j]) + eps))`` with ``N``
    the total count and ``S`` the column sums, the book's formula computed
    for the whole matrix at once on `C`'s backend. Words that never occur
    get 0, as in the book (where ``max(0, nan)`` is 0). The book prints its
    progress every 1 % with `verbose`; here there is one step, and
    ``100.0% done`` is printed when it ends.
    """
    xp = namespace(C)
    c = xp.astype(C, xp.float64)
    total = xp.sum(c)
    s = xp.sum(c, axis=0)
    denom = s[:, None] * s[None, :]
    denom = xp.where(denom > 0, denom, xp.ones_like(denom))  # C is 0 there: log2(eps) < 0
    pmi = xp.log2(c * total / denom + eps)
    out = xp.astype(xp.where(pmi > 0, pmi, xp.zeros_like(pmi)), xp.float32)
    if verbose:
        print("100.0% done")
    return out


def create_contexts_target(
    corpus: Any, window_size: int = 1
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``(contexts, target)``: each word with the `window_size` words on each side.

    ``contexts`` has shape ``(len(corpus) - 2 * window_size, 2 * window_size)``,
    left neighbours first; NumPy arrays, as the book's.
    """
    ids = _ids("create_contexts_target", corpus, (1,))
    ws = positive_int("create_contexts_target", "window_size", window_size)
    n = len(ids) - 2 * ws
    if n < 1:
        fail(
            "create_contexts_target",
            "corpus",
            f"more than 2 * window_size = {2 * ws} words",
            f"{len(ids)} words",
        )
    cols = [ids[ws + t : ws + t + n] for t in range(-ws, ws + 1) if t != 0]
    return np.stack(cols, axis=1), ids[ws : ws + n].copy()


def convert_one_hot(corpus: Any, vocab_size: int) -> np.ndarray[Any, Any]:
    """One-hot ``int32`` vectors of the ids of a 1-D or 2-D `corpus` (a NumPy array)."""
    ids = _ids("convert_one_hot", corpus, (1, 2))
    vocab_size = positive_int("convert_one_hot", "vocab_size", vocab_size)
    hot: np.ndarray[Any, Any] = ids[..., None] == np.arange(vocab_size)
    return hot.astype(np.int32)


def to_cpu(x: Any) -> np.ndarray[Any, Any]:
    """`x` as a NumPy array (:func:`xplayers.to_numpy`): NumPy arrays are returned as they are."""
    return to_numpy(x)


def to_gpu(x: Any) -> Any:
    """`x` on the current backend and device, the place of the book's ``cupy.asarray``.

    The current backend is the one :func:`xplayers.use_backend`,
    :func:`xplayers.set_backend` or ``XPLAYERS_BACKEND`` selects; it is the
    GPU with ``XPLAYERS_BACKEND=cupy`` (or torch on CUDA), and NumPy when
    nothing is selected. Arrays already there are returned as they are.
    """
    return get_backend().asarray(x)


def _batches(
    ids: np.ndarray[Any, Any], batch_size: int, time_size: int, iters: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The book's ``xs``, ``ts`` of evaluation step `iters`: `batch_size` rows spread over `ids`."""
    size = len(ids)
    jump = (size - 1) // batch_size
    offsets = iters * time_size + jump * np.arange(batch_size)
    pos = offsets[:, None] + np.arange(time_size)
    xs = ids[pos % size].astype(np.int32)
    ts = ids[(pos + 1) % size].astype(np.int32)
    return xs, ts


def eval_perplexity(model: Any, corpus: Any, batch_size: int = 10, time_size: int = 35) -> float:
    """The perplexity ``exp(mean loss)`` of a language model over `corpus`, as the book's.

    The corpus is cut into ``(batch_size, time_size)`` batches the book's
    way (row ``i`` starts at ``i * ((len(corpus) - 1) // batch_size)``) and
    ``model.forward(xs, ts, train_flg=False)`` is called on each (without
    ``train_flg`` when `model`'s ``forward`` has no such argument). Prints
    ``evaluating perplexity ...`` and the progress as the book does.
    """
    ids = _ids("eval_perplexity", corpus, (1,))
    batch_size = positive_int("eval_perplexity", "batch_size", batch_size)
    time_size = positive_int("eval_perplexity", "time_size", time_size)
    max_iters = (len(ids) - 1) // (batch_size * time_size)
    if max_iters < 1:
        fail(
            "eval_perplexity",
            "corpus",
            f"at least batch_size * time_size + 1 = {batch_size * time_size + 1} ids",
            f"{len(ids)} ids",
        )
    flag = "train_flg" in inspect.signature(model.forward).parameters
    print("evaluating perplexity ...")
    total_loss: Any = 0
    for iters in range(max_iters):
        xs, ts = _batches(ids, batch_size, time_size, iters)
        loss = model.forward(xs, ts, train_flg=False) if flag else model.forward(xs, ts)
        total_loss = total_loss + loss
        sys.stdout.write(f"\r{iters} / {max_iters}")
        sys.stdout.flush()
    print("")
    return math.exp(float(to_numpy(total_loss)) / max_iters)


def eval_seq2seq(
    model: Any,
    question: Any,
    correct: Any,
    id_to_char: dict[int, str],
    verbose: bool = False,
    is_reverse: bool = False,
) -> int:
    """1 if `model` generates `correct` (after its first id, the start id) for `question`, else 0.

    ``model.generate(question, start_id, len(correct) - 1)`` is called as
    in the book. With `verbose`, prints the question (reversed back with
    `is_reverse`), the answer and the guess marked as right or wrong, in
    colour (``O``/``X`` on Windows).
    """
    answer = to_numpy(correct).reshape(-1)
    start_id, answer = int(answer[0]), answer[1:]
    guess_ids = model.generate(question, start_id, len(answer))
    q_text = "".join(id_to_char[int(c)] for c in to_numpy(question).reshape(-1))
    right = "".join(id_to_char[int(c)] for c in answer)
    guess = "".join(id_to_char[int(c)] for c in guess_ids)
    if verbose:
        if is_reverse:
            q_text = q_text[::-1]
        print("Q", q_text)
        print("T", right)
        windows = os.name == "nt"
        if right == guess:
            mark = "O" if windows else "\033[92m" + "\u2611" + "\033[0m"
        else:
            mark = "X" if windows else "\033[91m" + "\u2612" + "\033[0m"
        print(mark + " " + guess)
        print("---")
    return 1 if guess == right else 0
