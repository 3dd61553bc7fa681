"""Describe the machine, the libraries and the BLAS a benchmark run used.

``describe()`` returns a JSON-serialisable dict; the benchmark conftest stores it
in pytest-benchmark's ``machine_info["xplayers"]`` so every result file says
which CPU, which BLAS kernel (threadpoolctl ``architecture``), how many BLAS
threads and which ``OPENBLAS_*`` settings produced it.

Nothing here allocates on a GPU: device names are only read after
``cupy.cuda.is_available()`` / ``torch.cuda.is_available()`` said yes, and
torch / cupy are only imported when they are installed (torch only when the
process already imported it, so a NumPy-only benchmark process stays NumPy-only).

Run ``python bench/machine.py`` to print the description, and
``python bench/machine.py --targets`` to list the benchmark targets usable here
(one per line, for running one process per target).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Distributions whose versions are recorded when installed.
DISTRIBUTIONS = (
    "xplayers",
    "numpy",
    "array-api-compat",
    "array-api-strict",
    "torch",
    "cupy",
    "cupy-cuda12x",
    "cupy-cuda13x",
    "cupy-cuda11x",
    "jax",
    "jaxlib",
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "dask",
    "threadpoolctl",
    "pytest",
    "pytest-benchmark",
)

#: Environment variables that change how BLAS / OpenMP / XLA / CUDA behave.
ENV_PREFIXES = (
    "OPENBLAS_",
    "GOTO",
    "OMP_",
    "MKL_",
    "KMP_",
    "GOMP_",
    "XLA_",
    "JAX_",
    "CUDA_",
    "CUPY_",
)
SIMD_FLAGS = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"})

#: Peers with a training step (``bench/test_peers.py``), in run order.
PEERS = ("book-numpy", "torch-eager-cpu", "torch-eager-cuda")

#: Backends for which ``bench/limits.py`` measures GEMM and bandwidth limits.
LIMIT_BACKENDS = ("numpy", "torch-cpu", "torch-cuda", "cupy")

#: Kinds of benchmark targets, in run order; a target is ``"<kind>:<name>"``.
TARGET_KINDS = ("limits", "peer", "backend")

#: Names of the xplayers backends the suites know about, in run order.
BACKENDS = (
    "numpy",
    "array-api-strict",
    "dask",
    "jax-cpu",
    "torch-cpu",
    "cupy",
    "jax-gpu",
    "torch-cuda",
)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)


def _parse_size(text: str) -> int | None:
    m = _SIZE_RE.match(text)
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()]


def cache_sizes() -> dict[str, int]:
    """Return the data caches of CPU 0 in bytes, e.g. ``{"L1d": 49152, "L2": ..., "L3": ...}``.

    Reads ``/sys/devices/system/cpu/cpu0/cache/index*/``; falls back to
    ``lscpu -B``; returns ``{}`` when neither is available. Sizes are per
    instance as seen by CPU 0 (L3 is usually shared by all cores).
    """
    out: dict[str, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        level, kind, size = (_read(index / f) for f in ("level", "type", "size"))
        if not (level and kind and size) or kind == "Instruction":
            continue
        nbytes = _parse_size(size)
        if nbytes:
            out[f"L{level}" + ("d" if kind == "Data" else "")] = nbytes
    if out:
        return out
    try:
        text = subprocess.run(
            ["lscpu", "-B"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return out
    for line in text.splitlines():
        m = re.match(r"^\s*(L\d[di]?) cache:\s*(\d+)", line)
        if m and not m.group(1).endswith("i"):
            # lscpu -B prints the total over all instances; good enough as a fallback.
            out[m.group(1)] = int(m.group(2))
    return out


def last_level_cache() -> int:
    """Return the size in bytes of the largest data cache (32 MiB if unknown)."""
    sizes = cache_sizes()
    return max(sizes.values()) if sizes else 32 << 20


def cpu_info() -> dict[str, Any]:
    """CPU model, logical/physical cores, usable cores, SIMD flags, caches, governor."""
    info: dict[str, Any] = {"machine": platform.machine()}
    text = _read("/proc/cpuinfo") or ""
    physical: set[tuple[str, str]] = set()
    phys_id = core_id = ""
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "model name" and "model" not in info:
            info["model"] = value
        elif key == "flags" and "simd" not in info:
            flags = set(value.split())
            info["simd"] = sorted(flags & SIMD_FLAGS)
        elif key == "physical id":
            phys_id = value
        elif key == "core id":
            core_id = value
            physical.add((phys_id, core_id))
    info.setdefault("model", platform.processor() or None)
    info["logical_cpus"] = os.cpu_count()
    info["physical_cores"] = len(physical) or None
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        info["usable_cpus"] = os.cpu_count()
    info["caches"] = cache_sizes()
    info["governor"] = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    info["max_mhz"] = None
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if khz and khz.isdigit():
        info["max_mhz"] = int(khz) // 1000
    return info


def memory_bytes() -> int | None:
    """Total RAM in bytes from ``/proc/meminfo``."""
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of the loaded BLAS / OpenMP pools.

    Only libraries already loaded are reported, so call this after the
    benchmarks ran (the conftest does). Each entry has ``internal_api``
    (openblas, mkl, blis, openmp), ``architecture`` (the OpenBLAS kernel, e.g.
    ``Haswell`` or ``SkylakeX``), ``num_threads``, ``version``, ``threading_layer``.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = (
        "user_api",
        "internal_api",
        "prefix",
        "version",
        "architecture",
        "num_threads",
        "threading_layer",
        "filepath",
    )
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info()]


def blas_summary(pools: list[dict[str, Any]] | None = None) -> str:
    """One line naming each BLAS pool, e.g. ``openblas 0.3.31 Haswell 2 threads (pthreads)``."""
    pools = blas_info() if pools is None else pools
    parts = [
        f"{p['internal_api']} {p.get('version') or '?'} {p.get('architecture') or '?'} "
        f"{p['num_threads']} threads ({p.get('threading_layer') or '?'})"
        for p in pools
        if p.get("user_api") == "blas"
    ]
    return "; ".join(parts) or "no BLAS loaded"


def environment() -> dict[str, str]:
    """Environment variables that influence BLAS, OpenMP, XLA and CUDA."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}


