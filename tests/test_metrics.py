"""Top-k accuracy, the confusion matrix and chance accuracy, against NumPy oracles."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from xplayers import metrics
from xplayers.errors import LayerInputError
from xplayers.metrics import chance_accuracy, confusion_matrix, count, top_k_accuracy


def oracle_top_k(scores: np.ndarray, t: np.ndarray, k: int) -> float:
    """Top-k by a stable sort: of equal scores the smaller class ranks first (as argmax)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return float(np.mean([t[i] in order[i, :k] for i in range(len(t))]))


def oracle_confusion(scores: np.ndarray, t: np.ndarray) -> np.ndarray:
    c = scores.shape[1]
    out = np.zeros((c, c), dtype=np.int64)
    for true, said in zip(t, np.argmax(scores, axis=1), strict=True):
        out[true, said] += 1
    return out


def _data(rng: np.random.Generator, n: int = 40, c: int = 5) -> tuple[np.ndarray, np.ndarray]:
    # a few equal scores per row, so ties are exercised
    scores = rng.integers(0, 4, size=(n, c)).astype(np.float32)
    return scores, rng.integers(0, c, size=n)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_accuracy_matches_a_stable_sort(backend, rng, k):
    scores, t = _data(rng)
    got = top_k_accuracy(backend.asarray(scores), backend.asarray(t), k=k)
    assert got == pytest.approx(oracle_top_k(scores, t, k), abs=0)
    assert isinstance(got, float)


def test_top_1_is_the_network_accuracy(backend, rng):
    net = xpl.TwoLayerNet(6, 5, 4, weight_init_std=1.0, seed=0)
    x = backend.asarray(rng.normal(size=(30, 6)))
    t = backend.asarray(rng.integers(0, 4, size=30))
    assert top_k_accuracy(net.predict(x), t, k=1) == net.accuracy(x, t)
    assert top_k_accuracy(net.predict(x), t, k=4) == 1.0


def test_one_hot_targets_count_as_their_labels(backend, rng):
    scores, t = _data(rng)
    one_hot = np.eye(scores.shape[1], dtype=np.float32)[t]
    s = backend.asarray(scores)
    assert top_k_accuracy(s, backend.asarray(one_hot), 2) == top_k_accuracy(
        s, backend.asarray(t), 2
    )
    np.testing.assert_array_equal(
        confusion_matrix(s, backend.asarray(one_hot)), oracle_confusion(scores, t)
    )


def test_confusion_matrix_matches_counting_by_hand(backend, rng):
    scores, t = _data(rng, n=57, c=4)
    got = confusion_matrix(backend.asarray(scores), backend.asarray(t))
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, oracle_confusion(scores, t))
    assert got.sum() == 57


def test_counts_add_on_the_backend_and_read_once(backend, rng):
    scores, t = _data(rng, n=30)
    total = None
    for i in range(0, 30, 7):  # chunks, as evaluate reads them
        part = count(
            "test",
            backend.asarray(scores[i : i + 7]),
            backend.asarray(t[i : i + 7]),
            top_k=2,
            confusion=True,
        )
        assert not isinstance(part.hits, (int, float, np.ndarray)) or backend.name == "numpy"
        total = part if total is None else total + part
    assert total is not None
    result = total.read("test")
    assert result["top_k_accuracy"] == oracle_top_k(scores, t, 2)
    np.testing.assert_array_equal(result["confusion_matrix"], oracle_confusion(scores, t))


@pytest.mark.parametrize("bad", [-1, 5])
def test_labels_outside_the_classes_are_refused(backend, rng, bad):
    scores, t = _data(rng, c=5)
    t[3] = bad
    s, tb = backend.asarray(scores), backend.asarray(t)
    with pytest.raises(LayerInputError, match=r"top_k_accuracy: argument 't'.*1 label outside"):
        top_k_accuracy(s, tb, 2)
    with pytest.raises(LayerInputError, match=r"confusion_matrix: argument 't'"):
        confusion_matrix(s, tb)


