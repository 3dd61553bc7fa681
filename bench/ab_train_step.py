"""Time one library's NumPy ``train_step`` in a fresh process, to compare two commits.

``python bench/ab_train_step.py ROOT N REPEATS`` imports xplayers from the
checkout at ROOT, builds ``TwoLayerNet(784, 100, 10)`` in float64, takes
three warm-up steps at batch N, then times REPEATS steps with
``time.perf_counter`` and prints the median and the minimum. Run it for
two checkouts (``git worktree add``) alternately, so that both see the
same drift of the machine.
"""

from __future__ import annotations

import statistics
import sys
import time


def main() -> None:
    root, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sys.path.insert(0, root)
    import numpy as np

    import xplayers as xpl

    rng = np.random.default_rng(1)
    x, t = rng.random((batch, 784)), rng.integers(0, 10, batch)
    net, opt = xpl.TwoLayerNet(784, 100, 10, dtype="float64", seed=0), xpl.SGD(lr=0.1)
    for _ in range(3):
        net.train_step(x, t, opt)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net.train_step(x, t, opt)
        times.append(time.perf_counter() - t0)
    median, best = statistics.median(times) * 1e3, min(times) * 1e3
    print(f"{root} N={batch} median {median:.3f} ms min {best:.3f} ms")


if __name__ == "__main__":
    main()
