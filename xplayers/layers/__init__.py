"""The book's layers, each with ``forward`` and ``backward``, for every array backend."""

from xplayers.layers._base import Layer
from xplayers.layers.affine import Affine
from xplayers.layers.relu import Relu
from xplayers.layers.sigmoid import Sigmoid
from xplayers.layers.softmax_with_loss import SoftmaxWithLoss

__all__ = ["Affine", "Layer", "Relu", "Sigmoid", "SoftmaxWithLoss"]
