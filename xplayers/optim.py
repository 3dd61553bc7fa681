r"""The book's optimizers (``common/optimizer.py``), for parameters of any backend.

Every optimizer has ``update(params, grads)``: `params` is a mutable mapping
of arrays (a network's live :attr:`~xplayers.network.Sequential.params`, or
the book's plain dict whose arrays the layers share) and `grads` holds the
gradients under the same keys. Each parameter is updated

* **in place** where the library allows it (NumPy arrays that are not
  read-only, CuPy, PyTorch, array-api-strict), so arrays shared with layers
  see the new values, as in the book;
* else **by rebinding** ``params[key] = new`` (JAX, read-only NumPy, Dask).

Parameters keep their dtype and device: the hyper-parameters are Python
floats (a 0-d float64 array would promote float32 parameters) and the state
arrays (velocities, squared-gradient sums, moments) are created with
``zeros_like`` of the parameter. The formulas and defaults are the book's,
with its :math:`\epsilon = 10^{-7}`, and follow its ``common/optimizer.py`` as of
commit 07b1161 of oreilly-japan/deep-learning-from-scratch (checked for every
optimizer below):

=========  =================================================================
SGD        :math:`W \leftarrow W - \eta g`
Momentum   :math:`v \leftarrow \alpha v - \eta g,\; W \leftarrow W + v`
Nesterov   :math:`W \leftarrow W + \alpha^2 v - (1 + \alpha)\eta g,\;
           v \leftarrow \alpha v - \eta g` (the old :math:`v` moves :math:`W`)
AdaGrad    :math:`h \leftarrow h + g^2,\; W \leftarrow W - \eta g / (\sqrt{h} + \epsilon)`
RMSprop    :math:`h \leftarrow \rho h + (1 - \rho) g^2,\;
           W \leftarrow W - \eta g / (\sqrt{h} + \epsilon)`
Adam       :math:`m \leftarrow m + (1 - \beta_1)(g - m),\;
           v \leftarrow v + (1 - \beta_2)(g^2 - v),\;
           W \leftarrow W - \eta_t m / (\sqrt{v} + \epsilon)`,
           :math:`\eta_t = \eta \sqrt{1 - \beta_2^t} / (1 - \beta_1^t)`
=========  =================================================================
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, ClassVar

import numpy as np
from array_api_compat import is_array_api_obj, is_writeable_array

from xplayers._validation import (
    choice,
    describe,
    dtype_name,
    fail,
    float_array,
    like,
    number_in,
    same_backend,
)
from xplayers.backend import asarray, is_lazy, materialize_all, namespace, to_numpy
from xplayers.errors import LayerStateError
from xplayers.functional import subtract_scaled_

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "ClipGradNorm",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSprop",
    "StepFn",
    "adagrad_step",
    "adam_step",
    "apply_step",
    "clip_grad_norm",
    "get_optimizer",
    "momentum_step",
    "nesterov_step",
    "rmsprop_step",
    "sgd_step",
]

#: The book's :math:`\epsilon`, added to the root of the squared-gradient sums.
EPS = 1e-7

#: An optimizer's rule for one parameter: ``step(g, state, **hyper) -> (amount, new_state)``.
StepFn = Callable[..., tuple[Any, dict[str, Any]]]


def sgd_step(g: Any, state: Mapping[str, Any], *, lr: float) -> tuple[Any, dict[str, Any]]:
    r"""SGD's amount to subtract, :math:`\eta g`; no state."""
    return lr * g, {}


def momentum_step(
    g: Any, state: Mapping[str, Any], *, lr: float, momentum: float
) -> tuple[Any, dict[str, Any]]:
    r"""Momentum: :math:`v' = \alpha v - \eta g`; the amount is :math:`-v'`."""
    v = momentum * state["v"] - lr * g
    return -v, {"v": v}


def nesterov_step(
    g: Any, state: Mapping[str, Any], *, lr: float, momentum: float
) -> tuple[Any, dict[str, Any]]:
    r"""Nesterov (the book's form): amount :math:`(1+\alpha)\eta g - \alpha^2 v`, then :math:`v`."""
    v = state["v"]
    amount = (1.0 + momentum) * lr * g - (momentum * momentum) * v
    return amount, {"v": momentum * v - lr * g}


