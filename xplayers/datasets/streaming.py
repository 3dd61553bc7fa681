"""Mini-batches streamed block by block from a dataset larger than memory.

A *chunked* dataset is stored in blocks of rows: a Dask array (its row
chunks), a zarr array (its row chunks), or a folder of ``.npy`` files (one
block per file, in the order of their sorted names, opened as one array).
:func:`open_rows` opens any of them as :class:`Rows`, which reads one row
range at a time; nothing reads the whole dataset at once.

:class:`StreamLoader` turns a pair of them (inputs and labels) into training
mini-batches with bounded memory:

* each epoch visits the blocks in a new random order and the rows of each
  block in a new random permutation; the rows left over at the end of a
  block (fewer than a batch) are carried into the next block's first batch,
  so an epoch has ``ceil(N / batch_size)`` batches as with
  :class:`~xplayers.datasets.BatchLoader`, all full but the last. This is a
  *block-local* shuffle: two rows of different blocks never share a batch
  unless they meet at a block boundary, so store the rows in random order
  (or with classes mixed in every block) when that matters;
* a background thread reads the next ``prefetch`` blocks while the current
  one trains, so reading overlaps computing; at most ``prefetch + 1`` blocks
  (plus one batch) are held on the host at any time;
* each batch is moved to the current backend (:func:`xplayers.asarray`), so
  the model stays on its own backend and device.

:func:`xplayers.training.train` uses it when it is given a chunked dataset.
Random-row access into a Dask array (what :class:`BatchLoader` does on host
arrays) would read the whole array for every batch, so it is refused there
with an error naming this module.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from xplayers._validation import describe, fail, positive_int
from xplayers.backend import asarray, record_of, to_numpy
from xplayers.errors import ClusterError, DatasetError
from xplayers.functional import labels_in_range

__all__ = [
    "NpyFolder",
    "Rows",
    "StreamLoader",
    "check_labels",
    "is_chunked",
    "open_dataset",
    "open_rows",
]

_Array = npt.NDArray[Any]

#: How a refusal of random-row access names the way out.
HINT = (
    "Pass it to xplayers.training.train, which streams it block by block, or use "
    "xplayers.datasets.streaming.StreamLoader"
)


def _is_zarr(a: object) -> bool:
    return type(a).__module__.split(".")[0] == "zarr" and hasattr(a, "chunks")


def is_chunked(a: object) -> bool:
    """Whether `a` is a dataset :func:`open_rows` reads block by block.

    True for Dask arrays, zarr arrays, :class:`Rows`, and paths (``str`` or
    ``os.PathLike``) of a folder of ``.npy`` files or of a zarr array.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.datasets.streaming import is_chunked
    >>> is_chunked(np.zeros(3)), is_chunked("no/such/folder")
    (False, False)
    """
    if isinstance(a, Rows) or _is_lazy_array(a) or _is_zarr(a):
        return True
    if isinstance(a, (str, os.PathLike)):
        p = Path(a)
        return p.is_dir() and (_is_zarr_path(p) or any(p.glob("*.npy")))
    return False


def _is_lazy_array(a: Any) -> bool:
    """An array of a lazy backend (Dask), as its backend record says."""
    found = record_of(a)
    return found is not None and found.lazy


def _is_zarr_path(p: Path) -> bool:
    return (p / "zarr.json").is_file() or (p / ".zarray").is_file()


class Rows:
    """Rows of a chunked array, read one row range at a time.

    Attributes
    ----------
    shape : tuple of int
        ``(N, ...)``.
    dtype : numpy.dtype
    cuts : tuple of int
        Block boundaries ``0 = c_0 < c_1 < ... < c_B = N``: each block is
        read at once, and no read crosses one.
    """

    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    cuts: tuple[int, ...]
    #: What the rows are read from, for messages (``"a zarr array"``, a file's path).
    source: str = ""

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> Any:
        """Return rows ``start:stop`` (within one block) as a host or device array."""
        raise NotImplementedError  # pragma: no cover - abstract

    def block_of(self, row: int) -> int:
        """The index of the block holding `row`."""
        return int(np.searchsorted(self.cuts, row, side="right")) - 1

    def block_source(self, block: int) -> str:
        """What block `block` is read from, for messages (a file of a folder, or :attr:`source`)."""
        return self.source

    def name_rows(self, start: int, stop: int) -> str:
        """Rows ``start:stop`` named for a message: their range, block and source."""
        i = self.block_of(start)
        where = f"rows {start} to {stop - 1} (block {i + 1} of {len(self.cuts) - 1}"
        source = self.block_source(i)
        return f"{where}, {source})" if source else f"{where})"

    def __getitem__(self, index: Any) -> Any:
        """Rows by a slice (or a tuple starting with one), for ``dask.array.from_array``."""
        rows, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            fail(type(self).__name__, "index", "a slice of rows", repr(index))
        start, stop, _ = rows.indices(self.shape[0])
        out = self.read(start, stop)
        key = (slice(None), *rest)
        return out[key] if rest else out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, "
            f"blocks={len(self.cuts) - 1})"
        )


class _LazyRows(Rows):
    """Rows of a Dask array: each read computes one row range (its own tasks only)."""

    source = "a Dask array"

    def __init__(self, a: Any) -> None:
        self.array = a
        self.shape = tuple(int(s) for s in a.shape)
        self.dtype = np.dtype(str(a.dtype))
        self.cuts = tuple(int(c) for c in np.cumsum((0, *a.chunks[0])))

    def read(self, start: int, stop: int) -> Any:
        try:
            return self.array[start:stop].compute()
        except Exception as exc:
            if not is_cluster_error(exc):
                raise
            raise ClusterError(
                f"reading {self.name_rows(start, stop)}: the Dask cluster failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def is_cluster_error(exc: BaseException) -> bool:
    """Whether `exc` is dask.distributed's own (a lost scheduler, worker or future)."""
    return type(exc).__module__.split(".")[0] == "distributed"


