"""The catalogue of backend records: every record by name, in the order shown to users.

It imports only the standard library and the record modules (which import
only the standard library), so every other module of this package can look a
record up without importing the selector.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from xplayers.backend import array_api_strict as _array_api_strict
from xplayers.backend import cupy as _cupy
from xplayers.backend import dask as _dask
from xplayers.backend import jax as _jax
from xplayers.backend import numpy as _numpy
from xplayers.backend import torch as _torch
from xplayers.backend._record import Record
from xplayers.errors import BackendSelectionError

__all__ = ["BACKENDS", "RECORDS", "check_name", "record"]

#: Every backend record, by name, in the order they are listed to users.
RECORDS: Mapping[str, Record] = MappingProxyType(
    {
        r.name: r
        for r in (
            _numpy.RECORD,
            _cupy.RECORD,
            _torch.RECORD,
            _jax.RECORD,
            _dask.RECORD,
            _array_api_strict.RECORD,
        )
    }
)

#: Every backend name xplayers knows, in the order they are listed to users.
BACKENDS: tuple[str, ...] = tuple(RECORDS)


def record(name: str) -> Record:
    """The record of backend `name`.

    Raises
    ------
    BackendSelectionError
        `name` is not one of :data:`BACKENDS` (a :class:`ValueError`).

    Examples
    --------
    >>> from xplayers.backend import record
    >>> record("dask").lazy
    True
    """
    return RECORDS[check_name(name)]


def check_name(name: object, source: str = "name") -> str:
    if not isinstance(name, str) or name not in RECORDS:
        raise BackendSelectionError(
            f"unknown backend {name!r} (from {source}); valid names: {', '.join(BACKENDS)}"
        )
    return name
