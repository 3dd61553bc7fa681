"""A resolved backend, array namespaces, and moving arrays between backends.

The per-library knowledge comes from the records (:mod:`xplayers.backend`);
this module only combines it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from xplayers.backend._record import Record
from xplayers.backend._records import RECORDS, record

__all__ = [
    "Backend",
    "backend_name",
    "namespace",
    "record_of",
    "resolve",
    "to_backend",
    "to_numpy",
]


@dataclass(frozen=True)
class Backend:
    """A resolved backend: its name, array namespace and device.

    Parameters
    ----------
    name : str
        One of :data:`~xplayers.BACKENDS`.
    xp : module
        The array-API-compatible namespace (from ``array-api-compat``).
    device : object
        The device new arrays are created on, in the backend's own type
        (``"cpu"``, a ``torch.device``, a CuPy ``Device``, ...).

    Examples
    --------
    >>> import xplayers as xpl
    >>> with xpl.use_backend("numpy") as b:
    ...     print(b.name, b.device, b.asarray([1.0, 2.0], dtype="float32").dtype)
    numpy cpu float32
    """

    name: str
    xp: ModuleType = field(repr=False)
    device: Any
    _create: Callable[[Any, Any], Any] = field(repr=False, compare=False)
    #: The backend's record (:func:`xplayers.backend.record`).
    record: Record = field(repr=False, compare=False)

    @classmethod
    def open(cls, rec: Record, device: Any = None) -> Backend:
        """The backend of record `rec` on `device` (see :meth:`Record.open`)."""
        opened = rec.open(device)
        return cls(rec.name, opened.xp, opened.device, opened.create, rec)

    def asarray(self, obj: Any, dtype: Any = None) -> Any:
        """Create an array on this backend and device.

        Parameters
        ----------
        obj : array_like
            Nested sequences, a scalar, or an array of any backend (arrays of
            another backend are moved with :func:`to_backend`).
        dtype : str or dtype, optional
            ``"float32"``, ``"float64"``, a NumPy dtype or the backend's own
            dtype object. Default: inferred from `obj`.

        Returns
        -------
        array
            An array of this backend on :attr:`device`; no copy is made when
            `obj` already is one with the right dtype.
        """
        if (
            array_api_compat.is_array_api_obj(obj)
            and not isinstance(obj, np.ndarray)
            and (namespace(obj) is not self.xp or array_api_compat.device(obj) != self.device)
        ):
            obj = to_backend(obj, self)
        return self._create(obj, _dtype(self.xp, dtype))

    def __str__(self) -> str:
        return f"{self.name}:{self.record.device_name(self.device)}"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the record and the device, resolved again where it is loaded.

        The namespace is a module, which :mod:`pickle` refuses; resolving on
        load also checks the backend is usable there (a Dask worker, say).
        """
        return resolve, (self.name, self.device)


def resolve(name: str | Backend, device: Any = None) -> Backend:
    """Return the :class:`Backend` for `name` and `device`, checking it is usable.

    Raises
    ------
    BackendSelectionError
        `name` is not one of :data:`BACKENDS`, or `device` is not a string,
        an integer, None or the library's own device object (a :class:`ValueError`).
    BackendUnavailableError
        The backend is not installed, or the device does not exist or is unusable.
    """
    if isinstance(name, Backend):
        return name
    return Backend.open(record(name), device)


def _dtype(xp: ModuleType, dtype: Any) -> Any:
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
    elif isinstance(dtype, (type, np.dtype)):
        try:
            name = np.dtype(dtype).name
        except TypeError:
            return dtype
    else:
        return dtype  # already the backend's own dtype object
    try:
        return getattr(xp, name)
    except AttributeError:
        raise ValueError(f"asarray: argument 'dtype': unknown dtype {dtype!r}") from None


# --------------------------------------------------------------------------- namespaces

_NAMESPACES: dict[type, ModuleType] = {}
_RECORD_OF: dict[type, Record | None] = {}


