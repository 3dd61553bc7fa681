"""Exceptions raised by xplayers.

Every error the library raises on purpose is an :class:`XplayersError`, so
``except xplayers.XplayersError`` catches all of them, and each one is also a
subclass of the built-in exception a Python user would expect
(``ValueError`` for bad input, ``RuntimeError`` for an unusable backend or a
call made in the wrong order).

The modules that raise them re-export them under their old paths
(``xplayers.io.ModelFileError``, ``xplayers.training.TrainingError``,
``xplayers.training.MissingDependencyError``,
``xplayers.datasets.DatasetError``).
"""

from __future__ import annotations

__all__ = [
    "BackendContextError",
    "BackendSelectionError",
    "BackendUnavailableError",
    "ClusterError",
    "DatasetError",
    "LayerInputError",
    "LayerStateError",
    "MissingDependencyError",
    "ModelFileError",
    "ModelFileWarning",
    "TrainingError",
    "XplayersError",
]


class XplayersError(Exception):
    """Base class of every exception raised by xplayers."""


class BackendUnavailableError(XplayersError, RuntimeError):
    """A known backend cannot be used here.

    Raised when the library is not installed, when a GPU backend has no
    usable device, or when a device index does not exist. The message says
    why and which ``pip install`` fixes it.
    """


class BackendSelectionError(XplayersError, ValueError):
    """A backend was named that xplayers does not know, or a device of the wrong kind.

    Raised by :func:`~xplayers.set_backend`, :func:`~xplayers.use_backend`
    and, for a bad ``XPLAYERS_BACKEND``, by :func:`~xplayers.get_backend`;
    the message lists the valid names or device forms.
    """


class BackendContextError(XplayersError, RuntimeError):
    """A :func:`~xplayers.use_backend` block was exited in another context than its own.

    For example in an async generator resumed by another asyncio task.
    """


class LayerInputError(XplayersError, ValueError):
    """A layer or function was given an argument it cannot use.

    The message names the layer and method, the argument, what was expected
    and what came.
    """


class LayerStateError(XplayersError, RuntimeError):
    """A layer method was called in the wrong order (``backward`` before ``forward``)."""


class ClusterError(XplayersError, RuntimeError):
    """A computation on a Dask cluster failed (workers lost, data lost) and was not applied.

    The message names the step and the cluster's own error; nothing the
    step would have changed (parameters, optimizer state) was changed.
    """


class ModelFileError(XplayersError, ValueError):
    """A model file is missing, damaged, or not one :func:`~xplayers.io.load` can trust.

    The message names the file and the problem. It is a :class:`ValueError`
    too, so ``except ValueError`` also catches it.

    Examples
    --------
    >>> from xplayers.errors import ModelFileError
    >>> issubclass(ModelFileError, ValueError)
    True
    """


class DatasetError(XplayersError, ValueError):
    """A dataset file is missing, damaged or not in the expected format.

    It is a :class:`ValueError` too, so ``except ValueError`` also catches it.
    """


class TrainingError(XplayersError, RuntimeError):
    """Training cannot go on: the loss became NaN, infinite, or diverged.

    The message names the epoch and iteration of the first bad step.
    """


class MissingDependencyError(XplayersError, ImportError):
    """An optional dependency is needed for what was asked; the message says how to install it."""


class ModelFileWarning(UserWarning):
    """A model file or checkpoint was read, but it lacks something its network has.

    Issued for files written by an older xplayers, which did not store every
    array the network uses at test time (``BatchNormalization``'s running
    averages) or everything a resumed run compares. The message names the
    file and what it lacks.
    """
