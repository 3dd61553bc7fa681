"""The current backend: the selector, and the helpers that act on arrays by their record.

The current backend is the innermost :func:`use_backend` block of the
calling context (a :class:`contextvars.ContextVar`), else the process-wide
one set by :func:`set_backend`, else the one named by the ``XPLAYERS_BACKEND``
environment variable when xplayers was imported, else NumPy on the CPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from xplayers.backend._core import Backend, record_of, resolve
from xplayers.backend._record import Record, Report
from xplayers.backend._records import RECORDS, check_name, record
from xplayers.errors import BackendContextError, BackendSelectionError, BackendUnavailableError

__all__ = [
    "ENV_VAR",
    "asarray",
    "backend_status",
    "get_backend",
    "is_lazy",
    "materialize",
    "materialize_all",
    "parse_spec",
    "prefer_gpu",
    "reading_waits",
    "report",
    "require_gpu",
    "set_backend",
    "sync",
    "use_backend",
]

log = logging.getLogger("xplayers")

ENV_VAR = "XPLAYERS_BACKEND"


def parse_spec(spec: str, source: str = ENV_VAR) -> tuple[str, str | None]:
    """Split ``"cupy:1"`` or ``"torch:cuda:0"`` into a name and a device.

    Examples
    --------
    >>> from xplayers.backend import parse_spec
    >>> parse_spec("torch:cuda:0")
    ('torch', 'cuda:0')
    >>> parse_spec("numpy")
    ('numpy', None)
    """
    name, _, device = spec.strip().partition(":")
    return check_name(name.strip().lower(), f"{source}={spec!r}"), device.strip() or None


def backend_status(name: str, device: Any = None) -> tuple[bool, str]:
    """Say whether a backend is usable here, and why not.

    Never allocates GPU memory (CuPy is probed with
    ``cupy.cuda.is_available()``, torch with ``torch.cuda.is_available()``).

    Returns
    -------
    usable : bool
    detail : str
        The resolved device when usable, else the reason.

    Examples
    --------
    >>> from xplayers import backend_status
    >>> backend_status("numpy")
    (True, 'cpu')
    """
    return record(name).status(device)


def report() -> list[Report]:
    """What ``xplayers info`` prints about every backend, without allocating device memory.

    Examples
    --------
    >>> from xplayers.backend import report
    >>> first = report()[0]
    >>> first.name, first.installed, first.usable, first.devices
    ('numpy', True, True, ('cpu',))
    """
    return [r.report() for r in RECORDS.values()]


# --------------------------------------------------------------------------- current backend


def _read_env() -> tuple[str, str | None] | BackendSelectionError | None:
    """The XPLAYERS_BACKEND setting at import; a bad name is kept and raised on first use."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        return parse_spec(raw)
    except BackendSelectionError as exc:
        return exc


_ENV_SPEC = _read_env()
_global: Backend | None = None
_scoped: contextvars.ContextVar[Backend | None] = contextvars.ContextVar(
    "xplayers_backend", default=None
)


def get_backend() -> Backend:
    """Return the backend new arrays are created on.

    Returns
    -------
    Backend
        Its ``name``, namespace ``xp`` and ``device``.

    Raises
    ------
    BackendSelectionError
        ``XPLAYERS_BACKEND`` names no known backend, or a device of the wrong
        kind (read at import, raised on first use so that ``xplayers info``
        still runs); a :class:`ValueError`.
    BackendUnavailableError
        The backend named by ``XPLAYERS_BACKEND`` cannot be used here (raised
        on first use, with the variable named in the message).

    Examples
    --------
    >>> import xplayers as xpl
    >>> with xpl.use_backend("array_api_strict"):
    ...     xpl.get_backend().name
    'array_api_strict'
    """
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    global _global
    if _global is None:
        if _ENV_SPEC is None:
            _global = resolve("numpy")
        elif isinstance(_ENV_SPEC, BackendSelectionError):
            raise BackendSelectionError(str(_ENV_SPEC))
        else:
            setting = f"selected by {ENV_VAR}={os.environ.get(ENV_VAR)!r}"
            try:
                _global = resolve(*_ENV_SPEC)
            except BackendSelectionError as exc:
                raise BackendSelectionError(f"{exc} ({setting})") from exc
            except BackendUnavailableError as exc:
                raise BackendUnavailableError(f"{exc} ({setting})") from exc
    return _global


