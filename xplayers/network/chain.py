r"""A network as one pure function: its layers' pure pairs, chained.

:class:`Chain` holds a network's structure only: each layer's pure pair
(:class:`~xplayers.layers.LayerFn`, frozen and hashable), which network
keys (``W1``, ``b1``, ...) feed which layer, and the loss's pair. It keeps
no arrays, so one chain serves any number of threads, pickles in a few
bytes (Dask workers), and is a hashable key of a compiled step::

    chain.loss_and_grads(params, state, x, t, train=True) -> (loss, grads, new_state)

``params`` maps the network's keys to arrays; ``state`` maps the names of
the layers that have state (BatchNorm's running averages, Dropout's seed
and count) to their state. The book's L2 weight decay is an argument, so
its strength can be traced as a value. Every path that runs a network's
step without its layer objects goes through this function: the compiled
JAX step (:mod:`xplayers._pure_step`) and the data-parallel gradient
(:mod:`xplayers.parallel`); the layer objects themselves call the same
pairs one layer at a time.

The gradient of a weighted loss :math:`w L` is :math:`w\,\partial L`: with
:math:`w = n_i / N` for a chunk of :math:`n_i` of :math:`N` rows, the chunks'
weighted gradients sum to the gradient of the mean loss over all rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from xplayers._validation import describe, fail
from xplayers.backend import namespace
from xplayers.layers._base import LayerFn, LossFn

__all__ = ["Chain", "ChainResult"]


class ChainResult(NamedTuple):
    """Everything one evaluation of a :class:`Chain` computes.

    Attributes
    ----------
    loss : array, shape ()
        The weighted loss, the weight-decay penalty included.
    grads : dict of str to array
        Its gradients by network key, the decay term included.
    state : dict of str to dict
        The layers' new state, by layer name.
    layer_loss : array, shape ()
        The loss layer's value (without the penalty, not weighted).
    layer_grads : dict of str to array
        The layers' own gradients (without the decay term).
    saved : tuple of dict
        What each layer's forward saved, in forward order.
    loss_saved : dict
        What the loss's forward saved.
    """

    loss: Any
    grads: dict[str, Any]
    state: dict[str, dict[str, Any]]
    layer_loss: Any
    layer_grads: dict[str, Any]
    saved: tuple[dict[str, Any], ...]
    loss_saved: dict[str, Any]


@dataclass(frozen=True)
class Chain:
    """The structure of a network: its layers' pure pairs and which keys feed them.

    Build it with :meth:`from_network`. Equal networks (same layer kinds,
    hyper-parameters and keys) have equal chains.

    Attributes
    ----------
    names : tuple of str
        The layers' names, in forward order.
    fns : tuple of LayerFn
        Their pure pairs.
    keys : tuple of tuple of (str, str)
        Per layer, ``(parameter name, network key)`` pairs (``("W", "W1")``).
    input_grads : tuple of bool
        Per layer, whether its backward computes ``dx`` (False for the
        first layer with parameters and the layers before it).
    loss : LossFn
        The loss layer's pair.
    decayed : tuple of str
        The weights the book's L2 penalty covers (``W1, W2, ...``).
    check_labels : bool or None
        The loss layer's ``check_labels`` (see :class:`~xplayers.SoftmaxWithLoss`).

    Examples
    --------
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> from xplayers.network import TwoLayerNet
    >>> from xplayers.network.chain import Chain
    >>> net = TwoLayerNet(4, 5, 3, seed=0)
    >>> chain = Chain.from_network(net)
    >>> chain.names
    ('Affine1', 'Relu1', 'Affine2')
    >>> x, t = xpl.asarray(np.ones((2, 4))), xpl.asarray(np.array([0, 2]))
    >>> loss, grads, _ = chain.loss_and_grads(dict(net.params), {}, x, t)
    >>> bool(np.allclose(xpl.to_numpy(grads["W1"]), xpl.to_numpy(net.gradient(x, t)["W1"])))
    True
    """

    names: tuple[str, ...]
    fns: tuple[LayerFn, ...]
    keys: tuple[tuple[tuple[str, str], ...], ...]
    input_grads: tuple[bool, ...]
    loss: LossFn
    decayed: tuple[str, ...] = ()
    check_labels: bool | None = None

    @classmethod
    def from_network(cls, network: Any) -> Chain:
        """The chain of `network` (a :class:`~xplayers.network.Sequential`).

        Raises
        ------
        LayerInputError
            A layer without a pure pair (``fn``), a loss layer without one,
            or a layer built without ``input_grad`` that is not first among
            the layers with parameters.
        """
        where = "Chain.from_network"
        layers = getattr(network, "layers", None)
        if not isinstance(layers, Mapping) or not layers:
            fail(where, "network", "a network with layers (a Sequential)", describe(network))
        loss = getattr(network.last_layer, "fn", None)
        if not isinstance(loss, LossFn):
            fail(where, "network.last_layer", "a loss layer with a pure pair", repr(loss))
        slots = {(id(layer), attr): key for key, (layer, attr) in network.params.slots.items()}
        fns, keys, grads_in = [], [], []
        seen_params = False
        for name, layer in layers.items():
            fn = getattr(layer, "fn", None)
            if not isinstance(fn, LayerFn):
                fail(
                    where, f"network.layers[{name!r}]", "a layer with a pure pair (fn)", repr(layer)
                )
            fns.append(fn)
            keys.append(tuple((attr, slots[(id(layer), attr)]) for attr in fn.param_names))
            if seen_params and getattr(layer, "input_grad", True) is False:
                fail(
                    where,
                    f"network.layers[{name!r}]",
                    "input_grad=False only on the first layer with parameters",
                    repr(layer),
                )
            grads_in.append(seen_params)
            seen_params = seen_params or bool(fn.param_names)
        decayed = tuple(network._decayed) if hasattr(network, "_decayed") else ()
        return cls(
            tuple(layers),
            tuple(fns),
            tuple(keys),
            tuple(grads_in),
            loss,
            decayed,
            getattr(network.last_layer, "check_labels", None),
        )

    def state_of(self, network: Any) -> dict[str, dict[str, Any]]:
        """The current state of `network`'s layers that have state, by layer name."""
        return {
            name: network.layers[name].fn_state()
            for name, fn in zip(self.names, self.fns, strict=True)
            if fn.state_names
        }

    def check(self, params: Mapping[str, Any], x: Any) -> None:
        """Refuse an input `x` the first layer cannot take (shapes and dtypes only)."""
        self.fns[0].check({attr: params[key] for attr, key in self.keys[0]}, x)

    def forward(
        self,
        params: Mapping[str, Any],
        state: Mapping[str, Mapping[str, Any]],
        x: Any,
        *,
        train: bool = False,
    ) -> tuple[Any, tuple[dict[str, Any], ...], dict[str, dict[str, Any]]]:
        """The logits of `x`, what each layer saved, and the layers' new state."""
        saved: list[dict[str, Any]] = []
        new_state: dict[str, dict[str, Any]] = {}
        for name, fn, keys in zip(self.names, self.fns, self.keys, strict=True):
            local = {attr: params[key] for attr, key in keys}
            if not saved:
                fn.check(local, x)  # the input; the rest follow from the parameters' shapes
            x, kept, after = fn.forward(local, x, state.get(name, {}), train=train)
            saved.append(kept)
            if fn.state_names:
                new_state[name] = dict(after)
        return x, tuple(saved), new_state

    def backward(
        self, params: Mapping[str, Any], saved: tuple[Mapping[str, Any], ...], dy: Any
    ) -> dict[str, Any]:
        """The layers' gradients by network key, from the logits' gradient `dy`."""
        grads: dict[str, Any] = {}
        for i in range(len(self.fns) - 1, -1, -1):
            fn, keys = self.fns[i], self.keys[i]
            if not keys and not self.input_grads[i]:
                break  # nothing before this layer learns
            local = {attr: params[key] for attr, key in keys}
            dy, layer_grads = fn.backward(local, saved[i], dy, input_grad=self.input_grads[i])
            for attr, key in keys:
                grads[key] = layer_grads[attr]
        return {
            key: grads[key] for _, keys in zip(self.fns, self.keys, strict=True) for _, key in keys
        }

    def evaluate(
        self,
        params: Mapping[str, Any],
        state: Mapping[str, Mapping[str, Any]],
        x: Any,
        t: Any,
        *,
        train: bool = True,
        weight: float = 1.0,
        weight_decay: float = 0.0,
    ) -> ChainResult:
        """Forward, loss and backward: see :class:`ChainResult`.

        Parameters
        ----------
        params : mapping of str to array
            Every network key.
        state : mapping of str to mapping
            The state of each layer that has one, by layer name.
        x, t : array
            The batch and its targets (checked as the loss layer checks them).
        train : bool, default True
            Training behaviour of Dropout and BatchNorm.
        weight : float, default 1.0
            Scale of the loss and gradients (``n_i / N`` for a chunk of a larger batch).
        weight_decay : float, default 0.0
            The book's L2 strength lambda (0: none).
        """
        logits, saved, new_state = self.forward(params, state, x, train=train)
        t = self.loss.check(logits, t, self.check_labels)
        layer_loss, loss_saved = self.loss.forward(logits, t)
        layer_grads = self.backward(params, saved, self.loss.backward(loss_saved, weight))
        loss = layer_loss if _is(weight, 1.0) else layer_loss * weight
        grads = layer_grads
        if self.decayed and not _is(weight_decay, 0.0):
            xp = namespace(loss)
            grads = dict(layer_grads)
            for key in self.decayed:  # the order of Sequential.loss and Sequential.gradient
                W = params[key]
                loss = loss + 0.5 * weight_decay * xp.sum(W * W)
                grads[key] = layer_grads[key] + weight_decay * W
        return ChainResult(loss, grads, new_state, layer_loss, layer_grads, saved, loss_saved)

    def loss_and_grads(
        self,
        params: Mapping[str, Any],
        state: Mapping[str, Mapping[str, Any]],
        x: Any,
        t: Any,
        *,
        train: bool = True,
        weight: float = 1.0,
        weight_decay: float = 0.0,
    ) -> tuple[Any, dict[str, Any], dict[str, dict[str, Any]]]:
        """``(loss, grads, new_state)`` of :meth:`evaluate`."""
        r = self.evaluate(
            params, state, x, t, train=train, weight=weight, weight_decay=weight_decay
        )
        return r.loss, r.grads, r.state

    def take(self, network: Any, result: ChainResult) -> None:
        """Hand each of `network`'s layers what its pair saved, its gradients and its new state.

        Afterwards the layers hold what their own ``forward`` and
        ``backward`` would have left (``network.grads``, ``Affine.x``,
        ``Dropout.mask``, the running averages).
        """
        for i, (name, fn, keys) in enumerate(zip(self.names, self.fns, self.keys, strict=True)):
            layer = network.layers[name]
            grads = {attr: result.layer_grads[key] for attr, key in keys} if keys else None
            layer.take(result.saved[i], grads, result.state.get(name) if fn.state_names else None)
        network.last_layer.take(result.loss_saved)


def _is(value: Any, number: float) -> bool:
    """Whether `value` is the Python number `number` (a traced value never is)."""
    return isinstance(value, (int, float)) and value == number
