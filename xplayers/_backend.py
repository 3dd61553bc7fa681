"""The backend selector: the only module that knows every backend by name.

Two rules govern backends in xplayers:

1. Computation follows the inputs: layers and functions find the array
   namespace from the arrays they are given (:func:`namespace`).
2. The selected backend only decides where *new* arrays are born:
   :func:`asarray`, initial weights, loaded data.

The current backend is the innermost :func:`use_backend` block of the calling
thread or task (a :class:`contextvars.ContextVar`), else the process-wide one
set by :func:`set_backend`, else the one named by the ``XPLAYERS_BACKEND``
environment variable when xplayers was imported, else NumPy on the CPU.

Importing this module imports none of CuPy, PyTorch, JAX or Dask: a backend's
library is imported the first time that backend is selected or probed.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, cast

import array_api_compat
import numpy as np

from xplayers.errors import BackendUnavailableError

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "Backend",
    "asarray",
    "backend_status",
    "get_backend",
    "namespace",
    "prefer_gpu",
    "require_gpu",
    "set_backend",
    "to_backend",
    "to_numpy",
    "use_backend",
]

log = logging.getLogger("xplayers")

ENV_VAR = "XPLAYERS_BACKEND"

#: Every backend name xplayers knows, in the order they are listed to users.
BACKENDS: tuple[str, ...] = ("numpy", "cupy", "torch", "jax", "dask", "array_api_strict")

_MODULE = {
    "numpy": "numpy",
    "cupy": "cupy",
    "torch": "torch",
    "jax": "jax",
    "dask": "dask.array",
    "array_api_strict": "array_api_strict",
}

_INSTALL = {
    "numpy": "pip install numpy",
    "cupy": "pip install 'xplayers[cuda12]' (CUDA 12) or 'xplayers[cuda13]' (CUDA 13)",
    "torch": "pip install 'xplayers[torch]'",
    "jax": "pip install 'xplayers[jax]' (for an NVIDIA GPU: pip install 'jax[cuda12]')",
    "dask": "pip install 'xplayers[dask]'",
    "array_api_strict": "pip install 'xplayers[strict]'",
}


@dataclass(frozen=True)
class Backend:
    """A resolved backend: its name, array namespace and device.

    Parameters
    ----------
    name : str
        One of :data:`BACKENDS`.
    xp : module
        The array-API-compatible namespace (from ``array-api-compat``).
    device : object
        The device new arrays are created on, in the backend's own type
        (``"cpu"``, ``torch.device("cuda:0")``, ``cupy.cuda.Device(0)``, ...).

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
        return f"{self.name}:{self.device}"


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


def backend_name(x: Any) -> str:
    """Return the backend name of array `x` (``"numpy"``, ``"torch"``, ...)."""
    c = array_api_compat
    for name, test in (
        ("numpy", c.is_numpy_array),
        ("cupy", c.is_cupy_array),
        ("torch", c.is_torch_array),
        ("jax", c.is_jax_array),
        ("dask", c.is_dask_array),
    ):
        if test(x):
            return name
    return type(x).__module__.split(".")[0]


# --------------------------------------------------------------------------- resolution


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(_MODULE[name])
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} is not installed ({exc}); install it with: {_INSTALL[name]}"
        ) from exc


def _cpu_only(name: str, device: Any) -> None:
    if device not in (None, "cpu"):
        raise BackendUnavailableError(
            f"backend {name!r} runs on the CPU only; got device {device!r} "
            "(use device=None or 'cpu', or a GPU backend: 'cupy', 'torch' with 'cuda')"
        )


def _resolve_numpy(device: Any) -> Backend:
    _cpu_only("numpy", device)
    return Backend("numpy", _compat("numpy"), "cpu", lambda obj, dt: np.asarray(obj, dtype=dt))


def _cuda_index(device: Any) -> int:
    if device is None:
        return 0
    if isinstance(device, int):
        return device
    text = str(device).removeprefix("cuda").removeprefix(":") or "0"
    try:
        return int(text)
    except ValueError:
        raise BackendUnavailableError(
            f"backend 'cupy': device must be a GPU index such as 0 or 'cuda:1'; got {device!r}"
        ) from None