def cuda_available() -> bool:
    """Whether a CUDA device is usable, asked of cupy or torch without allocating."""
    if _installed("cupy"):
        try:
            import cupy

            if cupy.cuda.is_available():
                return True
        except Exception:
            pass
    if _installed("torch"):
        try:
            import torch

            return bool(torch.cuda.is_available())
        except Exception:
            return False
    return False


def gpu_info() -> list[dict[str, Any]]:
    """Name, memory, compute capability of each CUDA device (empty without one)."""
    gpus: list[dict[str, Any]] = []
    if _installed("cupy"):
        try:
            import cupy

            if cupy.cuda.is_available():
                rt = cupy.cuda.runtime
                for i in range(rt.getDeviceCount()):
                    p = rt.getDeviceProperties(i)
                    name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
                    gpus.append(
                        {
                            "index": i,
                            "name": name,
                            "memory_bytes": int(p["totalGlobalMem"]),
                            "capability": f"{p['major']}.{p['minor']}",
                            "source": "cupy",
                            "cuda_runtime": rt.runtimeGetVersion(),
                            "driver": rt.driverGetVersion(),
                        }
                    )
                return gpus
        except Exception:
            gpus = []
    if "torch" in sys.modules or _installed("torch"):
        try:
            import torch

            if torch.cuda.is_available():
                for i in range(torch.cuda.device_count()):
                    major, minor = torch.cuda.get_device_capability(i)
                    gpus.append(
                        {
                            "index": i,
                            "name": torch.cuda.get_device_name(i),
                            "capability": f"{major}.{minor}",
                            "source": "torch",
                            "cuda_runtime": torch.version.cuda,
                        }
                    )
        except Exception:
            return []
    return gpus


def torch_info() -> dict[str, Any] | None:
    """Threads and BLAS of torch, only when this process already imported torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    config = torch.__config__.show()
    m = re.search(r"BLAS_INFO=(\w+)", config)
    cap = re.search(r"CPU capability usage: (\w+)", config)
    return {
        "version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "blas": m.group(1) if m else None,
        "cpu_capability": cap.group(1) if cap else None,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "cuda": torch.version.cuda,
    }


def available_backends() -> list[str]:
    """xplayers backends usable here, in :data:`BACKENDS` order.

    GPU backends need a CUDA device (probed without allocating); ``jax-gpu``
    needs a jax CUDA plugin installed. JAX itself is not initialised here
    because initialising its GPU client preallocates most of the GPU memory.
    """
    gpu = cuda_available()
    have = {
        "numpy": _installed("numpy"),
        "array-api-strict": _installed("array_api_strict"),
        "dask": _installed("dask"),
        "jax-cpu": _installed("jax"),
        "torch-cpu": _installed("torch"),
        "cupy": gpu and _installed("cupy"),
        "jax-gpu": gpu
        and _installed("jax")
        and any(_version(d) for d in ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt")),
        "torch-cuda": gpu and _installed("torch") and _torch_cuda(),
    }
    return [b for b in BACKENDS if have[b]]


def _torch_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def peer_unusable(peer: str) -> str | None:
    """Why ``peer`` cannot run here, or ``None`` when it can."""
    if peer.startswith("torch") and not _installed("torch"):
        return "torch is not installed"
    if peer.endswith("cuda") and not cuda_available():
        return "no CUDA device"
    return None


def limits_unusable(backend: str) -> str | None:
    """Why limits cannot be measured with ``backend`` here, or ``None`` when they can."""
    if backend.startswith("torch") and not _installed("torch"):
        return "torch is not installed"
    if backend == "cupy" and not _installed("cupy"):
        return "cupy is not installed"
    if backend in ("torch-cuda", "cupy") and not cuda_available():
        return "no CUDA device"
    return None


def available_targets() -> list[str]:
    """Every benchmark target usable here, e.g. ``["limits:numpy", ..., "backend:numpy"]``.

    One benchmark process per target isolates libraries from each other's
    spinning worker threads; ``python bench/machine.py --targets`` prints this
    list for a shell loop.
    """
    return (
        [f"limits:{b}" for b in LIMIT_BACKENDS if limits_unusable(b) is None]
        + [f"peer:{p}" for p in PEERS if peer_unusable(p) is None]
        + [f"backend:{b}" for b in available_backends()]
    )


def describe() -> dict[str, Any]:
    """Everything a result file needs to say where and with what it ran."""
    if "numpy" not in sys.modules and _installed("numpy"):
        import numpy  # noqa: F401 - load it so threadpoolctl sees its BLAS

    pools = blas_info()
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "cpu": cpu_info(),
        "memory_bytes": memory_bytes(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {d: v for d in DISTRIBUTIONS if (v := _version(d))},
        "blas": pools,
        "blas_summary": blas_summary(pools),
        "torch": torch_info(),
        "env": environment(),
        "gpus": gpu_info(),
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--targets"]:
        print("\n".join(available_targets()))
    elif sys.argv[1:]:
        sys.exit("usage: python bench/machine.py [--targets]")
    else:
        json.dump(describe(), sys.stdout, indent=2)
        sys.stdout.write("\n")
