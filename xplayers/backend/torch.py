"""PyTorch: tensors on the CPU, an NVIDIA GPU (``cuda:N``) or Apple's GPU (``mps``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from xplayers.backend._record import Opened, Record, install_hint
from xplayers.errors import BackendUnavailableError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RECORD", "TorchRecord"]

#: The device types xplayers can create arrays on and read back (``meta`` has no data).
DEVICE_TYPES = ("cpu", "cuda", "mps")

#: ``host_key`` by torch device.
_HOST_KEYS: dict[Any, str | None] = {}


class TorchRecord(Record):
    """PyTorch through array-api-compat."""

    name: ClassVar[str] = "torch"
    module: ClassVar[str] = "torch"
    compat: ClassVar[str | None] = "array_api_compat.torch"
    kernels: ClassVar[str | None] = "xplayers.backend.kernels_torch"
    distributions: ClassVar[tuple[str, ...]] = ("torch",)
    extras: ClassVar[tuple[str, ...]] = ("torch",)
    install: ClassVar[str] = install_hint("torch")
    gpu: ClassVar[bool] = True
    device_attribute: ClassVar[bool] = True

    def device_examples(self) -> str:
        return "'cpu', 'cuda', 'cuda:N' (GPU number N, from 0) or 'mps'"

    def is_device(self, obj: object) -> bool:
        return isinstance(obj, self.load().device)

    def _device(self, device: Any) -> Any:
        torch = self.load()
        self.check_device(device)
        try:
            dev = torch.device("cpu" if device is None else device)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise BackendUnavailableError(
                f"backend 'torch': device must be {self.device_examples()}; got {device!r}"
            ) from exc
        if dev.type not in DEVICE_TYPES:
            raise BackendUnavailableError(
                f"backend 'torch': device {str(dev)!r} is not supported (xplayers needs arrays "
                f"it can compute on and read back); use {self.device_examples()}"
            )
        return dev

    def _reason(self, dev: Any) -> str | None:
        torch = self.load()
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                cuda = torch.version.cuda
                build = "a CPU-only build" if cuda is None else f"CUDA {cuda}"
                return (
                    f"torch.cuda.is_available() is False (this torch {torch.__version__} is "
                    f"{build}); install a CUDA build of torch (see pytorch.org) on a machine "
                    "with an NVIDIA GPU"
                )
            count = torch.cuda.device_count()
            index = 0 if dev.index is None else dev.index
            if index >= count:
                return f"CUDA device {index} does not exist; this machine has {count}"
        elif dev.type == "mps" and not torch.backends.mps.is_available():
            return "torch.backends.mps.is_available() is False"
        return None

    def open(self, device: Any = None) -> Opened:
        torch = self.load()
        dev = self._device(device)
        reason = self._reason(dev)
        if reason is not None:
            raise BackendUnavailableError(
                f"backend 'torch' on {str(dev)!r} is not usable: {reason}"
            )
        if dev.type == "cuda" and dev.index is None:  # tensors say "cuda:N": compare like with like
            dev = torch.device("cuda", torch.cuda.current_device())
        xp = self.namespace()
        return Opened(xp, dev, lambda obj, dt: xp.asarray(obj, dtype=dt, device=dev))

    def devices(self) -> tuple[str, ...]:
        torch = self.load()
        found = ["cpu"]
        if torch.cuda.is_available():  # counts devices without creating a CUDA context
            found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if torch.backends.mps.is_available():
            found.append("mps")
        return tuple(found)

    def gpu_device(self, index: int) -> Any:
        return f"cuda:{index}"

    def owns(self, x: Any) -> bool:
        import array_api_compat

        return bool(array_api_compat.is_torch_array(x))

    def to_numpy(self, x: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        torch = self.load()
        x = x.detach()
        if x.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds every value
            x = x.to(torch.float32)
        return np.asarray(x.cpu().resolve_conj().numpy())

    def host_key(self, x: Any) -> str | None:
        dev = x.device
        try:
            return _HOST_KEYS[dev]
        except KeyError:  # str(device) costs microseconds; devices are few
            key = _HOST_KEYS[dev] = str(dev) if dev.type in ("cpu", "cuda") else None
            return key

    def device_key(self, device: Any) -> str | None:
        return str(device) if device.type in ("cpu", "cuda") else None

    def sync(self, x: Any) -> None:
        torch = self.load()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        if torch.backends.mps.is_available():
            torch.mps.synchronize()


RECORD = TorchRecord()
