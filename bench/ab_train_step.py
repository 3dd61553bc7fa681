"""Time one library's NumPy ``train_step`` in a fresh process, to compare two commits.

``python bench/ab_train_step.py ROOT NET N REPEATS`` imports xplayers from
the checkout at ROOT and builds NET: ``mlp`` (``TwoLayerNet(784, 100, 10)``,
batch N) or ``conv`` (the chapter-7 ``SimpleConvNet``, 1x28x28, batch N,
the benchmark suite's weights), in float64; ``book`` times the book's
``SimpleConvNet`` of ``bench/book_numpy.py`` instead (ROOT unused). It takes
three warm-up steps, then times REPEATS steps with ``time.perf_counter`` and
prints the median and the minimum. Run it for two checkouts (``git
worktree add``) alternately, so that both see the same drift of the machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _step(root: str, net_name: str, batch: int) -> Callable[[], object]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from book_numpy import SimpleConvNet, init_conv_params, make_batch

    if net_name == "book":
        book = SimpleConvNet(init_conv_params("float64"))
        x, t = make_batch(batch, "float64", shape=(1, 28, 28))
        return lambda: book.step(x, t)
    sys.path.insert(0, root)
    import xplayers as xpl

    opt = xpl.SGD(lr=0.1)
    if net_name == "mlp":
        rng = np.random.default_rng(1)
        x, t = rng.random((batch, 784)), rng.integers(0, 10, batch)
        net = xpl.TwoLayerNet(784, 100, 10, dtype="float64", seed=0)
    else:
        net = xpl.SimpleConvNet(input_dim=(1, 28, 28), hidden_size=100, output_size=10)
        for key, value in init_conv_params("float64").items():
            net.params[key] = xpl.asarray(value)
        x, t = make_batch(batch, "float64", shape=(1, 28, 28))
    return lambda: net.train_step(x, t, opt)


def main() -> None:
    root, net_name, batch, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    step = _step(root, net_name, batch)
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    median, best = statistics.median(times) * 1e3, min(times) * 1e3
    print(f"{root} {net_name} N={batch} median {median:.3f} ms min {best:.3f} ms")


if __name__ == "__main__":
    main()
