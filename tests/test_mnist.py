"""Tests for load_mnist on small IDX files written into a temporary directory."""

from __future__ import annotations

import gzip
import struct
from typing import TYPE_CHECKING

import numpy as np
import pytest

from xplayers.datasets import MNIST_DIR_ENV, MNIST_FILES, DatasetError, load_mnist
from xplayers.errors import LayerInputError, XplayersError

from .limits import run_limited

if TYPE_CHECKING:
    from pathlib import Path

TRAIN_IMG, TRAIN_LBL, TEST_IMG, TEST_LBL = MNIST_FILES


def idx_bytes(a: np.ndarray, magic: int | None = None) -> bytes:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    magic = (0x0800 | a.ndim) if magic is None else magic
    return struct.pack(f">{a.ndim + 1}I", magic, *a.shape) + a.tobytes()


def write(directory: Path, name: str, data: bytes, *, gz: bool = False) -> Path:
    path = directory / (f"{name}.gz" if gz else name)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_mnist(
    directory: Path, *, n_train: int = 12, n_test: int = 5, gz: bool = False, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_IMG: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        TRAIN_LBL: rng.integers(0, 10, n_train, dtype=np.uint8),
        TEST_IMG: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        TEST_LBL: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays[TRAIN_IMG][0, 0, 0], arrays[TRAIN_IMG][0, 0, 1] = 0, 255
    for name, a in arrays.items():
        write(directory, name, idx_bytes(a), gz=gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path: Path, gz: bool) -> None:
    raw = make_mnist(tmp_path, gz=gz)
    (x_train, t_train), (x_test, t_test) = load_mnist(tmp_path)
    assert x_train.shape == (12, 784)
    assert x_train.dtype == np.float32
    assert t_train.dtype == np.int64
    assert x_test.shape == (5, 784)
    np.testing.assert_allclose(x_train, raw[TRAIN_IMG].reshape(12, 784) / np.float32(255))
    np.testing.assert_array_equal(t_train, raw[TRAIN_LBL])
    np.testing.assert_array_equal(t_test, raw[TEST_LBL])
    assert x_train[0, 0] == 0.0
    assert x_train[0, 1] == 1.0


def test_raw_unflattened_one_hot(tmp_path: Path) -> None:
    raw = make_mnist(tmp_path)
    (x_train, t_train), (x_test, t_test) = load_mnist(
        str(tmp_path), normalize=False, flatten=False, one_hot_label=True, dtype="uint8"
    )
    assert x_train.shape == (12, 1, 28, 28)
    assert x_train.dtype == np.uint8
    np.testing.assert_array_equal(x_test[:, 0], raw[TEST_IMG])
    assert t_train.shape == (12, 10)
    np.testing.assert_array_equal(t_train.argmax(axis=1), raw[TRAIN_LBL])
    np.testing.assert_array_equal(t_test.sum(axis=1), 1)


def test_mixed_plain_and_gz_and_plain_wins(tmp_path: Path) -> None:
    raw = make_mnist(tmp_path)
    (tmp_path / TRAIN_LBL).unlink()
    write(tmp_path, TRAIN_LBL, idx_bytes(raw[TRAIN_LBL]), gz=True)
    # a damaged .gz next to a good plain file is ignored
    write(tmp_path, TEST_IMG + ".gz", b"not gzip")
    (_, t_train), (x_test, _) = load_mnist(tmp_path, normalize=False, dtype="uint8")
    np.testing.assert_array_equal(t_train, raw[TRAIN_LBL])
    np.testing.assert_array_equal(x_test.reshape(5, 28, 28), raw[TEST_IMG])


def test_other_image_sizes(tmp_path: Path) -> None:
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    lbls = np.array([3, 9], dtype=np.uint8)
    for img_name, lbl_name in ((TRAIN_IMG, TRAIN_LBL), (TEST_IMG, TEST_LBL)):
        write(tmp_path, img_name, idx_bytes(imgs))
        write(tmp_path, lbl_name, idx_bytes(lbls))
    (x, _), _ = load_mnist(tmp_path, flatten=False, normalize=False, dtype="int32")
    assert x.shape == (2, 1, 3, 4)
    np.testing.assert_array_equal(x[:, 0], imgs)


def test_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = make_mnist(tmp_path)
    monkeypatch.setenv(MNIST_DIR_ENV, str(tmp_path))
    (_, t_train), _ = load_mnist()
    np.testing.assert_array_equal(t_train, raw[TRAIN_LBL])


def test_environment_variable_names_missing_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MNIST_DIR_ENV, str(tmp_path / "gone"))
    with pytest.raises(DatasetError, match=r"gone \(from XPLAYERS_MNIST_DIR\) does not exist"):
        load_mnist()