class _ZarrRows(Rows):
    """Rows of a zarr array, read by slicing (zarr reads only the chunks it needs)."""

    source = "a zarr array"

    def __init__(self, a: Any, name: str | None = None) -> None:
        self.array = a
        self.name = repr(a) if name is None else repr(name)
        self.shape = tuple(int(s) for s in a.shape)
        try:
            self.dtype = np.dtype(a.dtype)
        except TypeError:  # a zarr-only dtype (variable-length strings)
            raise DatasetError(f"zarr array {self.name} holds {a.dtype}, not numbers") from None
        step = max(int(a.chunks[0]), 1)
        n = self.shape[0]
        self.cuts = (*range(0, n, step), n) if n else (0,)

    def read(self, start: int, stop: int) -> Any:
        try:
            return np.asarray(self.array[start:stop])
        except Exception as exc:  # zarr's and its codecs' own types, whatever they are
            raise DatasetError(
                f"zarr array {self.name}: rows {start}:{stop} cannot be read "
                f"({type(exc).__name__}: {exc}); are its stored chunks damaged?"
            ) from exc


class NpyFolder(Rows):
    """A folder of ``.npy`` files opened as one array, one block per file.

    The files are taken in the order of their sorted names (zero-pad the
    numbers: ``part-0001.npy``) and must agree on everything but their
    length. Reading maps one file at a time (``mmap_mode="r"``) and copies
    the rows asked for.

    Parameters
    ----------
    path : str or os.PathLike
        The folder.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from xplayers.datasets.streaming import NpyFolder
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     np.save(f"{folder}/part-{i:04d}.npy", np.full((4, 2), i, dtype=np.float32))
    >>> rows = NpyFolder(folder)
    >>> rows.shape, rows.cuts
    ((12, 2), (0, 4, 8, 12))
    >>> rows[5:7]
    array([[1., 1.],
           [1., 1.]], dtype=float32)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        folder = Path(path)
        files = sorted(folder.glob("*.npy"))
        if not files:
            fail("NpyFolder", "path", "a folder holding .npy files", repr(str(folder)))
        lengths, tail, dtype = [], None, None
        for f in files:
            check_npy("NpyFolder", f)
            try:
                m = np.load(f, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DatasetError(
                    f"NpyFolder: {str(f)!r} is not a readable .npy file: {exc}"
                ) from exc
            if m.ndim == 0 or (tail is not None and (m.shape[1:] != tail or m.dtype != dtype)):
                shape = "a 0-d array" if m.ndim == 0 else f"shape {m.shape}, dtype {m.dtype}"
                raise DatasetError(
                    f"NpyFolder: {str(f)!r} holds {shape}; every file of the folder must "
                    f"hold rows of shape {tail} and dtype {dtype}"
                )
            tail, dtype = m.shape[1:], m.dtype
            lengths.append(int(m.shape[0]))
            del m
        self.path = folder
        self.files = tuple(files)
        self.shape = (sum(lengths), *(tail or ()))
        self.dtype = np.dtype(dtype)
        self.cuts = tuple(int(c) for c in np.cumsum((0, *lengths)))

    def block_source(self, block: int) -> str:
        """The file block `block` is read from."""
        return f"file {str(self.files[block])!r}"

    def read(self, start: int, stop: int) -> Any:
        """Rows ``start:stop`` of the one file holding them, copied from its mapping.

        Raises
        ------
        xplayers.errors.DatasetError
            The file cannot be read, or no longer holds the rows it held when
            the folder was opened (rewritten since); the message names it.
        """
        i = self.block_of(start)
        lo = self.cuts[i]
        if (start, stop) == (lo, self.cuts[i + 1]):  # the whole file: one read, no mapping
            return self._unchanged(i, self._load(i, None))
        m = self._unchanged(i, self._load(i, "r"))
        try:
            return np.array(m[start - lo : stop - lo])
        finally:
            del m

    def _load(self, i: int, mmap_mode: Literal["r"] | None) -> _Array:
        try:
            return np.load(self.files[i], mmap_mode=mmap_mode, allow_pickle=False)  # type: ignore[no-any-return]
        except (OSError, ValueError) as exc:
            raise DatasetError(
                f"NpyFolder: {str(self.files[i])!r} is not a readable .npy file: {exc}"
            ) from exc

    def _unchanged(self, i: int, a: _Array) -> _Array:
        """`a`, read from file `i`, if it still has the rows, shape and dtype it was opened with."""
        want = (self.cuts[i + 1] - self.cuts[i], *self.shape[1:])
        if a.shape != want or a.dtype != self.dtype:
            raise DatasetError(
                f"NpyFolder: {str(self.files[i])!r} changed after the folder was opened: it "
                f"held shape {want} and dtype {self.dtype}, now shape {a.shape} and dtype "
                f"{a.dtype}; open the folder again (a new train() call) to use the new rows"
            )
        return a


def check_npy(where: str, path: Path) -> None:
    """Refuse, before NumPy reads it, a file that is not a ``.npy`` array of plain values.

    :func:`numpy.load` takes what is not an ``.npy`` (or ``.npz``) file for
    a pickle and suggests unpickling it; an object array needs pickle too.

    Raises
    ------
    xplayers.errors.DatasetError
        The file cannot be opened, is not an ``.npy`` file, or holds objects.
    """
    try:
        with path.open("rb") as f:
            if f.read(6) != b"\x93NUMPY":
                problem = "is not a .npy file (it does not start with the .npy magic bytes)"
            else:
                f.seek(0)
                major, _ = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                _, _, dtype = read_header(f)
                problem = (
                    "holds an object array (refused: reading it would need pickle)"
                    if dtype.hasobject
                    else ""
                )
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        problem = f"is not a readable .npy file ({type(exc).__name__}: {exc})"
    if problem:
        raise DatasetError(f"{where}: {str(path)!r} {problem}")


def _load_npy(where: str, path: Path) -> _Array:
    """The array of the ``.npy`` file `path`, checked first (:func:`check_npy`)."""
    check_npy(where, path)
    try:
        array: _Array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(
            f"{where}: {str(path)!r} is not a readable .npy file ({type(exc).__name__}: {exc})"
        ) from exc
    return array


def open_rows(a: Any, *, where: str = "open_rows", arg: str = "a") -> Rows:
    """Open a chunked dataset as :class:`Rows`.

    Parameters
    ----------
    a : Dask array, zarr array, Rows, or path
        A path names a folder of ``.npy`` files (:class:`NpyFolder`) or a
        zarr array (needs ``zarr``: ``pip install "xplayers[dask]"``).

    Returns
    -------
    Rows

    Raises
    ------
    xplayers.errors.LayerInputError
        `a` is none of these, or has no rows (a 0-d array).
    """
    if isinstance(a, Rows):
        rows = a
    elif _is_lazy_array(a):
        rows = _LazyRows(a)
    elif _is_zarr(a):
        rows = _ZarrRows(a)
    elif isinstance(a, (str, os.PathLike)) and Path(a).is_dir():
        p = Path(a)
        rows = _ZarrRows(_open_zarr(p), str(p)) if _is_zarr_path(p) else NpyFolder(p)
    else:
        fail(
            where,
            arg,
            "a Dask array, a zarr array, or the path of a folder of .npy files or of a zarr array",
            describe(a),
        )
    if rows.ndim == 0:
        fail(where, arg, "an array with samples along axis 0", "a 0-d array")
    if rows.dtype.kind not in "biuf":
        fail(where, arg, "an array of numbers (bool, integer or float)", f"dtype {rows.dtype}")
    return rows


def _open_zarr(path: Path) -> Any:
    try:
        import zarr
    except ImportError as exc:
        raise DatasetError(
            f"reading the zarr array {str(path)!r} needs zarr ({exc}); "
            'install it with: pip install "xplayers[dask]" (from a checkout: pip install ".[dask]")'
        ) from exc
    try:
        return zarr.open_array(str(path), mode="r")
    except Exception as exc:  # zarr's own types (a group, damaged metadata), whatever they are
        raise DatasetError(
            f"{str(path)!r} is not a readable zarr array ({type(exc).__name__}: {exc})"
        ) from exc


def pair_cuts(x: Rows, t: Rows) -> tuple[int, ...]:
    """The block boundaries of both: every block of the result lies in one block of each."""
    return tuple(sorted(set(x.cuts) | set(t.cuts)))


def open_pair(where: str, arg: str, data: object) -> tuple[Rows, Rows] | None:
    """Open ``(x, t)`` as :class:`Rows` when either is chunked; None for host data."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        return None
    if not (is_chunked(data[0]) or is_chunked(data[1])):
        return None
    x = _rows_or_host(where, f"{arg}[0]", data[0])
    t = _rows_or_host(where, f"{arg}[1]", data[1])
    if x.shape[0] != t.shape[0] or x.shape[0] == 0:
        fail(
            where,
            arg,
            "x and t with the same number (>= 1) of samples along axis 0",
            f"shapes {x.shape} and {t.shape}",
        )
    return x, t