def test_bad_targets_scores_and_k_are_refused(backend, rng):
    scores, t = _data(rng)
    s = backend.asarray(scores)
    with pytest.raises(LayerInputError, match=r"top_k_accuracy: argument 't': expected integer"):
        top_k_accuracy(s, backend.asarray(t[:-1]), 1)
    with pytest.raises(LayerInputError, match=r"confusion_matrix: argument 't': expected integer"):
        confusion_matrix(s, backend.asarray(t.astype(np.float32)))
    with pytest.raises(LayerInputError, match=r"argument 'k': expected an integer >= 1"):
        top_k_accuracy(s, backend.asarray(t), 0)
    with pytest.raises(LayerInputError, match=r"argument 'scores': expected a non-empty array"):
        top_k_accuracy(s[0, ...], backend.asarray(t), 1)
    with pytest.raises(LayerInputError, match=r"argument 'scores'"):
        confusion_matrix([[1.0, 2.0]], [1])


def test_targets_on_another_backend_are_refused(rng):
    ok, why = xpl.backend_status("array_api_strict")
    if not ok:
        pytest.skip(why)
    scores, t = _data(rng)
    with xpl.use_backend("array_api_strict"):
        other = xpl.asarray(t)
    with pytest.raises(LayerInputError, match=r"argument 't'"):
        top_k_accuracy(xpl.asarray(scores), other, 1)


def test_chance_accuracy_is_the_most_common_class():
    assert chance_accuracy([0, 1, 1, 2]) == 0.5
    assert chance_accuracy(np.eye(3)[[0, 0, 0, 2]]) == 0.75
    assert chance_accuracy(np.arange(10)) == 0.1
    with pytest.raises(LayerInputError, match=r"chance_accuracy: argument 't'"):
        chance_accuracy(np.zeros(0, dtype=int))
    with pytest.raises(LayerInputError, match=r"chance_accuracy: argument 't'"):
        chance_accuracy([0.5, 1.0])


# --------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, t = xpl.datasets.load_digits(dtype="float64")
    return x[:230], t[:230]


def test_evaluate_reports_top_k_and_the_confusion_matrix(backend, digits):
    x, t = digits
    net = xpl.TwoLayerNet(64, 12, 10, weight_init_std=0.1, seed=0)
    result = xpl.evaluate(net, x, t, batch_size=33, top_k=3, confusion=True)
    scores = np.asarray(xpl.to_numpy(net.predict(backend.asarray(x))))
    assert result["top_k"] == 3
    assert result["top_k_accuracy"] == pytest.approx(oracle_top_k(scores, t, 3), abs=1e-12)
    np.testing.assert_array_equal(result["confusion_matrix"], oracle_confusion(scores, t))
    assert np.trace(result["confusion_matrix"]) / 230 == pytest.approx(result["accuracy"])
    plain = xpl.evaluate(net, x, t, batch_size=33)
    assert set(plain) == {"loss", "accuracy", "samples"}
    assert plain["loss"] == result["loss"]


def test_evaluate_reads_the_counts_back_once_not_per_chunk(monkeypatch, digits):
    reads = []
    real = metrics.to_numpy
    monkeypatch.setattr(metrics, "to_numpy", lambda a: reads.append(1) or real(a))
    x, t = digits
    net = xpl.TwoLayerNet(64, 12, 10, seed=0)
    xpl.evaluate(net, x, t, batch_size=10, top_k=2, confusion=True)  # 23 chunks
    assert len(reads) == 3  # the out-of-range count, the hits, the matrix


def test_evaluate_refuses_a_bad_top_k_and_labels_outside_the_classes(digits):
    x, t = digits
    net = xpl.TwoLayerNet(64, 12, 10, seed=0)
    with pytest.raises(LayerInputError, match=r"evaluate: argument 'top_k'"):
        xpl.evaluate(net, x, t, top_k=0)
    bad = t.copy()
    bad[7] = 10
    with pytest.raises(LayerInputError, match=r"argument 't': expected labels"):
        xpl.evaluate(net, x, bad, confusion=True)
    with pytest.raises(LayerInputError, match=r"evaluate: argument 't'.*1 label outside"):
        metrics.count("evaluate", net.predict(x), bad, confusion=True).read("evaluate")
