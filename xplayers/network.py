"""Networks: ordered layers plus a loss layer, with the book's names and methods.

:class:`Sequential` is the book's pattern (``self.layers = OrderedDict()``,
``self.last_layer = SoftmaxWithLoss()``) made generic: ``predict``, ``loss``,
``accuracy``, ``gradient`` by backpropagation, and the parameters under the
book's names ``W1, b1, W2, b2, ...`` in a *live* mapping, :class:`Parameters`.

:class:`TwoLayerNet` (chapter 5) and :class:`MultiLayerNet` (chapter 6) build
their layers on the current backend from a seed, so the same seed gives the
same network everywhere. :meth:`Sequential.config` and :func:`from_config`
describe and rebuild a network (with its parameters) as plain JSON data.

Two departures from the book, both invisible to code written for it:

* the first ``Affine`` layer is built with ``input_grad=False``: the gradient
  with respect to the network's input is never used in training, and it is a
  third of that layer's backward matrix work;
* :attr:`Sequential.params` reads and writes the layers' own attributes, so
  the book's ``params[key] -= lr * grads[key]`` updates the layers in place,
  and ``params[key] = new_array`` (the only way on libraries without in-place
  writes, such as JAX) rebinds them.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, ClassVar, Protocol

import array_api_compat
import numpy as np

from xplayers._backend import asarray, namespace, to_numpy
from xplayers._numpy_step import NumpyStep
from xplayers._validation import describe, dtype_name, fail, float_array, same_backend
from xplayers.errors import LayerInputError, LayerStateError
from xplayers.init import WeightInit, _check_sizes, canonical_dtype, init_params, weight_scale
from xplayers.layers import Affine, Relu, Sigmoid, SoftmaxWithLoss
from xplayers.optim import SGD

__all__ = ["MultiLayerNet", "Parameters", "Sequential", "TwoLayerNet", "from_config"]


class _Optimizer(Protocol):
    def update(self, params: MutableMapping[str, Any], grads: Mapping[str, Any], /) -> None: ...


def _is_layer(obj: Any) -> bool:
    return callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None))


def _layer_params(layer: Any) -> dict[str, Any]:
    params = getattr(layer, "params", None)
    return dict(params) if params else {}


def _like(host: np.ndarray[Any, Any], ref: Any) -> Any:
    """Put the NumPy array `host` on the backend and device of array `ref` (no dtype change)."""
    if isinstance(ref, np.ndarray):
        return host
    return namespace(ref).asarray(host, device=array_api_compat.device(ref))


# --------------------------------------------------------------------------- Parameters


class Parameters(MutableMapping[str, Any]):
    """A live mapping from the book's parameter names to the layers' arrays.

    Reading ``params["W1"]`` returns the very array the first ``Affine`` layer
    computes with, so ``params["W1"] -= lr * grads["W1"]`` (the book's update)
    changes the layer in place. Assigning ``params["W1"] = new`` rebinds the
    layer's attribute, which is how parameters are updated on libraries whose
    arrays cannot be written in place (JAX). The keys are fixed by the layers:
    they cannot be added or deleted.

    Parameters
    ----------
    slots : dict of str to (layer, str)
        For each key, the layer and the name of its attribute.
    owner : str
        The network's name, used in error messages.

    Examples
    --------
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> from xplayers.network import TwoLayerNet
    >>> net = TwoLayerNet(4, 3, 2, seed=0)
    >>> list(net.params)
    ['W1', 'b1', 'W2', 'b2']
    >>> net.params["W1"] is net.layers["Affine1"].W
    True
    >>> net.params["b2"] = xpl.asarray(np.ones(2))
    >>> xpl.to_numpy(net.layers["Affine2"].b)
    array([1., 1.])
    """

    def __init__(self, slots: Mapping[str, tuple[Any, str]], owner: str) -> None:
        self._slots = dict(slots)
        self._owner = owner

    def __getitem__(self, key: str) -> Any:
        layer, attr = self._slots[key]
        return getattr(layer, attr)

    def __setitem__(self, key: str, value: Any) -> None:
        slot = self._slots.get(key)
        where = f"{self._owner}.params"
        if slot is None:
            fail(where, "key", f"one of {list(self._slots)}", repr(key))
        layer, attr = slot
        current = getattr(layer, attr)
        if value is current:  # ``params[key] -= ...`` on a writable array ends here
            return
        float_array(where, key, value)
        same_backend(where, key, value, f"the current {key!r}", current)
        if tuple(value.shape) != tuple(current.shape) or value.dtype != current.dtype:
            fail(
                where, key, f"an array like the current one ({describe(current)})", describe(value)
            )
        setattr(layer, attr, value)

    def __delitem__(self, key: str) -> None:
        raise LayerInputError(
            f"{self._owner}.params: cannot delete {key!r}; the parameters are fixed by the layers"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        items = ", ".join(f"{k!r}: {describe(v)}" for k, v in self.items())
        return f"Parameters({{{items}}})"


# --------------------------------------------------------------------------- Sequential


class Sequential:
    """Layers applied in order, then a loss layer: the book's network pattern.

    Parameters
    ----------
    layers : mapping or iterable of (str, layer) pairs
        The layers in forward order, by name (the book's ``"Affine1"``,
        ``"Relu1"``, ...). Each has ``forward(x)`` and ``backward(dout)``;
        trainable ones expose ``params``/``grads`` dictionaries whose keys are
        attribute names of the layer (``Affine``: ``W``, ``b``).
    last_layer : layer, optional
        The loss, with ``forward(x, t)`` returning a scalar and
        ``backward(dout)``. Default: a new :class:`~xplayers.SoftmaxWithLoss`.

    Attributes
    ----------
    layers : mapping of str to layer
        Read-only ordered view of the layers (``net.layers["Affine1"]``).
    last_layer : layer
        The loss layer.

    Notes
    -----
    The ``k``-th layer that has parameters contributes the keys ``W{k}``,
    ``b{k}`` (its parameter names followed by ``k``) to :attr:`params` and
    :attr:`grads`, as the book numbers them.

    Examples
    --------
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> from xplayers.network import Sequential
    >>> rng = np.random.default_rng(0)
    >>> net = Sequential({
    ...     "Affine1": xpl.Affine(xpl.asarray(rng.normal(size=(4, 3))), xpl.asarray(np.zeros(3))),
    ...     "Relu1": xpl.Relu(),
    ...     "Affine2": xpl.Affine(xpl.asarray(rng.normal(size=(3, 2))), xpl.asarray(np.zeros(2))),
    ... })
    >>> x, t = xpl.asarray(rng.normal(size=(5, 4))), xpl.asarray([0, 1, 1, 0, 1])
    >>> sorted(net.gradient(x, t)) == sorted(net.params) == ["W1", "W2", "b1", "b2"]
    True
    >>> 0.0 <= net.accuracy(x, t) <= 1.0
    True
    """

    #: Layer classes :meth:`config` can describe, by name.
    _CONFIG_LAYERS: ClassVar[dict[str, type]] = {"Affine": Affine, "Relu": Relu, "Sigmoid": Sigmoid}

    def __init__(
        self,
        layers: Mapping[str, Any] | Iterable[tuple[str, Any]],
        last_layer: Any = None,
    ) -> None:
        self._set_layers(layers, SoftmaxWithLoss() if last_layer is None else last_layer)

    def _set_layers(self, layers: Mapping[str, Any] | Iterable[tuple[str, Any]], last: Any) -> None:
        where = type(self).__name__
        items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
        if not items:
            fail(where, "layers", "at least one layer", "none")
        ordered: OrderedDict[str, Any] = OrderedDict()
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                fail(where, "layers", "a mapping or (name, layer) pairs", repr(item))
            name, layer = item
            if name in ordered:
                fail(where, "layers", "unique layer names", f"{name!r} twice")
            if not _is_layer(layer):
                fail(
                    where, f"layers[{name!r}]", "a layer with forward and backward", describe(layer)
                )
            ordered[name] = layer
        if not _is_layer(last):
            fail(where, "last_layer", "a loss layer such as SoftmaxWithLoss()", describe(last))
        slots: dict[str, tuple[Any, str]] = {}
        k = 0
        for name, layer in ordered.items():
            params = _layer_params(layer)
            if not params:
                continue
            k += 1
            for attr, value in params.items():
                if getattr(layer, attr, None) is not value:
                    fail(
                        where,
                        f"layers[{name!r}]",
                        "a layer whose params keys are the names of its parameter attributes",
                        f"params key {attr!r}",
                    )
                key = f"{attr}{k}"
                if key in slots:
                    fail(where, f"layers[{name!r}]", "parameter names unique in the network", key)
                slots[key] = (layer, attr)
        self._layers = ordered
        self.layers: Mapping[str, Any] = MappingProxyType(ordered)
        self._backward_order = list(reversed(ordered.values()))
        self.last_layer = last
        self._params = Parameters(slots, where)
        self._plan: tuple[list[Affine], list[str]] | None = None
        self._plan_known = False
        self._numpy_step: NumpyStep | None = None

    # ------------------------------------------------------------------ parameters

    @property
    def params(self) -> Parameters:
        """The parameters by the book's names, a live :class:`Parameters` mapping."""
        return self._params

    @property
    def grads(self) -> dict[str, Any]:
        """The gradients from the last :meth:`gradient`, keyed like :attr:`params`.

        The values are the layers' own ``dW``/``db`` arrays (``None`` before
        the first backward pass).
        """
        return {key: layer.grads[attr] for key, (layer, attr) in self._params._slots.items()}

    # ------------------------------------------------------------------ computation

    def predict(self, x: Any) -> Any:
        """Return the scores (logits) of shape ``(N, C)`` for inputs `x`."""
        for layer in self._layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x: Any, t: Any) -> Any:
        """Return the loss of `x` against targets `t` (labels ``(N,)`` or one-hot ``(N, C)``)."""
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x: Any, t: Any) -> float:
        """Return the fraction of samples whose highest score is the target class.

        Parameters
        ----------
        x : array, shape (N, ...)
            A non-empty batch.
        t : array
            Integer labels ``(N,)`` or one-hot rows ``(N, C)`` (their argmax is taken).

        Returns
        -------
        float
        """
        where = f"{type(self).__name__}.accuracy"
        y = self.predict(x)
        xp = namespace(y)
        n, c = y.shape[0], y.shape[-1]
        expected = f"integer labels of shape ({n},) or one-hot rows of shape ({n}, {c})"
        if not array_api_compat.is_array_api_obj(t):
            fail(where, "t", expected, describe(t))
        same_backend(where, "t", t, "the scores", y)
        if n == 0:
            fail(where, "x", "a non-empty batch", describe(x))
        if tuple(t.shape) == (n, c) and t.ndim == 2:
            t = xp.argmax(t, axis=1)
        elif not (t.ndim == 1 and t.shape[0] == n and xp.isdtype(t.dtype, "integral")):
            fail(where, "t", expected, describe(t))
        predicted = xp.argmax(y, axis=1)
        if t.dtype != predicted.dtype:
            t = xp.astype(t, predicted.dtype)
        return float(xp.count_nonzero(predicted == t)) / float(n)

    def _backprop(self, x: Any, t: Any) -> Any:
        """Forward, loss and backward; return the loss, leave the gradients in the layers."""
        loss = self.loss(x, t)
        dout = self.last_layer.backward(1.0)
        for layer in self._backward_order:
            if dout is None:
                # A layer built without input_grad ends the chain: what comes
                # before it must have nothing to learn.
                if _layer_params(layer):
                    raise LayerStateError(
                        f"{type(self).__name__}.gradient: {layer!r} needs a gradient but the "
                        "layer after it returned none; build only the first Affine layer "
                        "with input_grad=False"
                    )
                continue
            dout = layer.backward(dout)
        return loss

    def gradient(self, x: Any, t: Any) -> dict[str, Any]:
        """Return the gradients of the loss by backpropagation, keyed like :attr:`params`."""
        self._backprop(x, t)
        return self.grads

    def train_step(self, x: Any, t: Any, optimizer: _Optimizer) -> Any:
        """One training step: forward, loss, backward, ``optimizer.update(params, grads)``.

        Parameters
        ----------
        x, t : array
            A batch and its targets (labels or one-hot).
        optimizer
            Any object with ``update(params, grads)``, e.g. :class:`xplayers.optim.SGD`.

        Returns
        -------
        array, shape ()
            The loss *before* the update.

        Notes
        -----
        On NumPy, for stacks of ``Affine`` and ``Relu``/``Sigmoid`` layers
        ending in ``SoftmaxWithLoss`` with writable parameters, the step runs
        a fused path that reuses its intermediate buffers from step to step
        (tested equal to the layer path). That path leaves the layers' cached
        values and :attr:`grads` as they were; call :meth:`gradient` to
        inspect gradients. Nothing returned to the caller is ever overwritten.

        Examples
        --------
        >>> import numpy as np
        >>> import xplayers as xpl
        >>> from xplayers.network import TwoLayerNet
        >>> from xplayers.optim import SGD
        >>> net = TwoLayerNet(4, 8, 3, weight_init_std=0.5, seed=0)
        >>> rng = np.random.default_rng(1)
        >>> x, t = xpl.asarray(rng.normal(size=(16, 4))), xpl.asarray(rng.integers(0, 3, 16))
        >>> opt = SGD(lr=0.5)
        >>> first = float(net.train_step(x, t, opt))
        >>> for _ in range(20):
        ...     last = float(net.train_step(x, t, opt))
        >>> last < first
        True
        """
        update = getattr(optimizer, "update", None)
        if not callable(update):
            fail(
                f"{type(self).__name__}.train_step",
                "optimizer",
                "an object with update(params, grads), e.g. xplayers.optim.SGD()",
                describe(optimizer),
            )
        plan = self._numpy_plan()
        if plan is not None:
            affines, activations = plan
            pairs = [(a.W, a.b) for a in affines]
            if NumpyStep.supports(pairs, x, t):
                loss = self._fused(pairs, activations, x, t, optimizer)
                if loss is not None:
                    return loss
        loss = self._backprop(x, t)
        update(self._params, self.grads)
        return loss

    def _numpy_plan(self) -> tuple[list[Affine], list[str]] | None:
        """The Affine layers and activations when the stack fits the fused NumPy step."""
        if not self._plan_known:
            layers = list(self._layers.values())
            affines, acts = layers[0::2], layers[1::2]
            fits = (
                type(self.last_layer) is SoftmaxWithLoss
                and all(type(a) is Affine for a in affines)
                and all(a.input_grad for a in affines[1:])
                and all(type(h) in (Relu, Sigmoid) for h in acts)
                and len(affines) == len(acts) + 1
            )
            names = ["relu" if type(h) is Relu else "sigmoid" for h in acts]
            self._plan = (affines, names) if fits else None
            self._plan_known = True
        return self._plan

    def _fused(
        self,
        pairs: list[tuple[Any, Any]],
        activations: list[str],
        x: Any,
        t: Any,
        optimizer: _Optimizer,
    ) -> Any:
        """Run the fused NumPy step (reused buffers; ``grads`` is not updated)."""
        if self._numpy_step is None:
            self._numpy_step = NumpyStep()
        if type(optimizer) is SGD:
            return self._numpy_step(pairs, activations, x, t, sgd_lr=optimizer.lr)
        keys = list(self._params)

        def update(grads: list[tuple[Any, Any]]) -> None:
            flat = [g for pair in grads for g in pair]
            optimizer.update(self._params, dict(zip(keys, flat, strict=True)))

        return self._numpy_step(pairs, activations, x, t, update=update)

    def numerical_gradient(self, x: Any, t: Any) -> dict[str, np.ndarray[Any, Any]]:
        """Return the gradients by central differences, in float64 on a host copy.

        Slow (two loss evaluations per parameter entry): for checking
        :meth:`gradient` on small networks. See :func:`xplayers.gradcheck.gradient_check`.

        Returns
        -------
        dict of str to numpy.ndarray
            Float64 NumPy arrays keyed like :attr:`params`.
        """
        from xplayers.gradcheck import numerical_params

        grads: dict[str, np.ndarray[Any, Any]] = numerical_params(self, x, t)
        return grads

    # ------------------------------------------------------------------ description

    def config(self) -> dict[str, Any]:
        """Describe the architecture as JSON-serialisable data for :func:`from_config`.

        A plain :class:`Sequential` is described layer by layer; only
        ``Affine``, ``Relu``, ``Sigmoid`` and a ``SoftmaxWithLoss`` loss are
        supported. Its parameters are not included (see :func:`from_config`).

        Raises
        ------
        LayerInputError
            A layer of another type.
        """
        where = f"{type(self).__name__}.config"
        layers: list[dict[str, Any]] = []
        dtype = None
        for name, layer in self._layers.items():
            kind = type(layer).__name__
            if self._CONFIG_LAYERS.get(kind) is not type(layer):
                fail(where, f"layers[{name!r}]", "Affine, Relu or Sigmoid", describe(layer))
            entry: dict[str, Any] = {"name": name, "type": kind}
            if isinstance(layer, Affine):
                d_in, d_out = layer.W.shape
                entry.update(input_size=int(d_in), output_size=int(d_out))
                entry["input_grad"] = bool(layer.input_grad)
                dtype = dtype_name(layer.W.dtype)
            layers.append(entry)
        if type(self.last_layer) is not SoftmaxWithLoss:
            fail(where, "last_layer", "SoftmaxWithLoss", describe(self.last_layer))
        return {"class": "Sequential", "layers": layers, "dtype": dtype or "float64"}

    def load_params(self, params: Mapping[str, Any]) -> None:
        """Replace every parameter by a copy of the given host values.

        Parameters
        ----------
        params : mapping of str to numpy.ndarray
            Exactly the keys of :attr:`params`, each with the same shape and
            dtype as the current parameter. The values are copied onto the
            backend and device of the network.

        Raises
        ------
        LayerInputError
            Missing or unknown names, or a wrong shape or dtype; nothing is
            changed then.
        """
        self._load(params, f"{type(self).__name__}.load_params")

    def _load(self, params: Mapping[str, Any], where: str) -> None:
        if not isinstance(params, Mapping):
            fail(where, "params", "a mapping of parameter names to NumPy arrays", describe(params))
        missing = [k for k in self._params if k not in params]
        unknown = [k for k in params if k not in self._params]
        if missing or unknown:
            fail(
                where,
                "params",
                f"exactly the names {list(self._params)}",
                f"missing {missing}, unknown {unknown}",
            )
        staged = {}
        for key, current in self._params.items():
            value = params[key]
            if array_api_compat.is_array_api_obj(value) and not isinstance(value, np.ndarray):
                value = to_numpy(value)
            host = np.array(value, copy=True)
            dtype = dtype_name(current.dtype)
            if host.shape != tuple(current.shape) or host.dtype != np.dtype(dtype):
                fail(
                    where,
                    f"params[{key!r}]",
                    f"shape {tuple(current.shape)} and dtype {dtype}",
                    f"shape {host.shape} and dtype {host.dtype}",
                )
            staged[key] = _like(host, current)
        for key, value in staged.items():
            self._params[key] = value

    def __repr__(self) -> str:
        lines = [f"  ({name}): {layer!r}" for name, layer in self._layers.items()]
        lines.append(f"  (last_layer): {self.last_layer!r}")
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


