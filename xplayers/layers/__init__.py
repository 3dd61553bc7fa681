"""The book's layers, each with ``forward`` and ``backward``, for every array backend.

Each layer's math is a pure pair (``AffineFn``, ``DropoutFn``, ...; see
:class:`LayerFn`), and the book's class is a thin driver over it.
"""

from xplayers.layers._base import Layer, LayerFn, LossFn
from xplayers.layers.affine import Affine, AffineFn
from xplayers.layers.batch_norm import BatchNormalization, BatchNormFn
from xplayers.layers.convolution import Convolution, ConvolutionFn
from xplayers.layers.dropout import Dropout, DropoutFn
from xplayers.layers.pooling import Pooling, PoolingFn
from xplayers.layers.relu import Relu, ReluFn
from xplayers.layers.sigmoid import Sigmoid, SigmoidFn
from xplayers.layers.softmax_with_loss import SoftmaxWithLoss, SoftmaxWithLossFn

#: The activation layers by the book's names (``MultiLayerNet(activation="relu")``).
ACTIVATIONS: dict[str, type[Layer]] = {"relu": Relu, "sigmoid": Sigmoid}

__all__ = [
    "ACTIVATIONS",
    "Affine",
    "AffineFn",
    "BatchNormFn",
    "BatchNormalization",
    "Convolution",
    "ConvolutionFn",
    "Dropout",
    "DropoutFn",
    "Layer",
    "LayerFn",
    "LossFn",
    "Pooling",
    "PoolingFn",
    "Relu",
    "ReluFn",
    "Sigmoid",
    "SigmoidFn",
    "SoftmaxWithLoss",
    "SoftmaxWithLossFn",
]
