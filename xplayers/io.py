"""Save networks to ``.npz`` files and load them back, atomically and without pickle.

A model file is an ordinary NumPy ``.npz`` archive (a zip of ``.npy`` files,
stored or deflated):

- one array per parameter, named as in ``network.params`` (``W1``, ``b1``, ...),
  a host copy made with :func:`xplayers.to_numpy`, so the bits are those the
  network computed with, whatever backend it ran on;
- one entry :data:`METADATA_KEY`, a ``uint8`` array holding UTF-8 JSON::

      {"format": "xplayers-network", "format_version": 1,
       "xplayers_version": "0.1.0",
       "config": {...network.config()...},
       "params": [{"name": "W1", "shape": [64, 100], "dtype": "float32"}, ...],
       "metadata": {...user metadata...}}

- for a network whose layers keep arrays they use at test time
  (``BatchNormalization``'s running averages: ``network.buffers``), one
  array per buffer beside the parameters, declared in the header field
  ``"buffers"`` like ``"params"`` (format version 3).

Nothing in the file is ever unpickled, and nothing is allocated on the
file's word: :func:`load` reads the zip directory, the JSON header and the
``.npy`` headers first, checks that they agree with each other, with the
archive's size and with the network the config describes, and only then
reads the data, never more bytes than declared.

Writes are atomic: :func:`save` writes a temporary file in the target's
directory, flushes it and syncs it to disk (``os.fsync``), renames it over
the target with :func:`os.replace` and syncs the directory. A crash at any moment leaves
either the old file or the new one, never a mixture; the hidden
``.NAME.*.tmp`` file a killed save leaves behind is removed by the next save
of the same target. :func:`writable_file` checks beforehand what such a save
will need (a long run checks its output paths before it starts). Both live
in :mod:`xplayers._files`, shared with the training loop's checkpoints and
plots, and are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import sys
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from xplayers._files import atomic_writer, writable_file
from xplayers._validation import FLOAT_DTYPES, fail
from xplayers._version import __version__
from xplayers.backend import to_numpy, use_backend
from xplayers.errors import ModelFileError, ModelFileWarning
from xplayers.network import NETWORKS, buffer_shapes, from_config, param_shapes

if sys.platform != "win32":  # a live writer holds a lock on its temporary file
    import fcntl

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_METADATA_BYTES",
    "MAX_NESTING",
    "METADATA_KEY",
    "READ_VERSIONS",
    "Checkpoint",
    "ModelFileError",
    "ModelFileWarning",
    "atomic_writer",
    "load",
    "read_checkpoint",
    "read_metadata",
    "save",
    "save_checkpoint",
    "writable_file",
]

#: The ``format`` name written into every model file.
FORMAT = "xplayers-network"
#: The newest file layout, read by :func:`load` with the older ones: version 2
#: adds the optional ``state`` of a training checkpoint (:func:`save_checkpoint`),
#: version 3 the ``buffers`` (``BatchNormalization``'s running averages). A
#: file is written with the oldest version that holds what it stores: a
#: network without buffers and without training state as version 1, readable
#: by every xplayers.
FORMAT_VERSION = 3
#: The format versions :func:`load` reads.
READ_VERSIONS = (1, 2, 3)
#: The name of the archive entry holding the JSON metadata.
METADATA_KEY = "__xplayers__"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
#: The largest JSON header written or read (a config is a few hundred bytes).
MAX_METADATA_BYTES = 64 * 2**20
#: The deepest nesting of lists and dicts in the JSON header (user metadata
#: sits two levels down), so that parsing it never exhausts the stack.
MAX_NESTING = 64
# zip compression methods written by save, and so the only ones read
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
# deflate produces at most 1032 bytes per compressed byte (258-byte matches in
# 2 bits); a member claiming more is lying about its size
_DEFLATE_RATIO = 1032
_DEFLATE_SLACK = 4096


class _Network(Protocol):
    """What :func:`save` needs from a network."""

    @property
    def params(self) -> Mapping[str, Any]: ...

    def config(self) -> dict[str, Any]: ...


def _buffers(network: Any) -> Mapping[str, Any]:
    """The network's buffers (running averages), or none for a network without them."""
    buffers = getattr(network, "buffers", None)
    return buffers if isinstance(buffers, Mapping) else {}