def set_backend(name: str, device: Any = None) -> Backend:
    """Select the process-wide backend on which new arrays are created.

    A :func:`use_backend` block still wins inside its scope.

    Parameters
    ----------
    name : {"numpy", "cupy", "torch", "jax", "dask", "array_api_strict"}
        The backend.
    device : str, int or the library's device object, optional
        ``"cpu"``; a GPU index or ``"cuda:N"`` for CuPy; ``"cuda:N"`` or
        ``"mps"`` for torch; ``"gpu:N"`` or ``"cpu"`` for JAX; ``"device1"``
        for array-api-strict. Default: the backend's default device.

    Returns
    -------
    Backend
        The backend now selected.

    Raises
    ------
    BackendSelectionError
        Unknown `name` (the message lists the valid names), or a `device` of
        the wrong type; a :class:`ValueError`.
    BackendUnavailableError
        The backend is not installed or the device is unusable. The current
        backend is left unchanged: there is no silent fallback.

    Examples
    --------
    >>> import xplayers as xpl
    >>> previous = xpl.get_backend()
    >>> xpl.set_backend("array_api_strict").name
    'array_api_strict'
    >>> xpl.set_backend(previous.name, previous.device) == previous
    True
    """
    global _global
    _global = resolve(name, device)
    return _global


@contextlib.contextmanager
def use_backend(name: str, device: Any = None) -> Iterator[Backend]:
    """Select a backend inside a ``with`` block only.

    The choice is stored in a :class:`contextvars.ContextVar` and restored on
    exit (also when the block raises). It follows the rules of context
    variables: other threads do not see it; an asyncio task *created inside*
    the block copies the context at creation and so keeps the block's backend
    for its whole life, also after the block has exited; tasks created
    outside the block do not see it. The block must be exited in the context
    it was entered in (not, say, in an async generator resumed by another
    task): otherwise :class:`~xplayers.errors.BackendContextError` is raised.

    Parameters
    ----------
    name, device
        As for :func:`set_backend`; both are checked before the block runs.

    Yields
    ------
    Backend
        The backend selected inside the block.

    Examples
    --------
    >>> import xplayers as xpl
    >>> before = xpl.get_backend()
    >>> with xpl.use_backend("array_api_strict", "device1") as b:
    ...     xpl.asarray([1.0, 2.0]).device == b.device
    True
    >>> xpl.get_backend() == before
    True
    """
    backend = resolve(name, device)
    token = _scoped.set(backend)
    try:
        yield backend
    finally:
        try:
            _scoped.reset(token)
        except ValueError as exc:  # "<Token ...> was created in a different Context"
            raise BackendContextError(
                f"use_backend({backend.name!r}): the block was exited in another context "
                "(thread or asyncio task) than the one it was entered in; enter and exit "
                "it in the same task, or give each task its own block"
            ) from exc


def asarray(obj: Any, dtype: Any = None) -> Any:
    """Create an array on the current backend and device.

    Parameters
    ----------
    obj : array_like
        Data: sequences, scalars, NumPy arrays or arrays of another backend.
    dtype : str or dtype, optional
        For example ``"float32"``. Default: inferred from `obj`.

    Returns
    -------
    array

    Examples
    --------
    >>> import xplayers as xpl
    >>> xpl.asarray([[1, 2], [3, 4]], dtype="float32").shape
    (2, 2)
    """
    return get_backend().asarray(obj, dtype)


# --------------------------------------------------------------------------- GPUs