def _cupy_reason(cupy: ModuleType, index: int = 0) -> str | None:
    """Why CuPy cannot use GPU `index`, or None; never allocates GPU memory."""
    try:
        available = bool(cupy.cuda.is_available())
    except Exception as exc:
        return f"CUDA is not usable by CuPy ({type(exc).__name__}: {exc})"
    if not available:
        return (
            "CuPy is installed but cupy.cuda.is_available() is False: no CUDA device or "
            "driver is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES, and that the "
            f"CuPy wheel matches the driver: {_INSTALL['cupy']})"
        )
    count = int(cupy.cuda.runtime.getDeviceCount())
    if not 0 <= index < count:
        return f"CUDA device {index} does not exist; this machine has {count} (0..{count - 1})"
    return None


def _resolve_cupy(device: Any) -> Backend:
    cupy = _import("cupy")
    index = _cuda_index(device)
    reason = _cupy_reason(cupy, index)
    if reason is not None:
        raise BackendUnavailableError(f"backend 'cupy' is not usable: {reason}")
    dev = cupy.cuda.Device(index)

    def create(obj: Any, dt: Any) -> Any:
        with dev:
            return cupy.asarray(obj, dtype=dt)

    return Backend("cupy", _compat("cupy"), dev, create)


def _compat(name: str) -> ModuleType:
    return importlib.import_module(f"array_api_compat.{name}")


def _torch_reason(torch: ModuleType, dev: Any) -> str | None:
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            )
            return (
                f"torch.cuda.is_available() is False (this torch {torch.__version__} is {build}); "
                "install a CUDA build of torch (see pytorch.org) on a machine with an NVIDIA GPU"
            )
        count = torch.cuda.device_count()
        index = 0 if dev.index is None else dev.index
        if index >= count:
            return f"CUDA device {index} does not exist; this machine has {count}"
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        return "torch.backends.mps.is_available() is False"
    return None


def _resolve_torch(device: Any) -> Backend:
    torch = _import("torch")
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as exc:
        raise BackendUnavailableError(
            f"backend 'torch': device must be 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}"
        ) from exc
    reason = _torch_reason(torch, dev)
    if reason is not None:
        raise BackendUnavailableError(f"backend 'torch' on {str(dev)!r} is not usable: {reason}")
    if dev.type == "cuda" and dev.index is None:  # tensors report "cuda:N": compare like with like
        dev = torch.device("cuda", torch.cuda.current_device())
    xp = _compat("torch")
    return Backend("torch", xp, dev, lambda obj, dt: xp.asarray(obj, dtype=dt, device=dev))


def _resolve_jax(device: Any) -> Backend:
    jax = _import("jax")
    import jax.numpy as jnp

    if device is None:
        dev = jax.devices()[0]
    elif isinstance(device, str):
        platform, _, index = device.partition(":")
        platform = {"cuda": "gpu"}.get(platform, platform)
        try:
            dev = jax.devices(platform)[int(index or 0)]
        except (RuntimeError, IndexError, ValueError) as exc:
            raise BackendUnavailableError(
                f"backend 'jax': no device {device!r} ({exc}); "
                f"available: {[str(d) for d in jax.devices()]}"
            ) from exc
    else:
        dev = device

    def create(obj: Any, dt: Any) -> Any:
        if dt is not None and jnp.dtype(dt) == jnp.float64 and not jax.config.jax_enable_x64:
            raise BackendUnavailableError(
                "backend 'jax': float64 is disabled in JAX; set the environment variable "
                "JAX_ENABLE_X64=1 (or call jax.config.update('jax_enable_x64', True)), "
                "or use float32"
            )
        return jax.device_put(jnp.asarray(obj, dtype=dt), dev)

    return Backend("jax", jnp, dev, create)


def _resolve_dask(device: Any) -> Backend:
    _cpu_only("dask", device)
    _import("dask")
    xp = _compat("dask.array")
    return Backend("dask", xp, "cpu", lambda obj, dt: xp.asarray(obj, dtype=dt))


def _resolve_strict(device: Any) -> Backend:
    xp = _import("array_api_strict")
    if device is None:
        dev = xp.Device("CPU_DEVICE")
    elif isinstance(device, str):
        try:
            dev = xp.Device(device)
        except ValueError as exc:
            raise BackendUnavailableError(f"backend 'array_api_strict': {exc}") from exc
    else:
        dev = device
    return Backend(
        "array_api_strict", xp, dev, lambda obj, dt: xp.asarray(obj, dtype=dt, device=dev)
    )


