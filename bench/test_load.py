"""The README's first command, ``python -m xplayers train``, idle and beside one busy process.

The goal: with one other CPU-bound process running, the command stays within
2x of its idle wall time (spinning BLAS threads on small GEMMs are what
slowed it down). Three rounds each; the busy loop is a second Python process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMAND = [sys.executable, "-m", "xplayers", "train"]
GOAL = "`python -m xplayers train` beside one busy process within 2× its idle time"


def train(quick):
    # a quick run trains one epoch: the command's path without its time
    subprocess.run(COMMAND + ["--epochs", "1"] * quick, check=True, capture_output=True)


@pytest.mark.parametrize("load", ["idle", "one busy process"])
def test_train_command(measure, xb, load):
    busy = None
    if load != "idle":
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        goals = [] if busy is None else [{"goal": GOAL, "vs": "idle", "measure": "time", "max": 2}]
        measure(
            lambda: train(xb.quick),
            "xplayers train command",
            load,
            rounds=1 if xb.quick else 3,
            warmup=0 if xb.quick else 1,
            table="`python -m xplayers train`, wall time",
            row=load,
            goals=goals,
        )
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