# --------------------------------------------------------------------------- book networks


def _check_seed(seed: Any, where: str) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        fail(where, "seed", "None or a non-negative int", describe(seed))
    return int(seed)


def _check_weight_init(weight_init_std: Any, where: str) -> WeightInit:
    """Validate and normalise a weight_init_std: a lower-case name or a float."""
    weight_scale(weight_init_std, 1, where)
    return weight_init_std.lower() if isinstance(weight_init_std, str) else float(weight_init_std)


class TwoLayerNet(Sequential):
    """The book's chapter-5 network: ``Affine1 -> Relu1 -> Affine2 -> SoftmaxWithLoss``.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        Layer widths (784, 50, 10 for MNIST in the book).
    weight_init_std : float or {"relu", "he", "sigmoid", "xavier"}, default 0.01
        Standard deviation of the initial weights (see :func:`xplayers.init.weight_scale`).
    seed : int or None
        Seed of the host random generator; the same seed gives the same
        weights on every backend.
    dtype : {"float64", "float32"}
        Dtype of the parameters, created on the current backend.

    Attributes
    ----------
    layers : mapping
        ``"Affine1"``, ``"Relu1"``, ``"Affine2"``.
    last_layer, lastLayer : SoftmaxWithLoss
        The loss (``lastLayer`` is the book's name).
    params : Parameters
        ``W1, b1, W2, b2``.

    Examples
    --------
    >>> import numpy as np
    >>> import xplayers as xpl
    >>> from xplayers.network import TwoLayerNet
    >>> with xpl.use_backend("numpy"):
    ...     net = TwoLayerNet(input_size=4, hidden_size=5, output_size=3, seed=0)
    >>> net
    TwoLayerNet(
      (Affine1): Affine(4 -> 5, dtype=float64)
      (Relu1): Relu()
      (Affine2): Affine(5 -> 3, dtype=float64)
      (last_layer): SoftmaxWithLoss()
    )
    >>> x = np.ones((2, 4))
    >>> t = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # one-hot, or labels [1, 0]
    >>> grads = net.gradient(x, t)
    >>> [grads[k].shape for k in ("W1", "b1", "W2", "b2")]
    [(4, 5), (5,), (5, 3), (3,)]
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        weight_init_std: WeightInit = 0.01,
        *,
        seed: int | None = None,
        dtype: str = "float64",
    ) -> None:
        where = "TwoLayerNet"
        sizes = _check_sizes([input_size, hidden_size, output_size], where, "sizes")
        self.input_size, self.hidden_size, self.output_size = sizes
        self.weight_init_std = _check_weight_init(weight_init_std, where)
        self.seed = _check_seed(seed, where)
        self.dtype = canonical_dtype(dtype, where)
        p = init_params(sizes, self.weight_init_std, seed=self.seed, dtype=self.dtype)
        layers: OrderedDict[str, Any] = OrderedDict()
        layers["Affine1"] = Affine(p["W1"], p["b1"], input_grad=False)
        layers["Relu1"] = Relu()
        layers["Affine2"] = Affine(p["W2"], p["b2"])
        super().__init__(layers, SoftmaxWithLoss())

    @property
    def lastLayer(self) -> Any:  # noqa: N802 - the book's name
        """The loss layer under the book's chapter-5 name (same as :attr:`last_layer`)."""
        return self.last_layer

    def config(self) -> dict[str, Any]:
        """Describe the network as JSON-serialisable data for :func:`from_config`.

        Examples
        --------
        >>> from xplayers.network import TwoLayerNet
        >>> TwoLayerNet(4, 5, 3, seed=0).config()["hidden_size"]
        5
        """
        return {
            "class": "TwoLayerNet",
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "output_size": self.output_size,
            "weight_init_std": self.weight_init_std,
            "seed": self.seed,
            "dtype": self.dtype,
        }