_RESOLVERS: dict[str, Callable[[Any], Backend]] = {
    "numpy": _resolve_numpy,
    "cupy": _resolve_cupy,
    "torch": _resolve_torch,
    "jax": _resolve_jax,
    "dask": _resolve_dask,
    "array_api_strict": _resolve_strict,
}


def _check_name(name: object, source: str = "name") -> str:
    if not isinstance(name, str) or name not in _RESOLVERS:
        raise ValueError(
            f"unknown backend {name!r} (from {source}); valid names: {', '.join(BACKENDS)}"
        )
    return name


def resolve(name: str | Backend, device: Any = None) -> Backend:
    """Return the :class:`Backend` for `name` and `device`, checking it is usable.

    Raises
    ------
    ValueError
        `name` is not one of :data:`BACKENDS`.
    BackendUnavailableError
        The backend is not installed, or the device does not exist or is unusable.
    """
    if isinstance(name, Backend):
        return name
    return _RESOLVERS[_check_name(name)](device)


def parse_spec(spec: str, source: str = ENV_VAR) -> tuple[str, str | None]:
    """Split ``"cupy:1"`` or ``"torch:cuda:0"`` into a name and a device.

    Examples
    --------
    >>> from xplayers._backend import parse_spec
    >>> parse_spec("torch:cuda:0")
    ('torch', 'cuda:0')
    >>> parse_spec("numpy")
    ('numpy', None)
    """
    name, _, device = spec.strip().partition(":")
    return _check_name(name.strip().lower(), f"{source}={spec!r}"), device.strip() or None


# --------------------------------------------------------------------------- current backend


def _read_env() -> tuple[str, str | None] | ValueError | None:
    """The XPLAYERS_BACKEND setting at import; a bad name is kept and raised on first use."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return None
    try:
        return parse_spec(raw)
    except ValueError as exc:
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
    ValueError
        ``XPLAYERS_BACKEND`` names no known backend (read at import, raised on
        first use so that ``xplayers info`` still runs).
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
            _global = _resolve_numpy(None)
        elif isinstance(_ENV_SPEC, ValueError):
            raise ValueError(str(_ENV_SPEC))
        else:
            try:
                _global = resolve(*_ENV_SPEC)
            except BackendUnavailableError as exc:
                raise BackendUnavailableError(
                    f"{exc} (selected by {ENV_VAR}={os.environ.get(ENV_VAR)!r})"
                ) from exc
    return _global


def set_backend(name: str, device: Any = None) -> Backend:
    """Select the process-wide backend on which new arrays are created.

    A :func:`use_backend` block still wins inside its scope.

    Parameters
    ----------
    name : {"numpy", "cupy", "torch", "jax", "dask", "array_api_strict"}
        The backend.
    device : optional
        ``"cpu"``; a GPU index or ``"cuda:N"`` for CuPy; ``"cuda:N"`` or
        ``"mps"`` for torch; ``"gpu:N"`` or ``"cpu"`` for JAX; ``"device1"``
        for array-api-strict. Default: the backend's default device.

    Returns
    -------
    Backend
        The backend now selected.

    Raises
    ------
    ValueError
        Unknown `name`; the message lists the valid names.
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

    The choice is stored in a :class:`contextvars.ContextVar`, so it is
    restored on exit (also when the block raises) and does not leak into
    other threads or asyncio tasks.

    Parameters
    ----------
    name, device
        As for :func:`set_backend`.

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
        _scoped.reset(token)


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


# --------------------------------------------------------------------------- transfers


def to_numpy(x: Any) -> np.ndarray[Any, Any]:
    """Copy (or view, where the memory is already on the host) `x` as a NumPy array.

    Works for arrays of every backend: CuPy and CUDA tensors are copied to the
    host, Dask arrays are computed, CPU torch tensors are viewed.

    Examples
    --------
    >>> import array_api_strict as xps
    >>> from xplayers import to_numpy
    >>> to_numpy(xps.asarray([1.0, 2.0]))
    array([1., 2.])
    """
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return np.asarray(x.get())
    if array_api_compat.is_torch_array(x):
        return np.asarray(x.detach().cpu().resolve_conj().numpy())
    if array_api_compat.is_dask_array(x):
        return np.asarray(cast(Any, x).compute())
    if type(x).__module__.startswith("array_api_strict"):
        return np.from_dlpack(x)  # also works for arrays on its non-CPU test devices
    return np.asarray(x)


