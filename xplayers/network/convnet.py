"""The book's chapter 6-8 networks: MultiLayerNetExtend, SimpleConvNet and DeepConvNet.

They are :class:`~xplayers.network.BookNetwork` subclasses built on the
current backend from a seed, like :class:`~xplayers.network.TwoLayerNet`,
with the book's constructor arguments, layer names and parameter names
(``W1, b1, ..., gamma1, beta1, ...``), and the book's
``save_params``/``load_params`` (every network has them, see
:meth:`~xplayers.network.Sequential.load_params`) writing pickle-free files.

Seeds: the weights are drawn from ``numpy.random.default_rng(seed)``; the
``k``-th Dropout layer (counted from 1) draws its masks from
``numpy.random.default_rng([seed, k])``, so one seed fixes the weights and
every mask on every backend. ``seed=None`` draws fresh entropy.
:meth:`BookFiles.reseed_dropout` restarts the masks, e.g. once per run of
:func:`xplayers.train`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from xplayers._validation import describe, fail, positive_ints, seed_or_none
from xplayers.backend import asarray, namespace
from xplayers.functional import conv_output_size
from xplayers.init import WeightInit, canonical_dtype, normal_weights, weight_scale
from xplayers.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Pooling,
    Relu,
    SoftmaxWithLoss,
)
from xplayers.layers._window import unit_interval
from xplayers.network.book import BookNetwork, MultiLayerNet, check_weight_init

__all__ = ["BookFiles", "DeepConvNet", "MultiLayerNetExtend", "SimpleConvNet"]

Shapes = dict[str, tuple[int, ...]]


class BookFiles(BookNetwork):
    """A book network whose Dropout masks one seed fixes (:meth:`reseed_dropout`)."""

    def reseed_dropout(self, seed: int | None) -> None:
        """Restart every Dropout layer's masks: layer ``k`` from ``default_rng([seed, k])``."""
        k = 0
        for layer in self.layers.values():
            if isinstance(layer, Dropout):
                k += 1
                layer.reseed(None if seed is None else [seed, k])


class _ImageInput(BookFiles):
    """Conv networks also take each image as one row of ``C*H*W`` pixels (flattened data)."""

    input_dim: list[int]

    def predict(self, x: Any, train_flg: bool = False) -> Any:
        """Scores ``(N, output_size)`` for images ``(N, C, H, W)`` or rows ``(N, C*H*W)``."""
        x = self.to_own(x)
        if getattr(x, "ndim", 0) == 2 and x.shape[1] == int(np.prod(self.input_dim)):
            x = namespace(x).reshape(x, (x.shape[0], *self.input_dim))
        return super().predict(x, train_flg)


def _normal(
    rng: np.random.Generator, shape: tuple[int, ...], scale: float, dtype: str, where: str
) -> Any:
    return asarray(normal_weights(rng, shape, scale, dtype, where), dtype)


def _zeros(n: int, dtype: str) -> Any:
    return asarray(np.zeros(n, dtype=dtype), dtype)


def _image_dims(where: str, input_dim: object) -> tuple[int, int, int]:
    if not isinstance(input_dim, Sequence) or isinstance(input_dim, str) or len(input_dim) != 3:
        fail(where, "input_dim", "(channels, height, width), e.g. (1, 28, 28)", repr(input_dim))
    c, h, w = positive_ints(where, "input_dim", input_dim)
    return c, h, w


def _conv_param(where: str, arg: str, value: object) -> dict[str, int]:
    keys = ("filter_num", "filter_size", "pad", "stride")
    if not isinstance(value, Mapping) or sorted(value) != sorted(keys):
        fail(where, arg, f"a dict with the keys {list(keys)}", repr(value)[:200])
    fn, fs, stride = positive_ints(
        where, arg, [value["filter_num"], value["filter_size"], value["stride"]]
    )
    pad = value["pad"]
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        fail(where, f"{arg}['pad']", "an integer >= 0", repr(pad))
    return {"filter_num": fn, "filter_size": fs, "pad": int(pad), "stride": stride}


def _conv_out(where: str, size: tuple[int, int, int], p: dict[str, int]) -> tuple[int, int, int]:
    """``(FN, OH, OW)`` of a convolution with parameters `p` on images of `size`."""
    _, h, w = size
    fs, pad, stride = p["filter_size"], p["pad"], p["stride"]
    if fs > h + 2 * pad or fs > w + 2 * pad:
        fail(
            where,
            "conv_param",
            f"a filter that fits the {h}x{w} images (pad {pad})",
            f"filter_size {fs}",
        )
    return (
        p["filter_num"],
        conv_output_size(h, fs, stride, pad),
        conv_output_size(w, fs, stride, pad),
    )


