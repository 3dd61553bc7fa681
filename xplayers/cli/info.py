"""``xplayers info``: versions, every backend (from the registry's report) and the BLAS."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
from typing import Any

import numpy as np

from xplayers._version import __version__
from xplayers.backend import ENV_VAR, get_backend, report
from xplayers.errors import XplayersError

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``info`` command to the subcommand group `sub`."""
    i: argparse.ArgumentParser = sub.add_parser(
        "info",
        help="backends, devices and library versions",
        description="Show every backend (installed, version, usable or why not, devices), "
        "the Python, NumPy and array-api-compat versions, and the BLAS library.",
    )
    return i


def _version(module: str) -> str | None:
    try:
        return str(importlib.metadata.version(module))
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "unknown"))


def _blas() -> list[str]:
    lines: list[str] = []
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        lines.extend(
            f"{pool.get('internal_api', '?')} {pool.get('version', '?')} "
            f"({pool.get('user_api', '?')}, {pool.get('num_threads', '?')} threads) "
            f"{pool.get('filepath', '')}"
            for pool in threadpool_info()
        )
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        lines.insert(0, f"NumPy built with {blas.get('name', '?')} {blas.get('version', '?')}")
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    if threadpool_info is None:
        lines.append("(pip install threadpoolctl to list the libraries loaded and their threads)")
    return lines


def run(args: argparse.Namespace) -> int:
    """Run ``xplayers info``; return the exit status."""
    print(f"xplayers {__version__}")
    print(f"Python {platform.python_version()} ({sys.executable}) on {platform.platform()}")
    print(f"numpy {np.__version__}, array-api-compat {_version('array_api_compat')}")
    env = os.environ.get(ENV_VAR)
    try:
        current = str(get_backend()) + (f" ({ENV_VAR}={env!r})" if env else "")
    except XplayersError as exc:
        current = f"unusable: {exc}"
    print(f"current backend: {current}")
    print("backends:")
    for entry in report():
        print(f"  {entry.line()}")
    print("BLAS:")
    for line in _blas():
        print(f"  {line}")
    return 0
