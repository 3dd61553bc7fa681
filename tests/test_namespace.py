"""The top-level namespace: what a reader of the book reaches for, and nothing else."""

from __future__ import annotations

import importlib

import pytest

import xplayers as xpl

#: The top level by group.
PUBLIC: dict[str, tuple[str, ...]] = {
    "layers": (
        "Affine",
        "Relu",
        "Sigmoid",
        "SoftmaxWithLoss",
        "Dropout",
        "BatchNormalization",
        "Convolution",
        "Pooling",
    ),
    "networks": (
        "Sequential",
        "TwoLayerNet",
        "MultiLayerNet",
        "MultiLayerNetExtend",
        "SimpleConvNet",
        "DeepConvNet",
    ),
    "optimizers": ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"),
    "backends": (
        "BACKENDS",
        "set_backend",
        "use_backend",
        "get_backend",
        "prefer_gpu",
        "require_gpu",
        "backend_status",
        "asarray",
        "to_numpy",
        "to_backend",
        "namespace",
    ),
    "toolkit": ("train", "evaluate", "Trainer", "save", "load", "gradient_check"),
    "errors": (
        "XplayersError",
        "LayerInputError",
        "LayerStateError",
        "BackendUnavailableError",
        "ModelFileError",
        "DatasetError",
        "TrainingError",
    ),
    "modules": (
        "backend",
        "layers",
        "functional",
        "network",
        "optim",
        "init",
        "gradcheck",
        "training",
        "metrics",
        "trainer",
        "datasets",
        "io",
        "errors",
    ),
}


#: Names that left the top level, and where they live.
MOVED = {
    "Backend": "xplayers.backend",
    "History": "xplayers.training",
    "Layer": "xplayers.layers",
    "MissingDependencyError": "xplayers.errors",
    "from_config": "xplayers.network",
    "get_optimizer": "xplayers.optim",
    "numerical_gradient": "xplayers.gradcheck",
    "METADATA_KEY": "xplayers.io",
    "WEIGHT_INIT_NAMES": "xplayers.init",
}


def test_the_top_level_is_exactly_the_groups():
    names = [n for group in PUBLIC.values() for n in group]
    assert len(names) == len(set(names))
    assert sorted(xpl.__all__) == sorted([*names, "__version__"])


@pytest.mark.parametrize("name", sorted(xpl.__all__))
def test_every_top_level_name_exists(name):
    assert getattr(xpl, name) is not None


@pytest.mark.parametrize(("name", "module"), sorted(MOVED.items()))
def test_the_rest_is_in_its_submodule(name, module):
    assert name not in xpl.__all__
    assert hasattr(importlib.import_module(module), name)
