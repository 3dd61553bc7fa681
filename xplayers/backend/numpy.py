"""NumPy: the default backend, on the CPU."""

from __future__ import annotations

from typing import Any, ClassVar

from xplayers.backend._record import Opened, Record

__all__ = ["RECORD", "NumpyRecord"]


class NumpyRecord(Record):
    """NumPy on the CPU; also the host side of every transfer."""

    name: ClassVar[str] = "numpy"
    module: ClassVar[str] = "numpy"
    compat: ClassVar[str | None] = "array_api_compat.numpy"
    kernels: ClassVar[str | None] = "xplayers.backend.kernels_numpy"
    distributions: ClassVar[tuple[str, ...]] = ("numpy",)
    extras: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = "pip install numpy (a requirement of xplayers itself)"

    def open(self, device: Any = None) -> Opened:
        import numpy as np

        self.cpu_only(device)
        return Opened(self.namespace(), "cpu", lambda obj, dt: np.asarray(obj, dtype=dt))

    def owns(self, x: Any) -> bool:
        import array_api_compat

        return bool(array_api_compat.is_numpy_array(x))

    def host_key(self, x: Any) -> str | None:
        return "cpu"

    def device_key(self, device: Any) -> str | None:
        return "cpu"


RECORD = NumpyRecord()