class _HostRows(Rows):
    """An in-memory NumPy array as one block (labels held in memory beside streamed inputs)."""

    def __init__(self, a: _Array, source: str = "an array in memory") -> None:
        self.array = a
        self.shape = tuple(a.shape)
        self.dtype = a.dtype
        self.cuts = (0, int(a.shape[0]))
        self.source = source

    def read(self, start: int, stop: int) -> Any:
        return self.array[start:stop]


def _rows_or_host(where: str, arg: str, a: object) -> Rows:
    if is_chunked(a):
        return open_rows(a, where=where, arg=arg)
    host = np.asarray(a)
    if host.ndim == 0:
        fail(where, arg, "an array with samples along axis 0", "a 0-d array")
    return open_rows(_HostRows(host), where=where, arg=arg)


def _host(a: Any) -> _Array:
    return a if isinstance(a, np.ndarray) else to_numpy(a)


def read_rows(rows: Rows, start: int, stop: int) -> Any:
    """``rows.read(start, stop)``, checked to hold ``stop - start`` rows of the opened shape.

    Raises
    ------
    xplayers.errors.DatasetError
        The read came back with another shape (the data changed after they
        were opened); the message names the rows and what they are read from.
    """
    out = rows.read(start, stop)
    want = (stop - start, *rows.shape[1:])
    if tuple(out.shape) != want:
        raise DatasetError(
            f"{rows.name_rows(start, stop)}: read {tuple(out.shape)} instead of {want}; the "
            "data changed after they were opened"
        )
    return out


