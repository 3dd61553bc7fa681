"""array-api-strict: the standard and nothing more, the strictness oracle of the tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from xplayers.backend._record import Opened, Record, install_hint
from xplayers.errors import BackendUnavailableError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RECORD", "ArrayApiStrictRecord"]

#: The device names array-api-strict accepts (its test devices stand in for accelerators).
DEVICE_NAMES = ("CPU_DEVICE", "device1", "device2")


class ArrayApiStrictRecord(Record):
    """The reference implementation of the Array API standard, with pretend devices."""

    name: ClassVar[str] = "array_api_strict"
    module: ClassVar[str] = "array_api_strict"
    compat: ClassVar[str | None] = None  # already a standard namespace
    distributions: ClassVar[tuple[str, ...]] = ("array-api-strict",)
    extras: ClassVar[tuple[str, ...]] = ("strict",)
    install: ClassVar[str] = install_hint("strict")

    def device_examples(self) -> str:
        return "'CPU_DEVICE' or 'device1'"

    def is_device(self, obj: object) -> bool:
        return isinstance(obj, self.load().Device)

    def open(self, device: Any = None) -> Opened:
        xp = self.load()
        self.check_device(device)
        if device is None:
            dev = xp.Device("CPU_DEVICE")
        elif isinstance(device, xp.Device):
            dev = device
        else:
            try:
                dev = xp.Device(device)
            except ValueError as exc:
                raise BackendUnavailableError(
                    f"backend 'array_api_strict': no device {device!r} ({exc}); "
                    f"valid: {', '.join(self.devices())}"
                ) from None
        return Opened(xp, dev, lambda obj, dt: xp.asarray(obj, dtype=dt, device=dev))

    def devices(self) -> tuple[str, ...]:
        xp = self.load()
        listed = xp.__array_namespace_info__().devices()
        return tuple(n for n in DEVICE_NAMES if xp.Device(n) in listed)

    def device_name(self, device: Any) -> str:
        xp = self.load()
        return next((n for n in DEVICE_NAMES if xp.Device(n) == device), str(device))

    def owns(self, x: Any) -> bool:
        return type(x).__module__.startswith("array_api_strict")

    def to_numpy(self, x: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        return np.from_dlpack(x)  # also works for arrays on its non-CPU test devices


RECORD = ArrayApiStrictRecord()
