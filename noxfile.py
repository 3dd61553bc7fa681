"""Development sessions: ``nox`` runs the default ones (the CPU backends, lint, types, docs, build).

``nox -s tests`` runs the test suite once per CPU backend, each session
installing only its own backend: the extra of ``pyproject.toml`` that its
record in ``xplayers/backend/`` names (the one source of requirements), and
running the test ids of ``tests/matrix.py``. Before the tests, each session
imports its backend's whole stack and fails in one line if the installed
releases do not fit together.
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

import html.parser
import importlib
import importlib.util
import os
import shlex
import shutil
import sys
import types
import urllib.parse
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


def load_matrix() -> types.ModuleType:
    """``tests/matrix.py``, the test columns and session stacks, loaded by path (stdlib only)."""
    path = ROOT / "tests" / "matrix.py"
    spec = importlib.util.spec_from_file_location("xplayers_test_matrix", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while they are made
    spec.loader.exec_module(module)
    return module


RECORDS = load_records()
MATRIX = load_matrix()
# backend name -> its CPU columns of the test matrix
CPU_IDS = {
    name: [t.id for t in MATRIX.COLUMNS[name] if not t.gpu]
    for name in RECORDS
    if any(not t.gpu for t in MATRIX.COLUMNS[name])
}
GPU_IDS = [t.id for name in RECORDS for t in MATRIX.COLUMNS[name] if t.gpu]
# Optional features tested in one session, by the extra of pyproject.toml that installs them.
FEATURES = {"numpy": ["plot"]}
# The sessions that run pytest let Python write its bytecode caches (``__pycache__``, which git
# ignores) even where PYTHONDONTWRITEBYTECODE is set, as on some CI machines: without them each
# session compiles xplayers and rewrites the asserts of every test module again, about 40% of
# the time pytest takes to collect the suite.
WRITE_BYTECODE: dict[str, str | None] = {"PYTHONDONTWRITEBYTECODE": None}
# Backends whose plain PyPI wheel is a GPU build of several gigabytes: their session runs only
# when this variable says what to install, and otherwise skips with that hint.
OPT_IN = {"torch": "XPLAYERS_TORCH_REQUIREMENT"}


def extra_requirements(*extras: str) -> list[str]:
    """What ``pyproject.toml`` lists under `extras`: the one source of optional requirements."""
    optional = PYPROJECT["project"]["optional-dependencies"]
    return [req for extra in extras for req in optional[extra]]


def _install_test(session: nox.Session, *extra: str) -> None:
    """xplayers itself, editable, with its requirements, the test group and `extra`: one pip run."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "test"), *extra)


def _requirements(session: nox.Session, name: str) -> list[str]:
    """What the session of backend `name` installs for it: its record's extras, from pyproject."""
    variable = OPT_IN.get(name)
    if variable is None:
        return extra_requirements(*RECORDS[name].extras[:1])
    pinned = os.environ.get(variable, "").strip()
    if pinned:
        return shlex.split(pinned)
    message = (
        f"{name}: set {variable} to what to install (its plain PyPI wheel "
        f"is a GPU build of several GB), e.g. {variable}='{name} "
        f"--index-url https://download.pytorch.org/whl/cpu'"
    )
    if REQUIRE_ALL:
        session.error(f"XPLAYERS_NOX_REQUIRE_ALL is set, so this session may not skip: {message}")
    session.skip(message)
    return []  # not reached: skip raises


@nox.session
@nox.parametrize("backend", list(CPU_IDS))
def tests(session: nox.Session, backend: str) -> None:
    """Run the test suite on one CPU backend, failing if that backend is not usable."""
    extra = _requirements(session, backend)
    _install_test(session, *extra, *extra_requirements(*FEATURES.get(backend, [])))
    # Fail fast, in one line, when the installed releases of the stack do not fit together.
    session.run("python", "tests/matrix.py", "check", backend, silent=True)
    session.run(
        "pytest",
        f"--backends={','.join(CPU_IDS[backend])}",
        "--require-backends",
        *session.posargs,
        env={"XPLAYERS_BACKEND": "", **WRITE_BYTECODE},
    )


