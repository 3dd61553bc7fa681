"""The volume 2 utilities (xplayers.book2.util): the book's results on small hand-checked examples.

The references are NumPy transcriptions of the book's ``common/util.py``
written here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from xplayers.backend import namespace
from xplayers.book2 import (
    analogy,
    clip_grads,
    convert_one_hot,
    cos_similarity,
    create_co_matrix,
    create_contexts_target,
    eval_perplexity,
    eval_seq2seq,
    most_similar,
    normalize,
    ppmi,
    preprocess,
    to_cpu,
    to_gpu,
)
from xplayers.errors import LayerInputError


def _book_clip(grads: list[np.ndarray], max_norm: float) -> None:
    total = np.sqrt(sum(np.sum(g**2) for g in grads))
    rate = max_norm / (total + 1e-6)
    if rate < 1:
        for i in range(len(grads)):
            grads[i] *= rate


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grads_matches_the_book(backend: Any, max_norm: float) -> None:
    host = [np.array([[3.0, 0.0], [0.0, 0.0]]), np.array([4.0, 0.0])]  # global norm 5
    want = [g.copy() for g in host]
    _book_clip(want, max_norm)
    grads = [backend.asarray(g) for g in host]
    held = grads[0]
    clip_grads(grads, max_norm)
    for got, w in zip(grads, want, strict=True):
        np.testing.assert_allclose(backend.to_numpy(got), w, rtol=1e-12)
    if max_norm == 0.5:
        assert np.allclose(backend.to_numpy(grads[0])[0, 0], 0.3)
        if grads[0] is held:  # written in place where the array allows it
            np.testing.assert_allclose(backend.to_numpy(held), want[0], rtol=1e-12)


def test_clip_grads_refuses_a_bad_max_norm() -> None:
    grads = [np.ones(2)]
    with pytest.raises(LayerInputError, match=r"clip_grads.*'max_norm'"):
        clip_grads(grads, -1.0)
    np.testing.assert_array_equal(grads[0], [1.0, 1.0])


def _no_compute(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("clip_grads computed a Dask graph (read a value on the host)")


@pytest.mark.backends("dask")
def test_clip_grads_reads_nothing_on_the_host() -> None:
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    grads = [da.from_array(np.full((4, 3), 2.0), chunks=2), da.from_array(np.ones(5), chunks=2)]
    with dask.config.set(scheduler=_no_compute):
        clip_grads(grads, 1.0)
    want = [np.full((4, 3), 2.0), np.ones(5)]
    _book_clip(want, 1.0)
    for got, w in zip(grads, want, strict=True):
        np.testing.assert_allclose(got.compute(scheduler="sync"), w, rtol=1e-12)


TEXT = "You say goodbye and I say hello."
#: The book's chapter 2 results for TEXT (window 1).
CO = np.array(
    [
        [0, 1, 0, 0, 0, 0, 0],
        [1, 0, 1, 0, 1, 1, 0],
        [0, 1, 0, 1, 0, 0, 0],
        [0, 0, 1, 0, 1, 0, 0],
        [0, 1, 0, 1, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 1, 0],
    ]
)


def test_preprocess_gives_the_books_ids() -> None:
    corpus, word_to_id, id_to_word = preprocess(TEXT)
    np.testing.assert_array_equal(corpus, [0, 1, 2, 3, 4, 1, 5, 6])
    assert word_to_id == {"you": 0, "say": 1, "goodbye": 2, "and": 3, "i": 4, "hello": 5, ".": 6}
    assert id_to_word == {i: w for w, i in word_to_id.items()}


def test_create_co_matrix_window_1_and_2() -> None:
    corpus, _, _ = preprocess(TEXT)
    co = create_co_matrix(corpus, 7)
    assert co.dtype == np.int32
    np.testing.assert_array_equal(co, CO)
    ref = np.zeros((7, 7), dtype=np.int32)  # the book's double loop, window 2
    for idx, w in enumerate(corpus):
        for i in (1, 2):
            if idx - i >= 0:
                ref[w, corpus[idx - i]] += 1
            if idx + i < len(corpus):
                ref[w, corpus[idx + i]] += 1
    np.testing.assert_array_equal(create_co_matrix(corpus, 7, window_size=2), ref)


def test_cos_similarity_you_and_i(backend: Any) -> None:
    got = cos_similarity(backend.asarray(CO[0], "float64"), backend.asarray(CO[4], "float64"))
    assert float(backend.to_numpy(got)) == pytest.approx(0.7071067691154799, rel=1e-12)


def test_most_similar_prints_as_the_book(capsys: pytest.CaptureFixture[str]) -> None:
    _, word_to_id, id_to_word = preprocess(TEXT)
    most_similar("you", word_to_id, id_to_word, CO, top=5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["", "[query] you"]
    assert len(lines) == 7
    sims = {ln.split(": ")[0].strip(): float(ln.split(": ")[1]) for ln in lines[2:]}
    assert sims == {
        "goodbye": pytest.approx(0.7071067691154799),
        "i": pytest.approx(0.7071067691154799),
        "hello": pytest.approx(0.7071067691154799),
        "say": 0.0,
        "and": 0.0,
    }
    assert {ln.split(":")[0].strip() for ln in lines[2:5]} == {"goodbye", "i", "hello"}
    sim = np.array([CO[i] @ CO[0] / np.sqrt((CO[i] @ CO[i]) * 1.0) for i in range(7)])
    order = [int(i) for i in (-1 * sim).argsort() if i != 0][:5]  # ties: NumPy's argsort order
    assert [ln.split(":")[0].strip() for ln in lines[2:]] == [id_to_word[i] for i in order]
    most_similar("cat", word_to_id, id_to_word, CO)
    assert capsys.readouterr().out == "cat is not found\n"


def _book_analogy(a, b, c, word_to_id, id_to_word, word_matrix, top=5, answer=None):
    """The book's ``analogy`` (``common/util.py``), transcribed; its lines, printed."""
    out = ["", f"[analogy] {a}:{b} = {c}:?"]
    a_vec, b_vec, c_vec = (word_matrix[word_to_id[w]] for w in (a, b, c))
    query_vec = b_vec - a_vec + c_vec
    query_vec = query_vec / np.sqrt((query_vec * query_vec).sum())
    similarity = np.dot(word_matrix, query_vec)
    if answer is not None:
        out.append("==>" + answer + ":" + str(np.dot(word_matrix[word_to_id[answer]], query_vec)))
    for i in (-1 * similarity).argsort():
        if np.isnan(similarity[i]) or id_to_word[i] in (a, b, c):
            continue
        out.append(f" {id_to_word[i]}: {similarity[i]}")
        if len(out) - 2 - (answer is not None) >= top:
            break
    return out


