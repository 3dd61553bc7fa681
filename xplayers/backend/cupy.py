"""CuPy: NumPy-like arrays on an NVIDIA GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from xplayers.backend._record import Opened, Record, install_hint
from xplayers.errors import BackendUnavailableError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RECORD", "CupyRecord"]


class CupyRecord(Record):
    """CuPy through array-api-compat, one GPU per backend."""

    name: ClassVar[str] = "cupy"
    module: ClassVar[str] = "cupy"
    compat: ClassVar[str | None] = "array_api_compat.cupy"
    kernels: ClassVar[str | None] = "xplayers.backend.kernels_cupy"
    distributions: ClassVar[tuple[str, ...]] = (
        "cupy-cuda12x",
        "cupy-cuda13x",
        "cupy-cuda11x",
        "cupy",
    )
    extras: ClassVar[tuple[str, ...]] = ("cuda12", "cuda13")
    install: ClassVar[str] = install_hint(
        "cuda12", "cuda13", note="; pick the one matching the CUDA version of the driver"
    )
    gpu: ClassVar[bool] = True

    def device_examples(self) -> str:
        return "N or 'cuda:N' (GPU number N, from 0)"

    def is_device(self, obj: object) -> bool:
        return isinstance(obj, self.load().cuda.Device)

    def _index(self, device: Any) -> int:
        self.check_device(device)
        if device is None:
            return 0
        if isinstance(device, int):
            return device
        if self.is_device(device):
            return int(device.id)
        text = str(device).removeprefix("cuda").removeprefix(":") or "0"
        try:
            return int(text)
        except ValueError:
            raise BackendUnavailableError(
                f"backend 'cupy': device must be a GPU index, {self.device_examples()}; "
                f"got {device!r}"
            ) from None

    def _reason(self, index: int) -> str | None:
        """Why CuPy cannot use GPU `index`, or None; never allocates GPU memory."""
        cupy = self.load()
        try:
            available = bool(cupy.cuda.is_available())
        except Exception as exc:
            return f"CUDA is not usable by CuPy ({type(exc).__name__}: {exc})"
        if not available:
            return (
                "CuPy is installed but cupy.cuda.is_available() is False: no CUDA device or "
                "driver is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES, and that the "
                f"CuPy wheel matches the driver: {self.install})"
            )
        count = int(cupy.cuda.runtime.getDeviceCount())
        if not 0 <= index < count:
            return f"CUDA device {index} does not exist; this machine has {count} (0..{count - 1})"
        return None

    def open(self, device: Any = None) -> Opened:
        cupy = self.load()
        index = self._index(device)
        reason = self._reason(index)
        if reason is not None:
            raise BackendUnavailableError(f"backend 'cupy' is not usable: {reason}")
        dev = cupy.cuda.Device(index)

        def create(obj: Any, dt: Any) -> Any:
            with dev:
                return cupy.asarray(obj, dtype=dt)

        return Opened(self.namespace(), dev, create)

    def devices(self) -> tuple[str, ...]:
        cupy = self.load()
        return tuple(str(i) for i in range(int(cupy.cuda.runtime.getDeviceCount())))

    def gpu_device(self, index: int) -> Any:
        return index

    def owns(self, x: Any) -> bool:
        import array_api_compat

        return bool(array_api_compat.is_cupy_array(x))

    def to_numpy(self, x: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        return np.asarray(x.get())

    def host_key(self, x: Any) -> str | None:
        return f"cuda:{x.device.id}"

    def device_key(self, device: Any) -> str | None:
        return f"cuda:{device.id}"

    def sync(self, x: Any) -> None:
        cupy = self.load()
        cupy.cuda.get_current_stream().synchronize()
        cupy.cuda.Device().synchronize()


RECORD = CupyRecord()