def adagrad_step(g: Any, state: Mapping[str, Any], *, lr: float) -> tuple[Any, dict[str, Any]]:
    r"""AdaGrad: :math:`h' = h + g^2`; the amount is :math:`\eta g / (\sqrt{h'} + \epsilon)`."""
    h = state["h"] + g * g
    return lr * g / (namespace(h).sqrt(h) + EPS), {"h": h}


def rmsprop_step(
    g: Any, state: Mapping[str, Any], *, lr: float, decay_rate: float
) -> tuple[Any, dict[str, Any]]:
    r"""RMSprop: :math:`h' = \rho h + (1-\rho) g^2`; amount :math:`\eta g/(\sqrt{h'}+\epsilon)`."""
    h = decay_rate * state["h"] + (1.0 - decay_rate) * (g * g)
    return lr * g / (namespace(h).sqrt(h) + EPS), {"h": h}


def adam_step(
    g: Any, state: Mapping[str, Any], *, lr_t: float, beta1: float, beta2: float
) -> tuple[Any, dict[str, Any]]:
    r"""Adam: new moments :math:`m, v`; the amount is :math:`\eta_t m / (\sqrt{v} + \epsilon)`.

    `lr_t` is the rate of this step with the bias correction folded in
    (:meth:`Adam.begin_step` computes it from the step count).
    """
    m, v = state["m"], state["v"]
    m = m + (1.0 - beta1) * (g - m)
    v = v + (1.0 - beta2) * (g * g - v)
    return lr_t * m / (namespace(v).sqrt(v) + EPS), {"m": m, "v": v}


