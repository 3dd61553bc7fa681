"""JAX kernels of the functional core: JAX's own indexed updates.

Each function has the name and signature of a function of
:mod:`xplayers.functional` or :mod:`xplayers.sequence` marked ``@kernel``
and computes the same formula (the tests compare them):

* :func:`scatter_add`: ``zeros.at[indices].add(values)``, one XLA scatter
  that adds repeated indices up (and drops indices out of range, negative
  ones included, as the generic form skips them), traceable under ``jax.jit``.
* :func:`dropout_draw`: the same host draw as the generic form, through
  ``jax.pure_callback`` when the seed, count or shape are traced (inside
  ``jax.jit``), so a compiled step draws the masks the layers draw.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from xplayers._validation import traced
from xplayers.functional import host_dropout_mask


def scatter_add(values: Any, indices: Any, num_rows: int, /) -> Any:
    """``zeros((num_rows, D)).at[indices].add(values, mode="drop")``, negative indices dropped."""
    if values.ndim != 2 or indices.ndim != 1 or not jnp.issubdtype(indices.dtype, jnp.integer):
        return NotImplemented
    out = jnp.zeros((num_rows, values.shape[1]), dtype=values.dtype, device=values.device)
    rows = jnp.where(indices < 0, num_rows, indices)  # JAX would wrap a negative index around
    return out.at[rows].add(values, mode="drop")


def dropout_draw(like: Any, seed: Any, count: Any, ratio: float, /, skip: int = 0) -> Any:
    """The generic host draw; under ``jax.jit``, the same draw as a ``jax.pure_callback``."""
    if not (traced(like) or traced(seed) or traced(count)):
        return NotImplemented
    shape, dtype = tuple(like.shape), like.dtype
    draw = functools.partial(
        host_dropout_mask, shape=shape, skip=skip, ratio=ratio, dtype=jnp.dtype(dtype).name
    )
    out = jax.ShapeDtypeStruct(shape, dtype)  # type: ignore[no-untyped-call]
    return jax.pure_callback(draw, out, seed, count, vmap_method="broadcast_all")
