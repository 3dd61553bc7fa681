"""The test matrix and the nox sessions: one source of requirements, stacks that import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import xplayers as xpl
from tests import matrix
from xplayers.backend import RECORDS

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_backend_has_columns_and_a_stack():
    assert set(matrix.COLUMNS) == set(xpl.BACKENDS) == set(matrix.STACKS)
    ids = [t.id for columns in matrix.COLUMNS.values() for t in columns]
    assert len(ids) == len(set(ids)), ids
    for name, columns in matrix.COLUMNS.items():
        assert columns, name
        assert all(t.id.split(":")[0].removesuffix("_readonly") == name for t in columns)


def test_records_carry_no_test_configuration():
    """What a session installs and runs lives with the tests and the noxfile, not the records."""
    for rec in RECORDS.values():
        for field in (
            "test_ids",
            "nox_requirements",
            "nox_requirement_env",
            "nox_opt_in",
            "prepare_tests",
        ):
            assert not hasattr(rec, field), (rec.name, field)


def test_install_hints_name_the_extras_of_pyproject():
    optional = PYPROJECT["project"]["optional-dependencies"]
    for rec in RECORDS.values():
        for extra in rec.extras:
            assert extra in optional, (rec.name, extra)
            assert f'".[{extra}]"' in rec.install, (rec.name, rec.install)
    assert RECORDS["numpy"].extras == ()


def test_nox_sessions_install_the_extras_of_pyproject():
    """The dask session installs exactly ``.[dask]``'s requirements, which keep dask and
    distributed of one release (``dask[array,distributed]``)."""
    pytest.importorskip("nox")
    sys.path.insert(0, str(ROOT))
    try:
        import noxfile
    finally:
        sys.path.remove(str(ROOT))
    optional = PYPROJECT["project"]["optional-dependencies"]
    assert noxfile.extra_requirements("dask") == optional["dask"]
    assert any("distributed" in req for req in optional["dask"])
    assert noxfile.extra_requirements(*noxfile.FEATURES["numpy"]) == optional["plot"]
    assert set(noxfile.CPU_IDS) == {"numpy", "array_api_strict", "dask", "jax", "torch"}
    assert noxfile.GPU_IDS == ["cupy", "torch:cuda"]


def test_session_stack_imports(backend):
    """The whole stack of the session's backend imports (dask with distributed and zarr)."""
    assert matrix.check_stack(backend.name) is None


def test_a_stack_that_does_not_import_is_one_line(monkeypatch):
    monkeypatch.setitem(
        matrix.STACKS, "numpy", (("numpy", "xplayers_no_such_module"), ("numpy", "no-such-dist"))
    )
    problem = matrix.check_stack("numpy")
    assert problem is not None
    assert "\n" not in problem
    assert "xplayers_no_such_module" in problem
    assert "ModuleNotFoundError" in problem
    assert "numpy " in problem  # the installed version of what is there


def test_check_command_exits_1_with_one_line_for_a_broken_stack(tmp_path):
    # A `distributed` that fails at import, as a release of it that does not fit dask's would.
    (tmp_path / "distributed.py").write_text("raise ImportError('cannot import name X')\n")
    r = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "matrix.py"), "check", "dask"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": ""},
        check=False,
    )
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    if "dask.array" in lines[0]:  # no dask in this environment: the line says so first
        assert "the dask test stack does not import" in lines[0]
    else:
        assert "distributed: ImportError: cannot import name X" in lines[0]


def test_check_command_usage():
    r = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "matrix.py"), "check", "tensorflow"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    assert "usage" in r.stderr
