"""Run code in a child process under a memory and a CPU-time limit (hostile-file tests).

The limits are set in the child (``resource.setrlimit`` before the code runs),
so the test process itself is never limited. A hostile file must be refused
inside them: a raw ``MemoryError`` or a killed child fails the test.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
"""


def run_limited(
    code: str, *args: str, memory_mib: int = 768, cpu_s: int = 20, timeout_s: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `code` (with ``sys.argv[1:] == args``) under the limits; return the result.

    The child runs NumPy single-threaded (its thread pools reserve address
    space) and on the numpy backend; its stdout and stderr are captured.
    """
    if sys.platform == "win32" or not hasattr(os, "fork"):  # pragma: no cover
        pytest.skip("resource limits need POSIX")
    memory = memory_mib * 2**20
    source = _PRELUDE.format(memory=memory, cpu=cpu_s) + textwrap.dedent(code)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "XPLAYERS_BACKEND": "numpy",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", source, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=4 * cpu_s if timeout_s is None else timeout_s,
        check=False,
    )


@contextlib.contextmanager
def reaped(child: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Yield `child`; when the block ends, kill it if it still runs, wait, close its pipe."""
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
