"""xplayers: the layers of *Deep Learning from Scratch*, written once for every array backend.

The same code runs on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict.
Layers compute on whatever arrays they are given; the backend selector
(:func:`set_backend`, :func:`use_backend`, ``XPLAYERS_BACKEND``) decides
where new arrays are created.

The top level holds what a reader of the book reaches for: the layers, the
networks, the optimizers, the backend selector, ``train``/``evaluate``,
``save``/``load``, ``gradient_check`` and the errors. Everything else lives
in its submodule (``xplayers.io.METADATA_KEY``,
``xplayers.network.from_config``, ``xplayers.training.History``, ...), and the
submodules are attributes of the package (``xpl.functional.relu``).

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

from xplayers import (
    backend,
    datasets,
    errors,
    functional,
    gradcheck,
    init,
    io,
    layers,
    metrics,
    network,
    optim,
    trainer,
    training,
)
from xplayers._version import __version__
from xplayers.backend import (
    BACKENDS,
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
from xplayers.errors import (
    BackendUnavailableError,
    DatasetError,
    LayerInputError,
    LayerStateError,
    ModelFileError,
    TrainingError,
    XplayersError,
)
from xplayers.gradcheck import gradient_check
from xplayers.io import load, save
from xplayers.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
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
)
from xplayers.optim import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from xplayers.trainer import Trainer
from xplayers.training import evaluate, train

__all__ = [
    "BACKENDS",
    "SGD",
    "AdaGrad",
    "Adam",
    "Affine",
    "BackendUnavailableError",
    "BatchNormalization",
    "Convolution",
    "DatasetError",
    "DeepConvNet",
    "Dropout",
    "LayerInputError",
    "LayerStateError",
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
    "Trainer",
    "TrainingError",
    "TwoLayerNet",
    "XplayersError",
    "__version__",
    "asarray",
    "backend",
    "backend_status",
    "datasets",
    "errors",
    "evaluate",
    "functional",
    "get_backend",
    "gradcheck",
    "gradient_check",
    "init",
    "io",
    "layers",
    "load",
    "metrics",
    "namespace",
    "network",
    "optim",
    "prefer_gpu",
    "require_gpu",
    "save",
    "set_backend",
    "to_backend",
    "to_numpy",
    "train",
    "trainer",
    "training",
    "use_backend",
]
