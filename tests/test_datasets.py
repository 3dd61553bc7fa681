"""Tests for the shipped digits data set, train_test_split and the batch iterators."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from importlib import resources

import array_api_strict
import numpy as np
import pytest

import xplayers
from xplayers.datasets import (
    DIGITS_SHA256,
    BatchLoader,
    DatasetError,
    iterate_batches,
    load_digits,
    train_test_split,
)
from xplayers.datasets import digits as digits_mod
from xplayers.errors import LayerInputError, XplayersError

# --------------------------------------------------------------------------- digits


def test_digits_file_checksum_matches_constant() -> None:
    blob = (resources.files("xplayers.datasets") / "data" / "digits.npz").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == DIGITS_SHA256


def test_digits_file_needs_no_pickle() -> None:
    path = resources.files("xplayers.datasets") / "data" / "digits.npz"
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["images", "labels"]
        assert npz["images"].dtype == np.uint8
        assert npz["images"].shape == (1797, 64)
        assert npz["labels"].dtype == np.uint8
        assert npz["labels"].shape == (1797,)


def test_digits_license_file_credits_source() -> None:
    text = (resources.files("xplayers.datasets") / "data" / "LICENSE-digits.txt").read_text()
    for needle in (
        "Alpaydin",
        "Kaynak",
        "UCI",
        "10.24432/C50P49",
        "CC BY 4.0",
        "https://creativecommons.org/licenses/by/4.0/",
    ):
        assert needle in text


def test_load_digits_defaults() -> None:
    x, t = load_digits()
    assert x.shape == (1797, 64)
    assert x.dtype == np.float32
    assert t.shape == (1797,)
    assert t.dtype == np.int64
    assert x.min() == 0.0
    assert x.max() == 1.0
    assert np.bincount(t).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert t[:10].tolist() == list(range(10))


def test_load_digits_raw_values_and_normalization_agree() -> None:
    raw, t_raw = load_digits(normalize=False, dtype="uint8")
    assert raw.dtype == np.uint8
    assert raw.max() == 16
    x, t = load_digits(dtype="float64")
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x * 16, raw)
    np.testing.assert_array_equal(t, t_raw)
    # first image of the UCI optdigits test file, row by row
    assert raw[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_load_digits_unflattened_and_one_hot() -> None:
    x, t = load_digits(flatten=False, one_hot_label=True)
    x_flat, labels = load_digits()
    assert x.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(x.reshape(1797, 64), x_flat)
    assert t.shape == (1797, 10)
    assert t.dtype == np.float32
    np.testing.assert_array_equal(t.sum(axis=1), 1)
    np.testing.assert_array_equal(t.argmax(axis=1), labels)


def test_load_digits_returns_fresh_arrays() -> None:
    x, _ = load_digits()
    x[:] = -1
    assert load_digits()[0].min() == 0.0


@pytest.mark.parametrize("dtype", ["int32", "uint8"])
def test_load_digits_normalize_needs_float(dtype: str) -> None:
    with pytest.raises(
        LayerInputError,
        match=rf"load_digits: argument 'dtype': expected a floating dtype when normalize=True; "
        rf"got '{dtype}'\. Pass normalize=False",
    ):
        load_digits(dtype=dtype)


@pytest.mark.parametrize("dtype", ["complex64", "bool", "U3", object, 3.5])
def test_load_digits_rejects_non_numeric_dtype(dtype: object) -> None:
    with pytest.raises(
        LayerInputError,
        match=r"load_digits: argument 'dtype': expected a real numeric NumPy dtype",
    ):
        load_digits(dtype=dtype, normalize=False)  # type: ignore[arg-type]


def test_load_digits_detects_damaged_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digits_mod, "DIGITS_SHA256", "0" * 64)
    with pytest.raises(DatasetError, match=r"digits\.npz is damaged: SHA-256 is [0-9a-f]{64}"):
        load_digits()


def test_dataset_error_is_value_error_and_xplayers_error() -> None:
    assert issubclass(DatasetError, ValueError)
    assert issubclass(DatasetError, XplayersError)


# ---------------------------------------------------------------- train_test_split


def _data(n: int = 100, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    t = np.arange(n) % classes
    return x, t


def test_split_is_deterministic_and_disjoint() -> None:
    x, t = _data()
    (a_x, a_t), (b_x, b_t) = train_test_split(x, t, test_size=0.25, seed=3)
    (c_x, _), (_, d_t) = train_test_split(x, t, test_size=0.25, seed=3)
    np.testing.assert_array_equal(a_x, c_x)
    np.testing.assert_array_equal(b_t, d_t)
    assert a_x.shape == (75, 3)
    assert b_x.shape == (25, 3)
    ids_train, ids_test = set(a_x[:, 0].tolist()), set(b_x[:, 0].tolist())
    assert not ids_train & ids_test
    assert ids_train | ids_test == set(x[:, 0].tolist())
    # rows keep their label
    np.testing.assert_array_equal(a_t, (a_x[:, 0] // 3).astype(int) % 4)
    np.testing.assert_array_equal(b_t, (b_x[:, 0] // 3).astype(int) % 4)


def test_split_depends_on_seed_and_shuffles() -> None:
    x, t = _data()
    (a_x, _), _ = train_test_split(x, t, seed=0)
    (b_x, _), _ = train_test_split(x, t, seed=1)
    assert not np.array_equal(a_x, b_x)
    assert not np.array_equal(np.sort(a_x[:, 0]), a_x[:, 0])


def test_split_default_matches_rounding() -> None:
    x, t = _data(n=11)
    (a_x, _), (b_x, _) = train_test_split(x, t)
    assert (a_x.shape[0], b_x.shape[0]) == (9, 2)


def test_split_accepts_generator_seed() -> None:
    x, t = _data()
    r1 = train_test_split(x, t, seed=np.random.default_rng(5))
    r2 = train_test_split(x, t, seed=5)
    np.testing.assert_array_equal(r1[1][0], r2[1][0])


@pytest.mark.parametrize("one_hot", [False, True])
def test_split_stratified_keeps_class_shares(one_hot: bool) -> None:
    x, labels = load_digits()
    t = np.eye(10, dtype=np.float32)[labels] if one_hot else labels
    (_, t_train), (_, t_test) = train_test_split(x, t, test_size=0.2, seed=0, stratify=True)
    counts = np.bincount(labels)
    test_labels = t_test.argmax(axis=1) if one_hot else t_test
    train_labels = t_train.argmax(axis=1) if one_hot else t_train
    expected = [round(0.2 * c) for c in counts]
    assert np.bincount(test_labels, minlength=10).tolist() == expected
    assert (np.bincount(train_labels, minlength=10) + expected).tolist() == counts.tolist()


def test_split_stratified_is_deterministic_and_mixed() -> None:
    x, t = _data(n=40, classes=2)
    a = train_test_split(x, t, seed=7, stratify=True)
    b = train_test_split(x, t, seed=7, stratify=True)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[1][1], b[1][1])
    assert len(set(a[1][1][:4].tolist())) > 1 or len(set(a[1][1].tolist())) == 2


def test_split_works_on_lists() -> None:
    (xa, _), (xb, _) = train_test_split([[1], [2], [3], [4]], [0, 1, 0, 1], test_size=0.5)
    assert isinstance(xa, np.ndarray)
    assert sorted(xa[:, 0].tolist() + xb[:, 0].tolist()) == [1, 2, 3, 4]


@pytest.mark.parametrize("size", [0.0, 1.0, -0.1, 1.5, True, "0.2", None])
def test_split_rejects_bad_test_size(size: object) -> None:
    x, t = _data()
    with pytest.raises(
        LayerInputError,
        match=r"train_test_split: argument 'test_size': expected a number in \(0, 1\); got ",
    ):
        train_test_split(x, t, test_size=size)  # type: ignore[arg-type]


def test_split_rejects_mismatched_lengths() -> None:
    x, t = _data()
    with pytest.raises(
        LayerInputError,
        match=r"train_test_split: argument 't': expected 100 samples along axis 0, as many as x; "
        r"got 99",
    ):
        train_test_split(x, t[:-1])


def test_split_rejects_empty_part() -> None:
    x, t = _data(n=3)
    with pytest.raises(
        LayerInputError, match=r"argument 'test_size'.*got 0\.1 \(3 training, 0 test"
    ):
        train_test_split(x, t, test_size=0.1)


def test_split_rejects_scalars_and_bad_label_shape() -> None:
    x, t = _data()
    with pytest.raises(
        LayerInputError,
        match=r"train_test_split: argument 'x': expected an array with samples along axis 0; "
        r"got a 0-d array",
    ):
        train_test_split(np.float32(1), t)
    with pytest.raises(
        LayerInputError, match=r"argument 't': expected labels \(N,\) or \(N, 1\), or one-hot"
    ):
        train_test_split(x, t.reshape(100, 1, 1), stratify=True)


def test_split_errors_are_value_and_xplayers_errors() -> None:
    with pytest.raises(ValueError, match="test_size"):
        train_test_split([1, 2], [1, 2], test_size=2.0)
    with pytest.raises(XplayersError, match="test_size"):
        train_test_split([1, 2], [1, 2], test_size=2.0)


# ------------------------------------------------------------------------- batches


def _ids(batches: list[tuple[object, object]]) -> list[int]:
    return [int(v) for _, tb in batches for v in xplayers.to_numpy(tb)]


def test_loader_covers_every_sample_once_per_epoch() -> None:
    x, t = _data(n=23)
    t = np.arange(23)
    loader = BatchLoader(x, t, batch_size=5, seed=0)
    assert len(loader) == 5
    epochs = [list(loader) for _ in range(3)]
    for batches in epochs:
        assert [int(tb.shape[0]) for _, tb in batches] == [5, 5, 5, 5, 3]
        assert sorted(_ids(batches)) == list(range(23))
    orders = [_ids(b) for b in epochs]
    assert orders[0] != orders[1]
    assert orders[1] != orders[2]


def test_loader_batches_keep_rows_together() -> None:
    x, _ = _data(n=17)
    t = np.arange(17)
    for xb, tb in BatchLoader(x, t, batch_size=4, seed=1):
        np.testing.assert_array_equal(xplayers.to_numpy(xb)[:, 0], xplayers.to_numpy(tb) * 3)


def test_loader_same_seed_same_epochs() -> None:
    x, t = _data(n=30)
    t = np.arange(30)
    a, b = BatchLoader(x, t, 4, seed=9), BatchLoader(x, t, 4, seed=9)
    assert [_ids(list(a)) for _ in range(3)] == [_ids(list(b)) for _ in range(3)]
    assert _ids(list(BatchLoader(x, t, 4, seed=10))) != _ids(list(BatchLoader(x, t, 4, seed=9)))


def test_loader_permutation_drawn_at_iter() -> None:
    x, t = np.zeros((10, 1)), np.arange(10)
    a, b = BatchLoader(x, t, 3, seed=2), BatchLoader(x, t, 3, seed=2)
    iter(a)  # an epoch started but not consumed still advances the generator
    iter(b)
    assert _ids(list(a)) == _ids(list(b))


def test_loader_without_shuffle_and_drop_last() -> None:
    x, t = np.zeros((10, 2)), np.arange(10)
    loader = BatchLoader(x, t, 4, shuffle=False, drop_last=True)
    assert len(loader) == 2
    assert [_ids([b]) for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(BatchLoader(x, t, 20, drop_last=True)) == 0
    assert list(BatchLoader(x, t, 20, drop_last=True)) == []
    assert len(BatchLoader(x, t, 20)) == 1
    assert "batch_size=4" in repr(loader)


def test_loader_batches_are_copies() -> None:
    x, t = np.zeros((4, 2)), np.arange(4)
    for xb, _ in BatchLoader(x, t, 2, shuffle=False):
        xb[...] = 7  # numpy backend: writable copies, the host data is unchanged
    assert x.sum() == 0


def test_iterate_batches_one_epoch() -> None:
    x, t = np.zeros((9, 2)), np.arange(9)
    batches = list(iterate_batches(x, t, 4, seed=0))
    assert [int(tb.shape[0]) for _, tb in batches] == [4, 4, 1]
    assert sorted(_ids(batches)) == list(range(9))
    assert _ids(batches) == _ids(list(iterate_batches(x, t, 4, seed=0)))
    assert _ids(list(iterate_batches(x, t, 4, shuffle=False, drop_last=True))) == list(range(8))


@pytest.mark.parametrize("factory", [BatchLoader, iterate_batches])
@pytest.mark.parametrize("size", [0, -1, 2.0, True, None, "4"])
def test_batch_size_errors(factory: Callable[..., object], size: object) -> None:
    name = factory.__name__
    x, t = np.zeros((5, 2)), np.arange(5)
    with pytest.raises(
        LayerInputError,
        match=rf"^{name}: argument 'batch_size': expected an integer >= 1; "
        rf"got {re.escape(repr(size))}$",
    ):
        factory(x, t, size)


@pytest.mark.parametrize("factory", [BatchLoader, iterate_batches])
def test_batch_length_mismatch_and_numpy_integer(factory: Callable[..., object]) -> None:
    name = factory.__name__
    x, t = np.zeros((5, 2)), np.arange(5)
    with pytest.raises(
        LayerInputError,
        match=rf"^{name}: argument 't': expected 5 samples along axis 0, as many as x; got 4$",
    ):
        factory(x, t[:4], 2)
    assert len(list(factory(x, t, np.int64(2)))) == 3  # type: ignore[call-overload]


def test_batches_reject_unreadable_data() -> None:
    class Opaque:
        def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
            raise TypeError("device array")

    with pytest.raises(
        LayerInputError,
        match=r"BatchLoader: argument 'x': expected a host \(NumPy\) array; got Opaque\. "
        r"Convert it with xplayers\.to_numpy",
    ):
        BatchLoader(Opaque(), np.arange(3), 1)


# --------------------------------------------------------- batches on the backend


def test_batches_land_on_current_backend() -> None:
    x, t = load_digits()
    loader = BatchLoader(x[:50], t[:50], 16, seed=0)
    with xplayers.use_backend("array_api_strict") as backend:
        batches = list(loader)
    assert len(batches) == 4
    for xb, tb in batches:
        assert xplayers.namespace(xb) is array_api_strict
        assert xplayers.namespace(tb) is array_api_strict
        assert xb.device == backend.device
        assert xb.dtype == array_api_strict.float32
        assert tb.dtype == array_api_strict.int64
        assert xb.dtype == array_api_strict.float32
        assert tb.dtype == array_api_strict.int64
    got = np.concatenate([xplayers.to_numpy(xb) for xb, _ in batches])
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, x[:50].tolist()))


def test_batches_move_when_consumed() -> None:
    x, t = np.zeros((4, 2), dtype=np.float32), np.arange(4)
    it = iterate_batches(x, t, 2)
    with xplayers.use_backend("array_api_strict"):
        xb, _ = next(it)
    assert xplayers.namespace(xb) is array_api_strict
    assert xplayers.namespace(next(it)[0]) is xplayers.get_backend().xp
