"""The book's networks: chapter 5's :class:`TwoLayerNet` and chapter 6's :class:`MultiLayerNet`.

Each builds its layers on the current backend from a seed, so the same seed
gives the same network everywhere. Both are :class:`BookNetwork` subclasses:
they keep their constructor arguments under the same names, and
:meth:`BookNetwork.config` reads them back, so the config is the constructor
call. Each also says which parameter shapes a config implies
(``param_shapes``), without building anything. Adding a network is a class
here (or in a module beside it) and one entry in
:data:`xplayers.network.NETWORKS`.
"""

from __future__ import annotations

import copy
import inspect
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from xplayers._validation import choice, describe, fail, number_in, positive_ints, seed_or_none
from xplayers.init import WeightInit, affine_shapes, canonical_dtype, init_params, weight_scale
from xplayers.layers import ACTIVATIONS, Affine, Relu, SoftmaxWithLoss
from xplayers.network.sequential import Sequential

__all__ = [
    "BookNetwork",
    "MultiLayerNet",
    "TwoLayerNet",
    "check_weight_init",
]


def check_weight_init(weight_init_std: Any, where: str) -> WeightInit:
    """Validate and normalise a weight_init_std: a lower-case name or a float."""
    weight_scale(weight_init_std, 1, where)
    return weight_init_std.lower() if isinstance(weight_init_std, str) else float(weight_init_std)


class BookNetwork(Sequential):
    """A :class:`~xplayers.network.Sequential` built from its constructor's arguments.

    A subclass stores every argument of its ``__init__`` as an attribute of
    the same name (normalised: ``activation="ReLU"`` is kept as ``"relu"``),
    so :meth:`config` is ``{"class": ..., **arguments}`` and
    ``cls(**arguments)`` rebuilds the network.
    """

    def config(self) -> dict[str, Any]:
        """Describe the network as its constructor call, JSON data for ``from_config``.

        Examples
        --------
        >>> from xplayers.network import TwoLayerNet
        >>> TwoLayerNet(4, 5, 3, seed=0).config()["hidden_size"]
        5
        """
        cls = next(c for c in type(self).__mro__ if "__init__" in vars(c))
        names = list(inspect.signature(cls).parameters)
        return {"class": cls.__name__, **{n: copy.deepcopy(getattr(self, n)) for n in names}}


class TwoLayerNet(BookNetwork):
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
        sizes = positive_ints(where, "sizes", [input_size, hidden_size, output_size])
        self.input_size, self.hidden_size, self.output_size = sizes
        self.weight_init_std = check_weight_init(weight_init_std, where)
        self.seed = seed_or_none(where, "seed", seed)
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

    @staticmethod
    def param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """The parameter shapes of ``TwoLayerNet(**config)``, without building it.

        Examples
        --------
        >>> from xplayers.network import TwoLayerNet
        >>> TwoLayerNet.param_shapes({"input_size": 4, "hidden_size": 5, "output_size": 3})
        {'W1': (4, 5), 'b1': (5,), 'W2': (5, 3), 'b2': (3,)}
        """
        sizes = [config["input_size"], config["hidden_size"], config["output_size"]]
        return affine_shapes(positive_ints("TwoLayerNet", "sizes", sizes))


class MultiLayerNet(BookNetwork):
    r"""The book's chapter-6 fully connected network of any depth.

    Layers ``Affine1, Activation_function1, ..., Affine{L}`` and a
    ``SoftmaxWithLoss`` loss, with ``L = len(hidden_size_list) + 1`` (the
    book's names).

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
    weight_decay_lambda : float >= 0, default 0
        The book's L2 weight decay: ``loss`` adds
        :math:`\tfrac{\lambda}{2}\sum_k \lVert W_k \rVert^2` and ``gradient``
        returns ``dW + lambda * W`` for every weight matrix (not the biases).
    seed : int or None
    dtype : {"float64", "float32"}

    Attributes
    ----------
    hidden_layer_num : int
        ``len(hidden_size_list)``, the book's attribute.

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
        weight_decay_lambda: float = 0,
        *,
        seed: int | None = None,
        dtype: str = "float64",
    ) -> None:
        where = "MultiLayerNet"
        sizes = self._sizes(input_size, hidden_size_list, output_size)
        self.input_size, *self.hidden_size_list, self.output_size = sizes
        self.hidden_layer_num = len(self.hidden_size_list)
        self.weight_decay_lambda = number_in(
            where, "weight_decay_lambda", weight_decay_lambda, low=0.0, low_open=False
        )
        self.activation = choice(where, "activation", activation, ACTIVATIONS)
        self.weight_init_std = check_weight_init(weight_init_std, where)
        self.seed = seed_or_none(where, "seed", seed)
        self.dtype = canonical_dtype(dtype, where)
        p = init_params(sizes, self.weight_init_std, seed=self.seed, dtype=self.dtype)
        layers: OrderedDict[str, Any] = OrderedDict()
        n_hidden = len(self.hidden_size_list)
        for k in range(1, n_hidden + 2):
            layers[f"Affine{k}"] = Affine(p[f"W{k}"], p[f"b{k}"], input_grad=k > 1)
            if k <= n_hidden:
                layers[f"Activation_function{k}"] = ACTIVATIONS[self.activation]()
        super().__init__(layers, SoftmaxWithLoss())

    @staticmethod
    def _sizes(input_size: object, hidden_size_list: object, output_size: object) -> list[int]:
        where = "MultiLayerNet"
        if isinstance(hidden_size_list, (str, bytes)) or not isinstance(hidden_size_list, Iterable):
            fail(where, "hidden_size_list", "a list of positive ints", describe(hidden_size_list))
        hidden = positive_ints(where, "hidden_size_list", hidden_size_list)
        input_size, output_size = positive_ints(where, "sizes", [input_size, output_size])
        return [input_size, *hidden, output_size]

    @staticmethod
    def param_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """The parameter shapes of ``MultiLayerNet(**config)``, without building it.

        Examples
        --------
        >>> from xplayers.network import MultiLayerNet
        >>> config = {"input_size": 4, "hidden_size_list": [6], "output_size": 3}
        >>> MultiLayerNet.param_shapes(config)
        {'W1': (4, 6), 'b1': (6,), 'W2': (6, 3), 'b2': (3,)}
        """
        sizes = MultiLayerNet._sizes(
            config["input_size"], config["hidden_size_list"], config["output_size"]
        )
        return affine_shapes(sizes)
