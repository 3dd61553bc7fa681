"""Dask: lazy, chunked NumPy arrays on the CPU (larger than memory, or spread over a cluster)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from xplayers.backend._record import Opened, Record, install_hint

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RECORD", "DaskRecord"]


class DaskRecord(Record):
    """``dask.array`` through array-api-compat; values are computed on demand."""

    name: ClassVar[str] = "dask"
    module: ClassVar[str] = "dask.array"
    compat: ClassVar[str | None] = "array_api_compat.dask.array"
    distributions: ClassVar[tuple[str, ...]] = ("dask",)
    extras: ClassVar[tuple[str, ...]] = ("dask",)
    install: ClassVar[str] = install_hint("dask")
    lazy: ClassVar[bool] = True
    dlpack: ClassVar[bool] = False

    def open(self, device: Any = None) -> Opened:
        self.cpu_only(device)
        xp = self.namespace()
        return Opened(xp, "cpu", lambda obj, dt: xp.asarray(obj, dtype=dt))

    def owns(self, x: Any) -> bool:
        import array_api_compat

        return bool(array_api_compat.is_dask_array(x))

    def to_numpy(self, x: Any) -> np.ndarray[Any, Any]:
        import numpy as np

        return np.asarray(cast(Any, x).compute())

    def materialize(self, x: Any) -> Any:
        return cast(Any, x).persist()  # Dask's own methods are untyped

    def materialize_many(self, arrays: list[Any]) -> list[Any]:
        import dask

        # Unoptimised: a later graph holding the same keys (the step's loss,
        # computed at evaluation) then sends them with the same tasks; fused
        # graphs give one key two different tasks, which a cluster warns about.
        return list(cast(Any, dask).persist(*arrays, optimize_graph=False))

    def sync(self, x: Any) -> None:
        import dask

        cast(Any, dask).compute(x)  # Dask's own functions are untyped


RECORD = DaskRecord()