# --------------------------------------------------------------------------- saving


def save(
    network: _Network,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    compress: bool = False,
) -> Path:
    """Write `network`'s parameters and structure to a ``.npz`` file, atomically.

    Everything :func:`save` writes, :func:`load` reads back; what it could
    not read back is refused before anything is written. The network's
    ``buffers`` (``BatchNormalization``'s running averages, which its
    predictions at test time use) are stored beside the parameters.

    Parameters
    ----------
    network : TwoLayerNet, MultiLayerNet or Sequential
        Any network with a ``params`` mapping and a ``config()`` method, on
        any backend.
    path : str or os.PathLike
        The file to write; it is replaced if it exists (keeping its
        permission bits). No suffix is added.
    metadata : mapping, optional
        Extra JSON-serialisable information stored with the model (for
        example the training history); read it back with :func:`read_metadata`.
    compress : bool, default False
        Deflate the arrays. Weights compress poorly, so the default stores
        them as they are.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    xplayers.errors.LayerInputError
        A parameter name cannot be stored, a parameter is not float32 or
        float64 or holds NaN or infinity, or `metadata` or the config is not
        JSON-serialisable, nested more than :data:`MAX_NESTING` deep or
        larger than :data:`MAX_METADATA_BYTES` once encoded (all
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
    with atomic_writer(target) as f:
        _write_archive(f, {METADATA_KEY: header, **arrays}, compress=compress)
    return target


def _write_archive(f: IO[bytes], arrays: Mapping[str, npt.NDArray[Any]], *, compress: bool) -> None:
    """Write `arrays` as the ``.npy`` members of a zip, as :func:`numpy.savez` does.

    The archive is written here rather than by ``numpy.savez``, whose own
    keyword arguments (``file``, ``allow_pickle``) would collide with
    parameters of those names.
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(f, "w", compression=method, allowZip64=True) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)


def _prepare(
    network: _Network,
    metadata: Mapping[str, Any] | None,
    state: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
) -> tuple[dict[str, npt.NDArray[Any]], npt.NDArray[np.uint8]]:
    """Host copies of the parameters, buffers and state arrays and the encoded header, checked."""
    arrays, entries = _host_arrays(network.params.items(), "network", "parameter")
    buffers, buffer_entries = _host_arrays(_buffers(network).items(), "network", "buffer")
    config = network.config()
    for what, implied, written in (
        ("parameters", _param_shapes(config), entries),
        ("buffers", _buffer_shapes(config), buffer_entries),
    ):
        stored = {e["name"]: (tuple(e["shape"]), e["dtype"]) for e in written}
        if stored != implied:
            fail(
                "save",
                "network",
                f"the {what} its config() implies (else load could not rebuild it)",
                _mismatch(stored, implied),
            )

    version = 3 if buffer_entries else 1 if state is None else 2
    doc = {
        "format": FORMAT,
        "format_version": version,
        "xplayers_version": __version__,
        "config": config,
        "params": entries,
        "metadata": dict(metadata) if metadata is not None else {},
    }
    if buffer_entries:
        arrays.update(buffers)
        doc["buffers"] = buffer_entries
    if state is not None:
        data, extra = state
        more, more_entries = _host_arrays(extra.items(), "state", "state array")
        clash = sorted(set(more) & set(arrays))
        if clash:
            fail("save", "state", "array names other than the parameters'", repr(clash)[:200])
        arrays.update(more)
        doc["state"] = {"data": dict(data), "arrays": more_entries}
    return arrays, np.frombuffer(_encode(doc), dtype=np.uint8)