def test_analogy_prints_as_the_book(backend: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, word_to_id, id_to_word = preprocess(TEXT)
    rng = np.random.default_rng(3)
    W = rng.normal(size=(7, 4))
    analogy("you", "say", "i", word_to_id, id_to_word, backend.asarray(W), top=3, answer="hello")
    lines = capsys.readouterr().out.splitlines()
    want = _book_analogy("you", "say", "i", word_to_id, id_to_word, W, top=3, answer="hello")
    assert [ln.split(":")[0] for ln in lines] == [ln.split(":")[0] for ln in want]
    got_scores = [float(ln.rsplit(":", 1)[1]) for ln in lines[2:]]
    want_scores = [float(ln.rsplit(":", 1)[1]) for ln in want[2:]]
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6)
    assert len(lines) == 2 + 1 + 3
    analogy("you", "cat", "i", word_to_id, id_to_word, W)
    assert capsys.readouterr().out == "cat is not found\n"


def test_normalize_divides_rows_in_place_on_numpy(backend: Any) -> None:
    x = np.array([[3.0, 4.0], [0.0, 2.0]])
    got = normalize(backend.asarray(x))
    np.testing.assert_allclose(backend.to_numpy(got), [[0.6, 0.8], [0.0, 1.0]])
    np.testing.assert_allclose(backend.to_numpy(normalize(backend.asarray(x[0]))), [0.6, 0.8])
    host = x.copy()
    assert normalize(host) is host  # the book divides in place and returns it
    np.testing.assert_allclose(host, [[0.6, 0.8], [0.0, 1.0]])
    with pytest.raises(LayerInputError, match=r"normalize.*'x'.*1-D or 2-D"):
        normalize(backend.asarray(np.ones((2, 2, 2))))


def test_ppmi_matches_the_books_loop(backend: Any) -> None:
    C = np.vstack([np.hstack([CO, np.zeros((7, 1), int)]), np.zeros((1, 8), int)])  # + unseen word
    ref = np.zeros(C.shape, dtype=np.float32)
    N, S = np.sum(C), np.sum(C, axis=0)
    with np.errstate(invalid="ignore"):
        for i in range(8):
            for j in range(8):
                ref[i, j] = max(0, np.log2(C[i, j] * N / (S[j] * S[i]) + 1e-8))
    got = ppmi(backend.asarray(C.astype(np.int32)))
    assert got.dtype == backend.dtype("float32")
    np.testing.assert_allclose(backend.to_numpy(got), ref, rtol=1e-6)
    assert backend.to_numpy(got)[0, 1] == pytest.approx(1.807, abs=1e-3)  # the book's print
    assert backend.to_numpy(got)[5, 6] == pytest.approx(2.807, abs=1e-3)