_ACTIVATIONS: dict[str, type] = {"relu": Relu, "sigmoid": Sigmoid}


class MultiLayerNet(Sequential):
    r"""The book's chapter-6 fully connected network of any depth.

    Layers ``Affine1, Activation_function1, ..., Affine{L}`` and a
    ``SoftmaxWithLoss`` loss, with ``L = len(hidden_size_list) + 1`` (the
    book's names). Weight decay (the book's ``weight_decay_lambda``) is not
    part of this class.

    Parameters
    ----------
    input_size, output_size : int
    hidden_size_list : sequence of int
        Widths of the hidden layers (may be empty: softmax regression).
    activation : {"relu", "sigmoid"}
    weight_init_std : float or {"relu", "he", "sigmoid", "xavier"}, default "relu"
        ``"relu"``/``"he"``: :math:`\sqrt{2/n_{in}}` per layer;
        ``"sigmoid"``/``"xavier"``: :math:`\sqrt{1/n_{in}}`; a number: that
        standard deviation for every layer.
    seed : int or None
    dtype : {"float64", "float32"}

    Examples
    --------
    >>> from xplayers.network import MultiLayerNet
    >>> net = MultiLayerNet(4, [6, 5], 3, activation="sigmoid", weight_init_std="xavier", seed=0)
    >>> list(net.layers)
    ['Affine1', 'Activation_function1', 'Affine2', 'Activation_function2', 'Affine3']
    >>> list(net.params)
    ['W1', 'b1', 'W2', 'b2', 'W3', 'b3']
    """

    def __init__(
        self,
        input_size: int,
        hidden_size_list: Iterable[int],
        output_size: int,
        activation: str = "relu",
        weight_init_std: WeightInit = "relu",
        *,
        seed: int | None = None,
        dtype: str = "float64",
    ) -> None:
        where = "MultiLayerNet"
        if isinstance(hidden_size_list, (str, bytes)) or not isinstance(hidden_size_list, Iterable):
            fail(where, "hidden_size_list", "a list of positive ints", describe(hidden_size_list))
        self.hidden_size_list = _check_sizes(list(hidden_size_list), where, "hidden_size_list")
        self.input_size, self.output_size = _check_sizes([input_size, output_size], where, "sizes")
        if not isinstance(activation, str) or activation.lower() not in _ACTIVATIONS:
            fail(where, "activation", f"one of {list(_ACTIVATIONS)}", repr(activation))
        self.activation = activation.lower()
        self.weight_init_std = _check_weight_init(weight_init_std, where)
        self.seed = _check_seed(seed, where)
        self.dtype = canonical_dtype(dtype, where)
        sizes = [self.input_size, *self.hidden_size_list, self.output_size]
        p = init_params(sizes, self.weight_init_std, seed=self.seed, dtype=self.dtype)
        layers: OrderedDict[str, Any] = OrderedDict()
        n_hidden = len(self.hidden_size_list)
        for k in range(1, n_hidden + 2):
            layers[f"Affine{k}"] = Affine(p[f"W{k}"], p[f"b{k}"], input_grad=k > 1)
            if k <= n_hidden:
                layers[f"Activation_function{k}"] = _ACTIVATIONS[self.activation]()
        super().__init__(layers, SoftmaxWithLoss())

    def config(self) -> dict[str, Any]:
        """Describe the network as JSON-serialisable data for :func:`from_config`.

        Examples
        --------
        >>> from xplayers.network import MultiLayerNet
        >>> MultiLayerNet(4, [6], 3, seed=0).config()["hidden_size_list"]
        [6]
        """
        return {
            "class": "MultiLayerNet",
            "input_size": self.input_size,
            "hidden_size_list": list(self.hidden_size_list),
            "output_size": self.output_size,
            "activation": self.activation,
            "weight_init_std": self.weight_init_std,
            "seed": self.seed,
            "dtype": self.dtype,
        }


