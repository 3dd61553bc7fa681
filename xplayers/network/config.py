"""Networks as JSON data, rebuilt by :func:`from_config` from one table of constructors.

A config is what ``net.config()`` returns: ``{"class": name, **arguments}``.
:data:`NETWORKS` maps each class name to its :class:`Constructor`; the keys a
config must and may hold are read from the constructor's signature, so they
are never written twice. Adding a network to the files is one entry::

    NETWORKS["SimpleConvNet"] = Constructor(SimpleConvNet, SimpleConvNet.param_shapes)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from xplayers._validation import describe, dtype_name, fail
from xplayers.init import canonical_dtype
from xplayers.network.book import MultiLayerNet, TwoLayerNet
from xplayers.network.convnet import DeepConvNet, MultiLayerNetExtend, SimpleConvNet
from xplayers.network.sequential import Sequential, build_sequential, sequential_shapes

__all__ = ["NETWORKS", "Constructor", "buffer_shapes", "from_config", "param_shapes"]

Shapes = dict[str, tuple[int, ...]]


def _no_buffers(config: Mapping[str, Any]) -> Shapes:
    """No buffers: the networks without running averages."""
    return {}


@dataclass(frozen=True)
class Constructor:
    """How the config of one network class becomes a network.

    Attributes
    ----------
    build : callable
        Called with the config's entries but ``"class"`` as keyword
        arguments; its signature says which keys are required (no default)
        and which are optional.
    shapes : callable
        ``shapes(config) -> {name: shape}``: the parameters the config
        implies, checked as `build` checks them, computed without allocating
        anything.
    needs_params : bool
        The config alone does not determine the weights (a plain
        ``Sequential``), so :func:`from_config` requires `params`.
    buffer_shapes : callable
        ``buffer_shapes(config) -> {name: shape}``: the network's
        :attr:`~xplayers.network.Sequential.buffers` (running averages), as
        `shapes` computes the parameters; none by default.
    """

    build: Callable[..., Sequential]
    shapes: Callable[[Mapping[str, Any]], Shapes]
    needs_params: bool = False
    buffer_shapes: Callable[[Mapping[str, Any]], Shapes] = _no_buffers

    def keys(self) -> tuple[frozenset[str], frozenset[str]]:
        """The required and the optional keys of a config (``"class"`` is required)."""
        parameters = inspect.signature(self.build).parameters.values()
        required = {p.name for p in parameters if p.default is inspect.Parameter.empty}
        optional = {p.name for p in parameters} - required
        return frozenset({"class", *required}), frozenset(optional)

    def dtype(self, config: Mapping[str, Any], where: str = "from_config") -> str:
        """The parameters' dtype name a config implies (its ``dtype``, else the default)."""
        default = inspect.signature(self.build).parameters["dtype"].default
        return canonical_dtype(config.get("dtype", default), where)


#: The networks a config can describe, by class name.
NETWORKS: dict[str, Constructor] = {
    "TwoLayerNet": Constructor(TwoLayerNet, TwoLayerNet.param_shapes),
    "MultiLayerNet": Constructor(MultiLayerNet, MultiLayerNet.param_shapes),
    "MultiLayerNetExtend": Constructor(
        MultiLayerNetExtend,
        MultiLayerNetExtend.param_shapes,
        buffer_shapes=MultiLayerNetExtend.buffer_shapes,
    ),
    "SimpleConvNet": Constructor(SimpleConvNet, SimpleConvNet.param_shapes),
    "DeepConvNet": Constructor(DeepConvNet, DeepConvNet.param_shapes),
    "Sequential": Constructor(build_sequential, sequential_shapes, needs_params=True),
}


def _constructor(config: object, where: str) -> Constructor:
    """The table entry of `config`, once its class and keys are checked."""
    if not isinstance(config, Mapping):
        fail(where, "config", "a mapping such as net.config()", describe(config))
    name = config.get("class")
    if not isinstance(name, str) or name not in NETWORKS:
        fail(where, "config['class']", f"one of {list(NETWORKS)}", repr(name)[:100])
    entry = NETWORKS[name]
    required, optional = entry.keys()
    missing = sorted(required - set(config))
    unknown = sorted(set(config) - required - optional)
    if missing or unknown:
        fail(
            where,
            "config",
            f"the keys {sorted(required)} and optionally {sorted(optional)} for {name}",
            f"missing {missing}, unknown {unknown}"[:300],
        )
    return entry


