"""The machine's limits, measured in the same run as the layers and steps.

* ``test_gemm``: each of the five GEMMs of a 784-H-10 training step
  (:func:`limits.step_gemm_shapes`), timed alone into a preallocated output,
  with the operand layouts of the step (``x.T``, ``W2.T`` as transposed views).
  Group ``gemm H=<H> N=<N> <dtype>``, one row per GEMM and limits backend;
  the sum of a backend's five rows is the step's GEMM bound.
* ``test_bandwidth``: streaming kernels (copy, scale, add, triad) on arrays
  larger than the caches; ``gbs`` in ``extra_info`` is bytes moved / time.
  The copy kernel of ``numpy`` is the bound for NumPy element-wise layers.
"""

from __future__ import annotations

import pytest
from limits import BANDWIDTH_PASSES, bandwidth_kernel, gemm_kernel, step_gemm_shapes

GEMM_NAMES = [g.name for g in step_gemm_shapes(1, 1)]
WARMUP_CALLS = 2


def gemm_group(hidden: int, batch: int, dtype: str) -> str:
    """pytest-benchmark group of the step GEMMs of one case."""
    return f"gemm H={hidden} N={batch} {dtype}"


@pytest.mark.parametrize("gemm", range(len(GEMM_NAMES)), ids=[n.split()[0] for n in GEMM_NAMES])
def test_gemm(benchmark, bench_report, limits_backend, hidden, dtype, batch, gemm):
    shape = step_gemm_shapes(batch, hidden)[gemm]
    run, sync = gemm_kernel(shape, dtype, limits_backend)

    def timed() -> None:
        run()
        sync()

    for _ in range(WARMUP_CALLS):
        timed()
    benchmark.group = gemm_group(hidden, batch, dtype)
    benchmark(timed)
    bench_report(
        flops=shape.flops,
        kind="gemm",
        name=limits_backend,
        gemm=shape.name,
        m=shape.m,
        k=shape.k,
        n=shape.n,
        trans_a=shape.trans_a,
        trans_b=shape.trans_b,
    )


def test_bandwidth(benchmark, bench_report, bench_selection, limits_backend, bandwidth_kind):
    nbytes = None if bench_selection.bw_mib is None else bench_selection.bw_mib << 20
    run, sync, moved = bandwidth_kernel(bandwidth_kind, "float64", limits_backend, nbytes=nbytes)

    def timed() -> None:
        run()
        sync()

    for _ in range(WARMUP_CALLS):
        timed()
    benchmark.group = "bandwidth"
    benchmark(timed)
    bench_report(
        nbytes=moved,
        kind="bandwidth",
        name=limits_backend,
        bandwidth_kernel=bandwidth_kind,
        array_bytes=moved // BANDWIDTH_PASSES[bandwidth_kind],
    )
