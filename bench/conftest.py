"""Shared pieces of the benchmark suites: parameters, the backend under test, run metadata.

The suites run on the backend ``XPLAYERS_BACKEND`` selects (``numpy`` when
unset), one process per backend; ``XPLAYERS_BENCH_QUICK=1`` shrinks the
parameters to a smoke run. A test asking for ``batch``, ``dtype`` or ``hidden``
is parametrized over the run's values. The fixture ``measure`` times a
callable with pytest-benchmark and stores what the report needs in
``extra_info`` (see ``bench/README.md``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shlex
import shutil
import subprocess
from types import SimpleNamespace
from typing import Any

import pytest

QUICK = os.environ.get("XPLAYERS_BENCH_QUICK", "") == "1"
PARAMS = {
    "batch": (1, 2048) if QUICK else (1, 8, 32, 128, 512, 2048, 8192, 32768),
    "dtype": ("float32", "float64"),
    "hidden": (100,) if QUICK else (100, 1000),
}
LIBRARIES = (
    "xplayers", "numpy", "array-api-compat", "array-api-strict", "torch", "jax", "jaxlib",
    "cupy-cuda12x", "cupy-cuda13x", "dask", "threadpoolctl", "pytest-benchmark",
)  # fmt: skip


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, values in PARAMS.items():
        if name in metafunc.fixturenames:
            ids = [
                f"N{v}" if name == "batch" else f"H{v}" if name == "hidden" else v for v in values
            ]
            metafunc.parametrize(name, values, ids=ids)


@pytest.fixture(scope="session")
def quick() -> bool:
    """Whether this is a smoke run (``XPLAYERS_BENCH_QUICK=1``)."""
    return QUICK


@pytest.fixture(scope="session")
def xb() -> SimpleNamespace:
    """The backend under test: ``label``, ``backend``, ``gpu``, ``lazy``, ``done``, ``quick``.

    ``label`` names the backend in rows: ``numpy``, ``torch:cpu``, ``cupy``, ...

    ``done(*arrays)`` blocks until the arrays are computed (``record.sync``),
    so a timed call that ends with it stops the clock after the device finished.
    """
    import xplayers as xpl
    from xplayers.backend import record

    try:
        backend = xpl.get_backend()
    except (ValueError, xpl.BackendUnavailableError) as exc:
        pytest.skip(str(exc))
    rec = record(backend.name)
    gpu = rec.gpu and "cpu" not in str(backend.device).lower()

    def done(*arrays: Any) -> None:
        rec.sync(list(arrays))

    label = backend.name  # torch:cpu, torch:cuda, jax:cpu, jax:gpu for the libraries of both
    if backend.name in ("torch", "jax"):
        label += ":" + (("cuda" if backend.name == "torch" else "gpu") if gpu else "cpu")
    return SimpleNamespace(
        label=label, backend=backend, gpu=gpu, lazy=rec.lazy, done=done, quick=QUICK
    )


@pytest.fixture
def measure(benchmark: Any) -> Any:
    """``measure(fn, group, impl, **info)``: ``warmup`` untimed calls, then time ``fn``.

    ``info`` goes into ``extra_info`` next to ``impl``: ``table``, ``row``,
    ``batch``, ``samples``, ``flops``, ``bytes``, ``plot``, ``device``,
    ``relative_to``, ``goals`` (the keys are described in ``bench/README.md``).
    """

    def run(
        fn: Any, group: str, impl: str, *, rounds: int | None = None, warmup: int = 2, **info: Any
    ) -> None:
        for _ in range(warmup):
            fn()
        benchmark.group = group
        benchmark.extra_info.update(impl=impl, **info)
        if rounds is None:
            benchmark(fn)
        else:
            benchmark.pedantic(fn, rounds=rounds, iterations=1)

    return run


@pytest.fixture
def relu_large(dtype: str) -> SimpleNamespace:
    """ReLU arrays ``x``, ``dout`` of 128 MiB each (8 MiB quick), larger than the caches."""
    import numpy as np

    rows = (8 if QUICK else 128) * 2**20 // np.dtype(dtype).itemsize // 1000
    rng = np.random.default_rng(3)
    x, dout = (rng.standard_normal((rows, 1000), dtype=dtype) for _ in range(2))
    table = f"ReLU forward+backward on {x.nbytes >> 20} MiB arrays (GB/s)"
    # bytes: read x, write out; read dout and x, write dx
    info = {"table": table, "row": dtype, "bytes": 5 * x.nbytes}
    goal = "ReLU forward+backward on large arrays within 2× the bandwidth bound"
    return SimpleNamespace(x=x, dout=dout, group=f"relu large {dtype}", info=info, goal=goal)


def _blas() -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: p.get(k) for k in keys} for p in threadpool_info() if p.get("user_api") == "blas"]


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Record the BLAS kernel that ran, library versions, the environment and the command."""
    versions = {}
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    gpus = ""
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"]
        gpus = subprocess.run(query, capture_output=True, text=True, check=False).stdout
    prefixes = ("OPENBLAS_", "OMP_", "MKL_", "XLA_", "JAX_", "CUPY_", "XPLAYERS_")
    machine_info["xplayers"] = {
        "blas": _blas(),
        "versions": versions,
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(prefixes)},
        "command": shlex.join(["python", "-m", "pytest", *config.invocation_params.args]),
        "gpus": gpus.strip().splitlines()[1:],
        "loadavg": list(os.getloadavg()),
    }
