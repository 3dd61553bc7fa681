"""What the machine can do at best: GEMM GFLOP/s for the step's shapes, memory bandwidth.

Every layer and the training step are reported as a ratio to one of these
bounds:

* the training step of a 784-H-10 net and the Affine layers: the GEMMs of
  :func:`step_gemm_shapes` / :func:`affine_gemm_shapes`, each timed alone with
  :func:`time_gemm` on the same backend, dtype and operand layout; their sum is
  the time the step cannot beat ("sum of GEMMs timed alone");
* element-wise layers (ReLU, Sigmoid): the bytes they must move
  (:func:`elementwise_bytes`) divided by the streaming bandwidth of
  :func:`memory_bandwidth` (the ``copy`` kernel, one thread for NumPy).

Timing is best-of-``repeat`` with :func:`time.perf_counter`; each repeat runs
the kernel enough times to last at least ``min_time`` seconds. GPU work is
synchronised before the clock stops.

Run ``python bench/limits.py --batches 32,2048 --hidden 100`` to print a JSON
table of the bounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
from machine import LIMIT_BACKENDS, cache_sizes

INPUT_SIZE = 784
OUTPUT_SIZE = 10
HIDDEN_SIZES = (100, 1000)
BATCH_SIZES = (1, 8, 32, 128, 512, 2048, 8192, 32768)
DTYPES = ("float32", "float64")


# --------------------------------------------------------------------------- shapes


class GemmShape(NamedTuple):
    """One matrix product ``C[m, n] = op(A)[m, k] @ op(B)[k, n]``.

    ``trans_a`` means ``A`` is stored as a ``(k, m)`` C-contiguous array and
    used transposed (``x.T`` in ``x.T @ dout``); ``trans_b`` likewise stores
    ``B`` as ``(n, k)`` (``W2.T`` in ``dout @ W2.T``). The layouts are the ones
    the book-style step produces, so timing them alone is what the step pays.
    """

    name: str
    m: int
    k: int
    n: int
    trans_a: bool = False
    trans_b: bool = False

    @property
    def flops(self) -> int:
        """Floating-point operations, ``2*m*k*n``."""
        return 2 * self.m * self.k * self.n


def affine_gemm_shapes(
    batch: int, fan_in: int, fan_out: int, phase: str = "both", *, need_dx: bool = True
) -> list[GemmShape]:
    """GEMMs of an ``Affine(fan_in -> fan_out)`` layer on a batch.

    ``phase`` is ``"forward"``, ``"backward"`` or ``"both"``. The backward
    computes ``dx = dout @ W.T`` (skipped when ``need_dx`` is false, as for the
    first layer of a net) and ``dW = x.T @ dout``.
    """
    fwd = [GemmShape("fwd x@W", batch, fan_in, fan_out)]
    bwd = [GemmShape("bwd x.T@dout", fan_in, batch, fan_out, trans_a=True)]
    if need_dx:
        bwd.insert(0, GemmShape("bwd dout@W.T", batch, fan_out, fan_in, trans_b=True))
    return {"forward": fwd, "backward": bwd, "both": fwd + bwd}[phase]


def step_gemm_shapes(
    batch: int, hidden: int, inputs: int = INPUT_SIZE, classes: int = OUTPUT_SIZE
) -> list[GemmShape]:
    """The five GEMMs of one training step of an ``inputs-hidden-classes`` net.

    Forward ``h = x@W1``, ``y = h@W2``; backward ``dW2 = h.T@dout``,
    ``dh = dout@W2.T``, ``dW1 = x.T@dh``. The first layer's ``dx`` is not
    needed for training and is left out.
    """
    return [
        GemmShape("fc1 x@W1", batch, inputs, hidden),
        GemmShape("fc2 h@W2", batch, hidden, classes),
        GemmShape("dW2 h.T@dout", hidden, batch, classes, trans_a=True),
        GemmShape("dh dout@W2.T", batch, classes, hidden, trans_b=True),
        GemmShape("dW1 x.T@dh", inputs, batch, hidden, trans_a=True),
    ]


def step_flops(
    batch: int, hidden: int, inputs: int = INPUT_SIZE, classes: int = OUTPUT_SIZE
) -> int:
    """Useful GEMM flops of one training step (the model used for every peer's GFLOP/s)."""
    return sum(g.flops for g in step_gemm_shapes(batch, hidden, inputs, classes))


#: Minimal memory traffic of element-wise layers, in array-sized passes:
#: forward reads x and writes out; backward reads dout and x (or out) and writes dx.
ELEMENTWISE_PASSES = {
    ("relu", "forward"): 2,
    ("relu", "backward"): 3,
    ("relu", "both"): 5,
    ("sigmoid", "forward"): 2,
    ("sigmoid", "backward"): 3,
    ("sigmoid", "both"): 5,
}


def elementwise_bytes(layer: str, phase: str, n_elements: int, itemsize: int) -> int:
    """Bytes ``layer`` (``relu``/``sigmoid``) must move in ``phase`` on ``n_elements``.

    The bound ignores a saved mask: a layer that stores a 1-byte mask moves
    more than this, which is part of what the ratio to the bound shows.
    """
    return ELEMENTWISE_PASSES[layer, phase] * n_elements * itemsize


def bound_seconds(nbytes: float, bandwidth_gbs: float) -> float:
    """Time to move ``nbytes`` at ``bandwidth_gbs`` (GB/s, 1e9 bytes)."""
    return nbytes / (bandwidth_gbs * 1e9)


# --------------------------------------------------------------------------- timing


def best_of(
    fn: Callable[[], object],
    *,
    repeat: int = 5,
    min_time: float = 0.05,
    sync: Callable[[], object] | None = None,
    max_number: int = 1 << 20,
) -> float:
    """Seconds per call of ``fn``, the best of ``repeat`` timed batches.

    A batch runs ``fn`` ``number`` times, ``number`` chosen from the fastest of
    three single calls so that a batch lasts about ``min_time``; ``sync``
    (e.g. a CUDA synchronise) runs before the clock starts and before it stops.
    The garbage collector is off while timing. One untimed warm-up call comes
    first.
    """
    sync = sync or (lambda: None)
    fn()
    sync()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:

        def run(number: int) -> float:
            sync()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            sync()
            return time.perf_counter() - t0

        # Calibrate on the fastest of a few single calls, so that one call
        # delayed by another process does not shrink the batches.
        estimate = min(run(1) for _ in range(3))
        number = max(1, min(max_number, math.ceil(min_time / max(estimate, 1e-9))))
        return min(run(number) / number for _ in range(repeat))
    finally:
        if gc_was_enabled:
            gc.enable()


# --------------------------------------------------------------------------- backends


class _Backend(NamedTuple):
    empty: Callable[[tuple[int, ...]], Any]
    rand: Callable[[tuple[int, ...]], Any]
    matmul: Callable[[Any, Any, Any], Any]
    copy: Callable[[Any, Any], Any]
    add: Callable[[Any, Any, Any], Any]
    scale: Callable[[Any, float, Any], Any]
    sync: Callable[[], object]


def _backend(name: str, dtype: str) -> _Backend:
    """Array helpers for ``numpy``, ``torch-cpu``, ``torch-cuda`` (``torch-cuda:1``) or ``cupy``."""
    if name == "numpy":
        rng = np.random.default_rng(0)
        dt = np.dtype(dtype)
        return _Backend(
            empty=lambda shape: np.empty(shape, dtype=dt),
            rand=lambda shape: rng.random(shape, dtype=dt),
            matmul=lambda a, b, out: np.matmul(a, b, out=out),
            copy=np.copyto,
            add=lambda a, b, out: np.add(a, b, out=out),
            scale=lambda a, s, out: np.multiply(a, s, out=out),
            sync=lambda: None,
        )
    if name.startswith("torch"):
        import torch

        device = torch.device("cpu" if name == "torch-cpu" else name.replace("torch-", "", 1))
        tdt = getattr(torch, dtype)
        gen = torch.Generator(device=device).manual_seed(0)
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        if device.type == "cuda":
            _disable_tf32(torch)
        return _Backend(
            empty=lambda shape: torch.empty(shape, dtype=tdt, device=device),
            rand=lambda shape: torch.rand(shape, dtype=tdt, device=device, generator=gen),
            matmul=lambda a, b, out: torch.matmul(a, b, out=out),
            copy=lambda dst, src: dst.copy_(src),
            add=lambda a, b, out: torch.add(a, b, out=out),
            scale=lambda a, s, out: torch.mul(a, s, out=out),
            sync=sync,
        )
    if name == "cupy":
        import cupy

        rs = cupy.random.RandomState(0)
        return _Backend(
            empty=lambda shape: cupy.empty(shape, dtype=dtype),
            rand=lambda shape: rs.random_sample(shape, dtype=dtype),
            matmul=lambda a, b, out: cupy.matmul(a, b, out=out),
            copy=cupy.copyto,
            add=lambda a, b, out: cupy.add(a, b, out=out),
            scale=lambda a, s, out: cupy.multiply(a, s, out=out),
            sync=lambda: cupy.cuda.Device().synchronize(),
        )
    msg = f"unknown limits backend {name!r}; expected one of {LIMIT_BACKENDS}"
    raise ValueError(msg)


def _disable_tf32(torch: Any) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


# --------------------------------------------------------------------------- GEMM


def gemm_operands(shape: GemmShape, dtype: str, backend: str = "numpy") -> tuple[Any, Any, Any]:
    """``(op(A), op(B), C)`` for ``shape`` on ``backend``, with the step's layouts."""
    return _operands(_backend(backend, dtype), shape)


def _operands(be: _Backend, shape: GemmShape) -> tuple[Any, Any, Any]:
    a = be.rand((shape.k, shape.m)).T if shape.trans_a else be.rand((shape.m, shape.k))
    b = be.rand((shape.n, shape.k)).T if shape.trans_b else be.rand((shape.k, shape.n))
    return a, b, be.empty((shape.m, shape.n))


def gemm_kernel(
    shape: GemmShape, dtype: str, backend: str = "numpy"
) -> tuple[Callable[[], object], Callable[[], object]]:
    """``(run, sync)``: one product ``C = op(A) @ op(B)`` into a preallocated ``C``.

    Writing into a preallocated output keeps page faults of fresh large
    allocations out of the bound; a step that allocates its outputs pays them
    on top, which its ratio to the bound will show.
    """
    be = _backend(backend, dtype)
    a, b, c = _operands(be, shape)
    return (lambda: be.matmul(a, b, c)), be.sync


def time_gemm(
    shape: GemmShape,
    dtype: str,
    backend: str = "numpy",
    *,
    repeat: int = 5,
    min_time: float = 0.05,
) -> dict[str, Any]:
    """Time ``shape`` alone; returns ``seconds`` (best per call), ``gflops`` and the shape."""
    run, sync = gemm_kernel(shape, dtype, backend)
    seconds = best_of(run, repeat=repeat, min_time=min_time, sync=sync)
    return {
        **shape._asdict(),
        "dtype": dtype,
        "backend": backend,
        "flops": shape.flops,
        "seconds": seconds,
        "gflops": shape.flops / seconds / 1e9,
    }


def step_gemm_bound(
    batch: int,
    hidden: int,
    dtype: str,
    backend: str = "numpy",
    *,
    repeat: int = 5,
    min_time: float = 0.05,
) -> dict[str, Any]:
    """Each GEMM of one training step timed alone, and their sum.

    Returns ``{"batch", "hidden", "dtype", "backend", "gemms": [time_gemm...],
    "seconds": sum, "flops": total, "gflops": total/sum}``.
    """
    gemms = [
        time_gemm(g, dtype, backend, repeat=repeat, min_time=min_time)
        for g in step_gemm_shapes(batch, hidden)
    ]
    seconds = sum(g["seconds"] for g in gemms)
    flops = sum(g["flops"] for g in gemms)
    return {
        "batch": batch,
        "hidden": hidden,
        "dtype": dtype,
        "backend": backend,
        "gemms": gemms,
        "seconds": seconds,
        "flops": flops,
        "gflops": flops / seconds / 1e9,
    }


# --------------------------------------------------------------------------- bandwidth

#: Bytes each bandwidth kernel moves per element, STREAM convention (no write-allocate).
BANDWIDTH_PASSES = {"copy": 2, "scale": 2, "add": 3, "triad": 5}


def bandwidth_elements(dtype: str = "float64", nbytes: int | None = None) -> int:
    """Elements per array for the bandwidth kernels.

    By default each array is 4x the sum of the data caches (STREAM's rule) and
    at least 64 MiB, so no pass is served from cache.
    """
    if nbytes is None:
        total_cache = sum(cache_sizes().values()) or 32 << 20
        nbytes = max(4 * total_cache, 64 << 20)
    return max(1, nbytes // np.dtype(dtype).itemsize)


def bandwidth_kernel(
    kind: str, dtype: str = "float64", backend: str = "numpy", *, nbytes: int | None = None
) -> tuple[Callable[[], object], Callable[[], object], int]:
    """``(run, sync, bytes_moved)`` for one bandwidth kernel.

    Kernels: ``copy`` (``b[:] = a``), ``scale`` (``b = s*a``), ``add``
    (``c = a + b``) and ``triad`` (``a = b + s*c`` done as two passes,
    ``a = s*c; a += b``, because NumPy has no fused multiply-add; its bytes
    count both passes, 5 arrays' worth). With NumPy every kernel runs on one
    thread, as NumPy's element-wise operations do.
    """
    be = _backend(backend, dtype)
    n = bandwidth_elements(dtype, nbytes)
    itemsize = np.dtype(dtype).itemsize
    a, b, c = be.rand((n,)), be.rand((n,)), be.empty((n,))
    be.copy(c, a)  # touch every page before timing
    s = 3.0
    if kind == "copy":
        run = lambda: be.copy(b, a)  # noqa: E731
    elif kind == "scale":
        run = lambda: be.scale(a, s, b)  # noqa: E731
    elif kind == "add":
        run = lambda: be.add(a, b, c)  # noqa: E731
    elif kind == "triad":

        def run() -> None:
            be.scale(c, s, a)
            be.add(a, b, a)

    else:
        msg = f"unknown bandwidth kernel {kind!r}; expected one of {tuple(BANDWIDTH_PASSES)}"
        raise ValueError(msg)
    return run, be.sync, BANDWIDTH_PASSES[kind] * n * itemsize


def memory_bandwidth(
    kind: str = "copy",
    dtype: str = "float64",
    backend: str = "numpy",
    *,
    nbytes: int | None = None,
    repeat: int = 5,
    min_time: float = 0.05,
) -> dict[str, Any]:
    """Streaming bandwidth in GB/s (1e9 bytes/s) of one kernel, best of ``repeat``.

    Returns ``{"kind", "dtype", "backend", "elements", "bytes", "seconds", "gbs"}``.
    """
    run, sync, moved = bandwidth_kernel(kind, dtype, backend, nbytes=nbytes)
    seconds = best_of(run, repeat=repeat, min_time=min_time, sync=sync)
    return {
        "kind": kind,
        "dtype": dtype,
        "backend": backend,
        "elements": bandwidth_elements(dtype, nbytes),
        "bytes": moved,
        "seconds": seconds,
        "gbs": moved / seconds / 1e9,
    }


# --------------------------------------------------------------------------- CLI


def measure(
    batches: Iterable[int] = BATCH_SIZES,
    hiddens: Iterable[int] = HIDDEN_SIZES,
    dtypes: Iterable[str] = DTYPES,
    backends: Iterable[str] = ("numpy",),
    *,
    bandwidth_bytes: int | None = None,
    repeat: int = 5,
    min_time: float = 0.05,
) -> dict[str, Any]:
    """All bounds for a run: bandwidth per backend/kernel and the step GEMMs per case."""
    backends = list(backends)
    out: dict[str, Any] = {"bandwidth": [], "step_gemms": []}
    for backend in backends:
        for kind in BANDWIDTH_PASSES:
            out["bandwidth"].append(
                memory_bandwidth(
                    kind,
                    "float64",
                    backend,
                    nbytes=bandwidth_bytes,
                    repeat=repeat,
                    min_time=min_time,
                )
            )
        for hidden in hiddens:
            for dtype in dtypes:
                for batch in batches:
                    out["step_gemms"].append(
                        step_gemm_bound(
                            batch, hidden, dtype, backend, repeat=repeat, min_time=min_time
                        )
                    )
    return out


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


def main(argv: list[str] | None = None) -> None:
    """Print the bounds as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=_ints, default=list(BATCH_SIZES))
    p.add_argument("--hidden", type=_ints, default=list(HIDDEN_SIZES))
    p.add_argument("--dtypes", type=lambda s: s.split(","), default=list(DTYPES))
    p.add_argument("--backends", type=lambda s: s.split(","), default=["numpy"])
    p.add_argument(
        "--bandwidth-mib",
        type=int,
        default=None,
        help="bytes per bandwidth array in MiB (default: 4x the caches, >= 64)",
    )
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.05)
    args = p.parse_args(argv)
    result = measure(
        args.batches,
        args.hidden,
        args.dtypes,
        args.backends,
        bandwidth_bytes=None if args.bandwidth_mib is None else args.bandwidth_mib << 20,
        repeat=args.repeat,
        min_time=args.min_time,
    )
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
