"""The test matrix: the columns of each backend, and the stack each backend's session imports.

This is test configuration, kept out of the runtime backend records: the
records say what the library needs at run time, this module what the test
suite runs and what a test session must be able to import. It imports only
the standard library, so ``noxfile.py`` loads it (by path) before anything is
installed, and a session checks its stack with::

    python tests/matrix.py check dask

which prints one line and exits 1 when a module of the stack does not import
(say, a ``dask`` and a ``distributed`` of releases that do not fit), with the
installed versions of the stack's distributions.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class TestId:
    """One column of the test matrix: an id, the device it runs on, and its flavour."""

    id: str
    device: str | int | None = None
    gpu: bool = False  # needs a GPU: marked ``gpu`` and left out of the CPU sessions
    readonly: bool = False  # hand tests read-only NumPy memory to catch writes into inputs

    __test__: ClassVar[bool] = False  # not a test class


#: Backend name -> its columns of the test matrix.
COLUMNS: dict[str, tuple[TestId, ...]] = {
    "numpy": (TestId("numpy"), TestId("numpy_readonly", readonly=True)),
    "cupy": (TestId("cupy", 0, gpu=True),),
    "torch": (TestId("torch", "cpu"), TestId("torch:cuda", "cuda", gpu=True)),
    "jax": (TestId("jax", "cpu"),),
    "dask": (TestId("dask"),),
    "array_api_strict": (
        TestId("array_api_strict"),
        TestId("array_api_strict:device1", "device1"),
    ),
}

#: Backend name -> the modules its test session imports, and the distributions
#: whose versions a failure reports. The library's own requirements come first.
_BASE = ("numpy", "array_api_compat", "array_api_extra", "array_api_strict", "pytest")
STACKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "numpy": (_BASE, ("numpy", "array-api-compat")),
    "cupy": ((*_BASE, "cupy"), ("cupy-cuda12x", "cupy-cuda13x", "cupy")),
    "torch": ((*_BASE, "torch"), ("torch", "numpy")),
    "jax": ((*_BASE, "jax", "jax.numpy"), ("jax", "jaxlib")),
    "dask": (
        (*_BASE, "dask.array", "distributed", "zarr"),
        ("dask", "distributed", "zarr", "numpy"),
    ),
    "array_api_strict": (_BASE, ("array-api-strict", "numpy")),
}


def prepare(backend: str) -> None:
    """Configure `backend`'s library for the test suite: float64 on JAX, for the oracle."""
    if backend == "jax":
        import jax  # only in the jax session's stack

        jax.config.update("jax_enable_x64", True)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _import_error(module: str) -> Exception | None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # an ImportError, or a library failing at import
        return exc
    return None


def _versions(distributions: tuple[str, ...]) -> str:
    found = [f"{dist} {_version(dist)}" for dist in distributions if _version(dist)]
    return ", ".join(found) or "none of " + ", ".join(distributions)


def check_stack(backend: str) -> str | None:
    """None when every module of `backend`'s session stack imports; else one line saying why."""
    modules, distributions = STACKS[backend]
    for module in modules:
        exc = _import_error(module)
        if exc is not None:
            return (
                f"the {backend} test stack does not import: {module}: "
                f"{type(exc).__name__}: {exc} (installed: {_versions(distributions)})"
            )
    return None


def main(argv: list[str]) -> int:
    """``python tests/matrix.py check NAME``: exit 1 with one line when NAME's stack fails."""
    if len(argv) != 2 or argv[0] != "check" or argv[1] not in STACKS:
        print(f"usage: python tests/matrix.py check {{{','.join(STACKS)}}}", file=sys.stderr)
        return 2
    problem = check_stack(argv[1])
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"{argv[1]} test stack imports: {_versions(STACKS[argv[1]][1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
