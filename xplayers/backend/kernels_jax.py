"""JAX kernels of the functional core: JAX's own indexed updates.

Each function has the name and signature of a function of
:mod:`xplayers.functional` or :mod:`xplayers.sequence` marked ``@kernel``
and computes the same formula (the tests compare them):

* :func:`scatter_add`: ``zeros.at[indices].add(values)``, one XLA scatter
  that adds repeated indices up (and drops indices out of range, negative
  ones included, as the generic form skips them), traceable under ``jax.jit``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp


def scatter_add(values: Any, indices: Any, num_rows: int, /) -> Any:
    """``zeros((num_rows, D)).at[indices].add(values, mode="drop")``, negative indices dropped."""
    if values.ndim != 2 or indices.ndim != 1 or not jnp.issubdtype(indices.dtype, jnp.integer):
        return NotImplemented
    out = jnp.zeros((num_rows, values.shape[1]), dtype=values.dtype, device=values.device)
    rows = jnp.where(indices < 0, num_rows, indices)  # JAX would wrap a negative index around
    return out.at[rows].add(values, mode="drop")
