r"""A network's loss and gradient as pure functions of ``(params, x, t)``.

Layers keep their last input and gradients on the object (``Affine.x``,
``Affine.dW``), so one network shared by two threads mixes their batches.
:class:`Stateless` describes the network's structure only (which layer
applies which parameters, a plain tuple) and computes with the formulas of
:mod:`xplayers.functional` on the arrays it is given, keeping nothing: it is
safe to call from many threads at once, and it pickles in a few bytes, so
it can travel to Dask workers once and serve every chunk.

Supported: stacks of ``Affine`` and ``Relu``/``Sigmoid`` layers ending in
``SoftmaxWithLoss`` (``TwoLayerNet``, ``MultiLayerNet`` and such
``Sequential`` networks).

The gradient of a weighted loss :math:`w L` is :math:`w\,\partial L`: with
:math:`w = n_i / N` for a chunk of :math:`n_i` of :math:`N` rows, the chunks'
weighted gradients sum to the gradient of the mean loss over all rows, which
is how :mod:`xplayers.parallel` sums per-chunk gradients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xplayers import functional
from xplayers._validation import describe, fail
from xplayers.backend import namespace
from xplayers.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss

__all__ = ["Stateless", "stateless"]

_ACTIVATIONS = {Relu: "relu", Sigmoid: "sigmoid"}


@dataclass(frozen=True)
class Stateless:
    """The structure of a network, applied to parameters given at each call.

    Attributes
    ----------
    steps : tuple
        ``("affine", W_key, b_key)``, ``("relu",)`` or ``("sigmoid",)`` in
        forward order; the loss is softmax cross-entropy.

    Examples
    --------
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> from xplayers.network import TwoLayerNet
    >>> from xplayers.stateless import stateless
    >>> net = TwoLayerNet(4, 5, 3, seed=0)
    >>> f = stateless(net)
    >>> f.steps
    (('affine', 'W1', 'b1'), ('relu',), ('affine', 'W2', 'b2'))
    >>> x, t = xpl.asarray(np.ones((2, 4))), xpl.asarray(np.array([0, 2]))
    >>> loss, grads = f.grad(dict(net.params), x, t)
    >>> dW1 = net.gradient(x, t)["W1"]
    >>> bool(np.allclose(xpl.to_numpy(grads["W1"]), xpl.to_numpy(dW1)))
    True
    """

    steps: tuple[tuple[str, ...], ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """The parameter names, in forward order (``W1, b1, W2, b2, ...``)."""
        return tuple(k for step in self.steps for k in step[1:])

    def predict(self, params: Mapping[str, Any], x: Any) -> Any:
        """The logits ``(N, C)`` of `x` ``(N, ...)`` under `params`."""
        return self.forward(params, x)[0]

    def loss(self, params: Mapping[str, Any], x: Any, t: Any) -> Any:
        """The mean softmax cross-entropy of `x` against targets `t` (a 0-d array)."""
        return functional.cross_entropy(self.predict(params, x), t)

    def grad(
        self, params: Mapping[str, Any], x: Any, t: Any, *, weight: float = 1.0
    ) -> tuple[Any, dict[str, Any]]:
        """The loss times `weight` and its gradient with respect to every parameter.

        Parameters
        ----------
        params : mapping of str to array
            Every key of :attr:`keys`; arrays of one backend and device.
        x : array, shape (N, ...)
            Inputs, cast to the parameters' dtype.
        t : array
            Labels ``(N,)`` or one-hot rows ``(N, C)``.
        weight : float, default 1.0
            Scale of the loss (``n_i / N`` for a chunk of a larger batch).

        Returns
        -------
        (loss, grads) : 0-d array and dict of str to array
            In the parameters' dtype.
        """
        logits, kept = self.forward(params, x)
        loss, y = functional.softmax_cross_entropy(logits, t)
        return loss * weight, self.backward(params, kept, y, t, weight)

    def backward(
        self,
        params: Mapping[str, Any],
        kept: list[tuple[Any, Any]],
        y: Any,
        t: Any,
        dout: Any = 1.0,
    ) -> dict[str, Any]:
        """The gradients of `dout` times the loss, from what :meth:`forward` kept.

        Parameters
        ----------
        params : mapping of str to array
            The parameters :meth:`forward` ran with.
        kept : list of (input, output) pairs
            The second value :meth:`forward` returned.
        y : array, shape (N, C)
            ``softmax`` of the logits (from :func:`~xplayers.functional.softmax_cross_entropy`).
        t : array
            The targets of the loss.
        dout : float or 0-d array, default 1.0
            The upstream gradient of the loss.

        Returns
        -------
        dict of str to array
            By :attr:`keys`, in forward order.
        """
        dout = functional.cross_entropy_backward(y, t, dout)
        grads: dict[str, Any] = {}
        for i in range(len(self.steps) - 1, -1, -1):
            step, (inp, out) = self.steps[i], kept[i]
            kind = step[0]
            if kind == "affine":  # no use for the network input's gradient (i == 0)
                dout, grads[step[1]], grads[step[2]] = functional.affine_backward(
                    dout, inp, params[step[1]], input_grad=i > 0
                )
            elif kind == "relu":
                dout = functional.relu_backward(dout, out)
            else:
                dout = functional.sigmoid_backward(dout, out)
        return {k: grads[k] for k in self.keys}

    def forward(self, params: Mapping[str, Any], x: Any) -> tuple[Any, list[tuple[Any, Any]]]:
        """The logits of `x` and, for each step, its input and output (what the layers keep).

        `x` ``(N, ...)`` is flattened to ``(N, D)`` and cast to the first
        weight's dtype first, as :class:`~xplayers.Affine` does; the first
        step's input is that array (`x` itself when neither was needed).
        """
        W0 = params[self.steps[0][1]]
        xp = namespace(W0)
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], math.prod(x.shape[1:])))
        if x.dtype != W0.dtype:
            x = xp.astype(x, W0.dtype)
        kept = []
        for step in self.steps:
            if step[0] == "affine":
                out = functional.affine(x, params[step[1]], params[step[2]])
            elif step[0] == "relu":
                out = functional.relu(x)
            else:
                out = functional.sigmoid(x)
            kept.append((x, out))
            x = out
        return x, kept


def stateless(network: Any) -> Stateless:
    """Describe `network` as a :class:`Stateless` function of its parameters.

    Parameters
    ----------
    network : TwoLayerNet, MultiLayerNet or Sequential
        Layers ``Affine`` and ``Relu``/``Sigmoid`` only, ending in ``SoftmaxWithLoss``.

    Raises
    ------
    LayerInputError
        Another layer or loss.
    """
    layers = getattr(network, "layers", None)
    if not isinstance(layers, Mapping) or type(network.last_layer) is not SoftmaxWithLoss:
        fail(
            "stateless",
            "network",
            "a network of Affine, Relu and Sigmoid layers ending in SoftmaxWithLoss",
            describe(network),
        )
    steps: list[tuple[str, ...]] = []
    k = 0
    for name, layer in layers.items():
        if type(layer) is Affine:
            k += 1  # the k-th layer with parameters holds W{k}, b{k}
            steps.append(("affine", f"W{k}", f"b{k}"))
        elif type(layer) in _ACTIVATIONS:
            steps.append((_ACTIVATIONS[type(layer)],))
        else:
            fail("stateless", f"network.layers[{name!r}]", "Affine, Relu or Sigmoid", repr(layer))
    if not steps or steps[0][0] != "affine":
        fail("stateless", "network", "a network whose first layer is Affine", describe(network))
    f = Stateless(tuple(steps))
    if list(f.keys) != list(network.params):
        fail("stateless", "network", f"parameters named {list(f.keys)}", f"{list(network.params)}")
    return f