def _host_arrays(
    items: Iterable[tuple[Any, Any]], arg: str, what: str
) -> tuple[dict[str, npt.NDArray[Any]], list[dict[str, Any]]]:
    """Checked host copies of named arrays, and their ``{name, shape, dtype}`` entries."""
    arrays: dict[str, npt.NDArray[Any]] = {}
    entries = []
    for name, value in items:
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name == METADATA_KEY:
            fail(
                "save",
                arg,
                f"{what} names of letters, digits, '_', '.', '-' (not starting with a digit)",
                repr(name),
            )
        host = np.ascontiguousarray(to_numpy(value))
        if host.dtype.name not in FLOAT_DTYPES:
            fail("save", arg, f"float32 or float64 {what}s ({name})", str(host.dtype))
        bad = host.size - int(np.count_nonzero(np.isfinite(host)))
        if bad:
            fail(
                "save",
                arg,
                f"finite {what}s ({name!r})",
                f"{bad} NaN or infinite value(s) of {host.size}",
                "A network with NaN or infinite weights has diverged; lower the "
                "learning rate and train again",
            )
        if host.dtype.byteorder not in "=|":
            host = host.astype(host.dtype.newbyteorder("="))
        arrays[name] = host
        entries.append({"name": name, "shape": list(host.shape), "dtype": host.dtype.name})
    return arrays, entries


_JSON_HINT = (
    "JSON-serialisable metadata and network config (str, int, finite float, "
    "bool, None, lists and dicts with str keys)"
)