# --------------------------------------------------------------------------- from_config

_KEYS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # class: (required keys, optional keys)
    "TwoLayerNet": (
        frozenset({"class", "input_size", "hidden_size", "output_size"}),
        frozenset({"weight_init_std", "seed", "dtype"}),
    ),
    "MultiLayerNet": (
        frozenset({"class", "input_size", "hidden_size_list", "output_size"}),
        frozenset({"activation", "weight_init_std", "seed", "dtype"}),
    ),
    "Sequential": (frozenset({"class", "layers"}), frozenset({"dtype"})),
}


def _sequential_from_config(config: Mapping[str, Any], where: str) -> Sequential:
    dtype = canonical_dtype(config.get("dtype", "float64"), where)
    entries = config["layers"]
    if not isinstance(entries, list) or not entries:
        fail(where, "config['layers']", "a non-empty list of layer descriptions", repr(entries))
    layers: list[tuple[str, Any]] = []
    for entry in entries:
        kind = entry.get("type") if isinstance(entry, Mapping) else None
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if kind not in Sequential._CONFIG_LAYERS or not isinstance(name, str):
            fail(
                where,
                "config['layers']",
                "entries like {'name': 'Relu1', 'type': 'Relu'} of type Affine, Relu or Sigmoid",
                repr(entry),
            )
        if kind == "Affine":
            d_in, d_out = _check_sizes(
                [entry.get("input_size"), entry.get("output_size")], where, f"config {name!r}"
            )
            layer: Any = Affine(
                asarray(np.zeros((d_in, d_out), dtype=dtype), dtype),
                asarray(np.zeros(d_out, dtype=dtype), dtype),
                input_grad=bool(entry.get("input_grad", True)),
            )
        else:
            layer = Sequential._CONFIG_LAYERS[kind]()
        layers.append((name, layer))
    return Sequential(layers, SoftmaxWithLoss())


