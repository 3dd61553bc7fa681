r"""Initial parameters, identical on every backend for the same seed.

The Array API standard has no random numbers, so weights are drawn on the
host with :func:`numpy.random.default_rng` in float64, scaled, cast to the
requested dtype and only then moved to the current backend with
:func:`xplayers.asarray`. The same seed therefore gives bit-identical starting
parameters on NumPy, CuPy, PyTorch, JAX, Dask and array-api-strict.

Weight scales follow the book (chapter 6, ``common/multi_layer_net.py``):

* a number: used as the standard deviation, :math:`W = s \cdot \mathcal{N}(0, 1)`;
* ``"relu"`` or ``"he"``: :math:`s = \sqrt{2 / n_{in}}` (He et al.);
* ``"sigmoid"`` or ``"xavier"``: :math:`s = \sqrt{1 / n_{in}}` (Glorot and Bengio,
  as simplified in the book),

where :math:`n_{in}` is the number of inputs of the layer. Biases start at zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from xplayers._validation import FLOAT_DTYPES, describe, fail, float_dtype, positive_ints
from xplayers.backend import asarray

__all__ = [
    "FLOAT_DTYPES",
    "WEIGHT_INIT_NAMES",
    "affine_shapes",
    "canonical_dtype",
    "init_params",
    "normal_weights",
    "weight_scale",
]

#: Named weight scales and the variance numerator each stands for.
WEIGHT_INIT_NAMES: dict[str, float] = {"relu": 2.0, "he": 2.0, "sigmoid": 1.0, "xavier": 1.0}

#: What ``weight_init_std`` may be: a positive number or a name of :data:`WEIGHT_INIT_NAMES`.
WeightInit: TypeAlias = "float | str"

#: What ``seed`` may be: None (fresh entropy), an int, or a NumPy Generator.
Seed: TypeAlias = "int | np.random.Generator | None"


def canonical_dtype(dtype: Any, where: str = "init_params") -> str:
    """Return ``"float32"`` or ``"float64"`` for a dtype given by name or NumPy dtype.

    Parameters
    ----------
    dtype : str or numpy dtype
        ``"float32"``, ``"float64"``, ``numpy.float32``, ``numpy.dtype("float64")``...
    where : str
        The caller, named in the error message.

    Returns
    -------
    str

    Raises
    ------
    LayerInputError
        Any other dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.init import canonical_dtype
    >>> canonical_dtype(np.float32)
    'float32'
    """
    return float_dtype(where, dtype)


def weight_scale(weight_init_std: WeightInit, fan_in: int, where: str = "weight_scale") -> float:
    r"""Return the standard deviation of a layer's initial weights.

    Parameters
    ----------
    weight_init_std : float or {"relu", "he", "sigmoid", "xavier"}
        A positive number is returned as it is; ``"relu"``/``"he"`` give
        :math:`\sqrt{2/n_{in}}` and ``"sigmoid"``/``"xavier"`` give
        :math:`\sqrt{1/n_{in}}` (case-insensitive, as in the book).
    fan_in : int
        The number of inputs of the layer, :math:`n_{in} \ge 1`.
    where : str
        The caller, named in the error message.

    Returns
    -------
    float

    Raises
    ------
    LayerInputError
        An unknown name, or a number that is not positive and finite.

    Examples
    --------
    >>> from xplayers.init import weight_scale
    >>> weight_scale("he", 8)
    0.5
    >>> weight_scale(0.01, 8)
    0.01
    """
    if isinstance(weight_init_std, str):
        key = weight_init_std.lower()
        if key not in WEIGHT_INIT_NAMES:
            fail(
                where,
                "weight_init_std",
                f"a positive number or one of {sorted(WEIGHT_INIT_NAMES)}",
                repr(weight_init_std),
            )
        return math.sqrt(WEIGHT_INIT_NAMES[key] / fan_in)
    if (
        isinstance(weight_init_std, bool)
        or not isinstance(weight_init_std, (int, float))
        or not math.isfinite(weight_init_std)
        or weight_init_std <= 0
    ):
        fail(
            where,
            "weight_init_std",
            f"a positive finite number or one of {sorted(WEIGHT_INIT_NAMES)}",
            describe(weight_init_std),
        )
    return float(weight_init_std)


def normal_weights(
    rng: np.random.Generator, shape: tuple[int, ...], std: float, dtype: str, where: str
) -> npt.NDArray[Any]:
    """Draw ``std * N(0, 1)`` weights of `shape` in float64 and cast them to `dtype`.

    Refuses a `std` whose weights would not be finite in `dtype` (``1e300``
    overflows float32): a network starting from infinite weights only
    produces NaN.

    Raises
    ------
    LayerInputError
        Some weight would overflow `dtype`.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.init import normal_weights
    >>> normal_weights(np.random.default_rng(0), (2, 3), 0.1, "float32", "example").dtype
    dtype('float32')
    """
    draws = rng.standard_normal(shape)
    peak = float(np.max(np.abs(draws))) if draws.size else 0.0
    largest = float(np.finfo(dtype).max)
    if std * peak > largest:  # Python floats: an overflow is inf, no warning
        fail(
            where,
            "weight_init_std",
            f"a scale whose initial weights are finite in {dtype} (below "
            f"{largest / peak:.3g} for these draws, up to {peak:.2f} standard deviations)",
            f"{std:g}",
        )
    return (std * draws).astype(dtype)


def affine_shapes(sizes: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """The shapes of the parameters :func:`init_params` creates for `sizes`, without creating them.

    Examples
    --------
    >>> from xplayers.init import affine_shapes
    >>> affine_shapes([4, 3, 2])
    {'W1': (4, 3), 'b1': (3,), 'W2': (3, 2), 'b2': (2,)}
    """
    sizes = positive_ints("affine_shapes", "sizes", sizes)
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(1, len(sizes)):
        shapes[f"W{k}"] = (sizes[k - 1], sizes[k])
        shapes[f"b{k}"] = (sizes[k],)
    return shapes


def init_params(
    sizes: Sequence[int],
    weight_init_std: WeightInit = 0.01,
    *,
    seed: Seed = None,
    dtype: Any = "float64",
) -> dict[str, Any]:
    """Create the parameters ``W1, b1, W2, b2, ...`` of a stack of Affine layers.

    Layer :math:`k` maps ``sizes[k-1]`` inputs to ``sizes[k]`` outputs:
    ``Wk`` has shape ``(sizes[k-1], sizes[k])`` and ``bk`` shape ``(sizes[k],)``.
    The weights are drawn in order ``W1, W2, ...`` from one
    ``numpy.random.default_rng(seed)`` in float64, multiplied by
    :func:`weight_scale`, cast to `dtype` and created on the current backend.

    Parameters
    ----------
    sizes : sequence of int
        ``[input_size, hidden_1, ..., output_size]``, at least two entries.
    weight_init_std : float or {"relu", "he", "sigmoid", "xavier"}, default 0.01
        See :func:`weight_scale`.
    seed : int, numpy.random.Generator or None
        None draws fresh entropy (different weights on every call).
    dtype : {"float32", "float64"}
        The dtype of every parameter.

    Returns
    -------
    dict of str to array
        ``{"W1": ..., "b1": ..., "W2": ..., ...}`` on the current backend.

    Examples
    --------
    >>> import xplayers as xpl
    >>> from xplayers.init import init_params
    >>> p = init_params([4, 3, 2], "he", seed=0, dtype="float32")
    >>> list(p), p["W1"].shape, p["b2"].shape, xpl.to_numpy(p["W2"]).dtype.name
    (['W1', 'b1', 'W2', 'b2'], (4, 3), (2,), 'float32')
    >>> with xpl.use_backend("array_api_strict"):
    ...     q = init_params([4, 3, 2], "he", seed=0, dtype="float32")
    >>> bool((xpl.to_numpy(q["W1"]) == p["W1"]).all())
    True
    """
    dtype = canonical_dtype(dtype, "init_params")
    sizes = positive_ints("init_params", "sizes", sizes)
    if len(sizes) < 2:
        fail("init_params", "sizes", "at least two sizes (inputs and outputs)", repr(sizes))
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {}
    for k in range(1, len(sizes)):
        n_in, n_out = sizes[k - 1], sizes[k]
        std = weight_scale(weight_init_std, n_in, "init_params")
        W = normal_weights(rng, (n_in, n_out), std, dtype, "init_params")
        params[f"W{k}"] = asarray(W, dtype)
        params[f"b{k}"] = asarray(np.zeros(n_out, dtype=dtype), dtype)
    return params
