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
        return self.materialize_many([x])[0]

    def materialize_many(self, arrays: list[Any]) -> list[Any]:
        import dask

        out = list(arrays)
        todo = [i for i, x in enumerate(out) if not _persisted(x)]
        if todo:
            # Unoptimised: a later graph holding the same keys (the step's loss,
            # computed at evaluation) then sends them with the same tasks; fused
            # graphs give one key two different tasks, which a cluster warns about.
            done = cast(Any, dask).persist(*[out[i] for i in todo], optimize_graph=False)
            for i, x in zip(todo, done, strict=True):
                out[i] = x
        return out

    def sync(self, x: Any) -> None:
        import dask

        cast(Any, dask).compute(x)  # Dask's own functions are untyped


def _persisted(x: Any) -> bool:
    """Whether `x`'s task graph holds nothing but its own chunks (a persisted array).

    Persisting such an array again would only repeat its chunks' tasks (or,
    on a ``dask.distributed`` cluster, send keys it holds already).
    """
    array = cast(Any, x)  # Dask's own methods are untyped
    return bool(len(array.__dask_graph__()) == array.npartitions)


RECORD = DaskRecord()