def from_config(config: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Sequential:
    """Rebuild a network from :meth:`~Sequential.config` on the current backend.

    Parameters
    ----------
    config : mapping
        As returned by ``net.config()`` (possibly through JSON).
    params : mapping of str to numpy.ndarray, optional
        Values for every parameter (e.g. ``{k: to_numpy(v) for k, v in
        net.params.items()}``); names, shapes and dtypes must match the
        network exactly. Without it, the weights are initialised from the
        config's seed (a plain ``Sequential`` config needs `params`).

    Returns
    -------
    Sequential
        A :class:`TwoLayerNet`, :class:`MultiLayerNet` or :class:`Sequential`.

    Raises
    ------
    LayerInputError
        An unknown class, missing or unexpected keys, invalid values, or
        parameters whose names, shapes or dtypes do not match.

    Examples
    --------
    >>> import json
    >>> import xplayers as xpl
    >>> from xplayers.network import TwoLayerNet, from_config
    >>> net = TwoLayerNet(4, 5, 3, seed=0)
    >>> saved = json.dumps(net.config())
    >>> host = {k: xpl.to_numpy(v) for k, v in net.params.items()}
    >>> with xpl.use_backend("array_api_strict"):
    ...     copy = from_config(json.loads(saved), host)
    >>> type(copy.params["W1"]).__module__.split(".")[0]
    'array_api_strict'
    >>> bool((xpl.to_numpy(copy.params["W2"]) == host["W2"]).all())
    True
    """
    where = "from_config"
    if not isinstance(config, Mapping):
        fail(where, "config", "a mapping such as net.config()", describe(config))
    cls = config.get("class")
    if cls not in _KEYS:
        fail(where, "config['class']", f"one of {list(_KEYS)}", repr(cls))
    required, optional = _KEYS[cls]
    missing = sorted(required - set(config))
    unknown = sorted(set(config) - required - optional)
    if missing or unknown:
        fail(
            where,
            "config",
            f"the keys {sorted(required)} and optionally {sorted(optional)} for {cls}",
            f"missing {missing}, unknown {unknown}",
        )
    kwargs = {k: v for k, v in config.items() if k != "class"}
    net: Sequential
    if cls == "Sequential":
        if params is None:
            fail(where, "params", "the parameters of a Sequential network", "None")
        net = _sequential_from_config(config, where)
    elif cls == "TwoLayerNet":
        net = TwoLayerNet(**kwargs)
    else:
        net = MultiLayerNet(**kwargs)
    if params is not None:
        net._load(params, where)
    return net


def _host_layer(layer: Any) -> Any:
    """A shallow copy of `layer` whose parameters are float64 NumPy copies."""
    clone = copy.copy(layer)
    for attr, value in _layer_params(layer).items():
        setattr(clone, attr, np.array(to_numpy(value), dtype=np.float64, copy=True))
    return clone


def host_copy(net: Sequential) -> Sequential:
    """Return a copy of `net` computing in float64 NumPy (used by gradient checks).

    The copy has the same class, layers and parameter names; its parameters
    are new float64 NumPy arrays, so changing them leaves `net` alone.

    Examples
    --------
    >>> import xplayers as xpl
    >>> from xplayers.network import TwoLayerNet, host_copy
    >>> with xpl.use_backend("array_api_strict"):
    ...     net = TwoLayerNet(3, 4, 2, seed=0, dtype="float32")
    >>> host = host_copy(net)
    >>> host.params["W1"].dtype, type(host.params["W1"]).__name__
    (dtype('float64'), 'ndarray')
    """
    clone = copy.copy(net)
    clone._set_layers(
        [(name, _host_layer(layer)) for name, layer in net.layers.items()],
        _host_layer(net.last_layer),
    )
    return clone
