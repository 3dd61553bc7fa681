"""Bad input to the chapter 6-7 layers: the same exception type on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from xplayers.errors import LayerInputError, LayerStateError


def _conv(backend, fn=2, c=1, k=3, **kw):
    return xpl.Convolution(
        backend.asarray(np.ones((fn, c, k, k))), backend.asarray(np.zeros(fn)), **kw
    )


def _bn(backend, d=4):
    return xpl.BatchNormalization(backend.asarray(np.ones(d)), backend.asarray(np.zeros(d)))


def _twice(layer, x, dout):
    layer.forward(x)
    return layer.backward(dout)


CASES = {
    "conv W not 4-D": (
        lambda b: xpl.Convolution(b.asarray(np.ones((2, 9))), b.asarray(np.zeros(2))),
        LayerInputError,
    ),
    "conv b wrong shape": (
        lambda b: xpl.Convolution(b.asarray(np.ones((2, 1, 3, 3))), b.asarray(np.zeros(3))),
        LayerInputError,
    ),
    "conv integer W": (
        lambda b: xpl.Convolution(b.asarray(np.ones((2, 1, 3, 3), int)), b.asarray(np.zeros(2))),
        LayerInputError,
    ),
    "conv stride 0": (lambda b: _conv(b, stride=0), LayerInputError),
    "conv negative pad": (lambda b: _conv(b, pad=-1), LayerInputError),
    "conv bool stride": (lambda b: _conv(b, stride=True), LayerInputError),
    "conv x 3-D": (lambda b: _conv(b).forward(b.asarray(np.ones((1, 5, 5)))), LayerInputError),
    "conv channel mismatch": (
        lambda b: _conv(b, c=2).forward(b.asarray(np.ones((1, 3, 5, 5)))),
        LayerInputError,
    ),
    "conv filter larger than padded input": (
        lambda b: _conv(b, k=5, pad=1).forward(b.asarray(np.ones((1, 1, 2, 2)))),
        LayerInputError,
    ),
    "conv integer x": (
        lambda b: _conv(b).forward(b.asarray(np.ones((1, 1, 5, 5), int))),
        LayerInputError,
    ),
    "conv backward before forward": (
        lambda b: _conv(b).backward(b.asarray(np.ones((1, 2, 3, 3)))),
        LayerStateError,
    ),
    "conv dout wrong shape": (
        lambda b: _twice(
            _conv(b), b.asarray(np.ones((1, 1, 5, 5))), b.asarray(np.ones((1, 2, 4, 4)))
        ),
        LayerInputError,
    ),
    "pool size 0": (lambda b: xpl.Pooling(0, 2), LayerInputError),
    "pool x 2-D": (
        lambda b: xpl.Pooling(2, 2).forward(b.asarray(np.ones((4, 4)))),
        LayerInputError,
    ),
    "pool window larger than input": (
        lambda b: xpl.Pooling(3, 3).forward(b.asarray(np.ones((1, 1, 2, 2)))),
        LayerInputError,
    ),
    "pool backward before forward": (
        lambda b: xpl.Pooling(2, 2).backward(b.asarray(np.ones((1, 1, 1, 1)))),
        LayerStateError,
    ),
    "pool dout wrong shape": (
        lambda b: _twice(
            xpl.Pooling(2, 2), b.asarray(np.ones((1, 1, 4, 4))), b.asarray(np.ones((1, 1, 2, 2)))
        ),
        LayerInputError,
    ),
    "dropout ratio above 1": (lambda b: xpl.Dropout(1.5), LayerInputError),
    "dropout integer x": (
        lambda b: xpl.Dropout(0.5).forward(b.asarray(np.ones(3, int))),
        LayerInputError,
    ),
    "dropout backward before forward": (
        lambda b: xpl.Dropout(0.5).backward(b.asarray(np.ones(3))),
        LayerStateError,
    ),
    "dropout dout wrong shape": (
        lambda b: _twice(xpl.Dropout(0.5), b.asarray(np.ones(3)), b.asarray(np.ones(4))),
        LayerInputError,
    ),
    "bn gamma 2-D": (
        lambda b: xpl.BatchNormalization(b.asarray(np.ones((2, 2))), b.asarray(np.zeros((2, 2)))),
        LayerInputError,
    ),
    "bn beta mismatch": (
        lambda b: xpl.BatchNormalization(b.asarray(np.ones(3)), b.asarray(np.zeros(4))),
        LayerInputError,
    ),
    "bn momentum": (
        lambda b: xpl.BatchNormalization(b.asarray(np.ones(3)), b.asarray(np.zeros(3)), momentum=2),
        LayerInputError,
    ),
    "bn feature mismatch": (lambda b: _bn(b).forward(b.asarray(np.ones((2, 5)))), LayerInputError),
    "bn 1-D x": (lambda b: _bn(b).forward(b.asarray(np.ones(4))), LayerInputError),
    "bn empty batch in training": (
        lambda b: _bn(b).forward(b.asarray(np.ones((0, 4)))),
        LayerInputError,
    ),
    "bn backward before forward": (
        lambda b: _bn(b).backward(b.asarray(np.ones((2, 4)))),
        LayerStateError,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(backend, case):
    call, error = CASES[case]
    with pytest.raises(error) as info:
        call(backend)
    assert info.type is error
    assert "expected" in str(info.value) or "before" in str(info.value)


def test_mixed_backends_refused(backend):
    if backend.name == "numpy":
        pytest.skip("needs a second backend beside NumPy")
    conv = _conv(backend)
    with pytest.raises(LayerInputError, match="same backend"):
        conv.forward(np.ones((1, 1, 5, 5)))
