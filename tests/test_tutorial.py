"""The tutorial runs on every backend its section 7 names, with the variables it names there.

The page lists one ``python -m doctest docs/tutorial.md`` command line per
backend, with its environment variables (``XPLAYERS_BACKEND``, and
``JAX_ENABLE_X64`` for JAX). Each line is run here as written, in a child
process, in the test session of its backend (``backends`` marker); a line
whose backend is not usable here (a GPU line on a CPU machine) is skipped
with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xplayers.backend import backend_status

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "tutorial.md"
LINE = re.compile(r"^\$ ((?:[A-Z0-9_]+=\S+ )*)python -m doctest docs/tutorial\.md$", re.MULTILINE)
# What the child must not inherit: only the page's own variables choose its backend.
CLEARED = ("XPLAYERS_BACKEND", "JAX_ENABLE_X64")


def _lines() -> list[dict[str, str]]:
    """The environment of each command line of the page."""
    text = PAGE.read_text(encoding="utf-8")
    return [dict(a.split("=", 1) for a in m.group(1).split()) for m in LINE.finditer(text)]


def _spec(env: dict[str, str]) -> tuple[str, str | None]:
    name, _, device = env.get("XPLAYERS_BACKEND", "numpy").partition(":")
    return name, device or None


def _params() -> list[object]:
    out = []
    for env in _lines():
        name, _ = _spec(env)
        shown = " ".join(f"{k}={v}" for k, v in env.items()) or "default"
        out.append(pytest.param(env, id=shown, marks=pytest.mark.backends(name)))
    return out


def test_the_page_names_every_backend() -> None:
    """Section 7 has a line for each CPU backend and for both GPU libraries."""
    named = {_spec(env) for env in _lines()}
    cpu = {(name, None) for name in ("numpy", "array_api_strict", "torch", "jax", "dask")}
    assert cpu | {("cupy", None), ("torch", "cuda")} <= named


@pytest.mark.slow
@pytest.mark.parametrize("env", _params())
def test_tutorial_runs_as_the_page_says(env: dict[str, str]) -> None:
    name, device = _spec(env)
    usable, why = backend_status(name, device)
    if not usable:
        pytest.skip(f"{env.get('XPLAYERS_BACKEND')} is not usable here: {why}")
    child = {k: v for k, v in os.environ.items() if k not in CLEARED} | env
    result = subprocess.run(
        [sys.executable, "-m", "doctest", "docs/tutorial.md"],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