def apply_step(
    step: StepFn,
    params: Mapping[str, Any],
    grads: Mapping[str, Any],
    state: Mapping[str, Mapping[str, Any]],
    hyper: Mapping[str, float],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One update of every parameter by `step`, as a pure function: new arrays, nothing written.

    Parameters
    ----------
    step : callable
        An optimizer's :attr:`Optimizer.step` (:func:`sgd_step`, :func:`adam_step`, ...).
    params, grads : mapping of str to array
        The parameters and their gradients, by the same keys.
    state : mapping of str to mapping of str to array
        The optimizer's state by store and parameter (``{"v": {"W1": ...}}``),
        one array for every parameter in each of the step's stores.
    hyper : mapping of str to float
        The step's keyword arguments (:meth:`Optimizer.begin_step`).

    Returns
    -------
    new_params, new_state : dict
        Like `params` and `state`.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.optim import apply_step, momentum_step
    >>> new, state = apply_step(momentum_step, {"w": np.ones(1)}, {"w": np.ones(1)},
    ...                         {"v": {"w": np.zeros(1)}}, {"lr": 0.1, "momentum": 0.9})
    >>> new["w"], state["v"]["w"]
    (array([0.9]), array([-0.1]))
    """
    new: dict[str, Any] = {}
    new_state: dict[str, dict[str, Any]] = {name: {} for name in state}
    for key, p in params.items():
        amount, after = step(
            grads[key], {name: store[key] for name, store in state.items()}, **hyper
        )
        new[key] = p - amount
        for name, value in after.items():
            new_state[name][key] = value
    return new, new_state


class Optimizer:
    """Base class: checks the arguments of ``update`` and applies each step.

    Each subclass names its rule for one parameter, :attr:`step`, a pure
    function ``step(g, state, **hyper) -> (amount, new_state)`` returning
    the amount to subtract; its state lives in dictionaries keyed like the
    parameters, one per name in :attr:`stores`; :meth:`begin_step` counts
    an update and gives the rule's keyword arguments. :meth:`update` applies
    the rule to each parameter (in place where the array allows it); a
    compiled training step applies the same rule through :func:`apply_step`.
    """

    #: The rule for one parameter (a pure function, see :func:`apply_step`).
    step: ClassVar[StepFn]
    #: The attributes holding the rule's state, by parameter key.
    stores: ClassVar[tuple[str, ...]] = ()

    #: Hyper-parameter names, in the order of the constructor (for ``repr``).
    _hyper: ClassVar[tuple[str, ...]] = ("lr",)
    #: Integer counters that belong to the state (Adam's step count).
    _counters: ClassVar[tuple[str, ...]] = ()
    #: State stores whose values are never negative (sums and means of squares).
    _nonnegative: ClassVar[tuple[str, ...]] = ()

    lr: float

    def update(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        """Update every parameter in `params` with its gradient in `grads`.

        Parameters
        ----------
        params : mutable mapping of str to array
            Updated in place where the arrays are writable, else rebound.
        grads : mapping of str to array
            A gradient for every key of `params`, with the same shape.

        Raises
        ------
        LayerInputError
            A gradient is missing, not an array, of another shape, backend or
            device, or the optimizer's state for a key no longer fits its
            parameter (use one optimizer per network).
        LayerStateError
            A gradient is ``None`` (no backward pass has set it yet).
        """
        where = f"{type(self).__name__}.update"
        work = []
        for key in params:  # check everything first: a failed update changes nothing
            p = params[key]
            g = grads.get(key)
            if g is None:
                if key not in grads:
                    fail(where, "grads", f"a gradient for {key!r}", f"keys {list(grads)}")
                raise LayerStateError(
                    f"{where}: the gradient of {key!r} is None; run the backward pass "
                    "(network.gradient(x, t)) before updating"
                )
            float_array(where, f"grads[{key!r}]", g)
            if not (like(g, p) and g.shape == p.shape):  # else the backend, shape and dtype
                same_backend(where, f"grads[{key!r}]", g, f"params[{key!r}]", p)
                if tuple(g.shape) != tuple(p.shape):
                    fail(
                        where, f"grads[{key!r}]", f"shape {tuple(p.shape)} like params", describe(g)
                    )
                if g.dtype != p.dtype:
                    g = namespace(p).astype(g, p.dtype)
            work.append((key, p, g))
        hyper = self.begin_step()
        step = type(self).step
        fused = step is sgd_step  # p -= lr * g, fused where the backend can
        stores = [(name, getattr(self, name)) for name in self.stores]
        lazy = bool(work) and is_lazy(work[0][1])
        staged: dict[str, Any] = {}  # lazy: the new values, persisted together below
        for key, p, g in work:
            if fused and subtract_scaled_(p, g, hyper["lr"]):
                continue
            state = {name: self._state(store, key, p) for name, store in stores}
            amount, after = step(g, state, **hyper)
            for name, store in stores:
                store[key] = after[name]
            _subtract(staged if lazy else params, key, p, amount)
        if lazy:
            self._materialize(params, staged)

    def step_state(self, params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The state :attr:`step` takes for `params`: ``{store: {key: array}}``.

        Zeros like each parameter are created the first time, as
        :meth:`update` creates them.
        """
        return {
            name: {key: self._state(getattr(self, name), key, p) for key, p in params.items()}
            for name in self.stores
        }

    def take_step_state(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Keep the new state that :func:`apply_step` returned (``{store: {key: array}}``)."""
        for name in self.stores:
            getattr(self, name).update(state[name])

    def begin_step(self) -> dict[str, float]:
        """Count one update (Adam's step) and return :attr:`step`'s keyword arguments.

        Python floats, so that a compiled step traces them as values.
        """
        return {name: float(getattr(self, name)) for name in self._hyper}

    def _materialize(self, params: MutableMapping[str, Any], staged: Mapping[str, Any]) -> None:
        """Compute lazy (Dask) parameters and state now, so each step's graph stays short.

        One ``persist`` for all of them: the forward and backward passes they
        share run once per step (a ``persist`` per array ran them once per
        array, and made a ``dask.distributed`` scheduler warn about keys
        submitted again with another task). `staged` holds the new values of
        the parameters, which are written to `params` only once computed (a
        network's :class:`~xplayers.network.Parameters` would otherwise
        persist each one on its own).
        """
        keys = list(params)
        values = [staged.get(key, params[key]) for key in keys]
        slots = [
            (store, key)
            for store in vars(self).values()
            if isinstance(store, dict)
            for key in store
        ]
        done = materialize_all(values + [store[key] for store, key in slots])
        for key, value in zip(keys, done[: len(keys)], strict=True):
            params[key] = value
        for (store, key), value in zip(slots, done[len(keys) :], strict=True):
            store[key] = value

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]]]:
        """The optimizer's state, for a checkpoint: JSON data and named host arrays.

        Returns
        -------
        info : dict
            ``{"class": name, "hyper": {...}, "counters": {...}}``: the
            hyper-parameters and the step counters (Adam's ``iter``).
        arrays : dict of str to numpy.ndarray
            Host copies of the state arrays, named ``"<store>.<key>"``
            (``"v.W1"``, ``"m.b2"``, ...), bit for bit.

        Examples
        --------
        >>> import numpy as np
        >>> from xplayers.optim import Adam
        >>> opt = Adam()
        >>> opt.update({"w": np.ones(2)}, {"w": np.ones(2)})
        >>> info, arrays = opt.state()
        >>> info["counters"], sorted(arrays)
        ({'iter': 1}, ['m.w', 'v.w'])
        """
        info = {
            "class": type(self).__name__,
            "hyper": {name: getattr(self, name) for name in self._hyper},
            "counters": {name: getattr(self, name) for name in self._counters},
        }
        arrays = {
            f"{attr}.{key}": np.array(to_numpy(value), copy=True)
            for attr, store in vars(self).items()
            if isinstance(store, dict)
            for key, value in store.items()
        }
        return info, arrays

    def set_state(
        self,
        info: Mapping[str, Any],
        arrays: Mapping[str, Any],
        params: Mapping[str, Any],
    ) -> None:
        """Restore a state from :meth:`state`, for the parameters `params`.

        The arrays are created on the backend of the current parameters; the
        optimizer's class and hyper-parameters must be those of the state.

        Raises
        ------
        LayerInputError
            Another optimizer class or other hyper-parameters, counters that
            are not integers >= 0, or state arrays that do not fit `params`
            (names, shapes, dtypes) or hold values the optimizer never makes
            (a negative sum of squares); nothing is changed then.
        """
        where = f"{type(self).__name__}.set_state"
        mine = self.state()[0]
        if info.get("class") != mine["class"] or info.get("hyper") != mine["hyper"]:
            fail(
                where,
                "info",
                f"the state of {self!r}",
                f"the state of {_describe_info(info)}",
                "Resume with the optimizer and hyper-parameters the state was saved with",
            )
        counters = info.get("counters")
        if not isinstance(counters, Mapping) or set(counters) != set(self._counters):
            fail(where, "info", f"the counters {list(self._counters)}", repr(counters)[:200])
        for name, value in counters.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                fail(where, f"info['counters'][{name!r}]", "an integer >= 0", repr(value)[:100])
        stores = {attr for attr, store in vars(self).items() if isinstance(store, dict)}
        staged: dict[str, dict[str, Any]] = {attr: {} for attr in stores}
        for name, value in arrays.items():
            attr, _, key = name.partition(".")
            p = params.get(key)
            if attr not in stores or p is None:
                fail(
                    where, "arrays", f"'<{'|'.join(sorted(stores))}>.<parameter>' names", repr(name)
                )
            host = np.asarray(value)
            if host.shape != tuple(p.shape) or host.dtype.name != dtype_name(p.dtype):
                fail(
                    where,
                    f"arrays[{name!r}]",
                    f"the shape and dtype of {describe(p)}",
                    f"{host.dtype} {host.shape}",
                )
            if attr in self._nonnegative and host.size and not bool(np.all(host >= 0)):
                fail(
                    where,
                    f"arrays[{name!r}]",
                    "values >= 0 (a running sum or mean of squared gradients)",
                    f"{int(np.count_nonzero(~(host >= 0)))} negative or NaN value(s)",
                )
            staged[attr][key] = asarray(np.array(host, copy=True))
        for attr, store in staged.items():
            setattr(self, attr, store)
        for name, value in counters.items():
            setattr(self, name, int(value))

    def _state(self, store: dict[str, Any], key: str, p: Any) -> Any:
        """Return the state array for `key`, creating zeros like `p` the first time."""
        s = store.get(key)
        if s is None:
            s = namespace(p).zeros_like(p)
            store[key] = s
        elif tuple(s.shape) != tuple(p.shape) or s.dtype != p.dtype:
            fail(
                f"{type(self).__name__}.update",
                f"params[{key!r}]",
                f"the shape and dtype the optimizer state was created for ({describe(s)})",
                describe(p),
                "Use a new optimizer for each network",
            )
        return s

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._hyper)
        return f"{type(self).__name__}({args})"


def _describe_info(info: Mapping[str, Any]) -> str:
    hyper = info.get("hyper")
    args = ", ".join(f"{k}={v!r}" for k, v in hyper.items()) if isinstance(hyper, Mapping) else "?"
    return f"{info.get('class')!s:.40}({args:.200})"


def _subtract(params: MutableMapping[str, Any], key: str, p: Any, step: Any) -> None:
    """``params[key] -= step``: in place when the array allows it, else by rebinding."""
    if type(p) is np.ndarray:  # the common case, without array-api-compat's checks
        if p.flags.writeable:
            p -= step
        else:
            params[key] = p - step
        return
    if is_writeable_array(p):
        q = p
        q -= step
        if q is p:
            return
        params[key] = q  # the library has no in-place operator (Dask): keep the result
    else:
        params[key] = p - step


class SGD(Optimizer):
    r"""Stochastic gradient descent: :math:`W \leftarrow W - \eta\,g`.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate :math:`\eta > 0`.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.optim import SGD
    >>> params = {"w": np.array([1.0, -2.0])}
    >>> SGD(lr=0.5).update(params, {"w": np.array([2.0, -4.0])})
    >>> params["w"]
    array([0., 0.])
    """

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = number_in("SGD", "lr", lr, low=0.0, low_open=True)

    step = staticmethod(sgd_step)


class Momentum(Optimizer):
    r"""Momentum SGD: :math:`v \leftarrow \alpha v - \eta g`, :math:`W \leftarrow W + v`.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate :math:`\eta > 0`.
    momentum : float, default 0.9
        :math:`\alpha \in [0, 1)`.

    Attributes
    ----------
    v : dict of str to array
        The velocity of each parameter (created on the first update).

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.optim import Momentum
    >>> params, opt = {"w": np.array([1.0])}, Momentum(lr=0.1, momentum=0.5)
    >>> for _ in range(2):
    ...     opt.update(params, {"w": np.array([1.0])})
    >>> params["w"]  # 1 - 0.1 - (0.5 * 0.1 + 0.1)
    array([0.75])
    """

    _hyper = ("lr", "momentum")

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = number_in("Momentum", "lr", lr, low=0.0, low_open=True)
        self.momentum = number_in(
            "Momentum", "momentum", momentum, low=0.0, high=1.0, low_open=False
        )
        self.v: dict[str, Any] = {}

    step = staticmethod(momentum_step)
    stores = ("v",)


class Nesterov(Optimizer):
    r"""Nesterov's accelerated gradient, in the book's form.

    .. math::
        W \leftarrow W + \alpha^2 v - (1 + \alpha)\,\eta\,g, \qquad
        v \leftarrow \alpha v - \eta g

    The order is that of the book's ``common/optimizer.py`` as it stands
    today (oreilly-japan/deep-learning-from-scratch, commit 07b1161, after
    its "Fix Nesterov update function"): the parameter moves with the *old*
    velocity, then the velocity is updated. One step from :math:`W = 1`,
    :math:`g = 0.5`, :math:`\eta = 0.01`, :math:`\alpha = 0.9` (and
    :math:`v = 0`) gives 0.9905; the book's earlier revision, which updated
    the velocity first, gave 0.98645.

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float, default 0.9
        :math:`\alpha \in [0, 1)`.

    Attributes
    ----------
    v : dict of str to array

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.optim import Nesterov
    >>> params, opt = {"w": np.array([1.0])}, Nesterov(lr=0.1, momentum=0.5)
    >>> for _ in range(2):
    ...     opt.update(params, {"w": np.array([1.0])})
    >>> params["w"]  # 1 - 1.5 * 0.1, then + 0.25 * (-0.1) - 1.5 * 0.1
    array([0.675])
    """

    _hyper = ("lr", "momentum")

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = number_in("Nesterov", "lr", lr, low=0.0, low_open=True)
        self.momentum = number_in(
            "Nesterov", "momentum", momentum, low=0.0, high=1.0, low_open=False
        )
        self.v: dict[str, Any] = {}

    step = staticmethod(nesterov_step)
    stores = ("v",)


class AdaGrad(Optimizer):
    r"""AdaGrad: :math:`h \leftarrow h + g^2`, :math:`W \leftarrow W - \eta g/(\sqrt{h} + 10^{-7})`.

    Parameters
    ----------
    lr : float, default 0.01

    Attributes
    ----------
    h : dict of str to array
        The sum of squared gradients of each parameter.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.optim import AdaGrad
    >>> params = {"w": np.array([1.0, 1.0])}
    >>> AdaGrad(lr=0.5).update(params, {"w": np.array([4.0, -0.5])})
    >>> params["w"].round(6)  # each entry moves by lr, whatever the gradient's size
    array([0.5, 1.5])
    """

    _nonnegative = ("h",)

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = number_in("AdaGrad", "lr", lr, low=0.0, low_open=True)
        self.h: dict[str, Any] = {}

    step = staticmethod(adagrad_step)
    stores = ("h",)


class RMSprop(Optimizer):
    r"""RMSprop: AdaGrad with a moving average of the squared gradients.

    .. math::
        h \leftarrow \rho h + (1-\rho) g^2, \qquad
        W \leftarrow W - \eta\, g / (\sqrt{h} + 10^{-7})

    Parameters
    ----------
    lr : float, default 0.01
    decay_rate : float, default 0.99
        :math:`\rho \in [0, 1)`.

    Attributes
    ----------
    h : dict of str to array
        The moving average of squared gradients.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.optim import RMSprop
    >>> params = {"w": np.array([1.0])}
    >>> RMSprop(lr=0.1, decay_rate=0.75).update(params, {"w": np.array([2.0])})
    >>> params["w"].round(6)  # h = 0.25 * 4 = 1, step = 0.1 * 2 / 1
    array([0.8])
    """

    _hyper = ("lr", "decay_rate")
    _nonnegative = ("h",)

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        self.lr = number_in("RMSprop", "lr", lr, low=0.0, low_open=True)
        self.decay_rate = number_in(
            "RMSprop", "decay_rate", decay_rate, low=0.0, high=1.0, low_open=False
        )
        self.h: dict[str, Any] = {}

    step = staticmethod(rmsprop_step)
    stores = ("h",)


class Adam(Optimizer):
    r"""Adam (Kingma and Ba), with the book's bias correction folded into the rate.

    .. math::
        m \leftarrow m + (1-\beta_1)(g - m), \quad
        v \leftarrow v + (1-\beta_2)(g^2 - v), \quad
        W \leftarrow W - \eta_t\, m / (\sqrt{v} + 10^{-7}), \quad
        \eta_t = \eta\,\sqrt{1-\beta_2^t} / (1-\beta_1^t)

    Parameters
    ----------
    lr : float, default 0.001
    beta1 : float, default 0.9
        :math:`\beta_1 \in [0, 1)`.
    beta2 : float, default 0.999
        :math:`\beta_2 \in [0, 1)`.

    Attributes
    ----------
    iter : int
        Number of updates made (:math:`t`).
    m, v : dict of str to array
        First and second moment estimates.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.optim import Adam
    >>> params = {"w": np.array([1.0])}
    >>> Adam(lr=0.1).update(params, {"w": np.array([3.0])})
    >>> params["w"].round(6)  # the first step moves by about lr
    array([0.9])
    """

    _hyper = ("lr", "beta1", "beta2")
    _counters = ("iter",)
    _nonnegative = ("v",)

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.lr = number_in("Adam", "lr", lr, low=0.0, low_open=True)
        self.beta1 = number_in("Adam", "beta1", beta1, low=0.0, high=1.0, low_open=False)
        self.beta2 = number_in("Adam", "beta2", beta2, low=0.0, high=1.0, low_open=False)
        self.iter = 0
        self.m: dict[str, Any] = {}
        self.v: dict[str, Any] = {}

    step = staticmethod(adam_step)
    stores = ("m", "v")

    def begin_step(self) -> dict[str, float]:
        """Count the update (:attr:`iter`); the rate of this step (``lr_t``) and the betas."""
        self.iter += 1
        t = self.iter
        lr_t = self.lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        return {"lr_t": lr_t, "beta1": float(self.beta1), "beta2": float(self.beta2)}


#: Optimizer classes by their command-line name.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def get_optimizer(name: str, **kwargs: float) -> Optimizer:
    """Create an optimizer from its name, as the command line does.

    Parameters
    ----------
    name : {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
        Case-insensitive.
    **kwargs : float
        Hyper-parameters of that optimizer (``lr``, ``momentum``,
        ``decay_rate``, ``beta1``, ``beta2``); the rest keep their defaults.

    Returns
    -------
    Optimizer

    Raises
    ------
    LayerInputError
        An unknown name, or a hyper-parameter the optimizer does not take or
        with an invalid value.

    Examples
    --------
    >>> from xplayers.optim import get_optimizer
    >>> get_optimizer("adam", lr=0.01)
    Adam(lr=0.01, beta1=0.9, beta2=0.999)
    """
    cls = OPTIMIZERS[choice("get_optimizer", "name", name, OPTIMIZERS)]
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        fail(
            "get_optimizer",
            "kwargs",
            f"hyper-parameters of {cls.__name__}: {accepted}",
            f"{unknown}",
        )
    return cls(**kwargs)


def clip_grad_norm(grads: Mapping[str, Any], max_norm: float) -> tuple[dict[str, Any], Any]:
    r"""Scale the gradients so that their global norm is at most `max_norm`.

    The global norm is :math:`\lVert g \rVert = \sqrt{\sum_k \sum g_k^2}` over
    every array of `grads`; when it exceeds `max_norm`, each gradient is
    multiplied by :math:`\text{max\_norm} / \lVert g \rVert`, else it is
    returned unchanged (multiplied by exactly 1). The norm and the factor
    are computed on the gradients' device as 0-d arrays: nothing is read
    back to the host, so a GPU or lazy (Dask) step does not wait. Squares
    are summed in at least float32.

    Parameters
    ----------
    grads : mapping of str to array
        Gradients of one backend; entries that are not arrays are passed
        through for the optimizer to report.
    max_norm : float
        The largest global norm, > 0.

    Returns
    -------
    clipped : dict of str to array
    norm : array, shape ()
        The global norm before clipping (None when `grads` holds no array).

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.optim import clip_grad_norm
    >>> clipped, norm = clip_grad_norm({"a": np.array([3.0]), "b": np.array([4.0])}, 1.0)
    >>> float(norm), clipped["a"], clipped["b"]
    (5.0, array([0.6]), array([0.8]))
    """
    max_norm = number_in("clip_grad_norm", "max_norm", max_norm, low=0.0)
    arrays = [g for g in grads.values() if is_array_api_obj(g)]
    if not arrays:
        return dict(grads), None
    xp = namespace(arrays[0])
    total: Any = 0.0
    for g in arrays:
        wide = g if g.dtype == xp.float64 else xp.astype(g, xp.result_type(g.dtype, xp.float32))
        total = total + xp.sum(wide * wide)
    norm = xp.sqrt(total)
    scale = max_norm / xp.maximum(norm, xp.full_like(norm, max_norm))
    clipped = {
        key: g * xp.astype(scale, g.dtype) if is_array_api_obj(g) else g for key, g in grads.items()
    }
    return clipped, norm


class ClipGradNorm:
    """An optimizer that clips the gradients' global norm before another one updates.

    ``ClipGradNorm(Adam(), 1.0).update(params, grads)`` is
    ``Adam().update(params, clip_grad_norm(grads, 1.0)[0])``; the norm of
    the last update is kept, on the device, in :attr:`last_norm`. It is what
    :func:`xplayers.training.train` uses for ``clip_norm=``. On JAX the
    compiled step covers the optimizers of this module only, so a clipped
    step runs the layer path.

    Parameters
    ----------
    optimizer : Optimizer
        Any object with ``update(params, grads)``.
    max_norm : float
        The largest global norm, > 0.

    Examples
    --------
    >>> import numpy as np
    >>> from xplayers.optim import SGD, ClipGradNorm
    >>> params = {"w": np.array([0.0, 0.0])}
    >>> ClipGradNorm(SGD(lr=1.0), max_norm=1.0).update(params, {"w": np.array([30.0, 40.0])})
    >>> params["w"]
    array([-0.6, -0.8])
    """

    def __init__(self, optimizer: Any, max_norm: float) -> None:
        if not callable(getattr(optimizer, "update", None)):
            fail(
                "ClipGradNorm",
                "optimizer",
                "an object with update(params, grads)",
                describe(optimizer),
            )
        self.optimizer = optimizer
        self.max_norm = number_in("ClipGradNorm", "max_norm", max_norm, low=0.0)
        self.last_norm: Any = None

    def update(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        """Clip `grads` to :attr:`max_norm`, then update `params` with the wrapped optimizer."""
        clipped, self.last_norm = clip_grad_norm(grads, self.max_norm)
        self.optimizer.update(params, clipped)

    def __repr__(self) -> str:
        return f"ClipGradNorm({self.optimizer!r}, max_norm={self.max_norm!r})"