@nox.session
def doctests(session: nox.Session) -> None:
    """Run the examples in the docstrings, the README and docs/ on NumPy and array-api-strict."""
    _install_test(session)
    targets = ["--doctest-modules", "xplayers", "--doctest-glob=*.md", "README.md", "docs"]
    # The kernel modules of the optional libraries (CuPy, torch, JAX, ...) import their library
    # at the top and hold no examples; this session installs none of them.
    targets += [
        f"--ignore={path.relative_to(ROOT).as_posix()}"
        for path in sorted((ROOT / "xplayers" / "backend").glob("kernels_*.py"))
        if path.stem != "kernels_numpy"
    ]
    for backend in ("numpy", "array_api_strict"):
        session.run(
            "pytest",
            "-p",
            "no:cacheprovider",
            *targets,
            *session.posargs,
            env={"XPLAYERS_BACKEND": backend, **WRITE_BYTECODE},
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
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.run("mypy")


class _Assets(html.parser.HTMLParser):
    """The scripts and style sheets an HTML page loads: (tag, address) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.found.append((tag, a["src"] or ""))
        elif tag == "link" and "stylesheet" in (a.get("rel") or "").split() and a.get("href"):
            self.found.append((tag, a["href"] or ""))


def _check_self_contained(session: nox.Session, out: Path) -> None:
    """Fail if a built page loads a script or style sheet from another host, or lacks MathJax."""
    remote, mathjax = [], 0
    for page in sorted(out.rglob("*.html")):
        parser = _Assets()
        parser.feed(page.read_text(encoding="utf-8"))
        for tag, address in parser.found:
            if urllib.parse.urlsplit(address).netloc:  # http://, https:// and //host alike
                remote.append(f"{page.relative_to(out)}: <{tag}> {address}")
            elif address.split("?")[0].endswith("mathjax/tex-chtml.js"):
                mathjax += (page.parent / address.split("?")[0]).is_file()
    if remote:
        session.error("pages load from other hosts:\n  " + "\n  ".join(remote))
    if not mathjax:
        session.error(f"no page of {out} loads a local copy of MathJax")
    session.log(f"every page's scripts and style sheets are local; {mathjax} load MathJax")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML documentation with Sphinx into docs/_build/html, warnings as errors.

    First checks that the command-line reference (docs/cli.md) is what the
    parser writes; after the build, that the pages load no script or style
    sheet from another host, so they read the same offline.
    """
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "docs"))
    session.run("python", "-m", "xplayers.cli._reference", "--check")
    # A fresh build: an incremental one would not repeat the warnings of unchanged pages.
    out = ROOT / "docs" / "_build" / "html"
    shutil.rmtree(out, ignore_errors=True)
    command = ["sphinx-build", "-W", "--keep-going", "-b", "html", "docs", str(out)]
    session.run(*command, *session.posargs, env={"XPLAYERS_BACKEND": ""})
    _check_self_contained(session, out)


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


