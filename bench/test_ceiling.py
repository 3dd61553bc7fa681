"""The ceiling of every NumPy path: xplayers' NumPy kernels called alone, against the book.

One training step of 784-100-10 (SGD) written as bare calls of
``xplayers/backend/kernels_numpy.py``: no layer objects, no argument checks,
no dispatch, no optimizer. It makes the BLAS calls and the elementwise passes
that ``train_step`` makes, so no path through the layers can beat it; its
ratio to the book's code is the most any NumPy path can reach with these
kernels. Two forms: without the first layer's ``dx`` (what ``train_step`` and
the book's loop on ``TwoLayerNet`` compute) and with it (what the book's
layers, and the layers wired by hand with the default ``input_grad=True``,
compute). Both are timed in the same process as the book's step.
"""

from __future__ import annotations

import pytest
from book_numpy import BookNet, init_params, make_batch

LR = 0.1


def _bare_step(params, x, t, first_dx):
    from xplayers.backend import kernels_numpy as k

    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]

    def step():
        h = k.affine(x, W1, b1)
        a = k.relu(h)
        s = k.affine(a, W2, b2)
        loss, y = k.softmax_cross_entropy(s, t)
        ds = k.cross_entropy_backward(y, t, 1.0)
        da, dW2, db2 = k.affine_backward(ds, a, W2)
        dh = k.relu_backward(da, a)
        _, dW1, db1 = k.affine_backward(dh, x, W1, input_grad=first_dx)
        for p, g in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2)):
            k.subtract_scaled_(p, g, LR)
        return loss

    return step


IMPLS = {
    "book": None,
    "NumPy kernels alone": False,
    "NumPy kernels alone, with the first layer's dx": True,
}


@pytest.mark.parametrize("impl", list(IMPLS))
def test_ceiling(measure, xb, dtype, batch, impl):
    if xb.backend.name != "numpy":
        pytest.skip("the ceiling is measured with the NumPy kernels")
    x, t = make_batch(batch, dtype)
    if impl == "book":
        run, goals = BookNet(init_params(100, dtype)).step, []
        step = lambda: run(x, t, LR)  # noqa: E731
    else:
        params = {k: v.copy() for k, v in init_params(100, dtype).items()}
        step = _bare_step(params, x, t, IMPLS[impl])
        goals = [
            {"goal": f"{impl} vs the book's code (the ceiling of the layer paths)", "vs": "book"}
        ]
    measure(
        step,
        f"ceiling 784-100-10 {dtype} N={batch}",
        impl,
        table=f"Ceiling: NumPy kernels alone vs the book, 784-100-10, {dtype}",
        batch=batch,
        samples=batch,
        goals=goals,
        **({} if impl == "book" else {"relative_to": "book"}),
    )
