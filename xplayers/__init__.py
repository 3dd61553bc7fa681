"""xplayers: the layers of *Deep Learning from Scratch*, written once for every array backend.

The same code runs on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict.
Layers compute on whatever arrays they are given; the backend selector
(:func:`set_backend`, :func:`use_backend`, ``XPLAYERS_BACKEND``) decides
where new arrays are created.

Examples
--------
>>> import numpy as np
>>> import xplayers as xpl
>>> rng = np.random.default_rng(0)
>>> affine = xpl.Affine(xpl.asarray(rng.normal(size=(4, 3))), xpl.asarray(np.zeros(3)))
>>> loss = xpl.SoftmaxWithLoss()
>>> L = loss.forward(affine.forward(xpl.asarray(rng.normal(size=(2, 4)))), xpl.asarray([0, 2]))
>>> dx = affine.backward(loss.backward())
>>> dx.shape, affine.dW.shape
((2, 4), (4, 3))
"""

from xplayers import datasets, functional, gradcheck, init, io, network, optim, training
from xplayers._backend import (
    BACKENDS,
    Backend,
    asarray,
    backend_status,
    get_backend,
    namespace,
    prefer_gpu,
    require_gpu,
    set_backend,
    to_backend,
    to_numpy,
    use_backend,
)
from xplayers._version import __version__
from xplayers.errors import (
    BackendUnavailableError,
    LayerInputError,
    LayerStateError,
    XplayersError,
)
from xplayers.gradcheck import gradient_check, numerical_gradient
from xplayers.io import ModelFileError, load, save
from xplayers.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Layer,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)
from xplayers.network import (
    DeepConvNet,
    MultiLayerNet,
    MultiLayerNetExtend,
    Sequential,
    SimpleConvNet,
    TwoLayerNet,
    from_config,
)
from xplayers.optim import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, get_optimizer
from xplayers.training import History, MissingDependencyError, TrainingError, evaluate, train

__all__ = [
    "BACKENDS",
    "SGD",
    "AdaGrad",
    "Adam",
    "Affine",
    "Backend",
    "BackendUnavailableError",
    "BatchNormalization",
    "Convolution",
    "DeepConvNet",
    "Dropout",
    "History",
    "Layer",
    "LayerInputError",
    "LayerStateError",
    "MissingDependencyError",
    "ModelFileError",
    "Momentum",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "Nesterov",
    "Pooling",
    "RMSprop",
    "Relu",
    "Sequential",
    "Sigmoid",
    "SimpleConvNet",
    "SoftmaxWithLoss",
    "TrainingError",
    "TwoLayerNet",
    "XplayersError",
    "__version__",
    "asarray",
    "backend_status",
    "datasets",
    "evaluate",
    "from_config",
    "functional",
    "get_backend",
    "get_optimizer",
    "gradcheck",
    "gradient_check",
    "init",
    "io",
    "load",
    "namespace",
    "network",
    "numerical_gradient",
    "optim",
    "prefer_gpu",
    "require_gpu",
    "save",
    "set_backend",
    "to_backend",
    "to_numpy",
    "train",
    "training",
    "use_backend",
]