def _pool_out(where: str, size: tuple[int, int, int]) -> tuple[int, int, int]:
    """``(C, OH, OW)`` after the book's 2x2 max pooling with stride 2."""
    c, h, w = size
    if h < 2 or w < 2:
        fail(where, "input_dim", "images of at least 2x2 at every 2x2 pooling", f"{h}x{w}")
    return c, conv_output_size(h, 2, 2), conv_output_size(w, 2, 2)


# --------------------------------------------------------------------------- chapter 6


class MultiLayerNetExtend(BookFiles, MultiLayerNet):
    """The book's chapter-6 network with weight decay, Dropout and Batch Normalization.

    Layers ``Affine{k}``, ``BatchNorm{k}`` (with `use_batchnorm`),
    ``Activation_function{k}``, ``Dropout{k}`` (with `use_dropout`) for each
    hidden layer, then ``Affine{L}`` and ``SoftmaxWithLoss``, as the book.
    Parameters ``W1, b1, ..., W{L}, b{L}`` and, with batch normalisation,
    ``gamma1, beta1, ...`` (initialised to ones and zeros).

    Parameters
    ----------
    input_size, hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda
        As :class:`~xplayers.network.MultiLayerNet`.
    use_dropout : bool, default False
    dropout_ration : float in [0, 1], default 0.5
        The book's (misspelt) name of the dropout ratio.
    use_batchnorm : bool, default False
    seed : int or None
        The weights and every Dropout mask (see the module notes).
    dtype : {"float64", "float32"}

    Examples
    --------
    >>> from xplayers.network import MultiLayerNetExtend
    >>> net = MultiLayerNetExtend(4, [5], 3, use_batchnorm=True, use_dropout=True, seed=0)
    >>> list(net.layers)
    ['Affine1', 'BatchNorm1', 'Activation_function1', 'Dropout1', 'Affine2']
    >>> list(net.params)
    ['W1', 'b1', 'gamma1', 'beta1', 'W2', 'b2']
    """

    def __init__(
        self,
        input_size: int,
        hidden_size_list: Iterable[int],
        output_size: int,
        activation: str = "relu",
        weight_init_std: WeightInit = "relu",
        weight_decay_lambda: float = 0,
        use_dropout: bool = False,
        dropout_ration: float = 0.5,
        use_batchnorm: bool = False,
        *,
        seed: int | None = None,
        dtype: str = "float64",
    ) -> None:
        where = "MultiLayerNetExtend"
        MultiLayerNet.__init__(
            self,
            input_size,
            hidden_size_list,
            output_size,
            activation,
            weight_init_std,
            weight_decay_lambda,
            seed=seed,
            dtype=dtype,
        )
        self.use_dropout = bool(use_dropout)
        self.dropout_ration = unit_interval(where, "dropout_ration", dropout_ration)
        self.use_batchnorm = bool(use_batchnorm)
        plain = self.layers
        layers: OrderedDict[str, Any] = OrderedDict()
        for k in range(1, self.hidden_layer_num + 1):
            layers[f"Affine{k}"] = plain[f"Affine{k}"]
            if self.use_batchnorm:
                n = self.hidden_size_list[k - 1]
                ones = asarray(np.ones(n, dtype=self.dtype), self.dtype)
                layers[f"BatchNorm{k}"] = BatchNormalization(ones, _zeros(n, self.dtype))
            layers[f"Activation_function{k}"] = plain[f"Activation_function{k}"]
            if self.use_dropout:
                layers[f"Dropout{k}"] = Dropout(self.dropout_ration)
        last = self.hidden_layer_num + 1
        layers[f"Affine{last}"] = plain[f"Affine{last}"]
        self._set_layers(layers, SoftmaxWithLoss())
        self.reseed_dropout(self.seed)

    @staticmethod
    def param_shapes(config: Mapping[str, Any]) -> Shapes:
        """The parameter shapes of ``MultiLayerNetExtend(**config)``, without building it.

        Examples
        --------
        >>> from xplayers.network import MultiLayerNetExtend
        >>> config = {"input_size": 4, "hidden_size_list": [6], "output_size": 3,
        ...           "use_batchnorm": True}
        >>> MultiLayerNetExtend.param_shapes(config)
        {'W1': (4, 6), 'b1': (6,), 'gamma1': (6,), 'beta1': (6,), 'W2': (6, 3), 'b2': (3,)}
        """
        shapes = MultiLayerNet.param_shapes(config)
        if not config.get("use_batchnorm", False):
            return shapes
        out: Shapes = {}
        hidden = len(shapes) // 2 - 1
        for key, shape in shapes.items():
            out[key] = shape
            k = int(key[1:])
            if key[0] == "b" and k <= hidden:
                out[f"gamma{k}"] = out[f"beta{k}"] = shape
        return out

    @staticmethod
    def buffer_shapes(config: Mapping[str, Any]) -> Shapes:
        """The shapes of the running averages of ``MultiLayerNetExtend(**config)``.

        One ``running_mean{k}`` and ``running_var{k}`` per ``gamma{k}``
        (with `use_batchnorm`; none otherwise), without building anything.

        Examples
        --------
        >>> from xplayers.network import MultiLayerNetExtend
        >>> config = {"input_size": 4, "hidden_size_list": [6], "output_size": 3,
        ...           "use_batchnorm": True}
        >>> MultiLayerNetExtend.buffer_shapes(config)
        {'running_mean1': (6,), 'running_var1': (6,)}
        """
        out: Shapes = {}
        for key, shape in MultiLayerNetExtend.param_shapes(config).items():
            if key.startswith("gamma"):
                k = key.removeprefix("gamma")
                out[f"running_mean{k}"] = out[f"running_var{k}"] = shape
        return out


