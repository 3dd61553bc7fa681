"""Networks: ordered layers plus a loss layer, with the book's names and methods.

One module per job:

- :mod:`~xplayers.network.parameters`: the live :class:`Parameters` mapping;
- :mod:`~xplayers.network.sequential`: :class:`Sequential`, the book's pattern
  (``self.layers = OrderedDict()``, ``self.last_layer = SoftmaxWithLoss()``);
- :mod:`~xplayers.network.book`: :class:`TwoLayerNet` (chapter 5) and
  :class:`MultiLayerNet` (chapter 6), built on the current backend from a
  seed, so the same seed gives the same network everywhere;
- :mod:`~xplayers.network.convnet`: :class:`MultiLayerNetExtend` (chapter 6),
  :class:`SimpleConvNet` (chapter 7) and :class:`DeepConvNet` (chapter 8);
- :mod:`~xplayers.network.summary`: what :meth:`Sequential.summary` returns,
  a :class:`Summary`;
- :mod:`~xplayers.network.config`: :func:`from_config` and
  :func:`param_shapes` (and :func:`buffer_shapes`), driven by one table of constructors,
  :data:`NETWORKS`.

Two departures from the book, both invisible to code written for it:

* the first ``Affine`` layer is built with ``input_grad=False``: the gradient
  with respect to the network's input is never used in training, and it is a
  third of that layer's backward matrix work;
* :attr:`Sequential.params` reads and writes the layers' own attributes, so
  the book's ``params[key] -= lr * grads[key]`` updates the layers in place,
  and ``params[key] = new_array`` (the only way on libraries without in-place
  writes, such as JAX) rebinds them.
"""

from xplayers.network.book import BookNetwork, MultiLayerNet, TwoLayerNet
from xplayers.network.config import (
    NETWORKS,
    Constructor,
    buffer_shapes,
    from_config,
    param_shapes,
)
from xplayers.network.convnet import BookFiles, DeepConvNet, MultiLayerNetExtend, SimpleConvNet
from xplayers.network.parameters import Parameters
from xplayers.network.sequential import Sequential
from xplayers.network.summary import Summary

__all__ = [
    "NETWORKS",
    "BookFiles",
    "BookNetwork",
    "Constructor",
    "DeepConvNet",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "Parameters",
    "Sequential",
    "SimpleConvNet",
    "Summary",
    "TwoLayerNet",
    "buffer_shapes",
    "from_config",
    "param_shapes",
]
