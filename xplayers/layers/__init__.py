"""The book's layers, each with ``forward`` and ``backward``, for every array backend."""

from xplayers.layers._base import Layer
from xplayers.layers.affine import Affine
from xplayers.layers.batch_norm import BatchNormalization
from xplayers.layers.convolution import Convolution
from xplayers.layers.dropout import Dropout
from xplayers.layers.pooling import Pooling
from xplayers.layers.relu import Relu
from xplayers.layers.sigmoid import Sigmoid
from xplayers.layers.softmax_with_loss import SoftmaxWithLoss

#: The activation layers by the book's names (``MultiLayerNet(activation="relu")``).
ACTIVATIONS: dict[str, type[Layer]] = {"relu": Relu, "sigmoid": Sigmoid}

__all__ = [
    "ACTIVATIONS",
    "Affine",
    "BatchNormalization",
    "Convolution",
    "Dropout",
    "Layer",
    "Pooling",
    "Relu",
    "Sigmoid",
    "SoftmaxWithLoss",
]
