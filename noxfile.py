"""Development sessions: ``nox`` runs the default ones (all CPU backends, lint, types, docs, build).

``nox -s tests`` runs the test suite once per CPU backend, each session
installing only its own backend. ``nox -s gpu`` (not default) runs the suite on
CuPy and torch CUDA in the current environment, which must already have them.
``nox -s bench`` runs the benchmarks and renders ``docs/benchmarks.md``.

The torch requirement can be pinned with ``XPLAYERS_TORCH_REQUIREMENT`` (CI
pins the local CPU build, ``torch==2.13.0``); by default it is plain ``torch``.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.needs_version = ">=2024.4"
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "doctests", "lint", "typecheck", "docs", "build"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
TORCH = os.environ.get("XPLAYERS_TORCH_REQUIREMENT", "torch")

# backend id of the test matrix -> what the session installs for it
CPU_BACKENDS = {
    "numpy": [],
    "array_api_strict": [],  # the test group already has it; runs on both of its devices
    "torch": [TORCH],
    "jax": ["jax"],
    "dask": ["dask[array]"],
}
TEST_IDS = {
    "numpy": "numpy,numpy_readonly",
    "array_api_strict": "array_api_strict,array_api_strict:device1",
    "torch": "torch",
    "jax": "jax",
    "dask": "dask",
}


def _install_test(session: nox.Session, *extra: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"), *extra)
    session.install("-e", ".", "--no-deps")


@nox.session
@nox.parametrize("backend", list(CPU_BACKENDS))
def tests(session: nox.Session, backend: str) -> None:
    """Run the test suite on one CPU backend, failing if that backend is not usable."""
    session.install("numpy", "array-api-compat")
    _install_test(session, *CPU_BACKENDS[backend])
    session.run(
        "pytest",
        f"--backends={TEST_IDS[backend]}",
        "--require-backends",
        *session.posargs,
        env={"XPLAYERS_BACKEND": ""},
    )


@nox.session
def doctests(session: nox.Session) -> None:
    """Run the examples in the docstrings, the README and docs/ on NumPy and array-api-strict."""
    _install_test(session, "numpy", "array-api-compat")
    targets = ["--doctest-modules", "xplayers", "--doctest-glob=*.md", "README.md", "docs"]
    for backend in ("numpy", "array_api_strict"):
        session.run(
            "pytest", "-p", "no:cacheprovider", *targets, *session.posargs,
            env={"XPLAYERS_BACKEND": backend},
        )


@nox.session(python=False)
def gpu(session: nox.Session) -> None:
    """Run the suite on CuPy and torch CUDA in the current environment (needs a GPU)."""
    session.run(
        "python", "-m", "pytest", "--backends=cupy,torch:cuda", "--require-backends",
        *session.posargs,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy --strict."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.install("-e", ".")
    session.run("mypy")