def _bench_backends() -> list[str]:
    """``XPLAYERS_BACKEND`` values of the backends usable on this CPU, one per record."""
    import sys

    sys.path.insert(0, str(ROOT))
    from xplayers.backend import RECORDS

    # a library that also runs on GPUs runs here on its CPU; a GPU-only one in bench/run_gpu.sh
    specs = [(rec.name, "cpu" if rec.gpu else None) for rec in RECORDS.values()]
    ok = [(name, dev) for name, dev in specs if RECORDS[name].status(dev)[0]]
    return [f"{name}:{dev}" if dev else name for name, dev in ok]


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Run the benchmarks, one process per backend, and render docs/benchmarks.md (not default).

    In the current environment, which must have the ``bench`` group and the
    backends to measure. ``nox -s bench`` is the measurement (an estimated 10-15
    minutes on 2 idle cores; summaries in ``bench/results/cpu``, pytest-benchmark's own
    files and the logs in its ``raw/``, which git ignores); ``nox -s bench -- quick`` a
    smoke run of a minute or two (``bench/results/tmp/quick``, page beside it).
    Other arguments are result folders to add to the page (``bench/results/gpu``).
    """
    import json
    import subprocess
    import time

    quick = session.posargs[:1] == ["quick"]
    extra = session.posargs[1:] if quick else session.posargs
    out = ROOT / "bench" / "results" / ("tmp/quick" if quick else "cpu")
    raw = out / "raw"  # pytest-benchmark's files with every round, and the logs: not in git
    shutil.rmtree(out, ignore_errors=True)
    raw.mkdir(parents=True)
    # (XPLAYERS_BACKEND, suite): one process each, so no library's threads spin beside another's
    processes = [("numpy", "limits"), ("torch:cpu", "limits"), ("numpy", "book")]
    processes += [("torch:cpu", "torch_eager"), ("jax:cpu", "jax_jit")]
    # volume 2: the book and xplayers on NumPy, the eager peer on torch, jax.jit on JAX
    processes += [("numpy", "book2"), ("torch:cpu", "book2"), ("jax:cpu", "book2")]
    processes += [(spec, "xplayers") for spec in _bench_backends()] + [("numpy", "load")]
    named = {suite for _, suite in processes}  # any other suite runs once, on the default
    processes += [("", p.stem[5:]) for p in sorted(ROOT.glob("bench/test_*.py"))]
    processes = [(b, s) for b, s in processes if b or s not in named]
    timing = ["--benchmark-max-time=0.1", "--benchmark-min-rounds=5"]
    if quick:
        timing = ["--benchmark-max-time=0.001", "--benchmark-min-rounds=1"]
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    env["XPLAYERS_BENCH_QUICK"] = "1" if quick else ""
    command = " ".join(["nox -s bench", *(["--", *session.posargs] if session.posargs else [])])
    run = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    run["runs"], start = [], time.monotonic()
    for backend, suite in processes:
        stem = f"{suite}-{backend.replace(':', '-')}" if backend else suite
        args = ["python", "-m", "pytest", f"bench/test_{suite}.py", "-p", "no:cacheprovider"]
        args += ["-q", "-rs", "--benchmark-only", "--benchmark-disable-gc", *timing]
        args += [f"--benchmark-json={raw / stem}.json"]
        proc_env = {**env, "XPLAYERS_BACKEND": backend}
        shown = f"XPLAYERS_BACKEND={backend} {' '.join(args[:4])}"
        if backend.startswith("jax"):  # float64 on JAX
            proc_env["JAX_ENABLE_X64"] = "1"
            shown = f"JAX_ENABLE_X64=1 {shown}"
        session.log(shown)
        t0 = time.monotonic()
        with open(raw / f"{stem}.log", "w") as log:
            rc = subprocess.call(args, env=proc_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        seconds = time.monotonic() - t0
        run["runs"].append(
            {"command": shown, "json": f"{stem}.json", "exit": rc, "seconds": seconds}
        )
        if rc not in (0, 5):
            session.warn(f"{shown}: exit {rc}, see {raw / stem}.log")
    run["seconds"] = time.monotonic() - start
    (out / "run.json").write_text(json.dumps(run, indent=1))
    # what git keeps and the page reads: statistics per benchmark, skipped tests, no rounds
    session.run("python", "bench/summary.py", str(out))
    page = out / "benchmarks.md" if quick else ROOT / "docs" / "benchmarks.md"
    session.run("python", "bench/report.py", str(out), *extra, "--output", str(page))
    if any(r["exit"] not in (0, 5) for r in run["runs"]):
        session.error("some benchmark processes failed (see the logs beside the results)")