def _try_gpu(gpu_id: int) -> tuple[Backend | None, list[str]]:
    reasons = []
    for r in RECORDS.values():
        if not r.gpu or r.name == "jax":  # JAX is picked by device, not by prefer_gpu
            continue
        if not r.installed():
            reasons.append(f"{r.name}: not installed ({r.install})")
            continue
        try:
            return resolve(r.name, r.gpu_device(gpu_id)), reasons
        except BackendUnavailableError as exc:
            reasons.append(f"{r.name}: {exc}")
    return None, reasons


def prefer_gpu(gpu_id: int = 0) -> bool:
    """Select a GPU backend if one is usable (CuPy first, then torch CUDA).

    When none is, the current backend is kept and the reasons are logged on
    the ``xplayers`` logger at WARNING level.

    Returns
    -------
    bool
        Whether a GPU backend was selected.
    """
    backend, reasons = _try_gpu(gpu_id)
    if backend is None:
        log.warning(
            "no GPU backend is usable, staying on %s: %s", get_backend(), "; ".join(reasons)
        )
        return False
    set_backend(backend.name, backend.device)
    return True


def require_gpu(gpu_id: int = 0) -> Backend:
    """Select a GPU backend (CuPy first, then torch CUDA) or raise.

    Returns
    -------
    Backend
        The GPU backend now selected.

    Raises
    ------
    BackendUnavailableError
        No GPU backend is usable; the message gives each one's reason.
    """
    backend, reasons = _try_gpu(gpu_id)
    if backend is None:
        raise BackendUnavailableError("no GPU backend is usable: " + "; ".join(reasons))
    return set_backend(backend.name, backend.device)


# --------------------------------------------------------------------------- per array


def is_lazy(x: Any) -> bool:
    """Whether reading `x`'s values would force a computation (Dask) or fail (JAX tracing).

    Layers validate data values (label ranges) only for arrays that are not lazy.
    """
    found = record_of(x)
    return found is not None and found.is_lazy(x)


def reading_waits(x: Any) -> bool:
    """Whether reading `x` on the host waits for a device (GPU arrays, JAX); see the record's.

    ``xplayers.training.train`` keeps such losses on the device and reads
    them when it shows or checks them, not after every step.
    """
    found = record_of(x)
    return found is not None and found.reading_waits(x)


def materialize(x: Any) -> Any:
    """Compute a lazy (Dask) array and keep its result, cutting its task graph; else return `x`.

    Each training step on Dask adds to the parameters' task graph; persisting
    them once per evaluation keeps the cost of a run linear in its steps.
    """
    found = record_of(x)
    return x if found is None else found.materialize(x)


def materialize_all(arrays: Sequence[Any]) -> list[Any]:
    """:func:`materialize` many arrays with one scheduler run; the others come back as they are.

    Lazy (Dask) arrays that share work (parameters and optimizer state
    computed from one backward pass) are persisted together by one
    ``dask.persist``, so the shared work runs once, and a ``dask.distributed``
    scheduler receives each key once per step.
    """
    out = list(arrays)
    groups: dict[str, tuple[Record, list[int]]] = {}
    for i, x in enumerate(out):
        found = record_of(x)
        if found is not None and found.lazy:
            groups.setdefault(found.name, (found, []))[1].append(i)
    for found, where in groups.values():
        done = found.materialize_many([out[i] for i in where])
        for i, x in zip(where, done, strict=True):
            out[i] = x
    return out


def _leaves(x: Any) -> Iterator[Any]:
    if isinstance(x, Mapping):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


def sync(x: Any) -> None:
    """Block until `x` (an array, or a list, tuple or dict of arrays) is computed.

    For timing: GPU libraries and JAX return before their work is done, and
    Dask only builds a graph. Stop the clock after this call.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.backend import sync
    >>> sync({"W": np.zeros(2)})  # NumPy is eager: nothing to wait for
    """
    groups: dict[str, tuple[Record, list[Any]]] = {}
    for leaf in _leaves(x):
        found = record_of(leaf)
        if found is not None:
            groups.setdefault(found.name, (found, []))[1].append(leaf)
    for found, arrays in groups.values():
        found.sync(arrays)