def param_shapes(config: Mapping[str, Any]) -> Shapes:
    """The parameter names and shapes a config implies, without allocating anything.

    The config is checked as :func:`from_config` checks it (class, keys and
    sizes), so a file's config can be compared with its stored arrays before
    any network is built.

    Parameters
    ----------
    config : mapping
        As returned by ``net.config()``.

    Returns
    -------
    dict of str to tuple of int
        ``{"W1": (d_in, d_hidden), "b1": (d_hidden,), ...}`` in the order of
        ``net.params``.

    Raises
    ------
    LayerInputError
        An unknown class, missing or unexpected keys, or invalid sizes.

    Examples
    --------
    >>> from xplayers.network import param_shapes
    >>> param_shapes({"class": "TwoLayerNet", "input_size": 20000, "hidden_size": 20000,
    ...               "output_size": 10})
    {'W1': (20000, 20000), 'b1': (20000,), 'W2': (20000, 10), 'b2': (10,)}
    """
    entry = _constructor(config, "param_shapes")
    return entry.shapes(config)


def buffer_shapes(config: Mapping[str, Any]) -> Shapes:
    """The buffer names and shapes a config implies (see :func:`param_shapes`).

    The buffers are the arrays a network's layers keep and use at test time
    without training them (:attr:`~xplayers.network.Sequential.buffers`:
    ``BatchNormalization``'s running averages); their dtype is the
    parameters'.

    Examples
    --------
    >>> from xplayers.network import buffer_shapes
    >>> buffer_shapes({"class": "MultiLayerNetExtend", "input_size": 4,
    ...                "hidden_size_list": [6], "output_size": 3, "use_batchnorm": True})
    {'running_mean1': (6,), 'running_var1': (6,)}
    >>> buffer_shapes({"class": "TwoLayerNet", "input_size": 4, "hidden_size": 5,
    ...                "output_size": 3})
    {}
    """
    entry = _constructor(config, "buffer_shapes")
    return entry.buffer_shapes(config)


def _check_params(where: str, params: object, shapes: Shapes, dtype: str) -> None:
    """Check `params` has exactly the names of `shapes`, each with that shape and `dtype`."""
    if not isinstance(params, Mapping):
        fail(where, "params", "a mapping of parameter names to NumPy arrays", describe(params))
    missing = [k for k in shapes if k not in params]
    unknown = [k for k in params if k not in shapes]
    if missing or unknown:
        fail(
            where,
            "params",
            f"exactly the names {list(shapes)}",
            f"missing {missing}, unknown {unknown}"[:300],
        )
    for key, shape in shapes.items():
        value = params[key]
        if not hasattr(value, "shape"):
            value = np.asarray(value)
        got, got_dtype = tuple(value.shape), dtype_name(value.dtype)
        if got != shape or got_dtype != dtype:
            fail(
                where,
                f"params[{key!r}]",
                f"shape {shape} and dtype {dtype}",
                f"shape {got} and dtype {got_dtype}",
            )


def from_config(config: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Sequential:
    """Rebuild a network from :meth:`~Sequential.config` on the current backend.

    Parameters
    ----------
    config : mapping
        As returned by ``net.config()`` (possibly through JSON).
    params : mapping of str to numpy.ndarray, optional
        Values for every parameter (e.g. ``{k: to_numpy(v) for k, v in
        net.params.items()}``); names, shapes and dtypes must match the
        network exactly. They are compared with :func:`param_shapes` before
        the network is built. Without them, the weights are initialised
        from the config's seed (a plain ``Sequential`` config needs `params`).

    Returns
    -------
    Sequential
        A :class:`TwoLayerNet`, :class:`MultiLayerNet` or :class:`Sequential`
        (any class of :data:`NETWORKS`).

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
    entry = _constructor(config, where)
    if params is None:
        if entry.needs_params:
            fail(where, "params", f"the parameters of a {config['class']} network", "None")
    else:
        _check_params(where, params, entry.shapes(config), entry.dtype(config, where))
    net = entry.build(**{k: v for k, v in config.items() if k != "class"})
    if params is not None:
        net.load_params(params)
    return net
