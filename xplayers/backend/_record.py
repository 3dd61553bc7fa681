"""The shape of a backend record: what xplayers knows about one array library.

Each module of this package (``numpy.py``, ``torch.py``, ...) defines one
subclass of :class:`Record` and one instance of it, ``RECORD``. Everything
that depends on the library — its import name, install hint, devices, array
creation, the way back to NumPy, DLPack, laziness, synchronisation — is a
field or a method of that record, so adding a backend is one new module plus
its tests.

This module and the record modules import only the standard library at
import time (the library itself is imported on first use), so ``noxfile.py``
can read the records (which extras install each backend) before NumPy is
installed. The test matrix and what each test session imports are test
configuration, in ``tests/matrix.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from xplayers.errors import BackendSelectionError, BackendUnavailableError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Opened", "Record", "Report", "install_hint"]


def install_hint(*extras: str, note: str = "") -> str:
    """The pip command for optional dependencies, in its PyPI form and its source-checkout form.

    Examples
    --------
    >>> from xplayers.backend._record import install_hint
    >>> install_hint("torch")
    'pip install "xplayers[torch]" (from a source checkout: pip install ".[torch]")'
    """
    pypi = " or ".join(f'"xplayers[{e}]"' for e in extras)
    local = " or ".join(f'".[{e}]"' for e in extras)
    text = f"pip install {pypi} (from a source checkout: pip install {local})"
    return f"{text}{note}"


def _import(name: str) -> ModuleType:
    """Import module `name`, leaving NumPy's global random generator as it was.

    Importing JAX draws from ``numpy.random``'s global generator; a backend
    imported on first use (after the caller's ``np.random.seed``) would
    otherwise change the numbers drawn next, the initial weights of the
    book's models among them, on that backend only.
    """
    if name in sys.modules:
        return importlib.import_module(name)
    import numpy as np

    state = np.random.get_state()  # noqa: NPY002 - the global generator is the point
    try:
        return importlib.import_module(name)
    finally:
        np.random.set_state(state)  # noqa: NPY002


class Opened(NamedTuple):
    """What :meth:`Record.open` finds: the namespace, the device, and how arrays are made there."""

    #: The array-API namespace.
    xp: ModuleType
    #: The device, in the library's own type.
    device: Any
    #: ``create(obj, dtype)``: a new array of `obj` on :attr:`device`.
    create: Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Report:
    """What ``xplayers info`` says about one backend (see :meth:`Record.report`)."""

    name: str
    installed: bool
    version: str | None
    usable: bool
    why_not: str | None
    devices: tuple[str, ...]
    install: str

    def line(self) -> str:
        """One line for ``xplayers info``."""
        version = self.version or "?"
        if not self.installed:
            return f"{self.name:<17} not installed: {self.install}"
        if not self.usable:
            return f"{self.name:<17} {version:<12} not usable: {self.why_not}"
        return f"{self.name:<17} {version:<12} usable; devices: {', '.join(self.devices)}"


class Record:
    """Everything xplayers knows about one backend.

    Subclasses set the class attributes and override the methods that differ
    from the defaults (a CPU-only, eager library whose arrays NumPy can read).
    """

    #: The backend's name, as given to :func:`xplayers.set_backend`.
    name: ClassVar[str]
    #: The module to import (``"dask.array"`` for Dask).
    module: ClassVar[str]
    #: The array-api-compat namespace module, or None when the library is one already.
    compat: ClassVar[str | None]
    #: Distribution names to read the version from, first installed wins.
    distributions: ClassVar[tuple[str, ...]]
    #: The extras of ``pyproject.toml`` that install it (none: a requirement of xplayers).
    #: They are the one source of its requirements: ``install`` names them, and the
    #: nox sessions install what ``pyproject.toml`` lists under them.
    extras: ClassVar[tuple[str, ...]]
    #: How to install it (PyPI form and checkout form).
    install: ClassVar[str]
    #: Whether it can run on a GPU.
    gpu: ClassVar[bool] = False
    #: Whether its arrays are computed on demand (values cannot be read cheaply).
    lazy: ClassVar[bool] = False
    #: Whether its eager operations compile on first use of each new shape (JAX):
    #: tests draw few shapes there.
    compiles: ClassVar[bool] = False
    #: Whether its arrays refuse item assignment (JAX): results written into are replaced.
    immutable: ClassVar[bool] = False
    #: Whether its arrays' ``.device`` attribute is their device, cheap to read and compare
    #: (the argument checks compare it instead of calling array-api-compat's ``device``).
    device_attribute: ClassVar[bool] = False
    #: Whether :func:`xplayers.to_backend` may hand it memory through DLPack.
    dlpack: ClassVar[bool] = True
    #: Dotted name of a module of fast kernels for this backend, imported on first use.
    kernels: ClassVar[str | None] = None

    def __repr__(self) -> str:
        return f"<xplayers backend record {self.name!r}>"

    # ------------------------------------------------------------------ the library

    def installed(self) -> bool:
        """Whether the library can be imported (checked without importing it)."""
        return importlib.util.find_spec(self.module.split(".")[0]) is not None

    def version(self) -> str | None:
        """The installed version, read from the package metadata (no import)."""
        for dist in self.distributions:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                return importlib.metadata.version(dist)
        return None

    def load(self) -> ModuleType:
        """Import the library, or raise :class:`BackendUnavailableError` with the install hint."""
        try:
            return _import(self.module)
        except ImportError as exc:
            raise BackendUnavailableError(
                f"backend {self.name!r} is not installed ({exc}); install it with: {self.install}"
            ) from exc

    def namespace(self) -> ModuleType:
        """The array-API namespace of this backend (importing the library)."""
        lib = self.load()
        return lib if self.compat is None else _import(self.compat)

    def load_kernels(self) -> ModuleType | None:
        """The module named by :attr:`kernels`, imported on first use; None when there is none."""
        return None if self.kernels is None else _import(self.kernels)

    # ------------------------------------------------------------------ devices

    def check_device(self, device: object) -> None:
        """Refuse device arguments of the wrong type up front.

        A device is None (the default device), a string, an integer, or the
        library's own device object (:meth:`is_device`).
        """
        if device is None or self.is_device(device):
            return
        if not isinstance(device, (str, int)) or isinstance(device, bool):
            raise BackendSelectionError(
                f"backend {self.name!r}: argument 'device': expected a string such as "
                f"{self.device_examples()}, an integer or None; got {type(device).__name__} "
                f"{device!r}"
            )

    def is_device(self, obj: object) -> bool:
        """Whether `obj` is one of the library's own device objects (library already imported)."""
        return False

    def device_examples(self) -> str:
        """Device specs to quote in error messages."""
        return "'cpu'"

    def cpu_only(self, device: Any) -> None:
        """Raise unless `device` names the CPU (``None`` or ``"cpu"``)."""
        self.check_device(device)
        if device not in (None, "cpu"):
            raise BackendUnavailableError(
                f"backend {self.name!r} runs on the CPU only; got device {device!r} "
                "(use device=None or 'cpu', or a GPU backend: 'cupy', 'torch' with 'cuda')"
            )

    def open(self, device: Any = None) -> Opened:
        """The namespace, device and array creation on `device`, or raise.

        :func:`xplayers.backend.resolve` wraps them in a
        :class:`~xplayers.backend.Backend`.

        Raises
        ------
        BackendSelectionError
            `device` is of the wrong type or not a device this backend knows.
        BackendUnavailableError
            The library is not installed, or the device is not usable here.
        """
        raise NotImplementedError

    def status(self, device: Any = None) -> tuple[bool, str]:
        """``(True, device)`` when usable on `device`, else ``(False, why)``; never allocates."""
        if not self.installed():
            return False, f"not installed; install it with: {self.install}"
        try:
            return True, str(self.open(device).device)
        except (BackendUnavailableError, BackendSelectionError) as exc:
            return False, str(exc)

    def devices(self) -> tuple[str, ...]:
        """The device specs usable here, without allocating memory on any of them."""
        return ("cpu",)

    def device_name(self, device: Any) -> str:
        """How `device` (of this backend) is written: the spec that selects it again."""
        return str(device)

    def gpu_device(self, index: int) -> Any:
        """The device spec of GPU `index` (for :func:`xplayers.require_gpu`); GPU backends only."""
        raise NotImplementedError

    def report(self) -> Report:
        """Installed, version, usable (and why not), devices and install hint, for ``info``."""
        installed = self.installed()
        ok, why = self.status() if installed else (False, "not installed")
        devices: tuple[str, ...] = ()
        if ok:
            try:
                devices = self.devices()
            except Exception as exc:  # a library's own listing failing is not fatal here
                devices = (f"(could not list: {type(exc).__name__}: {exc})",)
        return Report(
            self.name,
            installed,
            self.version() if installed else None,
            ok,
            None if ok else why.removeprefix(f"backend {self.name!r} is not usable: "),
            devices,
            self.install,
        )

    # ------------------------------------------------------------------ arrays

    def owns(self, x: Any) -> bool:
        """Whether `x` is an array of this backend (checked without importing the library)."""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> np.ndarray[Any, Any]:
        """`x` (an array of this backend) as a NumPy array on the host."""
        import numpy as np

        return np.asarray(x)

    def host_key(self, x: Any) -> str | None:
        """``"cpu"`` or ``"cuda:N"`` where DLPack can share `x` without a copy, else None."""
        return None

    def device_key(self, device: Any) -> str | None:
        """The :meth:`host_key` of arrays born on `device` of this backend."""
        return None

    def is_lazy(self, x: Any) -> bool:
        """Whether reading `x`'s values would force a computation or fail (tracing)."""
        return self.lazy

    def reading_waits(self, x: Any) -> bool:
        """Whether reading `x`'s values on the host waits for queued device work.

        True for arrays on a GPU (CuPy, torch CUDA, JAX GPU) and for JAX on
        any device (its operations return before they are computed): such a
        read is a synchronisation, which a training loop should not do at
        every step. Lazy arrays (Dask) are told apart by :meth:`is_lazy`.
        """
        return self.compiles or (self.gpu and self.host_key(x) != "cpu")

    def materialize(self, x: Any) -> Any:
        """Compute a lazy `x` and keep the result (cutting its task graph); else `x`.

        An array with nothing to cut (computed already) comes back as it is,
        so materializing twice costs no second computation.
        """
        return x

    def materialize_many(self, arrays: list[Any]) -> list[Any]:
        """:meth:`materialize` several arrays of this backend at once (one scheduler run)."""
        return [self.materialize(x) for x in arrays]

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any] | None:
        """`fn`, a pure function of arrays, compiled by the library; None when it cannot.

        The compiled function is traced once per shape, dtype and structure
        of its arguments (Python floats among them are traced as values, so a
        new learning rate does not compile again) and must give what `fn`
        gives. :meth:`xplayers.network.Sequential.train_step` compiles its
        step through this when the record returns one (JAX: ``jax.jit``).
        """
        return None

    def sync(self, x: Any) -> None:
        """Block until `x` (an array, or a list, tuple or dict of them) is computed.

        For timing: GPU libraries and JAX return before the work is done.
        """
        return