def check_labels(where: str, arg: str, t: Rows, classes: int) -> None:
    """Check the labels `t` of a network with `classes` outputs, every block, before training.

    Integer labels ``(N,)`` must lie in ``0..classes-1``; rows ``(N, classes)``
    (one-hot or probabilities) pass as they are. Every block of `t` is read
    once (labels are small beside the inputs), so a bad label in the last
    block is refused before the first update, naming its rows and file.

    Raises
    ------
    xplayers.errors.LayerInputError
        Labels of another kind, or out of range; the message names `where`,
        `arg`, the first bad block's rows and what they are read from.
    """
    if t.ndim == 2 and t.shape[1] == classes:
        return
    if t.ndim != 1 or t.dtype.kind not in "iu":
        fail(
            where,
            arg,
            f"integer labels (N,) or one-hot rows (N, {classes}) for the network's "
            f"{classes} classes",
            f"labels of shape {t.shape} and dtype {t.dtype}",
        )
    for start, stop in itertools.pairwise(t.cuts):
        if stop > start:
            labels = read_rows(t, start, stop)
            check_label_block(where, arg, labels, classes, t.name_rows(start, stop), start)


def check_label_block(where: str, arg: str, tb: Any, classes: int, rows: str, start: int) -> None:
    """Check integer labels `tb` (one block, of any backend) lie in ``0..classes-1``.

    `rows` names the block in the message (:meth:`Rows.name_rows`), which
    also gives the first bad label's row (the block starts at row `start`).
    """
    if tb.shape[0] and not bool(labels_in_range(tb, classes)):
        host = to_numpy(tb)
        first = start + int(np.flatnonzero((host < 0) | (host >= classes))[0])
        fail(
            where,
            arg,
            f"labels from 0 to {classes - 1} for the network's {classes} classes",
            f"labels from {int(host.min())} to {int(host.max())} in {rows}; the first out of "
            f"range is {int(host[first - start])}, at row {first}",
        )