def _is_array(x: Any) -> bool:
    return bool(array_api_compat.is_array_api_obj(x))


def _host_key(x: Any) -> str | None:
    """'cpu' or 'cuda:N' for arrays DLPack can share without a copy, else None."""
    if isinstance(x, np.ndarray):
        return "cpu"
    if array_api_compat.is_jax_array(x):
        return "cpu" if array_api_compat.device(x).platform == "cpu" else None
    if array_api_compat.is_torch_array(x):
        return str(x.device) if x.device.type in ("cpu", "cuda") else None
    if array_api_compat.is_cupy_array(x):
        return f"cuda:{x.device.id}"
    return None


def _target_key(b: Backend) -> str | None:
    if b.name == "numpy" or (b.name == "jax" and b.device.platform == "cpu"):
        return "cpu"
    if b.name == "torch":
        return str(b.device) if b.device.type in ("cpu", "cuda") else None
    if b.name == "cupy":
        return f"cuda:{b.device.id}"
    return None


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
        The target device (as for :func:`set_backend`).

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
    if _is_array(x) and namespace(x) is target.xp and array_api_compat.device(x) == target.device:
        return x
    key = _host_key(x) if _is_array(x) else None
    if key is not None and key == _target_key(target) and target.name != "dask":
        try:
            return target.xp.from_dlpack(x)
        except (BufferError, TypeError, RuntimeError, ValueError):
            pass  # e.g. read-only NumPy memory: copy below
    host = to_numpy(x)
    if target.name == "numpy":
        return np.array(host, copy=True) if host is x else host
    return target._create(host, None)


# --------------------------------------------------------------------------- probing


def _installed(name: str) -> bool:
    top = _MODULE[name].split(".")[0]
    return importlib.util.find_spec(top) is not None


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
    _check_name(name)
    if not _installed(name):
        return False, f"not installed; install it with: {_INSTALL[name]}"
    try:
        return True, str(resolve(name, device).device)
    except BackendUnavailableError as exc:
        return False, str(exc)


_GPU_CANDIDATES: tuple[tuple[str, Callable[[int], Any]], ...] = (
    ("cupy", lambda i: i),
    ("torch", lambda i: f"cuda:{i}"),
)


def _try_gpu(gpu_id: int) -> tuple[Backend | None, list[str]]:
    reasons = []
    for name, device in _GPU_CANDIDATES:
        if not _installed(name):
            reasons.append(f"{name}: not installed ({_INSTALL[name]})")
            continue
        try:
            return resolve(name, device(gpu_id)), reasons
        except BackendUnavailableError as exc:
            reasons.append(f"{name}: {exc}")
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


def is_lazy(x: Any) -> bool:
    """Whether reading `x`'s values would force a computation (Dask) or fail (JAX tracing).

    Layers validate data values (label ranges) only for arrays that are not lazy.
    """
    if array_api_compat.is_dask_array(x):
        return True
    if array_api_compat.is_jax_array(x):
        import jax

        return isinstance(x, jax.core.Tracer)
    return False


def materialize(x: Any) -> Any:
    """Compute a lazy (Dask) array and keep its result, cutting its task graph; else return `x`.

    Each training step on Dask adds to the parameters' task graph; persisting
    them once per evaluation keeps the cost of a run linear in its steps.
    """
    if array_api_compat.is_dask_array(x):
        return cast(Any, x).persist()  # Dask's own methods are untyped
    return x


def materialize_all(arrays: Sequence[Any]) -> list[Any]:
    """:func:`materialize` many arrays with one scheduler run; the others come back as they are.

    Lazy (Dask) arrays that share work (parameters and optimizer state
    computed from one backward pass) are persisted together by one
    ``dask.persist``, so the shared work runs once, and a ``dask.distributed``
    scheduler receives each key once per step.
    """
    out = list(arrays)
    lazy = [i for i, x in enumerate(out) if array_api_compat.is_dask_array(x)]
    if lazy:
        persist = cast(Any, importlib.import_module("dask")).persist  # untyped

        # Unoptimised: a later graph holding the same keys (the step's loss,
        # computed at evaluation) then sends them with the same tasks; fused
        # graphs give one key two different tasks, which a cluster warns about.
        done = persist(*(out[i] for i in lazy), optimize_graph=False)
        for i, x in zip(lazy, done, strict=True):
            out[i] = x
    return out
