"""The BatchNormalization layer (the book's chapter 6)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from array_api_compat import device

from xplayers._validation import describe, dtype_name, fail, float_array, same_backend, traced
from xplayers.backend import namespace, to_numpy
from xplayers.functional import (
    batch_norm,
    batch_norm_backward,
    batch_norm_eval,
    batch_norm_eval_backward,
    running_average,
)
from xplayers.layers._base import Layer, LayerFn
from xplayers.layers._window import check_dout, unit_interval

__all__ = ["BatchNormFn", "BatchNormalization"]


@dataclass(frozen=True)
class BatchNormFn(LayerFn):
    """The pure pair of :class:`BatchNormalization`; the running averages are its state.

    The forward flattens `x` to ``(N, D)`` and casts it to `gamma`'s dtype;
    training returns the running averages moved towards the batch's
    (``momentum * running + (1 - momentum) * batch``), test time returns
    them as they were. ``saved`` holds ``train``, ``xn``, ``std``, ``xc``
    (training), the input's ``shape`` and ``dtype``.
    """

    momentum: float = 0.9

    param_names: ClassVar[tuple[str, ...]] = ("gamma", "beta")
    state_names: ClassVar[tuple[str, ...]] = ("running_mean", "running_var")

    def forward(
        self, params: Mapping[str, Any], x: Any, state: Mapping[str, Any], *, train: bool = True
    ) -> tuple[Any, dict[str, Any], Mapping[str, Any]]:
        """``(y, saved, {"running_mean", "running_var"})`` of `x` ``(N, D)`` or ``(N, ...)``."""
        gamma, beta = params["gamma"], params["beta"]
        shape, dtype = tuple(x.shape), x.dtype
        xp = namespace(x)
        if x.ndim != 2:
            x = xp.reshape(x, (shape[0], gamma.shape[0]))
        if x.dtype != gamma.dtype:
            x = xp.astype(x, gamma.dtype)
        mean, var = state["running_mean"], state["running_var"]
        saved: dict[str, Any] = {"train": bool(train), "shape": shape, "dtype": dtype}
        if train:
            r = batch_norm(x, gamma, beta)
            saved.update(xc=r["xc"], xn=r["xn"], std=r["std"])
            m = self.momentum
            state = {
                "running_mean": running_average(mean, r["mu"], m),
                "running_var": running_average(var, r["var"], m),
            }
            out = r["out"]
        else:
            out, saved["xn"], saved["std"] = batch_norm_eval(x, gamma, beta, mean, var)
            saved["xc"] = None
        return (out if len(shape) == 2 else xp.reshape(out, shape)), saved, state

    def backward(
        self,
        params: Mapping[str, Any],
        saved: Mapping[str, Any],
        dy: Any,
        *,
        input_grad: bool = True,
    ) -> tuple[Any, dict[str, Any]]:
        """``(dx, {"gamma", "beta"})``, through the training graph or the test-time formula."""
        gamma, shape = params["gamma"], saved["shape"]
        xp = namespace(dy)
        if dy.ndim != 2:
            dy = xp.reshape(dy, (shape[0], gamma.shape[0]))
        if saved["train"]:
            dx, dgamma, dbeta = batch_norm_backward(
                dy, gamma, saved["xc"], saved["xn"], saved["std"]
            )
        else:
            dx, dgamma, dbeta = batch_norm_eval_backward(dy, gamma, saved["xn"], saved["std"])
        if dx.dtype != saved["dtype"]:
            dx = xp.astype(dx, saved["dtype"])
        return (dx if len(shape) == 2 else xp.reshape(dx, shape)), {"gamma": dgamma, "beta": dbeta}


class BatchNormalization(Layer):
    r"""Batch normalisation with the book's formulas.

    Training (``train_flg=True``), over the batch axis of `x` flattened to
    ``(N, D)`` (a 4-D input ``(N, C, H, W)`` is flattened to
    ``(N, C*H*W)``, as the book does, so every pixel of every channel is a
    feature):

    .. math::
        \mu = \overline{x}, \quad \sigma^2 = \overline{(x-\mu)^2}, \quad
        y = \gamma \frac{x - \mu}{\sqrt{\sigma^2 + 10^{-6}}} + \beta

    and the running averages become
    ``momentum * running + (1 - momentum) * batch`` (new arrays: nothing is
    written in place). Test time (``train_flg=False``) uses them instead:
    :math:`y = \gamma (x - \mu_{run}) / \sqrt{\sigma^2_{run} + 10^{-6}} + \beta`.
    Without `running_mean` and `running_var` they start as zeros of shape
    ``(D,)``, as in the book (which creates them at the first forward; here
    they exist from the start, so that a network saved before training
    holds them like one saved after). They are the layer's :attr:`state`:
    a network's ``buffers``, stored in model files and checkpoints beside
    the parameters. A training forward on traced arrays (inside the user's
    ``jax.jit``, ``jax.grad`` or ``jax.vmap``) leaves them as they are: a
    compiled function cannot change the layer's state, and a traced average
    kept in the layer would break every later call.

    ``backward`` follows the training graph (see
    :func:`~xplayers.functional.batch_norm_backward`); after a test-time
    forward it is the gradient of the test-time formula (the book would
    reuse the last training batch).

    Dtypes as :class:`~xplayers.Affine`: computed in `gamma`'s dtype,
    ``dx`` returned in the input's.

    Parameters
    ----------
    gamma, beta : array, shape (D,), one real floating dtype
    momentum : float in [0, 1], default 0.9
    running_mean, running_var : array of shape (D,) or None
        Both given, or both None (zeros). `running_var` must not be negative.

    Attributes
    ----------
    gamma, beta, running_mean, running_var : array
    dgamma, dbeta : array or None
        Gradients from the last ``backward``.
    input_shape : tuple or None
    batch_size, xc, xn, std : kept by a training forward for ``backward``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> from xplayers import BatchNormalization
    >>> bn = BatchNormalization(xp.ones(1), xp.zeros(1))
    >>> bn.forward(xp.asarray([[1.0], [3.0]]))
    Array([[-0.9999995],
           [ 0.9999995]], dtype=array_api_strict.float64)
    >>> bn.running_mean, bn.running_var
    (Array([0.2], dtype=array_api_strict.float64), Array([0.1], dtype=array_api_strict.float64))
    """

    #: ``forward`` takes ``train_flg`` (networks pass theirs on).
    takes_train_flg: ClassVar[bool] = True
    #: Arrays kept across calls that are not parameters (copied by gradient checks).
    state: ClassVar[tuple[str, ...]] = ("running_mean", "running_var")

    def __init__(
        self,
        gamma: Any,
        beta: Any,
        momentum: float = 0.9,
        running_mean: Any = None,
        running_var: Any = None,
    ) -> None:
        where = "BatchNormalization"
        float_array(where, "gamma", gamma)
        if gamma.ndim != 1:
            fail(where, "gamma", "a 1-D array of shape (D,)", describe(gamma))
        for arg, value in (
            ("beta", beta),
            ("running_mean", running_mean),
            ("running_var", running_var),
        ):
            if value is None and arg != "beta":
                continue
            float_array(where, arg, value)
            same_backend(where, arg, value, "gamma", gamma)
            if tuple(value.shape) != tuple(gamma.shape) or value.dtype != gamma.dtype:
                fail(
                    where,
                    arg,
                    f"shape {tuple(gamma.shape)} and dtype {gamma.dtype} like gamma",
                    describe(value),
                )
        if (running_mean is None) != (running_var is None):
            fail(
                where,
                "running_var",
                "running_mean and running_var both given or both None",
                describe(running_var),
            )
        if running_var is not None:
            self.check_state({"running_var": to_numpy(running_var)}, where)
        self.gamma = gamma
        self.beta = beta
        self.momentum = unit_interval(where, "momentum", momentum)
        if running_mean is None:
            xp = namespace(gamma)
            d = gamma.shape[0]
            running_mean = xp.zeros(d, dtype=gamma.dtype, device=device(gamma))
            running_var = xp.zeros(d, dtype=gamma.dtype, device=device(gamma))
        self.running_mean = running_mean
        self.running_var = running_var
        self.input_shape: tuple[int, ...] | None = None
        self.batch_size: int | None = None
        self.xc: Any = None
        self.xn: Any = None
        self.std: Any = None
        self.dgamma: Any = None
        self.dbeta: Any = None
        self._saved: dict[str, Any] | None = None

    @staticmethod
    def check_state(values: Mapping[str, Any], where: str) -> None:
        """Refuse state values this layer cannot use: a negative running variance.

        Parameters
        ----------
        values : mapping of str to numpy.ndarray
            Host values of some of the :attr:`state` arrays, by attribute name.
        where : str
            The function named in the error.

        Raises
        ------
        LayerInputError
            ``running_var`` holds a negative value (its square root, taken
            at test time, would be NaN).
        """
        var = values.get("running_var")
        if var is not None and var.size and float(np.min(var)) < 0:
            fail(
                where,
                "running_var",
                "running variances >= 0",
                f"{int(np.count_nonzero(var < 0))} negative value(s), the lowest {np.min(var)!r}",
            )

    @property
    def params(self) -> dict[str, Any]:
        """``{"gamma": gamma, "beta": beta}``."""
        return {"gamma": self.gamma, "beta": self.beta}

    @property
    def grads(self) -> dict[str, Any]:
        """``{"gamma": dgamma, "beta": dbeta}``."""
        return {"gamma": self.dgamma, "beta": self.dbeta}

    def fn_state(self) -> dict[str, Any]:
        """``{"running_mean": ..., "running_var": ...}``."""
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    @property
    def fn(self) -> BatchNormFn:
        """The layer's pure pair, of its current hyper-parameters."""
        return BatchNormFn(self.momentum)

    def take(
        self,
        saved: Mapping[str, Any] | None = None,
        grads: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Keep a forward's ``xc``, ``xn``, ``std``, gradients, new running averages.

        Running averages that are traced (inside the user's ``jax.jit``) are
        not kept: they would outlive the transformation.
        """
        if saved is not None:
            self._saved = dict(saved)
            self.input_shape = saved["shape"]
            self.xn, self.std = saved["xn"], saved["std"]
            if saved["train"]:
                self.batch_size, self.xc = saved["shape"][0], saved["xc"]
        if grads is not None:
            self.dgamma, self.dbeta = grads["gamma"], grads["beta"]
        if state is not None and not traced(state["running_mean"]):
            self.running_mean, self.running_var = state["running_mean"], state["running_var"]

    def forward(self, x: Any, train_flg: bool = True) -> Any:
        """Return the normalised, scaled, shifted `x` ``(N, D)`` or ``(N, ...)``, same shape."""
        where = "BatchNormalization.forward"
        float_array(where, "x", x, ndim_min=2)
        gamma = self.gamma
        same_backend(where, "x", x, "the layer's parameters gamma, beta", gamma)
        n, d = int(x.shape[0]), math.prod(x.shape[1:])
        if d != gamma.shape[0]:
            fail(where, "x", f"{gamma.shape[0]} values per sample to match gamma", describe(x))
        if train_flg and n == 0:
            fail(where, "x", "a non-empty batch in training mode", describe(x))
        y, saved, state = self.fn.forward(self.params, x, self.fn_state(), train=bool(train_flg))
        self.take(saved, state=state)
        return y

    def backward(self, dout: Any) -> Any:
        """Set ``dgamma``, ``dbeta``; return ``dx`` in the input's shape and dtype."""
        saved = self._forward_state(self._saved)
        gamma = self.gamma
        dout = check_dout("BatchNormalization.backward", dout, saved["shape"], gamma, gamma.dtype)
        dx, grads = self.fn.backward(self.params, saved, dout)
        self.take(grads=grads)
        return dx

    def __repr__(self) -> str:
        d, dtype = self.gamma.shape[0], dtype_name(self.gamma.dtype)
        return f"BatchNormalization({d}, momentum={self.momentum}, dtype={dtype})"
