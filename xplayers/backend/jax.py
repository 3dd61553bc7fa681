"""JAX: immutable arrays on the CPU or a GPU, compiled with ``jax.jit``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from xplayers.backend._record import Opened, Record, install_hint
from xplayers.errors import BackendUnavailableError

__all__ = ["RECORD", "JaxRecord"]


class JaxRecord(Record):
    """``jax.numpy``, which is an Array API namespace itself."""

    name: ClassVar[str] = "jax"
    module: ClassVar[str] = "jax"
    compat: ClassVar[str | None] = "jax.numpy"
    distributions: ClassVar[tuple[str, ...]] = ("jax",)
    extras: ClassVar[tuple[str, ...]] = ("jax",)
    install: ClassVar[str] = install_hint(
        "jax", note='; for an NVIDIA GPU: pip install "jax[cuda12]"'
    )
    gpu: ClassVar[bool] = True
    compiles: ClassVar[bool] = True
    immutable: ClassVar[bool] = True
    kernels: ClassVar[str | None] = "xplayers.backend.kernels_jax"

    def device_examples(self) -> str:
        return "'cpu', 'gpu' or 'gpu:N' (GPU number N, from 0)"

    def is_device(self, obj: object) -> bool:
        return isinstance(obj, self.load().Device)

    def open(self, device: Any = None) -> Opened:
        jax = self.load()
        jnp = self.namespace()
        self.check_device(device)
        if device is None:
            dev = jax.devices()[0]
        elif self.is_device(device):
            dev = device
        else:
            platform, _, index = str(device).partition(":")
            if isinstance(device, int):
                platform, index = jax.default_backend(), str(device)
            platform = {"cuda": "gpu"}.get(platform, platform)
            try:
                dev = jax.devices(platform)[int(index or 0)]
            except (RuntimeError, IndexError, ValueError) as exc:
                raise BackendUnavailableError(
                    f"backend 'jax': no device {device!r} ({exc}); "
                    f"available: {', '.join(self.devices())}"
                ) from exc

        def create(obj: Any, dt: Any) -> Any:
            if dt is not None and jnp.dtype(dt) == jnp.float64 and not jax.config.jax_enable_x64:
                raise BackendUnavailableError(
                    "backend 'jax': float64 is disabled in JAX; set the environment variable "
                    "JAX_ENABLE_X64=1 (or call jax.config.update('jax_enable_x64', True)), "
                    "or use float32"
                )
            return jax.device_put(jnp.asarray(obj, dtype=dt), dev)

        return Opened(jnp, dev, create)

    def devices(self) -> tuple[str, ...]:
        jax = self.load()
        return tuple(f"{d.platform}:{d.id}" for d in jax.devices())

    def owns(self, x: Any) -> bool:
        import array_api_compat

        return bool(array_api_compat.is_jax_array(x))

    def host_key(self, x: Any) -> str | None:
        import array_api_compat

        return "cpu" if array_api_compat.device(x).platform == "cpu" else None

    def device_key(self, device: Any) -> str | None:
        return "cpu" if device.platform == "cpu" else None

    def is_lazy(self, x: Any) -> bool:
        jax = self.load()
        return isinstance(x, jax.core.Tracer)

    def jit(self, fn: Callable[..., Any]) -> Callable[..., Any] | None:
        jax = self.load()
        return jax.jit(fn)  # type: ignore[no-any-return]

    def sync(self, x: Any) -> None:
        jax = self.load()
        jax.block_until_ready(x)


RECORD = JaxRecord()
