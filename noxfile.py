"""Development sessions: ``nox`` runs the default ones (the CPU backends, lint, types, docs, build).

``nox -s tests`` runs the test suite once per CPU backend, each session
installing only its own backend; the sessions, what they install and the test
ids they run come from the backend records in ``xplayers/backend/``.
``nox -s gpu`` (not default) runs the suite on the GPU columns of the matrix
(CuPy, torch CUDA) in the current environment, which must already have them.
``nox -s bench`` runs the benchmarks and renders ``docs/benchmarks.md``.

Plain ``torch`` from PyPI is a CUDA build of several gigabytes, so the torch
session runs only when ``XPLAYERS_TORCH_REQUIREMENT`` says what to install
(CI pins the local CPU build, ``torch==2.13.0``; elsewhere for example
``XPLAYERS_TORCH_REQUIREMENT="torch --index-url https://download.pytorch.org/whl/cpu"``);
otherwise it is skipped with that hint. With ``XPLAYERS_NOX_REQUIRE_ALL=1``
(set by ``.ci/run``) such a skip is an error instead.
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

nox.needs_version = ">=2024.4"
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "doctests", "lint", "typecheck", "docs", "build"]

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml("pyproject.toml")
REQUIRE_ALL = os.environ.get("XPLAYERS_NOX_REQUIRE_ALL", "") not in ("", "0")


def load_records() -> dict[str, Any]:
    """The backend records of ``xplayers/backend/``, read without importing xplayers.

    The record modules import only the standard library at import time, so
    they load here before NumPy is installed: the packages ``xplayers`` and
    ``xplayers.backend`` are stood in for by empty ones while they load.
    """
    saved = {k: m for k, m in sys.modules.items() if k == "xplayers" or k.startswith("xplayers.")}
    for key in saved:
        del sys.modules[key]
    try:
        for name, path in (("xplayers", "xplayers"), ("xplayers.backend", "xplayers/backend")):
            package = types.ModuleType(name)
            package.__path__ = [str(ROOT / path)]
            sys.modules[name] = package
        files = sorted((ROOT / "xplayers" / "backend").glob("[!_]*.py"))
        modules = [
            importlib.import_module(f"xplayers.backend.{f.stem}")
            for f in files
            if not f.stem.startswith("kernels_")
        ]
        found = {m.RECORD.name: m.RECORD for m in modules}
        return dict(sorted(found.items(), key=lambda item: item[0] != "numpy"))
    finally:
        for key in [k for k in sys.modules if k == "xplayers" or k.startswith("xplayers.")]:
            del sys.modules[key]
        sys.modules.update(saved)


RECORDS = load_records()
# backend name -> its CPU columns of the test matrix
CPU_IDS = {
    name: [t.id for t in r.test_ids if not t.gpu]
    for name, r in RECORDS.items()
    if any(not t.gpu for t in r.test_ids)
}
GPU_IDS = [t.id for r in RECORDS.values() for t in r.test_ids if t.gpu]
# Optional features that need a package of their own, and the session that installs it.
FEATURES = {"numpy": ["matplotlib", "threadpoolctl"]}


def _install_test(session: nox.Session, *extra: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"), *extra)
    session.install("-e", ".", "--no-deps")


def _requirements(session: nox.Session, name: str) -> list[str]:
    """What the session of backend `name` installs for it, from its record."""
    r = RECORDS[name]
    pinned = os.environ.get(r.nox_requirement_env or "", "").strip()
    if pinned:
        return shlex.split(pinned)
    if r.nox_opt_in:
        message = (
            f"{name}: set {r.nox_requirement_env} to what to install (its plain PyPI wheel "
            f"is a GPU build of several GB), e.g. {r.nox_requirement_env}='{name} "
            f"--index-url https://download.pytorch.org/whl/cpu'"
        )
        if REQUIRE_ALL:
            session.error(
                f"XPLAYERS_NOX_REQUIRE_ALL is set, so this session may not skip: {message}"
            )
        session.skip(message)
    return list(r.nox_requirements)


@nox.session
@nox.parametrize("backend", list(CPU_IDS))
def tests(session: nox.Session, backend: str) -> None:
    """Run the test suite on one CPU backend, failing if that backend is not usable."""
    extra = _requirements(session, backend)
    session.install("numpy", "array-api-compat")
    _install_test(session, *extra, *FEATURES.get(backend, []))
    session.run(
        "pytest",
        f"--backends={','.join(CPU_IDS[backend])}",
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
            "pytest",
            "-p",
            "no:cacheprovider",
            *targets,
            *session.posargs,
            env={"XPLAYERS_BACKEND": backend},
        )


@nox.session(python=False)
def gpu(session: nox.Session) -> None:
    """Run the suite on the GPU columns of the matrix (CuPy, torch CUDA) here (needs a GPU)."""
    session.run(
        "python",
        "-m",
        "pytest",
        f"--backends={','.join(GPU_IDS)}",
        "--require-backends",
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


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML documentation with Sphinx into docs/_build/html, warnings as errors."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "docs"))
    session.install("-e", ".")
    # A fresh build: an incremental one would not repeat the warnings of unchanged pages.
    shutil.rmtree(ROOT / "docs" / "_build" / "html", ignore_errors=True)
    command = ["sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"]
    session.run(*command, *session.posargs, env={"XPLAYERS_BACKEND": ""})


# Run in a fresh virtual environment holding only the wheel and its requirements.
SMOKE_TEST = """
import sys
from pathlib import Path