# --------------------------------------------------------------------------- chapter 7


class SimpleConvNet(_ImageInput):
    r"""The book's chapter-7 network: conv - relu - pool - affine - relu - affine - softmax.

    Layers ``Conv1, Relu1, Pool1, Affine1, Relu2, Affine2`` (the pooling is
    2x2 with stride 2) and parameters ``W1, b1`` (the filters), ``W2, b2``,
    ``W3, b3``, as the book. The first Affine layer's input size is computed
    from the pooled output, so any image size works (the book's formula
    ``filter_num * (conv_output_size / 2) ** 2`` assumes an even size).
    Inputs are images ``(N, C, H, W)``, or rows of ``C*H*W`` pixels
    (flattened data, reshaped to `input_dim`).

    Parameters
    ----------
    input_dim : (C, H, W), default (1, 28, 28)
    conv_param : dict, default ``{'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1}``
    hidden_size, output_size : int, default 100, 10
    weight_init_std : float or {"relu", "he", "sigmoid", "xavier"}, default 0.01
        A number is the book's: that standard deviation for every layer; a
        name scales each layer by its fan-in.
    seed : int or None
    dtype : {"float64", "float32"}

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.network import SimpleConvNet
    >>> net = SimpleConvNet(input_dim=(1, 8, 8), seed=0,
    ...                     conv_param={"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1})
    >>> list(net.layers)
    ['Conv1', 'Relu1', 'Pool1', 'Affine1', 'Relu2', 'Affine2']
    >>> [tuple(net.params[k].shape) for k in ("W1", "W2", "W3")]
    [(4, 1, 3, 3), (36, 100), (100, 10)]
    >>> grads = net.gradient(np.zeros((2, 1, 8, 8)), np.array([3, 7]))
    >>> grads["W1"].shape
    (4, 1, 3, 3)
    """

    def __init__(
        self,
        input_dim: Sequence[int] = (1, 28, 28),
        conv_param: Mapping[str, int] | None = None,
        hidden_size: int = 100,
        output_size: int = 10,
        weight_init_std: WeightInit = 0.01,
        *,
        seed: int | None = None,
        dtype: str = "float64",
    ) -> None:
        where = "SimpleConvNet"
        shapes = self.param_shapes(
            {
                "input_dim": input_dim,
                "conv_param": conv_param,
                "hidden_size": hidden_size,
                "output_size": output_size,
            }
        )
        self.input_dim = list(_image_dims(where, input_dim))
        self.conv_param = _conv_param(where, "conv_param", conv_param or _DEFAULT_CONV)
        self.hidden_size, self.output_size = positive_ints(
            where, "sizes", [hidden_size, output_size]
        )
        self.weight_init_std = check_weight_init(weight_init_std, where)
        self.seed = seed_or_none(where, "seed", seed)
        self.dtype = canonical_dtype(dtype, where)
        rng = np.random.default_rng(self.seed)
        p = {}
        for k in (1, 2, 3):
            w_shape = shapes[f"W{k}"]
            fan_in = int(np.prod(w_shape[1:])) if k == 1 else w_shape[0]
            scale = weight_scale(self.weight_init_std, fan_in, where)
            p[f"W{k}"] = _normal(rng, w_shape, scale, self.dtype, where)
            p[f"b{k}"] = _zeros(shapes[f"b{k}"][0], self.dtype)
        cp = self.conv_param
        layers: OrderedDict[str, Any] = OrderedDict()
        layers["Conv1"] = Convolution(p["W1"], p["b1"], cp["stride"], cp["pad"], input_grad=False)
        layers["Relu1"] = Relu()
        layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        layers["Affine1"] = Affine(p["W2"], p["b2"])
        layers["Relu2"] = Relu()
        layers["Affine2"] = Affine(p["W3"], p["b3"])
        super().__init__(layers, SoftmaxWithLoss())

    def accuracy(self, x: Any, t: Any, batch_size: int = 100) -> float:
        """The fraction of correct predictions, computed `batch_size` samples at a time.

        Unlike the book's loop, the last partial batch is counted too (the
        book skips it but divides by all ``N``).
        """
        return _batched_accuracy(self, x, t, batch_size)

    @staticmethod
    def param_shapes(config: Mapping[str, Any]) -> Shapes:
        """The parameter shapes of ``SimpleConvNet(**config)``, without building it.

        Examples
        --------
        >>> from xplayers.network import SimpleConvNet
        >>> SimpleConvNet.param_shapes({})["W2"]
        (4320, 100)
        """
        where = "SimpleConvNet"
        size = _image_dims(where, config.get("input_dim", (1, 28, 28)))
        cp = _conv_param(where, "conv_param", config.get("conv_param") or _DEFAULT_CONV)
        hidden, out = positive_ints(
            where, "sizes", [config.get("hidden_size", 100), config.get("output_size", 10)]
        )
        conv = _conv_out(where, size, cp)
        pooled = int(np.prod(_pool_out(where, conv)))
        fs = cp["filter_size"]
        return {
            "W1": (cp["filter_num"], size[0], fs, fs),
            "b1": (cp["filter_num"],),
            "W2": (pooled, hidden),
            "b2": (hidden,),
            "W3": (hidden, out),
            "b3": (out,),
        }


