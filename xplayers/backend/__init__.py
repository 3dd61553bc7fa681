"""The backend registry: one record per array library, and the backend selector.

Two rules govern backends in xplayers:

1. Computation follows the inputs: layers and functions find the array
   namespace from the arrays they are given (:func:`namespace`).
2. The selected backend only decides where *new* arrays are born:
   :func:`asarray`, initial weights, loaded data.

Everything xplayers knows about one library lives in that library's record,
one module each (``xplayers/backend/numpy.py``, ``torch.py``, ...):
:data:`RECORDS` lists them in the order shown to users, :func:`record` finds
one by name. The test matrix, ``noxfile.py``, the benchmarks and
``xplayers info`` read the records; no other module of xplayers names a
library. Adding a backend is one new record module plus its tests (see the
maintainers' notes in ``docs/README.md``).

Importing this package imports none of CuPy, PyTorch, JAX or Dask: a
backend's library is imported the first time that backend is selected or
probed.
"""

from __future__ import annotations

from xplayers.backend._core import (
    Backend,
    backend_name,
    namespace,
    record_of,
    resolve,
    to_backend,
    to_numpy,
)
from xplayers.backend._record import Opened, Record, Report, install_hint
from xplayers.backend._records import BACKENDS, RECORDS, record
from xplayers.backend._registry import (
    ENV_VAR,
    asarray,
    backend_status,
    get_backend,
    is_lazy,
    materialize,
    materialize_all,
    parse_spec,
    prefer_gpu,
    reading_waits,
    report,
    require_gpu,
    set_backend,
    sync,
    use_backend,
)

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "RECORDS",
    "Backend",
    "Opened",
    "Record",
    "Report",
    "asarray",
    "backend_name",
    "backend_status",
    "get_backend",
    "install_hint",
    "is_lazy",
    "materialize",
    "materialize_all",
    "namespace",
    "parse_spec",
    "prefer_gpu",
    "reading_waits",
    "record",
    "record_of",
    "report",
    "require_gpu",
    "resolve",
    "set_backend",
    "sync",
    "to_backend",
    "to_numpy",
    "use_backend",
]
