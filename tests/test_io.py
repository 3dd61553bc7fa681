"""Saving and loading networks: round trips, damaged files, and crash safety."""

from __future__ import annotations

import contextlib
import io as stdio
import json
import os
import pickle
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import _files, io
from xplayers.errors import LayerInputError
from xplayers.io import METADATA_KEY, ModelFileError
from xplayers.network import MultiLayerNet, TwoLayerNet

from .limits import reaped, run_limited


def _host(net: Any) -> dict[str, np.ndarray]:
    return {k: np.asarray(xpl.to_numpy(v)) for k, v in net.params.items()}


def _same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for k, value in a.items():
        assert value.dtype == b[k].dtype, k
        assert value.shape == b[k].shape, k
        assert value.tobytes() == b[k].tobytes(), k


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Any]:
    with xpl.use_backend("numpy"):
        net = MultiLayerNet(6, [5, 4], 3, seed=0)
        path = tmp_path / "net.npz"
        io.save(net, path)
    return path, net


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_on_each_backend(backend: Any, xp: Any, tmp_path: Path, dtype: str) -> None:
    net = MultiLayerNet(6, [5], 3, activation="sigmoid", seed=1, dtype=dtype)
    path = io.save(net, tmp_path / "net.npz", metadata={"epochs": 3, "note": "ünïcode"})
    again = io.load(path)
    assert type(again) is MultiLayerNet
    assert again.config() == net.config()
    _same_bits(_host(again), _host(net))
    for value in again.params.values():
        assert xpl.namespace(value) is xp
    x = backend.asarray(np.random.default_rng(0).normal(size=(4, 6)), dtype=dtype)
    np.testing.assert_array_equal(
        backend.to_numpy(again.predict(x)), backend.to_numpy(net.predict(x))
    )
    header = io.read_metadata(path)
    assert header["metadata"] == {"epochs": 3, "note": "ünïcode"}
    assert header["format"] == io.FORMAT
    assert header["format_version"] == 1  # no training state: readable by every xplayers
    assert header["xplayers_version"] == xpl.__version__
    assert header["params"][0] == {"name": "W1", "shape": [6, 5], "dtype": dtype}


@pytest.mark.parametrize("source", ["torch", "array_api_strict", "jax"])
def test_cross_backend_bit_for_bit(tmp_path: Path, source: str) -> None:
    ok, why = xpl.backend_status(source)
    if not ok:
        pytest.skip(why)
    if source == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    with xpl.use_backend(source):
        net = TwoLayerNet(7, 6, 4, weight_init_std=0.3, seed=3)
        # make the parameters differ from a fresh init, on the source backend
        for k, v in list(net.params.items()):
            net.params[k] = v * 1.000001 + 1e-7
        saved = _host(net)
        path = io.save(net, tmp_path / f"{source}.npz")
    with xpl.use_backend("numpy"):
        loaded = io.load(path)
    assert all(isinstance(v, np.ndarray) for v in loaded.params.values())
    _same_bits(_host(loaded), saved)
    back = io.load(path, backend=source)
    _same_bits(_host(back), saved)
    assert xpl.get_backend().name == "numpy"


def test_load_on_other_backend_argument(saved: tuple[Path, Any]) -> None:
    path, net = saved
    strict = io.load(path, backend="array_api_strict", device="device1")
    assert str(strict.params["W1"].device) == str(
        xpl.to_backend(np.zeros(1), "array_api_strict", "device1").device
    )
    _same_bits(_host(strict), _host(net))


def test_compressed_round_trip(tmp_path: Path) -> None:
    net = TwoLayerNet(5, 4, 3, seed=0)
    path = io.save(net, tmp_path / "c.npz", compress=True)
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())
    _same_bits(_host(io.load(path)), _host(net))


def test_save_replaces_and_keeps_umask_permissions(tmp_path: Path) -> None:
    path = tmp_path / "net.npz"
    io.save(TwoLayerNet(3, 3, 2, seed=0), path)
    io.save(TwoLayerNet(3, 3, 2, seed=1), path)
    _same_bits(_host(io.load(path)), _host(TwoLayerNet(3, 3, 2, seed=1)))
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_rejects_bad_metadata_before_writing(saved: tuple[Path, Any]) -> None:
    path, net = saved
    before = path.read_bytes()
    with pytest.raises(LayerInputError, match="JSON"):
        io.save(net, path, metadata={"bad": object()})
    with pytest.raises(LayerInputError, match="JSON"):
        io.save(net, path, metadata={"nan": float("nan")})
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["net.npz"]