def namespace(x: Any) -> ModuleType:
    """Return the array-API namespace of `x`, cached by the array's type.

    ``array_api_compat.array_namespace`` costs about a microsecond on NumPy and
    more on other libraries; layers call this on every ``forward``, so the
    answer is kept per array type.

    Parameters
    ----------
    x : array
        An array of any supported library.

    Returns
    -------
    module
        The ``array-api-compat`` namespace for `x`.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers import namespace
    >>> namespace(np.zeros(3)).__name__
    'array_api_compat.numpy'
    """
    cls = type(x)
    try:
        return _NAMESPACES[cls]
    except KeyError:
        xp = array_api_compat.array_namespace(x)
        _NAMESPACES[cls] = xp
        return xp


def record_of(x: Any) -> Record | None:
    """The record of the backend that array `x` belongs to, or None (cached by type)."""
    cls = type(x)
    try:
        return _RECORD_OF[cls]
    except KeyError:
        pass
    found = next((r for r in RECORDS.values() if r.owns(x)), None)
    _RECORD_OF[cls] = found
    return found


def backend_name(x: Any) -> str:
    """Return the backend name of array `x` (``"numpy"``, ``"torch"``, ...).

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.backend import backend_name
    >>> backend_name(np.zeros(2))
    'numpy'
    """
    found = record_of(x)
    return found.name if found is not None else type(x).__module__.split(".")[0]


# --------------------------------------------------------------------------- transfers


def to_numpy(x: Any) -> np.ndarray[Any, Any]:
    """Copy (or view, where the memory is already on the host) `x` as a NumPy array.

    Works for arrays of every backend: GPU arrays are copied to the host, Dask
    arrays are computed, CPU torch tensors are viewed. ``bfloat16`` arrays,
    which NumPy has no dtype for, come back as ``float32`` (exactly: every
    bfloat16 value is a float32 value); ``float16`` stays ``float16``.

    Examples
    --------
    >>> import array_api_strict as xps
    >>> from xplayers import to_numpy
    >>> to_numpy(xps.asarray([1.0, 2.0]))
    array([1., 2.])
    """
    if isinstance(x, np.ndarray):
        return x
    found = record_of(x)
    out = np.asarray(x) if found is None else found.to_numpy(x)
    if out.dtype.name == "bfloat16":  # e.g. JAX's ml_dtypes bfloat16: NumPy cannot compute on it
        out = out.astype(np.float32)
    return out


def _negative_strides(x: Any) -> bool:
    """Whether `x` is a NumPy view that walks memory backwards (``a[:, ::-1]``).

    Libraries need not take negative strides: torch's ``from_dlpack`` aborts
    the process on them (a C++ error) and ``torch.asarray`` refuses them, so
    such arrays are copied to contiguous memory before they are moved.
    """
    return isinstance(x, np.ndarray) and any(s < 0 for s in x.strides)


def to_backend(x: Any, name: str | Backend, device: Any = None) -> Any:
    """Move array `x` to another backend and device.

    Uses DLPack when source and target sit on the same device (NumPy and CPU
    torch tensors, CuPy arrays and CUDA tensors on the same GPU, CPU JAX),
    which shares the memory where the target library allows it (NumPy and
    torch do; JAX copies). Otherwise the data travels through a host NumPy
    copy.

    Parameters
    ----------
    x : array
        An array of any backend.
    name : str or Backend
        The target backend.
    device : optional
        The target device (as for :func:`~xplayers.set_backend`).

    Returns
    -------
    array

    Examples
    --------
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> y = xpl.to_backend(np.arange(3.0), "array_api_strict")
    >>> type(y).__module__.split(".")[0]
    'array_api_strict'
    """
    target = resolve(name, device)
    if not array_api_compat.is_array_api_obj(x):
        return target._create(to_numpy(x), None)
    if namespace(x) is target.xp and array_api_compat.device(x) == target.device:
        return x
    if _negative_strides(x):
        x = np.ascontiguousarray(x)
    source = record_of(x)
    dest = target.record
    key = source.host_key(x) if source is not None else None
    if key is not None and dest.dlpack and key == dest.device_key(target.device):
        try:
            return target.xp.from_dlpack(x)
        except (BufferError, TypeError, RuntimeError, ValueError):
            pass  # e.g. read-only NumPy memory: copy below
    host = to_numpy(x)
    if dest.name == "numpy":
        return np.array(host, copy=True) if host is x else host
    return target._create(host, None)
