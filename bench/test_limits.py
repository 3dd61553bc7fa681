"""What the machine allows, measured with the array library of ``XPLAYERS_BACKEND``.

* ``test_gemms``: the five GEMMs of a 784-H-10 training step (``x@W1``,
  ``h@W2``, ``h.T@dout``, ``dout@W2.T``, ``x.T@dh``) run back to back into
  preallocated outputs, with the step's operand layouts; the time a step
  cannot beat ("its GEMMs timed alone"), in the step's group.
* ``test_bandwidth``: STREAM kernels (copy, scale, add, triad) on 128 MiB arrays.
* ``test_relu_bound``: the bytes of ReLU forward+backward moved by a copy and
  an add (5 passes), the bound of the large-ReLU rows.

NumPy, torch and CuPy only (the ``out=`` arguments); GPU work is synchronised.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

LIBRARIES = {"numpy": "numpy", "torch": "torch", "cupy": "cupy"}


@pytest.fixture(scope="module")
def lib(xb):
    name = LIBRARIES.get(xb.backend.name)
    if name is None:
        pytest.skip(f"limits are measured with {', '.join(LIBRARIES)}")
    return importlib.import_module(name)


def _random(xb, shape, dtype, seed=0):
    import xplayers as xpl

    return xpl.asarray(np.random.default_rng(seed).random(shape, dtype=dtype))


def gemm_shapes(batch, hidden):
    """``(m, k, n, trans_a, trans_b)`` of the five step GEMMs."""
    return [
        (batch, 784, hidden, False, False),
        (batch, hidden, 10, False, False),
        (hidden, batch, 10, True, False),
        (batch, 10, hidden, False, True),
        (784, batch, hidden, True, False),
    ]


def test_gemms(measure, xb, lib, hidden, dtype, batch):
    if batch < 512 and not xb.quick:
        pytest.skip("the step is compared with its GEMMs at N >= 2048 (512 for the trend)")
    ops = []
    for m, k, n, trans_a, trans_b in gemm_shapes(batch, hidden):
        a = _random(xb, (k, m), dtype).T if trans_a else _random(xb, (m, k), dtype)
        b = _random(xb, (n, k), dtype).T if trans_b else _random(xb, (k, n), dtype)
        ops.append((a, b, lib.empty_like(_random(xb, (m, n), dtype))))

    def run():
        for a, b, c in ops:
            lib.matmul(a, b, out=c)
        xb.done(*(c for _, _, c in ops))

    measure(
        run,
        f"step 784-{hidden}-10 {dtype} N={batch}",
        f"GEMMs {xb.label}",
        table=f"Training step, 784-{hidden}-10, {dtype}",
        batch=batch,
        samples=batch,
        flops=sum(2 * m * k * n for m, k, n, _, _ in gemm_shapes(batch, hidden)),
        device="gpu" if xb.gpu else "cpu",
    )


def _arrays(xb, n):
    return [_random(xb, (n,), "float64", seed) for seed in range(3)]


@pytest.mark.parametrize(
    ("kernel", "passes"), [("copy", 2), ("scale", 2), ("add", 3), ("triad", 5)]
)
def test_bandwidth(measure, xb, lib, kernel, passes):
    n = (8 if xb.quick else 128) * 2**20 // 8
    a, b, c = _arrays(xb, n)
    ops = {
        "copy": lambda: b.__setitem__(Ellipsis, a),
        "scale": lambda: lib.multiply(a, 3.0, out=b),
        "add": lambda: lib.add(a, b, out=c),
        "triad": lambda: lib.add(b, lib.multiply(c, 3.0, out=a), out=a),  # two passes
    }
    run = lambda: (ops[kernel](), xb.done(a, b, c))  # noqa: E731
    measure(
        run,
        f"bandwidth {kernel}",
        xb.label,
        table=f"Memory bandwidth, {n * 8 >> 20} MiB float64 arrays (GB/s)",
        row=kernel,
        bytes=passes * n * 8,
    )


def test_relu_bound(measure, xb, lib, relu_large):
    shape, dtype = relu_large.x.shape, relu_large.x.dtype
    x, dout = _random(xb, shape, dtype), _random(xb, shape, dtype, 1)
    out, dx = lib.empty_like(x), lib.empty_like(x)

    def run():
        out[...] = x  # read x, write out
        lib.add(dout, x, out=dx)  # read dout and x, write dx
        xb.done(out, dx)

    measure(run, relu_large.group, f"bandwidth bound {xb.label}", **relu_large.info)