def _encode(doc: dict[str, Any]) -> bytes:
    """The header as UTF-8 JSON, refusing up front whatever :func:`load` would refuse."""
    problem = _nesting_problem(doc)
    if problem:
        fail("save", "metadata", _JSON_HINT, problem)
    try:
        blob = json.dumps(doc, allow_nan=False, sort_keys=True, ensure_ascii=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        fail("save", "metadata", _JSON_HINT, f"{type(exc).__name__}: {exc}")
    if len(blob) > MAX_METADATA_BYTES:
        fail(
            "save",
            "metadata",
            f"at most {MAX_METADATA_BYTES} bytes of metadata once encoded as JSON",
            f"{len(blob)} bytes",
        )
    try:
        json.loads(blob)  # as load will: an int of over 4,300 digits, for one, does not parse
    except ValueError as exc:
        fail("save", "metadata", _JSON_HINT, f"{type(exc).__name__}: {exc}")
    return blob


def _nesting_problem(doc: Any) -> str:
    """Why `doc` cannot be stored as written (too deep, a key not a str), or ``""``.

    Walked without recursion, so that a 5,000-deep (or cyclic) value is
    reported, not a ``RecursionError``.
    """
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
            bad = next((k for k in value if not isinstance(k, str)), None)
            if bad is not None:
                return f"a dict key {bad!r} of type {type(bad).__name__} (keys must be str)"
        elif isinstance(value, (list, tuple)):
            children = value
        else:
            continue
        if depth > MAX_NESTING:
            return f"lists and dicts nested more than {MAX_NESTING} deep"
        stack.extend((child, depth + 1) for child in children)
    return ""


# --------------------------------------------------------------------------- loading


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a model file's JSON header without reading the parameters.

    Every check of :func:`load` that needs no parameter data is made: the
    file is a zip archive of ``.npy`` members, the header parses and has the
    right format and version, every declared parameter is present with its
    declared shape and dtype, nothing undeclared is stored, and the declared
    parameters are those of the network the config describes.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.

    Returns
    -------
    dict
        ``format``, ``format_version``, ``xplayers_version``, ``config``,
        ``params`` (name, shape and dtype of each), the user ``metadata``,
        and in a version-3 file ``buffers`` (as ``params``).

    Raises
    ------
    ModelFileError
        The file is missing, unreadable, or fails a check; the message names
        the file and the problem. No other exception escapes.
    """
    where = Path(path)
    with _reading(where), _open(where) as archive:
        return _check_archive(archive).doc


def load(path: str | os.PathLike[str], *, backend: str | None = None, device: Any = None) -> Any:
    """Load a network saved by :func:`save`, checking everything before using any of it.

    The checks, in order: the path is a regular file holding a zip archive
    of ``.npy`` members, stored or deflated (the methods :func:`save`
    writes), whose sizes fit in the file; its JSON header parses and names
    this format and version; every declared parameter is present with its
    declared shape and a float32 or float64 dtype (read from the ``.npy``
    headers, so object arrays are refused before any data is read); no
    undeclared array is stored; the declared parameters are exactly those of
    the network the config describes (checked without building it, so a
    small file declaring a huge network allocates nothing). Only then is the
    data read, never more bytes than declared, and every value must be
    finite. Nothing is ever unpickled.

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
        The network, with parameters and buffers (running averages)
        bit-identical to those saved.

    Warns
    -----
    ModelFileWarning
        The file was written before buffers were stored (format version 1
        or 2) and the network has some: they start as in a new network
        (zeros), so its predictions at test time are not the saved
        network's. The warning names the file and the missing arrays.

    Raises
    ------
    ModelFileError
        The file is missing, damaged, or fails a check (a ``ValueError``);
        the message names the file and the problem. No other exception
        escapes for a bad file.
    xplayers.BackendUnavailableError
        `backend` cannot be used here.

    Examples
    --------
    See :func:`save`.
    """
    where = Path(path)
    with _reading(where), _open(where) as archive:
        checked = _check_archive(archive)
        doc = checked.doc
        arrays, buffers = (
            {e["name"]: _read_array(archive, e, checked.layout[e["name"]]) for e in entries}
            for entries in (doc["params"], doc.get("buffers", []))
        )
    _warn_lacking(where, checked)
    if backend is None:
        return _build(where, doc["config"], arrays, buffers)
    with use_backend(backend, device):
        return _build(where, doc["config"], arrays, buffers)


def _warn_lacking(path: Path, checked: _Checked) -> None:
    """Warn that an older file lacks the buffers its network has."""
    if checked.lacking:
        warnings.warn(
            f"model file {str(path)!r}: written with format version "
            f"{checked.doc['format_version']}, before running averages were stored; it lacks "
            f"{_names(checked.lacking)}, which start as in a new network (zeros), so "
            "predictions at test time differ from the saved network's until it is trained "
            "again (save it again to store them)",
            ModelFileWarning,
            stacklevel=3,
        )


def save_checkpoint(
    network: _Network,
    path: str | os.PathLike[str],
    *,
    state: Mapping[str, Any],
    arrays: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a network with training state (a checkpoint), atomically, like :func:`save`.

    The file is a model file (:func:`load` reads the network from it) of
    format version 2, with a header field ``state``: `state` as JSON data
    and the declared name, shape and dtype of each of `arrays`, stored as
    ``.npy`` members beside the parameters. Never pickled.

    Parameters
    ----------
    network : TwoLayerNet, MultiLayerNet or Sequential
    path : str or os.PathLike
    state : mapping
        JSON-serialisable data (for :func:`xplayers.training.train`: the
        optimizer's class and hyper-parameters, the batch-order generator's
        state, the iteration).
    arrays : mapping of str to array
        Named float32 or float64 arrays (an optimizer's state), whose names
        differ from the parameters'.
    metadata : mapping, optional
        As for :func:`save`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    xplayers.errors.LayerInputError
        As for :func:`save`, for the state and its arrays too.
    OSError
        The file cannot be written; the previous one is left as it was.
    """
    target = Path(path)
    members, header = _prepare(network, metadata, (state, arrays))
    with atomic_writer(target) as f:
        _write_archive(f, {METADATA_KEY: header, **members}, compress=False)
    return target


@dataclass(frozen=True)
class Checkpoint:
    """What :func:`read_checkpoint` reads: the checked header and the host arrays.

    Attributes
    ----------
    header : dict
        As :func:`read_metadata` returns it, with ``state``.
    params : dict of str to numpy.ndarray
        The network's parameters.
    state : dict
        The JSON `state` given to :func:`save_checkpoint` (empty for a plain
        model file).
    arrays : dict of str to numpy.ndarray
        The state arrays.
    buffers : dict of str to numpy.ndarray
        The network's buffers (running averages); empty in a file written
        before they were stored.
    lacking : tuple of str
        The buffers the stored network has but an older file (format
        version 1 or 2) does not hold.
    """

    header: dict[str, Any]
    params: dict[str, npt.NDArray[Any]]
    state: dict[str, Any]
    arrays: dict[str, npt.NDArray[Any]]
    buffers: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    lacking: tuple[str, ...] = ()


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint (or a model file) with every check of :func:`load`.

    Nothing is built: the parameters and state arrays come back as host
    NumPy arrays, bit for bit.

    Raises
    ------
    ModelFileError
        As for :func:`load`.
    """
    where = Path(path)
    with _reading(where), _open(where) as archive:
        checked = _check_archive(archive)
        doc = checked.doc
        state = doc.get("state", {"data": {}, "arrays": []})
        params, buffers, arrays = (
            {e["name"]: _read_array(archive, e, checked.layout[e["name"]]) for e in entries}
            for entries in (doc["params"], doc.get("buffers", []), state["arrays"])
        )
    return Checkpoint(doc, params, state["data"], arrays, buffers, tuple(checked.lacking))


def _error(path: Path, problem: str) -> ModelFileError:
    return ModelFileError(f"model file {str(path)!r}: {problem}")


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn whatever else reading a file raises into a :class:`ModelFileError`."""
    try:
        yield
    except ModelFileError:
        raise
    except MemoryError:
        raise _error(path, "needs more memory than is available to load") from None
    except RecursionError:
        raise _error(path, "metadata nested too deeply to parse") from None
    except Exception as exc:
        raise _error(path, f"cannot be read ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class _Archive:
    """An open model file: its path, its zip directory and its length in bytes."""

    path: Path
    zip: zipfile.ZipFile
    size: int
    members: dict[str, zipfile.ZipInfo]


@dataclass(frozen=True)
class _Checked:
    """A checked header, the stored dtype and data offset of each array, the buffers lacking."""

    doc: dict[str, Any]
    layout: dict[str, tuple[np.dtype[Any], int]]
    lacking: list[str]


def _open_regular(path: Path) -> IO[bytes]:
    """Open `path` for reading if it is a regular file (a FIFO or a device is refused).

    The file is opened without blocking (``O_NONBLOCK``: a FIFO would wait
    for a writer forever) and checked with ``fstat`` on the open descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _error(path, "no such file") from None
    except IsADirectoryError:
        raise _error(path, "is a directory, not a model file") from None
    except OSError as exc:
        raise _error(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _error(path, "is a directory, not a model file")
        if not stat.S_ISREG(mode):
            raise _error(
                path, "is not a regular file (a FIFO, socket or device?), not a model file"
            )
        if sys.platform != "win32":
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_NOT_A_MODEL = "not an xplayers model file: not a .npz archive (a zip of .npy arrays)"


@contextlib.contextmanager
def _open(path: Path) -> Iterator[_Archive]:
    # The file is opened here, not by numpy.load: numpy.load treats what is
    # not a zip or an .npy as a pickle and says so, and it leaks its own file
    # handle when a zip turns out damaged.
    with _open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(6)
        f.seek(0)
        if magic == b"\x93NUMPY":
            raise _error(
                path, "is a single .npy array, not a .npz archive written by xplayers.io.save"
            )
        if magic[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise _error(path, f"{_NOT_A_MODEL} written by xplayers.io.save")
        try:
            zf = zipfile.ZipFile(f)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise _error(
                path, f"{_NOT_A_MODEL} written by xplayers.io.save ({type(exc).__name__}: {exc})"
            ) from None
        with zf:
            yield _Archive(path, zf, size, _members(path, zf, size))


def _members(path: Path, zf: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    """The ``.npy`` members by array name, each checked before any is decompressed."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename
        if not name.endswith(".npy"):
            raise _error(path, f"archive entry {name!r} is not a .npy array")
        key = name[: -len(".npy")]
        if key in members:
            raise _error(path, f"archive entry {name!r} is stored twice")
        if info.flag_bits & 0x1:
            raise _error(path, f"archive entry {name!r} is encrypted")
        if info.compress_type not in _METHODS:
            raise _error(
                path,
                f"archive entry {name!r} uses zip compression method {info.compress_type}; "
                "xplayers writes and reads only stored and deflated entries",
            )
        if info.header_offset + 30 + info.compress_size > size:
            raise _error(
                path,
                f"archive entry {name!r} claims {info.compress_size} bytes at offset "
                f"{info.header_offset}, past the end of the {size}-byte file (truncated?)",
            )
        limit = (
            info.compress_size
            if info.compress_type == zipfile.ZIP_STORED
            else _DEFLATE_RATIO * info.compress_size + _DEFLATE_SLACK
        )
        if info.file_size > limit:
            raise _error(
                path,
                f"archive entry {name!r} claims {info.file_size} bytes from "
                f"{info.compress_size} {_METHODS[info.compress_type]} bytes, more than "
                "that can hold (damaged or forged sizes)",
            )
        members[key] = info
    return members


def _member(archive: _Archive, key: str) -> zipfile.ZipInfo:
    info = archive.members.get(key)
    if info is None:
        raise _error(archive.path, f"archive entry {key!r} is not a .npy array")
    return info


def _npy_header(archive: _Archive, key: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Shape, dtype and header length of archive entry `key`, from its header only."""
    path = archive.path
    info = _member(archive, key)
    try:
        with archive.zip.open(info) as f:
            major, _ = np.lib.format.read_magic(f)
            if major == 1:
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif major == 2:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise _error(path, f"entry {key!r} uses .npy format version {major}.x")
            offset = f.tell()
    except ModelFileError:
        raise
    except (OSError, ValueError, EOFError, SyntaxError, zipfile.BadZipFile, zlib.error) as exc:
        raise _error(path, f"entry {key!r} is damaged ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise _error(
            path, f"entry {key!r} is an object array (refused: loading it would need pickle)"
        )
    if fortran and len(shape) > 1:
        raise _error(path, f"entry {key!r} is in Fortran order; xplayers writes C order")
    size = math.prod(shape) * dtype.itemsize
    if info.file_size != offset + size:
        raise _error(
            path,
            f"entry {key!r} holds {info.file_size - offset} data bytes but its header "
            f"(shape {tuple(shape)}, dtype {dtype}) implies {size}",
        )
    return tuple(shape), dtype, offset


def _names(names: Any) -> str:
    return ", ".join(repr(n) for n in names)


def _check_archive(archive: _Archive) -> _Checked:
    """Check the header, that the archive holds exactly the declared arrays, and the config."""
    path = archive.path
    doc = _read_header(archive)
    entries = doc["params"] + doc.get("buffers", []) + doc.get("state", {}).get("arrays", [])
    declared = _check_entries(path, entries)
    stored = set(archive.members) - {METADATA_KEY}
    missing = [n for n in declared if n not in stored]
    if missing:
        raise _error(path, f"declared parameter(s) {_names(missing)} missing from the archive")
    extra = sorted(stored - set(declared))
    if extra:
        raise _error(path, f"undeclared array(s) {_names(extra)} in the archive")
    layout = {}
    for entry in entries:
        name = entry["name"]
        shape, dtype, offset = _npy_header(archive, name)
        layout[name] = (dtype, offset)
        if list(shape) != entry["shape"]:
            raise _error(
                path,
                f"parameter {name!r} has shape {shape}, declared {tuple(entry['shape'])}",
            )
        if dtype.kind != "f" or dtype.name != entry["dtype"]:
            raise _error(path, f"parameter {name!r} has dtype {dtype}, declared {entry['dtype']}")
    return _Checked(doc, layout, _check_config(path, doc))


def _check_config(path: Path, doc: dict[str, Any]) -> list[str]:
    """The declared parameters and buffers must be those the config implies (nothing is built).

    Returns the buffers an older file (before version 3) lacks.
    """
    try:
        expected = _param_shapes(doc["config"])
        buffers = _buffer_shapes(doc["config"])
    except (ValueError, TypeError, KeyError) as exc:
        raise _error(path, f"the stored network config is not valid: {exc}") from None
    declared = {e["name"]: (tuple(e["shape"]), e["dtype"]) for e in doc["params"]}
    if declared != expected:
        raise _error(
            path,
            f"parameters do not fit the stored network config: {_mismatch(declared, expected)}",
        )
    if doc["format_version"] < 3:
        return list(buffers)
    declared = {e["name"]: (tuple(e["shape"]), e["dtype"]) for e in doc.get("buffers", [])}
    if declared != buffers:
        raise _error(
            path, f"buffers do not fit the stored network config: {_mismatch(declared, buffers)}"
        )
    return []


def _mismatch(
    declared: Mapping[str, tuple[tuple[int, ...], str]],
    expected: Mapping[str, tuple[tuple[int, ...], str]],
) -> str:
    """The first differences between parameter layouts, for an error message."""
    names = [*expected, *(n for n in declared if n not in expected)]
    problems = [
        f"{name!r} is {declared.get(name, 'missing')}, the config implies "
        f"{expected.get(name, 'none')}"
        for name in names
        if declared.get(name) != expected.get(name)
    ]
    return "; ".join(problems[:4]) + ("; ..." if len(problems) > 4 else "")


def _param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The parameter names, shapes and dtypes a network config implies, allocating nothing."""
    shapes = param_shapes(config)  # checks the class, the keys and the sizes
    dtype = NETWORKS[config["class"]].dtype(config, "param_shapes")
    return {name: (shape, dtype) for name, shape in shapes.items()}


def _buffer_shapes(config: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The buffer names, shapes and dtypes a network config implies, allocating nothing."""
    shapes = buffer_shapes(config)
    dtype = NETWORKS[config["class"]].dtype(config, "buffer_shapes")
    return {name: (shape, dtype) for name, shape in shapes.items()}


def _read_header(archive: _Archive) -> dict[str, Any]:
    """Parse the JSON header and check its format, version and field types."""
    path = archive.path
    if METADATA_KEY not in archive.members:
        entries = _names(sorted(archive.members)[:10]) or "none"
        raise _error(
            path,
            f"no {METADATA_KEY!r} metadata entry: not a file written by xplayers.io.save "
            f"(entries: {entries})",
        )
    shape, dtype, offset = _npy_header(archive, METADATA_KEY)
    if dtype != np.uint8 or len(shape) != 1:
        raise _error(path, f"metadata entry must be a 1-d uint8 array; got {dtype} {shape}")
    if shape[0] > MAX_METADATA_BYTES:
        raise _error(
            path, f"metadata entry is {shape[0]} bytes, over the {MAX_METADATA_BYTES}-byte limit"
        )
    raw = _read_data(archive, METADATA_KEY, offset, shape[0])
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise _error(path, "metadata is nested too deeply to parse") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise _error(path, f"metadata is not valid UTF-8 JSON ({exc})") from None
    problem = _nesting_problem(doc)
    if problem:
        raise _error(path, f"metadata has {problem}")
    if not isinstance(doc, dict):
        raise _error(path, f"metadata must be a JSON object; got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise _error(path, f"format is {doc.get('format')!r}, expected {FORMAT!r}")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in READ_VERSIONS:
        written = doc.get("xplayers_version", "unknown")
        hint = (
            f" (written by xplayers {written!r}; upgrade xplayers to read it)"
            if isinstance(version, int) and version > FORMAT_VERSION
            else ""
        )
        readable = ", ".join(map(str, READ_VERSIONS[:-1])) + f" and {READ_VERSIONS[-1]}"
        raise _error(path, f"format_version is {version!r}; this xplayers reads {readable}{hint}")
    for key, kind in (("config", dict), ("params", list), ("metadata", dict)):
        if not isinstance(doc.get(key), kind):
            raise _error(path, f"metadata field {key!r} must be a JSON {kind.__name__}")
    _check_buffers_field(path, doc, version)
    if "state" in doc:
        _check_state(path, doc["state"], version)
    return doc


def _check_buffers_field(path: Path, doc: dict[str, Any], version: int) -> None:
    """The optional ``buffers`` field: a list, in a version-3 file only."""
    if "buffers" not in doc:
        return
    if version < 3:
        raise _error(path, "metadata field 'buffers' needs format_version 3")
    if not isinstance(doc["buffers"], list):
        raise _error(path, "metadata field 'buffers' must be a JSON list")


def _check_state(path: Path, state: Any, version: int) -> None:
    if version < 2:
        raise _error(path, "metadata field 'state' needs format_version 2")
    if not (
        isinstance(state, dict)
        and set(state) == {"data", "arrays"}
        and isinstance(state["data"], dict)
        and isinstance(state["arrays"], list)
    ):
        raise _error(path, "metadata field 'state' must be {'data': {...}, 'arrays': [...]}")


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
            and e.get("dtype") in FLOAT_DTYPES
        )
        if not ok:
            raise _error(
                path,
                f"params[{i}] must be {{'name': str, 'shape': [int >= 0, ...], "
                f"'dtype': 'float32' or 'float64'}}; got {e!r}"[:300],
            )
        if not _NAME.fullmatch(e["name"]) or e["name"] == METADATA_KEY:
            raise _error(path, f"params[{i}] has an invalid name {e['name'][:200]!r}")
        if e["name"] in names:
            raise _error(path, f"parameter {e['name']!r} is declared twice")
        names.append(e["name"])
    return names


def _read_data(archive: _Archive, key: str, offset: int, nbytes: int) -> bytearray:
    """The `nbytes` data bytes of member `key` after its header: never more are inflated.

    The member's size was checked against its header, so reading exactly
    `nbytes` reaches its end, where :mod:`zipfile` checks the CRC.
    """
    buf = bytearray(nbytes)
    view = memoryview(buf)
    try:
        with archive.zip.open(_member(archive, key)) as member:
            f: Any = member  # a ZipExtFile, which has readinto
            f.read(offset)
            done = 0
            while done < nbytes:
                n = f.readinto(view[done : done + 2**24])
                if not n:
                    break
                done += n
            extra = f.read(1)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _error(
            archive.path, f"entry {key!r} is damaged ({type(exc).__name__}: {exc})"
        ) from None
    if done != nbytes or extra:
        raise _error(archive.path, f"entry {key!r} is damaged (its data ends early or late)")
    return buf


def _read_array(
    archive: _Archive, entry: Mapping[str, Any], layout: tuple[np.dtype[Any], int]
) -> npt.NDArray[Any]:
    name, shape = entry["name"], tuple(entry["shape"])
    dtype, offset = layout
    data = _read_data(archive, name, offset, math.prod(shape) * dtype.itemsize)
    value = np.frombuffer(data, dtype=dtype).reshape(shape)
    if value.dtype != np.dtype(entry["dtype"]):  # same kind and size, other byte order
        value = value.astype(entry["dtype"])
    bad = value.size - int(np.count_nonzero(np.isfinite(value)))
    if bad:
        raise _error(
            archive.path,
            f"parameter {name!r} holds {bad} NaN or infinite value(s) of {value.size} "
            "(a diverged network; refused)",
        )
    return value


def _build(
    path: Path,
    config: dict[str, Any],
    arrays: dict[str, npt.NDArray[Any]],
    buffers: dict[str, npt.NDArray[Any]],
) -> Any:

    try:
        network = from_config(config, params=arrays)
    except (ValueError, TypeError, KeyError) as exc:
        raise _error(path, f"parameters do not fit the stored network config: {exc}") from exc
    except MemoryError:
        raise _error(path, "needs more memory than is available to build") from None
    if not buffers:
        return network
    try:
        network.load_buffers(buffers)
    except (ValueError, TypeError, KeyError) as exc:
        raise _error(path, f"buffers cannot be used: {exc}") from exc
    return network
