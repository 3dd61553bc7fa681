"""Saving and loading networks: round trips, damaged files, and crash safety."""

from __future__ import annotations

import io as stdio
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xplayers as xpl
from xplayers import io
from xplayers.errors import LayerInputError
from xplayers.io import METADATA_KEY, ModelFileError
from xplayers.network import MultiLayerNet, TwoLayerNet


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
    assert header["format_version"] == io.FORMAT_VERSION
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

    def broken_savez(file: Any, **arrays: Any) -> None:
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
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
    "missing param": (_drop("W2"), r"declared parameter\(s\) W2 missing"),
    "extra array": (_replace("W9", np.zeros(3)), r"undeclared array\(s\) W9"),
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
        _set("format_version", 2),
        "format_version is 2; this xplayers reads 1",
    ),
    "version as string": (_set("format_version", "1"), "format_version is '1'"),
    "wrong format name": (_set("format", "keras"), "format is 'keras'"),
    "config not a dict": (_set("config", [1, 2]), "'config' must be a JSON dict"),
    "bad config": (_set("config", {"class": "Evil"}), "do not fit the stored network config"),
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
        real = np.savez

        def slow_savez(file, **arrays):
            import io as stdio
            buf = stdio.BytesIO()
            real(buf, **arrays)
            data = buf.getvalue()
            file.write(data[: len(data) // 2])
            file.flush()
            print("half written", flush=True)
            time.sleep(60)
            file.write(data[len(data) // 2 :])

        np.savez = slow_savez
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
    child = _start_child(target, "slow")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "half written"
        leftovers = [p for p in tmp_path.iterdir() if p.name != "model.npz"]
        assert leftovers, "the child should be writing a temporary file"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
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
        child = _start_child(target, "loop")
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "saving"
            time.sleep(float(rng.uniform(0.05, 0.4)))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        loaded = _host(io.load(target))
        assert loaded["W1"].tobytes()[:4096] in valid