def test_no_path_and_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MNIST_DIR_ENV, raising=False)
    with pytest.raises(DatasetError, match=r"no directory given; pass path= or set XPLAYERS_MNIST"):
        load_mnist()
    monkeypatch.setenv(MNIST_DIR_ENV, "")
    with pytest.raises(DatasetError, match="no directory given"):
        load_mnist()


def test_directory_missing_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"directory .*nope does not exist"):
        load_mnist(tmp_path / "nope")
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"directory .*f is not a directory"):
        load_mnist(tmp_path / "f")


def test_missing_files_message(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    (tmp_path / TEST_LBL).unlink()
    (tmp_path / TRAIN_IMG).unlink()
    with pytest.raises(DatasetError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert f"missing {TRAIN_IMG}[.gz], {TEST_LBL}[.gz]" in msg
    assert str(tmp_path) in msg
    for name in MNIST_FILES:
        assert name in msg
    assert "yann.lecun.com/exdb/mnist" in msg
    assert "nothing is downloaded" in msg


def test_empty_directory_lists_all(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"missing " + r", ".join(f"{n}\\[\\.gz\\]" for n in MNIST_FILES)
    ):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_bad_magic(tmp_path: Path, gz: bool) -> None:
    raw = make_mnist(tmp_path, gz=gz)
    path = write(tmp_path, TRAIN_IMG, idx_bytes(raw[TRAIN_IMG], magic=0x0801_0803), gz=gz)
    with pytest.raises(
        DatasetError,
        match=r"magic number 0x08010803, expected 0x00000803 "
        r"\(IDX image file",
    ):
        load_mnist(tmp_path)
    path.unlink()
    # labels written where images are expected: wrong magic
    write(tmp_path, TRAIN_IMG, idx_bytes(raw[TRAIN_LBL]), gz=gz)
    with pytest.raises(
        DatasetError,
        match=rf"{TRAIN_IMG}.* magic number 0x00000801, expected "
        "0x00000803",
    ):
        load_mnist(tmp_path)


def test_label_file_with_image_magic(tmp_path: Path) -> None:
    raw = make_mnist(tmp_path)
    write(tmp_path, TEST_LBL, idx_bytes(raw[TEST_IMG]))
    with pytest.raises(
        DatasetError,
        match=rf"{TEST_LBL} has magic number 0x00000803, expected "
        r"0x00000801 \(IDX label file",
    ):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file(tmp_path: Path, gz: bool) -> None:
    raw = make_mnist(tmp_path, gz=gz)
    write(tmp_path, TRAIN_IMG, idx_bytes(raw[TRAIN_IMG])[:-1], gz=gz)
    with pytest.raises(
        DatasetError,
        match=rf"{TRAIN_IMG}.* has 9423 bytes .*implies 9424: "
        "truncated",
    ):
        load_mnist(tmp_path)


def test_truncated_header(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    write(tmp_path, TEST_LBL, b"\x00\x00\x08")
    with pytest.raises(
        DatasetError,
        match=rf"{TEST_LBL} is truncated: file has 3 bytes, "
        "shorter than the 8-byte IDX header",
    ):
        load_mnist(tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes(tmp_path: Path, gz: bool) -> None:
    raw = make_mnist(tmp_path, gz=gz)
    write(tmp_path, TEST_LBL, idx_bytes(raw[TEST_LBL]) + b"\x00\x01", gz=gz)
    # a compressed file is inflated one byte past its declared size, no further
    got = "more than 13 bytes" if gz else "15 bytes"
    trailing = "trailing bytes" if gz else "2 trailing bytes"
    with pytest.raises(DatasetError, match=rf"{TEST_LBL}.* has {got} .*implies 13: {trailing}"):
        load_mnist(tmp_path)


_LOAD = """
from xplayers.datasets import DatasetError, load_mnist
try:
    load_mnist(sys.argv[1])
except DatasetError as exc:
    print("refused:", exc)
"""


def test_gzip_bomb_is_refused_within_memory_and_time(tmp_path: Path) -> None:
    """A 3 MB .gz declaring 20 images but inflating to 3 GiB is refused after 15,697 bytes."""
    raw = make_mnist(tmp_path, n_test=20, gz=True)
    zeros = gzip.compress(bytes(2**20), compresslevel=9)  # about 1 KiB for 1 MiB
    bomb = gzip.compress(idx_bytes(raw[TEST_IMG])) + zeros * 3072  # concatenated members
    (tmp_path / f"{TEST_IMG}.gz").write_bytes(bomb)
    assert len(bomb) < 4 * 2**20
    done = run_limited(_LOAD, str(tmp_path), memory_mib=512, cpu_s=10)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout
    assert "more than 15696 bytes (decompressed file)" in done.stdout
    assert "trailing bytes" in done.stdout


def test_plain_file_declaring_more_than_it_holds_is_not_read(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    huge = struct.pack(">4I", 0x0803, 2**31, 28, 28)  # declares 1.6 TB of images
    (tmp_path / TEST_IMG).write_bytes(huge + bytes(100))
    done = run_limited(_LOAD, str(tmp_path), memory_mib=512, cpu_s=10)
    assert done.returncode == 0, done.stderr
    assert "has 116 bytes (file)" in done.stdout
    assert "truncated" in done.stdout


def test_damaged_gzip(tmp_path: Path) -> None:
    make_mnist(tmp_path, gz=True)
    path = tmp_path / f"{TRAIN_LBL}.gz"
    path.write_bytes(path.read_bytes()[:-6])
    with pytest.raises(DatasetError, match=rf"cannot read .*{TRAIN_LBL}\.gz"):
        load_mnist(tmp_path)
    path.write_bytes(b"plain bytes")
    with pytest.raises(DatasetError, match=rf"cannot read .*{TRAIN_LBL}\.gz"):
        load_mnist(tmp_path)


def test_label_out_of_range(tmp_path: Path) -> None:
    raw = make_mnist(tmp_path)
    labels = raw[TEST_LBL].copy()
    labels[3] = 10
    write(tmp_path, TEST_LBL, idx_bytes(labels))
    with pytest.raises(
        DatasetError,
        match=rf"{TEST_LBL} has label 10 at index 3, "
        r"expected 0\.\.9",
    ):
        load_mnist(tmp_path)


def test_count_mismatch(tmp_path: Path) -> None:
    raw = make_mnist(tmp_path)
    write(tmp_path, TRAIN_LBL, idx_bytes(raw[TRAIN_LBL][:-1]))
    with pytest.raises(
        DatasetError,
        match=rf"{TRAIN_IMG} holds 12 images but .*{TRAIN_LBL} "
        "holds 11 labels",
    ):
        load_mnist(tmp_path)


def test_image_size_mismatch_and_empty_images(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    write(tmp_path, TEST_IMG, idx_bytes(np.zeros((5, 27, 28))))
    with pytest.raises(
        DatasetError,
        match=r"training images are \(28, 28\) but test images "
        r"are \(27, 28\)",
    ):
        load_mnist(tmp_path)
    write(tmp_path, TEST_IMG, idx_bytes(np.zeros((5, 0, 28))))
    with pytest.raises(DatasetError, match=r"declares empty 0x28 images"):
        load_mnist(tmp_path)


def test_dtype_checked_before_reading(tmp_path: Path) -> None:
    with pytest.raises(
        LayerInputError,
        match=r"load_mnist: argument 'dtype': expected a floating dtype when normalize=True",
    ):
        load_mnist(tmp_path / "nope", dtype="uint8")


def test_errors_are_value_and_xplayers_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="load_mnist"):
        load_mnist(tmp_path)
    with pytest.raises(XplayersError, match="load_mnist"):
        load_mnist(tmp_path)


def test_dotted_file_names(tmp_path: Path) -> None:
    """Copies such as Kaggle's spell the files train-images.idx3-ubyte."""
    raw = make_mnist(tmp_path)
    for name in MNIST_FILES:
        (tmp_path / name).rename(tmp_path / name.replace("-idx", ".idx"))
    (x_train, t_train), _ = load_mnist(tmp_path)
    np.testing.assert_array_equal(t_train, raw[TRAIN_LBL])
    assert x_train.shape == (12, 784)


def test_files_declaring_no_images_are_refused(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    write(tmp_path, TEST_IMG, idx_bytes(np.zeros((0, 28, 28))))
    write(tmp_path, TEST_LBL, idx_bytes(np.zeros(0)))
    with pytest.raises(DatasetError, match=rf"{TEST_IMG} declares 0 images"):
        load_mnist(tmp_path)
