"""Bad input: the same exception type on every backend, naming layer, argument, expectation and value."""

from __future__ import annotations

import numpy as np
import pytest

import xplayers as xpl
from xplayers import LayerInputError, LayerStateError


def _affine(backend, d=4, m=3, dtype="float64"):
    return xpl.Affine(backend.asarray(np.ones((d, m), dtype)), backend.asarray(np.zeros(m, dtype)))


def test_affine_width_mismatch(backend):
    layer = _affine(backend)
    with pytest.raises(
        LayerInputError,
        match=r"Affine\.forward: argument 'x': expected 4 values.*\(4, 3\).*got .*\(2, 5\)",
    ):
        layer.forward(backend.asarray(np.ones((2, 5))))


def test_affine_needs_batch_axis(backend):
    with pytest.raises(
        LayerInputError, match=r"Affine\.forward: argument 'x': expected at least 2 dimensions"
    ):
        _affine(backend).forward(backend.asarray(np.ones(4)))


def test_affine_bad_parameters(backend):
    with pytest.raises(LayerInputError, match=r"Affine: argument 'W': expected a 2-D"):
        xpl.Affine(backend.asarray(np.ones(4)), backend.asarray(np.zeros(4)))
    with pytest.raises(LayerInputError, match=r"Affine: argument 'b': expected shape \(3,\)"):
        xpl.Affine(backend.asarray(np.ones((4, 3))), backend.asarray(np.zeros(4)))
    with pytest.raises(
        LayerInputError, match=r"Affine: argument 'b': expected shape \(3,\) and dtype"
    ):
        xpl.Affine(backend.asarray(np.ones((4, 3))), backend.asarray(np.zeros(3, "float32")))


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
@pytest.mark.parametrize("layer", ["Relu", "Sigmoid", "Affine"])
def test_integer_and_bool_inputs(backend, layer, dtype):
    obj = _affine(backend) if layer == "Affine" else getattr(xpl, layer)()
    x = backend.asarray(np.ones((2, 4), dtype=dtype))
    with pytest.raises(
        LayerInputError,
        match=rf"{layer}\.forward: argument 'x': expected a real floating dtype.*got .*{dtype}",
    ):
        obj.forward(x)


def test_not_an_array(backend):
    with pytest.raises(
        LayerInputError, match=r"Relu\.forward: argument 'x': expected an array; got list"
    ):
        xpl.Relu().forward([[1.0, 2.0]])


@pytest.mark.parametrize("layer", ["Relu", "Sigmoid"])
def test_dout_shape_mismatch(backend, layer):
    obj = getattr(xpl, layer)()
    obj.forward(backend.asarray(np.ones((2, 3))))
    with pytest.raises(
        LayerInputError,
        match=rf"{layer}\.backward: argument 'dout': expected the shape of the forward output \(2, 3\); got .*\(3, 2\)",
    ):
        obj.backward(backend.asarray(np.ones((3, 2))))


def test_affine_dout_shape_mismatch(backend):
    layer = _affine(backend)
    layer.forward(backend.asarray(np.ones((2, 4))))
    with pytest.raises(
        LayerInputError,
        match=r"Affine\.backward: argument 'dout': expected the shape of the forward output \(2, 3\)",
    ):
        layer.backward(backend.asarray(np.ones((2, 4))))


def test_softmax_dout_must_be_scalar(backend):
    layer = xpl.SoftmaxWithLoss()
    layer.forward(backend.asarray(np.zeros((2, 3))), backend.asarray(np.array([0, 1])))
    with pytest.raises(
        LayerInputError,
        match=r"SoftmaxWithLoss\.backward: argument 'dout': expected a scalar or 0-d",
    ):
        layer.backward(backend.asarray(np.ones((2, 3))))
    with pytest.raises(LayerInputError, match=r"SoftmaxWithLoss\.backward: argument 'dout'"):
        layer.backward("1.0")