def test_failed_write_leaves_previous_file_and_no_temp(
    saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = saved
    before = path.read_bytes()

    def broken_write(file: Any, arrays: Any, *, compress: bool) -> None:
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io, "_write_archive", broken_write)
    with pytest.raises(OSError, match="No space"):
        io.save(TwoLayerNet(3, 3, 2, seed=5), path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["net.npz"]


def test_save_to_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        io.save(TwoLayerNet(3, 3, 2, seed=0), tmp_path / "nope" / "net.npz")


# --------------------------------------------------------------------------- damaged files


def _rewrite(
    src: Path,
    dst: Path,
    change: Callable[[dict[str, Any], dict[str, Any]], None],
    *,
    allow_pickle: bool = False,
) -> Path:
    """Copy model `src` to `dst` after ``change(arrays, header)`` edits it in place."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop(METADATA_KEY).tobytes())
    change(arrays, header)
    blob = json.dumps(header).encode()
    np.savez(
        dst, **{METADATA_KEY: np.frombuffer(blob, np.uint8)}, **arrays, allow_pickle=allow_pickle
    )
    return dst


_pickle_calls: list[str] = []


def _record_unpickle(tag: str) -> str:
    _pickle_calls.append(tag)
    return tag


class _Trap:
    """Unpickling this object calls _record_unpickle: any call proves pickle ran."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _record_unpickle, ("unpickled!",)


def _set(key: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def change(arrays: dict[str, Any], header: dict[str, Any]) -> None:
        header[key] = value

    return change


def _edit_param(param: str, **fields: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def change(arrays: dict[str, Any], header: dict[str, Any]) -> None:
        for e in header["params"]:
            if e["name"] == param:
                e.update(fields)

    return change


def _drop(name: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def change(arrays: dict[str, Any], header: dict[str, Any]) -> None:
        del arrays[name]

    return change


def _replace(name: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    return lambda arrays, header: arrays.__setitem__(name, value)


def _both(
    *changes: Callable[[dict[str, Any], dict[str, Any]], None],
) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def change(arrays: dict[str, Any], header: dict[str, Any]) -> None:
        for c in changes:
            c(arrays, header)

    return change


CORRUPTIONS: dict[str, tuple[Callable[[dict[str, Any], dict[str, Any]], None], str]] = {
    "missing param": (_drop("W2"), r"declared parameter\(s\) 'W2' missing"),
    "extra array": (_replace("W9", np.zeros(3)), r"undeclared array\(s\) 'W9'"),
    "wrong shape": (
        _replace("W1", np.zeros((5, 6))),
        r"'W1' has shape \(5, 6\), declared \(6, 5\)",
    ),
    "wrong dtype": (
        _replace("b1", np.zeros(5, np.float32)),
        "'b1' has dtype float32, declared float64",
    ),
    "integer dtype declared": (
        _both(_replace("b1", np.zeros(5, np.int64)), _edit_param("b1", dtype="int64")),
        r"params\[1\] must be",
    ),
    "shape against config": (
        _both(_replace("W1", np.zeros((6, 7))), _edit_param("W1", shape=[6, 7])),
        "do not fit the stored network config",
    ),
    "wrong format version": (
        _set("format_version", 4),
        "format_version is 4; this xplayers reads 1, 2 and 3",
    ),
    "version as string": (_set("format_version", "1"), "format_version is '1'"),
    "wrong format name": (_set("format", "keras"), "format is 'keras'"),
    "config not a dict": (_set("config", [1, 2]), "'config' must be a JSON dict"),
    "bad config": (_set("config", {"class": "Evil"}), "stored network config is not valid"),
    "duplicate declaration": (
        lambda a, h: h["params"].append(dict(h["params"][0])),
        "'W1' is declared twice",
    ),
    "bad name": (_edit_param("W1", name="../../etc/passwd"), "invalid name"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_contents(saved: tuple[Path, Any], case: str) -> None:
    path, _ = saved
    change, message = CORRUPTIONS[case]
    bad = _rewrite(path, path.with_name("bad.npz"), change)
    with pytest.raises(ModelFileError, match=message) as info:
        io.load(bad)
    assert "bad.npz" in str(info.value)


def test_object_array_is_refused_without_unpickling(saved: tuple[Path, Any]) -> None:
    path, _ = saved
    trap = np.empty(30, dtype=object)
    trap[:] = [_Trap() for _ in range(30)]
    trap = trap.reshape(6, 5)
    bad = _rewrite(path, path.with_name("bad.npz"), _replace("W1", trap), allow_pickle=True)
    _pickle_calls.clear()
    with pytest.raises(ModelFileError, match="object array"):
        io.load(bad)
    with pytest.raises(ModelFileError, match="object array"):
        io.read_metadata(bad)
    assert _pickle_calls == []
    # the trap is armed: unpickling the file would have called it
    with np.load(bad, allow_pickle=True) as npz:
        npz["W1"]
    assert _pickle_calls


def test_pickle_file_is_refused_without_unpickling(tmp_path: Path) -> None:
    bad = tmp_path / "model.npz"
    bad.write_bytes(pickle.dumps({"W1": _Trap()}))
    _pickle_calls.clear()
    with pytest.raises(ModelFileError, match=r"not a \.npz archive"):
        io.load(bad)
    assert _pickle_calls == []


def _metadata_bytes(saved: tuple[Path, Any], dst: Path, blob: bytes | np.ndarray) -> Path:
    path, _ = saved
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != METADATA_KEY}
    meta = np.frombuffer(blob, np.uint8) if isinstance(blob, bytes) else blob
    np.savez(dst, **{METADATA_KEY: meta}, **arrays)
    return dst


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b'{"format": NaN}', "not valid UTF-8 JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (np.zeros(4, np.float64), "must be a 1-d uint8 array"),
    ],
)
def test_bad_metadata_entry(
    saved: tuple[Path, Any], blob: Any, message: str, tmp_path: Path
) -> None:
    bad = _metadata_bytes(saved, tmp_path / "bad.npz", blob)
    with pytest.raises(ModelFileError, match=message):
        io.load(bad)


def test_truncated_file(saved: tuple[Path, Any]) -> None:
    path, _ = saved
    data = path.read_bytes()
    for keep in (0, 10, len(data) // 2, len(data) - 1):
        bad = path.with_name(f"cut{keep}.npz")
        bad.write_bytes(data[:keep])
        with pytest.raises(ModelFileError, match="cut"):
            io.load(bad)


def test_damaged_member_data(saved: tuple[Path, Any]) -> None:
    path, _ = saved
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("W1.npy")
    # flip a byte inside W1's data: the zip CRC check must catch it
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[start] ^= 0xFF
    bad = path.with_name("flipped.npz")
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="damaged"):
        io.load(bad)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = stdio.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"hello, not a zip"), "not a .npz archive"),
        (lambda p: p.write_bytes(_npy_bytes(np.zeros(3))), "single .npy array"),
        (lambda p: np.savez(p, W1=np.zeros(3)), "no '__xplayers__' metadata entry"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_not_a_model_file(tmp_path: Path, make: Callable[[Path], Any], message: str) -> None:
    path = tmp_path / "model.npz"
    make(path)
    with pytest.raises(ModelFileError, match=message):
        io.load(path)


def test_zip_without_npy_entries(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{METADATA_KEY}.npy", b"not an npy header")
    with pytest.raises(ModelFileError, match="damaged"):
        io.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file") as info:
        io.load(tmp_path / "absent.npz")
    assert isinstance(info.value, ValueError)


def test_header_claiming_more_data_than_stored(saved: tuple[Path, Any], tmp_path: Path) -> None:
    path, _ = saved
    with np.load(path) as npz:
        members = {k: npz[k] for k in npz.files}
    buf = stdio.BytesIO()
    np.lib.format.write_array(buf, members["W1"])
    raw = buf.getvalue().replace(b"(6, 5)", b"(6, 9)")
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, raw if info.filename == "W1.npy" else src.read(info))
    with pytest.raises(ModelFileError, match="data bytes but its header"):
        io.load(bad)


# --------------------------------------------------------------------------- crash safety

_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from xplayers import io
    from xplayers.network import TwoLayerNet

    target, mode = sys.argv[1], sys.argv[2]
    net = TwoLayerNet(784, 1000, 10, seed=1)  # about 6 MB of float64
    if mode == "slow":
        real = io._write_archive

        def slow_write(file, arrays, *, compress):
            import io as stdio
            buf = stdio.BytesIO()
            real(buf, arrays, compress=compress)
            data = buf.getvalue()
            file.write(data[: len(data) // 2])
            file.flush()
            print("half written", flush=True)
            time.sleep(60)
            file.write(data[len(data) // 2 :])

        io._write_archive = slow_write
        io.save(net, target)
    else:
        print("saving", flush=True)
        while True:
            io.save(net, target)
    """
)


def _start_child(target: Path, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "XPLAYERS_BACKEND": "numpy"}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(target), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_mid_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "model.npz"
    original = TwoLayerNet(784, 1000, 10, seed=0)
    io.save(original, target)
    before = target.read_bytes()
    with reaped(_start_child(target, "slow")) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "half written"
        leftovers = [p for p in tmp_path.iterdir() if p.name != "model.npz"]
        assert leftovers, "the child should be writing a temporary file"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    _same_bits(_host(io.load(target)), _host(original))
    for p in tmp_path.iterdir():
        if p != target:
            assert p.name.startswith(".model.npz.")
            assert p.name.endswith(".tmp")
            with pytest.raises(ModelFileError):
                io.load(p)  # the half-written temporary file is garbage, and never the target


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_sigkill_during_repeated_saves_always_leaves_a_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "model.npz"
    io.save(TwoLayerNet(784, 1000, 10, seed=0), target)
    valid = {_host(TwoLayerNet(784, 1000, 10, seed=s))["W1"].tobytes()[:4096] for s in (0, 1)}
    rng = np.random.default_rng(0)
    for _ in range(3):
        with reaped(_start_child(target, "loop")) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "saving"
            time.sleep(float(rng.uniform(0.05, 0.4)))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        loaded = _host(io.load(target))
        assert loaded["W1"].tobytes()[:4096] in valid


# --------------------------------------------------------------------------- hostile files


def _zip(members: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip archive built by hand: (name, method, raw data, declared size, crc) per member.

    zipfile itself would compress the data and compute honest sizes; a
    hostile file need not be honest.
    """
    out, central = bytearray(), bytearray()
    for name, method, data, size, crc in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 33, crc, len(data), size, len(raw), 0
        )
        out += raw + data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 33, crc,
            len(data), size, len(raw), 0, 0, 0, 0, 0, offset,
        )  # fmt: skip
        central += raw
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0
    )
    return bytes(out + central + end)


def _stored(name: str, data: bytes) -> tuple[str, int, bytes, int, int]:
    return name, zipfile.ZIP_STORED, data, len(data), zlib.crc32(data)


def _header_blob(config: dict[str, Any], params: dict[str, tuple[int, ...]]) -> bytes:
    doc = {
        "format": io.FORMAT,
        "format_version": io.FORMAT_VERSION,
        "xplayers_version": xpl.__version__,
        "config": config,
        "params": [{"name": k, "shape": list(v), "dtype": "float64"} for k, v in params.items()],
        "metadata": {},
    }
    return _npy_bytes(np.frombuffer(json.dumps(doc).encode(), np.uint8))


_SMALL = {"W1": (6, 5), "b1": (5,), "W2": (5, 3), "b2": (3,)}
_SMALL_CONFIG = {"class": "TwoLayerNet", "input_size": 6, "hidden_size": 5, "output_size": 3}

_LOAD_CHILD = """
from xplayers import _files, io
try:
    io.load(sys.argv[1])
    print("loaded")
except io.ModelFileError as exc:
    print("refused:", exc)
"""


def _refused_within_limits(path: Path, message: str) -> None:
    done = run_limited(_LOAD_CHILD, str(path), memory_mib=400, cpu_s=10)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused:"), done.stdout
    assert message in done.stdout, done.stdout


@pytest.mark.parametrize("hidden", [20000, 10**6])
def test_config_bomb_is_refused_before_allocating(tmp_path: Path, hidden: int) -> None:
    """A 2 KB file whose config says TwoLayerNet(784, 20000, 10) builds nothing."""
    arrays = {k: np.zeros(v) for k, v in _SMALL.items()}
    config = {**_SMALL_CONFIG, "input_size": 20000, "hidden_size": hidden}
    members = [_stored(f"{METADATA_KEY}.npy", _header_blob(config, _SMALL))]
    members += [_stored(f"{k}.npy", _npy_bytes(v)) for k, v in arrays.items()]
    path = tmp_path / "bomb.npz"
    path.write_bytes(_zip(members))
    _refused_within_limits(path, "do not fit the stored network config: 'W1' is ((6, 5)")
    with pytest.raises(ModelFileError, match="do not fit the stored network config"):
        io.read_metadata(path)


def test_forged_sizes_are_refused_before_reading(tmp_path: Path) -> None:
    """Headers and config agree on a 3.2 GB W1, but the file holds none of it."""
    shapes = {**_SMALL, "W1": (20000, 20000)}
    config = {**_SMALL_CONFIG, "input_size": 20000, "hidden_size": 20000}
    shapes = {"W1": (20000, 20000), "b1": (20000,), "W2": (20000, 3), "b2": (3,)}
    members = [_stored(f"{METADATA_KEY}.npy", _header_blob(config, shapes))]
    for k, v in shapes.items():
        head = _npy_bytes(np.zeros(v if k != "W1" else (1,)))
        if k == "W1":
            head = head.replace(b"(1,)", b"(20000, 20000)")[:128]
        members.append(_stored(f"{k}.npy", head))
    path = tmp_path / "forged.npz"
    path.write_bytes(_zip(members))
    _refused_within_limits(path, "'W1' holds 0 data bytes")
    # the zip directory lying about the size as well
    name, method, data, _, crc = members[1]
    members[1] = (name, method, data, 128 + 20000 * 20000 * 8 % 2**32, crc)
    path.write_bytes(_zip(members))
    _refused_within_limits(path, "more than that can hold")


def _deflate_bomb(npy_header: bytes, mib: int) -> bytes:
    """Raw deflate of `npy_header` and `mib` MiB of zeros, made in milliseconds."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(npy_header) + c.flush(zlib.Z_FULL_FLUSH)
    chunk = c.compress(bytes(2**20)) + c.flush(zlib.Z_FULL_FLUSH)  # history reset: repeatable
    return head + chunk * mib + c.flush()


def test_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    """A 2 MB file deflating W1 to 2 GiB: refused from the headers, nothing inflated."""
    shapes = {**_SMALL, "W1": (16384, 16384)}
    head = _npy_bytes(np.zeros((1,))).replace(b"(1,)", b"(16384, 16384)")[:128]
    bomb = _deflate_bomb(head, 2048)
    members = [_stored(f"{METADATA_KEY}.npy", _header_blob(_SMALL_CONFIG, shapes))]
    members.append(("W1.npy", zipfile.ZIP_DEFLATED, bomb, 128 + 2**31, 0))
    members += [_stored(f"{k}.npy", _npy_bytes(np.zeros(_SMALL[k]))) for k in ("b1", "W2", "b2")]
    path = tmp_path / "bomb.npz"
    path.write_bytes(_zip(members))
    assert path.stat().st_size < 3 * 2**20
    _refused_within_limits(path, "'W1' is ((16384, 16384), 'float64'), the config implies ((6, 5)")


def test_other_compression_methods_are_refused(saved: tuple[Path, Any], tmp_path: Path) -> None:
    path, _ = saved
    bz = tmp_path / "bzip2.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bz, "w", zipfile.ZIP_BZIP2) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with pytest.raises(ModelFileError, match="compression method 12; xplayers writes"):
        io.load(bz)
    # an unknown method number: zipfile itself would raise NotImplementedError
    data = bytearray(path.read_bytes())
    for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (start := data.find(sig, start)) >= 0:
            data[start + at : start + at + 2] = struct.pack("<H", 99)
            start += 4
    odd = tmp_path / "odd.npz"
    odd.write_bytes(bytes(data))
    for read in (io.load, io.read_metadata):
        with pytest.raises(ModelFileError, match="compression method 99"):
            read(odd)


def test_deeply_nested_metadata_is_a_model_file_error(
    saved: tuple[Path, Any], tmp_path: Path
) -> None:
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bad = _metadata_bytes(saved, tmp_path / "deep.npz", deep)
    for read in (io.load, io.read_metadata):
        with pytest.raises(ModelFileError, match="nested too deeply"):
            read(bad)
    nested = b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}"  # parses, over MAX_NESTING
    bad = _metadata_bytes(saved, tmp_path / "nested.npz", nested)
    with pytest.raises(ModelFileError, match="nested more than 64 deep"):
        io.read_metadata(bad)


def test_random_damage_only_ever_gives_model_file_errors(tmp_path: Path) -> None:
    for compress in (False, True):
        good = io.save(TwoLayerNet(6, 5, 3, seed=0), tmp_path / "good.npz", compress=compress)
        data = good.read_bytes()
        rng = np.random.default_rng(compress)
        bad = tmp_path / "bad.npz"
        for _ in range(300):
            damaged = bytearray(data)
            for at in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
                damaged[at] ^= 1 << int(rng.integers(0, 8))
            bad.write_bytes(bytes(damaged))
            for read in (io.load, io.read_metadata):
                with contextlib.suppress(ModelFileError):
                    read(bad)


def test_text_file_renamed_npz_is_not_called_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.write_text("W1,b1\n0.5,0.25\n")
    with pytest.raises(ModelFileError, match="not an xplayers model file") as info:
        io.load(path)
    assert "pickle" not in str(info.value)


def test_member_names_from_the_file_are_quoted(saved: tuple[Path, Any], tmp_path: Path) -> None:
    path, _ = saved
    evil = "\x1b[2J\x1b[31mW9"
    bad = _rewrite(path, tmp_path / "bad.npz", _replace(evil, np.zeros(3)))
    with pytest.raises(ModelFileError, match="undeclared") as info:
        io.load(bad)
    assert "\x1b" not in str(info.value)
    assert repr(evil) in str(info.value)
    name = tmp_path / "name.npz"
    with zipfile.ZipFile(name, "w") as z:
        z.writestr("\x1b[2J.txt", b"")
    with pytest.raises(ModelFileError, match=r"is not a \.npy array") as info:
        io.load(name)
    assert "\x1b" not in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    done = run_limited(_LOAD_CHILD, str(fifo), cpu_s=10, timeout_s=20)
    assert "refused:" in done.stdout, done.stderr[-2000:]
    assert "not a regular file" in done.stdout


def test_non_finite_weights_are_refused_on_save_and_load(
    saved: tuple[Path, Any], tmp_path: Path
) -> None:
    path, _ = saved
    broken = MultiLayerNet(6, [5, 4], 3, seed=0)
    broken.params["W2"] = xpl.asarray(np.full((5, 4), np.nan))
    with pytest.raises(LayerInputError, match=r"finite parameters \('W2'\).*20 NaN or infinite"):
        io.save(broken, tmp_path / "nan.npz")
    assert not (tmp_path / "nan.npz").exists()
    w = np.zeros((6, 5))
    w[1, 2] = np.inf
    bad = _rewrite(path, tmp_path / "inf.npz", _replace("W1", w))
    with pytest.raises(ModelFileError, match="'W1' holds 1 NaN or infinite value"):
        io.load(bad)


def test_sequential_whose_sizes_do_not_chain_is_refused_at_load(tmp_path: Path) -> None:
    layers: dict[str, Any] = {
        "Affine1": xpl.Affine(xpl.asarray(np.ones((4, 3))), xpl.asarray(np.zeros(3)))
    }
    layers["Relu1"] = xpl.Relu()
    layers["Affine2"] = xpl.Affine(xpl.asarray(np.ones((3, 2))), xpl.asarray(np.zeros(2)))
    path = io.save(xpl.Sequential(layers), tmp_path / "seq.npz")
    assert type(io.load(path)) is xpl.Sequential

    def unchain(arrays: dict[str, Any], header: dict[str, Any]) -> None:
        header["config"]["layers"][2].update(input_size=5)
        header["params"][2]["shape"] = [5, 2]
        arrays["W2"] = np.ones((5, 2))

    bad = _rewrite(path, tmp_path / "bad.npz", unchain)
    with pytest.raises(
        ModelFileError, match="input_size 3, the output_size of the Affine layer before it"
    ):
        io.load(bad)
    # and save refuses such a network up front
    layers["Affine2"] = xpl.Affine(xpl.asarray(np.ones((5, 2))), xpl.asarray(np.zeros(2)))
    with pytest.raises(LayerInputError, match="the output_size of the Affine layer before"):
        io.save(xpl.Sequential(layers), tmp_path / "never.npz")
    assert not (tmp_path / "never.npz").exists()


# --------------------------------------------------------------------------- save refuses up front


class _Named:
    """A network-like object with chosen parameter names and config."""

    def __init__(self, params: dict[str, Any], config: dict[str, Any]) -> None:
        self.params, self._config = params, config

    def config(self) -> dict[str, Any]:
        return self._config


def test_write_archive_keeps_any_member_name(tmp_path: Path) -> None:
    arrays = {"file": np.ones(2), "allow_pickle": np.zeros(3)}
    with (tmp_path / "a.npz").open("wb") as f:
        io._write_archive(f, arrays, compress=False)
    with np.load(tmp_path / "a.npz") as npz:
        assert sorted(npz.files) == ["allow_pickle", "file"]
        np.testing.assert_array_equal(npz["allow_pickle"], np.zeros(3))


@pytest.mark.parametrize("name", ["file", "allow_pickle"])
def test_save_refuses_what_load_could_not_rebuild(tmp_path: Path, name: str) -> None:
    net = TwoLayerNet(3, 3, 2, seed=0)
    odd = _Named({**net.params, name: np.ones(2)}, net.config())
    with pytest.raises(LayerInputError, match="config\\(\\) implies"):
        io.save(odd, tmp_path / "odd.npz")
    assert list(tmp_path.iterdir()) == []


def _nest(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"big": "x" * (64 * 2**20 + 1)}, "at most 67108864 bytes"),
        ({"text": "lone \ud800 surrogate"}, "UnicodeEncodeError"),
        ({"deep": _nest(5000)}, "nested more than 64 deep"),
        ({"huge": 10**5000}, "ValueError"),
        ({1: "int key"}, "keys must be str"),
    ],
    ids=["64MiB", "surrogate", "deep", "bigint", "intkey"],
)
def test_save_refuses_metadata_load_would_refuse(
    tmp_path: Path, metadata: dict[Any, Any], message: str
) -> None:
    with pytest.raises(LayerInputError, match=message):
        io.save(TwoLayerNet(3, 3, 2, seed=0), tmp_path / "m.npz", metadata=metadata)
    assert list(tmp_path.iterdir()) == []


def test_metadata_up_to_the_limits_round_trips(tmp_path: Path) -> None:
    metadata = {"deep": _nest(60), "text": "ünï \U0001f600", "n": 10**100}
    path = io.save(TwoLayerNet(3, 3, 2, seed=0), tmp_path / "m.npz", metadata=metadata)
    assert io.read_metadata(path)["metadata"] == metadata


# --------------------------------------------------------------------------- permissions, leftovers


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saving_over_a_private_file_keeps_its_mode(tmp_path: Path) -> None:
    path = io.save(TwoLayerNet(3, 3, 2, seed=0), tmp_path / "private.npz")
    path.chmod(0o600)
    io.save(TwoLayerNet(3, 3, 2, seed=1), path)
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o640)
    io.save(TwoLayerNet(3, 3, 2, seed=2), path, compress=True)
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL and flock")
def test_next_save_removes_temporaries_of_killed_saves_only(tmp_path: Path) -> None:
    import fcntl

    target = tmp_path / "model.npz"
    io.save(TwoLayerNet(3, 3, 2, seed=0), target)
    for _ in range(2):  # the second killed save removes the first one's temporary
        with reaped(_start_child(target, "slow")) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "half written"
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert len(list(tmp_path.iterdir())) == 2  # the killed save left its temporary
    # a live writer (holding its lock), another target's and a user's file stay
    live = tmp_path / ".model.npz.0123456789ab.tmp"
    other = tmp_path / ".other.npz.0123456789ab.tmp"
    mine = tmp_path / ".model.npz.notes.tmp"
    for p in (live, other, mine):
        p.write_bytes(b"x")
    with live.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        io.save(TwoLayerNet(3, 3, 2, seed=1), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model.npz", live.name, other.name, mine.name]
    )
    _same_bits(_host(io.load(target)), _host(TwoLayerNet(3, 3, 2, seed=1)))


def test_memory_error_while_reading_is_a_model_file_error(
    saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = saved

    def exhausted(*args: Any, **kwargs: Any) -> None:
        raise MemoryError

    monkeypatch.setattr(io, "_read_data", exhausted)
    for read in (io.load, io.read_metadata, io.read_checkpoint):
        with pytest.raises(ModelFileError, match="needs more memory than is available"):
            read(path)


# --------------------------------------------------------------------------- what a save will need


def _name_max(directory: Path) -> int:
    return os.pathconf(directory, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255


@pytest.mark.parametrize("extra", [0, 1, 17, 0.5])
def test_any_legal_file_name_saves(tmp_path: Path, extra: float) -> None:
    """Names whose temporary ``.NAME.<12 hex>.tmp`` would pass the limit save too.

    ``extra`` is how far below the limit the name ends (0.5: a two-byte
    character straddles the point where the temporary's name is cut).
    """
    limit = _name_max(tmp_path)
    if extra == 0.5:
        name = "é" * ((limit - 4) // 2) + ".npz"
    else:
        name = "m" * (limit - 4 - int(extra)) + ".npz"
    assert limit - 18 < len(os.fsencode(name)) <= limit
    target = tmp_path / name
    assert io.writable_file("save", "path", target) == target
    io.save(TwoLayerNet(3, 3, 2, seed=0), target)
    io.save_checkpoint(TwoLayerNet(3, 3, 2, seed=1), target, state={}, arrays={})
    _same_bits(_host(io.load(target)), _host(TwoLayerNet(3, 3, 2, seed=1)))
    assert sorted(os.listdir(tmp_path)) == [name]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL and flock")
def test_the_temporary_of_a_killed_save_of_a_long_name_is_removed(tmp_path: Path) -> None:
    target = tmp_path / ("m" * (_name_max(tmp_path) - 4) + ".npz")
    io.save(TwoLayerNet(3, 3, 2, seed=0), target)
    with reaped(_start_child(target, "slow")) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "half written"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert len(list(tmp_path.iterdir())) == 2
    io.save(TwoLayerNet(3, 3, 2, seed=1), target)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_name_over_the_limit_is_refused_up_front(tmp_path: Path) -> None:
    limit = _name_max(tmp_path)
    with pytest.raises(LayerInputError, match=f"a file name of at most {limit} bytes"):
        io.writable_file("train", "checkpoint", tmp_path / ("m" * (limit + 1)))


def _refused(target: Path, match: str) -> None:
    before = target.read_bytes()
    with pytest.raises(LayerInputError, match=match):
        io.writable_file("train", "checkpoint", target)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux inode flags")
def test_an_immutable_target_is_refused_before_the_work(
    saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = saved
    flags = _files._inode_flags

    def flagged(extra: int) -> Callable[[Path, os.stat_result], int]:
        def read(target: Path, info: os.stat_result) -> int:
            return flags(target, info) | (extra if stat.S_ISREG(info.st_mode) else 0)

        return read

    monkeypatch.setattr(_files, "_inode_flags", flagged(0x10))
    _refused(path, "a file that can be replaced.*immutable or append-only")
    monkeypatch.setattr(_files, "_inode_flags", flagged(0x20))
    _refused(path, "immutable or append-only")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux inode flags")
def test_a_really_immutable_target_is_refused(saved: tuple[Path, Any]) -> None:
    path, _ = saved
    try:
        set_flag = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    except FileNotFoundError:
        pytest.skip("no chattr here")
    if set_flag.returncode != 0:
        pytest.skip(f"chattr +i is not allowed here: {set_flag.stderr.decode().strip()}")
    try:
        _refused(path, "immutable or append-only")
        with pytest.raises(OSError):  # what the check spares a long run at its end
            io.save(TwoLayerNet(6, 5, 3, seed=9), path)
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_bsd_file_flags_are_read_where_stat_has_them(
    saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = saved
    real = os.lstat(path)

    class Flagged:
        st_mode, st_uid, st_flags = real.st_mode, real.st_uid, stat.UF_IMMUTABLE

    monkeypatch.setattr(_files, "_inode_flags", lambda target, info: 0)
    monkeypatch.setattr(_files.os, "lstat", lambda target: Flagged())
    _refused(path, "immutable or append-only.*chflags")


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX users")
def test_another_users_file_in_a_sticky_directory_is_refused(
    saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = saved
    folder = path.parent
    owner = path.stat().st_uid
    folder.chmod(0o1777)
    try:
        monkeypatch.setattr(_files.os, "geteuid", lambda: owner + 4242)  # a user owning neither
        _refused(path, "owned by user .* in a sticky directory")
        folder.chmod(0o777)  # without the sticky bit anyone may rename over it
        assert io.writable_file("train", "checkpoint", path) == path
        folder.chmod(0o1777)
        monkeypatch.setattr(_files.os, "geteuid", lambda: owner)  # the file's owner may
        assert io.writable_file("train", "checkpoint", path) == path
    finally:
        folder.chmod(0o755)


def test_training_checks_its_checkpoint_path_before_any_update(
    saved: tuple[Path, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from xplayers.optim import SGD
    from xplayers.training import train

    path, _ = saved
    monkeypatch.setattr(_files, "_replace_problem", lambda target: "simulated")
    net = TwoLayerNet(4, 3, 2, seed=0)
    before = _host(net)
    x = np.zeros((8, 4))
    with pytest.raises(LayerInputError, match=r"checkpoint.*a file that can be replaced"):
        train(net, SGD(), (x, np.zeros(8, dtype=np.int64)), epochs=1, checkpoint=path)
    _same_bits(_host(net), before)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saving_over_a_setuid_file_keeps_only_read_and_write_bits(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")
    path.chmod(0o6755)
    io.save(TwoLayerNet(3, 3, 2, seed=0), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o1640)
    io.save(TwoLayerNet(3, 3, 2, seed=0), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits and symlinks")
def test_saving_over_a_symlink_to_a_setuid_file_makes_no_setuid_file(tmp_path: Path) -> None:
    pointed = tmp_path / "pointed"
    pointed.write_bytes(b"old")
    pointed.chmod(0o4777)
    link = tmp_path / "model.npz"
    link.symlink_to(pointed)
    io.save_checkpoint(TwoLayerNet(3, 3, 2, seed=0), link, state={}, arrays={})
    assert not link.is_symlink()  # the link is replaced, as a rename does
    assert stat.S_IMODE(link.stat().st_mode) == 0o666
    assert pointed.read_bytes() == b"old"
    assert stat.S_IMODE(pointed.stat().st_mode) == 0o4777


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux inode flags")
def test_an_append_only_directory_is_refused_before_the_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model.npz"
    flags = _files._inode_flags

    def directory_append_only(path: Path, info: os.stat_result) -> int:
        return flags(path, info) | (0x20 if stat.S_ISDIR(info.st_mode) else 0)

    monkeypatch.setattr(_files, "_inode_flags", directory_append_only)
    with pytest.raises(LayerInputError, match="its directory is immutable or append-only"):
        io.writable_file("train", "checkpoint", target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux inode flags")
def test_a_really_append_only_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    try:
        set_flag = subprocess.run(["chattr", "+a", str(folder)], capture_output=True, check=False)
    except FileNotFoundError:
        pytest.skip("no chattr here")
    if set_flag.returncode != 0:
        pytest.skip(f"chattr +a is not allowed here: {set_flag.stderr.decode().strip()}")
    try:
        with pytest.raises(LayerInputError, match="immutable or append-only"):
            io.writable_file("train", "checkpoint", folder / "model.npz")
        with pytest.raises(OSError):  # what the check spares a long run at its end
            io.save(TwoLayerNet(3, 3, 2, seed=0), folder / "model.npz")
    finally:
        subprocess.run(["chattr", "-a", str(folder)], check=True)