import numpy as np

import xplayers as xpl

heavy = sorted(m for m in ("torch", "cupy", "jax", "dask") if m in sys.modules)
assert not heavy, f"importing xplayers imported {heavy}"
assert "site-packages" in Path(xpl.__file__).parts, f"xplayers came from {xpl.__file__}"
assert xpl.get_backend().name == "numpy", xpl.get_backend()

rng = np.random.default_rng(0)
affine = xpl.Affine(xpl.asarray(rng.normal(size=(4, 3))), xpl.asarray(np.zeros(3)))
relu, last = xpl.Relu(), xpl.SoftmaxWithLoss()
x, t = xpl.asarray(rng.normal(size=(2, 4))), xpl.asarray([0, 2])
loss = last.forward(relu.forward(affine.forward(x)), t)
dx = affine.backward(relu.backward(last.backward()))
assert np.isfinite(float(loss)), loss
assert dx.shape == (2, 4) and affine.dW.shape == (4, 3) and affine.db.shape == (3,)

from xplayers.datasets import load_digits

images, labels = load_digits()
assert images.shape == (1797, 64) and labels.shape == (1797,)

heavy = sorted(m for m in ("torch", "cupy", "jax", "dask") if m in sys.modules)
assert not heavy, f"using xplayers on NumPy imported {heavy}"
print(f"smoke test passed: xplayers {xpl.__version__} from {xpl.__file__}")
"""


def _check_wheel_files(session: nox.Session, wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    data = ROOT / "xplayers" / "datasets" / "data"
    required = {"xplayers/py.typed"} | {
        f"xplayers/datasets/data/{p.name}" for p in data.iterdir() if p.is_file()
    }
    if not any(name.startswith("xplayers/datasets/data/") for name in required):
        session.error(f"no data files found in {data}")
    missing = sorted(required - names)
    if missing:
        session.error(f"{wheel.name} lacks {missing}")
    session.log(f"{wheel.name} holds {', '.join(sorted(required))}")


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and wheel, check them with twine, and smoke-test the wheel in a bare venv."""
    session.install("build", "twine")
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    artifacts = sorted(str(p) for p in dist.iterdir())
    session.run("twine", "check", "--strict", *artifacts)
    (wheel,) = dist.glob("*.whl")
    _check_wheel_files(session, wheel)

    venv = Path(session.create_tmp()).resolve() / "smoke-venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", str(venv))
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    session.run(python, "-m", "pip", "install", "--quiet", str(wheel), external=True)

    # Nothing but the wheel and its declared requirements may have been installed.
    expected = {"xplayers"} | {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]
    }
    pip_list = [python, "-m", "pip", "list", "--format=freeze"]
    listing = session.run(*pip_list, external=True, silent=True)
    installed = {canonicalize_name(line.split("==")[0]) for line in str(listing).split()}
    installed -= {"pip", "setuptools", "wheel"}  # what `python -m venv` brings
    if installed != expected:
        session.error(f"the bare venv holds {sorted(installed)}, expected {sorted(expected)}")

    script = venv / "smoke_test.py"
    script.write_text(SMOKE_TEST, encoding="utf-8")
    with session.chdir(venv):  # away from the source tree, so the import finds the wheel
        session.run(python, str(script), external=True, env={"XPLAYERS_BACKEND": ""})


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Benchmark every target in its own process and render docs/benchmarks.md (not default).

    Runs ``bench/run_all.py`` in the current environment, which must already
    have the ``bench`` dependency group and the backends to measure: the
    numbers are those of the libraries installed there. ``nox -s bench``
    is the measurement run (an estimated 15-20 minutes on two cores; see
    ``bench/README.md``); ``nox -s bench -- quick`` (or ``XPLAYERS_BENCH_QUICK=1``)
    is a smoke run of about a minute whose page goes under ``bench/results/tmp/``.
    Other arguments go to ``bench/run_all.py``, e.g.
    ``nox -s bench -- --also bench/results/gpu`` to include a GPU run in the page.
    """
    import shlex

    args = ["--", *session.posargs] if session.posargs else []
    command = shlex.join(["nox", "-s", "bench", *args])
    session.run(
        "python",
        "bench/run_all.py",
        *session.posargs,
        env={"XPLAYERS_BENCH_COMMAND": command},
        external=True,
    )
