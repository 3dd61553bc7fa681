"""Sequential: layers applied in order, then a loss layer (the book's network pattern).

:class:`Sequential` is the book's ``self.layers = OrderedDict()``,
``self.last_layer = SoftmaxWithLoss()`` made generic: ``predict``, ``loss``,
``accuracy``, ``gradient`` by backpropagation, and the parameters under the
book's names ``W1, b1, W2, b2, ...`` in a live :class:`~xplayers.network.Parameters`
mapping. A plain ``Sequential`` of ``Affine``, ``Relu`` and ``Sigmoid`` layers
is described layer by layer by :meth:`Sequential.config`;
:func:`build_sequential` and :func:`sequential_shapes` read that description
back (for :func:`xplayers.network.from_config` and
:func:`xplayers.network.param_shapes`).
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import array_api_compat
import numpy as np

from xplayers import _pure_step as pure_step
from xplayers._files import atomic_writer
from xplayers._numerical import host64, host_layer, host_target, numerical_gradient, scalar
from xplayers._validation import describe, dtype_name, fail, positive_ints, traced
from xplayers.backend import asarray, namespace, to_numpy
from xplayers.errors import LayerInputError, LayerStateError
from xplayers.functional import labels_in_range
from xplayers.init import canonical_dtype
from xplayers.layers import ACTIVATIONS, Affine, SoftmaxWithLoss
from xplayers.layers.softmax_with_loss import target_labels
from xplayers.network.parameters import Parameters, is_layer, layer_params
from xplayers.network.summary import Summary, summarize

__all__ = ["CONFIG_LAYERS", "Sequential", "build_sequential", "sequential_shapes"]


class Optimizer(Protocol):
    """Anything with ``update(params, grads)``."""

    def update(self, params: MutableMapping[str, Any], grads: Mapping[str, Any], /) -> None: ...


#: Layer classes a plain :class:`Sequential` config can hold, by ``type`` name.
CONFIG_LAYERS: dict[str, type] = {
    "Affine": Affine,
    **{cls.__name__: cls for cls in ACTIVATIONS.values()},
}


def _like(host: np.ndarray[Any, Any], ref: Any) -> Any:
    """Put the NumPy array `host` on the backend and device of array `ref` (no dtype change)."""
    if isinstance(ref, np.ndarray):
        return host
    return namespace(ref).asarray(host, device=array_api_compat.device(ref))


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
            if not is_layer(layer):
                fail(
                    where, f"layers[{name!r}]", "a layer with forward and backward", describe(layer)
                )
            ordered[name] = layer
        if not is_layer(last):
            fail(where, "last_layer", "a loss layer such as SoftmaxWithLoss()", describe(last))
        slots: dict[str, tuple[Any, str]] = {}
        counts: dict[str, int] = {}  # per parameter name: W1, W2, ... and gamma1, gamma2, ...
        for name, layer in ordered.items():
            params = layer_params(layer)
            if not params:
                continue
            k = max(counts.get(attr, 0) for attr in params) + 1
            for attr, value in params.items():
                counts[attr] = k
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
        self._buffers = _buffer_slots(ordered, set(slots), where)
        self._layers = ordered
        self._forward_plan = [
            (layer, bool(getattr(layer, "takes_train_flg", False))) for layer in ordered.values()
        ]
        self.layers: Mapping[str, Any] = MappingProxyType(ordered)
        self._backward_order = list(reversed(ordered.values()))
        self.last_layer = last
        self._params = Parameters(slots, where)

    def __getstate__(self) -> dict[str, Any]:
        """The state for :mod:`pickle`: the layers, without the read-only view of them."""
        state = self.__dict__.copy()
        del state["layers"]  # a mappingproxy, which pickle refuses; rebuilt on load
        state["_numpy_plan"], state["_numpy_plan_known"] = None, False  # buffers, rebuilt
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.layers = MappingProxyType(self._layers)

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
        return {key: layer.grads[attr] for key, (layer, attr) in self._params.slots.items()}

    @property
    def buffers(self) -> dict[str, Any]:
        """The arrays the layers keep and use at test time that are not parameters.

        Named like :attr:`params`: the ``k``-th layer with a ``state``
        (``BatchNormalization``'s running averages) contributes
        ``running_mean{k}`` and ``running_var{k}``. They are saved in model
        files and checkpoints beside the parameters
        (:func:`xplayers.save`), since predictions at test time depend on
        them. A new dict of the layers' current arrays (empty without such
        layers).

        Examples
        --------
        >>> from xplayers.network import MultiLayerNetExtend
        >>> net = MultiLayerNetExtend(4, [5], 3, use_batchnorm=True, seed=0)
        >>> sorted(net.buffers)
        ['running_mean1', 'running_var1']
        """
        return {key: getattr(layer, attr) for key, (layer, attr) in self._buffers.items()}

    def load_buffers(self, buffers: Mapping[str, Any]) -> None:
        """Replace every buffer (see :attr:`buffers`) by a copy of the given host values.

        Parameters
        ----------
        buffers : mapping of str to numpy.ndarray
            Exactly the keys of :attr:`buffers`, each with the shape and
            dtype of the current array, and values the layer accepts
            (``running_var`` not negative).

        Raises
        ------
        LayerInputError
            Missing or unknown names, a wrong shape or dtype, or a value the
            layer refuses; nothing is changed then.
        """
        where = f"{type(self).__name__}.load_buffers"
        for (layer, attr), value in self.stage_buffers(buffers, where):
            setattr(layer, attr, value)

    def stage_buffers(
        self, buffers: Mapping[str, Any], where: str
    ) -> list[tuple[tuple[Any, str], Any]]:
        """Check `buffers` as :meth:`load_buffers` does; return the (slot, array) pairs to set.

        Nothing is changed: the caller sets them once everything else it
        changes is checked too.
        """
        current = self.buffers
        staged = _stage(current, buffers, where, "buffers")
        by_layer: dict[int, dict[str, Any]] = {}
        for key, value in staged.items():
            layer, attr = self._buffers[key]
            by_layer.setdefault(id(layer), {})[attr] = to_numpy(value)
        for layer, _ in self._buffers.values():
            check = getattr(layer, "check_state", None)
            if callable(check) and id(layer) in by_layer:
                check(by_layer.pop(id(layer)), where)
        return [(self._buffers[key], value) for key, value in staged.items()]

    # ------------------------------------------------------------------ computation

    def predict(self, x: Any, train_flg: bool = False) -> Any:
        """Return the scores (logits) of shape ``(N, C)`` for inputs `x`.

        `train_flg` is passed to the layers that take it (``Dropout``,
        ``BatchNormalization``): training behaviour when True, as the book's
        ``predict(x, train_flg=False)``. A NumPy `x` is first copied to the
        network's backend and device (see :meth:`to_own`).
        """
        x = self.to_own(x)
        for layer, takes_flag in self._forward_plan:
            x = layer.forward(x, train_flg) if takes_flag else layer.forward(x)
        return x

    def loss(self, x: Any, t: Any, train_flg: bool = False) -> Any:
        r"""Return the loss of `x` against targets `t` (labels ``(N,)`` or one-hot ``(N, C)``).

        With ``weight_decay_lambda > 0`` the book's L2 penalty
        :math:`\tfrac{\lambda}{2}\sum_k \lVert W_k\rVert^2` is added.
        """
        loss = self.last_layer.forward(self.predict(x, train_flg), self.to_own(t))
        lam = self.weight_decay_lambda
        if lam:
            xp = namespace(loss)
            for key in self._decayed:
                W = self._params[key]
                loss = loss + 0.5 * lam * xp.sum(W * W)
        return loss

    #: The book's L2 weight decay strength (0: none); networks that take it set it.
    weight_decay_lambda: float = 0.0

    @property
    def _decayed(self) -> list[str]:
        """The weight matrices the L2 penalty covers: ``W1, W2, ...`` (not biases, not gamma)."""
        return [k for k in self._params if k[:1] == "W" and k[1:].isdigit()]

    def to_own(self, a: Any) -> Any:
        """Copy a NumPy array onto the network's backend and device; other arrays pass as they are.

        The book's scripts load NumPy data; with the network on another
        backend (``XPLAYERS_BACKEND=cupy``) each call of :meth:`predict`,
        :meth:`loss`, :meth:`accuracy` or :meth:`gradient` moves its NumPy
        inputs once: one host-to-device copy of ``x`` (and ``t``) per call,
        the same copy the reader would write by hand. Arrays of the
        network's backend are not copied.
        """
        if not isinstance(a, np.ndarray):
            return a
        slots = self._params.slots
        if not slots:
            return a
        layer, attr = next(iter(slots.values()))
        ref = getattr(layer, attr)
        return a if isinstance(ref, np.ndarray) else _like(a, ref)

    def accuracy(self, x: Any, t: Any) -> float:
        """Return the fraction of samples whose highest score is the target class.

        Parameters
        ----------
        x : array, shape (N, ...)
            A non-empty batch.
        t : array
            The targets :meth:`loss` takes: integer labels ``(N,)`` in
            ``[0, C)`` (or a column ``(N, 1)`` of them when ``C > 1``), or
            one-hot / probability rows ``(N, C)`` (their argmax is taken).

        Returns
        -------
        float

        Raises
        ------
        LayerInputError
            Targets of another shape or dtype, labels outside ``[0, C)``
            (always checked: the answer is read anyway), an empty batch, or
            traced arrays (inside ``jax.jit``, ``jax.grad``, ``jax.vmap``; a
            Python float cannot be traced: compare ``argmax`` of
            :meth:`predict` with the labels there instead).
        """
        where = f"{type(self).__name__}.accuracy"
        y = self.predict(x)
        t = self.to_own(t)
        n, c = y.shape[0], y.shape[-1]
        if n == 0:
            fail(where, "x", "a non-empty batch", describe(x))
        if traced(y) or traced(t):
            fail(
                where,
                "x, t",
                "concrete arrays (accuracy returns a Python float)",
                "traced arrays",
                "Compute it outside jax.jit / jax.grad / jax.vmap, or compare "
                "xp.argmax(net.predict(x), axis=1) with the labels there",
            )
        xp = namespace(y)
        predicted = xp.argmax(y, axis=1)
        t = target_labels(where, y, t, predicted.dtype)
        if not bool(labels_in_range(t, c)):  # read even where the loss would not (a GPU, Dask)
            fail(
                where,
                "t",
                f"labels in [0, {c})",
                f"labels from {int(xp.min(t))} to {int(xp.max(t))}",
            )
        return float(xp.count_nonzero(predicted == t)) / float(n)

    def _backprop(self, x: Any, t: Any) -> Any:
        """Forward, loss and backward; return the loss, leave the gradients in the layers."""
        loss = self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1.0)
        for layer in self._backward_order:
            if dout is None:
                # A layer built without input_grad ends the chain: what comes
                # before it must have nothing to learn.
                if layer_params(layer):
                    raise LayerStateError(
                        f"{type(self).__name__}.gradient: {layer!r} needs a gradient but the "
                        "layer after it returned none; build only the first Affine layer "
                        "with input_grad=False"
                    )
                continue
            dout = layer.backward(dout)
        return loss

    def gradient(self, x: Any, t: Any) -> dict[str, Any]:
        """Return the gradients of the loss by backpropagation, keyed like :attr:`params`.

        The forward pass runs in training mode (``train_flg=True``). With
        ``weight_decay_lambda > 0`` each ``W`` gradient is ``dW + lambda * W``
        (a new array), as the book's.
        """
        self._backprop(x, t)
        return self._total_grads()

    def _total_grads(self) -> dict[str, Any]:
        grads = self.grads
        lam = self.weight_decay_lambda
        if lam:
            for key in self._decayed:
                grads[key] = grads[key] + lam * self._params[key]
        return grads

    def train_step(self, x: Any, t: Any, optimizer: Optimizer) -> Any:
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
        The step runs the layers themselves, so afterwards the layers' kept
        values and :attr:`grads` are those of this batch, as after
        :meth:`gradient`, on every backend; the speed comes from the
        backend's kernels (:mod:`xplayers.functional`), which every path
        shares. On JAX, a network of the library's layers with an optimizer
        of :mod:`xplayers.optim` runs instead one compiled function of the
        same pure layer functions (its :class:`~xplayers.network.chain.Chain`
        under ``jax.jit``, traced once per shape and dtype), which leaves
        the same state behind (each layer takes its values through
        :meth:`~xplayers.layers.Layer.take`) and does not check that labels
        lie in ``[0, C)`` (see :mod:`xplayers._pure_step`).

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
        loss = pure_step.train_step(self, x, t, optimizer)  # compiled where the backend can
        if loss is not NotImplemented:
            return loss
        loss = self._backprop(x, t)
        update(self._params, self._total_grads())
        return loss

    def numerical_gradient(self, x: Any, t: Any) -> dict[str, np.ndarray[Any, Any]]:
        """Return the gradients by central differences, in float64 on a host copy.

        Slow (two loss evaluations per parameter entry): for checking
        :meth:`gradient` on small networks. See :func:`xplayers.gradcheck.gradient_check`.

        Returns
        -------
        dict of str to numpy.ndarray
            Float64 NumPy arrays keyed like :attr:`params`.
        """
        host = self.map_layers(host_layer)
        x64, t64 = host64(x), host_target(t)

        def loss(_: np.ndarray[Any, Any]) -> float:
            return scalar(host.loss(x64, t64, train_flg=True))

        return {key: numerical_gradient(loss, host.params[key]) for key in host.params}

    def map_layers(self, fn: Callable[[Any], Any]) -> Sequential:
        """Return a shallow copy of the network whose layers (and loss layer) are ``fn(layer)``.

        The copy has the same class and attributes; its :attr:`params` map the
        same names to the new layers' arrays. :func:`xplayers.gradcheck.host_copy`
        uses it to make a float64 NumPy copy.
        """
        clone = copy.copy(self)
        clone._set_layers(
            [(name, fn(layer)) for name, layer in self._layers.items()], fn(self.last_layer)
        )
        return clone

    # ------------------------------------------------------------------ description

    def config(self) -> dict[str, Any]:
        """Describe the architecture as JSON-serialisable data (for ``from_config``).

        A plain :class:`Sequential` is described layer by layer; only
        ``Affine``, ``Relu``, ``Sigmoid`` and a ``SoftmaxWithLoss`` loss are
        supported (:data:`CONFIG_LAYERS`). Its parameters are not included (see
        :func:`~xplayers.network.from_config`).

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
            if CONFIG_LAYERS.get(kind) is not type(layer):
                fail(where, f"layers[{name!r}]", _CONFIG_NAMES, describe(layer))
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

    def save_params(self, file_name: str | os.PathLike[str] = "params.npz") -> Path:
        """Write the parameters to a ``.npz`` archive (NumPy arrays by name; never a pickle).

        The batch-norm running averages (:attr:`buffers`) are stored beside
        them. The archive is written as :func:`xplayers.save` writes its
        files (:func:`xplayers.io.atomic_writer`: a new temporary file beside
        the target, synced, then renamed over it), so a crash leaves the old
        file or the new one, any legal file name can be written, and only the
        read and write bits of a replaced file are kept. :func:`xplayers.save`
        writes the same arrays plus the network's config (a model file that
        :func:`xplayers.load` rebuilds); :meth:`load_params` reads both.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(file_name)
        arrays = {**self._params, **self.buffers}
        host = {key: np.asarray(to_numpy(value)) for key, value in arrays.items()}
        with atomic_writer(path) as f:
            np.savez(f, **host)  # type: ignore[arg-type]
        return path

    def load_params(
        self, file_name: str | os.PathLike[str] | Mapping[str, Any] = "params.npz"
    ) -> None:
        """Replace every parameter by the values of a file or a mapping (the book's method).

        Parameters
        ----------
        file_name : path or mapping of str to array, default "params.npz"
            A ``.npz`` archive of arrays named like :attr:`params` (what
            :meth:`save_params` writes), an xplayers model file
            (:func:`xplayers.save`; its header is not needed here), or a
            mapping of names to arrays (NumPy or any backend's). Files are
            read with ``allow_pickle=False``: the book's ``params.pkl`` is
            refused with a message saying how to convert it once.

        Raises
        ------
        LayerInputError
            Missing or unknown names, or a wrong shape or dtype (the message
            says which ``dtype=`` to build the network with); nothing is
            changed then.

        Notes
        -----
        Names, shapes and dtypes must match; the values are copied onto the
        backend and device of the network. The batch-norm running averages
        (:attr:`buffers`), which :meth:`save_params` and :func:`xplayers.save`
        store beside the parameters, are read too when the file holds them;
        a file without them (the book's, or an older xplayers's) leaves them
        as they are. To rebuild a whole network from a model file, use
        :func:`xplayers.load`.
        """
        where = f"{type(self).__name__}.load_params"
        if isinstance(file_name, Mapping):
            self._load_with_buffers(file_name, where)
            return
        if not isinstance(file_name, (str, os.PathLike)):
            fail(
                where,
                "file_name",
                "a path to a .npz file or a mapping of parameter names to arrays",
                describe(file_name),
                "To rebuild a saved network, use xplayers.load(path)",
            )
        self._load_with_buffers(_read_npz(where, Path(file_name)), where)

    def _load_with_buffers(self, arrays: Mapping[str, Any], where: str) -> None:
        """Load the parameters, and the buffers when `arrays` holds any; check all first."""
        names = set(self._buffers)
        params = {k: v for k, v in arrays.items() if k not in names}
        given = {k: v for k, v in arrays.items() if k in names}
        staged_params = _stage(self._params, params, where, "params")
        staged = self.stage_buffers(given, where) if given else []
        for key, value in staged_params.items():
            self._params[key] = value
        for (layer, attr), value in staged:
            setattr(layer, attr, value)

    def _load(self, params: Mapping[str, Any], where: str) -> None:
        for key, value in _stage(self._params, params, where, "params").items():
            self._params[key] = value

    def summary(self, input_shape: Sequence[int] | None = None) -> Summary:
        """Describe the network as Keras does: layers, output shapes, parameter counts.

        Parameters
        ----------
        input_shape : sequence of int, optional
            The shape of one input sample. Default: the network's
            ``input_dim`` (the conv networks), else the input width of its
            first ``Affine`` layer.

        Returns
        -------
        Summary
            The text (a ``str``; at the prompt it shows as the table): one
            row per layer with its output shape (``None`` for the batch),
            its number of parameters and their names and shapes, then the
            totals in numbers and bytes, the dtype, the backend and the
            device. Batch-norm running averages count as non-trainable.

        Notes
        -----
        The output shapes come from one sample of zeros sent through
        shallow copies of the layers, in inference mode, on the network's
        backend and device: the network's own layers keep their state.

        Examples
        --------
        >>> import xplayers as xpl
        >>> with xpl.use_backend("numpy"):
        ...     net = xpl.TwoLayerNet(784, 50, 10, seed=0)
        >>> net.summary()
        TwoLayerNet: float64 on numpy (cpu)
        Input: (None, 784)
        ___________________________________________________________________________
        Layer (type)                  Output shape  Param #  Parameters
        ===========================================================================
        Affine1 (Affine)              (None, 50)     39,250  W1 (784, 50), b1 (50,)
        Relu1 (Relu)                  (None, 50)          0
        Affine2 (Affine)              (None, 10)        510  W2 (50, 10), b2 (10,)
        last_layer (SoftmaxWithLoss)  ()                  0  the loss, a scalar
        ===========================================================================
        Total params: 39,760 (310.62 KiB)
        Trainable params: 39,760 (310.62 KiB)
        Non-trainable params: 0 (0 B)
        """
        return summarize(self, input_shape)

    def __repr__(self) -> str:
        lines = [f"  ({name}): {layer!r}" for name, layer in self._layers.items()]
        lines.append(f"  (last_layer): {self.last_layer!r}")
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


def _buffer_slots(
    layers: Mapping[str, Any], taken: set[str], where: str
) -> dict[str, tuple[Any, str]]:
    """The buffers of `layers` by key: the attributes named in each layer's ``state``.

    Numbered per attribute, like the parameters: the ``k``-th layer with a
    ``running_mean`` holds ``running_mean{k}``.
    """
    slots: dict[str, tuple[Any, str]] = {}
    counts: dict[str, int] = {}
    for name, layer in layers.items():
        attrs = tuple(getattr(layer, "state", ()) or ())
        if not attrs:
            continue
        k = max(counts.get(attr, 0) for attr in attrs) + 1
        for attr in attrs:
            counts[attr] = k
            key = f"{attr}{k}"
            if key in slots or key in taken:
                fail(where, f"layers[{name!r}]", "buffer names unique in the network", key)
            slots[key] = (layer, attr)
    return slots


def _stage(
    current: Mapping[str, Any], values: Mapping[str, Any], where: str, arg: str
) -> dict[str, Any]:
    """Copies of `values` on the backend of `current`, checked to match it key by key.

    Raises before anything is copied when a name is missing or unknown, or a
    shape or dtype differs.
    """
    if not isinstance(values, Mapping):
        fail(where, arg, f"a mapping of {arg} names to NumPy arrays", describe(values))
    missing = [k for k in current if k not in values]
    unknown = [k for k in values if k not in current]
    if missing or unknown:
        fail(
            where,
            arg,
            f"exactly the names {list(current)}",
            f"missing {missing}, unknown {unknown}"[:300],
        )
    staged = {}
    for key, now in current.items():
        value = values[key]
        if array_api_compat.is_array_api_obj(value) and not isinstance(value, np.ndarray):
            value = to_numpy(value)
        host = np.array(value, copy=True)
        dtype = dtype_name(now.dtype)
        if host.shape != tuple(now.shape) or host.dtype != np.dtype(dtype):
            hint = ""
            if host.shape == tuple(now.shape) and host.dtype.kind == "f":
                hint = (
                    f"The values are {host.dtype}: build the network with "
                    f"dtype={str(host.dtype)!r}, or rebuild it as saved: xplayers.load(path)"
                )
            fail(
                where,
                f"{arg}[{key!r}]",
                f"shape {tuple(now.shape)} and dtype {dtype}",
                f"shape {host.shape} and dtype {host.dtype}",
                hint,
            )
        staged[key] = _like(host, now)
    return staged


#: The header entry of an xplayers model file (:data:`xplayers.io.METADATA_KEY`).
_MODEL_HEADER = "__xplayers__"

_PICKLE_HINT = (
    "this looks like a pickle file from the book's save_params; xplayers never unpickles "
    "(a pickle can run any code). Convert it once, where you trust the file: "
    "python -c \"import pickle, numpy as np; np.savez('params.npz', "
    "**pickle.load(open('params.pkl', 'rb')))\" and load 'params.npz' (load_params reads "
    "it, and xplayers.load reads the model files that xplayers.save writes)"
)


def _read_npz(where: str, path: Path) -> dict[str, np.ndarray[Any, Any]]:
    """The arrays of a ``.npz`` file (a model file's header left out); pickles refused."""
    with path.open("rb") as f:
        magic = f.read(2)
    if magic != b"PK":
        if magic[:1] == b"\x80" or path.suffix == ".pkl":
            raise LayerInputError(f"{where}: {path}: {_PICKLE_HINT}")
        fail(
            where,
            "file_name",
            "a .npz archive (from save_params or xplayers.save)",
            str(path),
            "Model files are read by xplayers.load(path)",
        )
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files if k != _MODEL_HEADER}


_CONFIG_NAMES = ", ".join(list(CONFIG_LAYERS)[:-1]) + f" or {list(CONFIG_LAYERS)[-1]}"


def _layer_entries(entries: object, where: str) -> list[tuple[str, str, list[int], bool]]:
    """Check a config's ``layers`` list: ``(name, type, [d_in, d_out] or [], input_grad)`` each.

    Consecutive ``Affine`` layers must chain (the outputs of one are the
    inputs of the next), so a description that could never compute is
    refused here rather than at the first ``predict``.
    """
    if not isinstance(entries, list) or not entries:
        fail(where, "config['layers']", "a non-empty list of layer descriptions", repr(entries))
    out: list[tuple[str, str, list[int], bool]] = []
    width: int | None = None
    for entry in entries:
        kind = entry.get("type") if isinstance(entry, Mapping) else None
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if kind not in CONFIG_LAYERS or not isinstance(name, str):
            fail(
                where,
                "config['layers']",
                f"entries like {{'name': 'Relu1', 'type': 'Relu'}} of type {_CONFIG_NAMES}",
                repr(entry)[:200],
            )
        sizes: list[int] = []
        if kind == "Affine":
            sizes = positive_ints(
                where, f"config {name!r}", [entry.get("input_size"), entry.get("output_size")]
            )
            if width is not None and sizes[0] != width:
                fail(
                    where,
                    f"config {name!r}",
                    f"input_size {width}, the output_size of the Affine layer before it",
                    f"input_size {sizes[0]}",
                )
            width = sizes[1]
        out.append((name, kind, sizes, bool(entry.get("input_grad", True))))
    return out


def sequential_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The parameter shapes a plain :class:`Sequential` config implies, without allocating."""
    shapes: dict[str, tuple[int, ...]] = {}
    k = 0
    for _, _, sizes, _ in _layer_entries(config["layers"], "from_config"):
        if sizes:
            k += 1
            shapes[f"W{k}"] = (sizes[0], sizes[1])
            shapes[f"b{k}"] = (sizes[1],)
    return shapes


def build_sequential(layers: list[dict[str, Any]], dtype: str = "float64") -> Sequential:
    """Build a :class:`Sequential` from the ``layers`` of its config (zero parameters)."""
    where = "from_config"
    dtype = canonical_dtype(dtype, where)
    built: list[tuple[str, Any]] = []
    for name, kind, sizes, input_grad in _layer_entries(layers, where):
        if kind == "Affine":
            d_in, d_out = sizes
            layer: Any = Affine(
                asarray(np.zeros((d_in, d_out), dtype=dtype), dtype),
                asarray(np.zeros(d_out, dtype=dtype), dtype),
                input_grad=input_grad,
            )
        else:
            layer = CONFIG_LAYERS[kind]()
        built.append((name, layer))
    return Sequential(built, SoftmaxWithLoss())
