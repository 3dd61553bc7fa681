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

from xplayers import functional
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
from xplayers.errors import (
    BackendUnavailableError,
    LayerInputError,
    LayerStateError,
    XplayersError,
)
from xplayers.layers import Affine, Layer, Relu, Sigmoid, SoftmaxWithLoss

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "Affine",
    "Backend",
    "BackendUnavailableError",
    "Layer",
    "LayerInputError",
    "LayerStateError",
    "Relu",
    "Sigmoid",
    "SoftmaxWithLoss",
    "XplayersError",
    "__version__",
    "asarray",
    "backend_status",
    "functional",
    "get_backend",
    "namespace",
    "prefer_gpu",
    "require_gpu",
    "set_backend",
    "to_backend",
    "to_numpy",
    "use_backend",
]