@pytest.mark.parametrize("layer", ["Relu", "Sigmoid", "Affine", "SoftmaxWithLoss"])
def test_backward_before_forward(backend, layer):
    obj = _affine(backend) if layer == "Affine" else getattr(xpl, layer)()
    with pytest.raises(
        LayerStateError, match=rf"{layer}\.backward: called before {layer}\.forward"
    ):
        obj.backward() if layer == "SoftmaxWithLoss" else obj.backward(
            backend.asarray(np.ones((2, 3)))
        )


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 3], r"expected labels in \[0, 3\); got labels from 0 to 3"),
        ([-1, 2], r"expected labels in \[0, 3\); got labels from -1 to 2"),
    ],
)
def test_labels_out_of_range(backend, labels, message):
    if backend.lazy:
        pytest.skip(
            "label values are not read from lazy Dask arrays (that would compute the graph)"
        )
    layer = xpl.SoftmaxWithLoss(check_labels=True)  # the default skips on a GPU
    with pytest.raises(
        LayerInputError, match=r"SoftmaxWithLoss\.forward: argument 't': " + message
    ):
        layer.forward(backend.asarray(np.zeros((2, 3))), backend.asarray(np.array(labels)))


def test_non_integer_labels(backend):
    layer = xpl.SoftmaxWithLoss()
    with pytest.raises(
        LayerInputError,
        match=r"argument 't': expected integer class labels of shape \(2,\) \(or a column \(2, 1\) of them\) or one-hot.*\(2, 3\); got .*float64.*\(2,\).*Labels must have an integer dtype",
    ):
        layer.forward(backend.asarray(np.zeros((2, 3))), backend.asarray(np.array([0.0, 1.0])))


@pytest.mark.parametrize("shape", [(3,), (2, 4), (2, 3, 1)])
def test_target_shape_mismatch(backend, shape):
    layer = xpl.SoftmaxWithLoss()
    t = np.zeros(shape, dtype=np.int64)
    with pytest.raises(
        LayerInputError,
        match=r"SoftmaxWithLoss\.forward: argument 't': expected integer class labels of shape \(2,\)",
    ):
        layer.forward(backend.asarray(np.zeros((2, 3))), backend.asarray(t))


def test_logits_shape(backend):
    with pytest.raises(
        LayerInputError,
        match=r"SoftmaxWithLoss\.forward: argument 'x': expected logits of shape \(N, C\)",
    ):
        xpl.SoftmaxWithLoss().forward(
            backend.asarray(np.zeros(3)), backend.asarray(np.array([0, 1, 2]))
        )


def test_two_backends_named(backend):
    """Arrays of two backends: the error names both."""
    other = "array_api_strict" if backend.name != "array_api_strict" else "numpy"
    layer = _affine(backend)
    x = xpl.to_backend(np.ones((2, 4)), other)
    with pytest.raises(
        LayerInputError,
        match=rf"Affine\.forward: argument 'x': expected an array of the same backend as the layer's parameters W, b \(a {backend.name} .*\); got a {other}",
    ):
        layer.forward(x)
    loss = xpl.SoftmaxWithLoss()
    with pytest.raises(LayerInputError, match=r"SoftmaxWithLoss\.forward: argument 't'"):
        loss.forward(backend.asarray(np.zeros((2, 3))), xpl.to_backend(np.array([0, 1]), other))


def test_two_devices_named():
    """array-api-strict's second device stands in for a second GPU."""
    pytest.importorskip("array_api_strict")
    W = xpl.to_backend(np.ones((4, 3)), "array_api_strict")
    b = xpl.to_backend(np.zeros(3), "array_api_strict")
    x = xpl.to_backend(np.ones((2, 4)), "array_api_strict", "device1")
    with pytest.raises(
        LayerInputError,
        match=r"expected an array on the device of the layer's parameters W, b \(.*CPU_DEVICE.*\); got .*device1",
    ):
        xpl.Affine(W, b).forward(x)


def test_errors_are_value_errors_and_xplayers_errors(backend):
    with pytest.raises(ValueError) as info:
        xpl.Relu().forward(backend.asarray(np.ones(2, dtype=np.int64)))
    assert isinstance(info.value, xpl.XplayersError)
