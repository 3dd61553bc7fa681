"""Save networks to ``.npz`` files and load them back, atomically and without pickle.

A model file is an ordinary NumPy ``.npz`` archive (a zip of ``.npy`` files):

- one array per parameter, named as in ``network.params`` (``W1``, ``b1``, ...),
  a host copy made with :func:`xplayers.to_numpy`, so the bits are those the
  network computed with, whatever backend it ran on;
- one entry :data:`METADATA_KEY`, a ``uint8`` array holding UTF-8 JSON::

      {"format": "xplayers-network", "format_version": 1,
       "xplayers_version": "0.1.0",
       "config": {...network.config()...},
       "params": [{"name": "W1", "shape": [64, 100], "dtype": "float32"}, ...],
       "metadata": {...user metadata...}}

Nothing in the file is ever unpickled: :func:`load` opens it with
``numpy.load(path, allow_pickle=False)``, and an object array inside is
rejected from its ``.npy`` header before any data is read.

Writes are atomic: :func:`save` writes a temporary file in the target's
directory, flushes it and syncs it to disk (``os.fsync``), renames it over
the target with :func:`os.replace` and syncs the directory. A crash at any moment leaves
either the old file or the new one, never a mixture; at worst a hidden
``.NAME.*.tmp`` file is left beside it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from xplayers._backend import to_numpy, use_backend
from xplayers._validation import fail
from xplayers.errors import XplayersError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "METADATA_KEY",
    "ModelFileError",
    "load",
    "read_metadata",
    "save",
]

#: The ``format`` name written into every model file.
FORMAT = "xplayers-network"
#: The version of the file layout written by :func:`save`; :func:`load` reads this version.
FORMAT_VERSION = 1
#: The name of the archive entry holding the JSON metadata.
METADATA_KEY = "__xplayers__"

_DTYPES = ("float32", "float64")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_MAX_METADATA_BYTES = 64 * 2**20  # a config is a few hundred bytes; refuse absurd entries


class ModelFileError(XplayersError, ValueError):
    """A model file is missing, damaged, or not one :func:`load` can trust.

    The message names the file and the problem. It is a :class:`ValueError`
    too, so ``except ValueError`` also catches it.

    Examples
    --------
    >>> from xplayers.io import ModelFileError
    >>> issubclass(ModelFileError, ValueError)
    True
    """

    __module__ = "xplayers.io"


class _Network(Protocol):
    """What :func:`save` needs from a network."""

    @property
    def params(self) -> Mapping[str, Any]: ...

    def config(self) -> dict[str, Any]: ...


# --------------------------------------------------------------------------- saving


def save(
    network: _Network,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    compress: bool = False,
) -> Path:
    """Write `network`'s parameters and structure to a ``.npz`` file, atomically.

    Parameters
    ----------
    network : TwoLayerNet, MultiLayerNet or Sequential
        Any network with a ``params`` mapping and a ``config()`` method, on
        any backend.
    path : str or os.PathLike
        The file to write; it is replaced if it exists. No suffix is added.
    metadata : mapping, optional
        Extra JSON-serialisable information stored with the model (for
        example the training history); read it back with :func:`read_metadata`.
    compress : bool, default False
        Deflate the arrays (``numpy.savez_compressed``). Weights compress
        poorly, so the default stores them as they are.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    xplayers.errors.LayerInputError
        A parameter name cannot be stored, a parameter is not float32 or
        float64, or `metadata` or the config is not JSON-serialisable (all
        ``ValueError``), checked before anything is written.
    OSError
        The directory does not exist or cannot be written. The previous file,
        if any, is left as it was and the temporary file is removed.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> from xplayers.io import load, read_metadata, save
    >>> from xplayers.network import TwoLayerNet
    >>> net = TwoLayerNet(4, 5, 3, seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "net.npz")
    >>> _ = save(net, path, metadata={"note": "untrained"})
    >>> read_metadata(path)["metadata"]
    {'note': 'untrained'}
    >>> again = load(path)
    >>> all(np.array_equal(xpl.to_numpy(again.params[k]), xpl.to_numpy(v))
    ...     for k, v in net.params.items())
    True
    """
    target = Path(path)
    arrays, header = _prepare(network, metadata)
    writer: Callable[..., None] = np.savez_compressed if compress else np.savez
    with _atomic_writer(target) as f:
        writer(f, **{METADATA_KEY: header}, **arrays)
    return target


def _prepare(
    network: _Network, metadata: Mapping[str, Any] | None
) -> tuple[dict[str, npt.NDArray[Any]], npt.NDArray[np.uint8]]:
    """Host copies of the parameters and the encoded JSON header, all checked."""
    arrays: dict[str, npt.NDArray[Any]] = {}
    entries = []
    for name, value in network.params.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name == METADATA_KEY:
            fail(
                "save",
                "network",
                "parameter names of letters, digits, '_', '.', '-' (not starting with a digit)",
                repr(name),
            )
        host = np.ascontiguousarray(to_numpy(value))
        if host.dtype.name not in _DTYPES:
            fail("save", "network", f"float32 or float64 parameters ({name})", str(host.dtype))
        if host.dtype.byteorder not in "=|":
            host = host.astype(host.dtype.newbyteorder("="))
        arrays[name] = host
        entries.append({"name": name, "shape": list(host.shape), "dtype": host.dtype.name})
    from xplayers import __version__

    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "xplayers_version": __version__,
        "config": network.config(),
        "params": entries,
        "metadata": dict(metadata) if metadata is not None else {},
    }
    try:
        text = json.dumps(doc, allow_nan=False, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        fail(
            "save",
            "metadata",
            "JSON-serialisable metadata and network config (str, int, finite float, "
            "bool, None, lists and dicts with str keys)",
            f"{type(exc).__name__}: {exc}",
        )
    return arrays, np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


@contextlib.contextmanager
def _atomic_writer(target: Path) -> Iterator[IO[bytes]]:
    """Yield a file whose content replaces `target` only once fully written and synced.

    The temporary file is created with ``O_EXCL`` and mode ``0o666`` (so the
    umask applies, as for any new file, unlike ``mkstemp``'s ``0o600``) next
    to the target, so :func:`os.replace` is an atomic rename on one file system.
    """
    directory = target.parent
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the system allows it.

    Best effort: the new file is complete and in place already, so a file
    system or platform that cannot sync a directory (Windows, some network
    file systems) is not an error.
    """
    flag = getattr(os, "O_DIRECTORY", None)
    if flag is None:  # pragma: no cover - Windows
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | flag)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- loading


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a model file's JSON header without building the network.

    Every check of :func:`load` that needs no network is made: the file is a
    zip archive, the header parses and has the right format and version,
    every declared parameter is present with its declared shape and dtype,
    and nothing undeclared is stored.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.

    Returns
    -------
    dict
        ``format``, ``format_version``, ``xplayers_version``, ``config``,
        ``params`` (name, shape and dtype of each) and the user ``metadata``.

    Raises
    ------
    ModelFileError
        The file is missing, unreadable, or fails a check; the message names
        the file and the problem.
    """
    with _open(Path(path)) as npz:
        return _check_archive(Path(path), npz)


def load(path: str | os.PathLike[str], *, backend: str | None = None, device: Any = None) -> Any:
    """Load a network saved by :func:`save`, checking everything before using any of it.

    The checks, in order: the file is a zip archive readable by
    ``numpy.load(..., allow_pickle=False)``; its JSON header parses and names
    this format and version; every declared parameter is present with its
    declared shape and a float32 or float64 dtype (read from the ``.npy``
    headers, so object arrays are refused before any data is read); no
    undeclared array is stored; and the parameters fit the network the config
    describes (checked by :func:`xplayers.network.from_config`). Nothing is
    ever unpickled.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`, on any backend.
    backend : str, optional
        Create the network on this backend instead of the current one (see
        :func:`xplayers.set_backend`).
    device : optional
        Its device, as for :func:`xplayers.set_backend`.

    Returns
    -------
    network
        The network, with parameters bit-identical to those saved.

    Raises
    ------
    ModelFileError
        The file is missing, damaged, or fails a check (a ``ValueError``);
        the message names the file and the problem.
    xplayers.BackendUnavailableError
        `backend` cannot be used here.

    Examples
    --------
    See :func:`save`.
    """
    where = Path(path)
    with _open(where) as npz:
        header = _check_archive(where, npz)
        arrays = {e["name"]: _read_array(where, npz, e) for e in header["params"]}
    if backend is None:
        return _build(where, header["config"], arrays)
    with use_backend(backend, device):
        return _build(where, header["config"], arrays)


def _error(path: Path, problem: str) -> ModelFileError:
    return ModelFileError(f"model file {str(path)!r}: {problem}")


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Any]:
    # The file is opened here, not by numpy.load, so that it is closed on every
    # path: numpy.load leaks its own file handle when a zip turns out damaged.
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise _error(path, "no such file") from None
    except IsADirectoryError:
        raise _error(path, "is a directory, not a model file") from None
    except OSError as exc:
        raise _error(path, f"cannot be read ({exc.strerror or exc})") from None
    with f:
        try:
            npz = np.load(f, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise _error(
                path,
                f"not a .npz archive written by xplayers.io.save ({type(exc).__name__}: {exc})",
            ) from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise _error(
                path, "is a single .npy array, not a .npz archive written by xplayers.io.save"
            )
        try:
            yield npz
        finally:
            npz.close()


def _member(path: Path, npz: Any, key: str) -> zipfile.ZipInfo:
    try:
        info: zipfile.ZipInfo = npz.zip.getinfo(f"{key}.npy")
    except KeyError:
        raise _error(path, f"archive entry {key!r} is not a .npy array") from None
    return info


def _npy_header(path: Path, npz: Any, key: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Shape, dtype and header length of archive entry `key`, from its header only."""
    info = _member(path, npz, key)
    try:
        with npz.zip.open(info) as f:
            major, _ = np.lib.format.read_magic(f)
            if major == 1:
                shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif major == 2:
                shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise _error(path, f"entry {key!r} uses .npy format version {major}.x")
            offset = f.tell()
    except ModelFileError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _error(path, f"entry {key!r} is damaged ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise _error(
            path, f"entry {key!r} is an object array (refused: loading it would need pickle)"
        )
    size = math.prod(shape) * dtype.itemsize
    if info.file_size != offset + size:
        raise _error(
            path,
            f"entry {key!r} holds {info.file_size - offset} data bytes but its header "
            f"(shape {tuple(shape)}, dtype {dtype}) implies {size}",
        )
    return tuple(shape), dtype, offset


def _check_archive(path: Path, npz: Any) -> dict[str, Any]:
    """Check the header and that the archive holds exactly the declared arrays."""
    doc = _read_header(path, npz)
    declared = _check_entries(path, doc["params"])
    stored = set(npz.files) - {METADATA_KEY}
    missing = [n for n in declared if n not in stored]
    if missing:
        raise _error(path, f"declared parameter(s) {', '.join(missing)} missing from the archive")
    extra = sorted(stored - set(declared))
    if extra:
        raise _error(path, f"undeclared array(s) {', '.join(extra)} in the archive")
    for entry in doc["params"]:
        name = entry["name"]
        shape, dtype, _ = _npy_header(path, npz, name)
        if list(shape) != entry["shape"]:
            raise _error(
                path,
                f"parameter {name!r} has shape {shape}, declared {tuple(entry['shape'])}",
            )
        if dtype.name != entry["dtype"]:
            raise _error(path, f"parameter {name!r} has dtype {dtype}, declared {entry['dtype']}")
    return doc


def _read_header(path: Path, npz: Any) -> dict[str, Any]:
    """Parse the JSON header and check its format, version and field types."""
    if METADATA_KEY not in npz.files:
        raise _error(
            path,
            f"no {METADATA_KEY!r} metadata entry: not a file written by xplayers.io.save "
            f"(entries: {', '.join(sorted(npz.files)[:10]) or 'none'})",
        )
    shape, dtype, _ = _npy_header(path, npz, METADATA_KEY)
    if dtype != np.uint8 or len(shape) != 1:
        raise _error(path, f"metadata entry must be a 1-d uint8 array; got {dtype} {shape}")
    if shape[0] > _MAX_METADATA_BYTES:
        raise _error(path, f"metadata entry is {shape[0]} bytes, over the 64 MiB limit")
    raw = _load_entry(path, npz, METADATA_KEY)
    try:
        doc = json.loads(raw.tobytes().decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _error(path, f"metadata is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _error(path, f"metadata must be a JSON object; got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise _error(path, f"format is {doc.get('format')!r}, expected {FORMAT!r}")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION:
        written = doc.get("xplayers_version", "unknown")
        hint = (
            f" (written by xplayers {written}; upgrade xplayers to read it)"
            if isinstance(version, int) and version > FORMAT_VERSION
            else ""
        )
        raise _error(
            path, f"format_version is {version!r}; this xplayers reads {FORMAT_VERSION}{hint}"
        )
    for key, kind in (("config", dict), ("params", list), ("metadata", dict)):
        if not isinstance(doc.get(key), kind):
            raise _error(path, f"metadata field {key!r} must be a JSON {kind.__name__}")
    return doc


def _no_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def _check_entries(path: Path, entries: list[Any]) -> list[str]:
    names: list[str] = []
    for i, e in enumerate(entries):
        ok = (
            isinstance(e, dict)
            and isinstance(e.get("name"), str)
            and isinstance(e.get("shape"), list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in e["shape"])
            and e.get("dtype") in _DTYPES
        )
        if not ok:
            raise _error(
                path,
                f"params[{i}] must be {{'name': str, 'shape': [int >= 0, ...], "
                f"'dtype': 'float32' or 'float64'}}; got {e!r}"[:300],
            )
        if not _NAME.fullmatch(e["name"]) or e["name"] == METADATA_KEY:
            raise _error(path, f"params[{i}] has an invalid name {e['name']!r}")
        if e["name"] in names:
            raise _error(path, f"parameter {e['name']!r} is declared twice")
        names.append(e["name"])
    return names


def _load_entry(path: Path, npz: Any, key: str) -> npt.NDArray[Any]:
    try:
        value: npt.NDArray[Any] = npz[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _error(path, f"entry {key!r} is damaged ({type(exc).__name__}: {exc})") from None
    return value


def _read_array(path: Path, npz: Any, entry: Mapping[str, Any]) -> npt.NDArray[Any]:
    value = _load_entry(path, npz, entry["name"])
    dtype = np.dtype(entry["dtype"])
    if value.dtype != dtype:  # same kind and size, other byte order
        value = value.astype(dtype)
    return value


def _build(path: Path, config: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> Any:
    from xplayers.network import from_config

    try:
        return from_config(config, params=arrays)
    except (ValueError, TypeError, KeyError) as exc:
        raise _error(path, f"parameters do not fit the stored network config: {exc}") from exc