def test_create_contexts_target_window_1_and_2() -> None:
    corpus, _, _ = preprocess(TEXT)
    contexts, target = create_contexts_target(corpus)
    np.testing.assert_array_equal(contexts, [[0, 2], [1, 3], [2, 4], [3, 1], [4, 5], [1, 6]])
    np.testing.assert_array_equal(target, [1, 2, 3, 4, 1, 5])
    contexts, target = create_contexts_target(corpus, window_size=2)
    np.testing.assert_array_equal(
        contexts, [[0, 1, 3, 4], [1, 2, 4, 1], [2, 3, 1, 5], [3, 4, 5, 6]]
    )
    np.testing.assert_array_equal(target, [2, 3, 4, 1])
    with pytest.raises(LayerInputError, match=r"create_contexts_target.*'corpus'"):
        create_contexts_target(corpus[:2])


def test_convert_one_hot_1d_and_2d() -> None:
    hot = convert_one_hot(np.array([2, 0]), 3)
    assert hot.dtype == np.int32
    np.testing.assert_array_equal(hot, [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(
        convert_one_hot(np.array([[1], [2]]), 3), [[[0, 1, 0]], [[0, 0, 1]]]
    )
    with pytest.raises(LayerInputError, match=r"convert_one_hot.*'corpus'"):
        convert_one_hot(np.zeros((1, 1, 1), dtype=int), 3)


def test_to_gpu_moves_to_the_current_backend_and_to_cpu_back(backend: Any) -> None:
    x = to_gpu(np.arange(3.0))
    assert namespace(x) is backend.xp or backend.readonly
    back = to_cpu(x)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, [0.0, 1.0, 2.0])


class _LM:
    """A language model whose loss is fixed; it records the batches it is given."""

    def __init__(self, loss: float, flag: bool) -> None:
        self.loss, self.seen = loss, []
        if not flag:
            self.forward = self._plain  # type: ignore[method-assign]

    def forward(self, xs: Any, ts: Any, train_flg: bool = True) -> float:
        assert train_flg is False
        return self._plain(xs, ts)

    def _plain(self, xs: Any, ts: Any) -> float:
        self.seen.append((xs, ts))
        return self.loss


def _book_batches(corpus: np.ndarray, batch_size: int, time_size: int) -> list[tuple[Any, Any]]:
    size = len(corpus)
    jump = (size - 1) // batch_size
    out = []
    for iters in range((size - 1) // (batch_size * time_size)):
        xs = np.zeros((batch_size, time_size), dtype=np.int32)
        ts = np.zeros((batch_size, time_size), dtype=np.int32)
        offsets = [iters * time_size + i * jump for i in range(batch_size)]
        for t in range(time_size):
            for i, offset in enumerate(offsets):
                xs[i, t] = corpus[(offset + t) % size]
                ts[i, t] = corpus[(offset + t + 1) % size]
        out.append((xs, ts))
    return out


@pytest.mark.parametrize("flag", [True, False])
def test_eval_perplexity_batches_and_value(capsys: pytest.CaptureFixture[str], flag: bool) -> None:
    corpus = np.arange(23) % 7
    model = _LM(math.log(7.0), flag)
    assert eval_perplexity(model, corpus, batch_size=2, time_size=5) == pytest.approx(7.0)
    want = _book_batches(corpus, 2, 5)
    assert len(model.seen) == len(want) == 2
    for (xs, ts), (wx, wt) in zip(model.seen, want, strict=True):
        assert xs.dtype == np.int32
        np.testing.assert_array_equal(xs, wx)
        np.testing.assert_array_equal(ts, wt)
    assert capsys.readouterr().out == "evaluating perplexity ...\n\r0 / 2\r1 / 2\n"
    with pytest.raises(LayerInputError, match=r"eval_perplexity.*'corpus'"):
        eval_perplexity(model, corpus[:10], batch_size=2, time_size=5)


class _Seq2seq:
    def __init__(self, out: list[int]) -> None:
        self.out = out
        self.args: tuple[Any, ...] = ()

    def generate(self, xs: Any, start_id: int, sample_size: int) -> list[int]:
        self.args = (start_id, sample_size)
        return self.out


def test_eval_seq2seq_scores_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    id_to_char = {0: "_", 1: "1", 2: "2", 3: "+"}
    question = np.array([[1, 3, 2]])
    correct = np.array([[0, 3]])  # start id, then "+"
    model = _Seq2seq([3])
    assert eval_seq2seq(model, question, correct, id_to_char) == 1
    assert model.args == (0, 1)
    assert capsys.readouterr().out == ""
    assert (
        eval_seq2seq(_Seq2seq([2]), question, correct, id_to_char, verbose=True, is_reverse=True)
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["Q 2+1", "T +"]
    assert lines[2].endswith(" 2")
    assert lines[3] == "---"