_DEFAULT_CONV = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}


def _batched_accuracy(net: BookNetwork, x: Any, t: Any, batch_size: int) -> float:
    where = f"{type(net).__name__}.accuracy"
    (batch_size,) = positive_ints(where, "batch_size", [batch_size])
    n = int(x.shape[0])
    if n == 0:
        fail(where, "x", "a non-empty batch", describe(x))
    correct = 0.0
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        correct += m * BookNetwork.accuracy(net, x[i : i + m, ...], t[i : i + m, ...])
    return correct / n


# --------------------------------------------------------------------------- chapter 8

_DEEP_DEFAULTS = [
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
]


class DeepConvNet(_ImageInput):
    """The book's chapter-8 network (over 99% on MNIST).

    ``(conv - relu - conv - relu - pool) x 3 - affine - relu - dropout -
    affine - dropout - softmax``, He initialisation from each layer's
    fan-in, parameters ``W1, b1, ..., W8, b8``. Layer names:
    ``Conv1, Relu1, Conv2, Relu2, Pool1, ..., Conv6, Relu6, Pool3,
    Affine1, Relu7, Dropout1, Affine2, Dropout2``. As in the book,
    :meth:`loss` runs in training mode by default (the dropout layers
    active) and :meth:`accuracy` in test mode.

    Parameters
    ----------
    input_dim : (C, H, W), default (1, 28, 28)
    conv_param_1, ..., conv_param_6 : dict
        The book's defaults: 16, 16, 32, 32, 64, 64 filters of 3x3, pad 1
        (pad 2 for the fourth).
    hidden_size, output_size : int, default 50, 10
    seed : int or None
        The weights and the two Dropout layers' masks.
    dtype : {"float64", "float32"}
    """

    def __init__(
        self,
        input_dim: Sequence[int] = (1, 28, 28),
        conv_param_1: Mapping[str, int] | None = None,
        conv_param_2: Mapping[str, int] | None = None,
        conv_param_3: Mapping[str, int] | None = None,
        conv_param_4: Mapping[str, int] | None = None,
        conv_param_5: Mapping[str, int] | None = None,
        conv_param_6: Mapping[str, int] | None = None,
        hidden_size: int = 50,
        output_size: int = 10,
        *,
        seed: int | None = None,
        dtype: str = "float64",
    ) -> None:
        where = "DeepConvNet"
        given = [conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6]
        config = {"input_dim": input_dim, "hidden_size": hidden_size, "output_size": output_size}
        config.update({f"conv_param_{i + 1}": p for i, p in enumerate(given)})
        shapes = self.param_shapes(config)
        self.input_dim = list(_image_dims(where, input_dim))
        params = [
            _conv_param(where, f"conv_param_{i + 1}", p or d)
            for i, (p, d) in enumerate(zip(given, _DEEP_DEFAULTS, strict=True))
        ]
        (
            self.conv_param_1,
            self.conv_param_2,
            self.conv_param_3,
            self.conv_param_4,
            self.conv_param_5,
            self.conv_param_6,
        ) = params
        self.hidden_size, self.output_size = positive_ints(
            where, "sizes", [hidden_size, output_size]
        )
        self.seed = seed_or_none(where, "seed", seed)
        self.dtype = canonical_dtype(dtype, where)
        rng = np.random.default_rng(self.seed)
        p = {}
        for k in range(1, 9):
            w_shape = shapes[f"W{k}"]
            fan_in = int(np.prod(w_shape[1:])) if k <= 6 else w_shape[0]
            p[f"W{k}"] = _normal(rng, w_shape, float(np.sqrt(2.0 / fan_in)), self.dtype, where)
            p[f"b{k}"] = _zeros(shapes[f"b{k}"][0], self.dtype)
        layers: OrderedDict[str, Any] = OrderedDict()
        for k, cp in enumerate(params, start=1):
            layers[f"Conv{k}"] = Convolution(
                p[f"W{k}"], p[f"b{k}"], cp["stride"], cp["pad"], input_grad=k > 1
            )
            layers[f"Relu{k}"] = Relu()
            if k % 2 == 0:
                layers[f"Pool{k // 2}"] = Pooling(pool_h=2, pool_w=2, stride=2)
        layers["Affine1"] = Affine(p["W7"], p["b7"])
        layers["Relu7"] = Relu()
        layers["Dropout1"] = Dropout(0.5)
        layers["Affine2"] = Affine(p["W8"], p["b8"])
        layers["Dropout2"] = Dropout(0.5)
        super().__init__(layers, SoftmaxWithLoss())
        self.reseed_dropout(self.seed)

    def loss(self, x: Any, t: Any, train_flg: bool = True) -> Any:
        """The loss, in training mode by default (dropout active), as the book's."""
        return super().loss(x, t, train_flg)

    def accuracy(self, x: Any, t: Any, batch_size: int = 100) -> float:
        """The fraction of correct predictions in test mode, `batch_size` samples at a time."""
        return _batched_accuracy(self, x, t, batch_size)

    @staticmethod
    def param_shapes(config: Mapping[str, Any]) -> Shapes:
        """The parameter shapes of ``DeepConvNet(**config)``, without building it.

        Examples
        --------
        >>> from xplayers.network import DeepConvNet
        >>> DeepConvNet.param_shapes({})["W7"]
        (1024, 50)
        """
        where = "DeepConvNet"
        size = _image_dims(where, config.get("input_dim", (1, 28, 28)))
        shapes: Shapes = {}
        for k, default in enumerate(_DEEP_DEFAULTS, start=1):
            cp = _conv_param(where, f"conv_param_{k}", config.get(f"conv_param_{k}") or default)
            fs = cp["filter_size"]
            shapes[f"W{k}"] = (cp["filter_num"], size[0], fs, fs)
            shapes[f"b{k}"] = (cp["filter_num"],)
            size = _conv_out(where, size, cp)
            if k % 2 == 0:
                size = _pool_out(where, size)
        hidden, out = positive_ints(
            where, "sizes", [config.get("hidden_size", 50), config.get("output_size", 10)]
        )
        shapes["W7"], shapes["b7"] = (int(np.prod(size)), hidden), (hidden,)
        shapes["W8"], shapes["b8"] = (hidden, out), (out,)
        return shapes