class _Prefetcher:
    """Read blocks in a background thread, at most `slots` of them held at once."""

    def __init__(self, x: Rows, t: Rows, spans: Sequence[tuple[int, int]], slots: int) -> None:
        self._ready: queue.Queue[Any] = queue.Queue()
        self._free = threading.Semaphore(slots)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(x, t, list(spans)), name="xplayers-prefetch", daemon=True
        )
        self._thread.start()

    def _run(self, x: Rows, t: Rows, spans: list[tuple[int, int]]) -> None:
        try:
            for start, stop in spans:
                while not self._free.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                block = (read_rows(x, start, stop), read_rows(t, start, stop))
                if self._stop.is_set():  # closed while reading: hold nothing
                    return
                self._ready.put(block)
                del block
        except BaseException as exc:  # handed to the consumer, raised there
            if not self._stop.is_set():
                self._ready.put(exc)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self

    def __next__(self) -> tuple[Any, Any]:
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]

    def done_with_block(self) -> None:
        self._free.release()

    def close(self) -> None:
        """Stop the thread, wait for it, and drop the blocks read ahead."""
        self._stop.set()
        self._thread.join(timeout=10)
        while not self._ready.empty():  # the thread has ended: nothing is added now
            self._ready.get_nowait()


def read_blocks(
    x: Rows, t: Rows, spans: Sequence[tuple[int, int]], prefetch: int = 1
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(x[a:b], t[a:b])`` for each span in order, the next ones read in the background.

    At most ``prefetch + 1`` blocks are held: the one yielded and those read
    ahead. Each block is checked to have the rows and shape it was opened
    with (:func:`read_rows`). Closing the generator, or an error, stops the
    thread and drops the blocks read ahead.
    """
    fetch = _Prefetcher(x, t, spans, prefetch + 1)
    try:
        for _ in range(len(spans)):
            block = next(fetch)
            yield block
            del block
            fetch.done_with_block()
    finally:
        fetch.close()


class StreamLoader:
    """Training mini-batches streamed from a chunked dataset, block by block.

    Iterate once per epoch. Each epoch visits the blocks in a random order and
    the rows of each block in a random permutation (see the module's notes:
    a block-local shuffle), from one generator seeded at construction, so the
    whole sequence repeats for the same `seed`. Batches are created on the
    current backend with :func:`xplayers.asarray` as they are yielded.

    Parameters
    ----------
    x, t : Dask array, zarr array, path or Rows (or a NumPy array for `t`)
        Inputs and labels with the same number of rows; opened with
        :func:`open_rows`. A NumPy array is held in memory as it is.
    batch_size : int
        Samples per batch.
    shuffle : bool, default True
        Random block order and permutations; otherwise stored order.
    seed : int, numpy.random.Generator or None, default None
    prefetch : int, default 1
        Blocks read ahead in a background thread (>= 1).
    drop_last : bool, default False
        Skip an epoch's last batch when it is smaller than `batch_size`.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from xplayers.datasets.streaming import StreamLoader
    >>> folder = tempfile.mkdtemp()
    >>> for i in range(3):
    ...     np.save(f"{folder}/x-{i}.npy", np.arange(4 * i, 4 * i + 4, dtype=np.float64)[:, None])
    >>> loader = StreamLoader(folder, np.arange(12), batch_size=5, seed=0)
    >>> len(loader), [int(tb.shape[0]) for xb, tb in loader]
    (3, [5, 5, 2])
    >>> sorted(int(v) for xb, tb in loader for v in tb) == list(range(12))
    True
    """

    def __init__(
        self,
        x: Any,
        t: Any,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int | np.random.Generator | None = None,
        prefetch: int = 1,
        drop_last: bool = False,
    ) -> None:
        where = "StreamLoader"
        pair = open_pair(where, "x, t", (x, t))
        if pair is None:
            pair = _rows_or_host(where, "x", x), _rows_or_host(where, "t", t)
            if pair[0].shape[0] != pair[1].shape[0]:
                fail(where, "t", f"{pair[0].shape[0]} rows like x", str(pair[1].shape[0]))
        self.x, self.t = pair
        self.batch_size = positive_int(where, "batch_size", batch_size)
        self.prefetch = positive_int(where, "prefetch", prefetch)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        cuts = pair_cuts(self.x, self.t)
        self.spans: tuple[tuple[int, int], ...] = tuple(
            (a, b) for a, b in itertools.pairwise(cuts) if b > a
        )
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = int(self.x.shape[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        order = self._rng.permutation(len(self.spans)) if self.shuffle else range(len(self.spans))
        spans = [self.spans[int(i)] for i in order]
        return self._batches(spans)

    def _batches(self, spans: list[tuple[int, int]]) -> Iterator[tuple[Any, Any]]:
        size = self.batch_size
        carry: tuple[_Array, _Array] | None = None
        xb: Any = None
        tb: Any = None
        hx: Any = None
        ht: Any = None
        try:
            for xb, tb in read_blocks(self.x, self.t, spans, self.prefetch):
                hx, ht = _host(xb), _host(tb)
                n = hx.shape[0]
                perm = self._rng.permutation(n) if self.shuffle else np.arange(n)
                start = 0
                if carry is not None:  # the previous block's leftover rows open this block
                    take = perm[: size - carry[0].shape[0]]
                    start = take.size
                    cx = np.concatenate([carry[0], hx[take]])
                    ct = np.concatenate([carry[1], ht[take]])
                    carry = None
                    if cx.shape[0] < size:
                        carry = cx, ct
                        del xb, tb, hx, ht
                        continue
                    yield asarray(cx), asarray(ct)
                while n - start >= size:
                    idx = perm[start : start + size]
                    start += size
                    yield asarray(hx[idx]), asarray(ht[idx])
                if start < n:
                    idx = perm[start:]
                    carry = hx[idx], ht[idx]
                del xb, tb, hx, ht  # let the reader reuse this block's slot
        except BaseException:  # a kept error's traceback keeps this frame: drop the block
            xb = tb = hx = ht = carry = None  # noqa: F841
            raise
        if carry is not None and not self.drop_last:
            yield asarray(carry[0]), asarray(carry[1])

    def chunks(self, size: int) -> Iterator[tuple[_Array, _Array]]:
        """Yield host ``(x, t)`` chunks of at most `size` rows in stored order (for evaluation)."""
        xb: Any = None
        tb: Any = None
        hx: Any = None
        ht: Any = None
        try:
            for xb, tb in read_blocks(self.x, self.t, self.spans, self.prefetch):
                hx, ht = _host(xb), _host(tb)
                for i in range(0, hx.shape[0], size):
                    yield hx[i : i + size], ht[i : i + size]
                del xb, tb, hx, ht
        except BaseException:  # a kept error's traceback keeps this frame: drop the block
            xb = tb = hx = ht = None  # noqa: F841
            raise

    def __repr__(self) -> str:
        return (
            f"StreamLoader(n={self.x.shape[0]}, blocks={len(self.spans)}, "
            f"batch_size={self.batch_size}, prefetch={self.prefetch}, shuffle={self.shuffle})"
        )


def open_dataset(path: str | os.PathLike[str]) -> tuple[Rows, Rows]:
    """Open a dataset folder holding inputs ``x`` and labels ``t``, for streaming.

    Each of ``x`` and ``t`` is a zarr array (``x.zarr`` or ``x``) or a folder
    of ``.npy`` files (``x/``); the labels may also be one ``t.npy`` file,
    held in memory.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from xplayers.datasets.streaming import open_dataset
    >>> root = tempfile.mkdtemp()
    >>> import os; os.mkdir(f"{root}/x")
    >>> np.save(f"{root}/x/0.npy", np.zeros((4, 2))); np.save(f"{root}/t.npy", np.arange(4))
    >>> x, t = open_dataset(root)
    >>> x.shape, t.shape
    ((4, 2), (4,))
    """
    root = Path(path)
    found: list[Rows] = []
    for name in ("x", "t"):
        candidates = [root / f"{name}.zarr", root / name]
        source = next((c for c in candidates if is_chunked(c)), None)
        if source is not None:
            found.append(open_rows(source, where="open_dataset", arg=f"{name} in {str(root)!r}"))
        elif name == "t" and (root / "t.npy").is_file():
            labels = root / "t.npy"
            host = _load_npy("open_dataset", labels)
            found.append(
                _rows_or_host("open_dataset", "t", _HostRows(host, f"file {str(labels)!r}"))
            )
        else:
            raise DatasetError(
                f"open_dataset: {str(root)!r} has no {name!r}: expected {name}.zarr, a folder "
                f"{name}/ of .npy files" + (", or t.npy" if name == "t" else "")
            )
    x, t = found
    if x.shape[0] != t.shape[0]:
        raise DatasetError(
            f"open_dataset: {str(root)!r} holds {x.shape[0]} inputs but {t.shape[0]} labels"
        )
    return x, t
